"""The status socket: the document it serves and the socket's life, on a
real unix socket."""

import json
import os
import socket
import stat
import tempfile
import threading

import eventlet
import pytest
from eventlet.green import socket as green_socket

from monitor.daemon import maintenance as maintenance_mod
from monitor.daemon import status_server
from monitor.health import record as domain_record
from monitor.health import states
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.store import maintenance as maintenance_file

NOW = 1_800_000_000.0
UUID_A = '11111111-1111-4111-8111-111111111111'
UUID_B = '22222222-2222-4222-8222-222222222222'


@pytest.fixture
def state_path():
    # sun_path holds 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix='ghm-') as path:
        yield path


def record(uuid=UUID_A, name='vm-a', **kwargs):
    return domain_record.DomainRecord(uuid=uuid, name=name, **kwargs)


def entry(uuid=UUID_A, status=outbox_mod.PENDING, created_at=NOW - 30,
          finished_at=None, attempts=2, last_error='engine unreachable',
          id='n-1'):
    notification = notification_mod.Notification(
        id=id, instance_uuid=uuid, domain_name='vm-a', hostname='c1',
        generated_time=notification_mod.format_time(created_at))
    return outbox_mod.OutboxEntry(
        notification=notification, status=status, created_at=created_at,
        attempts=attempts, next_attempt_at=created_at + 10,
        last_attempt_at=created_at, last_error=last_error, outcome=None,
        finished_at=finished_at)


# -- the document ---------------------------------------------------------------


def test_snapshot_has_one_entry_per_domain_sorted_by_name():
    snapshot = status_server.build_snapshot(
        [record(UUID_B, 'vm-b', state=states.HEALTHY, last_ok=NOW - 5),
         record(UUID_A, 'vm-a', state=states.ERROR, misses=2,
                last_ok=NOW - 25)],
        [], host='c1', now=NOW, libvirt_connected=True)

    assert snapshot == {
        'version': 1,
        'host': 'c1',
        'generated_at': notification_mod.format_time(NOW),
        'libvirt_connected': True,
        'domains': [
            {'name': 'vm-a', 'uuid': UUID_A, 'state': 'error',
             'paused': False, 'misses': 2,
             'last_answer': notification_mod.format_time(NOW - 25),
             'notification': None, 'maintenance': None},
            {'name': 'vm-b', 'uuid': UUID_B, 'state': 'healthy',
             'paused': False, 'misses': 0,
             'last_answer': notification_mod.format_time(NOW - 5),
             'notification': None, 'maintenance': None},
        ],
        'maintenance': [],
        'recovery_calls_stuck': []}


def test_snapshot_shows_the_recovery_calls_still_stuck():
    snapshot = status_server.build_snapshot(
        [], [], host='c1', now=NOW,
        stuck_calls=[{'name': 'vm-a', 'uuid': UUID_A, 'step': 'screenshot',
                      'since': NOW - 70}])

    assert snapshot['recovery_calls_stuck'] == [
        {'name': 'vm-a', 'uuid': UUID_A, 'step': 'screenshot',
         'since': notification_mod.format_time(NOW - 70)}]


def test_a_domain_never_answered_has_no_last_answer():
    snapshot = status_server.build_snapshot(
        [record(state=states.DISCOVERY)], [], host='c1', now=NOW)

    assert snapshot['domains'][0]['last_answer'] is None


def test_a_pending_notification_is_shown_with_id_status_and_when():
    snapshot = status_server.build_snapshot(
        [record(state=states.ERROR, misses=3)], [entry()],
        host='c1', now=NOW)

    assert snapshot['domains'][0]['notification'] == {
        'id': 'n-1', 'status': 'pending',
        'at': notification_mod.format_time(NOW - 30), 'attempts': 2,
        'last_error': 'engine unreachable'}


def test_a_pending_notification_wins_over_an_older_dead_letter():
    dead = entry(id='n-0', status=outbox_mod.DEAD, created_at=NOW - 900,
                 finished_at=NOW - 800)

    snapshot = status_server.build_snapshot(
        [record(state=states.ERROR)], [dead, entry(id='n-1')],
        host='c1', now=NOW)

    assert snapshot['domains'][0]['notification']['id'] == 'n-1'


def test_an_accepted_notification_is_shown_from_the_outbox():
    accepted = entry(status=outbox_mod.DELIVERED, created_at=NOW - 70,
                     finished_at=NOW - 60, attempts=1, last_error=None)

    snapshot = status_server.build_snapshot(
        [record(state=states.REPORTED)], [accepted], host='c1', now=NOW)

    assert snapshot['domains'][0]['notification'] == {
        'id': 'n-1', 'status': 'delivered',
        'at': notification_mod.format_time(NOW - 60), 'attempts': 1,
        'last_error': None}


