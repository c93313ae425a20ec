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
"""

from __future__ import annotations

import json
import logging
import os

LOG = logging.getLogger(__name__)

FILE_NAME = 'recovery.json'


class RecoveryHistory:

    def __init__(self, path, window):
        self.path = path
        self.window = window
        self._times = self._load()

    @classmethod
    def from_conf(cls, conf):
        return cls(os.path.join(conf.state_path, FILE_NAME),
                   conf.recovery.window)

    def _load(self):
        try:
            with open(self.path, encoding='utf-8') as stream:
                data = json.load(stream)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Refusing to start over a lost budget would leave every guest
            # unrecovered; starting with an empty one allows at most
            # max_actions more per domain. Said loudly.
            LOG.error('Cannot read the recovery history %s (%s); every '
                      'domain starts with a full recovery budget',
                      self.path, exc)
            return {}
        times = {}
        if isinstance(data, dict):
            for uuid, values in data.items():
                if isinstance(values, list):
                    times[str(uuid)] = tuple(
                        float(v) for v in values
                        if isinstance(v, (int, float)))
        return times

    def get(self, uuid):
        """The domain's action times (epoch seconds), oldest first."""
        return self._times.get(uuid, ())

    def put(self, uuid, times, now):
        """Keep ``times`` for the domain and write the file.

        :raises OSError: the file could not be written; the times are
            kept in memory all the same.
        """
        self._times[uuid] = tuple(sorted(times))
        self._times = {
            key: kept for key, kept in (
                (key, tuple(t for t in values if t > now - self.window))
                for key, values in self._times.items())
            if kept}
        self._write()

    def _write(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        temporary = self.path + '.tmp'
        data = json.dumps({k: list(v) for k, v in self._times.items()},
                          sort_keys=True).encode('utf-8')
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                     | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, self.path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
