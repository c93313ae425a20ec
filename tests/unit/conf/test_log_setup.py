"""Logging through oslo.log: its options from the command line and the
config file, checked at start, set up without anything native, library
levels, journald priorities, log files reopened, URL credentials masked.

Tests that set logging up restore the process's logging afterwards.
"""

import logging
import logging.handlers
import os
import sys
import threading

import pytest
from oslo_log import handlers as oslo_handlers
from oslo_log import log as oslo_log

from monitor import errors
from monitor.conf import loading
from monitor.conf import log_setup as logs

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
