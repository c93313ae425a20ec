"""guest-health-monitor-status against a real status socket."""

import configparser
import contextlib
import io
import json
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

import eventlet
import jsonschema
import libvirt
import pytest
import yaml
from eventlet import tpool

from monitor.cmd import status_tool as status_cli
from monitor.conf import loading
from monitor.daemon import service as service_mod
from monitor.daemon import status_server
from monitor.health import record as domain_record
from monitor.health import states
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.virt import events as libvirt_events
from monitor.virt import guest_ping
from tests.unit.cmd import test_daemon
from tests.unit.virt import libvirt_node

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


@pytest.mark.parametrize('args', [
    ('-f', 'json'), ('--format', 'json'), ('show', '-f', 'json'),
    ('--json',), ('show', '--json'), ('-f', 'table', 'show', '-f', 'json')])
def test_json_prints_the_daemons_document(config_file, daemon, args):
    code, out, _ = run(config_file, *args)

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
        code, out, _ = run(str(config), '-f', 'json')
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


# -- output formats and columns ------------------------------------------------


def test_yaml_is_the_same_document(config_file, daemon):
    code, out, _ = run(config_file, 'show', '-f', 'yaml')

    assert code == 0
    assert yaml.safe_load(out) == snapshot()


def test_value_prints_the_asked_columns_one_domain_a_line(config_file,
                                                          daemon):
    code, out, _ = run(config_file, 'show', '-f', 'value', '-c', 'name',
                       '-c', 'STATE', '--column', 'last answer')

    assert code == 0
    assert out == ('db-1 healthy %s\nweb-1 error %s\n'
                   % (notification_mod.format_time(NOW - 2),
                      notification_mod.format_time(NOW - 40)))


def test_value_gives_nested_values_as_compact_json(config_file, daemon):
    code, out, _ = run(config_file, '-f', 'value', '-c', 'notification',
                       '-c', 'paused')

    db, web = out.splitlines()
    assert db == '- false'
    shown, paused = web.rsplit(' ', 1)
    assert json.loads(shown)['attempts'] == 3
    assert paused == 'false'


def test_columns_narrow_the_table(config_file, daemon):
    code, out, _ = run(config_file, 'show', '-c', 'uuid', '-c', 'misses')

    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ['UUID', 'MISSES'], [UUID_B, '0'], [UUID_A, '3']]


def test_columns_narrow_each_domain_of_the_json_document(config_file,
                                                         daemon):
    code, out, _ = run(config_file, '-c', 'name', 'show', '-f', 'json',
                       '-c', 'state')

    document = json.loads(out)
    assert document['domains'] == [{'state': 'healthy'}, {'state': 'error'}]
    assert document['host'] == 'c1'


def test_an_unknown_column_exits_2_naming_the_columns(config_file,
                                                      state_path):
    # No daemon runs: the column is refused before it is asked.
    code, out, err = run(config_file, 'show', '-c', 'colour')

    assert (code, out) == (2, '')
    assert "no column 'colour'" in err and 'last_answer' in err


def test_columns_do_not_apply_to_a_pause(config_file, requests_daemon):
    code, _, err = run(config_file, '-c', 'name', 'pause', 'web-1', '--for',
                       '1h')

    assert code == 2 and 'applies to show' in err
    assert requests_daemon['asked'] == []


def test_value_says_what_a_pause_did_one_subject_a_line(config_file,
                                                        requests_daemon):
    requests_daemon['answer'] = {'paused': [view()]}

    code, out, _ = run(config_file, 'pause', 'web-1', '--for', '1h', '-f',
                       'value')

    assert (code, out) == (0, 'paused web-1 %s %s\n'
                           % (UUID_A, view()['until']))


