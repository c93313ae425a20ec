"""A durable outbox of notifications for the HA engine.

A notification is committed here (sqlite, WAL, synchronous=FULL) before
the first attempt to send it, so a daemon killed at any moment resends it
after a restart. Entries are ``pending`` until the engine has them
(``delivered``) or refused them for good (``dead``). Delivered entries are
pruned after a retention period; dead letters after a longer one, and
never more than ``MAX_DEAD_LETTERS`` are kept.

One connection is shared by the daemon's threads behind a lock; other
processes (the operators' CLI) may open the same file concurrently.

At start the file is checked (``PRAGMA quick_check``, schema version and
columns). A file that is corrupt, not sqlite, another application's
database, from a newer version, or empty is refused with a message that
says what to do; it is never replaced, as it may hold notifications that
were never delivered. Only a missing file is created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import stat
import threading
import time

from oslo_config import cfg

from monitor.errors import OutboxBusy  # noqa: F401 (raised here)
from monitor.errors import OutboxError  # noqa: F401 (raised here)
from monitor.errors import OutboxFull  # noqa: F401 (raised here)
from monitor.notify import notification as notification_mod

LOG = logging.getLogger(__name__)

GROUP = 'outbox'

FILE_NAME = 'outbox.sqlite'

# Never more dead letters than this, whatever dead_retention says: they
# are there for an operator to read and requeue, and the file is read
# whole at every start (quick_check) and every metrics scrape. An engine
# that rejects everything from a busy host for a month stays far below
# it; beyond it the oldest go first, each one logged.
MAX_DEAD_LETTERS = 10000

# Seconds the daemon waits in total for another process (an operator's
# CLI, an sqlite3 shell) that holds the write lock, before it gives up
# with OutboxBusy. Its callers sit at loop boundaries and try again on
# their next pass; nothing is lost, as the notification is either
# committed or still in the caller's hands. The CLI waits as long: no
# legitimate writer holds the lock for more than milliseconds.
BUSY_WAIT = 30.0

OUTBOX_OPTS = [
    cfg.IntOpt('max_pending',
               default=1000, min=1, max=1000000,
               help='Maximum number of notifications waiting for delivery '
                    'to the HA engine. When reached, new notifications are '
                    'refused with an error in the log (never dropped '
                    'silently). From 1 to 1000000. Default 1000.'),
    cfg.IntOpt('delivered_retention',
               default=86400, min=0, max=31536000,
               help='Seconds a delivered notification is kept in the '
                    'outbox (for inspection) before it is pruned. '
                    'From 0 to 31536000 (a year). Default 86400 (one day).'),
    cfg.IntOpt('dead_retention',
               default=2592000, min=0, max=31536000,
               help='Seconds a dead letter (a notification the HA engine '
                    'refused for good) is kept for an operator to inspect '
                    'and requeue with "guest-health-monitor-outbox retry" '
                    'before it is pruned and logged. A refused failure '
                    'report is rarely worth sending after a month; the '
                    'log keeps what it said. 0 keeps dead letters without '
                    'an age limit, for sites that review them by hand. '
                    'Either way at most %d are kept, the oldest dropped '
                    'first. Default 2592000 (30 days).' % MAX_DEAD_LETTERS),
]


def list_opts():
    return [(GROUP, OUTBOX_OPTS)]


def register_opts(conf):
    conf.register_opts(OUTBOX_OPTS, group=GROUP)


PENDING = 'pending'
DELIVERED = 'delivered'
DEAD = 'dead'

# 2 added ``details`` (the incident facts as JSON: misses, recovery,
# evidence) and ``held`` (a pending entry not to be sent yet, while the
# recovery it reports is under way). A version 1 file is migrated at open.
_SCHEMA_VERSION = 2

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS notifications (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        instance_uuid TEXT NOT NULL,
        domain_name TEXT NOT NULL,
        hostname TEXT NOT NULL,
        generated_time TEXT NOT NULL,
        event TEXT NOT NULL,
        vir_domain_event TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_attempt_at REAL,
        last_error TEXT,
        outcome TEXT,
        finished_at REAL,
        details TEXT,
        held INTEGER NOT NULL DEFAULT 0)""",
    """CREATE INDEX IF NOT EXISTS notifications_status_due
        ON notifications (status, next_attempt_at)""",
)

_NOTIFICATION_COLUMNS = ('id', 'instance_uuid', 'domain_name', 'hostname',
                         'generated_time', 'event', 'vir_domain_event')
