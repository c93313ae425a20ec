"""The outbox's file: created in one step, checked at every open, refused
with what to do when it is not a sound outbox of this version (never
replaced), migrated from version 1, and shared with other processes
through sqlite's locks, waited for without stopping the daemon."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from monitor.errors import OutboxBusy
from monitor.notify import outbox_file
from monitor.notify.outbox import Outbox
from monitor.notify.outbox import OutboxError
from tests.unit.notify.test_outbox import REPO_ROOT
from tests.unit.notify.test_outbox import notification


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'state' / 'outbox.sqlite')


# Integrity at start: whatever is at the path is either a sound outbox of
# this version, or refused with what to do; never replaced, never altered.

def file_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def assert_refused(path, match):
    before = file_bytes(path)

    with pytest.raises(OutboxError, match=match) as error:
        Outbox(path, max_size=10)

    message = str(error.value)
    assert path in message
    assert 'move' in message and 'aside' in message
    assert file_bytes(path) == before
    return message


def write_outbox_with_entries(path, count=20):
    box = Outbox(path, max_size=100)
    for n in range(count):
        box.enqueue(notification(n), 100.0)
    # Closing checkpoints the WAL: every page is in the main file.
    box.close()


def test_a_missing_outbox_is_created_in_one_step(path):
    box = Outbox(path, max_size=10)
    box.close()

    # Built under a temporary name and linked in place: nothing of it
    # stays behind.
    assert sorted(os.listdir(os.path.dirname(path))) == ['outbox.sqlite']
    with sqlite3.connect(path) as other:
        assert other.execute('PRAGMA user_version').fetchone()[0] == 3
        assert other.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'


def test_a_failed_first_creation_leaves_no_file_behind(path, monkeypatch):
    # A file left empty (or schema-less) by a first start that failed or
    # crashed would later look like a truncated outbox and be refused.
    monkeypatch.setattr(outbox_file, 'SCHEMA', ('CREATE TABLE broken (',))

    with pytest.raises(OutboxError, match='outbox'):
        Outbox(path, max_size=1)

    assert os.listdir(os.path.dirname(path)) == []
    monkeypatch.undo()
    Outbox(path, max_size=1).close()
    assert os.listdir(os.path.dirname(path)) == ['outbox.sqlite']


def test_leftovers_of_an_interrupted_creation_do_not_stop_the_next(path):
    os.makedirs(os.path.dirname(path))
    for pid in (os.getpid(), 1):
        for leftover in ('', '-wal', '-journal'):
            with open(f'{path}.new-{pid}{leftover}', 'wb') as f:
                f.write(b'half-written' * 100)

    box = Outbox(path, max_size=10)
    entry = box.enqueue(notification(), 100.0)

    assert box.pending() == [entry]
    box.close()


def test_a_page_corrupted_outbox_is_refused(path):
    write_outbox_with_entries(path)
    with sqlite3.connect(path) as other:
        page_size = other.execute('PRAGMA page_size').fetchone()[0]
    with open(path, 'r+b') as f:
        f.seek(page_size)  # page 2: the notifications table
        f.write(b'\xa5' * page_size)

    assert_refused(path, 'is corrupt .*quick_check')


def test_a_zero_length_outbox_is_refused_not_recreated(path):
    write_outbox_with_entries(path)
    # What a truncation leaves: the notifications it kept are gone.
    os.truncate(path, 0)

    message = assert_refused(path, r'is empty \(0 bytes\)')

    assert 'truncated' in message
    assert os.path.getsize(path) == 0


def test_a_file_that_is_not_sqlite_is_refused(path):
    os.makedirs(os.path.dirname(path))
    with open(path, 'w') as f:
        f.write('this is not sqlite' * 100)

    assert_refused(path, 'is not an sqlite database')


def test_another_applications_database_is_refused_and_left_untouched(path):
    os.makedirs(os.path.dirname(path))
    with sqlite3.connect(path) as other:
        other.execute('CREATE TABLE users (name TEXT)')
        other.execute("INSERT INTO users VALUES ('alice')")
    other.close()

    message = assert_refused(path, 'not an outbox of this monitor')

    assert 'tables: users' in message


@pytest.mark.parametrize('version', [99, 4])
def test_an_outbox_from_a_newer_version_is_refused(path, version):
    write_outbox_with_entries(path, count=1)
    with sqlite3.connect(path) as other:
        other.execute(f'PRAGMA user_version = {version}')
    other.close()

    assert_refused(path, f'newer version .*schema {version}')


@pytest.mark.parametrize('version', [0, -1])
def test_an_outbox_with_an_unknown_older_version_is_refused(path, version):
    write_outbox_with_entries(path, count=1)
    with sqlite3.connect(path) as other:
        other.execute(f'PRAGMA user_version = {version}')
    other.close()

    assert_refused(path, f'not an outbox of this monitor .*user_version '
                         f'{version}')


def test_a_foreign_table_of_the_same_name_and_version_is_refused(path):
    os.makedirs(os.path.dirname(path))
    with sqlite3.connect(path) as other:
        other.execute('CREATE TABLE notifications (id TEXT, body TEXT)')
        other.execute('PRAGMA user_version = 1')
    other.close()

    assert_refused(path, 'not an outbox of this monitor')


def test_a_write_ahead_log_without_its_outbox_is_refused(path):
    box = Outbox(path, max_size=10)
    box.enqueue(notification(), 100.0)
    # While a connection is open, the commit is in outbox.sqlite-wal.
    os.rename(path, path + '.moved')

    # sqlite would replay that log into a new file.
    with pytest.raises(OutboxError, match='-wal but no'):
        Outbox(path, max_size=10)

    assert not os.path.exists(path)
    box.close()


# Locks taken by other processes: waited for in Python, bounded.

@pytest.fixture
def holder(path):
    """Another connection holding the write lock, as a CLI or an sqlite3
    shell would."""
    Outbox(path, max_size=10).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute('BEGIN IMMEDIATE')
    yield conn
    if conn.in_transaction:
        conn.execute('ROLLBACK')
    conn.close()


def test_a_lock_taken_elsewhere_is_waited_for_and_then_taken(path, holder):
    pauses = []

    def sleep(seconds):
        pauses.append(seconds)
        if len(pauses) == 3:
            holder.execute('COMMIT')

    box = Outbox(path, max_size=10, sleep=sleep)
    entry = box.enqueue(notification(), 100.0)

    assert len(pauses) == 3
    assert box.pending() == [entry]
    box.close()


def test_a_lock_kept_too_long_is_outbox_busy_and_changes_nothing(
        path, holder):
    box = Outbox(path, max_size=10, busy_wait=0.2)

    with pytest.raises(OutboxBusy, match='locked by another'):
        box.enqueue(notification(), 100.0)

    holder.execute('COMMIT')
    assert box.pending() == []
    box.close()


# The hub must keep running while another process holds the lock: under
# eventlet a wait inside sqlite's C busy handler stops every green thread.
HUB_CHILD = textwrap.dedent("""
    import eventlet
    eventlet.monkey_patch()
    import json, subprocess, sys
    from monitor.notify import notification as notification_mod
    from monitor.notify import outbox

    path = sys.argv[1]
    box = outbox.Outbox(path, max_size=10)
    holder = subprocess.Popen(
        [sys.executable, '-c',
         'import sqlite3, sys\\n'
         'c = sqlite3.connect(sys.argv[1], isolation_level=None)\\n'
         'c.execute("BEGIN IMMEDIATE")\\n'
         'print("locked", flush=True)\\n'
         'sys.stdin.readline()\\n'
         'c.execute("COMMIT")\\n', path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == 'locked\\n'

    ticks = [0]
    def ticker():
        while True:
            ticks[0] += 1
            eventlet.sleep(0.01)
    eventlet.spawn(ticker)
    eventlet.sleep(0)

    n = notification_mod.Notification.new('uuid-1', 'vm-1', 'compute-1', 0)
    seen = {}
    def write():
        seen['start'] = ticks[0]
        try:
            box.enqueue(n, 100.0)
        except Exception as e:
            seen['error'] = str(e)
        seen['end'] = ticks[0]
    writer = eventlet.spawn(write)
    eventlet.sleep(1.0)  # the lock is taken all along
    seen['release'] = ticks[0]
    waiting = not writer.dead
    holder.stdin.write('release\\n')
    holder.stdin.flush()
    holder.wait()
    writer.wait()
    result = {
        # Ticks while the writer waited and the lock was taken.
        'ticks_while_locked': min(seen['end'], seen['release'])
                              - seen['start'],
        'writer_waiting_at_release': waiting,
        'writer_error': seen.get('error'),
        'pending': [e.notification.domain_name for e in box.pending()]}
    print(json.dumps(result))
""")


def test_waiting_for_a_lock_of_another_process_keeps_the_hub_running(
        path):
    proc = subprocess.run([sys.executable, '-c', HUB_CHILD, path],
                          cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])

    # The writer was still waiting when the lock went, and other green
    # threads ran all along; then the write went through.
    assert result['ticks_while_locked'] > 0, result
    assert result['writer_waiting_at_release'] is True, result
    assert result['pending'] == ['vm-1'], result


# Dead letters: kept for dead_retention, at most max_dead of them.

def write_version_1_outbox(path):
    """An outbox as the version before details wrote it, with one pending
    and one delivered entry."""
    os.makedirs(os.path.dirname(path))
    conn = sqlite3.connect(path)
    conn.execute('PRAGMA journal_mode = WAL')
    conn.execute(outbox_file.SCHEMA[0].replace(
        ',\n        details TEXT,\n        held INTEGER NOT NULL DEFAULT 0'
        ",\n        kind TEXT NOT NULL DEFAULT 'failure'", ''))
    conn.execute(outbox_file.SCHEMA[1])
    columns = outbox_file.NOTIFICATION_COLUMNS
    written = [notification(1), notification(2)]
    for n, status in zip(written, ('pending', 'delivered')):
        values = n.to_dict()
        conn.execute(
            f'INSERT INTO notifications ({", ".join(columns)}, status, '
            'created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '
            '?, ?)', (*(values[c] for c in columns), status, 100.0, 100.0))
    conn.execute('PRAGMA user_version = 1')
    conn.commit()
    conn.close()
    return written


def test_a_version_1_outbox_is_migrated_and_its_entries_still_work(path):
    first, _delivered = write_version_1_outbox(path)

    box = Outbox(path, max_size=10)

    [pending] = box.pending()
    assert pending.notification == first
    assert pending.notification.details is None and not pending.held
    assert box.due(100.0) == [pending]
    box.mark_delivered(pending.id, 'ACCEPTED', 101.0)
    third = box.enqueue(notification(3), 102.0, held=True)
    box.close()
    with sqlite3.connect(path) as other:
        assert other.execute('PRAGMA user_version').fetchone()[0] == 3
    other.close()
    # Opened again: already version 3, nothing to migrate.
    again = Outbox(path, max_size=10)
    assert again.held() == [third]
    again.close()


def test_a_version_2_outbox_is_migrated_and_its_entries_are_failures(path):
    os.makedirs(os.path.dirname(path))
    conn = sqlite3.connect(path)
    conn.execute('PRAGMA journal_mode = WAL')
    conn.execute(outbox_file.SCHEMA[0].replace(
        ",\n        kind TEXT NOT NULL DEFAULT 'failure'", ''))
    conn.execute(outbox_file.SCHEMA[1])
    written = notification(1)
    values = written.to_dict()
    columns = outbox_file.NOTIFICATION_COLUMNS
    conn.execute(
        f'INSERT INTO notifications ({", ".join(columns)}, held, status, '
        f'created_at, next_attempt_at) VALUES '
        f'({", ".join("?" * len(columns))}, 0, ?, ?, ?)',
        (*(values[c] for c in columns), 'pending', 100.0, 100.0))
    conn.execute('PRAGMA user_version = 2')
    conn.commit()
    conn.close()

    box = Outbox(path, max_size=10)

    [pending] = box.pending()
    assert pending.notification == written
    assert pending.notification.kind == 'failure'
    box.close()
    with sqlite3.connect(path) as other:
        assert other.execute('PRAGMA user_version').fetchone()[0] == 3
    other.close()