def test_help_lists_the_exit_statuses(config_file):
    out = io.StringIO()
    with pytest.raises(SystemExit) as stop, \
            contextlib.redirect_stdout(out):
        status_cli.main(['--help'])

    assert stop.value.code == 0
    text = ' '.join(out.getvalue().split())
    for code in ('0 done', '1 the daemon gave no usable answer',
                 '2 a broken configuration file or command line',
                 '3 the daemon is not running', '4 the daemon refused'):
        assert code in text


# -- pause and resume -----------------------------------------------------------


@pytest.fixture
def requests_daemon(state_path):
    """A status server that answers requests from ``answers['answer']``
    and keeps what it was asked in ``answers['asked']``."""
    answers = {'asked': [], 'answer': {'paused': []}}

    def requests(request):
        answers['asked'].append(request)
        return answers['answer']

    server = status_server.StatusServer(
        status_server.socket_path(state_path), snapshot, poll=0.01,
        requests=requests)
    server.listen()
    stop = threading.Event()
    thread = eventlet.spawn(server.serve, stop)
    yield answers
    stop.set()
    thread.wait()


def view(**kwargs):
    shown = {'all': False, 'uuid': UUID_A, 'name': 'web-1',
             'since': '2027-01-15T08:00:00Z', 'until': '2027-01-15T08:30:00Z',
             'reason': 'qemu-ga upgrade'}
    shown.update(kwargs)
    return shown


@pytest.mark.parametrize('duration, seconds', [
    ('90', 90), ('90s', 90), ('30m', 1800), ('2h', 7200), ('1.5h', 5400),
    ('168h', 7 * 86400)])
def test_pause_sends_the_duration_in_seconds(config_file, requests_daemon,
                                             duration, seconds):
    requests_daemon['answer'] = {'paused': [view()]}

    code, out, err = run(config_file, 'pause', 'web-1', '--for', duration,
                         '--reason', 'qemu-ga upgrade')

    assert (code, err) == (0, '')
    assert requests_daemon['asked'] == [{
        'command': 'pause', 'domain': 'web-1', 'all': False,
        'seconds': seconds, 'reason': 'qemu-ga upgrade'}]
    assert out == (f'Paused web-1 ({UUID_A}) until 2027-01-15T08:30:00Z: '
                   'not pinged, notified or recovered until then.\n')


def test_pause_all_pauses_the_host(config_file, requests_daemon):
    requests_daemon['answer'] = {'paused': [view(all=True, uuid=None,
                                                 name=None)]}

    code, out, _ = run(config_file, 'pause', '--all', '--for', '2h')

    assert code == 0
    assert requests_daemon['asked'][0]['all'] is True
    assert requests_daemon['asked'][0]['domain'] is None
    assert out.startswith('Paused every domain on this host until ')


@pytest.mark.parametrize('args, message', [
    (['pause', 'web-1', '--for', '30x'], "'30x' is not a duration"),
    (['pause', 'web-1', '--for', ''], "'' is not a duration"),
    (['pause', 'web-1', '--for=-5m'], "'-5m' is not a duration"),
    (['pause', 'web-1', '--for', '0s'], 'more than 0 s'),
    (['pause', 'web-1', '--for', '8d'], "'8d' is not a duration"),
    (['pause', 'web-1', '--for', '169h'], 'at most 7 days'),
    (['pause', 'web-1'], '--for DURATION is required'),
    (['pause', '--for', '1h'], 'name one domain'),
    (['pause', 'web-1', '--all', '--for', '1h'], 'name one domain'),
    (['resume'], 'name one domain'),
    (['pause', 'web-1', '--for', '1h', '--reason', 'x' * 201],
     'longer than 200'),
    (['pause', 'web-1', '--for', '1h', '--reason', 'two\nlines'],
     'control characters'),
])
def test_a_bad_command_line_exits_2_and_asks_nothing(
        config_file, requests_daemon, args, message):
    code, out, err = run(config_file, *args)

    assert (code, out) == (2, '')
    assert err.startswith('guest-health-monitor-status: ')
    assert message in err
    assert requests_daemon['asked'] == []