_ENTRY_COLUMNS = ('status', 'created_at', 'attempts', 'next_attempt_at',
                  'last_attempt_at', 'last_error', 'outcome', 'finished_at')
_V1_TABLE_COLUMNS = ('seq', *_NOTIFICATION_COLUMNS, *_ENTRY_COLUMNS)
_TABLE_COLUMNS = (*_V1_TABLE_COLUMNS, 'details', 'held')
_SELECT = (f'SELECT {", ".join(_NOTIFICATION_COLUMNS + _ENTRY_COLUMNS)}, '
           'details, held FROM notifications')
_INSERT = (f'INSERT INTO notifications ({", ".join(_NOTIFICATION_COLUMNS)}, '
           'details, held, status, created_at, next_attempt_at) VALUES '
           f'({", ".join("?" * len(_NOTIFICATION_COLUMNS))}, ?, ?, ?, ?, ?)')
# Version 1 to 2: columns added at the end, existing rows get no details
# and are not held; nothing else changes, so old entries keep working.
_MIGRATE_V1 = (
    'ALTER TABLE notifications ADD COLUMN details TEXT',
    'ALTER TABLE notifications ADD COLUMN held INTEGER NOT NULL DEFAULT 0',
)

_SQLITE_MAGIC = b'SQLite format 3\x00'

# SQLITE_BUSY; its extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, ...)
# share the low byte.
_SQLITE_BUSY = 5

# Pauses between attempts to take a lock another process holds: short at
# first (the daemon's own commits take milliseconds), then capped so that
# a lock held for long is polled a few times a second.
_BUSY_FIRST_PAUSE = 0.005
_BUSY_MAX_PAUSE = 0.1


@dataclasses.dataclass(frozen=True)
class OutboxEntry:
    """A notification and its delivery record (times are epoch seconds)."""

    notification: notification_mod.Notification
    status: str
    created_at: float
    attempts: int
    next_attempt_at: float
    last_attempt_at: float | None
    # Reason of the last failed attempt, or the engine's message for a
    # dead letter.
    last_error: str | None
    # ACCEPTED / DUPLICATE once delivered, REJECTED once dead.
    outcome: str | None
    finished_at: float | None
    # Pending but not to be sent yet: the recovery it reports is under
    # way and its details are filled in when it ends (see release()).
    held: bool = False

    @property
    def id(self):
        return self.notification.id


def _entry(row):
    n = len(_NOTIFICATION_COLUMNS)
    m = n + len(_ENTRY_COLUMNS)
    details_text, held = row[m:]
    notification = notification_mod.Notification(
        **dict(zip(_NOTIFICATION_COLUMNS, row[:n])),
        details=_decode_details(details_text))
    return OutboxEntry(notification, *row[n:m], held=bool(held))


def _encode_details(details):
    if details is None:
        return None
    return json.dumps(details, sort_keys=True, separators=(',', ':'))


def _decode_details(text):
    if text is None:
        return None
    try:
        details = json.loads(text)
    except ValueError:
        # Written by an operator's sqlite3 shell, say: the notification
        # still goes out, without its incident facts.
        return None
    return details if isinstance(details, dict) else None


def _is_busy(error):
    code = getattr(error, 'sqlite_errorcode', None)
    if code is not None:
        return code & 0xff == _SQLITE_BUSY
    # Python < 3.11 has no error code, only sqlite's message for it.
    return str(error).startswith('database is locked')


class _PatientConnection:
    """An sqlite connection that waits for another process's lock in Python.

    sqlite's own busy handler sleeps in C: under eventlet it stops every
    green thread (sweeps, delivery, /healthz) for as long as it waits. So
    the connection has no busy timeout at all, and a statement refused
    with SQLITE_BUSY is tried again after ``time.sleep``, looked up at
    each call so the daemon's monkey-patched, green sleep is the one used,
    until ``wait`` seconds have passed: then ``OutboxBusy``.

    Trying the same statement again is what sqlite asks for: BUSY means it
    took no effect (the daemon writes only inside BEGIN IMMEDIATE, which
    takes the write lock before anything is read or changed).
    """

    def __init__(self, conn, path, wait, sleep=None, clock=time.monotonic):
        self._conn = conn
        self._path = path
        self._wait = wait
        self._sleep = sleep
        self._clock = clock

    def execute(self, sql, params=()):
        deadline = None
        pause = _BUSY_FIRST_PAUSE
        while True:
            try:
                return self._conn.execute(sql, params)
            except sqlite3.OperationalError as e:
                if not _is_busy(e):
                    raise
                now = self._clock()
                if deadline is None:
                    deadline = now + self._wait
                if now >= deadline:
                    raise OutboxBusy(self._path, self._wait) from None
            (self._sleep or time.sleep)(min(pause, deadline - now))
            pause = min(pause * 2, _BUSY_MAX_PAUSE)

    def close(self):
        self._conn.close()

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _connect(path):
    # timeout=0: no busy handler in C (see _PatientConnection).
    return sqlite3.connect(path, isolation_level=None, timeout=0,
                           check_same_thread=False)


