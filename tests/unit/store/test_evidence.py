"""The evidence store: private files, bounded in count and bytes, oldest
removed first but each domain's newest incident last, no leftovers of a
crash, and references the notification can carry."""

import hashlib
import os
import stat

import pytest
from oslo_config import cfg

from monitor.store import evidence
from monitor.store.evidence import EvidenceError
from monitor.store.evidence import EvidenceStore

UUID = '6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1'


class Clock:
    def __init__(self, now=1700000000.0):
        self.now = now

    def __call__(self):
        self.now += 1.0
        return self.now


@pytest.fixture
def directory(tmp_path):
    return str(tmp_path / 'state' / 'evidence')


def store_in(directory, **kwargs):
    return EvidenceStore(directory, clock=Clock(), **kwargs)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_saved_file_is_private_and_referenced(directory):
    old_umask = os.umask(0)
    try:
        ref = store_in(directory).save(UUID, 'console', b'Kernel panic\n')
    finally:
        os.umask(old_umask)

    assert mode(ref.path) == 0o600
    assert mode(directory) == 0o700
    assert os.path.dirname(ref.path) == directory
    with open(ref.path, 'rb') as saved:
        assert saved.read() == b'Kernel panic\n'
    assert ref.size == 13
    assert ref.sha256 == hashlib.sha256(b'Kernel panic\n').hexdigest()
    assert ref.kind == 'console'
    assert ref.path.endswith('-%s-console.log' % UUID)


def test_a_screenshot_keeps_its_format_in_the_name(directory):
    ref = store_in(directory).save(UUID, 'screenshot', b'P6\n1 1\n255\n\0\0\0',
                                   'image/x-portable-pixmap')

    assert ref.path.endswith('.ppm')
    assert ref.media_type == 'image/x-portable-pixmap'


def test_the_oldest_files_go_when_the_count_is_reached(directory):
    store = store_in(directory, max_files=3)
    refs = [store.save(UUID, 'console', b'%d' % n) for n in range(5)]

    kept = [path for path, _size in store.files()]

    assert kept == [ref.path for ref in refs[2:]]
    assert not os.path.exists(refs[0].path)


def test_the_oldest_files_go_when_the_bytes_are_reached(directory):
    store = store_in(directory, max_files=100, max_bytes=250)
    refs = [store.save(UUID, 'console', b'x' * 100) for _ in range(4)]

    kept = [path for path, _size in store.files()]

    assert kept == [ref.path for ref in refs[2:]]
    assert sum(size for _path, size in store.files()) <= 250


def test_the_file_just_written_is_kept_even_alone_at_the_bound(directory):
    store = store_in(directory, max_files=1, max_bytes=100)
    store.save(UUID, 'console', b'x' * 60)
    newest = store.save(UUID, 'console', b'y' * 100)

    assert [path for path, _ in store.files()] == [newest.path]


def test_evidence_larger_than_the_whole_store_is_refused(directory):
    with pytest.raises(EvidenceError):
        store_in(directory, max_bytes=10).save(UUID, 'console', b'x' * 11)


def test_files_of_others_in_the_directory_are_never_removed(directory):
    os.makedirs(directory)
    foreign = os.path.join(directory, 'README')
    with open(foreign, 'w') as note:
        note.write('kept')
    store = store_in(directory, max_files=1)
    store.save(UUID, 'console', b'1')
    store.save(UUID, 'console', b'2')

    assert os.path.exists(foreign)


def test_names_are_unique_within_one_second_and_across_restarts(directory):
    frozen = lambda: 1700000000.0  # noqa: E731
    first = EvidenceStore(directory, clock=frozen)
    restarted = EvidenceStore(directory, clock=frozen)

    a = first.save(UUID, 'console', b'a')
    b = first.save(UUID, 'console', b'b')
    c = restarted.save(UUID, 'console', b'c')

    assert len({a.path, b.path, c.path}) == 3
    with open(a.path, 'rb') as saved:
        assert saved.read() == b'a'


@pytest.mark.parametrize('uuid,kind', [('../../etc', 'console'),
                                       (UUID, 'con/sole'), (UUID, '')])
def test_names_cannot_leave_the_directory(directory, uuid, kind):
    with pytest.raises(EvidenceError):
        store_in(directory).save(uuid, kind, b'x')


