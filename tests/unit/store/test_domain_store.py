import collections
import dataclasses
import dbm.dumb
import os
import stat

import pytest
from dogpile.cache import proxy as dogpile_proxy
from dogpile.cache import region as dogpile_region
from oslo_config import cfg

from monitor.conf import general
from monitor.health import record as domain_record
from monitor.health import states
from monitor.store import dbm_check
from monitor.store import domain_store

UUID_A = '00000000-0000-4000-8000-00000000000a'
UUID_B = '00000000-0000-4000-8000-00000000000b'
UUID_C = '00000000-0000-4000-8000-00000000000c'


def rec(uuid, name, **changes):
    return domain_record.DomainRecord(uuid, name, **changes)


def make_conf(tmp_path, backend='dogpile.cache.memory', arguments=(),
              expiration_time=0, host='compute-1'):
    conf = cfg.ConfigOpts()
    general.register_opts(conf)
    domain_store.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('state_path', str(tmp_path))
    conf.set_override('host', host)
    conf.set_override('backend', backend, group='cache')
    conf.set_override('backend_argument', list(arguments), group='cache')
    conf.set_override('expiration_time', expiration_time, group='cache')
    return conf


@pytest.fixture
def store(tmp_path):
    return domain_store.DomainStore.from_conf(make_conf(tmp_path))


def test_empty_store(store):
    assert store.get(UUID_A) is None
    assert store.uuids() == set()
    assert store.all() == []
    assert store.evict_missing({UUID_A}) == []


def test_put_get_delete(store):
    record = rec(UUID_A, 'guest-a', state=states.HEALTHY, misses=0,
                 last_ok=12.5, ever_healthy=True)
    store.put(record)
    assert store.get(UUID_A) == record
    assert store.uuids() == {UUID_A}
    store.put(rec(UUID_A, 'guest-a', state=states.ERROR, misses=1))
    assert store.get(UUID_A).state == states.ERROR
    assert store.uuids() == {UUID_A}
    store.delete(UUID_A)
    assert store.get(UUID_A) is None
    assert store.uuids() == set()
    store.delete(UUID_A)  # deleting twice is harmless


def test_records_cannot_be_changed_so_readers_may_share_them(store):
    record = rec(UUID_A, 'guest-a')
    store.put(record)
    fetched = store.get(UUID_A)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fetched.misses = 99
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.misses = 98
    assert store.get(UUID_A).misses == 0


def test_all_is_ordered_by_name(store):
    store.put(rec(UUID_C, 'alpha'))
    store.put(rec(UUID_A, 'charlie'))
    store.put(rec(UUID_B, 'bravo'))
    assert [r.name for r in store.all()] == ['alpha', 'bravo', 'charlie']
    assert store.uuids() == {UUID_A, UUID_B, UUID_C}


def test_evict_missing_removes_and_returns_gone_domains(store):
    for uuid, name in ((UUID_A, 'a'), (UUID_B, 'b'), (UUID_C, 'c')):
        store.put(rec(uuid, name))
    evicted = store.evict_missing({UUID_B, 'some-new-uuid'})
    assert [(r.uuid, r.name) for r in evicted] == [(UUID_A, 'a'),
                                                   (UUID_C, 'c')]
    assert store.uuids() == {UUID_B}
    assert store.get(UUID_A) is None and store.get(UUID_C) is None
    assert store.evict_missing({UUID_B}) == []


def test_stored_values_are_plain_dicts(tmp_path):
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    store = domain_store.DomainStore(region, namespace='h')
    store.put(rec(UUID_A, 'a', state=states.REPORTED, failing_since=3.0))
    keys = list(region.backend._cache)
    values = [region.get(key) for key in keys]
    assert all(isinstance(v, (dict, list)) for v in values)


def test_hosts_sharing_a_backend_keep_separate_indexes():
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    one = domain_store.DomainStore(region, namespace='compute-1')
    two = domain_store.DomainStore(region, namespace='compute-2')
    one.put(rec(UUID_A, 'a'))
    two.put(rec(UUID_B, 'b'))
    assert one.uuids() == {UUID_A}
    assert two.uuids() == {UUID_B}
    assert two.evict_missing(set()) == [rec(UUID_B, 'b')]
    assert one.uuids() == {UUID_A}


def real_dbm():
    """The dbm module Python uses for new files, unless it is dbm.dumb."""
    module = dbm_check.new_dbm_module()
    return None if module == 'dbm.dumb' else module


