"""The durable outbox: what is stored, what is due, and what survives a
restart or a SIGKILL."""

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest
from oslo_config import cfg

from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.notify.outbox import Outbox
from monitor.notify.outbox import OutboxError
from monitor.notify.outbox import OutboxFull

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def notification(n=1, at=1700000000.0):
    return notification_mod.Notification.new(
        instance_uuid=f'00000000-0000-4000-8000-{n:012d}',
        domain_name=f'instance-{n:08x}', hostname='compute-1', at=at)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'state' / 'outbox.sqlite')


@pytest.fixture
def outbox(path):
    box = Outbox(path, max_size=10)
    yield box
    box.close()


def test_an_enqueued_notification_is_pending_and_due_at_once(outbox):
    n = notification()

    entry = outbox.enqueue(n, now=100.0)

    assert entry.notification == n
    assert (entry.status, entry.attempts, entry.created_at,
            entry.next_attempt_at) == ('pending', 0, 100.0, 100.0)
    assert outbox.due(99.9) == []
    assert outbox.due(100.0) == [entry]
    assert outbox.pending() == [entry]
    assert outbox.get(n.id) == entry


def test_due_entries_come_oldest_first(outbox):
    for n in (3, 1, 2):
        outbox.enqueue(notification(n), now=100.0)

    due = outbox.due(100.0)

    assert [e.notification.domain_name for e in due] == [
        'instance-00000003', 'instance-00000001', 'instance-00000002']


def test_enqueue_is_idempotent_on_the_notification_id(outbox):
    n = notification()
    first = outbox.enqueue(n, now=100.0)

    again = outbox.enqueue(n, now=200.0)

    assert again == first
    assert len(outbox.pending()) == 1


def test_a_full_outbox_refuses_new_notifications_loudly(path):
    box = Outbox(path, max_size=2)
    a, b = box.enqueue(notification(1), 1.0), box.enqueue(notification(2), 1.0)

    with pytest.raises(OutboxFull) as error:
        box.enqueue(notification(3), 1.0)
    assert error.value.max_size == 2
    assert '2 notifications' in str(error.value)

    # Finished entries free their place; re-enqueueing a stored one is fine.
    box.mark_delivered(a.id, 'ACCEPTED', 2.0)
    box.mark_dead(b.id, 2.0, 'Host not found')
    box.enqueue(notification(3), 3.0)
    fourth = notification(4)
    box.enqueue(fourth, 3.0)
    assert box.enqueue(fourth, 4.0).status == 'pending'
    with pytest.raises(OutboxFull):
        box.enqueue(notification(5), 4.0)
    box.close()


def test_a_failed_attempt_is_counted_and_postpones_the_entry(outbox):
    entry = outbox.enqueue(notification(), now=100.0)

    failed = outbox.record_attempt_failed(entry.id, 101.0, 103.0,
                                          'connection failed: refused')

    assert (failed.status, failed.attempts, failed.last_attempt_at,
            failed.next_attempt_at, failed.last_error) == (
        'pending', 1, 101.0, 103.0, 'connection failed: refused')
    assert outbox.due(102.9) == []
    assert outbox.due(103.0) == [failed]
    assert outbox.next_due_at() == 103.0


def test_a_delivered_entry_is_no_longer_pending(outbox):
    entry = outbox.enqueue(notification(), now=100.0)
    outbox.record_attempt_failed(entry.id, 101.0, 102.0, 'HTTP 503: busy')

    done = outbox.mark_delivered(entry.id, notification_mod.OutcomeKind.DUPLICATE,
                                 102.0)

    assert (done.status, done.outcome, done.attempts, done.finished_at) == (
        'delivered', 'DUPLICATE', 2, 102.0)
    assert outbox.pending() == []
    assert outbox.due(1e12) == []
    assert outbox.next_due_at() is None


def test_only_acceptance_or_duplicate_counts_as_delivered(outbox):
    entry = outbox.enqueue(notification(), now=100.0)

    with pytest.raises(ValueError):
        outbox.mark_delivered(entry.id, 'REJECTED', 101.0)
    assert outbox.get(entry.id).status == 'pending'


