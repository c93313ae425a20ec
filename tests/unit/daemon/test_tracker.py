"""The tracker between the edges: listings, ping rounds and libvirt events
applied to the per-domain records, and what the outbox says became of their
notifications, with the real policy, breaker, store and outbox."""

import logging
import sqlite3

import pytest
from dogpile.cache import region as dogpile_region

from monitor.daemon import metrics as metrics_mod
from monitor.daemon import tracker as domain_tracker
from monitor.health import guest_activity
from monitor.health import lifecycle
from monitor.health import mass_failure
from monitor.health import policy as health_policy
from monitor.health import states
from monitor.health.lifecycle import AgentReason
from monitor.health.lifecycle import AgentState
from monitor.health.lifecycle import CrashedDetail
from monitor.health.lifecycle import EventKind
from monitor.health.lifecycle import LifecycleEvent
from monitor.health.lifecycle import StoppedDetail
from monitor.health.lifecycle import WatchdogAction
from monitor.health.ping_outcome import Outcome
from monitor.health.ping_outcome import PingResult
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.store import domain_store
from monitor.virt import domain_xml
from monitor.virt import domains as libvirt_domains
from monitor.virt import metadata as domain_metadata
from tests.unit import exposition

D, H, E, R = states.DISCOVERY, states.HEALTHY, states.ERROR, states.REPORTED
OK, MISSED = Outcome.OK, Outcome.MISSED
HOST = 'compute-1'
T0 = 1_700_000_000.0
INTERVAL = 10.0
GRACE = 30
AGENT = domain_xml.AgentChannel(
    'org.qemu.guest_agent.0',
    '/var/lib/libvirt/qemu/channel/target/domain-1-x/'
    'org.qemu.guest_agent.0', 'connected')


def uuid(n):
    return '6f1f5a7e-2c8e-4d0a-9a57-%012d' % n


def name(n):
    return 'instance-%08x' % n


def listed(n, running=True, paused=False, agent=AGENT):
    return libvirt_domains.DomainInfo(uuid(n), name(n), running, paused, agent)


def event(n, kind, code=None, detail=None, at=T0):
    return lifecycle.DomainEvent(uuid(n), name(n), kind, code, detail, at)


def lifecycle_event(n, code, detail=None):
    return event(n, EventKind.LIFECYCLE, code, detail)


def agent_event(n, state):
    return event(n, EventKind.AGENT, state, AgentReason.CHANNEL)


AGENT_DISCONNECTED = AgentState.DISCONNECTED
AGENT_CONNECTED = AgentState.CONNECTED


def make_store():
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    return domain_store.DomainStore(region, namespace=HOST)


class Host:
    """A compute host seen through the tracker, one sweep at a time.

    Each sweep lists ``domains``, pings what the tracker asks for (the
    outcome comes from ``outcomes``, else ``default``) and applies the
    round; pings start right after the listing.
    """

    def __init__(self, tracker, store, outbox):
        self.tracker = tracker
        self.store = store
        self.outbox = outbox
        self.now = T0
        self.pinged = []
        self.suppressed = None

    def sweep(self, domains, outcomes=None, default=OK, dt=INTERVAL):
        self.now += dt
        to_ping = self.tracker.reconcile(domains, now=self.now)
        self.pinged = [info.uuid for info in to_ping]
        outcomes = outcomes or {}
        results = {
            info.uuid: PingResult(outcomes.get(info.uuid, default), 'test',
                                  self.now + 0.01, 0.02)
            for info in to_ping}
        self.suppressed = self.tracker.apply_round(
            results, now=self.now + 0.05,
            counters_of=self.counters_of).suppressed
        return self.pinged

    def counters_of(self, uuids):
        """The I/O counters the tracker asks for in a round: none here."""
        return {}

    def sweeps(self, count, domains, outcomes=None, default=OK):
        for _ in range(count):
            self.sweep(domains, outcomes, default)

    def state(self, n):
        record = self.store.get(uuid(n))
        return None if record is None else record.state

    def record(self, n):
        return self.store.get(uuid(n))

    def event(self, item, dt=1.0):
        self.now += dt
        self.tracker.apply_event(item, now=self.now)

    def pending(self):
        return [(e.notification.instance_uuid, e.notification.domain_name,
                 e.notification.hostname) for e in self.outbox.pending()]


@pytest.fixture
def store():
    return make_store()


@pytest.fixture
def outbox(tmp_path):
    box = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'), max_size=100)
    yield box
    box.close()


class Wakes(list):
    """The delivery wake-up event shared with the worker: counts sets."""

    def set(self):
        self.append(True)


@pytest.fixture
def wakes():
    return Wakes()


def make_tracker(store, outbox, wakes, threshold=3, discovery_timeout=0,
                 min_domains=3, ratio=0.5, hard_reboot_window=120,
                 metrics=None, silent_periods=None):
    return domain_tracker.DomainTracker(
        store,
        health_policy.HealthPolicy(threshold, discovery_timeout, GRACE,
                                   hard_reboot_window),
        mass_failure.MassFailureBreaker(min_domains, ratio),
        outbox, HOST, delivery_wakeup=wakes,
        clock=lambda: pytest.fail('the tracker read the wall clock'),
        metrics=metrics, silent_periods=silent_periods)


ACCEPTED = notification_mod.OutcomeKind.ACCEPTED


def deliver(host, index=-1):
    """The delivery worker's part: the engine took a pending notification
    (the newest by default); only the outbox records it."""
    entry = host.outbox.pending()[index]
    host.outbox.mark_delivered(entry.id, ACCEPTED, host.now)
    return entry


@pytest.fixture
def tracker(store, outbox, wakes):
    return make_tracker(store, outbox, wakes)


@pytest.fixture
def host(tracker, store, outbox):
    return Host(tracker, store, outbox)


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.DEBUG, logger='monitor')

    def lines(level=logging.INFO):
        return [r.getMessage() for r in caplog.records
                if r.name.startswith('monitor.daemon.')
                and r.levelno >= level]
    return lines


def healthy(host, *ns):
    """Bring domains ``ns`` from discovery to healthy with one sweep."""
    host.sweep([listed(n) for n in ns])
    assert all(host.state(n) == H for n in ns)


# -- listings ------------------------------------------------------------------

def test_a_new_domain_starts_in_discovery_and_is_logged_once(host, log):
    pinged = host.sweep([listed(1)], default=MISSED)
    host.sweep([listed(1)], default=MISSED)

    assert pinged == [uuid(1)]
    assert host.state(1) == D
    assert host.record(1).misses == 0  # booting is not failing
    new = [line for line in log() if 'Monitoring domain' in line]
    assert new == ['Monitoring domain %s (%s): waiting for its guest agent '
                   'to answer' % (name(1), uuid(1))]


