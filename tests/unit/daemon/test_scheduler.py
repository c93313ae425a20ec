"""The ping loop: rounds in two lanes, start-to-start interval, prompt
confirmation of a miss, reconnects."""

import logging
import threading
import time

import eventlet
from eventlet import event as eventlet_event

from monitor.daemon import counter_snapshots as counters_mod
from monitor.daemon import scheduler as scheduler_mod
from monitor.daemon import tracker as tracker_mod
from monitor.health import host_operations as host_operations_mod
from monitor.health import ping_outcome
from monitor.health.ping_outcome import Outcome
from monitor.virt import domains as libvirt_domains
from monitor.virt import host as libvirt_host
from monitor.virt import stats as libvirt_stats


def info(uuid):
    return libvirt_domains.DomainInfo(uuid, 'vm-' + uuid, True, False,
                                   object(), dom='dom-' + uuid)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeHost:
    """A libvirt edge whose pings advance the injected clock.

    ``costs`` gives, per UUID, the seconds each of its pings takes in
    turn (the last one repeats), as ``outcomes`` may give their outcomes;
    ``hangs`` holds, per UUID, an event its pings wait for before
    answering.
    """
    uri = 'qemu:///system'

    def __init__(self, clock, domains=(), outcomes=None, ping_cost=0.0,
                 costs=None, hangs=None):
        self.clock = clock
        self.domains = [info(u) for u in domains]
        self.outcomes = outcomes or {}
        self.ping_cost = ping_cost
        self.costs = costs or {}
        self.hangs = hangs or {}
        # Seconds ensure_connected() asks to wait, one per failed try.
        self.retry_delays = []
        self.connected = False
        self.connects = 0
        self.lost = []
        self.in_flight = set()
        self.max_in_flight = 0
        self.overlaps = []
        self.started = {}
        self.errors = {}

    def ensure_connected(self):
        if self.connected:
            return 0
        if self.retry_delays:
            return self.retry_delays.pop(0)
        self.connects += 1
        self.connection = 'conn'
        self.connected = True
        return 0

    connection = None

    def connection_lost(self, why):
        self.lost.append(why)
        self.connected = False

    def list_domains(self):
        return list(self.domains)

    def ping(self, domain, timeout):
        uuid = domain.uuid
        if uuid in self.errors:
            raise self.errors[uuid]
        if uuid in self.in_flight:
            self.overlaps.append(uuid)
        self.started.setdefault(uuid, []).append(self.clock.now)
        self.in_flight.add(uuid)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        eventlet.sleep(0)  # let the other green threads start theirs
        if uuid in self.hangs:
            self.hangs[uuid].wait()
        self.in_flight.discard(uuid)
        costs = self.costs.get(uuid)
        if costs:
            cost = costs.pop(0) if len(costs) > 1 else costs[0]
        else:
            cost = self.ping_cost
        self.clock.now += cost
        outcome = self.outcomes.get(uuid, Outcome.OK)
        if isinstance(outcome, list):
            outcome = outcome.pop(0) if len(outcome) > 1 else outcome[0]
        if outcome is Outcome.MISSED and not costs:
            # Unless its costs say otherwise, a miss is a ping that timed
            # out (the clock is left to the test).
            cost = timeout
        return ping_outcome.PingResult(outcome, outcome.value, 0.0, cost)


class FakeTracker:
    """Records each round; asks for the I/O counters of the domains in
    ``corroborate`` when they miss. Its rounds suppress the misses when
    ``suppressed`` and give each domain that missed the failure threshold
    ``threshold``, or its own from ``thresholds``."""

    def __init__(self, suppressed=False, corroborate=(), threshold=3,
                 thresholds=None):
        self.rounds = []
        self.counters = []
        self.suppressed = suppressed
        self.corroborate = set(corroborate)
        self.threshold = threshold
        self.thresholds = thresholds or {}

    def reconcile(self, domains):
        return list(domains)

    def apply_round(self, results, counters_of=None):
        self.rounds.append(dict(results))
        missed = [uuid for uuid, result in results.items()
                  if result.outcome is Outcome.MISSED]
        wanted = [uuid for uuid in missed if uuid in self.corroborate]
        self.counters.append(counters_of(wanted) if wanted else {})
        return tracker_mod.RoundOutcome(self.suppressed, {
            uuid: self.thresholds.get(uuid, self.threshold)
            for uuid in missed})


