"""Blocking calls on native threads, their outcomes taken by one green
thread."""

import threading
import time

import eventlet

from monitor import concurrency
from monitor.virt import ping_pool


def take(mailbox, count):
    ended = []
    with eventlet.Timeout(10):
        while len(ended) < count:
            ended.extend(mailbox.wait())
    return ended


class Meter:
    """Counts calls running at once and the threads they ran on."""

    def __init__(self, seconds=0.02):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.threads = set()

    def __call__(self):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.get_ident())
        time.sleep(self.seconds)  # a blocking libvirt call
        with self.lock:
            self.running -= 1


def test_every_call_posts_its_value_or_its_exception_with_its_tag():
    mailbox = ping_pool.Mailbox()
    pool = ping_pool.NativePool(3, mailbox)

    def fails():
        raise ValueError('bad reply')

    pool.submit(lambda a, b: a + b, (1, 2), 'sum')
    pool.submit(fails, (), 'fails')
    ended = {tag: (ok, value) for tag, ok, value in take(mailbox, 2)}
    assert ended['sum'] == (True, 3)
    ok, exc = ended['fails']
    assert not ok and isinstance(exc, ValueError)


class Clock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


def test_an_outcome_after_a_quiet_spell_is_taken_at_once(monkeypatch):
    clock = Clock()
    pauses = []
    monkeypatch.setattr(ping_pool.concurrency, 'sleep', pauses.append)
    mailbox = ping_pool.Mailbox(linger=0.05, clock=clock)

    mailbox.post('first')
    assert mailbox.wait() == ['first']
    clock.now += 0.05
    mailbox.post('after a quiet spell')
    assert mailbox.wait() == ['after a quiet spell']
    assert pauses == []


def test_outcomes_streaming_in_are_taken_once_per_linger_together(
        monkeypatch):
    clock = Clock()
    pauses = []
    mailbox = ping_pool.Mailbox(linger=0.05, clock=clock)

    def pause(seconds):
        # What ends during the pause is taken with what woke the taker.
        pauses.append(round(seconds, 6))
        clock.now += seconds
        mailbox.post('during the pause')
    monkeypatch.setattr(ping_pool.concurrency, 'sleep', pause)

    mailbox.post('first')
    assert mailbox.wait() == ['first']
    clock.now += 0.01
    mailbox.post('soon after')
    assert mailbox.wait() == ['soon after', 'during the pause']
    assert pauses == [0.04]


def test_calls_run_on_native_threads_at_most_size_at_once():
    mailbox = ping_pool.Mailbox(linger=0.01)
    pool = ping_pool.NativePool(4, mailbox)
    meter = Meter()
    for i in range(12):
        pool.submit(meter, (), i)
    assert len(take(mailbox, 12)) == 12
    assert meter.most == 4
    assert threading.get_ident() not in meter.threads


def test_pools_sharing_a_semaphore_stay_within_it_together():
    mailbox = ping_pool.Mailbox()
    shared = ping_pool.NativePool.semaphore(3)
    wide = ping_pool.NativePool(3, mailbox, (shared,))
    narrow = ping_pool.NativePool(1, mailbox, (shared,))
    meter = Meter()
    for i in range(6):
        wide.submit(meter, (), i)
        narrow.submit(meter, (), -i)
    assert len(take(mailbox, 12)) == 12
    assert meter.most == 3


def test_a_blocking_call_leaves_the_hub_free():
    mailbox = ping_pool.Mailbox()
    pool = ping_pool.NativePool(1, mailbox)
    ticks = []

    def ticker():
        for _ in range(5):
            ticks.append(1)
            eventlet.sleep(0.01)

    pool.submit(time.sleep, (0.2,), 'slow')
    eventlet.spawn(ticker)
    take(mailbox, 1)
    assert len(ticks) == 5


def test_the_green_pool_runs_calls_through_execute_at_most_size_at_once():
    calls = []
    running = [0, 0]

    def execute(func, *args):
        calls.append(func)
        running[0] += 1
        running[1] = max(running)
        eventlet.sleep(0.001)
        running[0] -= 1
        return func(*args)

    mailbox = ping_pool.Mailbox()
    pool = ping_pool.GreenPool(2, mailbox, execute)
    for i in range(5):
        pool.submit(max, (i, 3), i)
    assert sorted(take(mailbox, 5)) == [(i, True, max(i, 3))
                                        for i in range(5)]
    assert running[1] == 2


def test_a_pool_with_priority_gets_the_next_free_slot():
    mailbox = ping_pool.Mailbox()
    slots = ping_pool.NativePool.semaphore(1)
    busy = ping_pool.NativePool(1, mailbox, (slots,))
    first = ping_pool.NativePool(1, mailbox, (slots,), priority=True)
    order = []

    def call(name):
        order.append(name)
        if name == 'busy' and len(order) == 1:
            first.submit(call, ('first',), 'first')
            time.sleep(0.05)             # it waits for this slot

    for i in range(3000):
        busy.submit(call, ('busy',), i)
    take(mailbox, 3001)
    assert order.index('first') == 1


def test_slots_shared_by_many_waiting_threads_are_never_exceeded_nor_lost():
    native = concurrency.original('threading')
    native_time = concurrency.original('time')
    slots = ping_pool.NativePool.semaphore(3)
    lock = native.Lock()
    held = [0, 0]  # now, most at once
    done = []

    def worker(priority):
        for _ in range(200):
            slots.acquire(priority)
            with lock:
                held[0] += 1
                held[1] = max(held[1], held[0])
            native_time.sleep(0.0002)
            with lock:
                held[0] -= 1
            slots.release()
        with lock:
            done.append(priority)

    threads = [native.Thread(target=worker, args=(i % 4 == 0,),
                             daemon=True) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # A wake-up lost on the way would leave threads waiting for ever.
    assert len(done) == 24
    assert held[0] == 0
    assert 2 <= held[1] <= 3
