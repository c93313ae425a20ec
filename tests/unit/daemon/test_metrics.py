"""The daemon's metric set: what it exposes, on which registry, and what
the scheduler, the tracker and the delivery worker count."""

import logging
import sqlite3
import time

import prometheus_client
import pytest
from dogpile.cache import region as dogpile_region

from monitor.daemon import metrics
from monitor.daemon import scheduler as scheduler_mod
from monitor.daemon import tracker as domain_tracker
from monitor.health import mass_failure
from monitor.health import policy as health_policy
from monitor.health import record as domain_record
from monitor.health import states
from monitor.health.ping_outcome import Outcome
from monitor.health.ping_outcome import PingResult
from monitor.notify import delivery
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind
from monitor.store import domain_store
from monitor.virt import domain_xml
from monitor.virt import domains as libvirt_domains
from monitor.virt import host as libvirt_host
from tests.unit import exposition

P = metrics.PREFIX


def value(m, name, **labels):
    """One sample of ``m`` as its registry holds it (None: no such
    series)."""
    return m.registry.get_sample_value(P + name, labels)


# -- what a scrape shows ------------------------------------------------------------


DAEMON_FAMILIES = {
    'sweeps_total': 'counter',
    'sweep_duration_seconds': 'histogram',
    'last_sweep_duration_seconds': 'gauge',
    'pings_total': 'counter',
    'domains': 'gauge',
    'state_transitions_total': 'counter',
    'notifications_queued_total': 'counter',
    'notifications_delivered_total': 'counter',
    'notification_attempts_failed_total': 'counter',
    'notifications_rejected_total': 'counter',
    'outbox_pending': 'gauge',
    'outbox_dead_letters': 'gauge',
    'libvirt_connected': 'gauge',
    'libvirt_reconnects_total': 'counter',
    'mass_failure_breaker_tripped': 'gauge',
    'domain_errors_total': 'counter',
    'io_error_pauses_reported_total': 'counter',
    'agent_silent_guest_active_total': 'counter',
    'recovery_timeouts_total': 'counter',
    'recovery_calls_stuck': 'gauge',
    'maintenance_domains': 'gauge',
    'maintenance_host': 'gauge',
    'build_info': 'gauge',
    'guest_failures_total': 'counter',
    'recoveries_total': 'counter',
    'probe_runs_total': 'counter',
}


def test_a_scrape_is_the_daemon_set_then_the_process_metrics():
    parsed = exposition.parse(metrics.MonitorMetrics().render())

    ours = {name[len(P):]: kind for name, (kind, _) in parsed.families.items()
            if name.startswith(P)}
    others = set(parsed.families) - {P + name for name in ours}
    assert ours == DAEMON_FAMILIES
    assert others and all(name.startswith('process_') for name in others)


def test_the_text_format_is_the_one_the_server_announces():
    assert metrics.CONTENT_TYPE == 'text/plain; version=0.0.4; charset=utf-8'


def test_counters_carry_no_created_samples():
    m = metrics.MonitorMetrics()
    m.sweep_finished(0.1, [Outcome.OK])
    m.state_changed(states.HEALTHY, states.ERROR)

    text = m.render()

    assert '_created' not in text


def test_process_metrics_are_those_of_this_process():
    parsed = exposition.parse(metrics.MonitorMetrics().render())

    assert parsed.families['process_cpu_seconds_total'][0] == 'counter'
    assert parsed.value('process_cpu_seconds_total') > 0
    assert parsed.value('process_resident_memory_bytes') > 0
    assert parsed.value('process_open_fds') > 0
    started = parsed.value('process_start_time_seconds')
    assert time.time() - 24 * 3600 < started <= time.time()


def test_build_info_is_one_labelled_with_the_version():
    parsed = exposition.parse(metrics.MonitorMetrics().render())

    assert parsed.series(P + 'build_info') == {
        frozenset({('version', metrics.version())}): 1}
    assert metrics.version() not in ('', 'unknown')


