"""The metrics registry, its Prometheus text rendering, the daemon's own
metric set, and what the scheduler, the tracker and the delivery worker
count."""

import math
import time

import pytest
from dogpile.cache import region as dogpile_region

from monitor import delivery
from monitor import domain_record
from monitor import domain_store
from monitor import domain_tracker
from monitor import domain_xml
from monitor import health_policy
from monitor import libvirt_host
from monitor import mass_failure
from monitor import metrics
from monitor import notification as notification_mod
from monitor import outbox as outbox_mod
from monitor import scheduler as scheduler_mod
from monitor import states
from monitor.notification import DeliveryOutcome
from monitor.notification import OutcomeKind
from monitor.ping_outcome import Outcome
from monitor.ping_outcome import PingResult
from tests.unit import exposition

P = metrics.PREFIX


# -- the text format ------------------------------------------------------------


@pytest.mark.parametrize('value,text', [
    (0, '0'), (3, '3'), (2.0, '2'), (0.025, '0.025'), (-1.5, '-1.5'),
    (1e20, '1e+20'), (math.inf, '+Inf'), (-math.inf, '-Inf'),
    (math.nan, 'NaN'),
])
def test_values_are_written_as_prometheus_reads_them(value, text):
    assert metrics.format_value(value) == text


def test_help_escapes_backslash_and_newline_only():
    assert metrics.escape_help('a\\b\nc "d"') == 'a\\\\b\\nc "d"'


def test_label_values_escape_backslash_quote_and_newline():
    assert (metrics.escape_label_value('a\\b"c\nd')
            == 'a\\\\b\\"c\\nd')


def test_a_family_is_help_then_type_then_its_samples():
    registry = metrics.Registry()
    registry.counter('jobs_total', 'Jobs done.\nAll of them.',
                     labels={'kind': ('a', 'b')})

    assert registry.render() == (
        '# HELP jobs_total Jobs done.\\nAll of them.\n'
        '# TYPE jobs_total counter\n'
        'jobs_total{kind="a"} 0\n'
        'jobs_total{kind="b"} 0\n')


def test_escaped_label_values_read_back_unchanged():
    odd = 'back\\slash "quoted"\nnext line'
    registry = metrics.Registry()
    registry.counter('odd_total', 'Odd labels.', labels={'v': (odd,)})

    parsed = exposition.parse(registry.render())

    assert parsed.value('odd_total', v=odd) == 0


def test_families_render_in_declaration_order():
    registry = metrics.Registry()
    registry.gauge('zeta', 'Last letter.').set(1)
    registry.counter('alpha_total', 'First letter.')

    text = registry.render()

    assert text.index('zeta') < text.index('alpha_total')


# -- counters ----------------------------------------------------------------------


def test_a_counter_shows_every_declared_series_at_zero():
    registry = metrics.Registry()
    registry.counter('c_total', 'C.', labels={'x': ('a', 'b'),
                                              'y': ('1', '2')})

    parsed = exposition.parse(registry.render())

    assert len(parsed.series('c_total')) == 4
    assert set(parsed.series('c_total').values()) == {0}


def test_a_counter_with_no_initial_series_shows_them_once_used():
    registry = metrics.Registry()
    counter = registry.counter('c_total', 'C.', labels={'x': ('a', 'b')},
                               initial=())
    assert exposition.parse(registry.render()).series('c_total') == {}

    counter.inc(x='b')

    parsed = exposition.parse(registry.render())
    assert parsed.series('c_total') == {frozenset({('x', 'b')}): 1}


def test_a_counter_only_goes_up():
    counter = metrics.Counter('c_total', 'C.')
    counter.inc()
    counter.inc(2.5)
    counter.inc(0)

    with pytest.raises(ValueError, match='cannot decrease'):
        counter.inc(-1)
    assert counter.value() == 3.5


def test_a_label_value_not_declared_makes_no_series():
    counter = metrics.Counter('c_total', 'C.', labels={'x': ('a',)})

    with pytest.raises(ValueError, match="'some-domain-uuid'"):
        counter.inc(x='some-domain-uuid')
    assert counter.samples() == [('c_total', [('x', 'a')], 0)]


@pytest.mark.parametrize('labels', [{}, {'y': 'a'}, {'x': 'a', 'y': 'a'}])
def test_labels_must_be_exactly_the_declared_ones(labels):
    counter = metrics.Counter('c_total', 'C.', labels={'x': ('a',)})

    with pytest.raises(ValueError, match='takes labels'):
        counter.inc(**labels)


