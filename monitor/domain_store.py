"""Per-domain records kept in a dogpile.cache region.

Records are stored as plain dicts (see DomainRecord.to_dict), so a backend
that pickles values (dogpile.cache.dbm) keeps them across a daemon restart
without depending on the class layout. dogpile has no key listing, so the
store keeps its own index of UUIDs under one more key. Keys carry the host
name: a shared backend (memcached, redis) may serve several hosts.

One daemon per host writes the store; it is not safe for several writers.
"""

import os

from dogpile.cache import api as dogpile_api
from dogpile.cache import region as dogpile_region
from dogpile.util import langhelpers
from oslo_config import cfg

from monitor import domain_record

GROUP = 'cache'

DBM_BACKEND = 'dogpile.cache.dbm'
DBM_FILENAME = 'domains.dbm'

OPTS = [
    cfg.StrOpt(
        'backend',
        default='dogpile.cache.memory',
        help="""
dogpile.cache backend that keeps the per-domain health records.

Possible values:

* dogpile.cache.memory (default): records live as long as the daemon; after
  a restart every domain starts over in discovery.
* dogpile.cache.dbm: records are kept in a file and survive a restart, so a
  domain already reported is not reported again.
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
* An integer from 1 to 31536000 (a year): seconds. Records are rewritten on
  every ping, so this only drops the state of a daemon that was stopped for
  longer than that.
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
    if conf.cache.backend == DBM_BACKEND and 'filename' not in arguments:
        arguments['filename'] = os.path.join(conf.state_path, DBM_FILENAME)
    return arguments


class DomainStore:

    def __init__(self, region, namespace=''):
        self._region = region
        prefix = 'guest-health-monitor:%s:' % namespace
        self._index_key = prefix + 'index'
        self._record_prefix = prefix + 'domain:'

    @classmethod
    def from_conf(cls, conf):
        region = dogpile_region.make_region().configure(
            conf.cache.backend,
            expiration_time=conf.cache.expiration_time or None,
            arguments=region_arguments(conf))
        return cls(region, namespace=conf.host)

    def _key(self, uuid):
        return self._record_prefix + uuid

    def _load_index(self):
        # The index never expires: records may, and get() then says so.
        index = self._region.get(self._index_key, ignore_expiration=True)
        if index is dogpile_api.NO_VALUE:
            return set()
        return set(index)

    def _save_index(self, uuids):
        self._region.set(self._index_key, sorted(uuids))

    def get(self, uuid):
        value = self._region.get(self._key(uuid))
        if value is dogpile_api.NO_VALUE:
            return None
        return domain_record.DomainRecord.from_dict(value)

    def put(self, record):
        self._region.set(self._key(record.uuid), record.to_dict())
        index = self._load_index()
        if record.uuid not in index:
            index.add(record.uuid)
            self._save_index(index)

    def delete(self, uuid):
        self._region.delete(self._key(uuid))
        index = self._load_index()
        if uuid in index:
            index.discard(uuid)
            self._save_index(index)

    def uuids(self):
        """UUIDs of the domains the store holds records for."""
        return {record.uuid for record in self.all()}

    def all(self):
        """Every stored record, ordered by domain name then UUID."""
        uuids = sorted(self._load_index())
        if not uuids:
            return []
        values = self._region.get_multi([self._key(u) for u in uuids])
        records = [domain_record.DomainRecord.from_dict(v)
                   for v in values if v is not dogpile_api.NO_VALUE]
        return sorted(records, key=lambda r: (r.name, r.uuid))

    def close(self):
        """Release the store at shutdown.

        Nothing is held open between calls: the dbm backend opens its file
        for each operation and every write has already reached it, and
        network backends drop their clients with the process. Kept so the
        service can treat the store like its other resources.
        """

    def evict_missing(self, live_uuids):
        """Drop the records of domains not in ``live_uuids``; return them.

        Index entries whose record has already expired are dropped too.
        """
        live_uuids = set(live_uuids)
        index = self._load_index()
        gone = index - live_uuids
        if not gone:
            return []
        evicted = []
        for uuid in sorted(gone):
            record = self.get(uuid)
            if record is not None:
                evicted.append(record)
            self._region.delete(self._key(uuid))
        self._save_index(index & live_uuids)
        return sorted(evicted, key=lambda r: (r.name, r.uuid))
