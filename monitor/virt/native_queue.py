"""Items handed from native threads to one green thread.

A deque holds the items: appends and pops are atomic and take no lock,
whereas the monkey-patched queue module would hand a native thread a
green lock. A pipe wakes the green thread: the native side writes one
byte only while the green side sleeps on it, and never blocks (a full
pipe already means a wake-up is due).
"""

import collections
import os

from monitor import concurrency

# The daemon monkey-patches os: the green read() and write() wait in the
# hub instead of raising BlockingIOError, so the green side would block
# for ever on an empty pipe and a native thread on a full one.
_native_os = concurrency.original('os')


class NativeQueue:
    """Put from any thread, taken by one green thread."""

    def __init__(self):
        self._items = collections.deque()
        self._asleep = False
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def __len__(self):
        return len(self._items)

    def put(self, item):
        """Any thread; never blocks, never logs."""
        self._items.append(item)
        if self._asleep:
            self._asleep = False
            try:
                _native_os.write(self._write_fd, b'x')
            except BlockingIOError:
                pass  # the pipe is full: the reader is due to wake anyway

    def wait(self, timeout=None):
        """Block the calling green thread until something is queued, at
        most ``timeout`` seconds (None: no bound). May return early with
        nothing queued: callers look again."""
        if self._items:
            return
        self._asleep = True
        if not self._items:  # put before it saw us asleep
            concurrency.wait_readable(self._read_fd, timeout)
        self._asleep = False
        try:
            while _native_os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def take_all(self):
        """Every item queued, oldest first, without waiting."""
        return take_all(self._items)

    def close(self):
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def take_all(items):
    """Pop every item of the deque ``items``, oldest first; items other
    threads append meanwhile are taken too or left for the next call,
    never lost."""
    taken = []
    while True:
        try:
            taken.append(items.popleft())
        except IndexError:
            return taken
