"""guest-health-monitor-status against a real status socket."""

import configparser
import io
import json
import pathlib
import socket
import tempfile
import threading

import eventlet
import pytest
from eventlet import tpool

from monitor.cmd import status_tool as status_cli
from monitor.daemon import status_server
from monitor.health import record as domain_record
from monitor.health import states
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod

REPO = pathlib.Path(__file__).resolve().parents[3]
NOW = 1_800_000_000.0
UUID_A = '11111111-1111-4111-8111-111111111111'
UUID_B = '22222222-2222-4222-8222-222222222222'


@pytest.fixture
def state_path():
    # sun_path holds 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix='ghm-') as path:
        yield path


@pytest.fixture
def config_file(state_path):
    path = pathlib.Path(state_path) / 'monitor.conf'
    # Sections and options the command does not read must not bother it,
    # nor settings that would stop the daemon.
    path.write_text(f'[DEFAULT]\nstate_path = {state_path}\n'
                    '[notifier]\nauth_type = no-such-plugin\n'
                    '[monitor]\ninterval = -1\n')
    return str(path)


def run(config_file, *args):
    out, err = io.StringIO(), io.StringIO()
    # The command blocks on a plain socket: run it in a native thread so
    # that the green server keeps answering.
    code = tpool.execute(status_cli.main,
                         ['--config-file', config_file, *args], out, err)
    return code, out.getvalue(), err.getvalue()


def snapshot():
    pending = outbox_mod.OutboxEntry(
        notification=notification_mod.Notification(
            id='4c0ffee0-0000-4000-8000-000000000001',
            instance_uuid=UUID_A, domain_name='web-1', hostname='c1',
            generated_time=notification_mod.format_time(NOW - 4)),
        status=outbox_mod.PENDING, created_at=NOW - 4, attempts=3,
        next_attempt_at=NOW + 8, last_attempt_at=NOW - 1,
        last_error='503', outcome=None, finished_at=None)
    return status_server.build_snapshot(
        [domain_record.DomainRecord(UUID_A, 'web-1', states.ERROR, misses=3,
                                    last_ok=NOW - 40),
         domain_record.DomainRecord(UUID_B, 'db-1', states.HEALTHY,
                                    last_ok=NOW - 2)],
        [pending], host='c1', now=NOW, libvirt_connected=True)


@pytest.fixture
def daemon(state_path):
    """A status server like the daemon's, answering ``snapshot()``."""
    answers = {'document': snapshot()}
    server = status_server.StatusServer(
        status_server.socket_path(state_path), lambda: answers['document'],
        poll=0.01)
    server.listen()
    stop = threading.Event()
    thread = eventlet.spawn(server.serve, stop)
    yield answers
    stop.set()
    thread.wait()


def test_one_line_per_domain_under_a_header(config_file, daemon):
    code, out, err = run(config_file)

    assert (code, err) == (0, '')
    lines = out.splitlines()
    assert lines[0].split() == ['NAME', 'UUID', 'STATE', 'MISSES', 'LAST',
                                'ANSWER', 'NOTIFICATION']
    assert len(lines) == 3
    db, web = lines[1].split(), lines[2].split()
    assert db[:5] == ['db-1', UUID_B, 'healthy', '0',
                      notification_mod.format_time(NOW - 2)]
    assert db[5:] == ['-']
    assert web[:5] == ['web-1', UUID_A, 'error', '3',
                       notification_mod.format_time(NOW - 40)]
    assert web[5:] == ['pending', '4c0ffee0-0000-4000-8000-000000000001',
                       notification_mod.format_time(NOW - 4),
                       '(3', 'attempts)']


def test_json_prints_the_daemons_document(config_file, daemon):
    code, out, _ = run(config_file, '--json')

    assert code == 0
    assert json.loads(out) == snapshot()


def test_no_domains_is_said_in_words(config_file, daemon):
    daemon['document'] = status_server.build_snapshot(
        [], [], host='c1', now=NOW, libvirt_connected=True)

    code, out, _ = run(config_file)

    assert (code, out) == (0, 'No domain is monitored on c1.\n')


def test_a_libvirt_outage_is_pointed_out(config_file, daemon):
    daemon['document']['libvirt_connected'] = False

    _, out, _ = run(config_file)

    assert 'libvirt is not connected' in out.splitlines()[-1]


def test_no_socket_means_the_daemon_is_not_running(config_file, state_path):
    code, out, err = run(config_file)

    path = status_server.socket_path(state_path)
    assert (code, out) == (3, '')
    assert err == ('guest-health-monitor is not running '
                   f'(no status socket at {path})\n')


def test_a_socket_left_by_a_dead_daemon_means_not_running(
        config_file, state_path):
    path = status_server.socket_path(state_path)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()

    code, _, err = run(config_file)

    assert code == 3
    assert err.startswith('guest-health-monitor is not running')


def test_a_state_path_longer_than_a_socket_address_works(tmp_path):
    deep = tmp_path / ('x' * 100)
    deep.mkdir()
    server = status_server.StatusServer(
        status_server.socket_path(str(deep)), lambda: {'domains': []},
        poll=0.01)
    server.listen()
    stop = threading.Event()
    thread = eventlet.spawn(server.serve, stop)
    config = tmp_path / 'monitor.conf'
    config.write_text(f'[DEFAULT]\nstate_path = {deep}\n')
    try:
        code, out, _ = run(str(config), '--json')
    finally:
        stop.set()
        thread.wait()

    assert code == 0
    assert json.loads(out) == {'domains': []}


def test_a_missing_state_path_means_not_running(tmp_path):
    config = tmp_path / 'monitor.conf'
    config.write_text(f'[DEFAULT]\nstate_path = {tmp_path / "nowhere"}\n')

    code, _, err = run(str(config))

    assert code == 3
    assert 'not running' in err


def test_an_answer_that_is_not_json_is_an_error(config_file, state_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(status_server.socket_path(state_path))
    listener.listen(1)

    def answer_garbage():
        conn, _ = listener.accept()
        conn.sendall(b'<html>')
        conn.close()

    thread = threading.Thread(target=answer_garbage)
    thread.start()
    try:
        code, out, err = run(config_file)
    finally:
        thread.join()
        listener.close()

    assert (code, out) == (1, '')
    assert 'not JSON' in err


def test_a_daemon_that_could_not_build_its_status_is_an_error(
        config_file, daemon):
    daemon['document'] = {'version': 1, 'error': 'see its log'}

    code, _, err = run(config_file)

    assert code == 1
    assert 'see its log' in err


def test_a_broken_config_file_exits_2(tmp_path):
    config = tmp_path / 'monitor.conf'
    config.write_text('[DEFAULT\nstate_path = /x\n')

    code, _, err = run(str(config))

    assert code == 2
    assert err.startswith('guest-health-monitor-status: ')


def test_the_console_script_is_declared():
    setup = configparser.ConfigParser()
    setup.read(REPO / 'setup.cfg')

    scripts = [line.strip() for line in
               setup['entry_points']['console_scripts'].splitlines()]
    assert ('guest-health-monitor-status = monitor.cmd.status_tool:main'
            in scripts)