PERSISTENT = [
    pytest.param(domain_store.SQLITE_BACKEND, domain_store.SQLITE_FILENAME,
                 id='sqlite'),
    pytest.param(domain_store.DBM_BACKEND, domain_store.DBM_FILENAME,
                 id='dbm', marks=pytest.mark.skipif(
                     real_dbm() is None,
                     reason='this Python has neither dbm.gnu nor dbm.ndbm')),
]


@pytest.mark.parametrize('backend,filename', PERSISTENT)
def test_store_survives_a_restart(tmp_path, backend, filename):
    conf = make_conf(tmp_path, backend=backend)
    first = domain_store.DomainStore.from_conf(conf)
    reported = rec(UUID_A, 'guest-a', state=states.REPORTED, misses=4,
                   last_ok=100.0, ever_healthy=True, failing_since=130.0)
    queued = rec(UUID_B, 'guest-b', state=states.ERROR, misses=3,
                 ever_healthy=True, failing_since=150.0)
    first.put(reported)
    with first.batch():
        first.put(queued)
        first.put(rec(UUID_C, 'guest-c'))
    first.delete(UUID_C)
    first.close()

    # Default file under state_path.
    assert any(name.startswith(filename) for name in os.listdir(tmp_path))

    second = domain_store.DomainStore.from_conf(conf)
    assert second.get(UUID_A) == reported
    assert second.get(UUID_B) == queued
    assert second.all() == [reported, queued]
    assert second.uuids() == {UUID_A, UUID_B}
    assert second.evict_missing({UUID_B}) == [reported]
    second.close()

    third = domain_store.DomainStore.from_conf(conf)
    assert third.uuids() == {UUID_B}
    third.close()


@pytest.mark.parametrize('backend,filename', PERSISTENT)
def test_filename_argument(tmp_path, backend, filename):
    path = tmp_path / 'elsewhere' / 'records.db'
    path.parent.mkdir()
    conf = make_conf(tmp_path, backend=backend,
                     arguments=['filename:%s' % path])
    store = domain_store.DomainStore.from_conf(conf)
    store.put(rec(UUID_A, 'a'))
    store.close()
    assert any(name.startswith('records.db')
               for name in os.listdir(path.parent))
    assert not any(name.startswith(filename)
                   for name in os.listdir(tmp_path))


def test_sqlite_state_file_is_private(tmp_path):
    conf = make_conf(tmp_path, backend=domain_store.SQLITE_BACKEND)
    store = domain_store.DomainStore.from_conf(conf)
    store.put(rec(UUID_A, 'a'))
    for name in os.listdir(tmp_path):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    store.close()


