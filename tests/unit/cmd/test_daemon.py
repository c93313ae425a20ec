"""The guest-health-monitor console script, run as operators run it.

A bad configuration is refused at start with exit status 2 and one line
naming the option; a valid one starts even when libvirt is unreachable,
says so once, and stops cleanly on SIGTERM. No test here reaches a real
libvirt daemon or leaves 127.0.0.1.
"""

import contextlib
import importlib.util
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from monitor.cmd import daemon as cmd
from tests.unit.conf.test_log_setup import saved_logging  # noqa: F401 (a fixture)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SCRIPT = shutil.which('guest-health-monitor',
                      path=os.path.dirname(sys.executable))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, '-m', 'monitor.cmd.launcher']
PASSWORD = 'pw-n0t-for-logs-7731'
GLIBC = platform.libc_ver()[0] == 'glibc'


def write_conf(tmp_path, **sections):
    """A valid configuration, changed by ``sections``:
    {'group': {'option': value or None to leave it out}}."""
    base = {
        'DEFAULT': {'host': 'compute-1',
                    'state_path': str(tmp_path / 'state')},
        'libvirt': {'connection_uri': 'qemu+unix:///system?socket=%s'
                    % (tmp_path / 'no-libvirtd.sock'),
                    'reconnect_initial_delay': '0.1',
                    'reconnect_max_delay': '1'},
        'monitor': {'interval': '1'},
        'cache': {'backend': 'dogpile.cache.memory'},
        'notifier': {'endpoint': 'http://127.0.0.1:9/v1',
                     'auth_type': 'none',
                     'password': PASSWORD},
    }
    for group, options in sections.items():
        base.setdefault(group, {}).update(options)
    lines = []
    for group, options in base.items():
        lines.append('[%s]' % group)
        lines.extend('%s = %s' % (k, v) for k, v in options.items()
                     if v is not None)
    path = tmp_path / 'guest-health-monitor.conf'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def run(conf_path):
    return subprocess.run(COMMAND + ['--config-file', conf_path], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def log_lines(text, level):
    """The log lines at ``level`` (oslo.log's format: date time pid
    LEVEL logger [-] message)."""
    return [line for line in text.splitlines()
            if re.match(r'\S+ \S+ \d+ %s ' % level, line)]


def assert_quiet_failure(proc, status, text):
    assert proc.returncode == status, proc.stderr + proc.stdout
    assert text in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert 'Eventlet is deprecated' not in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout


@pytest.mark.parametrize('group, option, value', [
    ('monitor', 'interval', '-5'),
    ('monitor', 'failure_threshold', 'three'),
    ('libvirt', 'connection_uri', 'not a uri'),
    ('cache', 'backend', 'dogpile.cache.nosuchbackend'),
    ('notifier', 'auth_type', 'no-such-plugin'),
    ('notifier', 'endpoint', 'not-a-url'),
])
def test_a_bad_option_is_named_and_exits_2(tmp_path, group, option, value):
    proc = run(write_conf(tmp_path, **{group: {option: value}}))

    assert_quiet_failure(proc, 2, '[%s] %s: ' % (group, option))
    assert proc.stderr.count('\n') == 1  # one line, nothing else


def test_a_state_path_that_cannot_be_created_is_named(tmp_path):
    regular_file = tmp_path / 'a-file'
    regular_file.write_text('')
    proc = run(write_conf(tmp_path, DEFAULT={
        'state_path': str(regular_file / 'state')}))

    assert_quiet_failure(proc, 2, '[DEFAULT] state_path: ')
    assert proc.stderr.count('\n') == 1


def test_options_an_auth_plugin_needs_are_named(tmp_path):
    proc = run(write_conf(tmp_path, notifier={'auth_type': 'password'}))

    assert_quiet_failure(
        proc, 2, "[notifier] auth_url: required by auth_type 'password'")


def test_an_unusable_outbox_is_a_clear_error(tmp_path):
    (tmp_path / 'state' / 'outbox.sqlite').mkdir(parents=True)
    proc = run(write_conf(tmp_path))

    assert_quiet_failure(proc, 1, 'Cannot start: cannot create the outbox')


@contextlib.contextmanager
def daemon(conf_path, log, args=(), env=None):
    """Run the console script with its stderr in ``log``; yield the
    process, killed on the way out if a test left it running."""
    with open(log, 'w') as stderr:
        proc = subprocess.Popen(
            COMMAND + ['--config-file', conf_path] + list(args), cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def terminate(proc):
    """SIGTERM and return the exit status."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def wait_for(path, text, guard=30.0):
    """Wait until ``text`` appears in the file (which may not exist
    yet); fail after ``guard`` s."""
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    pytest.fail('%r never appeared in the log:\n%s'
                % (text, path.read_text() if path.exists() else '(none)'))


@pytest.mark.parametrize('notifier', [
    {},
    {'auth_type': 'password', 'auth_url': 'http://127.0.0.1:9/identity',
     'username': 'monitor', 'project_name': 'service',
     'user_domain_name': 'Default', 'project_domain_name': 'Default'},
], ids=['no-auth', 'keystone-password'])
def test_an_unreachable_libvirt_is_said_once_and_sigterm_stops(tmp_path,
                                                               notifier):
    log = tmp_path / 'stderr.log'
    with daemon(write_conf(tmp_path, notifier=notifier), log) as proc:
        wait_for(log, 'Cannot connect to libvirt')
        # Reconnect attempts start 0.1 s apart, capped at 1 s: give it
        # several.
        time.sleep(1.5)
        status = terminate(proc)

    text = log.read_text()
    assert status == 0, text
    errors = log_lines(text, 'ERROR')
    assert len(errors) == 1, text
    assert 'Cannot connect to libvirt' in errors[0]
    assert 'no-libvirtd.sock' in errors[0]
    assert 'Received SIGTERM; stopping' in text
    assert text.rstrip().endswith('guest-health-monitor stopped')
    assert 'Traceback' not in text
    assert 'Eventlet is deprecated' not in text
    # The effective settings are logged, the password never.
    assert 'notifier.endpoint' in text
    assert PASSWORD not in text


def environ_of(pid):
    with open('/proc/%d/environ' % pid, 'rb') as source:
        return dict(entry.split(b'=', 1)
                    for entry in source.read().split(b'\0') if entry)


@pytest.mark.skipif(not GLIBC, reason="only glibc has a per-thread cache")
@pytest.mark.parametrize('operator_value, effective', [
    (None, 'glibc.malloc.tcache_count=0'),
    ('glibc.malloc.arena_max=4', 'glibc.malloc.arena_max=4'),
    ('', None),
], ids=['unset', 'operator-set', 'operator-empty'])
def test_the_daemon_runs_with_glibcs_per_thread_cache_off_unless_told(
        tmp_path, operator_value, effective):
    # Its native threads' caches of freed chunks made RSS creep for hours
    # (malloc_tuning). The restart keeps the PID systemd watches.
    env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
    if operator_value is not None:
        env['GLIBC_TUNABLES'] = operator_value
    log = tmp_path / 'stderr.log'
    with daemon(write_conf(tmp_path), log, env=env) as proc:
        wait_for(log, 'Cannot connect to libvirt')
        seen = environ_of(proc.pid).get(b'GLIBC_TUNABLES')
        status = terminate(proc)
    text = log.read_text()
    assert status == 0, text
    assert seen == (os.fsencode(effective) if effective is not None
                    else b'')
    assert 'malloc: arenas 2, GLIBC_TUNABLES %s' % (
        effective or 'empty') in text
    assert text.count('starting on host') == 1


@pytest.mark.parametrize('group, option, value, text', [
    ('DEFAULT', 'log_file', '/nonexistent-dir/ghm.log',
     '[DEFAULT] log_file: cannot write /nonexistent-dir/ghm.log'),
    ('cache', 'backend', 'dogpile.cache.memcached',
     '[cache] backend: dogpile.cache.memcached cannot be used'),
    ('notifier', 'auth_type', 'v3applicationcredential',
     '[notifier] auth_type: v3applicationcredential: '),
    ('notifier', 'auth_section', 'keystone',
     '[notifier] auth_section: no [keystone] section'),
])
def test_start_up_failures_that_used_to_be_tracebacks(tmp_path, group,
                                                      option, value, text):
    if option == 'backend' and importlib.util.find_spec('memcache'):
        pytest.skip('the memcached library is installed here')
    proc = run(write_conf(tmp_path, **{group: {option: value}}))

    assert_quiet_failure(proc, 2, text)
    assert proc.stderr.count('\n') == 1


@pytest.mark.parametrize('content', [None, b'[DEFAULT]\nhost = \xff\n'],
                         ids=['directory', 'not-utf8'])
def test_a_config_path_that_cannot_be_read_is_named(tmp_path, content):
    path = tmp_path / 'ghm.conf'
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    proc = run(str(path))

    assert_quiet_failure(proc, 2, 'configuration file %s: ' % path)
    assert proc.stderr.count('\n') == 1


def state_modes(state):
    modes = {}
    for entry in os.scandir(state):
        modes[entry.name] = entry.stat(follow_symlinks=False).st_mode & 0o777
    return modes


def test_one_daemon_per_state_path_with_private_files(tmp_path):
    state = tmp_path / 'state'
    state.mkdir()
    os.chmod(state, 0o755)
    # Left by a daemon that ran with a lax umask.
    (state / 'guest-health-monitor.lock').write_text('')
    os.chmod(state / 'guest-health-monitor.lock', 0o755)
    conf_path = write_conf(
        tmp_path,
        DEFAULT={'host': 'compute-1', 'state_path': str(state)},
        monitor={'interval': '1', 'intervall': '5'},
        cache={'backend': 'guest_health_monitor.sqlite',
               'backend_argument':
                   'filename:%s' % (state / 'domains.sqlite')},
        notifier={'endpoint': 'http://monitor:%s@127.0.0.1:9/v1'
                  % PASSWORD})
    log = tmp_path / 'first.log'
    # The daemon inherits it; whatever it creates must still be private.
    old_umask = os.umask(0)
    try:
        with daemon(conf_path, log) as first:
            wait_for(log, 'Cannot connect to libvirt')
            second = run(conf_path)
            modes = state_modes(state)
            lock_text = (state / 'guest-health-monitor.lock').read_text()
            status = terminate(first)
    finally:
        os.umask(old_umask)

    assert_quiet_failure(
        second, 2, 'guest-health-monitor: another guest-health-monitor '
                   '(PID %d) already uses state_path %s\n'
                   % (first.pid, state))
    assert lock_text == '%d\n' % first.pid
    assert os.stat(state).st_mode & 0o777 == 0o700
    assert 'outbox.sqlite' in modes, modes
    assert any(name.startswith('domains.sqlite') for name in modes), modes
    assert all(
        mode == (0o700 if os.path.isdir(state / name) else 0o600)
        for name, mode in modes.items()), modes
    text = log.read_text()
    assert status == 0, text
    assert 'WARNING monitor [-] [monitor] intervall is not a known option; ' \
        'ignored' in text
    assert 'http://monitor:***@127.0.0.1:9/v1' in text
    assert PASSWORD not in text


def test_the_stop_signal_handler_never_switches_greenlets():
    # A signal handler can run inside the eventlet hub itself. Were it to
    # log while a green thread holds the handler's lock (green once the
    # daemon monkey-patches), it would have to switch away from the hub:
    # "Cannot switch to MAINLOOP from MAINLOOP".
    import logging

    import eventlet
    from eventlet import hubs
    from eventlet.green import threading as green_threading

    from monitor.cmd import daemon as cmd

    log_handler = logging.Handler()
    log_handler.lock = green_threading.RLock()
    log_handler.emit = lambda record: None
    logger = logging.getLogger('monitor')
    logger.addHandler(log_handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    stop = cmd.SignalRecorder()
    outcome = []

    def hold_the_log_lock():
        with log_handler.lock:
            eventlet.sleep(0.2)

    def signal_arrives_in_the_hub():
        try:
            stop(signal.SIGTERM, None)
            outcome.append('returned')
        except BaseException as exc:  # whatever it is, the test says it
            outcome.append(repr(exc))

    try:
        holder = eventlet.spawn(hold_the_log_lock)
        eventlet.sleep(0)
        hubs.get_hub().schedule_call_global(0, signal_arrives_in_the_hub)
        holder.wait()
    finally:
        logger.removeHandler(log_handler)
        logger.setLevel(old_level)

    assert outcome == ['returned']
    assert stop.received == [signal.SIGTERM]


# -- SIGHUP --------------------------------------------------------------------

def rewrite(conf_path, old, new):
    with open(conf_path) as f:
        text = f.read()
    assert old in text
    with open(conf_path, 'w') as f:
        f.write(text.replace(old, new))


@pytest.fixture
def systemd():
    from tests.unit.daemon.test_systemd_notify import FakeSystemd

    name = 'ghm-test-%s' % uuid.uuid4().hex
    receiver = FakeSystemd('\0' + name)
    receiver.notify_socket = '@' + name
    yield receiver
    receiver.close()


@pytest.fixture
def running_conf(tmp_path, saved_logging):  # noqa: F811
    """(conf, argv, log file) of a daemon set up as main() sets it up."""
    from monitor.conf import loading
    from monitor.conf import log_setup as logs

    log_file = tmp_path / 'ghm.log'
    argv = ['--config-file', write_conf(
        tmp_path, DEFAULT={'log_file': str(log_file), 'debug': 'false'})]
    conf = loading.load(argv)
    logs.setup(conf)
    return conf, argv, log_file


def test_reload_applies_debug_reopens_the_log_and_tells_systemd(
        running_conf, systemd):
    import logging

    from monitor.daemon import systemd_notify

    conf, argv, log_file = running_conf
    rewrite(argv[1], 'debug = false', 'debug = true')
    notifier = systemd_notify.SystemdNotifier(systemd.notify_socket)

    cmd.reload_on_hup(conf, argv, notifier)
    notifier.close()

    assert conf.debug is True
    assert logging.getLogger().level == logging.DEBUG
    # The HTTP exchanges with the engine too, not only the root.
    assert logging.getLogger('urllib3.connectionpool').getEffectiveLevel() \
        == logging.DEBUG
    text = log_file.read_text()
    assert 'INFO monitor [-] Reloaded on SIGHUP: log level DEBUG, 1 log ' \
        'file(s) reopened' in text
    assert log_lines(text, 'ERROR') == []
    [reloading, ready] = systemd.messages()
    assert reloading.startswith('RELOADING=1\nMONOTONIC_USEC=')
    assert ready == 'READY=1'


def test_a_config_broken_before_the_reload_keeps_the_running_one(
        running_conf, systemd):
    import logging

    from monitor.daemon import systemd_notify

    conf, argv, log_file = running_conf
    rewrite(argv[1], 'debug = false', 'debug = maybe')
    notifier = systemd_notify.SystemdNotifier(systemd.notify_socket)

    cmd.reload_on_hup(conf, argv, notifier)
    notifier.close()

    assert conf.debug is False
    assert logging.getLogger().level == logging.INFO
    [error] = log_lines(log_file.read_text(), 'ERROR')
    assert 'Not reloading on SIGHUP: invalid configuration: [DEFAULT] ' \
        'debug: not a valid boolean value (got maybe); keeping the ' \
        'running configuration' in error
    assert 'Reloaded' not in log_file.read_text()
    assert systemd.messages()[-1] == 'READY=1'


def test_a_change_that_needs_a_restart_is_warned_about(running_conf):
    from monitor.daemon import systemd_notify

    conf, argv, log_file = running_conf
    rewrite(argv[1], 'interval = 1', 'interval = 5')

    cmd.reload_on_hup(conf, argv, systemd_notify.SystemdNotifier(None))

    assert conf.monitor.interval == 1
    assert any('Ignoring change to immutable option monitor.interval' in line
               for line in log_lines(log_file.read_text(), 'WARNING'))


def test_sighup_reloads_and_the_daemon_keeps_running(tmp_path, systemd,
                                                     monkeypatch):
    log_file = tmp_path / 'ghm.log'
    conf_path = write_conf(tmp_path, DEFAULT={'log_file': str(log_file),
                                              'debug': 'false'})
    monkeypatch.setenv('NOTIFY_SOCKET', systemd.notify_socket)
    output = tmp_path / 'output.log'
    with daemon(conf_path, output) as proc:
        wait_for(log_file, 'Cannot connect to libvirt')
        # What logrotate does, and an operator turning debug on.
        os.rename(log_file, tmp_path / 'ghm.log.1')
        rewrite(conf_path, 'debug = false', 'debug = true')
        systemd.messages()
        proc.send_signal(signal.SIGHUP)
        wait_for(log_file, 'Reloaded on SIGHUP')
        after_reload = systemd.messages()
        # A broken file on the next reload: kept running, said why.
        rewrite(conf_path, 'debug = true', 'debug = maybe')
        proc.send_signal(signal.SIGHUP)
        wait_for(log_file, 'Not reloading on SIGHUP')
        running = proc.poll() is None
        status = terminate(proc)

    text = log_file.read_text()
    assert running, text
    assert status == 0, text
    assert 'Reloaded on SIGHUP: log level DEBUG, 1 log file(s) reopened' \
        in text
    assert 'Reloaded on SIGHUP' not in (tmp_path / 'ghm.log.1').read_text()
    [error] = [line for line in log_lines(text, 'ERROR')
               if 'SIGHUP' in line]
    assert '[DEFAULT] debug: not a valid boolean value (got maybe)' in error
    assert text.rstrip().endswith('guest-health-monitor stopped')
    assert 'Traceback' not in text + output.read_text()
    reload_messages = [m.split('\n')[0] for m in after_reload
                       if not m.startswith('WATCHDOG=1')]
    assert reload_messages == ['RELOADING=1', 'READY=1']


def test_log_file_and_debug_on_the_command_line(tmp_path):
    log_file = tmp_path / 'cli.log'
    output = tmp_path / 'output.log'
    with daemon(write_conf(tmp_path), output,
                args=['--log-file', str(log_file), '--debug']) as proc:
        wait_for(log_file, 'Cannot connect to libvirt')
        status = terminate(proc)

    text = log_file.read_text()
    assert status == 0, text
    assert log_lines(text, 'DEBUG'), text
    assert 'guest-health-monitor stopped' in text
    # The log goes to the file only.
    assert output.read_text() == ''


# -- libvirt calls that never return -----------------------------------------------

FAKE_AGENT = [sys.executable, '-m', 'tests.unit.cmd.fake_agent_daemon']
GUESTS = ('stuck-screen', 'stuck-reset', 'fifo-console', 'plain', 'later')
# A Standard Webhooks signing secret, the form [webhook] secret takes.
WEBHOOK_SECRET = 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='


def guest_xml(n, name, console):
    return f"""
  <domain type='test'>
    <name>{name}</name>
    <uuid>cccccccc-0000-4000-8000-00000000000{n}</uuid>
    <memory>1024</memory>
    <os><type>hvm</type></os>
    <devices>
      <serial type='file'><source path='{console}'/><target port='0'/></serial>
      <graphics type='vnc'/>
      <channel type='unix'>
        <source mode='bind' path='/run/{name}.sock'/>
        <target type='virtio' name='org.qemu.guest_agent.0'/>
      </channel>
    </devices>
  </domain>"""


@pytest.fixture
def fake_host(tmp_path):
    """(conf path, control directory, webhook receiver) of a daemon that
    resets failed guests on a test-driver host of GUESTS, whose second
    guest's console log is a FIFO nobody writes to."""
    from lab import webhook_receiver

    control = tmp_path / 'control'
    control.mkdir()
    consoles = []
    for name in GUESTS:
        console = tmp_path / ('%s.log' % name)
        if name == 'fifo-console':
            os.mkfifo(console)
        else:
            console.write_text('booting %s\nKernel panic\n' % name)
        consoles.append(console)
    node = tmp_path / 'node.xml'
    node.write_text('<node>%s\n</node>\n' % ''.join(
        guest_xml(n, name, console)
        for n, (name, console) in enumerate(zip(GUESTS, consoles), 1)))
    with webhook_receiver.WebhookReceiver(WEBHOOK_SECRET) as receiver:
        conf_path = write_conf(
            tmp_path,
            libvirt={'connection_uri': 'test://%s' % node},
            monitor={'interval': '1', 'ping_timeout': '1',
                     'failure_threshold': '2', 'agent_disconnect_grace': '0',
                     'corroborate_with_io': 'false',
                     'mass_failure_min_domains': '1000'},
            notifier={'driver': 'webhook', 'endpoint': None,
                      'auth_type': None, 'password': None},
            webhook={'url': receiver.url, 'secret': WEBHOOK_SECRET},
            recovery={'action': 'reset', 'action_timeout': '5',
                      'step_timeout': '10'},
            evidence={'console_timeout': '2', 'screenshot_timeout': '2'})
        yield conf_path, control, receiver


@contextlib.contextmanager
def fake_agent_daemon(conf_path, control, log):
    with open(log, 'w') as stderr:
        proc = subprocess.Popen(
            FAKE_AGENT + [str(control), '--config-file', conf_path],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_healthy(log, names):
    for name in names:
        wait_for(log, 'Domain %s (' % name)
        wait_for(log, 'discovery -> healthy')
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text()
        if all(re.search(r'Domain %s \(\S+\): discovery -> healthy' % name,
                         text) for name in names):
            return
        time.sleep(0.1)
    pytest.fail('not every guest became healthy:\n%s' % log.read_text())


def results_by_name(deliveries):
    return {d.data()['domain_name']: d.data()['recovery'] for d in deliveries}


def test_recoveries_stuck_in_libvirt_neither_hold_notifications_nor_slots(
        tmp_path, fake_host):
    conf_path, control, receiver = fake_host
    log = tmp_path / 'daemon.log'
    (control / 'hang-screenshot-stuck-screen').touch()
    (control / 'hang-reset-stuck-reset').touch()
    with fake_agent_daemon(conf_path, control, log) as proc:
        wait_healthy(log, GUESTS)
        failed_at = time.monotonic()
        for name in GUESTS[:4]:
            (control / ('silent-' + name)).touch()

        first = receiver.wait_for(4, timeout=60)
        took = time.monotonic() - failed_at
        (control / 'silent-later').touch()
        last = receiver.wait_for(5, timeout=60)
        status = terminate(proc)

    text = log.read_text()
    assert len(first) == 4, text
    assert took < 60
    results = results_by_name(first)
    # Stuck in libvirt, both recovery slots at once: each given up on at
    # its deadline, and said so.
    assert results['stuck-screen']['result'] == 'timed_out'
    assert results['stuck-screen']['detail'].startswith(
        'screenshot: the screenshot capture did not return within 2 s')
    assert results['stuck-reset']['result'] == 'timed_out'
    assert results['stuck-reset']['detail'].startswith(
        'action: the reset did not return within 5 s')
    # A FIFO console is never opened for a blocking read: refused at once,
    # and the guest recovered as any other.
    assert results['fifo-console'] == {'action': 'reset', 'result': 'done',
                                       'detail': 'reset'}
    assert 'a FIFO, not a regular file; not read' in text
    assert results['plain']['result'] == 'done'
    # Later failures get a slot at once: the stuck calls hold none.
    assert len(last) == 5, text
    assert results_by_name(last)['later']['result'] == 'done'
    assert all(d.signature_valid for d in last)
    # Both calls are still stuck when the daemon stops: they are left
    # behind and the exit status says so.
    assert status == cmd.EXIT_ABANDONED, text
    assert 'abandoning 2 libvirt call(s) that did not return' in text
    assert 'Traceback' not in text


def test_sigterm_ends_the_daemon_within_bounds_whatever_libvirt_does(
        tmp_path, fake_host):
    from monitor.notify import outbox as outbox_mod

    conf_path, control, receiver = fake_host
    rewrite(conf_path, 'screenshot_timeout = 2', 'screenshot_timeout = 600')
    log = tmp_path / 'daemon.log'
    (control / 'hang-screenshot-stuck-screen').touch()
    with fake_agent_daemon(conf_path, control, log) as proc:
        wait_healthy(log, GUESTS)
        (control / 'silent-stuck-screen').touch()
        wait_for(log, 'sent once the reset is done')
        # And a listing stuck in the pool the daemon shares for them.
        (control / 'hang-listing').touch()
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        status = proc.wait(timeout=30)
        took = time.monotonic() - signalled

    text = log.read_text()
    assert took < 10, text
    assert status == cmd.EXIT_ABANDONED, text
    assert re.search(r'stays held: its reset was under way when the monitor '
                     r'stopped; the next start sends it as interrupted',
                     text), text
    assert 'abandoning' in text and 'Traceback' not in text
    assert receiver.deliveries == []
    # Kept for the next start, which sends it as interrupted.
    box = outbox_mod.Outbox(str(tmp_path / 'state' / 'outbox.sqlite'), 10)
    try:
        [held] = box.held()
    finally:
        box.close()
    assert held.notification.domain_name == 'stuck-screen'


def test_a_stop_while_a_slow_libvirt_call_runs_waits_for_it_and_ends_well(
        tmp_path, fake_host):
    conf_path, control, _receiver = fake_host
    log = tmp_path / 'daemon.log'
    with fake_agent_daemon(conf_path, control, log) as proc:
        wait_healthy(log, GUESTS)
        (control / 'slow-listing').touch()
        time.sleep(1.5)  # a round has started its 3 s listing
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        status = proc.wait(timeout=30)
        took = time.monotonic() - signalled

    text = log.read_text()
    # The listing ends on its own, well within the stop's bound: nothing
    # was left behind, and the exit status says so.
    assert status == 0, text
    assert 'abandoning' not in text
    assert 'guest-health-monitor stopped' in text
    assert took < 10, text
