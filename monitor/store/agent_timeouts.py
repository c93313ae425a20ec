"""Which domains' agent response timeouts the daemon lowered, and what
each was before: a small file in the state directory.

An entry is written (and synced) before the timeout is lowered and removed
once it is restored, so a daemon killed in between finds at its next start
what it has to put back. Entries are few (domains being confirmed at that
moment), and each change rewrites the whole file.

Native threads and the green side both change it: a native lock guards the
entries and the file; it is held only for the write of a small file.
"""

import json
import logging
import os
import typing

from monitor import concurrency

LOG = logging.getLogger(__name__)

FILE_NAME = 'agent-timeouts.json'

_native_threading = concurrency.original('threading')
# Native threads write the file: eventlet's green os.open would give each
# of them a hub of its own (an epoll descriptor that outlives a short-lived
# thread).
_native_os = concurrency.original('os')


class Lowered(typing.NamedTuple):
    """One domain's lowered timeout."""
    name: str
    # What it was before, in seconds or libvirt's special values.
    previous: int
    # False: the value could not be read and libvirt's default is assumed.
    known: bool
    # The value the daemon set.
    lowered_to: int
    # The domain's ID when lowered: a domain started again since has its
    # timeout back at libvirt's default, and nothing to restore.
    domain_id: typing.Optional[int] = None


class AgentTimeoutJournal:

    def __init__(self, path):
        """``path``: the file; None keeps the entries in memory only."""
        self.path = path
        self._lock = _native_threading.Lock()
        self._entries = self._load() if path else {}

    @classmethod
    def from_conf(cls, conf):
        return cls(os.path.join(conf.state_path, FILE_NAME))

    def _load(self):
        try:
            with open(self.path, 'rb') as journal:
                raw = json.loads(journal.read().decode('utf-8'))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Called at start, in the green thread that builds the daemon.
            LOG.warning('Cannot read %s (%s); agent response timeouts '
                        'lowered before this start cannot be restored',
                        self.path, exc)
            return {}
        entries = {}
        for uuid, fields in (raw if isinstance(raw, dict) else {}).items():
            try:
                entries[uuid] = Lowered(
                    str(fields['name']), int(fields['previous']),
                    bool(fields['known']), int(fields['lowered_to']),
                    None if fields.get('domain_id') is None
                    else int(fields['domain_id']))
            except (KeyError, TypeError, ValueError):
                continue
        return entries

    def entries(self):
        """uuid -> Lowered, a copy."""
        with self._lock:
            return dict(self._entries)

    def record(self, uuid, lowered):
        """Remember ``lowered`` for ``uuid``, on disk before returning;
        raises OSError (then nothing may be lowered)."""
        with self._lock:
            entries = dict(self._entries)
            entries[uuid] = lowered
            self._write(entries)
            self._entries = entries

    def forget(self, uuid):
        """``uuid``'s timeout is back (or has nothing to restore any
        more); raises OSError, the entry then stays in memory too."""
        with self._lock:
            if uuid not in self._entries:
                return
            entries = dict(self._entries)
            del entries[uuid]
            self._write(entries)
            self._entries = entries

    def _write(self, entries):
        if not self.path:
            return
        data = {uuid: lowered._asdict() for uuid, lowered in entries.items()}
        _write_private(self.path,
                       json.dumps(data, sort_keys=True).encode('utf-8'))


def _write_private(path, data):
    """``state_dir.write_private`` with the native os functions: a
    temporary file beside ``path``, mode 0600, fsynced, renamed over it,
    the directory fsynced."""
    temporary = path + '.tmp'
    fd = _native_os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _native_os.fchmod(fd, 0o600)
        _native_os.write(fd, data)
        _native_os.fsync(fd)
    finally:
        _native_os.close(fd)
    _native_os.rename(temporary, path)
    dir_fd = _native_os.open(os.path.dirname(os.path.abspath(path)),
                             os.O_RDONLY | os.O_CLOEXEC)
    try:
        _native_os.fsync(dir_fd)
    finally:
        _native_os.close(dir_fd)