def test_expired_records_are_gone_but_still_evicted(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(dogpile_region.time, 'time', lambda: clock[0])
    conf = make_conf(tmp_path, expiration_time=60)
    store = domain_store.DomainStore.from_conf(conf)
    store.put(rec(UUID_A, 'a'))
    clock[0] += 30
    store.put(rec(UUID_B, 'b'))
    clock[0] += 45
    assert store.get(UUID_A) is None
    assert store.get(UUID_B) == rec(UUID_B, 'b')
    assert store.uuids() == {UUID_B}
    assert store.evict_missing(set()) == [rec(UUID_B, 'b')]
    assert store.uuids() == set()


@pytest.mark.parametrize('values,expected', [
    ([], {}),
    (['filename:/var/lib/x.dbm'], {'filename': '/var/lib/x.dbm'}),
    (['url:127.0.0.1:11211', ' distributed_lock : true'],
     {'url': '127.0.0.1:11211', 'distributed_lock': 'true'}),
])
def test_parse_backend_arguments(values, expected):
    assert domain_store.parse_backend_arguments(values) == expected


@pytest.mark.parametrize('bad', ['filename', ':value'])
def test_parse_backend_arguments_rejects_items_without_key(bad):
    with pytest.raises(ValueError, match=bad):
        domain_store.parse_backend_arguments([bad])


def test_region_arguments_default_files(tmp_path):
    conf = make_conf(tmp_path, backend='dogpile.cache.dbm')
    assert domain_store.region_arguments(conf) == {
        'filename': os.path.join(str(tmp_path), 'domains.dbm')}
    conf = make_conf(tmp_path, backend='guest_health_monitor.sqlite')
    assert domain_store.region_arguments(conf) == {
        'filename': os.path.join(str(tmp_path), 'domains.sqlite')}
    conf = make_conf(tmp_path)
    assert domain_store.region_arguments(conf) == {}


@pytest.mark.parametrize('name,known', [
    ('dogpile.cache.memory', True),
    ('dogpile.cache.dbm', True),
    ('dogpile.cache.memcached', True),
    ('guest_health_monitor.sqlite', True),
    ('dogpile.cache.nosuch', False),
    ('memory', False),
])
def test_known_backend(name, known):
    assert domain_store.known_backend(name) is known


def test_options():
    [(group, opts)] = domain_store.list_opts()
    assert group == 'cache'
    by_name = {opt.name: opt for opt in opts}
    assert by_name['backend'].default == 'dogpile.cache.memory'
    assert by_name['backend_argument'].secret is True
    assert by_name['expiration_time'].default == 0


# -- what reaches the backend ---------------------------------------------------

class CountingBackend(dogpile_proxy.ProxyBackend):
    """Records every call the store makes to the backend."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.fail_writes = 0

    def _record(self, name, detail):
        self.calls.append((name, detail))

    def _write(self, name, detail):
        self._record(name, detail)
        if self.fail_writes:
            self.fail_writes -= 1
            raise OSError('disk full')

    def names(self):
        return collections.Counter(name for name, _ in self.calls)

    def get(self, key):
        self._record('get', key)
        return self.proxied.get(key)

    def get_multi(self, keys):
        self._record('get_multi', tuple(keys))
        return self.proxied.get_multi(keys)

    def set(self, key, value):
        self._write('set', key)
        self.proxied.set(key, value)

    def set_multi(self, mapping):
        self._write('set_multi', tuple(sorted(mapping)))
        self.proxied.set_multi(mapping)

    def delete(self, key):
        self._write('delete', key)
        self.proxied.delete(key)

    def delete_multi(self, keys):
        self._write('delete_multi', tuple(sorted(keys)))
        self.proxied.delete_multi(keys)


def counted_region(expiration_time=None):
    counting = CountingBackend()
    region = dogpile_region.make_region().configure(
        'dogpile.cache.memory', expiration_time=expiration_time,
        wrap=[counting])
    return region, counting


def key(uuid, namespace='h'):
    return 'guest-health-monitor:%s:domain:%s' % (namespace, uuid)


INDEX = 'guest-health-monitor:h:index'


def test_put_of_an_unchanged_record_writes_nothing():
    region, counting = counted_region()
    store = domain_store.DomainStore(region, namespace='h')
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=5.0))
    counting.calls.clear()
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=5.0))
    with store.batch():
        store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=5.0))
    assert counting.calls == []
    store.delete(UUID_B)  # never stored: nothing to delete either
    assert counting.calls == []
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, misses=1,
                  last_ok=5.0))
    assert counting.calls == [('set_multi', (key(UUID_A),))]


def test_reads_and_puts_do_not_reload_the_index():
    region, counting = counted_region()
    store = domain_store.DomainStore(region, namespace='h')
    assert counting.names() == {'get': 1}  # the index, once at start
    counting.calls.clear()
    for uuid, name in ((UUID_A, 'a'), (UUID_B, 'b'), (UUID_C, 'c')):
        store.put(rec(uuid, name))
        store.get(uuid)
    store.put(rec(UUID_B, 'b', misses=1))
    store.all()
    store.uuids()
    store.delete(UUID_C)
    # One write per change; the index is written only when the set of
    # domains changed; nothing is read.
    assert counting.calls == [
        ('set_multi', (key(UUID_A), INDEX)),
        ('set_multi', (key(UUID_B), INDEX)),
        ('set_multi', (key(UUID_C), INDEX)),
        ('set_multi', (key(UUID_B),)),
        ('delete_multi', (key(UUID_C),)),
        ('set_multi', (INDEX,)),
    ]


def test_batch_writes_once_at_its_end():
    region, counting = counted_region()
    store = domain_store.DomainStore(region, namespace='h')
    store.put(rec(UUID_A, 'a'))
    store.put(rec(UUID_B, 'b'))
    counting.calls.clear()
    with store.batch() as batch:
        assert batch is store
        store.put(rec(UUID_A, 'a', misses=1))
        store.put(rec(UUID_B, 'b'))  # unchanged
        store.put(rec(UUID_C, 'c'))
        store.delete(UUID_B)
        # Reads see the batch's writes before they reach the backend.
        assert store.get(UUID_A).misses == 1
        assert store.get(UUID_B) is None
        assert [r.uuid for r in store.all()] == [UUID_A, UUID_C]
        assert store.uuids() == {UUID_A, UUID_C}
        assert counting.calls == []
    assert counting.calls == [
        ('delete_multi', (key(UUID_B),)),
        ('set_multi', (key(UUID_A), key(UUID_C), INDEX)),
    ]
    # What reached the backend is what a restart loads.
    again = domain_store.DomainStore(region, namespace='h')
    assert again.all() == store.all()


def test_nested_batches_write_at_the_outermost_end():
    region, counting = counted_region()
    store = domain_store.DomainStore(region, namespace='h')
    counting.calls.clear()
    with store.batch():
        store.put(rec(UUID_A, 'a'))
        with store.batch():
            store.put(rec(UUID_B, 'b'))
        store.evict_missing({UUID_B})
        assert counting.calls == []
    assert counting.calls == [
        ('delete_multi', (key(UUID_A),)),
        ('set_multi', (key(UUID_B), INDEX)),
    ]


def test_batch_still_writes_when_its_body_fails():
    region, counting = counted_region()
    store = domain_store.DomainStore(region, namespace='h')
    with pytest.raises(RuntimeError):
        with store.batch():
            store.put(rec(UUID_A, 'a'))
            raise RuntimeError('boom')
    assert domain_store.DomainStore(region, namespace='h').uuids() == {
        UUID_A}


def test_a_failed_write_is_kept_and_written_next_time():
    region, counting = counted_region()
    store = domain_store.DomainStore(region, namespace='h')
    store.put(rec(UUID_B, 'b'))
    counting.fail_writes = 2
    with pytest.raises(OSError):
        with store.batch():
            store.put(rec(UUID_A, 'a'))
            store.delete(UUID_B)
    # The daemon goes on from what it holds.
    assert store.uuids() == {UUID_A}
    with pytest.raises(OSError):
        store.put(rec(UUID_C, 'c'))
    assert store.uuids() == {UUID_A, UUID_C}
    counting.calls.clear()
    store.flush()
    assert counting.calls == [
        ('delete_multi', (key(UUID_B),)),
        ('set_multi', (key(UUID_A), key(UUID_C), INDEX)),
    ]
    assert domain_store.DomainStore(region, namespace='h').uuids() == {
        UUID_A, UUID_C}


def test_unchanged_records_are_rewritten_before_they_expire(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(dogpile_region.time, 'time', lambda: clock[0])
    region, counting = counted_region(expiration_time=60)
    store = domain_store.DomainStore(region, namespace='h')
    store.put(rec(UUID_A, 'a'))
    counting.calls.clear()
    clock[0] += 29
    store.put(rec(UUID_A, 'a'))
    assert counting.calls == []
    clock[0] += 1
    store.put(rec(UUID_A, 'a'))
    assert counting.calls == [('set_multi', (key(UUID_A),))]
    clock[0] += 59
    assert store.get(UUID_A) == rec(UUID_A, 'a')
    # A restart keeps the time of the last write, not of the load.
    again = domain_store.DomainStore(region, namespace='h')
    clock[0] += 2
    assert again.get(UUID_A) is None
    assert again.evict_missing(set()) == []


def test_the_store_keeps_whatever_fields_a_record_has():
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    # Written by a release whose records had a field this one lacks.
    region.set_multi({
        INDEX: [UUID_A],
        key(UUID_A): dict(rec(UUID_A, 'a', misses=2).to_dict(),
                          retired_field='n-1'),
    })
    store = domain_store.DomainStore(region, namespace='h')
    assert store.get(UUID_A) == rec(UUID_A, 'a', misses=2)
    store.put(rec(UUID_A, 'a', misses=2))
    assert region.get(key(UUID_A)) == rec(UUID_A, 'a', misses=2).to_dict()


def test_a_record_replaced_in_the_store_is_written_and_read_back():
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    store = domain_store.DomainStore(region, namespace='h')
    record = rec(UUID_A, 'a')
    store.put(record)
    store.put(dataclasses.replace(record, misses=7))
    assert store.get(UUID_A).misses == 7
    assert store.all()[0].misses == 7
    assert region.get(key(UUID_A))['misses'] == 7
    assert domain_store.DomainStore(region, namespace='h').get(
        UUID_A).misses == 7


# -- refused backends ---------------------------------------------------------

def test_dbm_falling_back_to_dumb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(dbm_check, 'new_dbm_module', lambda: 'dbm.dumb')
    conf = make_conf(tmp_path, backend='dogpile.cache.dbm')
    with pytest.raises(ValueError, match='would use dbm.dumb.*'
                       'guest_health_monitor.sqlite'):
        domain_store.check_backend(conf)
    with pytest.raises(ValueError, match='dbm.dumb'):
        domain_store.DomainStore.from_conf(conf)
    assert os.listdir(tmp_path) == []


def test_dbm_with_a_real_dbm_module_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(dbm_check, 'new_dbm_module', lambda: 'dbm.gnu')
    domain_store.check_backend(make_conf(tmp_path,
                                         backend='dogpile.cache.dbm'))


def test_an_existing_dumb_dbm_file_is_refused(tmp_path):
    with dbm.dumb.open(str(tmp_path / 'domains.dbm'), 'c') as db:
        db[b'k'] = b'v'
    conf = make_conf(tmp_path, backend='dogpile.cache.dbm')
    with pytest.raises(ValueError, match='is a dbm.dumb file'):
        domain_store.check_backend(conf)


def test_an_existing_file_that_is_no_dbm_is_refused(tmp_path):
    (tmp_path / 'domains.dbm').write_bytes(b'not a database at all')
    conf = make_conf(tmp_path, backend='dogpile.cache.dbm')
    with pytest.raises(ValueError, match='not a dbm file'):
        domain_store.check_backend(conf)


def test_new_dbm_module_is_what_python_picks():
    assert dbm_check.new_dbm_module() in ('dbm.gnu', 'dbm.ndbm',
                                              'dbm.dumb', 'dbm.sqlite3')


def test_sqlite_file_that_cannot_be_opened_is_refused(tmp_path):
    (tmp_path / 'domains.sqlite').write_bytes(b'x' * 4096)
    conf = make_conf(tmp_path, backend='guest_health_monitor.sqlite')
    with pytest.raises(ValueError, match='cannot open .*domains.sqlite'):
        domain_store.check_backend(conf)


def test_other_backends_pass_the_check(tmp_path):
    domain_store.check_backend(make_conf(tmp_path))
    domain_store.check_backend(make_conf(
        tmp_path, backend='guest_health_monitor.sqlite'))


def test_records_are_not_deep_copied(monkeypatch):
    store = domain_store.DomainStore(
        dogpile_region.make_region().configure('dogpile.cache.memory'),
        namespace='h')

    def deep_copy(*args, **kwargs):
        raise AssertionError('dataclasses.asdict deep-copies every value')

    monkeypatch.setattr(dataclasses, 'asdict', deep_copy)
    with store.batch():
        store.put(rec(UUID_A, 'a'))
        store.put(rec(UUID_A, 'a', misses=1))
    assert store.all() == [rec(UUID_A, 'a', misses=1)]
    assert store.evict_missing(set()) == [rec(UUID_A, 'a', misses=1)]


# -- lagging fields -------------------------------------------------------------

def test_an_answered_ping_alone_is_written_late_but_read_at_once(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(dogpile_region.time, 'time', lambda: clock[0])
    region, counting = counted_region()
    store = domain_store.DomainStore(region, namespace='h')
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=1000.0))
    counting.calls.clear()
    clock[0] += 10
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=1010.0))
    assert counting.calls == []
    assert store.get(UUID_A).last_ok == 1010.0
    assert store.all()[0].last_ok == 1010.0
    clock[0] += domain_store.LAG
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=clock[0]))
    assert counting.calls == [('set_multi', (key(UUID_A),))]
    assert region.get(key(UUID_A))['last_ok'] == clock[0]


def test_any_other_change_is_written_at_once_with_the_lagging_fields():
    region, counting = counted_region()
    store = domain_store.DomainStore(region, namespace='h')
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=1000.0))
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=1010.0))
    counting.calls.clear()
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, misses=1,
                  last_ok=1010.0))
    assert counting.calls == [('set_multi', (key(UUID_A),))]
    assert region.get(key(UUID_A))['last_ok'] == 1010.0


def test_a_clean_stop_writes_what_lagged():
    region, _counting = counted_region()
    store = domain_store.DomainStore(region, namespace='h')
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=1000.0))
    store.put(rec(UUID_A, 'a', state=states.HEALTHY, last_ok=1010.0))
    assert region.get(key(UUID_A))['last_ok'] == 1000.0
    store.close()
    assert domain_store.DomainStore(region, namespace='h').get(
        UUID_A).last_ok == 1010.0