def test_delivered_entries_are_pruned_after_the_retention(path):
    box = Outbox(path, max_size=10, delivered_retention=60)
    old = box.enqueue(notification(1), 100.0)
    box.mark_delivered(old.id, 'ACCEPTED', 100.0)
    recent = box.enqueue(notification(2), 150.0)
    box.mark_delivered(recent.id, 'ACCEPTED', 150.0)
    assert box.get(old.id) is not None

    assert box.prune_delivered(now=161.0) == 1

    assert box.get(old.id) is None
    assert box.get(recent.id).status == 'delivered'
    box.close()


def test_delivering_prunes_what_is_past_the_retention(path):
    box = Outbox(path, max_size=10, delivered_retention=60)
    old = box.enqueue(notification(1), 100.0)
    box.mark_delivered(old.id, 'ACCEPTED', 100.0)
    later = box.enqueue(notification(2), 200.0)

    box.mark_delivered(later.id, 'ACCEPTED', 200.0)

    assert box.get(old.id) is None
    box.close()


def test_dead_letters_are_kept_visible_and_never_due(outbox):
    entry = outbox.enqueue(notification(), now=100.0)

    dead = outbox.mark_dead(entry.id, 101.0,
                            'Host with name compute-1 could not be found.')

    assert (dead.status, dead.outcome, dead.attempts, dead.last_error) == (
        'dead', 'REJECTED', 1, 'Host with name compute-1 could not be found.')
    assert outbox.dead_letters() == [dead]
    assert outbox.pending() == []
    assert outbox.due(1e12) == []
    assert outbox.prune_delivered(1e12) == 0


def test_a_requeued_dead_letter_is_due_with_its_original_content(outbox):
    entry = outbox.enqueue(notification(), now=100.0)
    outbox.record_attempt_failed(entry.id, 100.0, 101.0, 'HTTP 503: busy')
    outbox.mark_dead(entry.id, 101.0, 'Host not found')

    again = outbox.requeue_dead(entry.id)

    assert again.notification == entry.notification
    assert (again.status, again.attempts, again.outcome) == (
        'pending', 0, None)
    assert outbox.due(101.0) == [again]
    assert outbox.dead_letters() == []


def test_only_dead_letters_can_be_requeued(outbox):
    entry = outbox.enqueue(notification(), now=100.0)

    with pytest.raises(OutboxError, match='is pending, not dead'):
        outbox.requeue_dead(entry.id)
    with pytest.raises(OutboxError, match='no notification nope'):
        outbox.requeue_dead('nope')


def test_updates_of_a_finished_entry_are_refused(outbox):
    entry = outbox.enqueue(notification(), now=100.0)
    outbox.mark_delivered(entry.id, 'ACCEPTED', 101.0)

    with pytest.raises(OutboxError, match='is delivered, not pending'):
        outbox.record_attempt_failed(entry.id, 102.0, 103.0, 'late')
    with pytest.raises(OutboxError):
        outbox.mark_dead(entry.id, 102.0, 'late')


def test_everything_survives_closing_and_reopening(path):
    box = Outbox(path, max_size=10)
    pending = box.enqueue(notification(1), 100.0)
    box.record_attempt_failed(pending.id, 101.0, 105.0, 'HTTP 500: oops')
    dead = box.enqueue(notification(2), 100.0)
    box.mark_dead(dead.id, 101.0, 'Host not found')
    before = (box.pending(), box.dead_letters())
    box.close()

    reopened = Outbox(path, max_size=10)

    assert (reopened.pending(), reopened.dead_letters()) == before
    assert reopened.pending()[0].notification.generated_time == (
        pending.notification.generated_time)
    assert reopened.due(105.0)[0].attempts == 1
    reopened.close()