def test_the_latest_finished_notification_is_shown():
    dead = entry(id='n-9', status=outbox_mod.DEAD, created_at=NOW - 100,
                 finished_at=NOW - 90, last_error='400 unknown host')
    older_accepted = entry(id='n-8', status=outbox_mod.DELIVERED,
                           created_at=NOW - 3700, finished_at=NOW - 3600)
    newer_accepted = entry(id='n-10', status=outbox_mod.DELIVERED,
                           created_at=NOW - 20, finished_at=NOW - 10)

    dead_last = status_server.build_snapshot(
        [record()], [older_accepted, dead], host='c1', now=NOW)
    accepted_last = status_server.build_snapshot(
        [record()], [dead, newer_accepted], host='c1', now=NOW)

    assert dead_last['domains'][0]['notification']['status'] == 'dead'
    assert accepted_last['domains'][0]['notification']['status'] == (
        'delivered')


def test_notifications_of_other_domains_are_not_shown():
    snapshot = status_server.build_snapshot(
        [record(UUID_A)], [entry(uuid=UUID_B)], host='c1', now=NOW)

    assert snapshot['domains'][0]['notification'] is None


def test_the_document_is_json():
    snapshot = status_server.build_snapshot(
        [record(state=states.ERROR, paused=True)], [entry()],
        host='c1', now=NOW, libvirt_connected=False)

    assert json.loads(json.dumps(snapshot)) == snapshot


# -- the socket -------------------------------------------------------------------


def ask(path, request=b'{"command": "status"}\n', close=True):
    """What a client reads from the socket (green, so the server runs)
    after sending ``request`` and, when ``close``, closing its side."""
    sock = green_socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    sock.sendall(request)
    if close:
        sock.shutdown(socket.SHUT_WR)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    sock.close()
    return json.loads(b''.join(chunks))


class Running:
    """A StatusServer serving from a green thread until stopped."""

    def __init__(self, server):
        self.server = server
        self.stop_event = threading.Event()
        server.listen()
        self.thread = eventlet.spawn(server.serve, self.stop_event)

    def stop(self):
        self.stop_event.set()
        self.thread.wait()


@pytest.fixture
def serving():
    running = []

    def start(path, snapshot, requests=None):
        running.append(Running(status_server.StatusServer(
            path, snapshot, poll=0.01, requests=requests)))
        return running[-1]

    yield start
    for server in running:
        server.stop()


def test_each_connection_gets_the_current_snapshot(state_path, serving):
    answers = iter([{'domains': [1]}, {'domains': [2]}])
    path = status_server.socket_path(state_path)
    serving(path, lambda: next(answers))

    assert ask(path) == {'domains': [1]}
    assert ask(path) == {'domains': [2]}


def test_the_socket_is_private_to_the_daemon_user(state_path, serving):
    path = status_server.socket_path(state_path)
    serving(path, dict)

    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_the_socket_lives_in_state_path(state_path):
    class Conf:
        pass
    conf = Conf()
    conf.state_path = state_path

    server = status_server.StatusServer.from_conf(conf, dict)

    assert server.path == os.path.join(state_path, 'status.sock')


def test_a_stale_socket_is_replaced(state_path, serving):
    path = status_server.socket_path(state_path)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()

    serving(path, lambda: {'fresh': True})

    assert ask(path) == {'fresh': True}


def test_a_socket_another_daemon_serves_is_left_alone(state_path, serving):
    path = status_server.socket_path(state_path)
    serving(path, lambda: {'first': True})

    second = status_server.StatusServer(path, dict)
    with pytest.raises(status_server.StatusServerError,
                       match='another guest-health-monitor'):
        second.listen()
    assert ask(path) == {'first': True}


def test_a_file_in_the_way_is_not_removed(state_path):
    path = status_server.socket_path(state_path)
    with open(path, 'w') as f:
        f.write('keep me')

    with pytest.raises(status_server.StatusServerError,
                       match='not a socket'):
        status_server.StatusServer(path, dict).listen()
    with open(path) as f:
        assert f.read() == 'keep me'


def test_a_state_path_longer_than_a_socket_address_works(
        state_path, serving):
    # sun_path holds 108 bytes.
    deep = os.path.join(state_path, 'x' * 100)
    os.mkdir(deep)
    path = status_server.socket_path(deep)
    serving(path, lambda: {'deep': True})

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with status_server.addressable(path) as address:
        assert ask(address) == {'deep': True}


def test_a_missing_directory_names_the_path(state_path):
    path = os.path.join(state_path, 'gone', 'status.sock')

    with pytest.raises(status_server.StatusServerError, match=path):
        status_server.StatusServer(path, dict).listen()


