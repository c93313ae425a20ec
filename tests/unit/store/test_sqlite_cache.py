import importlib.metadata
import json
import os
import sqlite3
import stat

import pytest
from dogpile.cache import api as dogpile_api
from dogpile.cache import region as dogpile_region

from monitor.store import sqlite_cache

NAME = 'guest_health_monitor.sqlite'


def make_region(path, expiration_time=None):
    return dogpile_region.make_region().configure(
        NAME, expiration_time=expiration_time,
        arguments={'filename': str(path)})


@pytest.fixture
def path(tmp_path):
    return tmp_path / 'cache.sqlite'


@pytest.fixture
def region(path):
    region = make_region(path)
    yield region
    region.backend.close()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_registered_through_the_dogpile_entry_point():
    [entry] = [e for e in importlib.metadata.entry_points(group='dogpile.cache')
               if e.name == NAME]
    assert entry.load() is sqlite_cache.SQLiteBackend


def test_region_loads_the_backend_by_name(region):
    assert isinstance(region.backend, sqlite_cache.SQLiteBackend)


def test_get_set_delete(region):
    assert region.get('a') is dogpile_api.NO_VALUE
    region.set('a', {'state': 'HEALTHY', 'misses': 0, 'last_ok': 1.5})
    assert region.get('a') == {'state': 'HEALTHY', 'misses': 0,
                               'last_ok': 1.5}
    region.set('a', ['x', None, True])
    assert region.get('a') == ['x', None, True]
    region.delete('a')
    assert region.get('a') is dogpile_api.NO_VALUE
    region.delete('a')  # deleting twice is harmless


def test_multi(region):
    region.set_multi({'a': 1, 'b': {'k': 'v'}, 'c': 'three'})
    assert region.get_multi(['c', 'missing', 'a', 'b']) == [
        'three', dogpile_api.NO_VALUE, 1, {'k': 'v'}]
    region.delete_multi(['a', 'c', 'missing'])
    assert region.get_multi(['a', 'b', 'c']) == [
        dogpile_api.NO_VALUE, {'k': 'v'}, dogpile_api.NO_VALUE]
    region.set_multi({})
    region.delete_multi([])
    assert region.get_multi([]) == []


def test_get_multi_beyond_one_query(region):
    keys = ['key-%05d' % i for i in range(1234)]
    region.set_multi({key: i for i, key in enumerate(keys)})
    wanted = list(reversed(keys)) + ['missing']
    assert region.get_multi(wanted) == list(range(1233, -1, -1)) + [
        dogpile_api.NO_VALUE]


def test_values_survive_reopening(path):
    first = make_region(path)
    first.set_multi({'a': {'n': 1}, 'b': {'n': 2}})
    first.delete('b')
    first.backend.close()
    second = make_region(path)
    assert second.get_multi(['a', 'b']) == [{'n': 1}, dogpile_api.NO_VALUE]
    second.backend.close()


def test_values_are_json_rows(region, path):
    region.set('a', {'uuid': 'u', 'name': 'guest-a', 'paused': False})
    conn = sqlite3.connect(path)
    [(key, value, metadata)] = conn.execute(
        'SELECT key, value, metadata FROM cache').fetchall()
    conn.close()
    assert key == 'a'
    assert json.loads(value) == {'uuid': 'u', 'name': 'guest-a',
                                 'paused': False}
    assert set(json.loads(metadata)) >= {'ct', 'v'}


def test_creation_time_kept_for_expiration(path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(dogpile_region.time, 'time', lambda: clock[0])
    region = make_region(path, expiration_time=60)
    region.set('a', 1)
    clock[0] += 30
    region.set('b', 2)
    clock[0] += 45
    assert region.get_multi(['a', 'b']) == [dogpile_api.NO_VALUE, 2]
    assert region.get_value_metadata('b').cached_time == 1030.0
    region.backend.close()


def test_set_multi_is_one_transaction(region):
    statements = []
    region.backend._conn.set_trace_callback(statements.append)
    region.set_multi({'key-%d' % i: i for i in range(100)})
    region.delete_multi(['key-%d' % i for i in range(50)])
    transactions = [s for s in statements if s.split()[0] in
                    ('BEGIN', 'COMMIT', 'ROLLBACK')]
    assert transactions == ['BEGIN IMMEDIATE', 'COMMIT',
                            'BEGIN IMMEDIATE', 'COMMIT']


def test_a_value_json_cannot_encode_writes_nothing(region):
    region.set('a', 'before')
    with pytest.raises(TypeError):
        region.set_multi({'a': 'after', 'b': {1, 2}})
    assert region.get_multi(['a', 'b']) == ['before', dogpile_api.NO_VALUE]


def test_files_are_private(tmp_path):
    path = tmp_path / 'state' / 'cache.sqlite'
    region = make_region(path)
    region.set('a', 1)
    # The -wal and -shm files exist while the connection is open.
    for name in ('cache.sqlite', 'cache.sqlite-wal', 'cache.sqlite-shm'):
        assert mode(path.parent / name) == 0o600, name
    assert mode(path.parent) == 0o700
    region.backend.close()


def test_write_ahead_log(region, path):
    conn = sqlite3.connect(path)
    assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    conn.close()


def test_filename_is_required(tmp_path):
    with pytest.raises(ValueError, match='filename'):
        dogpile_region.make_region().configure(NAME, arguments={})


def test_newer_schema_is_refused(path):
    make_region(path).backend.close()
    conn = sqlite3.connect(path)
    conn.execute('PRAGMA user_version = 99')
    conn.close()
    with pytest.raises(sqlite3.DatabaseError, match='newer version'):
        make_region(path)
