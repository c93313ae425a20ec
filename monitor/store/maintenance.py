"""Maintenance pauses kept across restarts: which domains an operator
paused (or the whole host), why, and until when.

A small JSON file, ``<state_path>/maintenance.json``, rewritten whole
(temporary file, fsync, rename; mode 0600) at each pause, resume and
expiry::

    {"version": 1,
     "pauses": [{"key": "<domain UUID, or * for the host>",
                 "name": "<domain name when paused>",
                 "since": <epoch s>, "until": <epoch s>,
                 "reason": "<operator text>"}]}

Times are wall-clock epoch seconds, the only clock that means anything to
the next start. Each entry is checked on its own: a bad one is left out
with a warning naming what is wrong, and the others still hold, so a
hand-edited file never stops the daemon or lifts every pause. A file that
cannot be read at all is one error line and no pause at all: when in
doubt, guests are monitored.

This module keeps values and the file only; what a pause does (no pings,
no notifications, expiry) is ``monitor.daemon.maintenance``'s.
"""

from __future__ import annotations

import json
import logging
import math
import os
import typing
import uuid as uuid_mod

from monitor.store import state_dir

LOG = logging.getLogger(__name__)

FILE_NAME = 'maintenance.json'
FORMAT_VERSION = 1

# The key of the pause that covers every domain on the host.
HOST = '*'

# A pause is meant for an upgrade or a backup, not to switch monitoring
# off for good: that is [monitor] metadata's job (enabled="no").
MAX_SECONDS = 7 * 86400
# The reason is operator text shown in the log, the status command and
# the file: short, one line.
MAX_REASON = 200


class Pause(typing.NamedTuple):
    """One maintenance pause."""
    # A domain UUID (lower case), or HOST.
    key: str
    # The domain's name when it was paused; '' for the host.
    name: str
    since: float
    until: float
    reason: str

    @property
    def host_wide(self):
        return self.key == HOST


def check_reason(text, what='the reason'):
    """``text`` as a reason (or a name: ``what``), or ValueError saying
    why not."""
    if not isinstance(text, str):
        raise ValueError('%s must be text' % what)
    if len(text) > MAX_REASON:
        raise ValueError('%s is longer than %d characters'
                         % (what, MAX_REASON))
    if any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in text):
        # A newline or an escape sequence would forge log lines or
        # repaint the operator's terminal.
        raise ValueError('%s contains control characters' % what)
    return text


def check_seconds(seconds):
    """``seconds`` as a pause's length, or ValueError saying why not."""
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)):
        raise ValueError('the duration must be a number of seconds')
    if seconds <= 0:
        raise ValueError('the duration must be more than 0 s')
    if seconds > MAX_SECONDS:
        raise ValueError('the duration must be at most %d s (7 days)'
                         % MAX_SECONDS)
    return float(seconds)


def check_key(key):
    """``key`` (a domain UUID or HOST) in its stored form, or ValueError."""
    if key == HOST:
        return key
    if not isinstance(key, str):
        raise ValueError('the key must be a domain UUID or %s' % HOST)
    try:
        return str(uuid_mod.UUID(key))
    except ValueError:
        raise ValueError('%r is not a domain UUID' % key) from None


def _entry(data):
    """A Pause from one stored entry, or ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError('not an object')
    key = check_key(data.get('key'))
    name = check_reason(data.get('name', ''), 'the name')
    since, until = data.get('since'), data.get('until')
    for value in (since, until):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise ValueError('since and until must be epoch seconds')
    check_seconds(until - since)
    return Pause(key, name, float(since), float(until),
                 check_reason(data.get('reason', '')))


class MaintenanceFile:
    """The pauses' file; ``path`` None keeps nothing (tests, tools)."""

    def __init__(self, path):
        self.path = path

    @classmethod
    def from_conf(cls, conf):
        return cls(os.path.join(conf.state_path, FILE_NAME))

    def load(self):
        """The stored pauses, those that pass the checks; expired ones
        included (the caller says they expired)."""
        if self.path is None:
            return []
        try:
            with open(self.path, 'rb') as stream:
                data = json.loads(stream.read(1024 * 1024).decode('utf-8'))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            LOG.error('Cannot read the maintenance pauses %s (%s); no '
                      'domain is paused', self.path, exc)
            return []
        entries = data.get('pauses') if isinstance(data, dict) else None
        if not isinstance(entries, list):
            LOG.error('The maintenance pauses %s hold no list of pauses; '
                      'no domain is paused', self.path)
            return []
        pauses = {}
        for number, entry in enumerate(entries, 1):
            try:
                pause = _entry(entry)
            except ValueError as exc:
                LOG.warning('Ignoring pause %d of %s: %s', number,
                            self.path, exc)
                continue
            pauses[pause.key] = pause
        return list(pauses.values())

    def save(self, pauses):
        """Write ``pauses`` in place of the file's.

        :raises OSError: the file could not be written.
        """
        if self.path is None:
            return
        data = json.dumps({
            'version': FORMAT_VERSION,
            'pauses': [pause._asdict() for pause in
                       sorted(pauses, key=lambda p: p.key)]},
            indent=1, sort_keys=True).encode('utf-8')
        state_dir.write_private(self.path, data)
