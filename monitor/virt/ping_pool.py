"""Where the scheduler's blocking libvirt calls run, and how their
outcomes come back.

A pool runs at most ``size`` calls at once, in the order submitted, and
posts each outcome, ``(tag, ok, value)`` (the return value, or the
exception when ``ok`` is False), to a ``Mailbox`` that one green thread
empties. A call also holds the ``shared`` semaphores, taken in the order
given (every pool must list them in one order), so that several pools
together stay within one budget.

``NativePool`` runs calls on native threads of its own, which take the
next call as soon as one ends: a lane of pings runs at full speed without
the hub. The threads only run the call and put the outcome on a
``native_queue.NativeQueue``; they never log or touch anything green. The
green side takes outcomes once per ``linger`` at most, every one at once,
which costs the hub far less than
``concurrency.run_native`` per call (a green event, a queue hand-off and a
wake-up each).

``GreenPool`` runs each call in a green thread through an ``execute``
function, for tests (with a direct call) and for callers that have no
native threads.
"""

import time

from monitor import concurrency
from monitor.virt import native_queue

_native_threading = concurrency.original('threading')
_native_queue = concurrency.original('queue')


class Mailbox:
    """Outcomes posted from any thread, taken by one green thread."""

    def __init__(self, linger=0.0, clock=time.monotonic):
        # Seconds between two takes at least: outcomes that follow the
        # last take closer than that wait for the rest of it and are taken
        # together. Each wake-up of the green side costs hundreds of
        # microseconds (the hub, the pipe, the GIL taken from busy native
        # threads), so a stream of pings would cost more in wake-ups than
        # in pings; an outcome after a quiet spell (a confirmation, a
        # small host) is taken at once.
        self.linger = linger
        self._clock = clock
        self._taken_at = None
        self._queue = native_queue.NativeQueue()
        # post(outcome), from any thread: the queue's own put, one call
        # less per ping.
        self.post = self._queue.put

    def wait(self):
        """Block the calling green thread until something was posted;
        return everything posted so far."""
        while not self._queue:
            self._queue.wait()
        if self.linger and self._taken_at is not None:
            pause = self._taken_at + self.linger - self._clock()
            if pause > 0:
                concurrency.sleep(pause)
        self._taken_at = self._clock()
        return self._queue.take_all()

    def close(self):
        self._queue.close()


class Slots:
    """A semaphore for native threads where pools with priority go
    first: while one of them waits, the others do not take a freed slot.
    (A plain semaphore lets a thread that releases a slot take it again
    at once, so a busy pool could keep a waiting one out for long.)"""

    def __init__(self, value):
        # The lock itself, not a condition, guards the common path: a
        # native lock's ``with`` runs in C, a condition's in Python.
        self._lock = lock = _native_threading.Lock()
        # One condition per kind of waiter, on one lock: a freed slot wakes
        # one thread that can take it, not every waiting thread (tens of
        # pings wait while hung agents hold slots; waking them all for
        # each slot cost more CPU than the pings).
        self._first = _native_threading.Condition(lock)
        self._others = _native_threading.Condition(lock)
        self._free = value
        self._first_waiting = 0
        self._others_waiting = 0

    def acquire(self, priority=False):
        with self._lock:
            if self._free and not (self._first_waiting
                                   or self._others_waiting):
                # Nobody waits: nobody to hand on to (once per ping).
                self._free -= 1
                return
            if priority:
                self._first_waiting += 1
                try:
                    while not self._free:
                        self._first.wait()
                finally:
                    self._first_waiting -= 1
            else:
                self._others_waiting += 1
                try:
                    while not self._free or self._first_waiting:
                        self._others.wait()
                finally:
                    self._others_waiting -= 1
            self._free -= 1
            self._hand_on()

    def release(self):
        with self._lock:
            self._free += 1
            if self._first_waiting or self._others_waiting:
                self._hand_on()

    def _hand_on(self):
        # Wake as many waiters as slots are free, priority first; one
        # woken for nothing (another thread took the slot) waits again,
        # and whoever took it hands on what is left.
        if not self._free:
            return
        if self._first_waiting:
            self._first.notify(self._free)
        elif self._others_waiting:
            self._others.notify(self._free)


class NativePool:
    """At most ``size`` calls at once on native threads. With
    ``priority``, its calls take the ``shared`` slots before those of
    pools without."""

    def __init__(self, size, mailbox, shared=(), priority=False):
        self.size = size
        self._mailbox = mailbox
        self._shared = tuple(shared)
        self._priority = priority
        self._requests = _native_queue.SimpleQueue()
        self._threads = []

    @staticmethod
    def semaphore(value):
        return Slots(value)

    def submit(self, func, args, tag):
        if len(self._threads) < self.size:
            thread = _native_threading.Thread(target=self._work, daemon=True,
                                              name='ping')
            thread.start()
            self._threads.append(thread)
        self._requests.put((func, args, tag))

    def _work(self):
        while True:
            func, args, tag = self._requests.get()
            for slots in self._shared:
                slots.acquire(self._priority)
            try:
                outcome = (tag, True, func(*args))
            except Exception as exc:  # handed to the green side as is
                outcome = (tag, False, exc)
            finally:
                for slots in reversed(self._shared):
                    slots.release()
            self._mailbox.post(outcome)


class GreenPool:
    """At most ``size`` calls at once, each in a green thread, through
    ``execute``."""

    def __init__(self, size, mailbox, execute, shared=(), priority=False):
        # Green threads switch only where they wait: no pool can keep
        # another out, so ``priority`` changes nothing here.
        self.size = size
        self._mailbox = mailbox
        self._execute = execute
        self._shared = (concurrency.Semaphore(size),) + tuple(shared)

    @staticmethod
    def semaphore(value):
        return concurrency.Semaphore(value)

    def submit(self, func, args, tag):
        concurrency.spawn_n(self._work, func, args, tag)

    def _work(self, func, args, tag):
        for semaphore in self._shared:
            semaphore.acquire()
        try:
            outcome = (tag, True, self._execute(func, *args))
        except Exception as exc:  # handed to the waiter as is
            outcome = (tag, False, exc)
        finally:
            for semaphore in reversed(self._shared):
                semaphore.release()
        self._mailbox.post(outcome)
