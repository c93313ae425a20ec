"""Items from native threads reach one green thread, in order, and the
native side never blocks."""

import eventlet
from eventlet import patcher

from monitor.virt import native_queue

native_threading = patcher.original('threading')


def test_items_come_out_in_order_and_once():
    queue = native_queue.NativeQueue()
    for n in range(3):
        queue.put(n)

    assert len(queue) == 3
    assert queue.take_all() == [0, 1, 2]
    assert queue.take_all() == []
    queue.close()


def test_a_green_waiter_wakes_when_a_native_thread_puts():
    queue = native_queue.NativeQueue()
    started = native_threading.Event()

    def later():
        started.wait(10)
        queue.put('x')

    thread = native_threading.Thread(target=later, daemon=True)
    thread.start()

    def waiter():
        started.set()
        while not queue:
            queue.wait()
        return queue.take_all()

    with eventlet.Timeout(10):
        assert eventlet.spawn(waiter).wait() == ['x']
    thread.join(10)
    queue.close()


def test_wait_ends_after_its_timeout_when_nothing_comes():
    queue = native_queue.NativeQueue()

    with eventlet.Timeout(10):
        eventlet.spawn(queue.wait, 0.05).wait()

    assert queue.take_all() == []
    queue.close()


def test_a_sleeping_reader_flooded_never_blocks_the_native_side():
    queue = native_queue.NativeQueue()
    queue._asleep = True  # every put would write a wake-up byte

    def flood():
        for n in range(100_000):
            queue._asleep = True
            queue.put(n)

    thread = native_threading.Thread(target=flood, daemon=True)
    thread.start()
    thread.join(10)

    assert not thread.is_alive(), 'the native side blocked on a full pipe'
    assert queue.take_all() == list(range(100_000))
    queue.close()