def test_a_version_nobody_can_tell_is_unknown(monkeypatch):
    from monitor import version as build_version

    # Neither a git checkout nor installed metadata.
    monkeypatch.setattr(build_version, 'from_checkout', lambda root: None)
    monkeypatch.setattr(build_version, 'from_metadata', lambda: None)
    metrics.version.cache_clear()
    try:
        m = metrics.MonitorMetrics()
    finally:
        metrics.version.cache_clear()

    assert value(m, 'build_info', version='unknown') == 1


# -- whose registry ----------------------------------------------------------------


def default_registry():
    return prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_nothing_lands_on_prometheus_clients_default_registry():
    names = {family.name for family in prometheus_client.REGISTRY.collect()}
    before = default_registry()

    m = metrics.MonitorMetrics()
    m.sweep_finished(0.1, [Outcome.OK])
    m.domain_error('xml')
    m.render()

    assert {family.name for family in
            prometheus_client.REGISTRY.collect()} == names
    assert P.encode() not in default_registry()
    assert P.encode() not in before


def test_two_sets_in_one_process_count_apart():
    first = metrics.MonitorMetrics()
    second = metrics.MonitorMetrics()

    first.sweep_finished(0.1, [Outcome.OK, Outcome.MISSED])
    first.notification_queued()

    assert value(first, 'sweeps_total') == 1
    assert value(second, 'sweeps_total') == 0
    assert value(second, 'pings_total', outcome='ok') == 0
    assert value(second, 'notifications_queued_total') == 0
    assert exposition.parse(second.render()).value(P + 'sweeps_total') == 0


def test_a_registry_given_is_the_one_used():
    registry = prometheus_client.CollectorRegistry()

    m = metrics.MonitorMetrics(registry)
    m.notification_rejected()

    assert m.registry is registry
    assert registry.get_sample_value(P + 'notifications_rejected_total') == 1


# -- labels ------------------------------------------------------------------------


def labels_seen(m):
    """{label name: set of values} over every sample of a scrape."""
    seen = {}
    for family in m.registry.collect():
        for sample in family.samples:
            for label, label_value in sample.labels.items():
                seen.setdefault(label, set()).add(label_value)
    return seen


class Store:
    """Stands in for the domain store: a record in each state."""

    def all(self):
        return [domain_record.DomainRecord('u-%s' % state, 'vm', state)
                for state in states.ALL_STATES]


def test_no_daemon_metric_has_a_per_domain_label():
    m = metrics.MonitorMetrics()
    m.watch(store=Store())
    for outcome in Outcome:
        m.sweep_finished(0.1, [outcome])
    for old in states.ALL_STATES:
        for new in states.ALL_STATES:
            m.state_changed(old, new)
    for stage in metrics.DOMAIN_ERROR_STAGES:
        m.domain_error(stage)

    seen = labels_seen(m)

    assert set(seen) == {'outcome', 'state', 'from', 'to', 'result', 'stage',
                         'step', 'le', 'version', 'reason', 'action',
                         'probe_outcome'}
    assert seen['version'] == {metrics.version()}
    assert len(seen['le']) == len(metrics.SWEEP_BUCKETS) + 1
    assert seen['step'] == set(metrics.RECOVERY_STEPS)
    for label in ('outcome', 'state', 'from', 'to', 'result', 'stage'):
        # A few values each, fixed in the code, never one per domain.
        assert len(seen[label]) <= 8


def test_counters_show_every_declared_series_at_zero():
    parsed = exposition.parse(metrics.MonitorMetrics().render())

    for name, label, values in [
            ('pings_total', 'outcome', metrics.PING_OUTCOMES),
            ('notifications_delivered_total', 'result',
             ('accepted', 'duplicate')),
            ('domain_errors_total', 'stage', ('list', 'xml', 'ping'))]:
        assert parsed.series(P + name) == {
            frozenset({(label, v)}): 0 for v in values}


