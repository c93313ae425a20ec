import os

import pytest
from dogpile.cache import region as dogpile_region
from oslo_config import cfg

from monitor import config
from monitor import domain_record
from monitor import domain_store
from monitor import states

UUID_A = '00000000-0000-4000-8000-00000000000a'
UUID_B = '00000000-0000-4000-8000-00000000000b'
UUID_C = '00000000-0000-4000-8000-00000000000c'


def rec(uuid, name, **changes):
    return domain_record.DomainRecord(uuid, name, **changes)


def make_conf(tmp_path, backend='dogpile.cache.memory', arguments=(),
              expiration_time=0, host='compute-1'):
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
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


def test_returned_records_are_copies(store):
    record = rec(UUID_A, 'guest-a')
    store.put(record)
    fetched = store.get(UUID_A)
    fetched.misses = 99
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


def test_dbm_store_survives_a_restart(tmp_path):
    conf = make_conf(tmp_path, backend='dogpile.cache.dbm')
    first = domain_store.DomainStore.from_conf(conf)
    reported = rec(UUID_A, 'guest-a', state=states.REPORTED, misses=4,
                   last_ok=100.0, ever_healthy=True, failing_since=130.0)
    queued = rec(UUID_B, 'guest-b', state=states.ERROR, misses=3,
                 ever_healthy=True, failing_since=150.0)
    first.put(reported)
    first.put(queued)
    first.put(rec(UUID_C, 'guest-c'))
    first.delete(UUID_C)
    first.close()

    # Default file under state_path.
    assert any(name.startswith(domain_store.DBM_FILENAME)
               for name in os.listdir(tmp_path))

    second = domain_store.DomainStore.from_conf(conf)
    assert second.get(UUID_A) == reported
    assert second.get(UUID_B) == queued
    assert second.uuids() == {UUID_A, UUID_B}
    assert second.evict_missing({UUID_B}) == [reported]

    third = domain_store.DomainStore.from_conf(conf)
    assert third.uuids() == {UUID_B}


def test_dbm_filename_argument(tmp_path):
    path = tmp_path / 'elsewhere' / 'records.db'
    path.parent.mkdir()
    conf = make_conf(tmp_path, backend='dogpile.cache.dbm',
                     arguments=['filename:%s' % path])
    store = domain_store.DomainStore.from_conf(conf)
    store.put(rec(UUID_A, 'a'))
    assert any(name.startswith('records.db')
               for name in os.listdir(path.parent))
    assert not any(name.startswith(domain_store.DBM_FILENAME)
                   for name in os.listdir(tmp_path))


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


def test_region_arguments_default_dbm_file(tmp_path):
    conf = make_conf(tmp_path, backend='dogpile.cache.dbm')
    assert domain_store.region_arguments(conf) == {
        'filename': os.path.join(str(tmp_path), 'domains.dbm')}
    conf = make_conf(tmp_path)
    assert domain_store.region_arguments(conf) == {}


@pytest.mark.parametrize('name,known', [
    ('dogpile.cache.memory', True),
    ('dogpile.cache.dbm', True),
    ('dogpile.cache.memcached', True),
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