def test_the_first_answer_makes_a_domain_healthy(host, log):
    host.sweep([listed(1)])
    assert host.state(1) == H
    assert host.record(1).last_ok == host.now + 0.05
    assert any(name(1) in line and uuid(1) in line
               and 'discovery -> healthy' in line for line in log())


def test_a_domain_without_an_agent_is_not_monitored_and_said_once(host, log):
    for _ in range(3):
        assert host.sweep([listed(1, agent=None)]) == []

    assert host.record(1) is None
    assert log() == ['Domain %s (%s) has no guest agent channel; not '
                     'monitored' % (name(1), uuid(1))]


def test_an_agent_channel_added_later_is_monitored(host):
    host.sweep([listed(1, agent=None)])
    assert host.sweep([listed(1)]) == [uuid(1)]
    assert host.state(1) == H


def test_a_domain_that_lost_its_agent_channel_is_forgotten(host):
    healthy(host, 1)
    assert host.sweep([listed(1, agent=None)]) == []
    assert host.record(1) is None


def test_a_vanished_domain_is_evicted(host, log):
    healthy(host, 1, 2)

    host.sweep([listed(2)])

    assert host.record(1) is None
    assert host.state(2) == H
    assert ('Domain %s (%s) is no longer running on this host; forgetting '
            'it' % (name(1), uuid(1))) in log()


def test_a_domain_that_comes_back_starts_over_in_discovery(host):
    healthy(host, 1)
    host.sweep([])
    host.sweep([listed(1)], default=MISSED)
    assert host.state(1) == D


# -- misses and notifications -----------------------------------------------------

def test_the_third_consecutive_miss_queues_exactly_one_notification(
        host, wakes, log):
    healthy(host, 1, 2, 3, 4)
    domains = [listed(n) for n in (1, 2, 3, 4)]

    host.sweep(domains, {uuid(1): MISSED})
    host.sweep(domains, {uuid(1): MISSED})
    assert host.state(1) == E
    assert host.pending() == [] and wakes == []

    host.sweep(domains, {uuid(1): MISSED})
    assert host.pending() == [(uuid(1), name(1), HOST)]
    assert wakes == [True]
    entry = host.outbox.pending()[0]
    assert entry.created_at == host.now + 0.05
    assert entry.notification.generated_time == notification_mod.format_time(
        host.now + 0.05)
    # The receiver learns why: the notification keeps the verdict's reason.
    assert entry.notification.details['reason'] == \
        '3 consecutive missed pings (failure threshold 3)'
    assert entry.notification.details['consecutive_misses'] == 3

    host.sweeps(3, domains, {uuid(1): MISSED})
    assert len(host.outbox.pending()) == 1
    assert wakes == [True]
    assert [host.state(n) for n in (2, 3, 4)] == [H, H, H]
    warnings = log(logging.WARNING)
    assert len(warnings) == 1
    assert name(1) in warnings[0] and uuid(1) in warnings[0]
    assert entry.id in warnings[0]


def test_an_answer_before_the_threshold_resets_the_count(host):
    healthy(host, 1)
    host.sweeps(2, [listed(1)], default=MISSED)
    host.sweep([listed(1)])
    host.sweeps(2, [listed(1)], default=MISSED)

    assert host.record(1).misses == 2
    assert host.pending() == []


def test_a_threshold_of_one_reports_the_first_miss(store, outbox, wakes):
    host = Host(make_tracker(store, outbox, wakes, threshold=1), store,
                outbox)
    healthy(host, 1)
    host.sweep([listed(1)], default=MISSED)
    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_a_domain_in_discovery_is_never_reported(host):
    host.sweeps(10, [listed(1)], default=MISSED)
    assert host.state(1) == D
    assert host.pending() == []


def test_a_ping_started_before_a_reboot_says_nothing_about_the_new_run(
        host, tracker):
    healthy(host, 1)
    host.sweeps(2, [listed(1)], default=MISSED)

    # A third ping starts, the guest reboots meanwhile, and the ping then
    # fails: counting it would report a guest that is merely rebooting.
    host.now += INTERVAL
    assert tracker.reconcile([listed(1)], now=host.now) == [listed(1)]
    started = host.now + 0.01
    tracker.apply_event(event(1, EventKind.REBOOT), now=host.now + 1)
    tracker.apply_round({uuid(1): PingResult(MISSED, 'late', started, 2.0)},
                        now=host.now + 2)

    assert host.state(1) == D
    assert host.pending() == []


def test_a_reboot_applied_while_the_round_takes_counters_is_not_undone(
        store, outbox, wakes):
    tracker = make_tracker(
        store, outbox, wakes,
        silent_periods=guest_activity.SilentPeriods(enabled=True))
    host = Host(tracker, store, outbox)
    healthy(host, 1)
    host.now += INTERVAL
    tracker.reconcile([listed(1)], now=host.now)
    started = host.now + 0.01

    def counters_while_the_guest_reboots(uuids):
        # Taking the counters yields to the event dispatcher, which
        # applies the reboot that made the ping fail.
        tracker.apply_event(event(1, EventKind.REBOOT), now=host.now + 1)
        return {}

    tracker.apply_round({uuid(1): PingResult(MISSED, 'agent disappeared',
                                             started, 0.3)},
                        now=host.now + 2,
                        counters_of=counters_while_the_guest_reboots)

    assert host.state(1) == D
    assert host.record(1).misses == 0


def test_an_answer_from_before_a_reboot_does_not_end_discovery(host,
                                                               tracker):
    healthy(host, 1)
    host.now += INTERVAL
    tracker.reconcile([listed(1)], now=host.now)
    started = host.now + 0.01
    tracker.apply_event(event(1, EventKind.REBOOT), now=host.now + 1)
    tracker.apply_round({uuid(1): PingResult(OK, 'ok', started, 1.5)},
                        now=host.now + 2)

    assert host.state(1) == D


def test_results_for_domains_forgotten_meanwhile_are_dropped(host, tracker):
    healthy(host, 1)
    host.now += INTERVAL
    tracker.reconcile([listed(1)], now=host.now)
    tracker.apply_event(
        lifecycle_event(1, LifecycleEvent.STOPPED),
        now=host.now + 1)
    tracker.apply_round({uuid(1): PingResult(MISSED, 'x', host.now, 1.0)},
                        now=host.now + 2)
    assert host.record(1) is None


@pytest.mark.parametrize('outcome', [Outcome.GONE, Outcome.NO_AGENT])
def test_gone_or_agentless_results_forget_the_domain(host, log, outcome):
    healthy(host, 1, 2)
    host.sweep([listed(1), listed(2)], {uuid(1): outcome})

    assert host.record(1) is None
    assert host.state(2) == H
    assert any(name(1) in line and uuid(1) in line for line in log()[-1:])