@pytest.mark.parametrize('count', [
    lambda m: m.sweep_finished(0.1, ['some-domain-uuid']),
    lambda m: m.state_changed(states.HEALTHY, 'some-domain-uuid'),
    lambda m: m.state_changed('some-domain-uuid', states.HEALTHY),
    lambda m: m.domain_error('some-domain-uuid'),
    lambda m: m.notification_delivered('some-domain-uuid'),
])
def test_a_label_value_not_declared_makes_no_series(count):
    m = metrics.MonitorMetrics()
    series = {name: exposition.parse(m.render()).series(P + name)
              for name in ('pings_total', 'state_transitions_total',
                           'domain_errors_total',
                           'notifications_delivered_total')}

    with pytest.raises(ValueError, match='some-domain-uuid'):
        count(m)

    after = exposition.parse(m.render())
    assert {name: after.series(P + name) for name in series} == series
    assert 'some-domain-uuid' not in m.render()


# -- what the daemon's methods count ------------------------------------------------


def test_a_sweep_counts_itself_its_duration_and_its_pings():
    m = metrics.MonitorMetrics()

    m.sweep_finished(0.03, [Outcome.OK, Outcome.OK, Outcome.MISSED])
    m.sweep_finished(5.2, [Outcome.DISCONNECTED])

    parsed = exposition.parse(m.render())
    assert parsed.value(P + 'sweeps_total') == 2
    assert parsed.value(P + 'last_sweep_duration_seconds') == 5.2
    assert parsed.value(P + 'sweep_duration_seconds_count') == 2
    assert parsed.value(P + 'sweep_duration_seconds_sum') == 5.23
    assert parsed.value(P + 'sweep_duration_seconds_bucket', le='0.05') == 1
    assert parsed.value(P + 'sweep_duration_seconds_bucket', le='7.5') == 2
    assert parsed.value(P + 'sweep_duration_seconds_bucket', le='+Inf') == 2
    counted = {Outcome.OK: 2, Outcome.MISSED: 1, Outcome.DISCONNECTED: 1}
    assert parsed.series(P + 'pings_total') == {
        frozenset({('outcome', o.value)}): counted.get(o, 0)
        for o in Outcome}


def test_before_the_first_sweep_its_duration_has_no_sample():
    parsed = exposition.parse(metrics.MonitorMetrics().render())

    assert P + 'last_sweep_duration_seconds' in parsed.families
    assert parsed.series(P + 'last_sweep_duration_seconds') == {}
    assert parsed.value(P + 'sweep_duration_seconds_count') == 0


def test_only_changes_of_state_are_transitions():
    m = metrics.MonitorMetrics()

    m.state_changed(states.HEALTHY, states.ERROR)
    m.state_changed(states.ERROR, states.ERROR)

    parsed = exposition.parse(m.render())
    assert parsed.series(P + 'state_transitions_total') == {
        frozenset({('from', 'healthy'), ('to', 'error')}): 1}


def test_deliveries_are_labelled_accepted_or_duplicate():
    m = metrics.MonitorMetrics()

    m.notification_delivered(OutcomeKind.ACCEPTED)
    m.notification_delivered(OutcomeKind.DUPLICATE)
    m.notification_delivered('ACCEPTED')

    parsed = exposition.parse(m.render())
    assert parsed.value(P + 'notifications_delivered_total',
                        result='accepted') == 2
    assert parsed.value(P + 'notifications_delivered_total',
                        result='duplicate') == 1
    with pytest.raises(ValueError):
        m.notification_delivered(OutcomeKind.RETRY)


def test_errors_raised_for_one_domain_are_counted_by_stage():
    m = metrics.MonitorMetrics()

    m.domain_error('ping')
    m.domain_error('ping')
    m.domain_error('xml')

    parsed = exposition.parse(m.render())
    assert parsed.series(P + 'domain_errors_total') == {
        frozenset({('stage', 'list')}): 0,
        frozenset({('stage', 'xml')}): 1,
        frozenset({('stage', 'ping')}): 2}


# -- values read at scrape time ------------------------------------------------------


class Part:
    """Stands in for the scheduler and the breaker: one attribute."""

    connected = False
    tripped = False


