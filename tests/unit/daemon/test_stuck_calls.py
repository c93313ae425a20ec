"""The calls recoveries gave up on: kept per domain until they return,
and said once when they do."""

import logging

from monitor.daemon import stuck_calls


class Call:
    def __init__(self, running_for):
        self.running_for = running_for
        self.done = False
        self.closed = False

    def close(self):
        self.closed = True


def test_a_stuck_call_is_kept_until_it_returns_then_said_once(caplog):
    caplog.set_level(logging.INFO, logger='monitor')
    calls = stuck_calls.StuckCalls(clock=lambda: 1000.0)
    call = Call(running_for=30.0)
    calls.add('u-1', 'vm-1', 'screenshot', call)

    assert calls.get('u-1').step == 'screenshot' and len(calls) == 1
    assert calls.snapshot() == [{'name': 'vm-1', 'uuid': 'u-1',
                                 'step': 'screenshot', 'since': 970.0}]

    call.done = True
    call.running_for = 95.0

    assert calls.get('u-1') is None and len(calls) == 0
    assert call.closed
    [said] = [r.getMessage() for r in caplog.records]
    assert said == ('Domain vm-1 (u-1): the screenshot that was stuck in '
                    'libvirt returned after 95 s; the domain can be '
                    'recovered again')
    calls.prune()
    assert len(caplog.records) == 1


def test_the_snapshot_lists_the_oldest_first():
    calls = stuck_calls.StuckCalls(clock=lambda: 1000.0)
    calls.add('u-2', 'vm-2', 'action', Call(running_for=5.0))
    calls.add('u-1', 'vm-1', 'console', Call(running_for=50.0))

    assert [s['uuid'] for s in calls.snapshot()] == ['u-1', 'u-2']
