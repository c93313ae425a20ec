"""Validating a loaded configuration.

oslo.config checks an option's value only when it is read, so a bad value
would surface as a traceback at the first use, maybe minutes after start.
:func:`validate` reads every option once, checks what oslo.config types
let through (nan, empty values, bounds of other projects' options), and
runs the cross checks that types cannot express, each owned by the module
whose options it checks. Every problem is one :class:`ConfigError` that
names the option.
"""

import math
import os
import re

from dogpile.cache import region as dogpile_region
from oslo_config import cfg
from oslo_config import types

from monitor.conf import log_setup
from monitor.conf import values
from monitor.daemon import probe_runner
from monitor.errors import ConfigError
from monitor.health import recovery_policy
from monitor.notify import alertmanager
from monitor.notify import drivers
from monitor.notify import masakari
from monitor.notify import masakari_conf
from monitor.notify import webhook
from monitor.store import domain_store


def validate(conf):
    """Read every registered option and run the cross checks.

    Loads the authentication plugin, registering its options on ``conf``.

    :raises ConfigError: on the first problem found.
    """
    specs = values.option_specs()
    for group, name in values.registered_options(conf):
        try:
            value = values.value(conf, group, name)
        except cfg.Error as exc:
            raise ConfigError(group, name, values.value_error_text(
                conf, group, name, exc, specs.get((group, name))))
        spec = specs.get((group, name))
        if spec is not None:
            _check_value(group, name, spec, value)
    # The driver's check ties it to the webhook and recovery options (a
    # recovery action with the engine, a webhook without url). The
    # webhook's CA file is checked whatever the driver: one named but
    # missing is a mistake to hear about now, not when the driver is
    # switched.
    checks = [_check_host, _check_state_path, log_setup.check_options,
              _check_libvirt_uri, _check_cache, drivers.check_conf,
              webhook.check_conf, alertmanager.check_conf]
    if drivers.uses_masakari(conf):
        # Without the engine its endpoint, Keystone and TLS settings are
        # unused: a host without Masakari must not need them.
        checks.extend((masakari_conf.check_conf, masakari.check_conf))
    checks.append(_check_agent_channel_path_regex)
    checks.append(probe_runner.check_conf)
    checks.append(recovery_policy.check_conf)
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


def _check_agent_channel_path_regex(conf):
    pattern = conf.monitor.agent_channel_path_regex
    if pattern is None:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError('monitor', 'agent_channel_path_regex',
                          'not a valid regular expression: %s' % exc)