def test_watched_parts_are_read_at_each_scrape(tmp_path):
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    store = domain_store.DomainStore(region, namespace='compute-1')
    box = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
    part = Part()
    m = metrics.MonitorMetrics()
    m.watch(store=store, outbox=box, scheduler=part, breaker=part)
    before = exposition.parse(m.render())

    store.put(domain_record.DomainRecord('u1', 'vm1', states.HEALTHY))
    store.put(domain_record.DomainRecord('u2', 'vm2', states.HEALTHY))
    store.put(domain_record.DomainRecord('u3', 'vm3', states.REPORTED))
    for n in (1, 2):
        box.enqueue(notification_mod.Notification.new(
            f'u{n}', f'vm{n}', 'compute-1', at=1.0e9), 1.0e9)
    box.mark_dead(box.pending()[0].notification.id, 1.0e9, 'HTTP 400')
    part.connected = part.tripped = True
    after = exposition.parse(m.render())
    box.close()

    assert before.series(P + 'domains') == {
        frozenset({('state', s)}): 0 for s in states.ALL_STATES}
    assert after.series(P + 'domains') == {
        frozenset({('state', 'discovery')}): 0,
        frozenset({('state', 'healthy')}): 2,
        frozenset({('state', 'error')}): 0,
        frozenset({('state', 'reported')}): 1}
    for name, was, now in [('outbox_pending', 0, 1),
                           ('outbox_dead_letters', 0, 1),
                           ('libvirt_connected', 0, 1),
                           ('mass_failure_breaker_tripped', 0, 1)]:
        assert (before.value(P + name), after.value(P + name)) == (was, now)


def test_parts_not_watched_have_no_samples():
    parsed = exposition.parse(metrics.MonitorMetrics().render())

    for name in ('domains', 'outbox_pending', 'outbox_dead_letters',
                 'libvirt_connected', 'mass_failure_breaker_tripped'):
        assert parsed.series(P + name) == {}
        assert P + name in parsed.families


class BrokenOutbox:
    """An outbox whose file cannot be read until ``broken`` is cleared."""

    def __init__(self):
        self.broken = True

    def pending(self):
        if self.broken:
            raise sqlite3.DatabaseError(
                'database disk image is malformed')
        return ['one']

    def dead_letters(self):
        return self.pending()


def test_a_part_that_cannot_be_read_leaves_out_only_its_own_samples():
    m = metrics.MonitorMetrics()
    m.watch(outbox=BrokenOutbox(), scheduler=Part())
    m.sweep_finished(0.1, [Outcome.OK])

    parsed = exposition.parse(m.render())

    assert parsed.series(P + 'outbox_pending') == {}
    assert parsed.series(P + 'outbox_dead_letters') == {}
    assert P + 'outbox_pending' in parsed.families
    assert parsed.value(P + 'sweeps_total') == 1
    assert parsed.value(P + 'libvirt_connected') == 0


def test_a_read_that_fails_is_logged_when_it_starts_and_ends(caplog):
    caplog.set_level(logging.DEBUG, logger='monitor.daemon.metrics')
    box = BrokenOutbox()
    m = metrics.MonitorMetrics()
    m.watch(outbox=box)

    for _ in range(3):
        m.render()
    box.broken = False
    healed = exposition.parse(m.render())
    m.render()

    def logged(level):
        return [r.getMessage() for r in caplog.records
                if r.levelno == level and 'outbox_pending' in r.getMessage()]

    assert logged(logging.WARNING) == [
        'Cannot read %soutbox_pending, served without samples until it '
        'can be read: database disk image is malformed' % P]
    assert len(logged(logging.DEBUG)) == 2
    assert logged(logging.INFO) == ['%soutbox_pending can be read again' % P]
    assert not any(r.exc_info for r in caplog.records)
    assert healed.value(P + 'outbox_pending') == 1


# -- what the daemon's parts count --------------------------------------------------

AGENT = domain_xml.AgentChannel('org.qemu.guest_agent.0', '/run/x.sock',
                                'connected')