def test_a_refused_request_exits_4_with_the_daemons_reason(
        config_file, requests_daemon):
    requests_daemon['answer'] = {
        'refused': "no domain named or with UUID 'web-9' is monitored on "
                   "this host"}

    code, out, err = run(config_file, 'pause', 'web-9', '--for', '1h')

    assert (code, out) == (4, '')
    assert err == ("guest-health-monitor-status: refused: no domain named "
                   "or with UUID 'web-9' is monitored on this host\n")


def test_resume_says_what_it_lifted(config_file, requests_daemon):
    requests_daemon['answer'] = {'resumed': [view()], 'still_paused': None}

    code, out, _ = run(config_file, 'resume', UUID_A)

    assert code == 0
    assert requests_daemon['asked'] == [
        {'command': 'resume', 'domain': UUID_A, 'all': False}]
    assert out == (f'Resumed web-1 ({UUID_A}): its guest agent must answer '
                   'again.\n')


def test_resume_of_nothing_paused_says_so(config_file, requests_daemon):
    requests_daemon['answer'] = {'resumed': [], 'still_paused': view(
        all=True, uuid=None, name=None)}

    code, out, _ = run(config_file, 'resume', 'web-1')

    assert code == 0
    assert out == ('Nothing was paused.\nStill paused with every domain on '
                   'this host until 2027-01-15T08:30:00Z.\n')


def test_json_prints_the_answer_as_is(config_file, requests_daemon):
    requests_daemon['answer'] = {'paused': [view()]}

    code, out, _ = run(config_file, 'pause', 'web-1', '--for', '1h',
                       '-f', 'json')

    assert code == 0
    assert json.loads(out) == {'paused': [view()], 'version': 1}


def test_the_table_shows_who_is_paused_why_and_until_when(config_file,
                                                          daemon):
    daemon['document']['domains'][1]['maintenance'] = view()
    daemon['document']['maintenance'] = [
        view(all=True, uuid=None, name=None, reason=''), view()]

    code, out, _ = run(config_file)

    assert code == 0
    lines = out.splitlines()
    assert lines[2].split()[2:4] == ['error', '(maintenance)']
    assert lines[4] == ('Maintenance (not pinged, notified or recovered '
                        'until the end):')
    assert lines[5].split() == ['DOMAIN', 'UUID', 'SINCE', 'UNTIL', 'REASON']
    assert lines[6].split() == ['every', 'domain', '-', view()['since'],
                                view()['until'], '-']
    assert lines[7].split() == ['web-1', UUID_A, view()['since'],
                                view()['until'], 'qemu-ga', 'upgrade']


def test_a_daemon_that_reads_no_request_still_shows_its_status(
        config_file, state_path):
    # A daemon of an earlier release answers at once and reads nothing.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(status_server.socket_path(state_path))
    listener.listen(1)

    def answer_at_once():
        conn, _ = listener.accept()
        conn.sendall(json.dumps(snapshot()).encode())
        conn.close()

    thread = threading.Thread(target=answer_at_once)
    thread.start()
    try:
        code, out, _ = run(config_file, '-f', 'json')
    finally:
        thread.join()
        listener.close()

    assert code == 0
    assert json.loads(out) == snapshot()


# -- against the daemon, on libvirt's test driver with a stand-in agent ------------


GUEST_UUID = 'bbbbbbbb-0000-4000-8000-000000000001'
NODE = f"""<node>
  <domain type='test'>
    <name>guest-1</name>
    <uuid>{GUEST_UUID}</uuid>
    <memory>1024</memory>
    <os><type>hvm</type></os>
    <devices>
      <channel type='unix'>
        <source mode='bind' path='/run/guest-1.sock'/>
        <target type='virtio' name='org.qemu.guest_agent.0'/>
      </channel>
    </devices>
  </domain>
</node>
"""
PAUSE = 3.0
DISCOVERY_TIMEOUT = 1


