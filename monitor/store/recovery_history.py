"""When each domain was last recovered: the recovery budget's memory.

A small JSON file, ``<state_path>/recovery.json`` ({uuid: [epoch seconds]}),
rewritten whole (temporary file, fsync, rename; mode 0600) after each
decision to act. It survives a daemon restart whatever ``[cache] backend``
is, and a domain that was restarted (destroyed, started: its health record
forgotten for a moment) keeps its budget: a guest that dies in a loop is
not reset more than ``[recovery] max_actions`` times per window because
the daemon or the domain started over.

Times older than the window are dropped when the file is written, so it
holds at most max_actions entries per domain recovered within the window.
Used from green threads only (a few hundred bytes written per recovery).

Clock steps. Within a run the budget counts on a clock that never steps
(seconds since boot, suspends included): a wall clock stepped back (or
forward) neither refills nor drains it. The times are kept as wall times,
the only ones that still mean something after a restart, together with
the readings of both clocks at one instant; when the wall clock has moved
by more than the other one since, by ``STEP_FLOOR`` or more, the kept
times are moved by the same step, so each keeps its real age and the
caller (who reads the wall clock) sees them as if the clock had never
stepped. The file holds the moved times. At start, a time after now (the
clock stepped back while the daemon was down) counts as taken now.

A bad file. The file is the daemon's own, but a full disk, a restore or a
hand edit can leave anything in it. Only sane values are taken: domain
UUIDs as keys, lists of finite epoch seconds from 0 to ``LATEST``, at most
``MAX_TIMES`` per domain (the newest), a file of at most
``MAX_FILE_BYTES``; anything else is left out, said in one warning line.
Why not refuse to start instead: this daemon is also what notifies the HA
engine, and one that does not start leaves every guest of the host
unwatched, while a value left out costs at most ``max_actions`` more
actions on one domain within one window.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time

from monitor.store import state_dir

LOG = logging.getLogger(__name__)

FILE_NAME = 'recovery.json'

# 2100-01-01T00:00:00Z: no action of this daemon is stamped later.
LATEST = 4102444800.0
# The largest [recovery] max_actions: no budget needs more times.
MAX_TIMES = 1000
# A thousand domains with MAX_TIMES each fit; anything larger is not ours.
MAX_FILE_BYTES = 32 * 1024 * 1024
# Longest integer (in digits) read as a number: beyond it, a value is no
# time, and Python's int() of 4300 digits or more would raise.
_MAX_DIGITS = 20
# Seconds the wall clock must move apart from the monotonic one to count
# as stepped: below it, the gap is reading jitter or NTP's slewing.
STEP_FLOOR = 1.0
# Steps from this size on are logged; smaller ones (a slewing NTP adds up
# to one now and then) are followed quietly.
STEP_TO_SAY = 60.0


def _since_boot():
    """Seconds since boot, time the host spent suspended included: a
    suspend is no clock step."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# Linux has it; elsewhere the monotonic clock, which stops in a suspend.
_MONOTONIC = _since_boot if hasattr(time, 'CLOCK_BOOTTIME') \
    else time.monotonic

_UUID = re.compile(r'^[0-9a-fA-F-]{1,64}$')


class _LongInteger:
    """An integer of the file too long to be a time, kept by its size."""

    def __init__(self, digits):
        self.digits = digits

    def __repr__(self):
        return 'an integer of %d digits' % self.digits


def _parse_int(text):
    if len(text.lstrip('-')) > _MAX_DIGITS:
        return _LongInteger(len(text.lstrip('-')))
    return int(text)


