"""Evidence of a guest failure kept on disk: console tails, screenshots.

Files go to ``<state_path>/evidence`` (0700), each written 0600 to a
temporary name and renamed, so a reader never sees half a file. The store
is bounded in count and in total bytes: at start and after each write the
oldest files are removed until both bounds hold again. A guest failing in
a loop can therefore never fill the disk, and the newest evidence is
always kept.

Each domain keeps its share: the newest file of each kind (console,
screenshot) of every domain, its newest incident, goes only after every
older file of every domain has gone, so one guest failing in a loop
evicts its own older evidence and other domains' older evidence, never
another domain's newest incident. Only when the newest incidents alone
exceed a bound do they go too, oldest first (the file just written never):
the bounds protect the disk first.

A temporary file a crash left behind (``*.tmp``, untouched for
``STALE_TEMPORARY`` seconds) is removed at start and at each write.

Nothing here logs: the store is used from native threads together with
the libvirt captures. Errors are raised as ``EvidenceError`` for the
caller to log.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import itertools
import os
import re
import stat
import time
import typing

from oslo_config import cfg

from monitor.errors import EvidenceError

GROUP = 'evidence'
DIRECTORY = 'evidence'

OPTS = [
    cfg.IntOpt(
        'max_files',
        default=100, min=1, max=100000,
        help="""
Most evidence files kept under <state_path>/evidence; the oldest are
removed first, each domain's newest console tail and screenshot last, so
one guest failing in a loop cannot evict the evidence of the others. From
1 to 100000. Default 100.
"""),
    cfg.IntOpt(
        'max_bytes',
        default=64 * 1024 * 1024, min=64 * 1024, max=64 * 1024 ** 3,
        help="""
Most bytes of evidence kept under <state_path>/evidence, all files
together; the oldest are removed first, each domain's newest console tail
and screenshot last. From 65536 to 68719476736 (64 GiB). Default 67108864
(64 MiB).
"""),
    cfg.IntOpt(
        'console_lines',
        default=100, min=1, max=10000,
        help="""