@pytest.mark.parametrize('name', ['', '1st', 'with-dash', 'sp ace'])
def test_metric_names_are_checked(name):
    with pytest.raises(ValueError, match='invalid metric name'):
        metrics.Counter(name, 'C.')


@pytest.mark.parametrize('label', ['1x', 'with-dash', '__reserved'])
def test_label_names_are_checked(label):
    with pytest.raises(ValueError, match='invalid label name'):
        metrics.Counter('c_total', 'C.', labels={label: ('a',)})


def test_a_name_is_declared_once():
    registry = metrics.Registry()
    registry.counter('c_total', 'C.')

    with pytest.raises(ValueError, match='declared twice'):
        registry.gauge('c_total', 'Again.')


# -- gauges ------------------------------------------------------------------------


def test_a_gauge_goes_up_and_down():
    gauge = metrics.Gauge('g', 'G.')
    gauge.set(5)
    gauge.set(2)

    assert gauge.value() == 2


def test_a_gauge_never_set_has_no_sample():
    registry = metrics.Registry()
    registry.gauge('g', 'G.')

    assert registry.render() == '# HELP g G.\n# TYPE g gauge\n'


def test_a_collected_gauge_is_read_at_each_render():
    level = [1]
    registry = metrics.Registry()
    registry.gauge('level', 'Level.', collect=lambda: level[0])

    first = exposition.parse(registry.render()).value('level')
    level[0] = 7
    second = exposition.parse(registry.render()).value('level')

    assert (first, second) == (1, 7)


def test_a_collected_gauge_with_a_label_takes_plain_keys():
    registry = metrics.Registry()
    registry.gauge('things', 'Things.', labels={'colour': ('red', 'blue')},
                   collect=lambda: {'red': 2, ('blue',): 3})

    parsed = exposition.parse(registry.render())

    assert parsed.value('things', colour='red') == 2
    assert parsed.value('things', colour='blue') == 3


def test_a_collected_gauge_refuses_undeclared_values():
    gauge = metrics.Gauge('things', 'Things.', labels={'colour': ('red',)},
                          collect=lambda: {'green': 1})

    with pytest.raises(ValueError, match="'green'"):
        gauge.samples()


# -- histograms --------------------------------------------------------------------


def test_histogram_buckets_are_cumulative_and_end_at_inf():
    registry = metrics.Registry()
    histogram = registry.histogram('d_seconds', 'D.', (1, 0.1))
    for value in (0.05, 0.1, 0.5, 3):
        histogram.observe(value)

    parsed = exposition.parse(registry.render())

    assert parsed.series('d_seconds_bucket') == {
        frozenset({('le', '0.1')}): 2,  # an upper bound is inclusive
        frozenset({('le', '1')}): 3,
        frozenset({('le', '+Inf')}): 4,
    }
    assert parsed.value('d_seconds_sum') == pytest.approx(3.65)
    assert parsed.value('d_seconds_count') == 4
    assert histogram.count == 4


def test_an_empty_histogram_shows_zero_counts():
    registry = metrics.Registry()
    registry.histogram('d_seconds', 'D.', (1,))

    parsed = exposition.parse(registry.render())

    assert parsed.value('d_seconds_count') == 0
    assert parsed.value('d_seconds_sum') == 0
    assert parsed.value('d_seconds_bucket', le='+Inf') == 0


# -- the daemon's metric set -------------------------------------------------------


def test_every_daemon_metric_is_prefixed_and_parses():
    parsed = exposition.parse(metrics.MonitorMetrics().render())

    assert parsed.families
    assert all(name.startswith(P) for name in parsed.families)
    assert {
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
    } == {name[len(P):]: kind for name, (kind, _)
          in parsed.families.items()}


def test_no_daemon_metric_has_a_per_domain_label():
    m = metrics.MonitorMetrics()
    labels = set()
    for metric in m.registry._metrics.values():
        labels.update(metric.label_names)
        for label in metric.label_names:
            assert len(metric._allowed[label]) <= len(states.ALL_STATES) + 2

    assert labels == {'outcome', 'state', 'from', 'to', 'result'}