def _refusal(path, problem):
    return OutboxError(
        f'{problem}. It is not replaced, as it may hold notifications not '
        f'yet delivered. To start anew: stop the monitor, move {path} aside '
        f'together with any {path}-wal and {path}-shm next to it (e.g. add '
        f'".broken" to each name) and start again; a new, empty outbox is '
        f'created. Inspect the old one with sqlite3 (".recover" salvages a '
        f'damaged file).')


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_database(path):
    for suffix in ('', '-journal', '-wal', '-shm'):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def _create(path):
    """Create a new outbox at ``path`` in one step.

    The database is built under a temporary name, synced, and then linked
    to ``path``, so ``path`` never exists without the schema: an outbox
    file of zero length (or without our table) cannot be left by a crash
    during the first start, and is therefore refused as the trace of a
    truncation, never taken for a first start. (Writing straight to
    ``path`` would leave an empty file if the daemon died before its first
    commit: sqlite creates the file at open and writes it at commit.
    Earlier versions did write straight to ``path``; an empty file left by
    a crash in the first milliseconds of their first start is refused as
    well, since nothing tells it from a truncation.) Linking, unlike
    renaming, never replaces a file another process created meanwhile.
    """
    directory = os.path.dirname(os.path.abspath(path))
    # Named for this process, so that two processes creating at once
    # never build in the same file. A crash here leaves a small file of
    # that name, harmless; one of ours from an earlier process with the
    # same PID goes now (unlinking only removes that name, even if it was
    # linked to ``path``).
    temporary = f'{path}.new-{os.getpid()}'
    _remove_database(temporary)
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # State files name instances and hosts: keep them to the daemon,
        # whatever the umask. sqlite gives -wal and -shm the same mode.
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    try:
        conn = _connect(temporary)
        try:
            conn.execute('PRAGMA journal_mode = WAL')
            conn.execute('PRAGMA synchronous = FULL')
            conn.execute('BEGIN IMMEDIATE')
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f'PRAGMA user_version = {_SCHEMA_VERSION:d}')
            conn.execute('COMMIT')
        finally:
            # The last connection checkpoints the WAL into the file.
            conn.close()
        _fsync(temporary)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it meanwhile: use theirs
        _fsync(directory)
    finally:
        _remove_database(temporary)


