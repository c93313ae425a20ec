"""Loading and validating the configuration.

oslo.config checks an option's value only when it is read, so a bad value
would surface as a traceback at the first use, maybe minutes after start.
:func:`load` reads every option once and runs the cross checks that types
cannot express, and turns every problem into one :class:`ConfigError` that
names the option.
"""

import glob
import logging
import os
import re
import socket
import urllib.parse

from oslo_config import cfg

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
Directory for the daemon's persistent state. It is created if missing and
must be writable.

Possible values:

* An absolute directory path. Default /var/lib/guest-health-monitor.

Related options:

* [cache] backend, [cache] backend_argument: the dbm store defaults to
  <state_path>/domains.dbm.
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS)


def list_opts():
    return [('DEFAULT', OPTS)]


class ConfigError(Exception):
    """A configuration problem, naming the option when there is one."""

    def __init__(self, group, option, message):
        self.group = group
        self.option = option
        self.message = message
        super().__init__(group, option, message)

    def __str__(self):
        if self.option is None:
            return self.message
        return '[%s] %s: %s' % (self.group or 'DEFAULT', self.option,
                                self.message)


def build_conf():
    """A fresh ConfigOpts with every option of the daemon registered."""
    # Imported here: monitor.opts imports the modules that own options,
    # which may import this one.
    from monitor import opts

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
    conf = build_conf()
    try:
        conf(args=argv, project=PROJECT, prog=PROG, version=_version(),
             default_config_files=default_config_files,
             validate_default_values=True)
    except cfg.RequiredOptError as exc:
        raise ConfigError(exc.group.name if exc.group else None,
                          exc.opt_name, 'required option is not set')
    except cfg.Error as exc:
        raise ConfigError(None, None, str(exc))
    validate(conf)
    return conf


def validate(conf):
    """Read every registered option and run the cross checks.

    :raises ConfigError: on the first problem found.
    """
    for group, name in _registered_options(conf):
        try:
            _value(conf, group, name)
        except cfg.Error as exc:
            raise ConfigError(group, name, _value_error_text(conf, group,
                                                             name, exc))
    for check in (_check_host, _check_state_path, _check_libvirt_uri,
                  _check_cache, _check_notifier_auth_type,
                  _check_notifier_endpoint,
                  _check_agent_channel_path_regex):
        check(conf)


def log_effective_settings(conf, logger):
    """Log every option at INFO; options marked secret are masked."""
    conf.log_opt_values(logger, logging.INFO)


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


def _value_error_text(conf, group, name, exc):
    text = str(exc)
    # oslo.config: 'Value for option X from <where> is not valid: <why>'
    marker = ' is not valid: '
    if marker in text:
        text = text.split(marker, 1)[1]
    text = text.rstrip('.')
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    if not _is_secret(group, name):
        raw = _raw_value(conf, group, name)
        if raw is not None:
            text += ' (got %s)' % raw
    return text


def _is_secret(group, name):
    from monitor import opts

    for opt_group, group_opts in opts.list_opts():
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


def _raw_value(conf, group, name):
    """The option's text as last written in the config files, if found.

    Only used to show the operator what was wrong; oslo.config does not
    keep the raw text of a value it cannot convert.
    """
    section = group or 'DEFAULT'
    found = None
    for path in _config_files(conf):
        sections = {}
        try:
            cfg.ConfigParser(path, sections).parse()
        except (OSError, cfg.ParseError):
            continue
        values = sections.get(section, {}).get(name)
        if values:
            found = values[-1]
    return found


def _check_host(conf):
    if not conf.host or not conf.host.strip():
        raise ConfigError(None, 'host', 'must not be empty')


def _check_state_path(conf):
    path = conf.state_path
    if not path:
        raise ConfigError(None, 'state_path', 'must not be empty')
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(None, 'state_path',
                          '%s exists and is not a directory' % path)
    try:
        os.makedirs(path, mode=0o750, exist_ok=True)
    except OSError as exc:
        raise ConfigError(None, 'state_path', 'cannot create %s: %s'
                          % (path, exc.strerror or exc))
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(None, 'state_path', '%s is not writable' % path)


# scheme://rest, where the scheme may carry a transport: qemu+ssh://...
_LIBVIRT_URI = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def _check_libvirt_uri(conf):
    uri = conf.libvirt.connection_uri
    if not uri or not _LIBVIRT_URI.match(uri):
        raise ConfigError(
            'libvirt', 'connection_uri',
            "not a libvirt URI like qemu:///system (got '%s')" % uri)


def _check_cache(conf):
    # Imported here like in build_conf(): domain_store owns these options.
    from monitor import domain_store

    if not domain_store.known_backend(conf.cache.backend):
        raise ConfigError('cache', 'backend',
                          "unknown dogpile.cache backend '%s'"
                          % conf.cache.backend)
    try:
        domain_store.parse_backend_arguments(conf.cache.backend_argument)
    except ValueError as exc:
        raise ConfigError('cache', 'backend_argument', str(exc))


def _check_notifier_auth_type(conf):
    from keystoneauth1 import loading as ks_loading

    name = conf.notifier.auth_type
    if not name or conf.notifier.auth_section:
        return
    # The names of the installed plugins: loading an unknown one would log
    # a warning with a traceback before we can say what is wrong.
    known = ks_loading.get_available_plugin_names()
    if name not in known:
        raise ConfigError('notifier', 'auth_type',
                          "unknown authentication plugin '%s' (known: %s)"
                          % (name, ', '.join(sorted(known))))


def _check_notifier_endpoint(conf):
    endpoint = conf.notifier.endpoint
    if endpoint:
        url = urllib.parse.urlparse(endpoint)
        if url.scheme not in ('http', 'https') or not url.netloc:
            raise ConfigError('notifier', 'endpoint',
                              "not an http(s) URL (got '%s')" % endpoint)
    elif conf.notifier.auth_type in (None, 'none'):
        # Without Keystone there is no service catalog to find the HA
        # engine in.
        raise ConfigError('notifier', 'endpoint',
                          "required when [notifier] auth_type is unset "
                          "or 'none'")


def _check_agent_channel_path_regex(conf):
    pattern = conf.monitor.agent_channel_path_regex
    if pattern is None:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError('monitor', 'agent_channel_path_regex',
                          'not a valid regular expression: %s' % exc)