class StopAfter:
    """A stop event that records waits and stops after n of them."""

    def __init__(self, clock, n):
        self.clock = clock
        self.n = n
        self.waits = []

    def is_set(self):
        return len(self.waits) >= self.n

    def wait(self, timeout):
        self.waits.append(round(timeout, 3))
        self.clock.now += timeout


def direct(func, *args):
    return func(*args)


def make(host, tracker=None, clock=None, **kwargs):
    options = dict(interval=2.0, ping_timeout=1, max_concurrent_pings=5)
    options.update(kwargs)
    return scheduler_mod.Scheduler(host, tracker or FakeTracker(),
                                   clock=clock or host.clock,
                                   execute=direct, **options)


def test_a_sweep_pings_every_domain_at_once():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b', 'c'])
    sched = make(host)
    sched.ensure_connected()
    stats = sched.sweep()
    assert host.max_in_flight == 3
    assert stats.pinged == 3 and stats.listed == 3


def test_answering_domains_use_every_slot_left_free():
    clock = FakeClock()
    host = FakeHost(clock, domains=[str(i) for i in range(20)])
    sched = make(host, max_concurrent_pings=9)
    sched.ensure_connected()
    sched.sweep()
    assert host.max_in_flight == 9


def test_a_domain_never_has_two_pings_in_flight():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b'])
    sched = make(host)
    sched.ensure_connected()
    for _ in range(3):
        sched.sweep()
    assert host.overlaps == []


def test_each_sweep_hands_all_results_to_the_tracker():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b'],
                    outcomes={'b': Outcome.MISSED})
    tracker = FakeTracker()
    sched = make(host, tracker)
    sched.ensure_connected()
    stats = sched.sweep()
    assert {u: r.outcome for u, r in tracker.rounds[0].items()} == {
        'a': Outcome.OK, 'b': Outcome.MISSED}
    assert stats.missed == 1


def test_sweeps_start_interval_apart_measured_start_to_start():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a'], ping_cost=0.5)
    sched = make(host, interval=2.0)
    stop = StopAfter(clock, 3)
    sched.run(stop)
    assert stop.waits == [1.5, 1.5, 1.5]


class StopAfterRounds:
    """A stop event that records waits and stops after n rounds."""

    def __init__(self, clock, tracker, n):
        self.clock = clock
        self.tracker = tracker
        self.n = n
        self.waits = []

    def is_set(self):
        return len(self.tracker.rounds) >= self.n

    def wait(self, timeout):
        self.waits.append(round(timeout, 3))
        self.clock.now += timeout


def test_a_slow_round_is_followed_by_the_next_at_once():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a'], ping_cost=5.0)
    tracker = FakeTracker()
    sched = make(host, tracker, interval=2.0)
    stop = StopAfterRounds(clock, tracker, 3)
    sched.run(stop)
    assert len(tracker.rounds) == 3
    assert [w for w in stop.waits if w > 0] == []
    assert host.started['a'] == [1000.0, 1005.0, 1010.0]


def test_the_loop_comes_round_while_it_waits_for_libvirt():
    # The systemd watchdog is fed from last_loop_at: a daemon waiting for
    # libvirt runs as intended and must not be restarted.
    clock = FakeClock()
    host = FakeHost(clock, domains=['a'])
    host.retry_delays = [1.0, 2.0, 4.0, 8.0]
    sched = make(host)
    assert sched.last_loop_at is None

    sched.run(StopAfter(clock, 4))

    assert sched.last_loop_at == 1000.0 + 1.0 + 2.0 + 4.0
    assert sched.last_progress_at is None


def test_misses_seen_while_libvirt_drops_are_not_counted():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b', 'c'],
                    outcomes={'a': Outcome.DISCONNECTED,
                              'b': Outcome.MISSED})
    tracker = FakeTracker()
    sched = make(host, tracker)
    sched.ensure_connected()
    sched.sweep()
    assert set(tracker.rounds[0]) == {'c'}
    assert not sched.connected


def test_a_listing_failure_marks_the_connection_lost():
    clock = FakeClock()
    host = FakeHost(clock)

    def broken():
        raise libvirt_host.LibvirtUnavailable('EOF')

    host.list_domains = broken
    sched = make(host)
    sched.ensure_connected()
    assert sched.sweep() is None
    assert not sched.connected


