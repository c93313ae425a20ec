"""A dogpile.cache backend on a local sqlite file.

Registered as ``guest_health_monitor.sqlite`` through the ``dogpile.cache``
entry point, so any dogpile region (ours: ``[cache] backend``) can use it::

    region.configure('guest_health_monitor.sqlite',
                     arguments={'filename': '/var/lib/.../domains.sqlite'})

Why not dogpile's dbm backend: it opens the file for every operation and has
no transactions, and where the interpreter lacks gdbm and ndbm it silently
becomes ``dbm.dumb``, which rewrites its whole index on each write. Here one
connection stays open, and ``set_multi``/``delete_multi`` are one transaction
each, so a caller that writes a sweep with one ``set_multi`` commits it once.

Values are stored as JSON text, not pickles: the domain store keeps plain
dicts and lists, a JSON row can be read with the sqlite3 shell, and loading
the file never runs code from it. A value JSON cannot encode raises
TypeError/ValueError from ``set``. Tuples come back as lists.

The file is created 0600 (it names instances); sqlite gives the -wal and
-shm files the mode of the database file.
"""

import json
import os
import sqlite3
import threading

from dogpile.cache import api

_SCHEMA_VERSION = 1

_SCHEMA = (
    # metadata is dogpile's own (creation time, value format), kept as JSON
    # so a later dogpile that adds keys loses nothing.
    """CREATE TABLE IF NOT EXISTS cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        metadata TEXT NOT NULL) WITHOUT ROWID""",
)

# Milliseconds sqlite waits for another connection holding the write lock
# (an operator's sqlite3 shell, say) before giving up.
_BUSY_TIMEOUT_MS = 5000

# Keys per SELECT ... IN (...): below every sqlite's bound-variable limit
# (999 before 3.32).
_CHUNK = 500

_JSON = json.JSONEncoder(separators=(',', ':'), ensure_ascii=False,
                         check_circular=False)


class SQLiteBackend(api.CacheBackend):
    """dogpile.cache backend on sqlite (WAL, synchronous=NORMAL).

    Arguments:

    * ``filename`` (required): the database file; created 0600, and its
      directory 0700, when missing.

    synchronous=NORMAL: in WAL mode a commit is durable once the daemon's
    write returns, so a killed or crashed daemon loses nothing; only an OS
    crash or power loss can lose the last commits, and then every guest on
    the host went down with it and is looked at afresh anyway. FULL would
    add an fsync per commit that blocks the daemon's event loop. (The
    outbox, which owns notifications, uses FULL.)
    """

    def __init__(self, arguments):
        filename = arguments.get('filename')
        if not filename:
            raise ValueError('guest_health_monitor.sqlite needs a filename '
                             'argument')
        self.filename = str(filename)
        _create_private(self.filename)
        # One daemon writes; the lock keeps a transaction whole should two
        # threads ever share the connection.
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.filename, isolation_level=None,
                                     check_same_thread=False)
        try:
            self._configure()
        except BaseException:
            self._conn.close()
            raise

    def _configure(self):
        conn = self._conn
        conn.execute('PRAGMA busy_timeout = %d' % _BUSY_TIMEOUT_MS)
        mode = conn.execute('PRAGMA journal_mode = WAL').fetchone()[0]
        if mode.lower() != 'wal':
            raise sqlite3.OperationalError(
                '%s: sqlite refused WAL mode (got %s)' % (self.filename,
                                                          mode))
        conn.execute('PRAGMA synchronous = NORMAL')
        with self._transaction():
            version = conn.execute('PRAGMA user_version').fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    '%s was written by a newer version (schema %d)'
                    % (self.filename, version))
            if version < _SCHEMA_VERSION:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute('PRAGMA user_version = %d' % _SCHEMA_VERSION)

    def _transaction(self):
        return _Transaction(self._conn)

    def close(self):
        """Close the connection (the daemon calls it at shutdown)."""
        with self._lock:
            self._conn.close()

    # -- reads ---------------------------------------------------------------

    def get(self, key):
        with self._lock:
            row = self._conn.execute(
                'SELECT value, metadata FROM cache WHERE key = ?',
                (key,)).fetchone()
        if row is None:
            return api.NO_VALUE
        return _cached_value(row)

    def get_multi(self, keys):
        keys = list(keys)
        found = {}
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start:start + _CHUNK]
                rows = self._conn.execute(
                    'SELECT key, value, metadata FROM cache WHERE key IN '
                    '(%s)' % ','.join('?' * len(chunk)), chunk)
                for key, value, metadata in rows:
                    found[key] = (value, metadata)
        return [_cached_value(found[key]) if key in found else api.NO_VALUE
                for key in keys]

    # -- writes --------------------------------------------------------------

    def set(self, key, value):
        self.set_multi({key: value})

    def set_multi(self, mapping):
        # Encode before taking the lock: a value JSON refuses fails the
        # call without a half-written transaction.
        rows = [(key, _JSON.encode(value.payload),
                 _JSON.encode(value.metadata))
                for key, value in mapping.items()]
        if not rows:
            return
        with self._lock, self._transaction():
            self._conn.executemany(
                'INSERT OR REPLACE INTO cache (key, value, metadata) '
                'VALUES (?, ?, ?)', rows)

    def delete(self, key):
        self.delete_multi([key])

    def delete_multi(self, keys):
        rows = [(key,) for key in keys]
        if not rows:
            return
        with self._lock, self._transaction():
            self._conn.executemany('DELETE FROM cache WHERE key = ?', rows)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, conn):
        self._conn = conn

    def __enter__(self):
        # IMMEDIATE takes the write lock up front: another connection makes
        # us wait (busy_timeout) instead of failing half-way through.
        self._conn.execute('BEGIN IMMEDIATE')

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._conn.execute('COMMIT')
        else:
            self._conn.execute('ROLLBACK')
        return False


def _cached_value(row):
    value, metadata = row
    return api.CachedValue(json.loads(value), json.loads(metadata))


def _create_private(path):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # Created here rather than by sqlite, whose default mode follows the
    # umask (usually 0644): the records name instances.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