@pytest.fixture
def guest_agent(monkeypatch):
    """The guest's agent: answers until ``hang()``; counts the pings."""
    stand_in = libvirt_node.AgentStandIn(reply='{"return": {}}')
    monkeypatch.setattr(guest_ping.libvirt_qemu, 'qemuAgentCommand',
                        stand_in)

    def hang():
        stand_in.error = libvirt_node.libvirt_error(
            libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_FROM_QEMU,
            'Guest agent is not responding')
    stand_in.hang = hang
    return stand_in


@pytest.fixture
def daemon_conf(state_path):
    libvirt_events.start_event_loop()
    node = pathlib.Path(state_path) / 'node.xml'
    node.write_text(NODE)
    path = pathlib.Path(state_path) / 'daemon.conf'
    path.write_text(f"""
[DEFAULT]
host = compute-1
state_path = {state_path}/state
[libvirt]
connection_uri = test://{node}
[monitor]
discovery_timeout = {DISCOVERY_TIMEOUT}
[cache]
# Records kept across the restart: the guest's agent answered before, so
# the discovery timeout applies to it after the pause.
backend = guest_health_monitor.sqlite
[notifier]
endpoint = http://127.0.0.1:9/v1
auth_type = none
""")
    return str(path)


class Running:
    """A MonitorService built from ``conf_path`` whose status socket is
    served; its rounds are run by the test."""

    def __init__(self, conf_path):
        self.conf = loading.load(['--config-file', conf_path],
                                 default_config_files=[])
        self.service = service_mod.MonitorService(self.conf)
        self.stop_event = threading.Event()
        self.thread = eventlet.spawn(self.service.status_server.serve,
                                     self.stop_event)
        assert self.service.scheduler.ensure_connected() == 0

    def sweep(self):
        return self.service.scheduler.sweep()

    def state(self):
        record = self.service.store.get(GUEST_UUID)
        return None if record is None else record.state

    def close(self):
        self.stop_event.set()
        self.thread.wait()
        self.service.close()


def command(running, *args):
    """The status command, run against ``running``'s socket."""
    conf_file = pathlib.Path(running.conf.state_path) / 'tool.conf'
    conf_file.write_text(f'[DEFAULT]\nstate_path = {running.conf.state_path}\n')
    return run(str(conf_file), *args)


def test_a_paused_guest_is_left_alone_across_a_restart_then_reported_once(
        daemon_conf, guest_agent):
    running = Running(daemon_conf)
    try:
        running.sweep()
        assert running.state() == states.HEALTHY

        code, out, err = command(running, 'pause', 'guest-1', '--for',
                                 '%ds' % PAUSE, '--reason', 'qemu-ga upgrade')
        assert (code, err) == (0, ''), err
        ends = time.monotonic() + PAUSE
        guest_agent.hang()
        pings = len(guest_agent.calls)
        running.sweep()
        _, shown, _ = command(running, 'show', '-f', 'json')
    finally:
        running.close()
    assert json.loads(shown)['domains'][0]['maintenance']['reason'] == (
        'qemu-ga upgrade')

    # The daemon restarts during the pause: it keeps it.
    running = Running(daemon_conf)
    try:
        running.sweep()
        assert running.state() == states.HEALTHY
        assert len(guest_agent.calls) == pings
        assert running.service.outbox.pending() == []

        time.sleep(max(0.0, ends - time.monotonic()))
        running.sweep()
        assert len(guest_agent.calls) > pings
        assert running.state() == states.DISCOVERY
        time.sleep(DISCOVERY_TIMEOUT)
        for _ in range(3):
            running.sweep()
        pending = running.service.outbox.pending()
        _, shown, _ = command(running, 'show', '-f', 'json')
    finally:
        running.close()
    assert [e.notification.instance_uuid for e in pending] == [GUEST_UUID]
    assert json.loads(shown)['maintenance'] == []