def test_an_unexpected_error_while_connecting_does_not_end_the_loop(caplog):
    clock = FakeClock()
    host = FakeHost(clock, domains=['a'])
    real = host.ensure_connected
    calls = []

    def flaky_ensure_connected():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('cache backend down')
        return real()

    host.ensure_connected = flaky_ensure_connected
    tracker = FakeTracker()
    sched = make(host, tracker)
    stop = StopAfter(clock, 2)
    sched.run(stop)
    assert 'Unexpected error' in caplog.text
    assert len(tracker.rounds) == 1, 'the loop went on and swept'


def test_a_hung_ping_never_delays_the_other_domains_pings():
    clock = FakeClock()
    hung = eventlet_event.Event()
    others = [str(i) for i in range(30)]
    host = FakeHost(clock, domains=['hung'] + others, hangs={'hung': hung})
    sched = make(host, max_concurrent_pings=4)
    sched.ensure_connected()
    round_ = eventlet.spawn(sched.sweep)
    eventlet.sleep(0.05)
    pinged_while_hung = set(host.started) - {'hung'}
    hung.send()
    with eventlet.Timeout(5):
        round_.wait()
    assert pinged_while_hung == set(others)


def test_agents_that_missed_are_confirmed_in_their_own_lane():
    clock = FakeClock()
    hangs = {u: eventlet_event.Event()
             for u in ('h1', 'h2', 'h3', 'h4', 'h5')}
    answering = [str(i) for i in range(12)]
    host = FakeHost(clock, domains=list(hangs) + answering,
                    outcomes={u: Outcome.MISSED for u in hangs})
    tracker = FakeTracker()
    sched = make(host, tracker, interval=0.01, max_concurrent_pings=12,
                 confirm_interval=0.0)
    sched.ensure_connected()
    sched.sweep()                        # h1..h5 miss for the first time
    host.hangs = hangs                   # ... and now hang
    host.max_in_flight = 0
    sched.sweep()
    assert host.max_in_flight == 12, 'every slot in use'
    assert all(len(host.started[u]) == 2 for u in answering)
    assert sum(len(host.started[u]) for u in hangs) == 5 + 5, (
        'every suspect confirmed at once, the answering domains pinged '
        'in the slots left')
    for event in hangs.values():
        event.send()
    with eventlet.Timeout(5):
        while any(len(host.started[u]) < 2 for u in hangs):
            sched.sweep()


def test_a_confirmation_still_running_is_never_pinged_again():
    clock = FakeClock()
    hung = eventlet_event.Event()
    host = FakeHost(clock, domains=['a', 'b'],
                    outcomes={'a': Outcome.MISSED})
    tracker = FakeTracker()
    sched = make(host, tracker, interval=0.01, confirm_interval=0.0)
    sched.ensure_connected()
    sched.sweep()                        # a misses
    host.hangs = {'a': hung}
    sched.sweep()                        # its confirmation hangs past
    sched.sweep()                        # the end of two rounds
    assert len(host.started['a']) == 2
    assert host.overlaps == []
    assert 'a' not in tracker.rounds[1] and 'a' not in tracker.rounds[2]
    hung.send()
    eventlet.sleep(0)
    sched.sweep()
    assert tracker.rounds[3]['a'].outcome is Outcome.MISSED, (
        'the late result is applied with the round in which it ends')
    assert len(host.started['a']) == 2


def test_each_confirmation_starts_confirm_interval_after_the_last_ping():
    clock = FakeClock()
    # A hung agent: the first miss after the ping timeout (2 s), every
    # later one after libvirt's 5 s guest-sync floor.
    host = FakeHost(clock, domains=['a', 'b'],
                    outcomes={'a': Outcome.MISSED}, costs={'a': [2.0, 5.0]})
    tracker = FakeTracker(threshold=3)
    sched = make(host, tracker, interval=10.0, ping_timeout=2,
                 confirm_interval=1.0)
    stop = StopAfterRounds(clock, tracker, 4)
    sched.run(stop)
    # 2nd and 3rd pings 1 s after the previous one ended; after the 3rd
    # miss (the threshold) back to one ping per interval.
    assert host.started['a'] == [1000.0, 1003.0, 1009.0, 1019.0]
    assert stop.waits == [1.0, 1.0, 5.0, 5.0]
    # The early rounds ping the answering domains too: the breaker
    # always judges the whole host.
    assert len(host.started['b']) == 4
    assert all(set(r) == {'a', 'b'} for r in tracker.rounds)


