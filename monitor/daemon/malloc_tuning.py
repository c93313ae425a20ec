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
1,000 rounds with both, +6.4 MiB with neither. What still grew was
glibc's per-thread cache of freed chunks (tcache): each of the daemon's
~140 native threads keeps its own, a trim cannot return it, and with it
off the heap stayed flat to the byte over 160 rounds at 5,000 guests, at
no CPU cost (docs/detection-floor.md). Only a tunable read when the
process starts turns it off, so the console script restarts itself once,
before anything heavy is imported, with ``GLIBC_TUNABLES`` set
(:func:`restart_without_tcache`).

``MALLOC_ARENA_MAX`` or ``GLIBC_TUNABLES`` in the environment wins over
what the daemon would set: an operator who set one knows their allocator
(``GLIBC_TUNABLES=`` empty keeps glibc's defaults and the daemon from
restarting). Elsewhere than glibc (musl) nothing is done.
"""

import ctypes
import ctypes.util
import os
import sys

ARENAS = 2
# Seconds between two trims: a trim walks every arena (milliseconds for
# the daemon's ~100 MiB) while the threads that allocate wait.
TRIM_INTERVAL = 60.0
# glibc's mallopt() parameter for the arena limit (malloc.h).
_M_ARENA_MAX = -8
_DETECT = object()
# glibc reads it only when a process starts.
TUNABLES = 'glibc.malloc.tcache_count=0'
# sys.argv[0] of a script read from standard input or typed in: run again,
# it would find nothing to read.
_NO_SCRIPT = ('', '-')


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


def restart_without_tcache(environ=os.environ, libc=_DETECT,
                           execve=os.execve, orig_argv=None, script=None):
    """Run this process's command line (``sys.orig_argv``: interpreter
    options included) again in place (same PID, as systemd expects) with
    glibc's per-thread cache off; returns False, having done nothing,
    when that is not wanted or not possible.

    Call first thing, before any thread or file the new image would lose.
    The restarted process finds ``GLIBC_TUNABLES`` set and goes on.
    """
    if 'GLIBC_TUNABLES' in environ:
        return False
    script = sys.argv[0] if script is None else script
    if script in _NO_SCRIPT or not sys.executable:
        return False
    if libc is _DETECT:
        libc = glibc()
    if libc is None:
        return False
    args = list(sys.orig_argv if orig_argv is None else orig_argv)
    if not args:
        return False
    environment = dict(environ, GLIBC_TUNABLES=TUNABLES)
    try:
        execve(sys.executable, args, environment)
    except OSError:
        return False
    # Only a fake execve comes back.
    return True


def settings(arenas, environ=os.environ):
    """One line for the log: what the daemon's malloc runs with."""
    return 'arenas %s, GLIBC_TUNABLES %s' % (
        arenas if arenas is not None
        else environ.get('MALLOC_ARENA_MAX') or 'not limited',
        environ.get('GLIBC_TUNABLES', 'not set') or 'empty')


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