def test_a_domain_libvirt_cannot_ping_is_not_retried_every_sweep(host, log):
    # The listing still shows the agent channel, but libvirt says there
    # is no agent to talk to (e.g. a driver without agent commands).
    host.sweep([listed(1)], default=Outcome.NO_AGENT)
    lines = len(log())

    for _ in range(3):
        assert host.sweep([listed(1)], default=Outcome.NO_AGENT) == []

    assert host.record(1) is None
    assert len(log()) == lines


def test_a_domain_libvirt_could_not_ping_is_monitored_on_its_next_run(host):
    host.sweep([listed(1)], default=Outcome.NO_AGENT)
    host.sweep([])  # stopped: gone from the listing
    assert host.sweep([listed(1)]) == [uuid(1)]
    assert host.state(1) == H


def test_a_domain_libvirt_could_not_ping_is_tried_again_once_restarted(
        host):
    host.sweep([listed(1)], default=Outcome.NO_AGENT)
    host.event(lifecycle_event(1, LifecycleEvent.STARTED))
    assert host.sweep([listed(1)]) == [uuid(1)]
    assert host.state(1) == H


@pytest.mark.parametrize('outcome', [Outcome.NOT_RUNNING,
                                     Outcome.DISCONNECTED])
def test_not_running_or_disconnected_is_never_a_miss(host, outcome):
    healthy(host, 1)
    host.sweeps(5, [listed(1)], default=outcome)

    assert host.state(1) == H
    assert host.record(1).misses == 0
    assert host.pending() == []


def test_an_answer_after_the_report_re_arms_for_a_new_incident(host,
                                                               tracker):
    healthy(host, 1)
    host.sweeps(3, [listed(1)], default=MISSED)
    first = deliver(host)

    host.sweep([listed(1)])
    assert host.state(1) == H
    host.sweeps(3, [listed(1)], default=MISSED)

    assert [e.notification.instance_uuid for e in host.outbox.pending()] == [
        uuid(1)]
    assert host.outbox.pending()[0].id != first.id


# -- the mass-failure breaker ----------------------------------------------------

def test_most_domains_missing_at_once_is_suppressed_not_reported(host, log):
    healthy(host, 1, 2, 3, 4)
    domains = [listed(n) for n in (1, 2, 3, 4)]
    outcomes = {uuid(n): MISSED for n in (1, 2, 3)}

    host.sweeps(5, domains, outcomes)

    assert host.suppressed is True
    assert host.pending() == []
    assert [host.record(n).misses for n in (1, 2, 3)] == [0, 0, 0]
    assert [host.state(n) for n in (1, 2, 3, 4)] == [H, H, H, H]


def test_guests_still_failing_when_the_breaker_clears_are_reported(host):
    healthy(host, 1, 2, 3, 4)
    domains = [listed(n) for n in (1, 2, 3, 4)]
    host.sweeps(2, domains, {uuid(n): MISSED for n in (1, 2, 3)})

    host.sweeps(3, domains, {uuid(1): MISSED})

    assert host.suppressed is False
    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_a_single_guest_failure_is_never_suppressed(host):
    healthy(host, 1)
    host.sweeps(3, [listed(1)], default=MISSED)
    assert host.suppressed is False
    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_domains_in_discovery_do_not_count_for_the_breaker(host):
    healthy(host, 1)
    booting = [listed(n) for n in (2, 3, 4, 5)]
    host.sweep([listed(1)] + booting, {uuid(n): MISSED for n in (2, 3, 4, 5)})

    host.sweeps(3, [listed(1)] + booting, default=MISSED)

    assert host.suppressed is False
    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_guests_already_reported_do_not_hold_a_new_failure(host, tracker):
    # Two guests died long ago and were reported; the HA engine has not
    # recovered them (yet). A third guest failing now is one guest's
    # failure, not a host-wide stall.
    healthy(host, 1, 2, 3, 4)
    domains = [listed(n) for n in (1, 2, 3, 4)]
    for n in (1, 2):
        dead = {uuid(m): MISSED for m in range(1, n + 1)}
        host.sweeps(3, domains, dead)
        deliver(host)
        tracker.review(now=host.now)
    assert [host.state(n) for n in (1, 2)] == [R, R]

    host.sweeps(3, domains, {uuid(n): MISSED for n in (1, 2, 3)})

    assert host.suppressed is False
    assert host.pending() == [(uuid(3), name(3), HOST)]


# -- paused domains ------------------------------------------------------------

def test_a_paused_domain_is_not_pinged_and_re_armed_when_running(host, log):
    healthy(host, 1)
    host.sweep([listed(1)], default=MISSED)

    assert host.sweep([listed(1, running=False, paused=True)]) == []
    assert host.sweep([listed(1, running=False, paused=True)]) == []
    assert host.record(1).paused
    assert host.record(1).misses == 0

    assert host.sweep([listed(1)], default=MISSED) == [uuid(1)]
    assert host.state(1) == D
    assert not host.record(1).paused
    assert any(name(1) in line and uuid(1) in line and '-> discovery' in line
               for line in log())


def test_a_domain_libvirt_keeps_crashed_is_still_probed_and_reported(host):
    healthy(host, 1)
    crashed = libvirt_domains.DomainInfo(uuid(1), name(1), False, False, AGENT,
                                      crashed=True)
    host.sweeps(3, [crashed], {uuid(1): MISSED})
    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_a_domain_neither_running_nor_paused_is_not_pinged(host):
    healthy(host, 1)
    assert host.sweep([listed(1, running=False)]) == []
    assert host.state(1) == H


# -- libvirt (re)connected ---------------------------------------------------------

def test_after_a_reconnect_misses_within_the_grace_are_not_counted(
        host, tracker):
    healthy(host, 1)
    host.sweep([listed(2)] + [listed(1)], {uuid(2): MISSED})  # 2 booting
    tracker.libvirt_connected(now=host.now)

    host.sweeps(2, [listed(1), listed(2)], default=MISSED)  # 20 s < grace
    assert host.record(1).misses == 0
    assert host.record(1).agent_disconnected_at is not None
    assert host.record(2).agent_disconnected_at is None  # in discovery

    host.sweeps(4, [listed(1), listed(2)], default=MISSED)  # past the grace
    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_an_answer_ends_the_reconnect_grace_at_once(host, tracker):
    healthy(host, 1)
    tracker.libvirt_connected(now=host.now)
    host.sweep([listed(1)])
    host.sweeps(3, [listed(1)], default=MISSED)
    assert host.pending() == [(uuid(1), name(1), HOST)]


# -- lifecycle events ---------------------------------------------------------------

def test_a_reboot_re_arms_the_domain(host):
    healthy(host, 1)
    host.sweeps(2, [listed(1)], default=MISSED)

    host.event(event(1, EventKind.REBOOT))

    assert host.state(1) == D
    assert host.record(1).misses == 0
    host.sweeps(5, [listed(1)], default=MISSED)
    assert host.pending() == []