def test_stopping_closes_and_removes_the_socket(state_path, serving):
    path = status_server.socket_path(state_path)
    running = serving(path, dict)

    running.stop()

    assert not os.path.exists(path)
    with pytest.raises(FileNotFoundError):
        ask(path)


def test_a_failing_snapshot_answers_an_error_and_serving_goes_on(
        state_path, serving, caplog):
    calls = []

    def snapshot():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('store closed')
        return {'domains': []}

    path = status_server.socket_path(state_path)
    serving(path, snapshot)

    assert 'error' in ask(path)
    assert ask(path) == {'domains': []}
    assert 'Cannot build the status snapshot' in caplog.text


# -- requests ---------------------------------------------------------------------


def test_a_client_that_sends_nothing_gets_the_status(state_path, serving,
                                                     monkeypatch):
    # As clients of earlier releases, which sent no request, expect.
    monkeypatch.setattr(status_server, 'REQUEST_WAIT', 0.05)
    path = status_server.socket_path(state_path)
    serving(path, lambda: {'domains': ['shown']})

    assert ask(path, b'', close=False) == {'domains': ['shown']}
    assert ask(path, b'') == {'domains': ['shown']}


def test_other_requests_go_to_requests_and_get_the_version(
        state_path, serving):
    asked = []

    def requests(request):
        asked.append(request)
        return {'paused': []}

    path = status_server.socket_path(state_path)
    serving(path, lambda: {'domains': []}, requests)

    answer = ask(path, b'{"command": "pause", "all": true, "seconds": 60}\n')

    assert answer == {'paused': [], 'version': status_server.FORMAT_VERSION}
    assert asked == [{'command': 'pause', 'all': True, 'seconds': 60}]
    assert ask(path) == {'domains': []}


def test_a_request_in_pieces_is_read_whole(state_path, serving):
    path = status_server.socket_path(state_path)
    serving(path, dict, lambda request: {'echo': request})
    sock = green_socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    for piece in (b'{"command": ', b'"resume", "all"', b': true}\n'):
        sock.sendall(piece)
        eventlet.sleep(0.01)
    answer = json.loads(sock.makefile('rb').read())
    sock.close()

    assert answer['echo'] == {'command': 'resume', 'all': True}


@pytest.mark.parametrize('request_, error', [
    (b'pause web-1\n', 'not JSON'),
    (b'["pause"]\n', 'not a JSON object'),
    (b'{"command": "pause"' + b' ' * status_server.MAX_REQUEST, 'too large'),
])
def test_a_bad_request_gets_an_error(state_path, serving, request_, error):
    path = status_server.socket_path(state_path)
    serving(path, dict, lambda request: pytest.fail('asked %r' % request))

    assert error in ask(path, request_)['error']


def test_a_daemon_without_requests_serves_only_its_status(state_path,
                                                         serving):
    path = status_server.socket_path(state_path)
    serving(path, lambda: {'domains': []})

    assert 'only its status' in ask(
        path, b'{"command": "resume", "all": true}\n')['error']


def test_a_failing_request_answers_an_error_and_serving_goes_on(
        state_path, serving, caplog):
    def requests(request):
        raise RuntimeError('store closed')

    path = status_server.socket_path(state_path)
    serving(path, lambda: {'domains': []}, requests)

    assert 'see its log' in ask(
        path, b'{"command": "resume", "all": true}\n')['error']
    assert ask(path) == {'domains': []}
    assert 'Cannot answer a resume request' in caplog.text


# -- maintenance in the document ----------------------------------------------------


def test_paused_domains_and_the_host_pause_are_shown():
    clock = [NOW]
    maintenance = maintenance_mod.Maintenance(
        clock=lambda: clock[0], monotonic=lambda: clock[0])
    maintenance.pause(UUID_A, 'vm-a', 1800, 'qemu-ga upgrade')
    maintenance.pause(maintenance_file.HOST, '', 600, '')
    maintenance.pause('33333333-3333-4333-8333-333333333333', 'stopped-vm',
                      60, 'backup')

    snapshot = status_server.build_snapshot(
        [record(UUID_A, 'vm-a', state=states.HEALTHY),
         record(UUID_B, 'vm-b', state=states.HEALTHY)],
        [], host='c1', now=NOW, maintenance=maintenance)

    vm_a, vm_b = snapshot['domains']
    assert vm_a['maintenance'] == {
        'all': False, 'uuid': UUID_A, 'name': 'vm-a',
        'since': notification_mod.format_time(NOW),
        'until': notification_mod.format_time(NOW + 1800),
        'reason': 'qemu-ga upgrade'}
    assert vm_b['maintenance']['all'] is True
    assert [(p['all'], p['name']) for p in snapshot['maintenance']] == [
        (True, None), (False, 'stopped-vm'), (False, 'vm-a')]
    assert json.loads(json.dumps(snapshot)) == snapshot
