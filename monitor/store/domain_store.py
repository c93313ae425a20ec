"""Per-domain records kept in a dogpile.cache region.

Records are stored as plain dicts, so any backend keeps them across a
daemon restart without depending on the record's class layout, and the
store does not care which fields a record has. dogpile has no key listing,
so the store keeps its own index of UUIDs under one more key. Keys carry the
host name: a shared backend (memcached, redis) may serve several hosts.

One daemon per host writes the store (enforced where the daemon starts), so
the store keeps what it last wrote in memory: reads never go to the backend
after the start, a record equal to the stored one is not written again, and
the index is written only when the set of domains changes. ``batch()``
gathers a sweep's writes into one ``set_multi`` (one transaction on the
sqlite backend).
"""

import contextlib
import os
import sqlite3
import sys
import time

from dogpile.cache import api as dogpile_api
from dogpile.cache import region as dogpile_region
from dogpile.util import langhelpers
from oslo_config import cfg

from monitor.health import record as domain_record
from monitor.store import dbm_check
from monitor.store import sqlite_cache

GROUP = 'cache'

MEMORY_BACKEND = 'dogpile.cache.memory'
DBM_BACKEND = 'dogpile.cache.dbm'
DBM_FILENAME = 'domains.dbm'
SQLITE_BACKEND = 'guest_health_monitor.sqlite'
SQLITE_FILENAME = 'domains.sqlite'

_DEFAULT_FILENAMES = {
    DBM_BACKEND: DBM_FILENAME,
    SQLITE_BACKEND: SQLITE_FILENAME,
}