def test_a_symlink_in_place_of_the_directory_is_refused(tmp_path):
    target = tmp_path / 'elsewhere'
    target.mkdir()
    link = tmp_path / 'evidence'
    link.symlink_to(target)

    with pytest.raises(EvidenceError):
        store_in(str(link)).save(UUID, 'console', b'x')
    assert list(target.iterdir()) == []


def test_references_round_trip_through_a_plain_dict(directory):
    ref = store_in(directory).save(UUID, 'console', b'x')

    assert evidence.EvidenceRef.from_dict(ref.to_dict()) == ref


def test_the_store_lives_under_state_path(tmp_path):
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.StrOpt('state_path', default=str(tmp_path)))
    evidence.register_opts(conf)
    conf([], default_config_files=[])

    store = EvidenceStore.from_conf(conf)

    assert store.directory == str(tmp_path / 'evidence')
    assert (store.max_files, store.max_bytes) == (100, 64 * 1024 * 1024)


# -- each domain's share ---------------------------------------------------------

OTHER = '0b8d2c55-7a7e-4f3e-8f7c-2d1e5a9b0c02'
THIRD = '0b8d2c55-7a7e-4f3e-8f7c-2d1e5a9b0c03'


def incident(store, uuid, screenshot_bytes=b'P6\n1 1\n255\n\0\0\0'):
    """What one recovery keeps: a console tail and a screenshot."""
    return [store.save(uuid, 'console', b'Kernel panic\n'),
            store.save(uuid, 'screenshot', screenshot_bytes,
                       'image/x-portable-pixmap')]


@pytest.mark.parametrize('bounds', [{'max_files': 4},
                                    {'max_files': 100, 'max_bytes': 1100}],
                         ids=['files', 'bytes'])
def test_a_flapping_guest_never_evicts_another_domains_newest_incident(
        directory, bounds):
    store = store_in(directory, **bounds)
    quiet = incident(store, OTHER)

    for _ in range(10):
        flapping = incident(store, UUID, b'x' * 1000)

    kept = [path for path, _size in store.files()]
    assert kept == [ref.path for ref in quiet + flapping]


def test_older_incidents_go_first_then_the_oldest_newest_ones(directory):
    store = store_in(directory, max_files=3)
    alone = store.save(THIRD, 'console', b'its only failure')
    older = store.save(OTHER, 'console', b'first failure')
    newest_of_other = store.save(OTHER, 'console', b'second failure')
    mine = store.save(UUID, 'console', b'x')

    kept = [path for path, _size in store.files()]
    assert kept == [alone.path, newest_of_other.path, mine.path]
    assert not os.path.exists(older.path)

    # More domains than the bound has room for: the bound holds, the
    # oldest newest incident goes.
    fourth = store.save('0b8d2c55-7a7e-4f3e-8f7c-2d1e5a9b0c04', 'console',
                        b'y')
    kept = [path for path, _size in store.files()]
    assert kept == [newest_of_other.path, mine.path, fourth.path]


# -- leftovers of a crash -------------------------------------------------------------

def leftover(directory, name, age, now):
    path = os.path.join(directory, name + '.tmp')
    with open(path, 'wb') as stream:
        stream.write(b'half a screensh')
    os.utime(path, (now - age, now - age))
    return path


def test_stale_temporary_files_are_removed_at_start_and_on_save(directory):
    now = 1700000000.0
    os.makedirs(directory)
    name = '20231114T221320Z-%06d-' + UUID + '-screenshot.ppm'
    stale = leftover(directory, name % 1, evidence.STALE_TEMPORARY + 1, now)
    fresh = leftover(directory, name % 2, 5, now)
    foreign = leftover(directory, 'notes', 3600, now)

    store = EvidenceStore(directory, clock=lambda: now)

    assert not os.path.exists(stale)
    # A write under way in another thread, maybe.
    assert os.path.exists(fresh)
    assert os.path.exists(foreign)

    later = now + evidence.STALE_TEMPORARY
    stale_since = leftover(directory, name % 3, evidence.STALE_TEMPORARY + 1,
                           later)
    store._clock = lambda: later
    store.save(UUID, 'console', b'x')
    assert not os.path.exists(fresh)
    assert not os.path.exists(stale_since)
    assert [size for _path, size in store.files()] == [1]
