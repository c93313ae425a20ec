"""The I/O counters of guests that missed: one bounded stats call at a
time, never holding a round up for long."""

import logging

from monitor import concurrency
from monitor.daemon import counter_snapshots
from monitor.virt import stats as libvirt_stats


def direct(func, *args):
    return func(*args)


class FakeStats:
    """libvirt_stats.collect: counters of the domains asked for; each call
    waits for ``release`` when one is given."""

    def __init__(self, release=None, fail=None):
        self.calls = []
        self.release = release
        self.fail = fail

    def __call__(self, conn, domains):
        self.calls.append((conn, list(domains)))
        if self.release is not None:
            self.release.wait()
        if self.fail is not None:
            raise self.fail
        return libvirt_stats.Collected(
            {dom: 'counters of ' + dom for dom in domains}, {})


def test_a_late_stats_call_means_no_counters_and_one_call_in_flight(caplog):
    caplog.set_level(logging.INFO, logger='monitor')
    release = concurrency.Event()
    stats = FakeStats(release)
    snapshots = counter_snapshots.CounterSnapshots(direct, 0.05, stats)

    with concurrency.deadline(5):
        assert snapshots.take('conn', ['a']) == {}
        assert snapshots.take('conn', ['a']) == {}

    assert len(stats.calls) == 1, 'a second call while one is stuck'
    assert len([r for r in caplog.records
                if 'did not answer within' in r.getMessage()]) == 1

    release.send()
    concurrency.sleep(0)
    stats.release = None
    assert snapshots.take('conn', ['a']) == {'a': 'counters of a'}
    assert 'answer in time again' in caplog.text


def test_an_unexpected_stats_error_is_logged_once_per_kind(caplog):
    snapshots = counter_snapshots.CounterSnapshots(
        direct, 1.0, FakeStats(fail=AttributeError('x')))
    for _ in range(3):
        assert snapshots.take('conn', ['a']) == {}
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR
                and 'taking I/O counters' in r.getMessage()]) == 1


def test_no_call_without_a_connection_or_domains():
    stats = FakeStats()
    snapshots = counter_snapshots.CounterSnapshots(direct, 1.0, stats)
    assert snapshots.take(None, ['a']) == {}
    assert snapshots.take('conn', []) == {}
    assert stats.calls == []
