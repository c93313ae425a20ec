"""The sweep loop: parallel pings, start-to-start interval, reconnects."""

import logging

import eventlet

from monitor import libvirt_host
from monitor import ping_outcome
from monitor import scheduler as scheduler_mod
from monitor.ping_outcome import Outcome


def info(uuid):
    return libvirt_host.DomainInfo(uuid, 'vm-' + uuid, True, False,
                                   object())


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeHost:
    uri = 'qemu:///system'

    def __init__(self, clock, domains=(), outcomes=None, ping_cost=0.0):
        self.clock = clock
        self.domains = [info(u) for u in domains]
        self.outcomes = outcomes or {}
        self.ping_cost = ping_cost
        self.connect_failures = 0
        self.connects = 0
        self.closed = 0
        self.in_flight = set()
        self.max_in_flight = 0
        self.overlaps = []

    def connect(self, on_close=None):
        if self.connect_failures:
            self.connect_failures -= 1
            raise libvirt_host.LibvirtUnavailable('socket missing')
        self.connects += 1
        return 'conn'

    def close(self):
        self.closed += 1

    def list_domains(self):
        return list(self.domains)

    def ping(self, uuid, timeout):
        if uuid in self.in_flight:
            self.overlaps.append(uuid)
        self.in_flight.add(uuid)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        eventlet.sleep(0)  # let the other green threads start theirs
        self.in_flight.discard(uuid)
        self.clock.now += self.ping_cost
        outcome = self.outcomes.get(uuid, Outcome.OK)
        return ping_outcome.PingResult(outcome, outcome.value, 0.0, 0.0)


class FakeTracker:
    def __init__(self):
        self.rounds = []

    def reconcile(self, domains):
        return list(domains)

    def apply_round(self, results):
        self.rounds.append(dict(results))
        return False


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
    options = dict(interval=2.0, ping_timeout=1, max_concurrent_pings=5,
                   reconnect_initial_delay=1.0, reconnect_max_delay=8.0)
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


def test_pings_in_flight_are_bounded_by_max_concurrent_pings():
    clock = FakeClock()
    host = FakeHost(clock, domains=[str(i) for i in range(8)])
    sched = make(host, max_concurrent_pings=2)
    sched.ensure_connected()
    sched.sweep()
    assert host.max_in_flight == 2


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


def test_a_slow_sweep_is_followed_by_the_next_at_once():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a'], ping_cost=5.0)
    tracker = FakeTracker()
    sched = make(host, tracker, interval=2.0)
    stop = StopAfter(clock, 1)
    # No wait is recorded for overrunning sweeps; stop after the first
    # real wait, which never comes while sweeps overrun.
    for _ in range(3):
        started = clock.now
        sched.ensure_connected()
        sched.sweep()
        assert clock.now - started == 5.0
    assert stop.waits == []
    assert len(tracker.rounds) == 3


def test_libvirt_down_at_start_is_retried_with_capped_backoff(caplog):
    clock = FakeClock()
    host = FakeHost(clock, domains=['a'])
    host.connect_failures = 5
    sched = make(host)
    caplog.set_level(logging.INFO)
    delays = [sched.ensure_connected() for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 0]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, 'one log line per outage, not per attempt'
    assert sched.connected


def test_a_lost_connection_is_rebuilt_before_the_next_sweep():
    clock = FakeClock()
    host = FakeHost(clock, domains=['a'])
    sched = make(host)
    sched.ensure_connected()
    sched.connection_lost('EOF')
    assert not sched.connected and host.closed == 1
    assert sched.ensure_connected() == 0
    assert host.connects == 2


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
    calls = []

    def flaky_on_connected(conn):
        calls.append(conn)
        if len(calls) == 1:
            raise RuntimeError('cache backend down')

    tracker = FakeTracker()
    sched = make(host, tracker, on_connected=flaky_on_connected)
    stop = StopAfter(clock, 2)
    sched.run(stop)
    assert 'Unexpected error' in caplog.text
    assert len(tracker.rounds) == 1, 'the loop went on and swept'