OPTS = [
    cfg.StrOpt(
        'backend',
        default=MEMORY_BACKEND,
        help="""
dogpile.cache backend that keeps the per-domain health records.

Possible values:

* dogpile.cache.memory (default): records live as long as the daemon; after
  a restart every domain starts over in discovery.
* guest_health_monitor.sqlite (recommended to keep state): records are kept
  in a local sqlite file and survive a restart, so a domain already reported
  is not reported again. One transaction per sweep; fine at thousands of
  domains.
* dogpile.cache.dbm: a dbm file, only where Python has dbm.gnu or
  dbm.ndbm. Refused at start when Python would fall back to dbm.dumb,
  which is far too slow beyond a few hundred domains.
* Any other registered dogpile.cache backend that keeps what is stored
  (memcached, redis, ...). dogpile.cache.null is refused: it keeps nothing,
  so no domain could ever count its missed pings. A backend whose Python
  library is not installed is refused at start.

Related options:

* backend_argument, [DEFAULT] state_path
"""),
    cfg.MultiStrOpt(
        'backend_argument',
        default=[],
        secret=True,
        help="""
Argument passed to the backend, as key:value; repeat the option for several
arguments. Kept secret in the log, as it may carry a password.

Possible values:

* For guest_health_monitor.sqlite: filename:/path/to/file. Default
  <state_path>/domains.sqlite.
* For dogpile.cache.dbm: filename:/path/to/file. Default
  <state_path>/domains.dbm.
* For other backends, see the dogpile.cache documentation, e.g.
  url:127.0.0.1:11211 for memcached.

Related options:

* backend
"""),
    cfg.IntOpt(
        'expiration_time',
        default=0,
        min=0,
        max=31536000,
        help="""
Seconds after which an unchanged record is dropped and its domain starts over
in discovery.

Possible values:

* 0 (default): never.
* An integer from 1 to 31536000 (a year): seconds. A record the daemon still holds is written again
  once it is half that old, even when unchanged, so this only drops the
  state of a daemon that was stopped for longer than that (or of a domain
  the daemon no longer touched, such as a paused one).
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]


def known_backend(name):
    """True when ``name`` is a dogpile.cache backend that can be loaded."""
    # The loader is dogpile's own registry: built-in backends plus those
    # registered through entry points.
    try:
        dogpile_region._backend_loader.load(name)
    except (langhelpers.PluginLoader.NotFound, ImportError):
        return False
    return True


def parse_backend_arguments(values):
    """Turn ['key:value', ...] into a dict; the value may contain ':'.

    :raises ValueError: an item has no ':' or an empty key.
    """
    arguments = {}
    for item in values:
        key, sep, value = item.partition(':')
        if not sep or not key.strip():
            raise ValueError("expected key:value, got '%s'" % item)
        arguments[key.strip()] = value.strip()
    return arguments


def region_arguments(conf):
    """The backend arguments for this configuration, defaults applied."""
    arguments = parse_backend_arguments(conf.cache.backend_argument)
    default_name = _DEFAULT_FILENAMES.get(conf.cache.backend)
    if default_name and 'filename' not in arguments:
        arguments['filename'] = os.path.join(conf.state_path, default_name)
    return arguments


def check_backend(conf):
    """Refuse a backend that would not keep the records properly.

    * dogpile.cache.dbm where Python would use (or the file was written
      by) ``dbm.dumb``: it rewrites its index on every write, so a sweep
      over a few hundred domains takes longer than the interval. Python's
      ``dbm`` picks it silently when gdbm and ndbm are missing.
    * guest_health_monitor.sqlite whose file cannot be opened.

    :raises ValueError: with a message that names the problem and the fix.
    """
    backend = conf.cache.backend
    if backend == DBM_BACKEND:
        dbm_check.check(region_arguments(conf)['filename'], DBM_BACKEND,
                        SQLITE_BACKEND)
    elif backend == SQLITE_BACKEND:
        filename = region_arguments(conf)['filename']
        if not os.path.exists(filename):
            # Created by the daemon once it holds the state directory's
            # lock; nothing is written there during validation.
            return
        try:
            sqlite_cache.SQLiteBackend({'filename': filename}).close()
        except (OSError, sqlite3.Error) as exc:
            raise ValueError('cannot open %s: %s'
                             % (filename, getattr(exc, 'strerror', None)
                                or exc)) from None


# Seconds a record's lagging fields may stay unwritten: what a daemon
# killed without a clean stop may find stale in them at its next start.
LAG = 300.0


def _wall_clock():
    return time.time()


def _shared_keys(value):
    # A decoded record (JSON, pickle) has its own copy of every field name:
    # interned, thousands of records share one set.
    return {sys.intern(k) if isinstance(k, str) else k: v
            for k, v in value.items()}


def _by_name(record):
    return record.name, record.uuid


_MISSING = object()


def _same_but_lagging(written, record):
    """Whether ``record`` differs from the ``written`` dict in lagging
    fields only."""
    # The record with the written lagging values is compared whole: one
    # dict comparison in C instead of a loop over the fields, once per
    # answered ping. A lagging key missing from ``written`` makes them
    # differ, as a record of another shape must.
    probe = dict(vars(record))
    for key in domain_record.LAGGING_FIELDS:
        probe[key] = written.get(key, _MISSING)
    return probe == written


def _plain(record):
    # A record holds plain values only (numbers, strings, None), so a
    # shallow copy of its fields is a whole copy; dataclasses.asdict would
    # deep-copy each value on every put.
    return dict(vars(record))


class DomainStore:
    """The records of the domains this host monitors.

    ``get``/``all``/``uuids`` answer from memory. ``put``/``delete``/
    ``evict_missing`` write through to the backend at once, or at the end of
    the enclosing ``batch()``.
    """

    def __init__(self, region, namespace='', clock=None):
        self._region = region
        prefix = 'guest-health-monitor:%s:' % namespace
        self._index_key = prefix + 'index'
        self._record_prefix = prefix + 'domain:'
        self._expiration = region.expiration_time or None
        # dogpile stamps values with time.time() too.
        self._clock = clock or _wall_clock
        # uuid -> the dict last written for it, as it is in the backend once
        # pending writes are flushed.
        self._records = {}
        # uuid -> the DomainRecord of that dict, built once: records are
        # immutable, so every reader may share it (a round reads each
        # record several times).
        self._objects = {}
        # uuids loaded with other fields than this release writes (an
        # older or newer one's): their next put writes them anew.
        self._foreign = set()
        # uuids whose record in memory is newer than the written one in
        # lagging fields only.
        self._lagging = set()
        # uuid -> epoch seconds of its last write (dogpile's creation time),
        # for the expiration time.
        self._written_at = {}
        # Waiting for the end of the batch, or for a retry after a failed
        # write: uuids to write, uuids to delete, index to rewrite.
        self._dirty = set()
        self._deleted = set()
        self._index_dirty = False
        self._batch_depth = 0
        # UUIDs the stored index names.
        self._indexed = set()
        self._load()

    @classmethod
    def from_conf(cls, conf):
        check_backend(conf)
        region = dogpile_region.make_region().configure(
            conf.cache.backend,
            expiration_time=conf.cache.expiration_time or None,
            arguments=region_arguments(conf))
        return cls(region, namespace=conf.host)

    def _key(self, uuid):
        return self._record_prefix + uuid

    def _load(self):
        # The index never expires: records may, and then are not loaded.
        index = self._region.get(self._index_key, ignore_expiration=True)
        if index is dogpile_api.NO_VALUE:
            return
        uuids = sorted(index)
        if self._expiration is None:
            values = self._region.get_multi([self._key(u) for u in uuids])
            now = self._clock()
            for uuid, value in zip(uuids, values):
                if value is not dogpile_api.NO_VALUE:
                    self._records[uuid] = _shared_keys(value)
                    self._note_foreign(uuid)
                    self._written_at[uuid] = now
        else:
            # The creation time is needed to expire records on time; dogpile
            # gives it one key at a time.
            for uuid in uuids:
                cached = self._region.get_value_metadata(self._key(uuid))
                if cached is not None:
                    self._records[uuid] = _shared_keys(cached.payload)
                    self._note_foreign(uuid)
                    self._written_at[uuid] = cached.cached_time
        # Index entries whose record has expired stay: evict_missing()
        # drops them with the domain.
        self._indexed = set(uuids)

    def _note_foreign(self, uuid):
        if self._records[uuid].keys() != domain_record.FIELD_NAMES:
            self._foreign.add(uuid)

    # -- batches ---------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self):
        """Write everything put or deleted inside at the end, at once.

        Reads inside see the batch's writes. Batches nest: the outermost
        one writes. Writes made before an exception are still written (the
        daemon has acted on them), then the exception propagates.
        """
        self._batch_depth += 1
        try:
            yield self
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self.flush()

    def flush(self):
        """Write what is pending: one delete_multi, then one set_multi.

        Deletes go first, so a daemon killed in between leaves an index
        that still names a deleted record (skipped when loading), never a
        record that no index names. A failed write keeps everything
        pending for the next flush.
        """
        if self._deleted:
            self._region.delete_multi(
                [self._key(u) for u in sorted(self._deleted)])
            self._deleted.clear()
        mapping = {self._key(u): self._records[u] for u in self._dirty}
        if self._index_dirty:
            mapping[self._index_key] = sorted(self._indexed)
        if mapping:
            self._region.set_multi(mapping)
        self._dirty.clear()
        self._index_dirty = False

    def _changed(self):
        if self._batch_depth == 0:
            self.flush()

    # -- records -----------------------------------------------------------------

    def _fresh(self, uuid, now):
        """The stored dict of ``uuid`` unless missing or expired."""
        value = self._records.get(uuid)
        if value is None:
            return None
        if self._expiration is not None and \
                now - self._written_at[uuid] > self._expiration:
            return None
        return value

    def _object(self, uuid):
        record = self._objects.get(uuid)
        if record is None:
            record = domain_record.DomainRecord.from_dict(self._records[uuid])
            self._objects[uuid] = record
        return record

    def get(self, uuid):
        if self._fresh(uuid, self._clock()) is None:
            return None
        return self._object(uuid)

    def put(self, record):
        """Store ``record``; nothing is written when it equals the stored one.

        A record that differs from the written one only in its lagging
        fields (``record.LAGGING_FIELDS``) is kept in memory and
        written with the next other change, ``LAG`` seconds after its last
        write at the latest, or at close. With an expiration time, an
        unchanged record is written again once half of it has passed, so a
        running daemon's records never expire.
        """
        uuid = record.uuid
        now = self._clock()
        if uuid in self._records and uuid not in self._foreign and (
                self._expiration is None or
                now - self._written_at[uuid] < self._expiration / 2.0):
            stored = self._object(uuid)
            if stored == record:
                return
            if now - self._written_at[uuid] < LAG and \
                    _same_but_lagging(self._records[uuid], record):
                self._objects[uuid] = record
                self._lagging.add(uuid)
                return
        self._records[uuid] = _plain(record)
        self._objects[uuid] = record
        self._foreign.discard(uuid)
        self._lagging.discard(uuid)
        self._written_at[uuid] = now
        self._dirty.add(uuid)
        self._deleted.discard(uuid)
        if uuid not in self._indexed:
            self._indexed.add(uuid)
            self._index_dirty = True
        self._changed()

    def _forget(self, uuid):
        if uuid in self._records or uuid in self._indexed:
            self._deleted.add(uuid)
        self._records.pop(uuid, None)
        self._objects.pop(uuid, None)
        self._foreign.discard(uuid)
        self._lagging.discard(uuid)
        self._written_at.pop(uuid, None)
        self._dirty.discard(uuid)
        if uuid in self._indexed:
            self._indexed.discard(uuid)
            self._index_dirty = True

    def delete(self, uuid):
        self._forget(uuid)
        self._changed()

    def uuids(self):
        """UUIDs of the domains the store holds records for."""
        now = self._clock()
        return {u for u in self._records if self._fresh(u, now) is not None}

    def all(self):
        """Every stored record, ordered by domain name then UUID."""
        now = self._clock()
        records = [self._object(u) for u in self._records
                   if self._fresh(u, now) is not None]
        records.sort(key=_by_name)
        return records

    def evict_missing(self, live_uuids):
        """Drop the records of domains not in ``live_uuids``; return them.

        Index entries whose record has already expired are dropped too.
        """
        gone = self._indexed.difference(live_uuids)
        if not gone:
            return []
        now = self._clock()
        evicted = []
        for uuid in gone:
            value = self._fresh(uuid, now)
            if value is not None:
                evicted.append(self._object(uuid))
            self._forget(uuid)
        self._changed()
        evicted.sort(key=_by_name)
        return evicted

    def close(self):
        """Write what is pending and release the backend at shutdown.

        Backends that hold a connection (guest_health_monitor.sqlite) close
        it; the others keep nothing open between calls.
        """
        for uuid in self._lagging:
            self._records[uuid] = _plain(self._objects[uuid])
            self._dirty.add(uuid)
        self._lagging.clear()
        self.flush()
        close = getattr(self._region.backend, 'close', None)
        if close is not None:
            close()