def _prepare_path(path, create):
    """Check what is at ``path`` before sqlite touches it; create a missing
    outbox when ``create``."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        size = None
    except OSError as e:
        raise OutboxError(f'cannot open the outbox {path}: '
                          f'{e.strerror}') from None
    else:
        if not stat.S_ISREG(st.st_mode):
            # A directory or a device in the way: nothing of ours.
            kind = 'a directory' if stat.S_ISDIR(st.st_mode) else 'not a file'
            raise OutboxError(f'cannot create the outbox {path}: it is '
                              f'{kind}')
        size = st.st_size
    if size is None:
        if not create:
            raise OutboxError(f'no outbox at {path}')
        wal = path + '-wal'
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            # sqlite would replay it into the new file.
            raise _refusal(path, f'found {wal} but no {path}: the outbox '
                                 'it belongs to was moved or deleted')
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            _create(path)
        except (OSError, sqlite3.Error) as e:
            reason = getattr(e, 'strerror', None) or e
            raise OutboxError(f'cannot create the outbox {path}: '
                              f'{reason}') from None
    elif size == 0:
        raise _refusal(path, f'the outbox {path} is empty (0 bytes) though '
                             'an outbox is never created empty: it was '
                             'truncated, and what it held is lost')
    else:
        try:
            with open(path, 'rb') as f:
                magic = f.read(len(_SQLITE_MAGIC))
        except OSError as e:
            raise OutboxError(f'cannot open the outbox {path}: '
                              f'{e.strerror}') from None
        if magic != _SQLITE_MAGIC:
            raise _refusal(path, f'{path} is not an sqlite database, so '
                                 'not an outbox')
    if not os.access(directory, os.W_OK | os.X_OK):
        # sqlite needs to create the -wal and -shm files next to it.
        raise OutboxError(f'outbox directory {directory} is not writable')


def _check(conn, path):
    """Refuse a damaged or foreign database before anything is written."""
    try:
        problems = [row[0] for row in
                    conn.execute('PRAGMA quick_check').fetchall()
                    if row[0] != 'ok']
    except sqlite3.OperationalError:
        # Busy, I/O error, out of memory: not a verdict on the file.
        raise
    except sqlite3.DatabaseError as e:
        # SQLITE_CORRUPT, SQLITE_NOTADB: the check could not even run.
        problems = [str(e)]
    if problems:
        more = f' and {len(problems) - 1} more' if len(problems) > 1 else ''
        raise _refusal(path, f'the outbox {path} is corrupt (sqlite '
                             f'quick_check: {problems[0]}{more})')
    version = conn.execute('PRAGMA user_version').fetchone()[0]
    if version == 1 and _columns(conn) == _V1_TABLE_COLUMNS:
        _migrate_v1(conn)
        version = conn.execute('PRAGMA user_version').fetchone()[0]
    if version > _SCHEMA_VERSION:
        raise _refusal(path, f'the outbox {path} was written by a newer '
                             f'version of the monitor (schema {version}; '
                             f'this one knows {_SCHEMA_VERSION}): run that '
                             'version again')
    columns = _columns(conn)
    if version != _SCHEMA_VERSION or columns != _TABLE_COLUMNS:
        tables = sorted(row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND "
            "name NOT LIKE 'sqlite_%'"))
        raise _refusal(path, f'{path} is an sqlite database but not an '
                             f'outbox of this monitor (user_version '
                             f'{version}, tables: '
                             f'{", ".join(tables) or "none"})')


def _columns(conn):
    return tuple(row[1] for row in
                 conn.execute('PRAGMA table_info(notifications)'))


def _migrate_v1(conn):
    """Bring a version 1 outbox to version 2, in one transaction.

    Another process (the operators' tool, a second start) may be doing the
    same: the write lock serializes them, and whoever comes second finds
    the work done.
    """
    conn.execute('BEGIN IMMEDIATE')
    try:
        if conn.execute('PRAGMA user_version').fetchone()[0] == 1:
            for statement in _MIGRATE_V1:
                conn.execute(statement)
            conn.execute(f'PRAGMA user_version = {_SCHEMA_VERSION:d}')
    except BaseException:
        conn.execute('ROLLBACK')
        raise
    conn.execute('COMMIT')


class Outbox:
    def __init__(self, path, max_size, delivered_retention=86400.0,
                 create=True, dead_retention=2592000.0,
                 max_dead=MAX_DEAD_LETTERS, busy_wait=BUSY_WAIT,
                 sleep=None):
        _prepare_path(path, create)
        self.path = path
        self._max_size = max_size
        self._retention = delivered_retention
        self._dead_retention = dead_retention
        self._max_dead = max_dead
        self._lock = threading.Lock()
        try:
            self._conn = _PatientConnection(_connect(path), path, busy_wait,
                                            sleep=sleep)
        except sqlite3.Error as e:
            raise OutboxError(f'cannot open the outbox {path}: {e}') from None
        try:
            self._configure()
        except sqlite3.Error as e:
            self._conn.close()
            raise OutboxError(f'cannot open the outbox {path}: {e}') from None
        except OutboxError:
            self._conn.close()
            raise

    @classmethod
    def from_conf(cls, conf, create=True):
        return cls(os.path.join(conf.state_path, FILE_NAME),
                   max_size=conf[GROUP].max_pending,
                   delivered_retention=conf[GROUP].delivered_retention,
                   dead_retention=conf[GROUP].dead_retention,
                   create=create)

    def _configure(self):
        conn = self._conn
        _check(conn, self.path)
        # Already so since creation; asked again because an operator's
        # sqlite3 shell may have changed it.
        mode = conn.execute('PRAGMA journal_mode = WAL').fetchone()[0]
        if mode.lower() != 'wal':
            raise OutboxError(f'{self.path}: sqlite refused WAL mode '
                              f'(got {mode})')
        # FULL: each commit is fsynced, so an enqueued notification
        # survives a crash or power loss, not only SIGKILL.
        conn.execute('PRAGMA synchronous = FULL')

    @contextlib.contextmanager
    def _transaction(self):
        # IMMEDIATE takes the write lock up front, so a concurrent writer
        # (the CLI) makes us wait instead of failing half-way through.
        self._conn.execute('BEGIN IMMEDIATE')
        try:
            yield
        except BaseException:
            self._conn.execute('ROLLBACK')
            raise
        self._conn.execute('COMMIT')

    def close(self):
        with self._lock:
            self._conn.close()

    def enqueue(self, notification, now, held=False):
        """Store ``notification`` for delivery, due at once.

        With ``held``, the entry is pending (no other notification is
        queued for the domain meanwhile) but not sent until
        :meth:`release`: the notification is on disk before the recovery
        it reports acts on the guest, so a crash in between loses nothing.

        Idempotent on ``notification.id``: the stored entry is returned as
        it is. Raises ``OutboxFull`` when max_size entries are pending.
        """
        with self._lock, self._transaction():
            existing = self._get(notification.id)
            if existing is not None:
                return existing
            count = self._conn.execute(
                'SELECT COUNT(*) FROM notifications WHERE status = ?',
                (PENDING,)).fetchone()[0]
            if count >= self._max_size:
                raise OutboxFull(self._max_size)
            values = notification.to_dict()
            self._conn.execute(
                _INSERT, (*(values[c] for c in _NOTIFICATION_COLUMNS),
                          _encode_details(notification.details),
                          1 if held else 0, PENDING, now, now))
            return self._get(notification.id)

    def release(self, id, details, now):
        """Fill in the details of a held entry and make it due at
        ``now``. Releasing an entry that is not held (released before a
        crash, or by an operator) only returns it."""
        with self._lock, self._transaction():
            entry = self._get(id)
            if entry is None:
                raise OutboxError(f'no notification {id} in the outbox')
            if not entry.held:
                return entry
            self._conn.execute(
                'UPDATE notifications SET details = ?, held = 0, '
                'next_attempt_at = ? WHERE id = ?',
                (_encode_details(details), now, id))
            return self._get(id)

    def held(self):
        """Pending entries still held, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                _SELECT + ' WHERE status = ? AND held = 1 ORDER BY seq',
                (PENDING,)).fetchall()
        return [_entry(r) for r in rows]

    def due(self, now, horizon=None):
        """Pending entries whose next attempt is due, oldest first.

        With ``horizon`` (s), entries scheduled further than that ahead are
        due too: no retry is ever scheduled that far, so they can only come
        from a wall clock that stepped back, and must not wait for it.
        """
        too_far = float('inf') if horizon is None else now + horizon
        with self._lock:
            rows = self._conn.execute(
                _SELECT + ' WHERE status = ? AND held = 0 AND '
                '(next_attempt_at <= ? OR next_attempt_at > ?) ORDER BY seq',
                (PENDING, now, too_far)).fetchall()
        return [_entry(r) for r in rows]

    def next_due_at(self):
        """Earliest next_attempt_at of pending entries, or None."""
        with self._lock:
            return self._conn.execute(
                'SELECT MIN(next_attempt_at) FROM notifications '
                'WHERE status = ? AND held = 0', (PENDING,)).fetchone()[0]

    def record_attempt_failed(self, id, now, next_attempt_at, reason):
        """Count a failed attempt; the entry stays pending."""
        return self._update(
            id, PENDING,
            'attempts = attempts + 1, last_attempt_at = ?, '
            'next_attempt_at = ?, last_error = ?',
            (now, next_attempt_at, reason))

    def mark_delivered(self, id, outcome, now):
        """The engine has it (``outcome`` ACCEPTED or DUPLICATE)."""
        outcome = notification_mod.OutcomeKind(outcome)
        if outcome not in (notification_mod.OutcomeKind.ACCEPTED,
                           notification_mod.OutcomeKind.DUPLICATE):
            raise ValueError(f'not a delivery outcome: {outcome.value}')
        entry = self._update(
            id, PENDING,
            'status = ?, attempts = attempts + 1, last_attempt_at = ?, '
            'outcome = ?, finished_at = ?',
            (DELIVERED, now, outcome.value, now))
        self._prune_quietly(now)
        return entry

    def mark_dead(self, id, now, reason):
        """The engine refused it for good; kept as a dead letter."""
        entry = self._update(
            id, PENDING,
            'status = ?, attempts = attempts + 1, last_attempt_at = ?, '
            'outcome = ?, finished_at = ?, last_error = ?',
            (DEAD, now, notification_mod.OutcomeKind.REJECTED.value, now, reason))
        # Here too: an engine that refuses everything delivers nothing, and
        # its dead letters must stay bounded all the same.
        self._prune_quietly(now)
        return entry

    def requeue_dead(self, id, now=0.0):
        """Operator action: make a dead letter pending again, due at ``now``.

        The attempt count restarts so the retry backoff does too; the
        notification (and its generated_time) is unchanged.
        """
        return self._update(
            id, DEAD,
            'status = ?, attempts = 0, next_attempt_at = ?, outcome = NULL, '
            'finished_at = NULL', (PENDING, now))

    def prune_delivered(self, now):
        """Drop delivered entries older than the retention period."""
        with self._lock, self._transaction():
            return self._conn.execute(
                'DELETE FROM notifications WHERE status = ? AND '
                'finished_at < ?', (DELIVERED, now - self._retention)
            ).rowcount

    def prune_dead(self, now):
        """Drop dead letters older than their retention (none when it is
        0), then the oldest beyond ``max_dead``; each one is logged, as an
        operator may still have wanted it. Returns how many went."""
        with self._lock, self._transaction():
            expired = []
            if self._dead_retention:
                expired = [_entry(r) for r in self._conn.execute(
                    _SELECT + ' WHERE status = ? AND finished_at < ? '
                    'ORDER BY seq', (DEAD, now - self._dead_retention))]
            for entry in expired:
                self._conn.execute('DELETE FROM notifications WHERE id = ?',
                                   (entry.id,))
            excess = [_entry(r) for r in self._conn.execute(
                _SELECT + ' WHERE status = ? ORDER BY finished_at DESC, '
                'seq DESC LIMIT -1 OFFSET ?', (DEAD, self._max_dead))]
            for entry in excess:
                self._conn.execute('DELETE FROM notifications WHERE id = ?',
                                   (entry.id,))
        expired_why = ('older than [outbox] dead_retention (%d s)'
                       % self._dead_retention)
        excess_why = 'more than %d dead letters are kept' % self._max_dead
        for level, entry, why in (
                [(logging.INFO, e, expired_why) for e in expired]
                + [(logging.WARNING, e, excess_why) for e in excess]):
            n = entry.notification
            LOG.log(level, 'Dropped the dead letter %s for domain %s (%s), '
                    'refused at %s: %s', n.id, n.domain_name,
                    n.instance_uuid,
                    notification_mod.format_time(entry.finished_at), why)
        return len(expired) + len(excess)

    def prune(self, now):
        """Drop delivered entries and dead letters past their retention."""
        return self.prune_delivered(now) + self.prune_dead(now)

    def _prune_quietly(self, now):
        # Housekeeping after a committed change: that change stands, so a
        # lock held elsewhere must not make it look failed to the caller.
        try:
            self.prune(now)
        except OutboxBusy as e:
            LOG.warning('Pruning the outbox postponed: %s', e)

    def pending(self):
        return self._select_status(PENDING)

    def dead_letters(self):
        return self._select_status(DEAD)

    def get(self, id):
        with self._lock:
            return self._get(id)

    def _get(self, id):
        row = self._conn.execute(_SELECT + ' WHERE id = ?',
                                 (id,)).fetchone()
        return None if row is None else _entry(row)

    def _select_status(self, status):
        with self._lock:
            rows = self._conn.execute(
                _SELECT + ' WHERE status = ? ORDER BY seq',
                (status,)).fetchall()
        return [_entry(r) for r in rows]

    def _update(self, id, expected_status, assignments, params):
        with self._lock, self._transaction():
            entry = self._get(id)
            if entry is None:
                raise OutboxError(f'no notification {id} in the outbox')
            if entry.status != expected_status:
                raise OutboxError(f'notification {id} is {entry.status}, '
                                  f'not {expected_status}')
            self._conn.execute(
                f'UPDATE notifications SET {assignments} WHERE id = ?',
                (*params, id))
            return self._get(id)

    def latest_per_domain(self, instance_uuid=None):
        """The newest pending entry and the newest finished (delivered or
        dead) entry of each domain, oldest first; only ``instance_uuid``'s
        when given.

        This is what the health policy needs to know of a domain's
        notifications; the outbox is their only record.
        """
        where, params = '', (PENDING,)
        if instance_uuid is not None:
            where, params = 'WHERE instance_uuid = ? ', (instance_uuid,
                                                         PENDING)
        with self._lock:
            rows = self._conn.execute(
                _SELECT + ' WHERE seq IN (SELECT MAX(seq) FROM notifications '
                f'{where}GROUP BY instance_uuid, status = ?) ORDER BY seq',
                params).fetchall()
        return [_entry(r) for r in rows]
