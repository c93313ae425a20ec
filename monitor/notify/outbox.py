"""A durable outbox of notifications for the HA engine.

A notification is committed here (sqlite, WAL, synchronous=FULL) before
the first attempt to send it, so a daemon killed at any moment resends it
after a restart. Entries are ``pending`` until the engine has them
(``delivered``) or refused them for good (``dead``). Delivered entries are
pruned after a retention period; dead letters after a longer one, and
never more than ``MAX_DEAD_LETTERS`` are kept.

A pending entry may be ``held``: not sent until the recovery step it
reports on has finished and released it with the incident's details.

One connection is shared by the daemon's threads behind a lock; other
processes (the operators' CLI) may open the same file concurrently. The
file itself (schema, creation, the checks at open, migration, waiting for
another process's lock) is ``outbox_file``'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import typing

from oslo_config import cfg

from monitor.errors import OutboxBusy
from monitor.errors import OutboxError
from monitor.errors import OutboxFull
from monitor.notify import notification as notification_mod
from monitor.notify import outbox_file

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


class OutboxState(typing.NamedTuple):
    """The facts of an entry the health policy judges by."""

    id: str
    instance_uuid: str
    status: str
    created_at: float
    held: bool


def _entry(row):
    n = len(outbox_file.NOTIFICATION_COLUMNS)
    m = n + len(outbox_file.ENTRY_COLUMNS)
    details_text, held, kind = row[m:]
    notification = notification_mod.Notification(
        **dict(zip(outbox_file.NOTIFICATION_COLUMNS, row[:n])),
        details=_decode_details(details_text), kind=kind)
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


class Outbox:
    def __init__(self, path, max_size, delivered_retention=86400.0,
                 create=True, dead_retention=2592000.0,
                 max_dead=MAX_DEAD_LETTERS, busy_wait=BUSY_WAIT,
                 sleep=None):
        self.path = path
        self._max_size = max_size
        self._retention = delivered_retention
        self._dead_retention = dead_retention
        self._max_dead = max_dead
        self._lock = threading.Lock()
        self._conn = outbox_file.open_database(path, create, busy_wait,
                                               sleep=sleep)
        # Writes made through this object (see version()).
        self._writes = 0

    @classmethod
    def from_conf(cls, conf, create=True):
        return cls(os.path.join(conf.state_path, FILE_NAME),
                   max_size=conf[GROUP].max_pending,
                   delivered_retention=conf[GROUP].delivered_retention,
                   dead_retention=conf[GROUP].dead_retention,
                   create=create)

    def _transaction(self):
        # Every write goes through here, under the lock.
        self._writes += 1
        return outbox_file.transaction(self._conn)

    def version(self):
        """Changes as soon as anything in the file may have: a write
        through this object, or a commit of another connection (the
        outbox tool, an operator's sqlite3 shell), which sqlite's
        data_version tells. What was read when it had a value is still
        true while it has it: a reader that reads after asking keeps
        nothing older than the version it asked."""
        with self._lock:
            return (self._writes, self._conn.execute(
                'PRAGMA data_version').fetchone()[0])

    def close(self):
        with self._lock:
            self._conn.close()

    def enqueue(self, notification, now, held=False, due_at=None):
        """Store ``notification`` for delivery, due at once (at
        ``due_at`` when given).

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
                outbox_file.INSERT, (*(values[c] for c in outbox_file.NOTIFICATION_COLUMNS),
                          _encode_details(notification.details),
                          1 if held else 0, notification.kind, PENDING, now,
                          now if due_at is None else due_at))
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
                outbox_file.SELECT + ' WHERE status = ? AND held = 1 ORDER BY seq',
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
                outbox_file.SELECT + ' WHERE status = ? AND held = 0 AND '
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
                    outbox_file.SELECT + ' WHERE status = ? AND finished_at < ? '
                    'ORDER BY seq', (DEAD, now - self._dead_retention))]
            for entry in expired:
                self._conn.execute('DELETE FROM notifications WHERE id = ?',
                                   (entry.id,))
            excess = [_entry(r) for r in self._conn.execute(
                outbox_file.SELECT + ' WHERE status = ? ORDER BY finished_at DESC, '
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
        row = self._conn.execute(outbox_file.SELECT + ' WHERE id = ?',
                                 (id,)).fetchone()
        return None if row is None else _entry(row)

    def _select_status(self, status):
        with self._lock:
            rows = self._conn.execute(
                outbox_file.SELECT + ' WHERE status = ? ORDER BY seq',
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

    def latest_states(self, instance_uuid=None):
        """What :meth:`latest_per_domain` holds, as ``OutboxState``
        tuples: no payload, no details.

        The tracker reads this every round; decoding the details and
        building whole notifications of every domain that ever failed
        within the retention cost CPU and memory growing with the
        history, for five facts per entry. It still scans the day's
        delivered entries: callers that look every round read it again
        only when :meth:`version` changed.
        """
        return tuple(OutboxState(*row[:4], held=bool(row[4]))
                     for row in self._latest(', '.join(OutboxState._fields),
                                             instance_uuid))

    def latest_per_domain(self, instance_uuid=None):
        """The newest pending failure and the newest finished (delivered
        or dead) failure of each domain, oldest first; only
        ``instance_uuid``'s when given.

        This is what the health policy needs to know of a domain's
        notifications; the outbox is their only record. The notice that a
        failure is over (kind RESOLVED) reports no incident, so it is left
        out.
        """
        return [_entry(r) for r in self._latest(None, instance_uuid)]

    def _latest(self, columns, instance_uuid):
        select = (outbox_file.SELECT if columns is None
                  else f'SELECT {columns} FROM notifications')
        where, params = '', (notification_mod.FAILURE, PENDING)
        if instance_uuid is not None:
            where, params = 'AND instance_uuid = ? ', (
                notification_mod.FAILURE, instance_uuid, PENDING)
        with self._lock:
            return self._conn.execute(
                select + ' WHERE seq IN (SELECT MAX(seq) FROM notifications '
                f'WHERE kind = ? {where}GROUP BY instance_uuid, status = ?) '
                'ORDER BY seq', params).fetchall()
