"""The daemon stops at start, naming the file and what to do, when its
outbox is damaged, foreign or truncated; it never replaces it."""

import os
import sqlite3

import pytest

from monitor.notify import notification as notification_mod
from monitor.notify.outbox import Outbox
from tests.unit.cmd import test_daemon as test_cmd


def write_outbox(path):
    box = Outbox(path, max_size=10)
    box.enqueue(notification_mod.Notification.new(
        'uuid-1', 'vm-1', 'compute-1', 0), 100.0)
    box.close()


def corrupt_page_2(path):
    with open(path, 'r+b') as f:
        f.seek(4096)
        f.write(b'\xa5' * 4096)


def truncate(path):
    os.truncate(path, 0)


def replace_with_text(path):
    with open(path, 'w') as f:
        f.write('not sqlite\n' * 100)


def replace_with_foreign_database(path):
    os.unlink(path)
    with sqlite3.connect(path) as other:
        other.execute('CREATE TABLE users (name TEXT)')
    other.close()


def set_newer_version(path):
    with sqlite3.connect(path) as other:
        other.execute('PRAGMA user_version = 99')
    other.close()


@pytest.mark.parametrize('damage, problem', [
    (corrupt_page_2, 'is corrupt'),
    (truncate, 'is empty (0 bytes)'),
    (replace_with_text, 'is not an sqlite database'),
    (replace_with_foreign_database, 'not an outbox of this monitor'),
    (set_newer_version, 'written by a newer version'),
])
def test_the_daemon_refuses_to_start_on_a_bad_outbox(tmp_path, damage,
                                                     problem):
    path = str(tmp_path / 'state' / 'outbox.sqlite')
    write_outbox(path)
    damage(path)
    with open(path, 'rb') as f:
        before = f.read()

    proc = test_cmd.run(test_cmd.write_conf(tmp_path))

    assert proc.returncode not in (0, None), proc.stderr
    assert 'Traceback' not in proc.stderr
    assert path in proc.stderr and problem in proc.stderr
    assert 'aside' in proc.stderr
    with open(path, 'rb') as f:
        assert f.read() == before
