"""The native-thread bridge for calls that may never return: the caller
gives up when it chooses, the hub keeps running meanwhile, the call is
accounted for until it returns, and it never holds the shared pool or
the process's exit."""

import os
import subprocess
import sys
import time

import pytest
from eventlet import tpool

from monitor import concurrency

_native_threading = concurrency.original('threading')

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture
def gate():
    """A native event a call can block on; opened at the end of the test
    so that no thread outlives it."""
    before = concurrency.native_calls_running()
    event = _native_threading.Event()
    yield event
    event.set()
    deadline = time.monotonic() + 10
    while concurrency.native_calls_running() > before:
        assert time.monotonic() < deadline, 'a native call never ended'
        concurrency.sleep(0.01)


def test_a_call_that_returns_hands_back_its_value():
    call = concurrency.NativeCall(sum, (1, 2, 3))

    assert call.wait(10)
    assert call.done and call.result() == 6


def test_a_call_that_raises_hands_back_its_exception():
    call = concurrency.NativeCall(int, 'not a number')

    assert call.wait(10)
    with pytest.raises(ValueError):
        call.result()


def test_waiting_gives_up_at_the_timeout_and_the_hub_keeps_running(gate):
    ticks = []

    def ticking():
        while True:
            ticks.append(time.monotonic())
            concurrency.sleep(0.01)

    ticker = concurrency.spawn(ticking)
    call = concurrency.NativeCall(gate.wait)
    started = time.monotonic()
    try:
        returned = call.wait(0.3)
    finally:
        ticker.kill()

    assert not returned and not call.done
    assert 0.25 <= time.monotonic() - started < 5
    # Other green threads ran all along.
    assert len(ticks) >= 3
    with pytest.raises(RuntimeError):
        call.result()


def test_a_call_given_up_on_is_still_told_apart_once_it_returns(gate):
    call = concurrency.NativeCall(gate.wait)
    assert not call.wait(0.05)
    assert call.running_for >= 0.05

    gate.set()

    assert call.wait(10)
    assert call.result() is True
    ran = call.running_for
    time.sleep(0.05)
    assert call.running_for == ran  # no longer counting


def test_calls_not_returned_are_counted_until_they_return(gate):
    before = concurrency.native_calls_running()
    calls = [concurrency.NativeCall(gate.wait) for _ in range(3)]
    for call in calls:
        call.wait(0.01)

    assert concurrency.native_calls_running() == before + 3

    gate.set()
    for call in calls:
        assert call.wait(10)
    assert concurrency.native_calls_running() == before


def test_an_untracked_call_is_never_counted_as_running(gate):
    before = concurrency.native_calls_running()
    call = concurrency.NativeCall(gate.wait, tracked=False)
    call.wait(0.01)

    assert concurrency.native_calls_running() == before

    gate.set()
    assert call.wait(10)


def test_a_stuck_call_holds_neither_the_shared_pool_nor_the_exit(gate):
    stuck = [concurrency.NativeCall(gate.wait) for _ in range(4)]

    call = concurrency.NativeCall(_native_threading.current_thread)
    assert call.wait(10)
    thread = call.result()

    # A thread of its own, which the interpreter does not wait for at
    # exit, never one of the pool the listings use; and the pool answers.
    assert thread.daemon and thread.name == 'native-call'
    assert thread not in tpool._threads
    assert concurrency.run_native(lambda: 'listed') == 'listed'
    assert not any(call.done for call in stuck)


def test_a_pool_call_abandoned_by_its_waiter_is_still_counted(gate):
    before = concurrency.native_calls_running()
    waiter = concurrency.spawn(concurrency.run_native, gate.wait)
    concurrency.sleep(0.1)

    waiter.kill()

    assert concurrency.native_calls_running() == before + 1
    gate.set()
    deadline = time.monotonic() + 10
    while concurrency.native_calls_running() > before:
        assert time.monotonic() < deadline
        concurrency.sleep(0.01)


STUCK_PROGRAM = '''
import threading
from monitor import concurrency
concurrency.exit_after(0.5, 7, 'gave up')
threading.Thread(target=threading.Event().wait).start()  # never ends
'''


def test_exit_after_ends_a_process_that_would_never_end():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, '-W', 'ignore', '-c',
                           STUCK_PROGRAM], cwd=REPO, capture_output=True,
                          text=True, timeout=30)

    assert proc.returncode == 7
    assert proc.stderr == 'guest-health-monitor: gave up\n'
    assert time.monotonic() - started < 10