def domain(n):
    return libvirt_domains.DomainInfo('00000000-0000-4000-8000-%012d' % n,
                                   'instance-%d' % n, True, False, AGENT)


class FakeHost:
    """Lists ``domains``; each ping answers from ``outcomes`` (default
    OK); connecting fails while ``down``."""

    uri = 'qemu:///system'
    connection = None

    def __init__(self, domains):
        self.domains = domains
        self.outcomes = {}
        self.down = False
        self.listing_fails = False

    connected = False

    def ensure_connected(self):
        if self.down:
            return 1.0
        self.connected = True
        return 0

    def connection_lost(self, why):
        self.connected = False

    def list_domains(self):
        if self.listing_fails:
            raise libvirt_host.LibvirtUnavailable('connection reset')
        return list(self.domains)

    def ping(self, info, timeout):
        outcome = self.outcomes.get(info.uuid, Outcome.OK)
        # A miss is a ping that timed out, so it is confirmed at once.
        took = timeout if outcome is Outcome.MISSED else 0.0
        return PingResult(outcome, outcome.value, time.time(), took)


class FakeTracker:
    def reconcile(self, domains):
        return list(domains)

    def apply_round(self, results, counters_of=None):
        return domain_tracker.RoundOutcome(False, {
            uuid: 3 for uuid, result in results.items()
            if result.outcome is Outcome.MISSED})


def make_scheduler(host, tracker, m):
    return scheduler_mod.Scheduler(
        host, tracker, interval=1.0, ping_timeout=1,
        max_concurrent_pings=4, confirm_interval=0.0,
        execute=lambda f, *a: f(*a), metrics=m)


def test_the_scheduler_counts_sweeps_and_every_ping_outcome():
    m = metrics.MonitorMetrics()
    host = FakeHost([domain(1), domain(2), domain(3)])
    host.outcomes = {domain(2).uuid: Outcome.MISSED,
                     domain(3).uuid: Outcome.NOT_RUNNING}
    scheduler = make_scheduler(host, FakeTracker(), m)
    scheduler.ensure_connected()

    scheduler.sweep()
    scheduler.sweep()

    assert value(m, 'sweeps_total') == 2
    assert value(m, 'sweep_duration_seconds_count') == 2
    assert (value(m, 'last_sweep_duration_seconds')
            == scheduler.last_sweep.duration)
    assert value(m, 'pings_total', outcome='ok') == 2
    assert value(m, 'pings_total', outcome='missed') == 2
    assert value(m, 'pings_total', outcome='not_running') == 2


def test_pings_dropped_with_a_lost_connection_are_still_counted():
    m = metrics.MonitorMetrics()
    host = FakeHost([domain(1), domain(2)])
    host.outcomes = {domain(1).uuid: Outcome.DISCONNECTED,
                     domain(2).uuid: Outcome.MISSED}
    scheduler = make_scheduler(host, FakeTracker(), m)
    scheduler.ensure_connected()

    scheduler.sweep()

    assert value(m, 'pings_total', outcome='disconnected') == 1
    assert value(m, 'pings_total', outcome='missed') == 1


def test_a_sweep_that_cannot_list_is_not_counted():
    m = metrics.MonitorMetrics()
    host = FakeHost([domain(1)])
    scheduler = make_scheduler(host, FakeTracker(), m)
    scheduler.ensure_connected()
    host.listing_fails = True

    assert scheduler.sweep() is None
    assert value(m, 'sweeps_total') == 0
    assert value(m, 'sweep_duration_seconds_count') == 0


T0 = 1_700_000_000.0


@pytest.fixture
def outbox(tmp_path):
    box = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
    yield box
    box.close()


def make_tracker(outbox, m):
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    store = domain_store.DomainStore(region, namespace='compute-1')
    return domain_tracker.DomainTracker(
        store, health_policy.HealthPolicy(3, 0, 30),
        mass_failure.MassFailureBreaker(3, 0.5), outbox, 'compute-1',
        metrics=m)