def test_resume_lifts_a_pause_at_once(daemon_conf, guest_agent):
    running = Running(daemon_conf)
    try:
        running.sweep()
        assert command(running, 'pause', '--all', '--for', '1h')[0] == 0
        pings = len(guest_agent.calls)
        running.sweep()
        assert len(guest_agent.calls) == pings

        code, out, _ = command(running, 'resume', '--all')
        running.sweep()
    finally:
        running.close()
    assert code == 0
    assert out == 'Resumed every domain on this host: its guest agent must ' \
                  'answer again.\n'
    assert len(guest_agent.calls) == pings + 1


def test_an_unknown_domain_is_refused_by_the_daemon(daemon_conf,
                                                    guest_agent):
    running = Running(daemon_conf)
    try:
        running.sweep()
        code, out, err = command(running, 'pause', 'guest-9', '--for', '1h')
    finally:
        running.close()
    assert (code, out) == (4, '')
    assert "no domain named or with UUID 'guest-9'" in err


# -- the console scripts -------------------------------------------------------------


def status_command(conf_path, *args):
    return subprocess.run(
        [sys.executable, '-m', 'monitor.cmd.status_tool', '--config-file',
         conf_path, *args], cwd=REPO, capture_output=True, text=True,
        timeout=60)


def test_a_host_pause_survives_a_restart_of_the_daemon(tmp_path):
    conf_path = test_daemon.write_conf(tmp_path)
    log = tmp_path / 'stderr.log'
    with test_daemon.daemon(conf_path, log) as proc:
        test_daemon.wait_for(log, 'Serving status on')
        paused = status_command(conf_path, 'pause', '--all', '--for', '2h',
                                '--reason', 'host firmware update')
        assert test_daemon.terminate(proc) == 0
    with test_daemon.daemon(conf_path, log) as proc:
        test_daemon.wait_for(log, 'Serving status on')
        shown = status_command(conf_path, '-f', 'json')
        resumed = status_command(conf_path, 'resume', '--all')
        after = status_command(conf_path, '-f', 'json')
        assert test_daemon.terminate(proc) == 0

    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.startswith('Paused every domain on this host until')
    [pause] = json.loads(shown.stdout)['maintenance']
    assert (pause['all'], pause['reason']) == (True, 'host firmware update')
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(after.stdout)['maintenance'] == []
    text = log.read_text()
    assert 'maintenance kept from before the restart' in text
    assert 'maintenance lifted by the operator' in text
    assert 'Traceback' not in text


# -- the JSON Schema of the status document, against a real daemon ----------------


def status_schema():
    path = REPO / 'docs' / 'schemas' / 'status.schema.json'
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_status_of_a_real_daemon_matches_its_schema(daemon_conf,
                                                        guest_agent):
    running = Running(daemon_conf)
    try:
        running.sweep()
        _, healthy, _ = command(running, '-f', 'json')
        command(running, 'pause', 'guest-1', '--for', '1h', '--reason',
                'kernel update')
        _, paused, _ = command(running, 'show', '--format', 'json')
    finally:
        running.close()

    validator = status_schema()
    for out in (healthy, paused):
        document = json.loads(out)
        validator.validate(document)
        assert document['version'] == 1 and document['generated_at']
    assert json.loads(paused)['maintenance'][0]['reason'] == 'kernel update'


def test_a_status_with_notifications_matches_its_schema(config_file, daemon):
    daemon['document']['maintenance'] = [
        view(all=True, uuid=None, name=None, reason='')]
    daemon['document']['recovery_calls_stuck'] = [
        {'name': 'web-1', 'uuid': UUID_A, 'step': 'action',
         'since': notification_mod.format_time(NOW - 60)}]

    _, out, _ = run(config_file, '-f', 'json')

    status_schema().validate(json.loads(out))
    assert json.loads(out)['domains'][1]['notification']['status'] == (
        'pending')


def test_the_schema_refuses_a_document_without_its_version(config_file,
                                                           daemon):
    document = snapshot()
    del document['version']

    with pytest.raises(jsonschema.ValidationError):
        status_schema().validate(document)
