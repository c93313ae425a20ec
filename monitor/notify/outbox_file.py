"""The outbox's sqlite file: its schema, how it is created, checked and
migrated at open, and the connection that waits for another process's
lock.

A missing file is created in one step, never left empty. An existing one
is checked before anything is written (``PRAGMA quick_check``, schema
version and columns); one that is corrupt, not sqlite, another
application's database, from a newer version, or empty is refused with a
message that says what to do, and never replaced: it may contain
notifications that were never delivered. A version 1 file is migrated.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time

from monitor.errors import OutboxBusy
from monitor.errors import OutboxError

# 2 added ``details`` (the incident facts as JSON: misses, recovery,
# evidence) and ``held`` (a pending entry not to be sent yet, while the
# recovery it reports is under way); 3 added ``kind`` (a failure, or the
# end of one: notification.FAILURE, RESOLVED). Version 1 and 2 files are
# migrated at open.
SCHEMA_VERSION = 3

SCHEMA = (
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
        held INTEGER NOT NULL DEFAULT 0,
        kind TEXT NOT NULL DEFAULT 'failure')""",
    """CREATE INDEX IF NOT EXISTS notifications_status_due
        ON notifications (status, next_attempt_at)""",
)

NOTIFICATION_COLUMNS = ('id', 'instance_uuid', 'domain_name', 'hostname',
                         'generated_time', 'event', 'vir_domain_event')
ENTRY_COLUMNS = ('status', 'created_at', 'attempts', 'next_attempt_at',
                  'last_attempt_at', 'last_error', 'outcome', 'finished_at')
_V1_TABLE_COLUMNS = ('seq', *NOTIFICATION_COLUMNS, *ENTRY_COLUMNS)
_V2_TABLE_COLUMNS = (*_V1_TABLE_COLUMNS, 'details', 'held')
_TABLE_COLUMNS = (*_V2_TABLE_COLUMNS, 'kind')
SELECT = (f'SELECT {", ".join(NOTIFICATION_COLUMNS + ENTRY_COLUMNS)}, '
           'details, held, kind FROM notifications')
INSERT = (f'INSERT INTO notifications ({", ".join(NOTIFICATION_COLUMNS)}, '
           'details, held, kind, status, created_at, next_attempt_at) VALUES '
           f'({", ".join("?" * len(NOTIFICATION_COLUMNS))}, ?, ?, ?, ?, ?, ?)')
# Columns added at the end: rows of version 1 get no details and are not
# held, rows of versions 1 and 2 are failures (all they could be);
# nothing else changes, so old entries keep working.
_MIGRATE_V1 = (
    'ALTER TABLE notifications ADD COLUMN details TEXT',
    'ALTER TABLE notifications ADD COLUMN held INTEGER NOT NULL DEFAULT 0',
)
_MIGRATE_V2 = (
    "ALTER TABLE notifications ADD COLUMN kind TEXT NOT NULL "
    "DEFAULT 'failure'",
)

_SQLITE_MAGIC = b'SQLite format 3\x00'

# KiB of the file's pages a connection keeps in memory. sqlite's default
# (2,000 KiB) fills as the file grows with the delivered notifications
# kept for a day: the daemon's memory then grew with the failures seen,
# up to 2 MiB. The hot pages (the pending entries and their index) fit
# many times over; a scan of the day's history reads through the OS's
# cache, as it would beyond any fixed size.
CACHE_KIB = 256

# SQLITE_BUSY; its extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, ...)
# share the low byte.
_SQLITE_BUSY = 5

# Pauses between attempts to take a lock another process has: short at
# first (the daemon's own commits take milliseconds), then capped so that
# a lock kept for long is polled a few times a second.
_BUSY_FIRST_PAUSE = 0.005
_BUSY_MAX_PAUSE = 0.1


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
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f'PRAGMA user_version = {SCHEMA_VERSION:d}')
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
                             'truncated, and what it contained is lost')
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
    if (version, _columns(conn)) in ((1, _V1_TABLE_COLUMNS),
                                     (2, _V2_TABLE_COLUMNS)):
        _migrate(conn)
        version = conn.execute('PRAGMA user_version').fetchone()[0]
    if version > SCHEMA_VERSION:
        raise _refusal(path, f'the outbox {path} was written by a newer '
                             f'version of the monitor (schema {version}; '
                             f'this one knows {SCHEMA_VERSION}): run that '
                             'version again')
    columns = _columns(conn)
    if version != SCHEMA_VERSION or columns != _TABLE_COLUMNS:
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


def _migrate(conn):
    """Bring a version 1 or 2 outbox to the current version, in one
    transaction.

    Another process (the operators' tool, a second start) may be doing the
    same: the write lock serializes them, and whoever comes second finds
    the work done.
    """
    steps = {1: _MIGRATE_V1 + _MIGRATE_V2, 2: _MIGRATE_V2}
    with transaction(conn):
        version = conn.execute('PRAGMA user_version').fetchone()[0]
        if version in steps:
            for statement in steps[version]:
                conn.execute(statement)
            conn.execute(f'PRAGMA user_version = {SCHEMA_VERSION:d}')


@contextlib.contextmanager
def transaction(conn):
    """One write transaction on ``conn``, rolled back on any error.

    IMMEDIATE takes the write lock up front, so a concurrent writer (the
    CLI) makes us wait instead of failing half-way through.
    """
    conn.execute('BEGIN IMMEDIATE')
    try:
        yield
    except BaseException:
        conn.execute('ROLLBACK')
        raise
    conn.execute('COMMIT')


def open_database(path, create, busy_wait, sleep=None):
    """A connection to the checked outbox at ``path``, created when
    missing and ``create``.

    :raises OutboxError: saying what is wrong with the file and what to
        do about it.
    """
    _prepare_path(path, create)
    try:
        conn = _PatientConnection(_connect(path), path, busy_wait,
                                  sleep=sleep)
    except sqlite3.Error as e:
        raise OutboxError(f'cannot open the outbox {path}: {e}') from None
    try:
        _configure(conn, path)
    except sqlite3.Error as e:
        conn.close()
        raise OutboxError(f'cannot open the outbox {path}: {e}') from None
    except OutboxError:
        conn.close()
        raise
    return conn


def _configure(conn, path):
    _check(conn, path)
    # Already so since creation; asked again because an operator's
    # sqlite3 shell may have changed it.
    mode = conn.execute('PRAGMA journal_mode = WAL').fetchone()[0]
    if mode.lower() != 'wal':
        raise OutboxError(f'{path}: sqlite refused WAL mode (got {mode})')
    # FULL: each commit is fsynced, so an enqueued notification survives
    # a crash or power loss, not only SIGKILL.
    conn.execute('PRAGMA synchronous = FULL')
    conn.execute(f'PRAGMA cache_size = -{CACHE_KIB:d}')