def test_a_domain_is_confirmed_up_to_its_own_threshold_not_the_configured_one():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b'],
                    outcomes={'a': Outcome.MISSED}, costs={'a': [2.0, 5.0]})
    # The tracker owns each domain's threshold: 'a' has 5 of its own (its
    # metadata), above the configured 3.
    tracker = FakeTracker(threshold=3, thresholds={'a': 5})
    sched = make(host, tracker, interval=10.0, ping_timeout=2,
                 confirm_interval=1.0)
    stop = StopAfterRounds(clock, tracker, 6)
    sched.run(stop)
    # Four confirmations, each 1 s after the previous ping ended; only
    # after the 5th miss back to one ping per interval.
    assert host.started['a'] == [1000.0, 1003.0, 1009.0, 1015.0, 1021.0,
                                 1031.0]


def test_a_miss_libvirt_returns_at_once_is_confirmed_no_sooner_than_a_timeout():
    clock = FakeClock()
    # The agent's channel closed (a reboot under way): libvirt fails each
    # ping at once. Each confirmation waits as if the ping had timed out,
    # so the reboot event that follows has time to arrive.
    host = FakeHost(clock, domains=['a', 'b'],
                    outcomes={'a': Outcome.MISSED}, costs={'a': [0.01]})
    tracker = FakeTracker(threshold=3)
    sched = make(host, tracker, interval=10.0, ping_timeout=2,
                 confirm_interval=0.0)
    stop = StopAfterRounds(clock, tracker, 3)
    sched.run(stop)
    assert host.started['a'][1] - host.started['a'][0] >= 2.0
    assert host.started['a'][2] - host.started['a'][1] >= 2.0


def test_misses_suppressed_by_the_breaker_are_not_confirmed_early():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b'],
                    outcomes={'a': Outcome.MISSED}, costs={'a': [2.0, 5.0]})
    tracker = FakeTracker(suppressed=True)
    sched = make(host, tracker, interval=10.0, confirm_interval=1.0)
    stop = StopAfterRounds(clock, tracker, 3)
    sched.run(stop)
    assert host.started['a'] == [1000.0, 1010.0, 1020.0]
    assert stop.waits == [8.0, 5.0, 5.0]


def test_an_answer_ends_the_confirmations():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a'],
                    outcomes={'a': [Outcome.MISSED, Outcome.OK]},
                    costs={'a': [2.0, 0.0]})
    tracker = FakeTracker()
    sched = make(host, tracker, interval=10.0, confirm_interval=1.0)
    stop = StopAfterRounds(clock, tracker, 3)
    sched.run(stop)
    assert host.started['a'] == [1000.0, 1003.0, 1013.0]
    assert stop.waits == [1.0, 10.0, 10.0]


def test_last_progress_is_the_end_of_the_last_completed_round():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a'], ping_cost=0.5)
    sched = make(host, interval=10.0, ping_timeout=2)
    sched.ensure_connected()
    # What the liveness check reads.
    assert (sched.interval, sched.ping_timeout) == (10.0, 2)
    assert sched.last_progress_at is None
    sched.sweep()
    assert sched.last_progress_at == 1000.5

    def broken():
        raise libvirt_host.LibvirtUnavailable('EOF')

    host.list_domains = broken
    clock.now = 1100.0
    sched.sweep()
    assert sched.last_progress_at == 1000.5


def test_a_ping_that_raises_affects_that_domain_alone(caplog):
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b'])
    host.errors = {'a': TypeError('bad argument')}
    tracker = FakeTracker()
    sched = make(host, tracker)
    sched.ensure_connected()
    for _ in range(3):
        sched.sweep()
    assert [set(r) for r in tracker.rounds] == [{'b'}] * 3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and 'vm-a (a)' in errors[0].getMessage()



def test_agents_already_reported_never_hold_up_a_confirmation():
    clock = FakeClock()
    old = ['old1', 'old2', 'old3']
    host = FakeHost(clock, domains=old + ['new', 'ok'],
                    outcomes={u: Outcome.MISSED for u in old})
    tracker = FakeTracker(threshold=1)
    sched = make(host, tracker, interval=0.01, confirm_interval=0.0,
                 max_concurrent_pings=5)
    sched.ensure_connected()
    sched.sweep()                        # old1..3 reported on their miss
    tracker.threshold = 3
    host.outcomes['new'] = Outcome.MISSED
    hung = eventlet_event.Event()
    host.hangs = {u: hung for u in old}
    sched.sweep()                        # new misses; old1..3 hang
    sched.sweep()                        # new is confirmed all the same
    assert len(host.started['new']) == 3
    assert sum(len(host.started[u]) for u in old) == 1 + 3, (
        'the silent lane has one slot')
    hung.send()