def test_a_started_domain_is_re_armed(host):
    healthy(host, 1)
    host.event(lifecycle_event(1, LifecycleEvent.STARTED))
    assert host.state(1) == D


def test_a_stopped_domain_is_forgotten(host, log):
    healthy(host, 1)
    host.event(lifecycle_event(1, LifecycleEvent.STOPPED, StoppedDetail.FAILED))
    assert host.record(1) is None
    assert name(1) in log()[-1] and uuid(1) in log()[-1]


STOPPED = LifecycleEvent.STOPPED
STARTED = LifecycleEvent.STARTED


def test_a_hard_reboot_keeps_the_domains_history(store, outbox, wakes, log):
    # Nova's hard reboot: destroy, then start the same UUID again.
    host = Host(make_tracker(store, outbox, wakes, discovery_timeout=60),
                store, outbox)
    healthy(host, 1)
    host.event(lifecycle_event(1, STOPPED, StoppedDetail.CRASHED))
    assert host.record(1) is None  # not monitored while stopped

    host.event(lifecycle_event(1, STARTED), dt=5)

    record = host.record(1)
    assert (record.state, record.ever_healthy) == (D, True)
    assert any('runs again 5 s after it stopped' in line
               and uuid(1) in line for line in log())
    # Its agent never comes back: the discovery timeout still applies,
    # a new incident notified behind the crash's.
    host.sweeps(7, [listed(1)], default=MISSED)
    assert [e.notification.details['reason']
            for e in host.outbox.pending()] == [
        'guest crashed and libvirt stopped it',
        'agent did not come back within 60 s after restart']


def test_a_domain_listed_again_within_the_window_keeps_its_history(host):
    # Both events were missed (libvirt unreachable): the listing tells.
    healthy(host, 1)
    host.sweep([])
    assert host.record(1) is None
    host.sweep([listed(1)], default=MISSED)
    assert (host.state(1), host.record(1).ever_healthy) == (D, True)


def test_a_domain_stopped_for_longer_than_the_window_starts_afresh(
        store, outbox, wakes):
    host = Host(make_tracker(store, outbox, wakes, hard_reboot_window=120),
                store, outbox)
    healthy(host, 1)
    host.event(lifecycle_event(1, STOPPED, StoppedDetail.CRASHED))

    host.event(lifecycle_event(1, STARTED), dt=121)
    host.sweep([listed(1)], default=MISSED)

    assert (host.state(1), host.record(1).ever_healthy) == (D, False)


def test_a_zero_window_forgets_a_stopped_domain_at_once(store, outbox,
                                                       wakes):
    host = Host(make_tracker(store, outbox, wakes, hard_reboot_window=0),
                store, outbox)
    healthy(host, 1)
    host.event(lifecycle_event(1, STOPPED, StoppedDetail.CRASHED))
    host.event(lifecycle_event(1, STARTED), dt=0)
    host.sweep([listed(1)], default=MISSED)
    assert host.record(1).ever_healthy is False


def test_a_restart_after_a_report_is_a_new_incident(host):
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]
    host.sweeps(3, domains, {uuid(1): MISSED})
    deliver(host)
    host.sweep(domains, {uuid(1): MISSED})
    assert host.state(1) == R

    host.event(lifecycle_event(1, STOPPED, StoppedDetail.CRASHED))
    host.event(lifecycle_event(1, STARTED))
    host.sweep(domains)
    host.sweeps(3, domains, {uuid(1): MISSED})

    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_a_suspended_domain_is_parked(host):
    healthy(host, 1)
    host.event(lifecycle_event(1, LifecycleEvent.SUSPENDED))

    assert host.record(1).paused
    # The listing may lag behind the event; still no ping.
    assert host.sweep([listed(1, running=False, paused=True)]) == []

    host.event(lifecycle_event(1, LifecycleEvent.RESUMED))
    assert host.state(1) == D
    assert host.sweep([listed(1)]) == [uuid(1)]
    assert host.state(1) == H


def test_misses_within_the_agent_disconnect_grace_are_not_counted(host):
    healthy(host, 1)
    host.event(agent_event(1, AGENT_DISCONNECTED))

    host.sweeps(2, [listed(1)], default=MISSED)
    assert host.record(1).misses == 0

    host.sweeps(5, [listed(1)], default=MISSED)
    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_an_agent_that_reconnects_ends_the_grace(host):
    healthy(host, 1)
    host.event(agent_event(1, AGENT_DISCONNECTED))
    host.event(agent_event(1, AGENT_CONNECTED))
    host.sweeps(3, [listed(1)], default=MISSED)
    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_events_for_unknown_domains_are_ignored(host, log):
    for item in (event(7, EventKind.REBOOT),
                 lifecycle_event(7, LifecycleEvent.STARTED),
                 agent_event(7, AGENT_DISCONNECTED)):
        host.event(item)
    assert host.record(7) is None
    assert log(logging.DEBUG) == []


def test_a_crash_that_loaded_the_crash_kernel_changes_nothing(host):
    # kdump: the guest dumps and reboots by itself.
    healthy(host, 1)
    host.event(lifecycle_event(1, LifecycleEvent.CRASHED,
                               CrashedDetail.CRASHLOADED))
    assert host.state(1) == H
    assert host.pending() == []


# -- reported, derived from the outbox ------------------------------------------------

def failed_once(host):
    healthy(host, 1, 2, 3)
    host.sweeps(3, [listed(n) for n in (1, 2, 3)], {uuid(1): MISSED})
    assert len(host.outbox.pending()) == 1


def test_a_delivery_makes_the_domain_reported_at_the_next_sweep(host, log):
    failed_once(host)
    entry = deliver(host)
    assert host.state(1) == E  # nobody calls the tracker back

    host.sweep([listed(n) for n in (1, 2, 3)], {uuid(1): MISSED})

    assert host.state(1) == R
    assert ('Domain %s (%s): error -> reported (HA engine accepted '
            'notification %s)' % (name(1), uuid(1), entry.id)) in log()


def test_a_delivery_is_seen_at_the_next_event(host, log):
    failed_once(host)
    deliver(host)

    host.event(agent_event(1, AGENT_DISCONNECTED))

    assert host.state(1) == R
    assert any('error -> reported' in line for line in log())


def test_a_reported_guest_is_not_reported_again_while_dead(host):
    failed_once(host)
    deliver(host)

    host.sweeps(10, [listed(n) for n in (1, 2, 3)], {uuid(1): MISSED})

    assert host.state(1) == R
    assert host.outbox.pending() == []
    assert len(host.outbox.latest_per_domain(uuid(1))) == 1


