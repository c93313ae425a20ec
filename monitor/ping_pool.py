"""Where blocking libvirt calls run for the scheduler's lanes.

``submit(func, args, tag)`` starts a call; ``wait()`` blocks the calling
green thread until at least one call has ended and returns every ended
one as ``(tag, ok, value)``: the return value, or the exception when
``ok`` is False.

``NativePool`` runs calls on its own native threads. They only run the
call, append the outcome to a deque and write one byte to a pipe; they
never log or touch anything green. One green thread drains many outcomes
per wake-up, which costs the hub far less than ``tpool.execute`` per call
(a green event, a queue hand-off and a wake-up each): at 5,000 guest-pings
per interval that is most of the monitor's CPU time.

``GreenPool`` runs each call in a green thread through an ``execute``
function, for tests (with a direct call) and for callers that have no
native threads.
"""

import collections
import os

import eventlet
from eventlet import event as eventlet_event
from eventlet import hubs
from eventlet import patcher

_native_threading = patcher.original('threading')
_native_queue = patcher.original('queue')
# Monkey-patched os.read/os.write would wait in the hub; the native
# threads must never, and the green side reads only what is there.
_native_os = patcher.original('os')


class NativePool:
    """At most ``size`` calls at once on native threads."""

    def __init__(self, size):
        self.size = size
        self.in_flight = 0
        self._requests = _native_queue.SimpleQueue()
        self._ended = collections.deque()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._threads = []

    def submit(self, func, args, tag):
        if len(self._threads) < self.size and \
                len(self._threads) <= self.in_flight:
            thread = _native_threading.Thread(
                target=self._work, name='ping-%d' % len(self._threads),
                daemon=True)
            thread.start()
            self._threads.append(thread)
        self.in_flight += 1
        self._requests.put((func, args, tag))

    # -- native threads --------------------------------------------------------

    def _work(self):
        while True:
            func, args, tag = self._requests.get()
            try:
                outcome = (tag, True, func(*args))
            except Exception as exc:  # handed to the green side as is
                outcome = (tag, False, exc)
            self._ended.append(outcome)
            try:
                _native_os.write(self._write_fd, b'x')
            except BlockingIOError:
                pass  # the pipe is full: the reader is due to wake anyway

    # -- green side --------------------------------------------------------------

    def wait(self):
        while not self._ended:
            hubs.trampoline(self._read_fd, read=True)
            try:
                while _native_os.read(self._read_fd, 4096):
                    pass
            except BlockingIOError:
                pass
        ended = []
        while True:
            try:
                ended.append(self._ended.popleft())
            except IndexError:
                break
        self.in_flight -= len(ended)
        return ended


class GreenPool:
    """Each call in its own green thread, through ``execute``."""

    def __init__(self, execute):
        self._execute = execute
        self.in_flight = 0
        self._ended = collections.deque()
        self._event = None

    def submit(self, func, args, tag):
        self.in_flight += 1
        eventlet.spawn_n(self._work, func, args, tag)

    def _work(self, func, args, tag):
        try:
            outcome = (tag, True, self._execute(func, *args))
        except Exception as exc:  # handed to the waiter as is
            outcome = (tag, False, exc)
        self._ended.append(outcome)
        if self._event is not None:
            event, self._event = self._event, None
            event.send()

    def wait(self):
        while not self._ended:
            self._event = eventlet_event.Event()
            self._event.wait()
        ended = list(self._ended)
        self._ended.clear()
        self.in_flight -= len(ended)
        return ended