def sweep(tracker, domains, now, missed=()):
    to_ping = tracker.reconcile(domains, now=now)
    tracker.apply_round(
        {info.uuid: PingResult(Outcome.MISSED if info.uuid in missed
                               else Outcome.OK, 'test', now, 0.01)
         for info in to_ping}, now=now + 0.05)


def test_the_tracker_counts_transitions_and_queued_notifications(outbox):
    m = metrics.MonitorMetrics()
    tracker = make_tracker(outbox, m)
    vms = [domain(1), domain(2)]

    sweep(tracker, vms, T0)
    for n in range(1, 4):
        sweep(tracker, vms, T0 + 10 * n, missed={domain(1).uuid})
    outbox.mark_delivered(outbox.pending()[0].id, OutcomeKind.ACCEPTED,
                          T0 + 40)
    tracker.review(now=T0 + 41)

    def transitions(old, new):
        return value(m, 'state_transitions_total',
                     **{'from': old, 'to': new})

    assert transitions(states.DISCOVERY, states.HEALTHY) == 2
    assert transitions(states.HEALTHY, states.ERROR) == 1
    assert transitions(states.ERROR, states.REPORTED) == 1
    assert value(m, 'notifications_queued_total') == 1


def test_guests_found_active_behind_a_silent_agent_are_counted():
    m = metrics.MonitorMetrics()
    assert value(m, 'agent_silent_guest_active_total') == 0
    m.agent_silent_guest_active()
    m.agent_silent_guest_active()
    assert value(m, 'agent_silent_guest_active_total') == 2


def test_guests_reported_for_a_pause_on_an_io_error_are_counted():
    m = metrics.MonitorMetrics()
    assert value(m, 'io_error_pauses_reported_total') == 0
    m.io_error_pause_reported()
    assert value(m, 'io_error_pauses_reported_total') == 1


def test_a_notification_the_outbox_cannot_take_is_not_counted(tmp_path):
    m = metrics.MonitorMetrics()
    box = outbox_mod.Outbox(str(tmp_path / 'full.sqlite'), max_size=1)
    box.enqueue(notification_mod.Notification.new('other', 'other', 'compute-1',
                                          at=T0), T0)
    tracker = make_tracker(box, m)

    sweep(tracker, [domain(1)], T0)
    for n in range(1, 4):
        sweep(tracker, [domain(1)], T0 + 10 * n, missed={domain(1).uuid})
    box.close()

    assert value(m, 'notifications_queued_total') == 0


class ScriptedClient:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)

    def send(self, notification):
        return self.outcomes.pop(0)


def test_the_delivery_worker_counts_each_outcome(outbox):
    m = metrics.MonitorMetrics()
    for n in range(4):
        outbox.enqueue(notification_mod.Notification.new(
            'u%d' % n, 'vm%d' % n, 'compute-1', at=T0), T0)
    client = ScriptedClient(
        DeliveryOutcome(OutcomeKind.ACCEPTED, 202, ''),
        DeliveryOutcome(OutcomeKind.DUPLICATE, 409, 'duplicate'),
        DeliveryOutcome(OutcomeKind.REJECTED, 400, 'unknown host'),
        DeliveryOutcome(OutcomeKind.RETRY, 503, 'HTTP 503'),
        DeliveryOutcome(OutcomeKind.ACCEPTED, 202, ''))
    worker = delivery.DeliveryWorker(
        outbox, client, metrics=m,
        retry_policy=delivery.RetryPolicy(jitter=0.0))

    worker.run_once(now=T0)
    worker.run_once(now=T0 + 2)

    parsed = exposition.parse(m.render())
    assert parsed.value(P + 'notifications_delivered_total',
                        result='accepted') == 2
    assert parsed.value(P + 'notifications_delivered_total',
                        result='duplicate') == 1
    assert parsed.value(P + 'notifications_rejected_total') == 1
    assert parsed.value(P + 'notification_attempts_failed_total') == 1


def test_the_error_stages_are_those_of_the_libvirt_edge():
    from monitor.virt import notes as libvirt_notes

    assert metrics.DOMAIN_ERROR_STAGES == libvirt_notes.STAGES