def test_a_rejected_notification_closes_the_incident(host, log):
    failed_once(host)
    entry = host.outbox.pending()[0]
    host.outbox.mark_dead(entry.id, host.now, 'unknown host')
    domains = [listed(n) for n in (1, 2, 3)]

    host.sweeps(10, domains, {uuid(1): MISSED})

    assert host.state(1) == R
    assert host.outbox.pending() == []
    assert ('Domain %s (%s): error -> reported (HA engine rejected '
            'notification %s; kept as a dead letter)'
            % (name(1), uuid(1), entry.id)) in log()
    # The guest answers again: a later failure is a new incident.
    host.sweep(domains)
    host.sweeps(3, domains, {uuid(1): MISSED})
    assert host.pending() == [(uuid(1), name(1), HOST)]


def test_notifications_of_other_domains_or_earlier_incidents_change_nothing(
        host):
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]
    earlier = notification_mod.Notification.new(uuid(1), name(1), HOST, T0)
    stranger = notification_mod.Notification.new(uuid(9), name(9), HOST, T0)
    for n in (earlier, stranger):
        host.outbox.enqueue(n, T0)
        host.outbox.mark_delivered(n.id, ACCEPTED, T0)

    host.sweeps(3, domains, {uuid(1): MISSED})

    assert host.state(1) == E
    assert host.pending() == [(uuid(1), name(1), HOST)]
    assert host.record(9) is None


# -- a restart of the daemon ----------------------------------------------------------

def restart(host, store, outbox, wakes):
    """The daemon starts again: new tracker, the store it had (dbm) or an
    empty one (memory), the same outbox file."""
    host.store = store
    host.tracker = make_tracker(store, outbox, wakes)
    host.tracker.adopt_pending(outbox.pending(), now=host.now)
    host.tracker.libvirt_connected(now=host.now)


def failing_until_queued(host, store):
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]
    host.sweeps(3, domains, {uuid(1): MISSED})
    assert len(host.outbox.pending()) == 1


def test_pending_notifications_are_logged_at_start_not_copied(
        host, store, outbox, wakes, caplog):
    failing_until_queued(host, store)
    entry = outbox.pending()[0]
    before = store.get(uuid(1))
    caplog.set_level(logging.INFO, logger='monitor')

    restart(host, store, outbox, wakes)

    assert store.get(uuid(1)).state == before.state
    [line] = [r.getMessage() for r in caplog.records
              if 'still pending' in r.getMessage()]
    for part in (entry.id, name(1), uuid(1)):
        assert part in line


# -- a pending notification holds back its own incident only ----------------------

def reasons(host):
    return [e.notification.details['reason'] for e in host.outbox.pending()]


def test_a_new_incident_is_notified_behind_one_still_pending(host):
    # The engine is down: nothing is delivered.
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]
    host.sweeps(3, domains, {uuid(1): MISSED})
    host.sweep(domains)
    assert host.state(1) == H

    host.sweeps(5, domains, {uuid(1): MISSED})

    assert reasons(host) == [
        '3 consecutive missed pings (failure threshold 3)'] * 2


def test_which_incident_a_notification_is_of_survives_a_clock_step(host):
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]
    host.sweeps(3, domains, {uuid(1): MISSED})
    host.now -= 7200
    host.sweeps(3, domains, {uuid(1): MISSED})
    # Still the incident it was queued for.
    assert len(host.outbox.pending()) == 1

    # A new one, begun "before" the pending notification was created.
    host.sweep(domains)
    host.sweeps(3, domains, {uuid(1): MISSED})

    assert len(host.outbox.pending()) == 2


def test_after_a_restart_a_pending_notification_holds_its_incident_only(
        host, store, outbox, wakes):
    failing_until_queued(host, store)
    restart(host, store, outbox, wakes)
    domains = [listed(n) for n in (1, 2, 3)]

    # Past the agent-disconnect grace of the restart.
    host.sweeps(4, domains, {uuid(1): MISSED})
    assert len(host.outbox.pending()) == 1

    host.sweep(domains)
    host.sweeps(3, domains, {uuid(1): MISSED})
    assert len(host.outbox.pending()) == 2


class HeldRecovery:
    """A recovery step that holds each notification until the test
    releases it."""

    def __init__(self):
        self.started = []

    def action_for(self, uuid, name, override):
        return 'reset'

    def initial_details(self, misses, action, reason=None):
        return {'reason': reason, 'recovery': {'action': action,
                                               'result': 'in_progress'}}

    def start(self, notification, misses, action, on_done):
        self.started.append(notification.id)


def test_one_recovery_of_a_domain_at_a_time_then_the_next_incident(
        store, outbox, wakes):
    recovery = HeldRecovery()
    tracker = domain_tracker.DomainTracker(
        store, health_policy.HealthPolicy(3, 0, GRACE, 120),
        mass_failure.MassFailureBreaker(3, 0.5), outbox, HOST,
        delivery_wakeup=wakes,
        clock=lambda: pytest.fail('the tracker read the wall clock'),
        recovery=recovery)
    host = Host(tracker, store, outbox)
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]
    host.sweeps(3, domains, {uuid(1): MISSED})
    # The guest answers and fails again while its recovery is under way.
    host.sweep(domains)
    host.sweeps(3, domains, {uuid(1): MISSED})
    assert len(recovery.started) == 1

    outbox.release(recovery.started[0], {'reason': 'done'}, host.now)
    host.sweep(domains, {uuid(1): MISSED})

    assert len(recovery.started) == 2
    assert len(outbox.pending()) == 2


