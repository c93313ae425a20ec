"""A durable outbox of notifications for the HA engine.

A notification is committed here (sqlite, WAL, synchronous=FULL) before
the first attempt to send it, so a daemon killed at any moment resends it
after a restart. Entries are ``pending`` until the engine has them
(``delivered``) or refused them for good (``dead``). Delivered entries are
pruned after a retention period; dead letters stay until an operator
requeues them.

One connection is shared by the daemon's threads behind a lock; other
processes (the operators' CLI) may open the same file concurrently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import threading

from oslo_config import cfg

from monitor import notification as notification_mod

GROUP = 'outbox'

FILE_NAME = 'outbox.sqlite'

OUTBOX_OPTS = [
    cfg.IntOpt('max_pending',
               default=1000, min=1,
               help='Maximum number of notifications waiting for delivery '
                    'to the HA engine. When reached, new notifications are '
                    'refused with an error in the log (never dropped '
                    'silently). Default 1000.'),
    cfg.IntOpt('delivered_retention',
               default=86400, min=0,
               help='Seconds a delivered notification is kept in the '
                    'outbox (for inspection) before it is pruned. '
                    'Default 86400 (one day).'),
]


def list_opts():
    return [(GROUP, OUTBOX_OPTS)]


def register_opts(conf):
    conf.register_opts(OUTBOX_OPTS, group=GROUP)


PENDING = 'pending'
DELIVERED = 'delivered'
DEAD = 'dead'

_SCHEMA_VERSION = 1

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
        finished_at REAL)""",
    """CREATE INDEX IF NOT EXISTS notifications_status_due
        ON notifications (status, next_attempt_at)""",
)

_NOTIFICATION_COLUMNS = ('id', 'instance_uuid', 'domain_name', 'hostname',
                         'generated_time', 'event', 'vir_domain_event')
_ENTRY_COLUMNS = ('status', 'created_at', 'attempts', 'next_attempt_at',
                  'last_attempt_at', 'last_error', 'outcome', 'finished_at')
_SELECT = (f'SELECT {", ".join(_NOTIFICATION_COLUMNS + _ENTRY_COLUMNS)} '
           'FROM notifications')
_INSERT = (f'INSERT INTO notifications ({", ".join(_NOTIFICATION_COLUMNS)}, '
           'status, created_at, next_attempt_at) VALUES '
           f'({", ".join("?" * len(_NOTIFICATION_COLUMNS))}, ?, ?, ?)')

# Milliseconds sqlite waits for another process (the CLI) holding the lock.
_BUSY_TIMEOUT_MS = 5000


class OutboxError(Exception):
    """The outbox cannot be opened or an operation on it is invalid."""


class OutboxFull(OutboxError):
    """``max_pending`` notifications already wait for delivery."""

    def __init__(self, max_size):
        super().__init__(f'outbox full: {max_size} notifications already '
                         'wait for delivery to the HA engine')
        self.max_size = max_size


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

    @property
    def id(self):
        return self.notification.id


def _entry(row):
    n = len(_NOTIFICATION_COLUMNS)
    notification = notification_mod.Notification(**dict(
        zip(_NOTIFICATION_COLUMNS, row[:n])))
    return OutboxEntry(notification, *row[n:])


def _prepare_path(path, create):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(path) and not create:
        raise OutboxError(f'no outbox at {path}')
    try:
        # State files name instances and hosts: keep them to the daemon.
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    except OSError as e:
        raise OutboxError(f'cannot create the outbox {path}: '
                          f'{e.strerror}') from None
    if not os.access(directory, os.W_OK | os.X_OK):
        # sqlite needs to create the -wal and -shm files next to it.
        raise OutboxError(f'outbox directory {directory} is not writable')


class Outbox:
    def __init__(self, path, max_size, delivered_retention=86400.0,
                 create=True):
        _prepare_path(path, create)
        self.path = path
        self._max_size = max_size
        self._retention = delivered_retention
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None,
                                         check_same_thread=False)
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
                   create=create)

    def _configure(self):
        conn = self._conn
        conn.execute(f'PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS:d}')
        mode = conn.execute('PRAGMA journal_mode = WAL').fetchone()[0]
        if mode.lower() != 'wal':
            raise OutboxError(f'{self.path}: sqlite refused WAL mode '
                              f'(got {mode})')
        # FULL: each commit is fsynced, so an enqueued notification
        # survives a crash or power loss, not only SIGKILL.
        conn.execute('PRAGMA synchronous = FULL')
        with self._transaction():
            version = conn.execute('PRAGMA user_version').fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise OutboxError(f'{self.path} was written by a newer '
                                  f'version (schema {version})')
            if version < _SCHEMA_VERSION:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f'PRAGMA user_version = {_SCHEMA_VERSION:d}')

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

    def enqueue(self, notification, now):
        """Store ``notification`` for delivery, due at once.

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
                          PENDING, now, now))
            return self._get(notification.id)

    def due(self, now, horizon=None):
        """Pending entries whose next attempt is due, oldest first.

        With ``horizon`` (s), entries scheduled further than that ahead are
        due too: no retry is ever scheduled that far, so they can only come
        from a wall clock that stepped back, and must not wait for it.
        """
        too_far = float('inf') if horizon is None else now + horizon
        with self._lock:
            rows = self._conn.execute(
                _SELECT + ' WHERE status = ? AND (next_attempt_at <= ? '
                'OR next_attempt_at > ?) ORDER BY seq',
                (PENDING, now, too_far)).fetchall()
        return [_entry(r) for r in rows]

    def next_due_at(self):
        """Earliest next_attempt_at of pending entries, or None."""
        with self._lock:
            return self._conn.execute(
                'SELECT MIN(next_attempt_at) FROM notifications '
                'WHERE status = ?', (PENDING,)).fetchone()[0]

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
        self.prune_delivered(now)
        return entry

    def mark_dead(self, id, now, reason):
        """The engine refused it for good; kept as a dead letter."""
        return self._update(
            id, PENDING,
            'status = ?, attempts = attempts + 1, last_attempt_at = ?, '
            'outcome = ?, finished_at = ?, last_error = ?',
            (DEAD, now, notification_mod.OutcomeKind.REJECTED.value, now, reason))

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
