import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from monitor import errors
from monitor.store import state_dir


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def state(tmp_path):
    path = tmp_path / 'state'
    path.mkdir()
    return str(path)


@pytest.fixture
def held(state):
    lock = state_dir.lock(state)
    yield lock
    lock.release()


# -- one daemon per state directory ------------------------------------------

def test_the_lock_file_names_the_holder(state, held):
    with open(state_dir.lock_path(state)) as stream:
        assert stream.read() == '%d\n' % os.getpid()
    assert mode(state_dir.lock_path(state)) == 0o600


def test_a_second_holder_is_refused_with_the_pid_and_the_path(state, held):
    with pytest.raises(errors.StateDirInUse) as excinfo:
        state_dir.lock(state)

    assert excinfo.value.pid == os.getpid()
    assert excinfo.value.path == state
    assert str(excinfo.value) == (
        'another guest-health-monitor (PID %d) already uses state_path %s'
        % (os.getpid(), state))


def test_the_lock_is_free_again_after_release(state, held):
    held.release()
    again = state_dir.lock(state)
    again.release()


def test_a_stale_pid_in_the_file_does_not_hold_the_lock(state):
    with open(state_dir.lock_path(state), 'w') as stream:
        stream.write('999999\n')
    lock = state_dir.lock(state)
    try:
        with open(state_dir.lock_path(state)) as stream:
            assert stream.read() == '%d\n' % os.getpid()
    finally:
        lock.release()


HOLDER = textwrap.dedent('''
    import sys, time
    from monitor.store import state_dir
    state_dir.lock(sys.argv[1])
    print('locked', flush=True)
    time.sleep(60)
''')


def test_the_kernel_releases_the_lock_of_a_killed_holder(state):
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, state],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == 'locked\n'
        with pytest.raises(errors.StateDirInUse) as excinfo:
            state_dir.lock(state)
        assert excinfo.value.pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()

    state_dir.lock(state).release()


# -- private modes -----------------------------------------------------------

def test_modes_become_private(state, tmp_path):
    os.chmod(state, 0o755)
    for name, file_mode in (('domains.dbm', 0o644),
                            ('domains.dbm.rw.lock', 0o755),
                            ('outbox.sqlite', 0o600)):
        path = os.path.join(state, name)
        open(path, 'w').close()
        os.chmod(path, file_mode)
    os.mkdir(os.path.join(state, 'sub'), 0o755)
    outside = tmp_path / 'elsewhere.dbm'
    outside.write_text('')
    os.chmod(outside, 0o644)

    state_dir.restrict_modes(state, [str(outside)])

    assert mode(state) == 0o700
    for name in ('domains.dbm', 'domains.dbm.rw.lock', 'outbox.sqlite'):
        assert mode(os.path.join(state, name)) == 0o600, name
    assert mode(os.path.join(state, 'sub')) == 0o700
    assert mode(outside) == 0o600


def test_symbolic_links_are_not_followed(state, tmp_path):
    target = tmp_path / 'shared.txt'
    target.write_text('')
    os.chmod(target, 0o644)
    os.symlink(target, os.path.join(state, 'link'))

    state_dir.restrict_modes(state)

    assert mode(target) == 0o644


def test_missing_extra_paths_are_ignored(state, tmp_path):
    state_dir.restrict_modes(state, [str(tmp_path / 'gone.dbm')])


def test_a_private_file_is_replaced_whole_and_readable_by_its_owner_only(
        tmp_path):
    path = str(tmp_path / 'kept.json')
    with open(path, 'w') as old:
        old.write('old')
    os.chmod(path, 0o644)

    state_dir.write_private(path, b'new')

    with open(path, 'rb') as kept:
        assert kept.read() == b'new'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ['kept.json']


def test_a_link_planted_at_the_temporary_path_is_never_followed(tmp_path):
    target = tmp_path / 'elsewhere'
    target.write_text('untouched')
    path = str(tmp_path / 'kept.json')
    os.symlink(str(target), path + '.tmp')

    with pytest.raises(OSError):
        state_dir.write_private(path, b'new')

    assert target.read_text() == 'untouched'