def test_a_full_outbox_is_an_error_and_the_next_miss_tries_again(
        host, store, tmp_path, wakes, caplog):
    full = outbox_mod.Outbox(str(tmp_path / 'small.sqlite'), max_size=1)
    blocker = notification_mod.Notification.new(uuid(9), name(9), HOST, T0)
    full.enqueue(blocker, T0)
    host.outbox = full
    host.tracker.notifications.outbox = full
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]

    host.sweeps(3, domains, {uuid(1): MISSED})

    errors = [r.getMessage() for r in caplog.records
              if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert name(1) in errors[0] and uuid(1) in errors[0]
    assert 'outbox full' in errors[0]
    assert wakes == []

    full.mark_delivered(blocker.id, notification_mod.OutcomeKind.ACCEPTED, host.now)
    host.sweep(domains, {uuid(1): MISSED})

    assert host.pending() == [(uuid(1), name(1), HOST)]
    assert wakes == [True]
    full.close()


def test_an_outbox_locked_elsewhere_is_an_error_and_the_next_miss_tries_again(
        host, tmp_path, wakes, caplog):
    path = str(tmp_path / 'locked.sqlite')
    locked = outbox_mod.Outbox(path, max_size=10, busy_wait=0.05)
    host.outbox = locked
    host.tracker.notifications.outbox = locked
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]
    host.sweeps(2, domains, {uuid(1): MISSED})
    # The operators' tool (another connection) holds the write lock.
    other = sqlite3.connect(path, isolation_level=None)
    other.execute('BEGIN IMMEDIATE')

    host.sweep(domains, {uuid(1): MISSED})

    errors = [r.getMessage() for r in caplog.records
              if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert name(1) in errors[0] and 'locked' in errors[0]
    assert wakes == []

    other.execute('ROLLBACK')
    other.close()
    host.sweep(domains, {uuid(1): MISSED})

    assert host.pending() == [(uuid(1), name(1), HOST)]
    assert wakes == [True]
    locked.close()


# -- timers ------------------------------------------------------------------------

def test_a_restarted_guest_whose_agent_never_returns_is_reported(
        store, outbox, wakes):
    host = Host(make_tracker(store, outbox, wakes, discovery_timeout=60),
                store, outbox)
    healthy(host, 1)
    host.event(event(1, EventKind.REBOOT))

    host.sweeps(5, [listed(1)], default=MISSED)
    assert host.pending() == []
    host.sweeps(2, [listed(1)], default=MISSED)

    assert host.pending() == [(uuid(1), name(1), HOST)]
    host.sweeps(5, [listed(1)], default=MISSED)
    assert len(host.outbox.pending()) == 1


def test_a_review_alone_runs_the_timers(store, outbox, wakes):
    tracker = make_tracker(store, outbox, wakes, discovery_timeout=60)
    host = Host(tracker, store, outbox)
    healthy(host, 1)
    host.event(event(1, EventKind.REBOOT))

    tracker.review(now=host.now + 59)
    assert host.pending() == []
    tracker.review(now=host.now + 60)
    assert host.pending() == [(uuid(1), name(1), HOST)]


# -- logging --------------------------------------------------------------------------

def test_every_state_change_is_one_line_naming_the_domain(host, tracker,
                                                          caplog):
    caplog.set_level(logging.INFO, logger='monitor')
    healthy(host, 1)
    host.sweeps(3, [listed(1)], default=MISSED)
    deliver(host)
    host.sweep([listed(1)])

    lines = [r.getMessage() for r in caplog.records
             if r.name.startswith('monitor.daemon.')]
    changes = [line for line in lines if ' -> ' in line]
    assert [line.split(': ', 1)[1].split(' (')[0] for line in changes] == [
        'discovery -> healthy', 'healthy -> error', 'error -> reported',
        'reported -> healthy']
    assert all('%s (%s)' % (name(1), uuid(1)) in line for line in lines)


# -- failures libvirt reports at once ---------------------------------------------

PANICKED = (LifecycleEvent.CRASHED,
            CrashedDetail.PANICKED)
STOPPED_FAILED = (LifecycleEvent.STOPPED,
                  StoppedDetail.FAILED)
STOPPED_CRASHED = (LifecycleEvent.STOPPED,
                   StoppedDetail.CRASHED)


def panic_event(n, at=None):
    return event(n, EventKind.LIFECYCLE, *PANICKED,
                 at=T0 if at is None else at)


def watchdog_event(n, action):
    return event(n, EventKind.WATCHDOG, action)


def test_a_pvpanic_crash_is_notified_at_once(host, wakes, log):
    healthy(host, 1, 2)

    host.event(panic_event(1, at=host.now + 0.5))

    assert host.pending() == [(uuid(1), name(1), HOST)]
    assert wakes == [True]
    record = host.record(1)
    assert record.state == E
    assert record.misses == 3
    assert record.failing_since == host.now - 0.5
    assert host.state(2) == H
    assert any('%s (%s): healthy -> error (guest kernel panicked' %
               (name(1), uuid(1)) in line for line in log())


def test_misses_after_an_instant_failure_never_notify_it_again(host):
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]
    host.event(panic_event(1, at=host.now))
    # The crashed domain is still pinged and misses.
    host.sweeps(3, domains, {uuid(1): MISSED})
    assert len(host.outbox.pending()) == 1

    deliver(host)
    host.sweeps(3, domains, {uuid(1): MISSED})

    assert host.state(1) == R
    assert host.outbox.pending() == []
    assert len(host.outbox.latest_per_domain(uuid(1))) == 1


def test_an_instant_failure_during_counted_misses_is_notified_once(host):
    healthy(host, 1, 2, 3)
    domains = [listed(n) for n in (1, 2, 3)]
    host.sweep(domains, {uuid(1): MISSED})

    host.event(panic_event(1, at=host.now + 1))
    host.sweeps(3, domains, {uuid(1): MISSED})

    assert host.pending() == [(uuid(1), name(1), HOST)]
    # The incident began at the first miss, before the event.
    assert host.record(1).failing_since == T0 + INTERVAL * 2 + 0.05


def test_the_events_that_follow_a_crash_add_no_notification(host, log):
    healthy(host, 1)
    host.event(panic_event(1, at=host.now))
    deliver(host)
    host.event(event(1, EventKind.LIFECYCLE, *STOPPED_CRASHED))

    assert host.outbox.pending() == []
    assert any('%s (%s): guest crashed and libvirt stopped it; '
               'notification' % (name(1), uuid(1)) in line
               and 'already delivered' in line for line in log())


def test_a_reported_domain_is_not_notified_again_by_an_event(host):
    failed_once(host)
    deliver(host)
    host.sweep([listed(n) for n in (1, 2, 3)], {uuid(1): MISSED})
    assert host.state(1) == R

    host.event(panic_event(1, at=host.now))

    assert host.outbox.pending() == []


def test_a_qemu_process_that_ended_is_notified_and_forgotten(host):
    healthy(host, 1)

    host.event(event(1, EventKind.LIFECYCLE, *STOPPED_FAILED))

    assert host.pending() == [(uuid(1), name(1), HOST)]
    assert host.record(1) is None  # the stopped event's own action


def test_an_event_of_a_domain_not_monitored_notifies_nothing(host):
    host.event(panic_event(1))
    assert host.pending() == []


def test_a_guest_still_booting_that_panics_is_notified(host):
    host.sweep([listed(1)], default=MISSED)
    assert host.state(1) == D

    host.event(panic_event(1, at=host.now))

    assert host.pending() == [(uuid(1), name(1), HOST)]
    assert host.state(1) == D


@pytest.mark.parametrize('action,notified', [
    (WatchdogAction.NONE, True),
    (WatchdogAction.PAUSE, True),
    (WatchdogAction.POWEROFF, True),
    (WatchdogAction.RESET, False),
    (WatchdogAction.INJECTNMI, False),
])
def test_a_watchdog_that_fired_is_notified_unless_its_action_recovers(
        host, action, notified):
    healthy(host, 1)

    host.event(watchdog_event(1, action))
    host.event(watchdog_event(1, action))  # it fires again

    assert len(host.pending()) == (1 if notified else 0)


