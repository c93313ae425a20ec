"""How glibc's malloc keeps the daemon's memory.

glibc gives threads that allocate at the same time arenas of their own, up
to eight per core, and keeps freed memory inside each arena for reuse. The
daemon runs tens of native threads (one per ping in flight, libvirt's
event loop, the listing) that allocate a little and free it on another
thread, so the resident size creeps up for hours while Python's own
objects stay flat. Measured on the simulated edge (5,000 guests, 50 pings
in flight, guests failing and recovering, bench/soak.py): with two arenas
RSS started 20 MiB lower. Giving free pages back to the kernel once a
minute (``malloc_trim``) on top did not stop the creep: +5.9 MiB over
1,000 rounds with both, +6.4 MiB with neither. What still grows is
glibc's per-thread cache of freed chunks (tcache), which a trim cannot
return and which only a tunable read at process start turns off; the
daemon does not set it yet (docs/detection-floor.md).

``MALLOC_ARENA_MAX`` in the environment wins over the arena limit: an
operator who set it knows their allocator. Elsewhere than glibc (musl)
nothing is done.
"""

import ctypes
import ctypes.util
import os

ARENAS = 2
# Seconds between two trims: a trim walks every arena (milliseconds for
# the daemon's ~100 MiB) while the threads that allocate wait.
TRIM_INTERVAL = 60.0
# glibc's mallopt() parameter for the arena limit (malloc.h).
_M_ARENA_MAX = -8
_DETECT = object()


def glibc():
    """The C library when it is glibc (it has malloc_trim), else None."""
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if hasattr(libc, 'malloc_trim') else None


def limit_arenas(arenas=ARENAS, environ=os.environ, libc=_DETECT):
    """Limit glibc's malloc arenas to ``arenas``, before any native thread
    starts; returns the limit set, or None when the environment already
    sets one or the C library has no such setting."""
    if environ.get('MALLOC_ARENA_MAX'):
        return None
    if libc is _DETECT:
        libc = glibc()
    mallopt = getattr(libc, 'mallopt', None)
    if mallopt is None:
        return None
    return arenas if mallopt(_M_ARENA_MAX, arenas) == 1 else None


class Trimmer:
    """Gives memory malloc holds free back to the kernel, at most once
    per ``interval`` seconds."""

    def __init__(self, clock, interval=TRIM_INTERVAL, libc=_DETECT):
        self._clock = clock
        self.interval = interval
        self._libc = glibc() if libc is _DETECT else libc
        self._last = clock()
        self.trims = 0

    def maybe_trim(self):
        """Trim when ``interval`` has passed since the last; returns
        whether it did."""
        trim = getattr(self._libc, 'malloc_trim', None)
        now = self._clock()
        if trim is None or now - self._last < self.interval:
            return False
        self._last = now
        trim(0)
        self.trims += 1
        return True