class NativeHost(FakeHost):
    """Pings that block their native thread, as libvirt's do."""

    def ping(self, domain, timeout):
        if domain.uuid in self.errors:
            raise self.errors[domain.uuid]
        time.sleep(0.01)
        return ping_outcome.PingResult(Outcome.OK, 'ok', 0.0, 0.01)


def test_pings_run_on_native_threads_that_never_log(caplog):
    # Log handlers take green locks under eventlet: a native thread that
    # logs can deadlock the hub. A failed ping is logged on the green side.
    clock = FakeClock()
    host = NativeHost(clock, domains=['a', 'b', 'c'])
    host.errors = {'a': TypeError('bad argument')}
    tracker = FakeTracker()
    sched = scheduler_mod.Scheduler(
        host, tracker, interval=2.0, ping_timeout=1, max_concurrent_pings=5,
        clock=clock, execute=direct, native_pings=True)
    sched.ensure_connected()
    caplog.set_level(logging.DEBUG)
    with eventlet.Timeout(10):
        sched.sweep()
    assert set(tracker.rounds[0]) == {'b', 'c'}
    assert any('Cannot ping domain vm-a' in r.getMessage()
               for r in caplog.records)
    assert {r.thread for r in caplog.records} == {threading.get_ident()}


# -- I/O counters of the domains that missed --------------------------------------

class FakeStats:
    """libvirt_stats.collect: counters of the domains asked for; each call
    waits for ``release`` when one is given."""

    def __init__(self, release=None, fail=None):
        self.calls = []
        self.release = release
        self.fail = fail
        self.ended = 0

    def __call__(self, conn, domains):
        self.calls.append((conn, list(domains)))
        if self.release is not None:
            self.release.wait()
        self.ended += 1
        if self.fail is not None:
            raise self.fail
        return libvirt_stats.Collected(
            {dom[len('dom-'):]: 'counters of ' + dom for dom in domains}, {})


def with_stats(host, tracker, stats, timeout=1.0, **kwargs):
    snapshots = counters_mod.CounterSnapshots(direct, timeout, stats)
    return make(host, tracker, counter_snapshots=snapshots, **kwargs)


def test_the_counters_of_domains_that_missed_go_with_the_round():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b', 'c'],
                    outcomes={'a': Outcome.MISSED, 'b': Outcome.MISSED})
    tracker = FakeTracker(corroborate={'a', 'c'})
    stats = FakeStats()
    sched = with_stats(host, tracker, stats)
    sched.ensure_connected()

    sched.sweep()

    # One call, for what the tracker wants of the domains that missed.
    assert stats.calls == [('conn', ['dom-a'])]
    assert tracker.counters == [{'a': 'counters of dom-a'}]


def test_no_stats_call_when_nobody_missed_or_nobody_is_wanted():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b'],
                    outcomes={'b': Outcome.MISSED})
    tracker = FakeTracker(corroborate={'a'})
    stats = FakeStats()
    sched = with_stats(host, tracker, stats)
    sched.ensure_connected()

    sched.sweep()

    assert stats.calls == []
    assert tracker.counters == [{}]


def test_a_failed_stats_call_costs_the_round_nothing(caplog):
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b'],
                    outcomes={'a': Outcome.MISSED})
    tracker = FakeTracker(corroborate={'a'})
    for failure in (libvirt_stats.StatsUnavailable('connection reset'),
                    KeyError('block.0.name')):
        stats = FakeStats(fail=failure)
        sched = with_stats(host, tracker, stats)
        sched.ensure_connected()
        sched.sweep()
        assert set(tracker.rounds[-1]) == {'a', 'b'}
        assert tracker.counters[-1] == {}


def test_the_stats_wait_is_bounded_by_the_ping_timeout():
    clock = FakeClock()
    host = FakeHost(clock)
    sched = make(host, ping_timeout=3)
    assert sched.counter_snapshots.timeout == 3


