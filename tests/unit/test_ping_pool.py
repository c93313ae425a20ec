"""Blocking calls on native threads, their outcomes drained by one green
thread."""

import threading
import time

import eventlet

from monitor import ping_pool


def drain(pool):
    ended = []
    with eventlet.Timeout(10):
        while pool.in_flight:
            ended.extend(pool.wait())
    return ended


def test_every_call_returns_its_value_or_its_exception_with_its_tag():
    pool = ping_pool.NativePool(3)

    def fails():
        raise ValueError('bad reply')

    pool.submit(lambda a, b: a + b, (1, 2), 'sum')
    pool.submit(fails, (), 'fails')
    ended = {tag: (ok, value) for tag, ok, value in drain(pool)}
    assert ended['sum'] == (True, 3)
    ok, exc = ended['fails']
    assert not ok and isinstance(exc, ValueError)


def test_calls_run_on_native_threads_at_most_size_at_once():
    pool = ping_pool.NativePool(4)
    lock = threading.Lock()
    running = [0, 0]
    threads = set()

    def call():
        with lock:
            running[0] += 1
            running[1] = max(running)
            threads.add(threading.get_ident())
        time.sleep(0.02)  # a blocking libvirt call
        with lock:
            running[0] -= 1

    for i in range(12):
        pool.submit(call, (), i)
    assert len(drain(pool)) == 12
    assert running[1] == 4
    assert threading.get_ident() not in threads


def test_a_blocking_call_leaves_the_hub_free():
    pool = ping_pool.NativePool(1)
    ticks = []

    def ticker():
        for _ in range(5):
            ticks.append(1)
            eventlet.sleep(0.01)

    pool.submit(time.sleep, (0.2,), 'slow')
    eventlet.spawn(ticker)
    drain(pool)
    assert len(ticks) == 5


def test_the_green_pool_runs_calls_through_execute():
    calls = []

    def execute(func, *args):
        calls.append(func)
        return func(*args)

    pool = ping_pool.GreenPool(execute)
    pool.submit(max, (1, 5), 'max')
    assert drain(pool) == [('max', True, 5)]
    assert calls == [max]