def test_an_enqueued_notification_survives_sigkill(path):
    # The child enqueues, reports the id, and is killed at once: no close,
    # no interpreter shutdown, no chance to flush anything.
    child = textwrap.dedent(f"""
        import os, signal, sys
        from monitor.notify import notification as notification_mod
        from monitor.notify import outbox
        box = outbox.Outbox({path!r}, max_size=10)
        n = notification_mod.Notification.new('uuid-1', 'vm-1', 'compute-1', 0)
        box.enqueue(n, 100.0)
        sys.stdout.write(n.id)
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, '-c', child], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    box = Outbox(path, max_size=10)
    entry = box.get(proc.stdout)
    box.close()

    assert entry is not None
    assert (entry.status, entry.notification.domain_name) == (
        'pending', 'vm-1')


def test_the_file_is_in_wal_mode_with_full_synchronous_commits(outbox, path):
    with sqlite3.connect(path) as other:
        mode = other.execute('PRAGMA journal_mode').fetchone()[0]

    assert mode == 'wal'
    # synchronous is per connection: check the outbox's own.
    assert outbox._conn.execute('PRAGMA synchronous').fetchone()[0] == 2


def test_the_state_directory_is_created_private(path):
    Outbox(path, max_size=1).close()

    directory = os.path.dirname(path)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_an_unusable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / 'not-a-directory'
    blocker.write_text('')

    with pytest.raises(OutboxError, match='cannot create the outbox'):
        Outbox(str(blocker / 'outbox.sqlite'), max_size=1)


def test_a_missing_outbox_is_not_created_when_told_not_to(path):
    with pytest.raises(OutboxError, match='no outbox at'):
        Outbox(path, max_size=1, create=False)

    assert not os.path.exists(os.path.dirname(path))


def test_entries_far_in_the_future_are_due_after_the_clock_stepped_back(
        outbox):
    entry = outbox.enqueue(notification(), now=10000.0)
    outbox.record_attempt_failed(entry.id, 10000.0, 10060.0, 'HTTP 503')

    # The wall clock went back an hour: the retry is now 3660 s away,
    # further than any backoff would ever schedule.
    assert outbox.due(6400.0) == []
    assert [e.id for e in outbox.due(6400.0, horizon=60.0)] == [entry.id]
    assert outbox.due(10000.0, horizon=60.0) == []


def test_from_conf_puts_the_outbox_under_the_state_path(tmp_path):
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.StrOpt('state_path'))
    outbox_mod.register_opts(conf)
    conf(args=[], default_config_files=[])
    conf.set_override('state_path', str(tmp_path / 'state'))
    conf.set_override('max_pending', 1, group='outbox')

    box = Outbox.from_conf(conf)
    box.enqueue(notification(1), 1.0)

    assert box.path == str(tmp_path / 'state' / 'outbox.sqlite')
    with pytest.raises(OutboxFull):
        box.enqueue(notification(2), 1.0)
    box.close()


def test_options_say_their_defaults():
    [(group, opts)] = outbox_mod.list_opts()

    assert group == 'outbox'
    assert {o.dest: o.default for o in opts} == {
        'max_pending': 1000, 'delivered_retention': 86400,
        'dead_retention': 2592000}
    for opt in opts:
        assert f'Default {opt.default}' in opt.help


def test_a_committed_delivery_stands_when_pruning_finds_the_lock_taken(
        outbox, monkeypatch):
    entry = outbox.enqueue(notification(), 100.0)

    def busy(now):
        raise outbox_mod.OutboxBusy(outbox.path, 30)
    monkeypatch.setattr(outbox, 'prune', busy)

    done = outbox.mark_delivered(entry.id, 'ACCEPTED', 101.0)

    assert done.status == 'delivered'


def make_dead(box, n, at):
    entry = box.enqueue(notification(n), at)
    return box.mark_dead(entry.id, at, 'Host not found')


def test_dead_letters_are_pruned_after_their_retention(path, caplog):
    box = Outbox(path, max_size=10, dead_retention=100)
    old = make_dead(box, 1, 100.0)
    recent = make_dead(box, 2, 150.0)

    caplog.set_level('INFO', logger='monitor.notify.outbox')
    assert box.prune(now=201.0) == 1

    assert box.dead_letters() == [recent]
    assert box.get(old.id) is None
    [record] = caplog.records
    assert record.levelname == 'INFO'
    for part in (old.id, 'instance-00000001',
                 old.notification.instance_uuid, 'dead_retention'):
        assert part in record.getMessage()
    box.close()


def test_a_dead_retention_of_zero_keeps_dead_letters(path):
    box = Outbox(path, max_size=10, dead_retention=0)
    dead = make_dead(box, 1, 100.0)

    assert box.prune(now=1e12) == 0

    assert box.dead_letters() == [dead]
    box.close()


def test_delivering_prunes_dead_letters_past_their_retention(path):
    box = Outbox(path, max_size=10, dead_retention=100)
    old = make_dead(box, 1, 100.0)
    entry = box.enqueue(notification(2), 300.0)

    box.mark_delivered(entry.id, 'ACCEPTED', 300.0)

    assert box.get(old.id) is None
    box.close()


def test_an_engine_refusing_everything_keeps_dead_letters_bounded(
        path, caplog):
    # Nothing is ever delivered, so pruning must come with each refusal.
    box = Outbox(path, max_size=10, dead_retention=0, max_dead=2)
    first = make_dead(box, 1, 100.0)
    caplog.set_level('WARNING', logger='monitor.notify.outbox')

    later = [make_dead(box, n, 100.0 + n) for n in (2, 3)]

    assert box.dead_letters() == later
    assert box.get(first.id) is None
    [record] = caplog.records
    assert record.levelname == 'WARNING'
    assert first.id in record.getMessage()
    assert 'more than 2 dead letters' in record.getMessage()
    box.close()


def test_latest_per_domain_is_the_newest_pending_and_finished_of_each(
        outbox):
    a1, a2, a3 = (notification(1, at=t) for t in (1.0, 2.0, 3.0))
    b1 = notification(2)
    for i, n in enumerate((a1, b1, a2, a3)):
        outbox.enqueue(n, 100.0 + i)
    outbox.mark_delivered(a1.id, notification_mod.OutcomeKind.ACCEPTED, 110.0)
    outbox.mark_dead(a2.id, 111.0, 'unknown host')

    latest = outbox.latest_per_domain()

    assert [(e.id, e.status) for e in latest] == [
        (b1.id, 'pending'), (a2.id, 'dead'), (a3.id, 'pending')]
    assert [(e.id, e.status) for e in outbox.latest_per_domain(
        a1.instance_uuid)] == [(a2.id, 'dead'), (a3.id, 'pending')]
    assert outbox.latest_per_domain('no-such-domain') == []


def test_latest_states_are_the_same_entries_as_latest_per_domain_facts_only(
        outbox):
    a1, a2 = notification(1, at=1.0), notification(1, at=2.0)
    b1 = notification(2)
    outbox.enqueue(a1, 100.0)
    outbox.enqueue(b1, 101.0, held=True)
    outbox.enqueue(a2, 102.0)
    outbox.mark_delivered(a1.id, notification_mod.OutcomeKind.ACCEPTED, 110.0)

    states = outbox.latest_states()

    assert list(states) == [
        outbox_mod.OutboxState(a1.id, a1.instance_uuid, 'delivered', 100.0,
                               False),
        outbox_mod.OutboxState(b1.id, b1.instance_uuid, 'pending', 101.0,
                               True),
        outbox_mod.OutboxState(a2.id, a2.instance_uuid, 'pending', 102.0,
                               False)]
    assert [s.id for s in states] == [e.id for e in outbox.latest_per_domain()]
    assert [s.id for s in outbox.latest_states(b1.instance_uuid)] == [b1.id]
    assert not outbox.latest_states('no-such-domain')


def test_the_version_stays_while_nothing_changed(outbox):
    outbox.enqueue(notification(1), 100.0)
    version = outbox.version()

    outbox.latest_states()
    outbox.due(200.0)

    assert outbox.version() == version


@pytest.mark.parametrize('change', ['enqueue', 'delivered', 'dead',
                                    'requeued', 'released', 'pruned'])
def test_the_version_changes_with_every_kind_of_write(outbox, change):
    a, b = notification(1), notification(2)
    outbox.enqueue(a, 100.0)
    outbox.mark_dead(outbox.enqueue(b, 100.0).id, 101.0, 'refused')
    held = outbox.enqueue(notification(4), 100.0, held=True)
    if change == 'pruned':
        outbox.mark_delivered(a.id, notification_mod.OutcomeKind.ACCEPTED,
                              102.0)
    before = outbox.version()

    if change == 'enqueue':
        outbox.enqueue(notification(3), 102.0)
    elif change == 'delivered':
        outbox.mark_delivered(a.id, notification_mod.OutcomeKind.ACCEPTED,
                              102.0)
    elif change == 'dead':
        outbox.mark_dead(a.id, 102.0, 'refused')
    elif change == 'requeued':
        outbox.requeue_dead(b.id, 102.0)
    elif change == 'released':
        outbox.release(held.id, {'recovery': 'done'}, 102.0)
    else:
        assert outbox.prune_delivered(102.0 + 86400.0 + 1) == 1

    assert outbox.version() != before


def test_the_version_changes_with_a_commit_of_another_connection(
        outbox, path):
    a = notification(1)
    outbox.mark_dead(outbox.enqueue(a, 100.0).id, 101.0, 'refused')
    before = outbox.version()
    # The operator's outbox tool, another process on the same file.
    tool = Outbox(path, max_size=10, create=False)
    try:
        tool.requeue_dead(a.id, 102.0)
    finally:
        tool.close()

    assert outbox.version() != before
    assert [s.status for s in outbox.latest_states()] == ['pending']


def _sqlite_memory_used():
    ctypes = pytest.importorskip('ctypes')
    try:
        lib = ctypes.CDLL('libsqlite3.so.0')
    except OSError:
        pytest.skip('no shared libsqlite3 to ask for its memory')
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lib.sqlite3_memory_used()


def test_the_outbox_keeps_few_of_its_pages_in_memory_however_large_it_grows(
        outbox):
    # A day of delivered notifications, about 3 MB; the daemon reads the
    # newest of each domain every round it changed.
    before = _sqlite_memory_used()
    outbox._conn.execute('BEGIN IMMEDIATE')
    for n in range(4000):
        outbox._conn.execute(
            'INSERT INTO notifications (id, instance_uuid, domain_name, '
            'hostname, generated_time, event, vir_domain_event, status, '
            'created_at, next_attempt_at, details) VALUES '
            '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
            (f'id-{n}', f'uuid-{n % 500}', 'instance', 'compute-1',
             '2026-12-07T00:00:00.000000', 'QEMU_GUEST_AGENT_ERROR',
             'STOPPED_FAILED', 'delivered', 100.0, 100.0, 'x' * 600))
    outbox._conn.execute('COMMIT')
    outbox.enqueue(notification(1), 200.0)

    assert len(outbox.latest_states()) == 501
    grown = _sqlite_memory_used() - before

    # Some of it is held (else the library asked is not the one the
    # sqlite3 module uses), never more than about the cache.
    assert outbox_mod.outbox_file.CACHE_KIB * 1024 // 4 < grown \
        < 2 * outbox_mod.outbox_file.CACHE_KIB * 1024


# -- details and held entries (schema 2) ---------------------------------------

DETAILS = {'consecutive_misses': 3,
           'recovery': {'action': 'reset', 'result': 'done',
                        'detail': 'reset'},
           'evidence': [{'kind': 'console', 'path': '/e/x.log', 'size': 3,
                         'sha256': 'ab' * 32, 'media_type': 'text/plain'}]}


def test_the_details_are_kept_with_the_notification(outbox, path):
    n = notification_mod.Notification.new(
        '00000000-0000-4000-8000-000000000001', 'vm-1', 'compute-1',
        1700000000.0, details=DETAILS)

    outbox.enqueue(n, 100.0)
    outbox.close()
    reopened = Outbox(path, max_size=10)

    [entry] = reopened.pending()
    assert entry.notification == n
    assert entry.notification.details == DETAILS
    reopened.close()


def test_a_held_entry_is_pending_but_never_due_until_released(outbox):
    n = notification()

    entry = outbox.enqueue(n, 100.0, held=True)

    assert entry.held
    assert outbox.pending() == [entry]
    assert outbox.due(1e9) == []
    assert outbox.next_due_at() is None
    assert outbox.held() == [entry]

    released = outbox.release(n.id, DETAILS, 130.0)

    assert not released.held
    assert released.notification.details == DETAILS
    assert outbox.due(130.0) == [released]
    assert outbox.held() == []
    # A second release (an interrupted one, redone) changes nothing.
    assert outbox.release(n.id, {'other': 1}, 140.0) == released


def test_a_held_entry_survives_a_restart_still_held(outbox, path):
    n = notification()
    outbox.enqueue(n, 100.0, held=True)
    outbox.close()

    reopened = Outbox(path, max_size=10)

    assert [e.id for e in reopened.held()] == [n.id]
    reopened.close()