def test_an_instant_failure_is_queued_where_every_notification_is(
        host, monkeypatch):
    queued = []
    monkeypatch.setattr(host.tracker.notifications, 'queue',
                        lambda record, reason, *args: queued.append(
                            (record.uuid, reason)))
    healthy(host, 1)

    host.event(panic_event(1, at=host.now))

    assert queued == [(uuid(1), 'guest kernel panicked (reported by its '
                                'pvpanic device)')]


def test_an_instant_failure_the_outbox_cannot_take_is_asked_for_again(
        host, tmp_path):
    full = outbox_mod.Outbox(str(tmp_path / 'small.sqlite'), max_size=1)
    blocker = notification_mod.Notification.new(uuid(9), name(9), HOST, T0)
    full.enqueue(blocker, T0)
    host.outbox = host.tracker.notifications.outbox = full
    healthy(host, 1, 2, 3)
    host.event(panic_event(1, at=host.now))
    assert host.pending() == [(uuid(9), name(9), HOST)]

    full.mark_delivered(blocker.id, ACCEPTED, host.now)
    host.sweep([listed(n) for n in (1, 2, 3)], {uuid(1): MISSED})

    assert host.pending() == [(uuid(1), name(1), HOST)]
    full.close()


# -- corroboration with the guest's own I/O ---------------------------------------

def counters(n, disk_requests=0, at=0.0, state=guest_activity.RUNNING,
             disks=True):
    disk = guest_activity.DiskCounters('vda', 0, 0, disk_requests,
                                       disk_requests * 4096, 0)
    return guest_activity.DomainCounters(
        uuid=uuid(n), name=name(n), at=at, state=state,
        vcpu_time_ns=None, vcpu_count=1, disks=(disk,) if disks else ())


class Io:
    """Per domain, the disk requests its guest has made so far."""

    def __init__(self):
        self.requests = {}

    def work(self, n, requests):
        self.requests[n] = self.requests.get(n, 0) + requests

    def counters(self, host, ns):
        return {uuid(n): counters(n, self.requests.get(n, 0), at=host.now)
                for n in ns}


class CorroboratingHost(Host):
    """Sweeps hand the tracker the counters it asks for, from ``io``
    (None for a domain: the stats call gave none for it)."""

    def __init__(self, tracker, store, outbox, io):
        super().__init__(tracker, store, outbox)
        self.io = io
        self.asked = []
        self.unavailable = set()

    def counters_of(self, wanted):
        self.asked.append(sorted(wanted))
        ns = [n for n in range(1, 20)
              if uuid(n) in wanted and uuid(n) not in self.unavailable]
        return self.io.counters(self, ns)


@pytest.fixture
def metrics():
    return metrics_mod.MonitorMetrics()


def make_corroborating(store, outbox, wakes, metrics, enabled=True,
                       min_domains=3, ratio=0.5):
    return make_tracker(
        store, outbox, wakes, min_domains=min_domains, ratio=ratio,
        metrics=metrics,
        silent_periods=guest_activity.SilentPeriods(enabled=enabled))


@pytest.fixture
def io():
    return Io()


@pytest.fixture
def chost(store, outbox, wakes, metrics, io):
    return CorroboratingHost(make_corroborating(store, outbox, wakes, metrics),
                             store, outbox, io)


def spared_count(metrics):
    return exposition.parse(metrics.render()).value(
        metrics_mod.PREFIX + 'agent_silent_guest_active_total')


ACTIVE_LINE = 'Domain %s (%s): agent unresponsive, guest active'
DOMAINS = [listed(n) for n in (1, 2, 3)]


def silent_while_working(chost, io, sweeps=3, requests=50):
    for _ in range(sweeps):
        io.work(1, requests)
        chost.sweep(DOMAINS, {uuid(1): MISSED})


def test_a_working_guest_behind_a_silent_agent_is_not_reported(
        chost, io, metrics, log):
    healthy(chost, 1, 2, 3)

    silent_while_working(chost, io)

    assert chost.pending() == []
    assert chost.state(1) == E
    warnings = [line for line in log(logging.WARNING)
                if ACTIVE_LINE % (name(1), uuid(1)) in line]
    assert len(warnings) == 1
    assert '100 disk requests' in warnings[0]
    assert spared_count(metrics) == 1


def test_a_guest_still_working_is_logged_and_counted_once_per_incident(
        chost, io, metrics, log):
    healthy(chost, 1, 2, 3)
    silent_while_working(chost, io, sweeps=6)

    assert chost.pending() == []
    assert chost.record(1).misses == 6  # still counting
    assert len([line for line in log(logging.WARNING)
                if ACTIVE_LINE % (name(1), uuid(1)) in line]) == 1
    assert spared_count(metrics) == 1

    # The agent comes back, then falls silent again: a new incident.
    chost.sweep(DOMAINS)
    silent_while_working(chost, io)
    assert len([line for line in log(logging.WARNING)
                if ACTIVE_LINE % (name(1), uuid(1)) in line]) == 2
    assert spared_count(metrics) == 2


def test_a_guest_whose_io_stops_later_is_reported(chost, io, log):
    healthy(chost, 1, 2, 3)
    silent_while_working(chost, io, sweeps=4)
    assert chost.pending() == []

    chost.sweep(DOMAINS, {uuid(1): MISSED})  # no I/O since the last miss

    assert chost.pending() == [(uuid(1), name(1), HOST)]
    [line] = [line for line in log(logging.WARNING)
              if 'failed' in line and uuid(1) in line]
    assert 'no I/O above the noise floor' in line


def test_a_guest_without_io_is_reported_at_the_threshold(chost, io):
    healthy(chost, 1, 2, 3)
    chost.sweeps(3, DOMAINS, {uuid(1): MISSED})
    assert chost.pending() == [(uuid(1), name(1), HOST)]


def test_io_within_the_noise_floor_is_no_evidence(chost, io):
    healthy(chost, 1, 2, 3)
    # A journal commit the dying kernel still completed.
    silent_while_working(chost, io, requests=2)
    assert chost.pending() == [(uuid(1), name(1), HOST)]


def test_no_counters_at_the_first_miss_reports_the_guest(chost, io):
    healthy(chost, 1, 2, 3)
    chost.unavailable.add(uuid(1))
    io.work(1, 50)
    chost.sweep(DOMAINS, {uuid(1): MISSED})
    chost.unavailable.clear()
    io.work(1, 50)
    chost.sweep(DOMAINS, {uuid(1): MISSED})
    io.work(1, 50)
    chost.sweep(DOMAINS, {uuid(1): MISSED})

    # The period opened at the second miss: the guest is active.
    assert chost.pending() == []


def test_no_counters_at_the_threshold_miss_reports_the_guest(chost, io):
    healthy(chost, 1, 2, 3)
    silent_while_working(chost, io, sweeps=2)
    chost.unavailable.add(uuid(1))
    io.work(1, 50)
    chost.sweep(DOMAINS, {uuid(1): MISSED})
    assert chost.pending() == [(uuid(1), name(1), HOST)]


