"""Loading and validating the configuration.

oslo.config checks an option's value only when it is read, so a bad value
would surface as a traceback at the first use, maybe minutes after start.
:func:`load` reads every option once and runs the cross checks that types
cannot express, and turns every problem into one :class:`ConfigError` that
names the option.
"""

import argparse
import contextlib
import glob
import io
import logging
import math
import os
import re
import socket
import ssl
import sys
import urllib.parse

from oslo_config import cfg
from oslo_config import types

from monitor import masking
from monitor.errors import ConfigError  # noqa: F401 (raised here)

PROJECT = 'guest-health-monitor'
PROG = 'guest-health-monitor'

OPTS = [
    cfg.StrOpt(
        'host',
        default=socket.gethostname(),
        sample_default='<hostname>',
        help="""
Name of this compute host as the HA engine knows it. It is sent in every
notification and must match the host name registered in the engine's
failover segment (for Nova hosts, the nova-compute service's host name).

Possible values:

* A host name. Default: this machine's host name.
"""),
    cfg.StrOpt(
        'state_path',
        default='/var/lib/guest-health-monitor',
        help="""
Directory for the daemon's persistent state. It is created if missing (mode
0700) and must be writable. Only one daemon may use it at a time: it holds
an exclusive lock on guest-health-monitor.lock in it, which names its PID.

Possible values:

* An absolute directory path. Default /var/lib/guest-health-monitor.

Related options:

* [cache] backend, [cache] backend_argument: the sqlite store
  (guest_health_monitor.sqlite) defaults to <state_path>/domains.sqlite.
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS)


def list_opts():
    return [('DEFAULT', OPTS)]


def build_conf():
    """A fresh ConfigOpts with every option of the daemon registered."""
    # Imported here: monitor.conf.opts imports the modules that own options,
    # which may import this one.
    from monitor.conf import opts

    conf = cfg.ConfigOpts()
    opts.register_all(conf)
    return conf


def _version():
    import pbr.version

    return pbr.version.VersionInfo(PROJECT).version_string()


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
    _check_config_files(argv, default_config_files)
    conf = build_conf()
    try:
        _parse(conf, argv, default_config_files)
    except cfg.RequiredOptError as exc:
        raise ConfigError(exc.group.name if exc.group else None,
                          exc.opt_name, 'required option is not set')
    except cfg.ConfigFileParseError as exc:
        # oslo.config's text quotes the line, which may hold a password.
        raise ConfigError(None, None, _parse_error_text(
            argv, default_config_files) or 'cannot parse %s' % exc.config_file)
    except cfg.Error as exc:
        raise ConfigError(None, None, str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        # _check_config_files saw the files just before; they changed.
        raise ConfigError(None, None,
                          'cannot read the configuration: %s' % exc)
    validate(conf)
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
            conf(args=argv, project=PROJECT, prog=PROG, version=_version(),
                 default_config_files=default_config_files,
                 validate_default_values=True)
    except SystemExit as exc:
        match = _CLI_VALUE_ERROR.match(stderr.getvalue().strip())
        if exc.code == 1 and match:
            name = match['name'].replace('-', '_')
            value = 'a secret value' if _is_secret(None, name) else \
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


def _config_file_arguments(argv, default_config_files):
    """The config files and directories the command line names, else the
    default files, as oslo.config will read them."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument('--config-file', action='append', default=[])
    parser.add_argument('--config-dir', action='append', default=[])
    try:
        known, _rest = parser.parse_known_args(argv)
    except SystemExit:
        # A malformed command line; oslo.config says what is wrong.
        return [], []
    files = known.config_file
    if not files and not known.config_dir:
        if default_config_files is None:
            files = cfg.find_config_files(project=PROJECT, prog=PROG)
        else:
            files = list(default_config_files)
    return files, known.config_dir


def _file_problem(path):
    """Why ``path`` cannot be read as a config file, or None."""
    if os.path.isdir(path):
        return 'is a directory'
    try:
        with open(path, 'rb') as stream:
            stream.read().decode('utf-8')
    except FileNotFoundError:
        # oslo.config reports missing files itself.
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    except UnicodeDecodeError as exc:
        return 'not UTF-8 text (byte %d)' % exc.start
    return None


def _parse_error_text(argv, default_config_files):
    """Where and why a config file cannot be parsed, without its line."""
    files, dirs = _config_file_arguments(argv, default_config_files)
    for directory in dirs:
        files = files + sorted(glob.glob(os.path.join(directory, '*.conf')))
    for path in files:
        try:
            cfg.ConfigParser(path, {}).parse()
        except cfg.ParseError as exc:
            return 'configuration file %s, line %d: %s' % (
                path, exc.lineno, exc.msg)
        except (OSError, UnicodeDecodeError):
            continue
    return None


def _check_config_files(argv, default_config_files):
    files, dirs = _config_file_arguments(argv, default_config_files)
    for directory in dirs:
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ConfigError(None, None, 'configuration directory %s is '
                              'not a directory' % directory)
        files = files + sorted(glob.glob(os.path.join(directory, '*.conf')))
    for path in files:
        problem = _file_problem(path)
        if problem:
            raise ConfigError(None, None, 'configuration file %s: %s'
                              % (path, problem))


def validate(conf):
    """Read every registered option and run the cross checks.

    Loads the authentication plugin, registering its options on ``conf``.

    :raises ConfigError: on the first problem found.
    """
    specs = _option_specs()
    for group, name in _registered_options(conf):
        try:
            value = _value(conf, group, name)
        except cfg.Error as exc:
            raise ConfigError(group, name, _value_error_text(
                conf, group, name, exc, specs.get((group, name))))
        spec = specs.get((group, name))
        if spec is not None:
            _check_value(group, name, spec, value)
    checks = [_check_host, _check_state_path, _check_log_file,
              _check_libvirt_uri, _check_cache, _check_notifier_driver,
              _check_webhook_cafile]
    if _uses_masakari(conf):
        # Without the engine its endpoint, Keystone and TLS settings are
        # unused: a host without Masakari must not need them.
        checks += [_check_notifier_endpoint, _check_notifier_auth,
                   _check_notifier_tls]
    checks.append(_check_agent_channel_path_regex)
    for check in checks:
        check(conf)


# Bounds of numeric options this project does not define (keystoneauth's
# session options), checked like the min/max of its own.
FOREIGN_BOUNDS = {
    ('notifier', 'timeout'): (0.1, 600.0),
    # oslo.log's: a rotation needs an interval, a file count and a size.
    (None, 'log_rotate_interval'): (1, 2 ** 31 - 1),
    (None, 'max_logfile_count'): (1, 10000),
    (None, 'max_logfile_size_mb'): (1, 1024 * 1024),
    (None, 'rate_limit_interval'): (0, 2 ** 31 - 1),
    (None, 'rate_limit_burst'): (0, 2 ** 31 - 1),
}

# Options with a default for which empty is a value of its own: no suffix
# on debug lines; rate limiting for every level.
EMPTY_ALLOWED = frozenset({
    (None, 'logging_debug_format_suffix'),
    (None, 'rate_limit_except_level'),
})


def _option_specs():
    """{(group or None, dest): Opt} for every option the daemon lists."""
    from monitor.conf import opts

    specs = {}
    for group, group_opts in opts.all_opts():
        name = getattr(group, 'name', group)
        for opt in group_opts:
            specs[(None if name == 'DEFAULT' else name, opt.dest)] = opt
    return specs


def _check_value(group, name, opt, value):
    """What oslo.config types let through: nan, inf, empty values."""
    if (group, name) in EMPTY_ALLOWED:
        return
    # An empty list where the default lists something: what
    # default_log_levels = (nothing) gives.
    if value is None or value == '' or value == [''] or (
            value == [] and opt.default):
        # Options without a default are optional: empty means unset. Every
        # other option has a value the daemon relies on.
        if opt.default is not None:
            raise ConfigError(group, name, 'must not be empty')
        return
    if isinstance(opt.type, types.Float) and not math.isfinite(value):
        # nan passes every min/max comparison; 'interval = nan' would make
        # the scheduler spin.
        raise ConfigError(group, name, 'must be a finite number (got %s)'
                          % ('a secret value' if opt.secret else value))
    bounds = FOREIGN_BOUNDS.get((group, name))
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(group, name, 'must be from %s to %s (got %s)'
                          % (bounds[0], bounds[1], value))


def log_effective_settings(conf, logger):
    """Log every option at INFO.

    Options marked secret are masked by oslo.config; the password of any
    URL among the values (endpoint, connection_uri, auth_url) is masked
    here.
    """
    conf.log_opt_values(_MaskingLogger(logger), logging.INFO)


class _MaskingLogger:
    """The little of a logger that ``log_opt_values`` uses, masking URL
    credentials in each line."""

    def __init__(self, logger):
        self._logger = logger

    def log(self, level, msg, *args):
        if args:
            msg = msg % args
        self._logger.log(level, '%s', masking.mask(msg))


def unknown_options(conf):
    """[(section, option or None)] in the config files that the daemon does
    not know: an option misspelt in a known section, or a section no option
    group has (option None). Call after :func:`validate`, which registers
    the authentication plugin's options."""
    known_names = _known_names(conf)
    unknown = []
    for section, values in _file_sections(conf).items():
        if section != 'DEFAULT' and section not in known_names:
            unknown.append((section, None))
            continue
        known = known_names[section]
        for key in values:
            if key.replace('-', '_') not in known:
                unknown.append((section, key))
    return unknown


def warn_unknown_options(conf, logger):
    """One WARNING line per option or section :func:`unknown_options`
    finds."""
    for section, option in unknown_options(conf):
        if option is None:
            logger.warning('[%s] is not a known section; ignored', section)
        else:
            logger.warning('[%s] %s is not a known option; ignored',
                           section, option)


def _known_names(conf):
    """{section: names an option may be written as}, DEFAULT included."""
    known = {'DEFAULT': set()}
    groups = []
    for key in conf:
        if isinstance(_safe_value(conf, None, key), cfg.ConfigOpts.GroupAttr):
            groups.append(key)
        else:
            known['DEFAULT'].add(key)
    for group in groups:
        known[group] = set(conf[group])
    from monitor.conf import opts

    for group, group_opts in opts.all_opts():
        names = known.setdefault(getattr(group, 'name', group), set())
        for opt in group_opts:
            names.add(opt.dest)
            for old in opt.deprecated_opts:
                if old.group in (None, getattr(group, 'name', group)) and (
                        old.name):
                    names.add(old.name.replace('-', '_'))
    return known


def _safe_value(conf, group, name):
    try:
        return _value(conf, group, name)
    except cfg.Error:
        return None


def _registered_options(conf):
    """(group, name) of every registered option; group None for DEFAULT."""
    groups = []
    for key in conf:
        try:
            value = conf[key]
        except cfg.Error:
            # An option whose value is bad; validate() reports it.
            yield None, key
            continue
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            groups.append(key)
        else:
            yield None, key
    for group in groups:
        for name in conf[group]:
            yield group, name


def _value(conf, group, name):
    if group is None:
        return conf[name]
    return conf[group][name]


def _value_error_text(conf, group, name, exc, opt=None):
    if _is_secret(group, name):
        # oslo.config's text quotes the value.
        return 'not a valid value (the value is secret and not shown)'
    if opt is not None and isinstance(opt.type, types.URI):
        text = 'not a URL (%s)' % ', '.join(opt.type.schemes or ['any'])
    else:
        text = str(exc)
        # oslo.config: 'Value for option X from <where> is not valid: <why>'
        marker = ' is not valid: '
        if marker in text:
            text = text.split(marker, 1)[1]
        text = text.rstrip('.')
        if len(text) > 1 and text[0].isupper() and text[1].islower():
            text = text[0].lower() + text[1:]
    raw = _raw_value(conf, group, name)
    if raw is not None:
        text += ' (got %s)' % raw
    return text


def _is_secret(group, name):
    from monitor.conf import opts

    for opt_group, group_opts in opts.all_opts():
        group_name = getattr(opt_group, 'name', opt_group)
        if group_name == (group or 'DEFAULT'):
            for opt in group_opts:
                if opt.dest == name:
                    return opt.secret
    # Registered at run time (authentication plugins): assume the worst.
    return True


def _config_files(conf):
    files = list(conf.config_file or [])
    dirs = [conf.config_dir] if conf.config_dir else list(
        conf.default_config_dirs or [])
    for directory in dirs:
        files.extend(sorted(glob.glob(os.path.join(directory, '*.conf'))))
    return files


def _file_sections(conf):
    """{section: {option: [values]}} merged over the config files."""
    merged = {}
    for path in _config_files(conf):
        sections = {}
        try:
            cfg.ConfigParser(path, sections).parse()
        except (OSError, UnicodeDecodeError, cfg.ParseError):
            continue
        for section, values in sections.items():
            merged.setdefault(section, {}).update(values)
    return merged


def _raw_value(conf, group, name):
    """The option's text as last written in the config files, if found.

    Only used to show the operator what was wrong; oslo.config does not
    keep the raw text of a value it cannot convert.
    """
    values = _file_sections(conf).get(group or 'DEFAULT', {}).get(name)
    return values[-1] if values else None


def _check_host(conf):
    if not conf.host or not conf.host.strip():
        raise ConfigError(None, 'host', 'must not be empty')


def _check_state_path(conf):
    path = conf.state_path
    if not path:
        raise ConfigError(None, 'state_path', 'must not be empty')
    if not os.path.isabs(path):
        raise ConfigError(None, 'state_path',
                          'must be an absolute path (got %s)' % path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(None, 'state_path',
                          '%s exists and is not a directory' % path)
    try:
        # What the daemon keeps says which guests failed and when.
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(None, 'state_path', 'cannot create %s: %s'
                          % (path, exc.strerror or exc))
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(None, 'state_path', '%s is not writable' % path)


def _check_log_file(conf):
    # Imported here like in build_conf(): logs owns the logging options
    # and knows how oslo.log uses them (log_dir, log_config_append, ...).
    from monitor.conf import log_setup as logs

    try:
        logs.check_options(conf)
    except logs.OptionError as exc:
        raise ConfigError(None, exc.option, exc.reason) from None


# scheme://rest, where the scheme may carry a transport: qemu+ssh://...
_LIBVIRT_URI = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def _check_libvirt_uri(conf):
    uri = conf.libvirt.connection_uri
    if not uri or not _LIBVIRT_URI.match(uri):
        raise ConfigError(
            'libvirt', 'connection_uri',
            "not a libvirt URI like qemu:///system (got '%s')" % uri)


# Backends that keep nothing: with them no domain could ever count its
# missed pings, so no failure would ever be reported.
STATELESS_BACKENDS = frozenset({'dogpile.cache.null'})

# Backends whose construction only imports their client library and opens
# no connection (clients connect on first use): building a throwaway region
# at start is safe and finds a missing library or a bad argument.
_LAZY_BACKENDS = frozenset({
    'dogpile.cache.memory', 'dogpile.cache.memory_pickle',
    'dogpile.cache.memcached', 'dogpile.cache.pylibmc',
    'dogpile.cache.bmemcached', 'dogpile.cache.pymemcache',
    'dogpile.cache.redis', 'dogpile.cache.redis_sentinel',
})


def _check_cache(conf):
    # Imported here like in build_conf(): domain_store owns these options.
    from dogpile.cache import region as dogpile_region

    from monitor.store import domain_store

    backend = conf.cache.backend
    if backend in STATELESS_BACKENDS:
        raise ConfigError('cache', 'backend',
                          '%s keeps nothing: no missed ping could ever be '
                          'counted and no failure reported' % backend)
    if not domain_store.known_backend(backend):
        raise ConfigError('cache', 'backend',
                          "unknown dogpile.cache backend '%s'" % backend)
    try:
        domain_store.parse_backend_arguments(conf.cache.backend_argument)
    except ValueError:
        # The message would quote the value, which may hold a password.
        raise ConfigError('cache', 'backend_argument',
                          'expected key:value') from None
    try:
        # dbm where Python would fall back to dbm.dumb, a sqlite file that
        # cannot be opened. Opening the sqlite file before the state lock
        # is held is harmless: sqlite serializes writers on its own.
        domain_store.check_backend(conf)
    except ValueError as exc:
        raise ConfigError('cache', 'backend', str(exc)) from None
    if backend not in _LAZY_BACKENDS:
        return
    try:
        dogpile_region.make_region().configure(
            backend, arguments=domain_store.region_arguments(conf))
    except ImportError as exc:
        raise ConfigError('cache', 'backend',
                          '%s cannot be used: its Python library is not '
                          'installed (%s)' % (backend, exc)) from None
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError('cache', 'backend_argument',
                          'not accepted by %s (%s: %s)'
                          % (backend, type(exc).__name__, exc)) from None


def _uses_masakari(conf):
    from monitor.notify import drivers as notifier_driver

    return conf[notifier_driver.GROUP].driver == notifier_driver.MASAKARI


def _check_notifier_driver(conf):
    # The driver owns the checks that tie it to the webhook and recovery
    # options (a recovery action with the engine, a webhook without url).
    from monitor.notify import drivers as notifier_driver

    try:
        notifier_driver.check_conf(conf)
    except notifier_driver.ConfCheckError as exc:
        raise ConfigError(exc.group, exc.option, exc.message) from None


def _check_webhook_cafile(conf):
    # Checked whatever the driver: a CA file named but missing is a
    # mistake to hear about now, not when the driver is switched.
    path = conf.webhook.cafile
    if not path:
        return
    problem = _readable_file_problem(path)
    if problem:
        raise ConfigError('webhook', 'cafile', '%s %s' % (path, problem))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError('webhook', 'cafile', '%s holds no usable CA '
                          'certificate (%s)' % (path, exc.reason or exc)) \
            from None


def _check_notifier_auth(conf):
    from keystoneauth1 import exceptions as ks_exc
    from keystoneauth1 import loading as ks_loading

    from monitor.notify import masakari as notifier

    section = conf.notifier.auth_section
    if section:
        if section not in _file_sections(conf):
            raise ConfigError('notifier', 'auth_section',
                              'no [%s] section in the configuration files'
                              % section)
        if section not in conf:
            ks_loading.register_auth_conf_options(conf, section)
    group = section or notifier.GROUP
    try:
        name = conf[group].auth_type
    except cfg.Error as exc:
        raise ConfigError(group, 'auth_type', str(exc)) from None
    if not name:
        _require_endpoint(conf, None, name)
        return
    # The names of the installed plugins: loading an unknown one would log
    # a warning with a traceback before we can say what is wrong.
    known = ks_loading.get_available_plugin_names()
    if name not in known:
        raise ConfigError(group, 'auth_type',
                          "unknown authentication plugin '%s' (known: %s)"
                          % (name, ', '.join(sorted(known))))
    try:
        auth = notifier.load_auth(conf)
    except ks_exc.MissingRequiredOptions as exc:
        # Which options a plugin needs is only known once it is loaded.
        raise ConfigError(group, ', '.join(opt.dest for opt in exc.options),
                          "required by auth_type '%s'" % name) from None
    except cfg.Error as exc:
        option = getattr(exc, 'opt_name', None) or 'auth_type'
        raise ConfigError(group, option, "not valid for auth_type '%s'"
                          % name) from None
    except (ks_exc.ClientException, ValueError, TypeError) as exc:
        # e.g. v3applicationcredential without an id or a name and user.
        raise ConfigError(group, 'auth_type', '%s: %s' % (name, exc)) \
            from None
    auth_url = _safe_value(conf, group, 'auth_url')
    if auth_url is not None and not _is_http_url(auth_url):
        raise ConfigError(group, 'auth_url',
                          "not an http(s) URL (got '%s')" % auth_url)
    _require_endpoint(conf, auth, name)


def _require_endpoint(conf, auth, name):
    """Without a plugin that has a service catalog there is nowhere to
    find the HA engine but [notifier] endpoint_override (or its
    deprecated name endpoint)."""
    from keystoneauth1 import plugin as ks_plugin

    from monitor.notify import masakari as notifier

    if notifier.engine_url(conf):
        return
    if auth is None or name == 'none':
        raise ConfigError('notifier', 'endpoint_override',
                          "required when [notifier] auth_type is unset "
                          "or 'none'")
    if isinstance(auth, ks_plugin.FixedEndpointPlugin):
        raise ConfigError('notifier', 'endpoint_override',
                          "required with auth_type '%s', which has no "
                          "service catalog" % name)


def _is_http_url(text):
    url = urllib.parse.urlparse(text)
    return url.scheme in ('http', 'https') and bool(url.netloc)


def _check_notifier_endpoint(conf):
    # The notifier owns the cross checks of its options (URLs, the
    # interfaces, whether a URL is needed at all).
    from monitor.notify import masakari as notifier

    try:
        notifier.check_options(conf)
    except notifier.OptionError as exc:
        raise ConfigError(exc.group, exc.option, exc.reason) from None


# What keystoneauth accepts for tls_min_version.
TLS_VERSIONS = ('1.2', '1.3')


def _check_notifier_tls(conf):
    """The TLS files exist, are readable and hold what they should: else
    every notification would fail at send time, long after start."""
    group = conf.notifier
    for option in ('cafile', 'certfile', 'keyfile'):
        path = group[option]
        if not path:
            continue
        problem = _readable_file_problem(path)
        if problem:
            raise ConfigError('notifier', option, '%s %s' % (path, problem))
    if group.keyfile and not group.certfile:
        raise ConfigError('notifier', 'keyfile',
                          'set without [notifier] certfile')
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if group.cafile:
        try:
            context.load_verify_locations(cafile=group.cafile)
        except ssl.SSLError as exc:
            raise ConfigError('notifier', 'cafile', '%s holds no usable '
                              'CA certificate (%s)'
                              % (group.cafile, exc.reason or exc)) from None
    if group.certfile:
        try:
            # A key that needs a pass phrase cannot be used by a daemon;
            # the callback keeps OpenSSL from asking on the terminal.
            context.load_cert_chain(group.certfile, group.keyfile,
                                    password=lambda: b'')
        except ssl.SSLError as exc:
            option = 'keyfile' if group.keyfile else 'certfile'
            raise ConfigError('notifier', option, 'no usable certificate '
                              'and private key (%s)'
                              % (exc.reason or exc)) from None
    if group.tls_ciphers:
        try:
            context.set_ciphers(group.tls_ciphers)
        except ssl.SSLError:
            raise ConfigError('notifier', 'tls_ciphers',
                              "OpenSSL knows no cipher in '%s'"
                              % group.tls_ciphers) from None
    if group.tls_min_version and group.tls_min_version not in TLS_VERSIONS:
        raise ConfigError('notifier', 'tls_min_version',
                          "must be one of %s (got '%s')"
                          % (', '.join(TLS_VERSIONS), group.tls_min_version))


def _readable_file_problem(path):
    if not os.path.exists(path):
        return 'does not exist'
    if not os.path.isfile(path):
        return 'is not a regular file'
    try:
        with open(path, 'rb'):
            pass
    except OSError as exc:
        return 'cannot be read: %s' % (exc.strerror or exc)
    return None


def _check_agent_channel_path_regex(conf):
    pattern = conf.monitor.agent_channel_path_regex
    if pattern is None:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError('monitor', 'agent_channel_path_regex',
                          'not a valid regular expression: %s' % exc)


def state_files(conf):
    """Paths outside state_path where the daemon keeps state: a dbm or
    sqlite file given by [cache] backend_argument filename, with its
    companion files (dbm's .dat/.dir, sqlite's -wal/-shm)."""
    from monitor.store import domain_store

    if conf.cache.backend not in (domain_store.DBM_BACKEND,
                                  domain_store.SQLITE_BACKEND):
        return []
    filename = domain_store.region_arguments(conf).get('filename')
    if not filename:
        return []
    directory = os.path.dirname(os.path.abspath(filename))
    if os.path.realpath(directory) == os.path.realpath(conf.state_path):
        return []
    return sorted(glob.glob(glob.escape(filename) + '*'))
