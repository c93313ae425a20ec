"""Loading the configuration: the options registered, the command line
and config files parsed, every option validated.

Every problem, whether oslo.config finds it while parsing or validation
does afterwards, ends as one :class:`ConfigError` that names the option
(and never quotes a secret value or a config file's line).
"""

import contextlib
import io
import re
import sys

from oslo_config import cfg

from monitor import version as build_version
from monitor.conf import checks
from monitor.conf import files
from monitor.conf import general
from monitor.conf import opts
from monitor.conf import values
from monitor.errors import ConfigError


def build_conf():
    """A fresh ConfigOpts with every option of the daemon registered."""
    conf = cfg.ConfigOpts()
    opts.register_all(conf)
    return conf


def _version():
    return build_version.version_string()


def load(argv=None, default_config_files=None):
    """Parse the command line and config files; validate every option.

    Without --config-file the usual places are searched, among them
    /etc/guest-health-monitor/guest-health-monitor.conf.

    :param argv: command line arguments, without the program name
        (default sys.argv[1:]).
    :param default_config_files: files to read when no --config-file is
        given (default: oslo.config's search for the project).
    :raises ConfigError: any problem, naming the option where there is one.
    """
    files.check_config_files(argv, default_config_files)
    conf = build_conf()
    try:
        _parse(conf, argv, default_config_files)
    except cfg.RequiredOptError as exc:
        raise ConfigError(exc.group.name if exc.group else None,
                          exc.opt_name, 'required option is not set')
    except cfg.ConfigFileParseError as exc:
        # oslo.config's text quotes the line, which may hold a password.
        raise ConfigError(None, None, files.parse_error_text(
            argv, default_config_files) or 'cannot parse %s' % exc.config_file)
    except cfg.Error as exc:
        raise ConfigError(None, None, str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        # check_config_files saw the files just before; they changed.
        raise ConfigError(None, None,
                          'cannot read the configuration: %s' % exc)
    checks.validate(conf)
    return conf


# What oslo.config writes before exiting when a config file gives a
# command-line option (debug, use_journal, ...) a value of the wrong type.
_CLI_VALUE_ERROR = re.compile(
    r'^argument --(?P<name>[\w-]+): Invalid (?P<type>\w+) value:'
    r' ?(?P<value>.*)$')


def _parse(conf, argv, default_config_files):
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            conf(args=argv, project=general.PROJECT, prog=general.PROG,
                 version=_version(),
                 default_config_files=default_config_files,
                 validate_default_values=True)
    except SystemExit as exc:
        match = _CLI_VALUE_ERROR.match(stderr.getvalue().strip())
        if exc.code == 1 and match:
            name = match['name'].replace('-', '_')
            value = 'a secret value' if values.is_secret(None, name) else \
                match['value']
            if not value:
                raise ConfigError(None, name, 'must not be empty') from None
            raise ConfigError(None, name, 'not a valid %s value (got %s)'
                              % (match['type'].lower(), value)) from None
        raise
    finally:
        # Usage errors, --help's neighbours and warnings logged while
        # parsing go where they were going.
        if not _CLI_VALUE_ERROR.match(stderr.getvalue().strip()):
            sys.stderr.write(stderr.getvalue())