def test_no_counters_at_all_reports_the_guest(chost, io):
    healthy(chost, 1, 2, 3)
    chost.unavailable.add(uuid(1))
    silent_while_working(chost, io)
    assert chost.pending() == [(uuid(1), name(1), HOST)]


def test_a_guest_libvirt_says_crashed_is_reported_whatever_its_counters(
        chost, io, monkeypatch):
    healthy(chost, 1, 2, 3)
    real = io.counters
    monkeypatch.setattr(io, 'counters', lambda host, ns: {
        u: c._replace(state=guest_activity.CRASHED)
        for u, c in real(host, ns).items()})
    silent_while_working(chost, io)
    assert chost.pending() == [(uuid(1), name(1), HOST)]


def test_with_corroboration_off_the_silence_alone_reports(
        store, outbox, wakes, metrics, io):
    host = CorroboratingHost(
        make_corroborating(store, outbox, wakes, metrics, enabled=False),
        store, outbox, io)
    healthy(host, 1, 2, 3)

    silent_while_working(host, io)

    assert host.pending() == [(uuid(1), name(1), HOST)]
    assert host.asked == []  # no stats call is asked for
    assert spared_count(metrics) == 0


def test_a_tracker_without_silent_periods_does_not_corroborate(
        host, store):
    assert host.tracker.wants_counters([uuid(1)]) == []


def test_counters_are_asked_for_domains_counting_misses_only(chost, io):
    healthy(chost, 1, 2, 3)
    chost.event(lifecycle_event(2, LifecycleEvent.SUSPENDED))
    domains = [listed(1), listed(2, paused=True), listed(3), listed(4)]
    # 4 is new: in discovery while its agent does not answer.
    chost.sweeps(3, domains, default=MISSED)
    assert chost.asked == [[uuid(1), uuid(3)]] * 3
    deliver(chost, 0)
    deliver(chost, 0)
    chost.sweep(domains, default=MISSED)  # 1 and 3 are reported now

    assert chost.state(1) == R and chost.state(4) == D
    assert chost.tracker.wants_counters(
        [uuid(1), uuid(2), uuid(3), uuid(4), uuid(5)]) == []


def test_a_guest_active_behind_its_agent_does_not_trip_the_breaker(
        store, outbox, wakes, metrics, io):
    host = CorroboratingHost(
        make_corroborating(store, outbox, wakes, metrics, min_domains=2,
                           ratio=0.5),
        store, outbox, io)
    healthy(host, 1, 2, 3)
    silent_while_working(host, io)
    assert host.pending() == []

    for _ in range(3):
        io.work(1, 50)
        host.sweep(DOMAINS, {uuid(1): MISSED, uuid(2): MISSED})

    assert host.suppressed is False
    assert host.pending() == [(uuid(2), name(2), HOST)]


def test_a_new_run_of_the_guest_ends_its_silent_period(chost, io, metrics):
    healthy(chost, 1, 2, 3)
    silent_while_working(chost, io)
    chost.event(event(1, EventKind.REBOOT))
    assert not chost.tracker.silent_periods.is_active(uuid(1))
    assert uuid(1) not in chost.tracker.silent_periods


def test_a_domain_that_left_the_host_ends_its_silent_period(chost, io):
    healthy(chost, 1, 2, 3)
    silent_while_working(chost, io, sweeps=1)
    assert uuid(1) in chost.tracker.silent_periods

    chost.sweep([listed(n) for n in (2, 3)])

    assert uuid(1) not in chost.tracker.silent_periods


def test_an_instant_failure_of_a_guest_spared_as_active_is_notified(chost, io):
    healthy(chost, 1, 2, 3)
    silent_while_working(chost, io)
    assert chost.pending() == []

    chost.event(panic_event(1, at=chost.now))

    assert chost.pending() == [(uuid(1), name(1), HOST)]


# -- the round's outcome, for the scheduler ------------------------------------------

def test_a_round_gives_each_missing_domain_its_own_failure_threshold(host):
    own = libvirt_domains.DomainInfo(
        uuid(1), name(1), True, False, AGENT,
        settings=domain_metadata.DomainSettings(failure_threshold=5))
    domains = [own, listed(2), listed(3), listed(4)]
    healthy(host, 1, 2, 3, 4)
    host.tracker.reconcile(domains, now=host.now)

    outcome = host.tracker.apply_round(
        {uuid(n): PingResult(MISSED if n < 3 else OK, 'test', host.now, 0.02)
         for n in (1, 2, 3, 4)}, now=host.now + 0.05)

    assert outcome.suppressed is False
    # Only the domains that missed, each with the threshold that reports it.
    assert outcome.thresholds == {uuid(1): 5, uuid(2): 3}


def test_a_round_reads_the_outbox_only_when_it_changed(host, monkeypatch):
    healthy(host, 1, 2, 3, 4)
    reads = []
    latest = host.outbox.latest_states
    monkeypatch.setattr(host.outbox, 'latest_states',
                        lambda *args: reads.append(args) or latest(*args))
    domains = [listed(n) for n in (1, 2, 3, 4)]

    for _ in range(3):
        host.sweep(domains, {uuid(1): MISSED})
    # Nothing was written since the healthy round had it read.
    assert reads == []
    assert host.pending() == [(uuid(1), name(1), HOST)]
    # The third round queued the notification: the next one reads it.
    host.sweep(domains, {uuid(1): MISSED})
    host.sweep(domains, {uuid(1): MISSED})

    assert reads == [()]


def test_a_freeze_held_too_long_is_reported_with_its_reason_whatever_its_io(
        chost, io, log):
    # A frozen guest still reads: its I/O must not spare it.
    healthy(chost, 1, 2, 3)
    for _ in range(3):
        io.work(1, 50)
        chost.now += INTERVAL
        chost.tracker.reconcile(DOMAINS, now=chost.now)
        results = {uuid(n): PingResult(OK, 'ok', chost.now, 0.01)
                   for n in (2, 3)}
        results[uuid(1)] = PingResult(
            MISSED, 'filesystems frozen for 312 s', chost.now, 0.01,
            frozen=True, held_for=312.0)
        chost.tracker.apply_round(results, now=chost.now + 0.05,
                                  counters_of=chost.counters_of)

    assert [uuid_ for uuid_, _name, _host in chost.pending()] == [uuid(1)]
    [failed] = [line for line in log(logging.WARNING)
                if 'Domain %s (%s) failed (' % (name(1), uuid(1)) in line]
    assert 'failed (filesystems frozen for 312 s; 3 consecutive missed ' \
        'pings' in failed
    assert 'guest active' not in ' '.join(log(logging.DEBUG))