def test_a_ping_libvirt_holds_behind_another_agent_command_never_holds_the_round(
        monkeypatch):
    # libvirt holds a guest-ping up to 30 s while a freeze or a quiesced
    # snapshot holds the agent: the round waits for its answering lane
    # only a little longer than the ping timeout.
    monkeypatch.setattr(scheduler_mod, '_ANSWERING_SLACK', 0.05)
    clock = FakeClock()
    held = eventlet_event.Event()
    host = FakeHost(clock, domains=['held', 'other'], hangs={'held': held})
    tracker = FakeTracker()
    sched = make(host, tracker, ping_timeout=0.05)
    sched.ensure_connected()
    with eventlet.Timeout(5):
        sched.sweep()
        sched.sweep()
    assert [sorted(r) for r in tracker.rounds] == [['other'], ['other']]
    assert len(host.started['held']) == 1, 'never pinged twice'
    held.send()
    eventlet.sleep(0)
    sched.sweep()
    assert tracker.rounds[2]['held'].outcome is Outcome.OK, (
        'applied with the round in which it ends')


def test_a_busy_agent_is_not_confirmed_as_a_miss():
    clock = FakeClock()
    host = FakeHost(clock, domains=['busy'], outcomes={'busy': Outcome.BUSY})
    tracker = FakeTracker()
    sched = make(host, tracker)
    sched.ensure_connected()
    started = clock.now
    sched.sweep()
    assert tracker.rounds[0]['busy'].outcome is Outcome.BUSY
    assert sched.next_round_at(started) == started + sched.interval


def test_a_freeze_past_the_frozen_grace_reaches_the_tracker_as_a_miss(
        caplog):
    caplog.set_level(logging.INFO, logger='monitor')
    clock = FakeClock()
    host = FakeHost(clock, domains=['frozen'])
    frozen = ping_outcome.PingResult(Outcome.OK, 'ok', 0.0, 0.01,
                                     frozen=True)
    host.ping = lambda domain, timeout: frozen._replace(
        started_at=clock.now)
    tracker = FakeTracker()
    sched = make(host, tracker, host_operations=host_operations_mod
                 .HostOperations(frozen_grace=10))
    sched.ensure_connected()
    sched.sweep()
    clock.now += 11
    sched.sweep()
    first, late = (r['frozen'] for r in tracker.rounds)
    assert first.outcome is Outcome.OK
    assert (late.outcome, late.detail) == (Outcome.MISSED,
                                           'filesystems frozen for 11 s')
    assert caplog.messages == [
        'Domain vm-frozen (frozen): filesystems frozen; not counted as '
        'failing for up to 10 s']


def test_a_miss_the_tracker_did_not_count_starts_no_confirmation():
    # The domain was paused for maintenance (or forgotten) while its ping
    # ran: the tracker gives no threshold for it.
    class Uncounted(FakeTracker):
        def apply_round(self, results, counters_of=None):
            outcome = super().apply_round(results, counters_of)
            return outcome._replace(thresholds={})

    clock = FakeClock()
    host = FakeHost(clock, domains=['a'], outcomes={'a': Outcome.MISSED})
    sched = make(host, Uncounted())
    sched.ensure_connected()

    stats = sched.sweep()

    assert stats.missed == 1
    assert stats.confirming == 0
    assert sched.next_round_at(clock.now) == clock.now + sched.interval


class RecordingFastConfirmation:
    """Stands in for FastConfirmation: records the confirmation pings it
    is handed and the domains still confirmed after each round."""

    def __init__(self, host):
        self.host = host
        self.confirmations = []
        self.settled = []

    def ping(self, domain, timeout):
        self.confirmations.append(domain.uuid)
        return self.host.ping(domain, timeout)

    def settle(self, confirming, names=None):
        self.settled.append(set(confirming))


def test_confirmation_pings_go_through_fast_confirmation_and_no_other():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a', 'b'],
                    outcomes={'a': [Outcome.MISSED, Outcome.MISSED,
                                    Outcome.OK]})
    tracker = FakeTracker()
    fast = RecordingFastConfirmation(host)
    sched = make(host, tracker, interval=10.0, fast_confirmation=fast)
    stop = StopAfterRounds(clock, tracker, 3)

    sched.run(stop)

    # The first miss came from the answering lane, the next two pings of
    # 'a' were its confirmations; its answer ended them.
    assert fast.confirmations == ['a', 'a']
    assert fast.settled == [{'a'}, {'a'}, set()]