Last lines of a file-backed serial console kept as evidence of a failure.
Default 100.
"""),
]


def list_opts():
    return [(GROUP, OPTS)]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


@dataclasses.dataclass(frozen=True)
class EvidenceRef:
    """Where one piece of evidence is, as the notification names it."""

    kind: str
    path: str
    size: int
    sha256: str
    media_type: str

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**values)


CONSOLE = 'console'
SCREENSHOT = 'screenshot'

_EXTENSIONS = {
    'text/plain': 'log',
    'image/x-portable-pixmap': 'ppm',
    'image/png': 'png',
}

# <time>-<seq>-<uuid>-<kind>.<ext>; only files of this shape are counted
# and pruned, so nothing else in the directory is ever removed.
_NAME = re.compile(r'^\d{8}T\d{6}Z-\d{6}-[0-9a-fA-F-]{1,64}-[a-z]+\.[a-z]+$')
_SAFE_UUID = re.compile(r'^[0-9a-fA-F-]{1,64}$')
_TEMP_SUFFIX = '.tmp'

# Seconds after which a temporary file is a crash's leftover: a write
# takes milliseconds (the largest capture is a few MiB).
STALE_TEMPORARY = 600


class EvidenceStore:

    def __init__(self, directory, max_files=100, max_bytes=64 * 1024 * 1024,
                 clock=time.time):
        self.directory = directory
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._clock = clock
        self._sequence = itertools.count(1)
        try:
            self.prune()
        except OSError:
            # An unreadable directory: the first save says why, to a
            # caller that logs it; the start goes on without evidence.
            pass

    @classmethod
    def from_conf(cls, conf):
        return cls(os.path.join(conf.state_path, DIRECTORY),
                   conf[GROUP].max_files, conf[GROUP].max_bytes)

    def _ensure_directory(self):
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            info = os.lstat(self.directory)
        except OSError as exc:
            raise EvidenceError('cannot create %s: %s'
                                % (self.directory, exc.strerror or exc))
        if not stat.S_ISDIR(info.st_mode):
            raise EvidenceError('%s is not a directory' % self.directory)
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.directory, 0o700)

    def save(self, domain_uuid, kind, data, media_type='text/plain'):
        """Store ``data`` (bytes) as evidence of ``kind`` for a domain.

        :returns: EvidenceRef of the new file.
        :raises EvidenceError: bad input, too large, or the file system
            refused.
        """
        if not _SAFE_UUID.match(domain_uuid or ''):
            raise EvidenceError('not a domain UUID: %r' % (domain_uuid,))
        if not re.match(r'^[a-z]+$', kind):
            raise EvidenceError('not an evidence kind: %r' % (kind,))
        if len(data) > self.max_bytes:
            raise EvidenceError('%s of %d bytes is larger than the whole '
                                'evidence store (%d bytes)'
                                % (kind, len(data), self.max_bytes))
        self._ensure_directory()
        now = self._clock()
        stamp = datetime.datetime.fromtimestamp(
            now, datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
        # The sequence orders names within one second; a name already
        # taken (a restarted daemon counts from 1 again) takes the next.
        while True:
            name = '%s-%06d-%s-%s.%s' % (
                stamp, next(self._sequence) % 1000000, domain_uuid.lower(),
                kind, _EXTENSIONS.get(media_type, 'bin'))
            path = os.path.join(self.directory, name)
            if not os.path.lexists(path):
                break
        self._write(path, data)
        self.prune(keep=path)
        return EvidenceRef(kind=kind, path=path, size=len(data),
                           sha256=hashlib.sha256(data).hexdigest(),
                           media_type=media_type)

    def _write(self, path, data):
        temp = path + _TEMP_SUFFIX
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(temp, flags, 0o600)
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path)
        except OSError as exc:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise EvidenceError('cannot write %s: %s'
                                % (path, exc.strerror or exc))

    def files(self):
        """[(path, size)] of the stored evidence, oldest first."""
        return [(item.path, item.size) for item in self._stored()[0]]

    def _stored(self):
        """([_Stored] of the evidence files, oldest first, [paths of
        stale temporary files])."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return [], []
        found = []
        stale = []
        for name in names:
            temporary = name.endswith(_TEMP_SUFFIX)
            if not _NAME.match(name[:-len(_TEMP_SUFFIX)] if temporary
                               else name):
                continue
            path = os.path.join(self.directory, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if temporary:
                # Either way from now: a clock stepped back must not keep
                # a leftover for ever.
                if abs(self._clock() - info.st_mtime) > STALE_TEMPORARY:
                    stale.append(path)
                continue
            stem = name.rsplit('.', 1)[0]
            prefix, kind = stem.rsplit('-', 1)
            found.append(_Stored(
                # Names start with the time and a sequence: ties in mtime
                # (coarse file systems) are broken in write order.
                (name[:16], info.st_mtime, name), path, info.st_size,
                (prefix.split('-', 2)[2].lower(), kind)))
        found.sort(key=lambda item: item.order)
        return found, stale

    def prune(self, keep=None):
        """Remove stale temporary files, then evidence until the bounds
        hold (module doc: older incidents first, then the newest ones,
        oldest first); returns the paths removed. ``keep`` (the file just
        written) is never removed."""
        stored, stale = self._stored()
        removed = [path for path in stale if _remove(path)]
        newest = {}
        for item in stored:
            newest[item.series] = item.path
        protected = set(newest.values())
        count = len(stored)
        total = sum(item.size for item in stored)
        for newest_pass in (False, True):
            for item in stored:
                if count <= self.max_files and total <= self.max_bytes:
                    return removed
                if item.path == keep or \
                        (item.path in protected) != newest_pass:
                    continue
                if _remove(item.path):
                    removed.append(item.path)
                    count -= 1
                    total -= item.size
        return removed


class _Stored(typing.NamedTuple):
    order: tuple
    path: str
    size: int
    # (domain UUID, kind): the newest file of each is the domain's
    # newest incident.
    series: tuple


def _remove(path):
    """Unlink ``path``; False when it could not be (already gone
    counts as removed). Nothing is raised: a file that cannot be removed
    (an operator's, made immutable) must not fail the save that just
    succeeded."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True
