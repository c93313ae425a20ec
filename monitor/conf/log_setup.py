"""Operator logging through oslo.log.

oslo.log owns the options (``debug``, ``log_file``, ``log_dir``,
``use_journal``, ``use_syslog``, ``log_config_append``,
``default_log_levels`` and the rest) and builds the handlers, so the daemon
logs like every other OpenStack service. This module registers those
options, checks them at start (oslo.log itself would fail with a traceback,
or not at all), sets logging up once the configuration is valid, and
re-applies it on reload.
"""

import collections.abc
import configparser
import logging
import logging.handlers
import numbers
import os
import sys
import syslog

from oslo_log import formatters as oslo_formatters
from oslo_log import handlers as oslo_handlers
from oslo_log import log as oslo_log
from oslo_log import versionutils

from monitor import masking
from monitor.errors import ConfigError

# The file under log_dir when log_file is unset. oslo.log would name it
# after the running script, which is cmd.py.log under ``python -m``.
DEFAULT_LOG_FILE_NAME = 'guest-health-monitor.log'

PRODUCT = 'guest-health-monitor'

# Libraries whose chatter is noise for operators: oslo.log's own list plus
# every urllib3 logger (HTTP connection pools).
DEFAULT_LOG_LEVELS = oslo_log.get_default_log_levels() + ['urllib3=WARN']

# With debug on, these libraries log at debug too (the HTTP exchange with
# the engine and keystone is what one debugs delivery with), unless the
# operator wrote default_log_levels, which then rules alone.
DEBUG_OPENS = ('urllib3', 'requests.packages.urllib3', 'keystoneauth')

# What syslog(3) calls its facilities, as oslo.log accepts them.
SYSLOG_FACILITIES = (
    'KERN', 'USER', 'MAIL', 'DAEMON', 'AUTH', 'SYSLOG', 'LPR', 'NEWS',
    'UUCP', 'CRON', 'AUTHPRIV', 'FTP', 'LOCAL0', 'LOCAL1', 'LOCAL2',
    'LOCAL3', 'LOCAL4', 'LOCAL5', 'LOCAL6', 'LOCAL7')

LEVEL_NAMES = ('CRITICAL', 'FATAL', 'ERROR', 'WARNING', 'WARN', 'INFO',
               'DEBUG', 'TRACE', 'NOTSET')

LOG = logging.getLogger(__name__)

# A log_config_append file that does not apply (at start or on reload).
LogConfigError = oslo_log.LogConfigError


def set_defaults():
    """The daemon's defaults for oslo.log's options (also the
    oslo-config-generator hook, so the sample shows them)."""
    oslo_log.set_defaults(default_log_levels=DEFAULT_LOG_LEVELS)


def list_opts():
    # oslo.log publishes its options itself (generator namespace
    # oslo.log); monitor.conf.opts.all_opts() adds them for validation.
    return []


def register_opts(conf):
    set_defaults()
    root = logging.getLogger()
    before = list(root.handlers)
    oslo_log.register_options(conf)
    # register_options gives a bare root logger a handler on the stderr of
    # the moment "for logging before setup"; setup() builds the real ones,
    # and the tools that only read the configuration must not log.
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
    # Listed by oslo.log for the sample; registered so that what the
    # sample shows is read and checked.
    conf.register_opts(versionutils.deprecated_opts)


def log_file_path(conf):
    """The file the daemon logs to, or None (as oslo.log joins them)."""
    if conf.log_dir:
        return os.path.join(conf.log_dir,
                            conf.log_file or DEFAULT_LOG_FILE_NAME)
    return conf.log_file or None


def check_options(conf):
    """What oslo.log would only find out while setting up, or never.

    :raises ConfigError: naming the first option that cannot be used.
    """
    _check_level_pairs(conf.default_log_levels)
    _check_facility(conf.syslog_log_facility)
    if conf.publish_errors:
        raise ConfigError(None, 'publish_errors', 'not supported: the '
                          'daemon has no messaging transport to publish to')
    if conf.log_config_append:
        # Then oslo.log ignores every other logging option.
        _check_log_config(conf.log_config_append)
        return
    if conf.use_journal and oslo_handlers.journal is None:
        raise ConfigError(None, 'use_journal', 'needs the systemd Python '
                          'bindings (Debian: python3-systemd; pip: '
                          'systemd-python)')
    _check_log_dir(conf.log_dir)
    path = log_file_path(conf)
    if path is None:
        return
    option = 'log_file' if conf.log_file else 'log_dir'
    if not os.path.isabs(path):
        raise ConfigError(None, 'log_file', 'must be an absolute path unless '
                          'log_dir is set (got %s)' % path)
    if os.path.isdir(path):
        raise ConfigError(None, option, '%s is a directory' % path)
    try:
        # Opened (and created) as the handler will open it, so that a
        # wrong directory or permission is said here and not as a
        # traceback from the logging module.
        with open(path, 'a'):
            pass
    except OSError as exc:
        raise ConfigError(None, option, 'cannot write %s: %s'
                          % (path, exc.strerror or exc)) from None