def test_a_sweep_counts_itself_its_duration_and_its_pings():
    m = metrics.MonitorMetrics()

    m.sweep_finished(0.03, [Outcome.OK, Outcome.OK, Outcome.MISSED])
    m.sweep_finished(5.2, [Outcome.DISCONNECTED])

    parsed = exposition.parse(m.render())
    assert parsed.value(P + 'sweeps_total') == 2
    assert parsed.value(P + 'last_sweep_duration_seconds') == 5.2
    assert parsed.value(P + 'sweep_duration_seconds_count') == 2
    assert parsed.value(P + 'sweep_duration_seconds_bucket', le='0.05') == 1
    assert parsed.value(P + 'sweep_duration_seconds_bucket', le='7.5') == 2
    assert parsed.series(P + 'pings_total') == {
        frozenset({('outcome', o.value)}): n for o, n in [
            (Outcome.OK, 2), (Outcome.MISSED, 1), (Outcome.NOT_RUNNING, 0),
            (Outcome.GONE, 0), (Outcome.NO_AGENT, 0),
            (Outcome.DISCONNECTED, 1)]}


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


# -- what the daemon's parts count --------------------------------------------------

AGENT = domain_xml.AgentChannel('org.qemu.guest_agent.0', '/run/x.sock',
                                'connected')


def domain(n):
    return libvirt_host.DomainInfo('00000000-0000-4000-8000-%012d' % n,
                                   'instance-%d' % n, True, False, AGENT)


class FakeHost:
    """Lists ``domains``; each ping answers from ``outcomes`` (default
    OK); connecting fails while ``down``."""

    uri = 'qemu:///system'

    def __init__(self, domains):
        self.domains = domains
        self.outcomes = {}
        self.down = False
        self.listing_fails = False

    def connect(self, on_close=None):
        if self.down:
            raise libvirt_host.LibvirtUnavailable('socket missing')
        return 'conn'

    def close(self):
        pass

    def list_domains(self):
        if self.listing_fails:
            raise libvirt_host.LibvirtUnavailable('connection reset')
        return list(self.domains)

    def ping(self, info, timeout):
        outcome = self.outcomes.get(info.uuid, Outcome.OK)
        return PingResult(outcome, outcome.value, time.time(), 0.0)


class FakeTracker:
    def reconcile(self, domains):
        return list(domains)

    def apply_round(self, results):
        return False


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

    assert m.sweeps.value() == 2
    assert m.sweep_duration.count == 2
    assert m.last_sweep_duration.value() == scheduler.last_sweep.duration
    assert m.pings.value(outcome='ok') == 2
    assert m.pings.value(outcome='missed') == 2
    assert m.pings.value(outcome='not_running') == 2


def test_pings_dropped_with_a_lost_connection_are_still_counted():
    m = metrics.MonitorMetrics()
    host = FakeHost([domain(1), domain(2)])
    host.outcomes = {domain(1).uuid: Outcome.DISCONNECTED,
                     domain(2).uuid: Outcome.MISSED}
    scheduler = make_scheduler(host, FakeTracker(), m)
    scheduler.ensure_connected()

    scheduler.sweep()

    assert m.pings.value(outcome='disconnected') == 1
    assert m.pings.value(outcome='missed') == 1


def test_a_sweep_that_cannot_list_is_not_counted():
    m = metrics.MonitorMetrics()
    host = FakeHost([domain(1)])
    scheduler = make_scheduler(host, FakeTracker(), m)
    scheduler.ensure_connected()
    host.listing_fails = True

    assert scheduler.sweep() is None
    assert m.sweeps.value() == 0
    assert m.sweep_duration.count == 0


def test_only_connections_after_the_first_are_reconnects():
    m = metrics.MonitorMetrics()
    host = FakeHost([])
    host.down = True
    scheduler = make_scheduler(host, FakeTracker(), m)

    assert scheduler.ensure_connected() > 0
    host.down = False
    assert scheduler.ensure_connected() == 0
    assert m.libvirt_reconnects.value() == 0

    scheduler.connection_lost('test')
    scheduler.ensure_connected()
    scheduler.connection_lost('test')
    scheduler.ensure_connected()
    assert m.libvirt_reconnects.value() == 2


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
    tracker.notification_accepted(outbox.pending()[0].notification,
                                  now=T0 + 40)

    def transitions(old, new):
        return m.state_transitions.value(**{'from': old, 'to': new})

    assert transitions(states.DISCOVERY, states.HEALTHY) == 2
    assert transitions(states.HEALTHY, states.ERROR) == 1
    assert transitions(states.ERROR, states.REPORTED) == 1
    assert m.notifications_queued.value() == 1


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

    assert m.notifications_queued.value() == 0


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
        outbox, client, on_accepted=lambda n: None, metrics=m,
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