class RecoveryHistory:

    def __init__(self, path, window, clock=time.time, monotonic=_MONOTONIC):
        self.path = path
        self.window = window
        self._clock = clock
        self._monotonic = monotonic
        # One instant on both clocks: the kept times are wall times as the
        # wall clock ran then.
        self._wall_at = clock()
        self._monotonic_at = monotonic()
        self._times = self._load(self._wall_at)

    @classmethod
    def from_conf(cls, conf):
        return cls(os.path.join(conf.state_path, FILE_NAME),
                   conf.recovery.window)

    def _load(self, now):
        try:
            data = json.loads(_read(self.path), parse_int=_parse_int)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            # Refusing to start over a lost budget would leave every guest
            # unwatched (module doc); an empty one allows at most
            # max_actions more per domain. Said loudly.
            LOG.error('Cannot read the recovery history %s (%s); every '
                      'domain starts with a full recovery budget',
                      self.path, exc)
            return {}
        if not isinstance(data, dict):
            LOG.error('Cannot read the recovery history %s (not a JSON '
                      'object); every domain starts with a full recovery '
                      'budget', self.path)
            return {}
        times, dropped = _sane(data, now)
        if dropped:
            LOG.warning('Recovery history %s: left out %d value(s) that '
                        'are not recovery times (first: %s); the budget '
                        'of the domains concerned counts the others only',
                        self.path, len(dropped), dropped[0])
        return times

    def get(self, uuid):
        """The domain's action times (epoch seconds on the wall clock as
        it runs now), oldest first."""
        self._follow_clock_steps()
        return self._times.get(uuid, ())

    def put(self, uuid, times, now):
        """Keep ``times`` for the domain and write the file.

        :raises OSError: the file could not be written; the times are
            kept in memory all the same.
        """
        self._follow_clock_steps()
        self._times[uuid] = tuple(sorted(times))
        self._times = {
            key: kept for key, kept in (
                (key, tuple(t for t in values if t > now - self.window))
                for key, values in self._times.items())
            if kept}
        self._write()

    def _follow_clock_steps(self):
        """Move the kept times by the step the wall clock took since the
        last look, so each keeps its age on the monotonic clock."""
        wall, monotonic = self._clock(), self._monotonic()
        step = (wall - self._wall_at) - (monotonic - self._monotonic_at)
        if abs(step) < STEP_FLOOR:
            # Left to add up until it is a step: nothing is lost.
            return
        self._times = {key: tuple(t + step for t in values)
                       for key, values in self._times.items()}
        self._wall_at, self._monotonic_at = wall, monotonic
        if self._times and abs(step) >= STEP_TO_SAY:
            LOG.warning('The wall clock stepped by %+.0f s; the recovery '
                        'budgets count the actions by their real age',
                        step)

    def _write(self):
        data = json.dumps({k: list(v) for k, v in self._times.items()},
                          sort_keys=True).encode('utf-8')
        state_dir.write_private(self.path, data)


def _read(path):
    """The file's bytes. Raises OSError, or ValueError for a file that
    cannot be ours (not a regular file, too large)."""
    # Non-blocking: a FIFO in its place must not hang the start.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError('not a regular file')
        if info.st_size > MAX_FILE_BYTES:
            raise ValueError('%d bytes, more than %d'
                             % (info.st_size, MAX_FILE_BYTES))
        chunks = []
        size = 0
        while True:
            chunk = os.read(fd, 1024 * 1024)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise ValueError('more than %d bytes' % MAX_FILE_BYTES)
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b''.join(chunks)


def _sane(data, now):
    """({uuid: times} of the sane values of ``data``, [text of each value
    left out]). A time after ``now`` counts as ``now``."""
    times = {}
    dropped = []
    for key, values in data.items():
        if not _UUID.match(key):
            dropped.append('key %s' % _short(key))
            continue
        if not isinstance(values, list):
            dropped.append('domain %s: %s' % (key, _short(values)))
            continue
        kept = []
        for value in values:
            if _is_time(value):
                kept.append(min(float(value), now))
            else:
                dropped.append('domain %s: %s' % (key, _short(value)))
        if len(kept) > MAX_TIMES:
            dropped.append('domain %s: %d times beyond the newest %d'
                           % (key, len(kept) - MAX_TIMES, MAX_TIMES))
            kept = sorted(kept)[-MAX_TIMES:]
        if kept:
            times[key] = tuple(sorted(kept))
    return times, dropped


def _is_time(value):
    # bool is an int to Python, not a time to anyone; NaN fails every
    # comparison, infinities the bounds.
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 <= value <= LATEST)


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'
