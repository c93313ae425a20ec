"""Logging through oslo.log: its options from the command line and the
config file, checked at start, set up without anything native, library
levels, journald priorities, log files reopened, URL credentials masked.

Tests that set logging up restore the process's logging afterwards.
"""

import json
import logging
import logging.handlers
import os
import sys
import threading
import time

import pytest
from oslo_log import handlers as oslo_handlers
from oslo_log import log as oslo_log

from monitor import errors
from monitor import masking
from monitor.conf import loading
from monitor.conf import log_setup as logs
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.virt import metadata

ENDPOINT = 'http://127.0.0.1:9/v1'


@pytest.fixture(autouse=True)
def saved_logging():
    """Put back the root handlers, every logger's level and the except
    hook that setting logging up changes."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logger.level
              for name, logger in logging.Logger.manager.loggerDict.items()
              if isinstance(logger, logging.Logger)}
    root_level = root.level
    hook = sys.excepthook
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(root_level)
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            logger.setLevel(levels.get(name, logging.NOTSET))
    sys.excepthook = hook


@pytest.fixture
def write_conf(tmp_path):
    def write(**defaults):
        lines = ['[DEFAULT]', 'host = compute-1',
                 'state_path = %s' % (tmp_path / 'state')]
        lines += ['%s = %s' % item for item in defaults.items()]
        lines += ['[notifier]', 'endpoint = %s' % ENDPOINT,
                  '[cache]', 'backend = dogpile.cache.memory']
        path = tmp_path / 'ghm.conf'
        path.write_text('\n'.join(lines) + '\n')
        return str(path)

    return write


def load(path, *args):
    return loading.load(['--config-file', path] + list(args),
                       default_config_files=[])


def load_error(path, *args):
    with pytest.raises(errors.ConfigError) as excinfo:
        load(path, *args)
    return excinfo.value


def log_text(path):
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text()


# -- options -----------------------------------------------------------------

def test_the_command_line_sets_debug_and_the_log_file(write_conf, tmp_path):
    log_file = tmp_path / 'ghm.log'
    conf = load(write_conf(), '--debug', '--log-file', str(log_file))
    assert conf.debug is True
    assert conf.log_file == str(log_file)


def test_the_config_file_keeps_its_names(write_conf, tmp_path):
    log_file = tmp_path / 'ghm.log'
    conf = load(write_conf(debug='true', log_file=str(log_file),
                           use_syslog='true', use_journal='false'))
    assert (conf.debug, conf.log_file, conf.use_syslog) == (
        True, str(log_file), True)


def test_the_command_line_wins_over_the_file(write_conf, tmp_path):
    conf = load(write_conf(log_file=str(tmp_path / 'file.log')),
                '--log-file', str(tmp_path / 'cli.log'))
    assert conf.log_file == str(tmp_path / 'cli.log')


def test_registering_the_options_adds_no_handler():
    # oslo.log would give a bare root logger a stderr handler; the status
    # and outbox tools read the configuration and must print no log.
    root = logging.getLogger()
    for handler in list(root.handlers):
        # Put back by saved_logging.
        root.removeHandler(handler)
    loading.build_conf()
    assert root.handlers == []


@pytest.mark.parametrize('defaults, option, text', [
    ({'log_dir': 'logs'}, 'log_dir', 'must be an absolute path (got logs)'),
    ({'log_dir': '/nonexistent-dir'}, 'log_dir',
     '/nonexistent-dir is not a directory'),
    ({'log_file': 'ghm.log'}, 'log_file', 'must be an absolute path unless '
                                          'log_dir is set (got ghm.log)'),
    ({'log_file': '/nonexistent-dir/ghm.log'}, 'log_file',
     'cannot write /nonexistent-dir/ghm.log: No such file or directory'),
    ({'syslog_log_facility': 'LOG_NOPE'}, 'syslog_log_facility',
     "not a syslog facility such as LOG_USER or LOG_LOCAL0 "
     "(got 'LOG_NOPE')"),
    ({'default_log_levels': 'urllib3=LOUD'}, 'default_log_levels',
     "expected logger=LEVEL pairs (got 'urllib3=LOUD')"),
    ({'publish_errors': 'true'}, 'publish_errors',
     'not supported: the daemon has no messaging transport to publish to'),
    ({'log_config_append': '/nonexistent.ini'}, 'log_config_append',
     'cannot read /nonexistent.ini: No such file or directory'),
    ({'debug': 'maybe'}, 'debug', 'not a valid boolean value (got maybe)'),
    ({'use_journal': ''}, 'use_journal', 'must not be empty'),
])
def test_an_unusable_logging_option_is_named(write_conf, defaults, option,
                                             text):
    error = load_error(write_conf(**defaults))
    assert str(error) == '[DEFAULT] %s: %s' % (option, text)


def test_a_log_file_that_log_dir_cannot_take_names_log_dir(write_conf,
                                                          tmp_path):
    log_dir = tmp_path / 'logs'
    (log_dir / logs.DEFAULT_LOG_FILE_NAME).mkdir(parents=True)
    error = load_error(write_conf(log_dir=str(log_dir)))
    assert (error.option, error.message) == (
        'log_dir', '%s is a directory' % (log_dir / 'guest-health-monitor.log'))


def test_a_log_config_append_that_is_not_one_is_named(write_conf, tmp_path):
    path = tmp_path / 'logging.ini'
    path.write_text('[loggers]\nkeys = root\n')
    error = load_error(write_conf(log_config_append=str(path)))
    assert str(error) == ('[DEFAULT] log_config_append: %s is not a logging '
                          'configuration file (no [handlers] section)' % path)


def test_use_journal_without_the_bindings_is_named(write_conf, monkeypatch):
    monkeypatch.setattr(oslo_handlers, 'journal', None)
    error = load_error(write_conf(use_journal='true'))
    assert error.option == 'use_journal'
    assert 'systemd Python bindings' in error.message


@pytest.mark.parametrize('option', ['logging_debug_format_suffix',
                                    'rate_limit_except_level'])
def test_empty_is_a_value_for_some_oslo_log_options(write_conf, option):
    conf = load(write_conf(**{option: ''}))
    assert conf[option] == ''


# -- setup -------------------------------------------------------------------

def test_the_log_file_gets_oslo_log_lines(write_conf, tmp_path):
    log_file = tmp_path / 'ghm.log'
    conf = load(write_conf(), '--log-file', str(log_file), '--debug')
    logs.setup(conf)

    logging.getLogger('monitor.test').debug('a debug line %d', 7)
    logging.getLogger('monitor.test').info('an info line')

    text = log_text(log_file)
    assert ' DEBUG monitor.test [-] a debug line 7' in text
    assert ' INFO monitor.test [-] an info line' in text


def test_without_debug_debug_lines_are_dropped(write_conf, tmp_path):
    log_file = tmp_path / 'ghm.log'
    logs.setup(load(write_conf(log_file=str(log_file))))

    logging.getLogger('monitor.test').debug('a debug line')
    logging.getLogger('monitor.test').info('an info line')

    text = log_text(log_file)
    assert 'a debug line' not in text
    assert 'an info line' in text


def test_log_dir_alone_names_the_file_after_the_daemon(write_conf, tmp_path):
    log_dir = tmp_path / 'logs'
    log_dir.mkdir()
    logs.setup(load(write_conf(log_dir=str(log_dir))))

    logging.getLogger('monitor.test').warning('to the log dir')

    assert 'to the log dir' in log_text(log_dir / 'guest-health-monitor.log')


def test_a_relative_log_file_joins_log_dir(write_conf, tmp_path):
    log_dir = tmp_path / 'logs'
    log_dir.mkdir()
    logs.setup(load(write_conf(log_dir=str(log_dir), log_file='x.log')))

    logging.getLogger('monitor.test').warning('to x.log')

    assert 'to x.log' in log_text(log_dir / 'x.log')


@pytest.mark.parametrize('debug', [False, True])
def test_library_chatter_is_quiet_unless_debugging(write_conf, tmp_path,
                                                   debug):
    conf = load(write_conf(log_file=str(tmp_path / 'ghm.log'),
                           debug=str(debug).lower()))
    logs.setup(conf)

    opened = logging.DEBUG if debug else logging.WARNING
    assert logging.getLogger('urllib3.connectionpool').getEffectiveLevel() \
        == opened
    assert logging.getLogger('keystoneauth.session').getEffectiveLevel() \
        == opened
    assert logging.getLogger('stevedore').getEffectiveLevel() \
        == logging.WARNING


def test_the_operators_default_log_levels_rule_alone(write_conf, tmp_path):
    conf = load(write_conf(log_file=str(tmp_path / 'ghm.log'), debug='true',
                           default_log_levels='urllib3=ERROR'))
    logs.setup(conf)

    assert logging.getLogger('urllib3').level == logging.ERROR


def test_journald_gets_priorities(write_conf, monkeypatch):
    sent = []

    class FakeJournal:
        @staticmethod
        def send(message, **fields):
            sent.append((message, fields['PRIORITY']))

    monkeypatch.setattr(oslo_handlers, 'journal', FakeJournal)
    logs.setup(load(write_conf(use_journal='true', debug='true')))

    logger = logging.getLogger('monitor.test')
    logger.debug('d')
    logger.info('i')
    logger.warning('w')
    logger.error('e')

    priorities = [p for message, p in sent if 'monitor.test' in message]
    assert priorities == [7, 6, 4, 3]


def test_setup_starts_no_thread(write_conf, tmp_path, monkeypatch):
    # Native threads must never log under eventlet; none may be started.
    monkeypatch.setattr(oslo_handlers, 'journal',
                        type('FakeJournal', (), {'send': print}))
    conf = load(write_conf(log_file=str(tmp_path / 'ghm.log'),
                           use_syslog='true', use_journal='true'))
    before = threading.enumerate()
    logs.setup(conf)
    assert threading.enumerate() == before


def test_setup_leaves_the_logging_locks_alone_under_eventlet(write_conf,
                                                             tmp_path,
                                                             monkeypatch):
    # oslo.log would replace the logging module's locks with pipe-based
    # mutexes meant for native threads that log (and warn that eventlet
    # support is deprecated); the daemon's native threads never log.
    from eventlet import patcher

    monkeypatch.setattr(patcher, 'is_monkey_patched', lambda name: True)
    monkeypatch.setattr(oslo_log, '_EVENTLET_FIX_APPLIED', False)
    # Put back whatever happens, so the rest of the suite is not hurt.
    monkeypatch.setattr(logging.Handler, 'createLock',
                        logging.Handler.createLock)
    monkeypatch.setattr(logging, '_lock', logging._lock)
    monkeypatch.setattr(logging, 'threading', logging.threading)
    create_lock, module_lock = logging.Handler.createLock, logging._lock

    logs.setup(load(write_conf(log_file=str(tmp_path / 'ghm.log'))))

    assert logging.Handler.createLock is create_lock
    assert logging._lock is module_lock
    assert logging.threading is threading


def test_url_credentials_in_an_exception_being_handled_are_masked(
        write_conf, tmp_path):
    log_file = tmp_path / 'ghm.log'
    logs.setup(load(write_conf(log_file=str(log_file))))

    try:
        raise ConnectionError('POST https://monitor:s3cret@engine/v1 failed')
    except ConnectionError:
        # oslo.log appends the exception's text to a warning logged here.
        logging.getLogger('monitor.test').warning('Delivery failed')

    text = log_text(log_file)
    assert 'Delivery failed' in text
    assert 'https://monitor:***@engine/v1' in text
    assert 's3cret' not in text


# -- outside text in log lines ----------------------------------------------

def logged_lines(write_conf, tmp_path, log):
    """The lines of the log file after ``log(logger)`` ran."""
    log_file = tmp_path / 'ghm.log'
    logs.setup(load(write_conf(log_file=str(log_file)), '--debug'))
    log(logging.getLogger('monitor.test'))
    return log_text(log_file).splitlines()


def test_control_characters_from_outside_are_shown_never_emitted(
        write_conf, tmp_path):
    forged = ('503 busy\n2026-01-01 00:00:00.000 1 ERROR monitor [-] '
              'forged\r\x1b[2J\x1b]0;title\x07\u2028end')

    lines = logged_lines(write_conf, tmp_path, lambda log: log.warning(
        'Receiver answered: %s (%r)', forged, forged))

    [line] = lines
    assert 'Receiver answered: 503 busy\\n2026-01-01' in line
    assert '\\x1b[2J\\x1b]0;title\\x07\\u2028end' in line
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in line)


def test_each_piece_of_outside_text_is_cut_and_says_how_much(write_conf,
                                                            tmp_path):
    location = 'https://elsewhere.example/' + 'a' * 60000

    [line] = logged_lines(write_conf, tmp_path, lambda log: log.info(
        'Redirect to %s refused (%d bytes)', location, len(location)))

    shown = masking.MAX_PIECE
    assert 'a' * (shown - 100) in line
    assert 'a' * (shown + 1) not in line
    assert 'more chars]' in line
    assert line.endswith('refused (60026 bytes)')


def test_no_log_line_is_longer_than_the_bound(write_conf, tmp_path):
    pieces = ['x' * 3000] * 10

    lines = logged_lines(write_conf, tmp_path, lambda log: (
        log.info('many: ' + '%s ' * 10, *pieces),
        log.info('y' * 100000)))

    assert len(lines) == 2
    assert all(len(line) <= masking.MAX_LINE for line in lines)
    assert all(line.endswith('more chars]') for line in lines)


def test_a_traceback_keeps_its_lines_each_bounded(write_conf, tmp_path):
    def log(logger):
        try:
            raise ValueError('bad value ' + 'v' * 10000 + '\x1b[31m')
        except ValueError:
            logger.exception('Lookup failed')

    lines = logged_lines(write_conf, tmp_path, log)

    assert ' Lookup failed: ValueError: bad value vvv' in lines[0]
    assert len(lines) > 2
    assert any(line.endswith('Traceback (most recent call last):')
               for line in lines)
    assert all(len(line) <= masking.MAX_LINE for line in lines)
    assert '\x1b' not in '\n'.join(lines)


def test_a_json_log_line_stays_json_with_its_outside_text_bounded(
        write_conf, tmp_path):
    log_file = tmp_path / 'ghm.log'
    logs.setup(load(write_conf(log_file=str(log_file), use_json='true')))

    logging.getLogger('monitor.test').warning(
        'Receiver answered: %s', 'a\n\x1b[2J' + 'z' * 100000)

    [line] = log_text(log_file).splitlines()
    record = json.loads(line)
    assert record['message'].startswith('Receiver answered: a\\n\\x1b[2J')
    assert record['message'].endswith('more chars]')
    assert len(line) < 3 * masking.MAX_PIECE + 2000


def test_other_handlers_get_the_record_unchanged(write_conf, tmp_path):
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.args)

    keep = Keep()
    logging.getLogger('monitor.test').addHandler(keep)
    try:
        logged_lines(write_conf, tmp_path,
                     lambda log: log.info('%s', 'a\nb' * 1000))
    finally:
        logging.getLogger('monitor.test').removeHandler(keep)

    assert seen == [('a\nb' * 1000,)]


def test_a_webhook_urls_token_is_masked_in_every_line(write_conf, tmp_path):
    url = 'https://hooks.slack.com/services/T0A1B2C3D4/B0A1B2C3D4/' + (
        'Zx9' * 8)
    masking.add_known_secrets(masking.webhook_url_secrets(url))

    lines = logged_lines(write_conf, tmp_path, lambda log: log.debug(
        'Starting new HTTPS connection: "POST %s HTTP/1.1" 200',
        url.split('.com', 1)[1]))

    [line] = lines
    assert '"POST /services/*** HTTP/1.1" 200' in line
    assert 'Zx9' not in line


# -- reopening ---------------------------------------------------------------

@pytest.mark.parametrize('rotation', ['none', 'size'])
def test_a_moved_away_log_file_is_reopened(write_conf, tmp_path, rotation):
    # 'none' is a WatchedFileHandler, 'size' a RotatingFileHandler, which
    # would keep writing to the moved file.
    log_file = tmp_path / 'ghm.log'
    logs.setup(load(write_conf(log_file=str(log_file),
                               log_rotation_type=rotation)))
    logger = logging.getLogger('monitor.test')
    logger.warning('before the rotation')
    os.rename(log_file, tmp_path / 'ghm.log.1')

    assert logs.reopen_files() == [str(log_file)]
    logger.warning('after the rotation')

    assert 'after the rotation' in log_text(log_file)
    assert 'after the rotation' not in (tmp_path / 'ghm.log.1').read_text()
    assert 'before the rotation' in (tmp_path / 'ghm.log.1').read_text()


def test_a_log_file_that_cannot_be_reopened_keeps_the_old_one(
        write_conf, tmp_path):
    log_dir = tmp_path / 'logs'
    log_dir.mkdir()
    log_file = log_dir / 'ghm.log'
    logs.setup(load(write_conf(log_file=str(log_file),
                               log_rotation_type='size')))
    os.rename(log_dir, tmp_path / 'gone')

    assert logs.reopen_files() == []
    logging.getLogger('monitor.test').warning('still logged')

    text = (tmp_path / 'gone' / 'ghm.log').read_text()
    assert 'Cannot reopen the log file %s' % log_file in text
    assert 'still logged' in text


def test_without_log_files_nothing_is_reopened(write_conf):
    logs.setup(load(write_conf()))
    assert logs.reopen_files() == []


@pytest.mark.parametrize('defaults', [{}, {'use_stderr': 'true'}],
                         ids=['no-destination', 'use_stderr'])
def test_without_a_destination_the_log_goes_to_stderr(write_conf, capsys,
                                                       defaults):
    logs.setup(load(write_conf(**defaults)))

    logging.getLogger('monitor.test').warning('where am I')

    captured = capsys.readouterr()
    assert 'where am I' in captured.err
    assert 'where am I' not in captured.out


# -- the daemon logging outside text --------------------------------------------

def metadata_node(tmp_path, value):
    """A libvirt test-driver node with one running domain whose
    <monitor/> metadata carries ``value`` as its action."""
    from tests.unit.virt import libvirt_node

    xml = libvirt_node.domain(
        'appliance-1', libvirt_node.WITH_AGENT,
        devices=libvirt_node.agent_channel(str(tmp_path / 'ga.sock'))).replace(
        '<devices>', '<metadata><ghm:monitor xmlns:ghm="%s" action="%s"/>'
        '</metadata><devices>' % (metadata.NAMESPACE, value), 1)
    path = tmp_path / 'node.xml'
    path.write_text('<node>%s</node>\n' % xml)
    return 'test://%s' % path


def test_the_daemon_logs_huge_outside_text_short_and_keeps_answering(
        tmp_path):
    from tests.unit import http_engine
    from tests.unit.cmd import test_daemon
    from tests.unit.daemon import test_metrics_server

    location = 'https://elsewhere.example/' + 'L' * 60000
    receiver = http_engine.HTTPServer(http_engine.reply(
        302, b'', {'Location': location}))
    state = tmp_path / 'state'
    state.mkdir(mode=0o700)
    box = outbox_mod.Outbox(str(state / outbox_mod.FILE_NAME), max_size=10)
    box.enqueue(notification_mod.Notification.new(
        '6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1', 'appliance-1', 'compute-1',
        time.time()), time.time())
    box.close()
    port = test_metrics_server.free_port()
    conf = test_daemon.write_conf(
        tmp_path, DEFAULT={'debug': 'true'},
        libvirt={'connection_uri': metadata_node(tmp_path, 'M' * 100000)},
        notifier={'driver': 'webhook', 'endpoint': None, 'auth_type': None,
                  'password': None},
        webhook={'url': receiver.url + '/services/T0A1B2C3D4/aBcDeFgHiJkL',
                 'secret': 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=', 'timeout': '2'},
        outbox={'retry_initial_delay': '0.2', 'retry_max_delay': '1'},
        metrics={'listen_port': port})
    log = tmp_path / 'stderr.log'
    probes = []
    try:
        with test_daemon.daemon(conf, log) as proc:
            test_daemon.wait_for(log, 'Serving metrics at')
            # Probe while the huge texts are read and logged, over and over.
            until = time.monotonic() + 6
            while time.monotonic() < until:
                start = time.monotonic()
                test_metrics_server.get(port, '/healthz')
                probes.append(time.monotonic() - start)
                time.sleep(0.05)
            test_daemon.wait_for(log, 'redirect not followed')
            test_daemon.wait_for(log, 'metadata element is ignored')
            status = test_daemon.terminate(proc)
    finally:
        receiver.close()

    lines = log.read_text().splitlines()
    assert status == 0
    assert len(receiver.requests) >= 2
    assert max(probes) < 1.0
    assert max(len(line) for line in lines) <= masking.MAX_LINE
    [warning] = [line for line in lines if 'metadata element is ignored' in line]
    assert 'action="MMMM' in warning
    assert 'characters long, more than' in warning
    assert 'T0A1B2C3D4' not in log.read_text()