def _check_level_pairs(pairs):
    for pair in pairs:
        name, sep, level = pair.partition('=')
        # oslo.log hands the level to the logging module as written.
        if not (name and sep and (level in LEVEL_NAMES or level.isdigit())):
            raise ConfigError(None, 'default_log_levels',
                              "expected logger=LEVEL pairs (got '%s')" % pair)


def _check_facility(name):
    bare = name.upper()
    if bare.startswith('LOG_'):
        bare = bare[4:]
    if bare not in SYSLOG_FACILITIES or not hasattr(syslog, 'LOG_' + bare):
        raise ConfigError(None, 'syslog_log_facility',
                          "not a syslog facility such as LOG_USER or "
                          "LOG_LOCAL0 (got '%s')" % name)


def _check_log_dir(path):
    if not path:
        return
    if not os.path.isabs(path):
        raise ConfigError(None, 'log_dir', 'must be an absolute path (got %s)'
                          % path)
    if not os.path.isdir(path):
        raise ConfigError(None, 'log_dir', '%s is not a directory' % path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(None, 'log_dir', '%s is not writable' % path)


def _check_log_config(path):
    try:
        with open(path, encoding='utf-8') as stream:
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_file(stream)
    except OSError as exc:
        raise ConfigError(None, 'log_config_append', 'cannot read %s: %s'
                          % (path, exc.strerror or exc)) from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(None, 'log_config_append', '%s is not a logging '
                          'configuration file (%s)'
                          % (path, type(exc).__name__)) from None
    missing = [s for s in ('loggers', 'handlers', 'formatters')
               if not parser.has_section(s)]
    if missing:
        raise ConfigError(None, 'log_config_append', '%s is not a logging '
                          'configuration file (no [%s] section)'
                          % (path, missing[0]))


def setup(conf, version='unknown'):
    """Log as the configuration says. Call once the configuration is
    valid and before eventlet monkey-patches anything.

    :raises ConfigError: a logging option that turned out unusable.
    """
    if conf.log_dir and not conf.log_file:
        conf.set_override('log_file', DEFAULT_LOG_FILE_NAME)
    try:
        # fix_eventlet=False: oslo.log would swap the logging module's
        # locks for pipe-based ones meant for native threads that log.
        # The daemon's native threads never log, and this runs before
        # eventlet patches anything anyway.
        oslo_log.setup(conf, PRODUCT, version, fix_eventlet=False)
    except oslo_log.LogConfigError as exc:
        raise ConfigError(None, 'log_config_append', str(exc)) from None
    except OSError as exc:
        raise ConfigError(None, 'log_file' if conf.log_file else 'log_dir',
                          'cannot write %s: %s' % (
                              log_file_path(conf),
                              exc.strerror or exc)) from None
    if not (log_file_path(conf) or conf.use_stderr or conf.use_journal
            or conf.log_config_append):
        _stdout_to_stderr()
    apply_levels(conf)


def _stdout_to_stderr():
    """oslo.log logs to standard output when given no destination; the
    daemon has always logged to standard error then, like most daemons,
    which keeps standard output free and the two apart."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and \
                getattr(handler, 'stream', None) is sys.stdout:
            handler.setStream(sys.stderr)


# A record with a traceback keeps its lines, this many characters in all.
MAX_RECORD_WITH_TRACEBACK = 8 * masking.MAX_LINE


class MaskingFormatter(logging.Formatter):
    """Makes whatever another formatter made fit for the log: masked,
    escaped and bounded.

    Log messages carry outside text as their arguments (a receiver's
    answer, a domain's name or metadata, a library's error): each argument
    is masked, shows control characters as escapes (``\\n``, ``\\x1b``) and
    is cut to ``masking.MAX_PIECE`` characters with a marker saying how
    much was cut. The line made of them is masked again (oslo.log appends
    the text of the exception being handled to every WARNING and ERROR
    logged inside an ``except`` block), escaped, and cut to
    ``masking.MAX_LINE`` characters; a record with a traceback keeps its
    line breaks, each line so bounded. A JSON line (``use_json``) is only
    masked: JSON escapes control characters itself, and a cut would leave
    it unreadable.
    """

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self._json = isinstance(inner, oslo_formatters.JSONFormatter)

    def format(self, record):
        try:
            text = self.inner.format(_shown_record(record))
        except (TypeError, ValueError):
            # A format the shown arguments do not fit (%x of a string,
            # say): as it was, then bounded as a line.
            text = self.inner.format(record)
        text = masking.scrub(masking.mask(text), masking.known_secrets())
        if self._json:
            return text
        if not (record.exc_info or record.exc_text or record.stack_info):
            return masking.shorten(masking.escape(text), masking.MAX_LINE)
        lines = masking.escape(text, keep_newlines=True).split('\n')
        return masking.shorten(
            '\n'.join(masking.shorten(line, masking.MAX_LINE)
                      for line in lines),
            MAX_RECORD_WITH_TRACEBACK)


class _Shown(str):
    """An argument of a log message as it may be shown; a string, so that
    every formatter (JSON too) takes it as one."""

    def __repr__(self):
        return masking.outside(repr(self.original))


def _shown(value):
    # Numbers keep their type for %d and %.1f; nothing outside hides in one.
    if value is None or isinstance(value, numbers.Number):
        return value
    shown = _Shown(masking.outside(value))
    shown.original = value
    return shown


def _shown_record(record):
    """A copy of ``record`` whose arguments are shown bounded; the record
    itself goes on unchanged to the other handlers."""
    shown = logging.makeLogRecord(record.__dict__)
    args = record.args
    if isinstance(args, collections.abc.Mapping):
        shown.args = {key: _shown(value) for key, value in args.items()}
    elif isinstance(args, tuple) and args:
        shown.args = tuple(_shown(value) for value in args)
    elif isinstance(record.msg, str):
        shown.msg = masking.outside(record.msg, masking.MAX_LINE)
    return shown


def _mask_handlers():
    for handler in _handlers():
        formatter = handler.formatter
        if not isinstance(formatter, MaskingFormatter):
            handler.setFormatter(MaskingFormatter(
                formatter or logging.Formatter()))


def apply_levels(conf):
    """The library levels for the current ``debug`` (oslo.log sets
    default_log_levels once and only the root level on reload), and
    masking for handlers a reloaded logging configuration made."""
    _mask_handlers()
    if conf.log_config_append:
        return
    debug_opens = conf.debug and list(conf.default_log_levels) == list(
        DEFAULT_LOG_LEVELS)
    for pair in conf.default_log_levels:
        name, _sep, level = pair.partition('=')
        if debug_opens and _opened_by_debug(name):
            logging.getLogger(name).setLevel(logging.DEBUG)
        else:
            logging.getLogger(name).setLevel(
                int(level) if level.isdigit() else level)


def _opened_by_debug(name):
    return any(name == prefix or name.startswith(prefix + '.')
               for prefix in DEBUG_OPENS)


def level_name():
    """The root logger's level, as operators write it."""
    return logging.getLevelName(logging.getLogger().level)


def _handlers():
    seen = []
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if handler not in seen:
                seen.append(handler)
    return seen


def _file_handlers():
    return [handler for handler in _handlers()
            if isinstance(handler, logging.FileHandler)]


def reopen_files():
    """Reopen every log file (after logrotate moved it away); return the
    paths reopened. A file that cannot be opened keeps the old stream
    and is logged."""
    reopened = []
    for handler in _file_handlers():
        path = handler.baseFilename
        # 'w' would truncate the file on every reload.
        mode = 'a' if handler.mode.startswith('w') else handler.mode
        try:
            stream = open(path, mode, encoding=handler.encoding,
                          errors=getattr(handler, 'errors', None))
        except OSError as exc:
            LOG.error('Cannot reopen the log file %s: %s; still writing to '
                      'the file opened before', path, exc.strerror or exc)
            continue
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            # It knows which file it has open; let it switch itself.
            stream.close()
            handler.reopenIfNeeded()
        else:
            old = handler.setStream(stream)
            if old is not None:
                old.close()
        reopened.append(path)
    return reopened
