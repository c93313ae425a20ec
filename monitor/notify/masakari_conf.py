"""The ``[notifier]`` options of the HA engine (Masakari) and their checks.

The options (keystoneauth's adapter, session and auth options, the
engine URL and the request deadline), where the engine's URL comes from,
loading the Keystone auth plugin, and ``check_conf``: every check of
these options that their types cannot express, run at start so that a
setting that cannot work is reported then, not retried for ever.
"""

from __future__ import annotations

import logging
import math
import ssl
import urllib.parse

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import plugin as ks_plugin
from oslo_config import cfg

from monitor import masking
from monitor.errors import ConfigError
from monitor.notify import tls_files

LOG = logging.getLogger(__name__)

GROUP = 'notifier'

DEFAULT_SERVICE_TYPE = 'instance-ha'
# As every OpenStack service looks up another one: compute hosts reach the
# control plane over the internal network; public where only that exists
# (Masakari's devstack plugin registers only a public endpoint).
DEFAULT_INTERFACES = ['internal', 'public']
INTERFACES = ('public', 'internal', 'admin')

# What keystoneauth accepts for tls_min_version.
TLS_VERSIONS = ('1.2', '1.3')

NOTIFIER_OPTS = [
    # Not marked deprecated_for_removal yet: oslo.config would warn on
    # stderr at every start of the installations, test set-ups and tools
    # that still write it.
    cfg.URIOpt('endpoint',
               schemes=['http', 'https'],
               help='Deprecated alias of endpoint_override (the name every '
                    'OpenStack service uses for a fixed URL of another '
                    'service), used when endpoint_override is unset.'),
    # The worker sends one request at a time: a longer one would only
    # hold every other notification behind an engine that is not there.
    cfg.FloatOpt('request_timeout',
                 default=10.0, min=0.1, max=600.0,
                 help='Total seconds one notification request to the HA '
                      'engine may take: getting a token when needed, '
                      'connecting, sending and reading the answer. An '
                      'engine or proxy that answers slowly (even one byte '
                      'at a time) is cut off at this deadline and the '
                      'notification is retried. From 0.1 to 600 (ten minutes). '
                      'Default 10. Also bounds '
                      'each Keystone request when the session option '
                      '"timeout" is unset.'),
]

# keystoneauth's adapter options, as every OpenStack service has them for
# another service. Left out on purpose: version discovery (the endpoint
# already names the API version), and keystoneauth's own retries, which
# would sleep inside one request past request_timeout; the delivery worker
# owns retries, with backoff, and keeps the notification meanwhile.
_ADAPTER_HELP = {
    'endpoint_override':
        'URL of the HA engine (Masakari) API including the version, e.g. '
        'http://127.0.0.1:15868/v1; notifications are POSTed to '
        '<URL>/notifications. Default: unset, which means the URL is '
        'looked up in the Keystone service catalog by service_type, '
        'valid_interfaces and region_name. Required when auth_type is '
        'unset or is "none" (an engine running without Keystone). '
        'Replaces the deprecated option endpoint.',
    'service_type':
        'Service type of the HA engine in the Keystone catalog. Ignored '
        'when endpoint_override is set.',
    'service_name':
        'Service name of the HA engine in the Keystone catalog, when '
        'several services have its type. Default: unset (any name). '
        'Ignored when endpoint_override is set.',
    'valid_interfaces':
        'Catalog endpoint interfaces of the HA engine, in order of '
        'preference: public, internal or admin. The default prefers the '
        'internal network, as nova-compute does, and falls back to public. '
        'Ignored when endpoint_override is set. Replaces the deprecated '
        'option interface (a single interface).',
    'region_name':
        'Region of the HA engine endpoint in the Keystone catalog. '
        'Default: unset (any region). Ignored when endpoint_override is '
        'set.',
}


def _adapter_opts():
    opts = ks_loading.get_adapter_conf_options(
        include_deprecated=False,
        deprecated_opts={'valid_interfaces': [
            cfg.DeprecatedOpt('interface', group=GROUP)]})
    chosen = [opt for opt in opts if opt.dest in _ADAPTER_HELP]
    cfg.set_defaults(chosen, service_type=DEFAULT_SERVICE_TYPE,
                     valid_interfaces=DEFAULT_INTERFACES)
    for opt in chosen:
        opt.help = _ADAPTER_HELP[opt.dest]
    return sorted(chosen, key=lambda opt: list(_ADAPTER_HELP).index(opt.dest))


ADAPTER_OPTS = _adapter_opts()


def _ksa_opts():
    """keystoneauth's options as Nova lists them for its keystone groups.

    Deduplicated by name: the oslo-config-generator refuses two options of
    the same name in one group.
    """
    opts = (ks_loading.get_auth_common_conf_options()
            + ks_loading.get_session_conf_options()
            + ks_loading.get_auth_plugin_conf_options('password'))
    unique = {}
    for opt in opts:
        unique.setdefault(opt.dest, opt)
    return list(unique.values())


def list_opts():
    return [(GROUP, ADAPTER_OPTS + NOTIFIER_OPTS + _ksa_opts())]


def register_opts(conf):
    conf.register_opts(ADAPTER_OPTS + NOTIFIER_OPTS, group=GROUP)
    ks_loading.register_auth_conf_options(conf, GROUP)
    ks_loading.register_session_conf_options(conf, GROUP)


def engine_url(conf):
    """The fixed URL of the engine, or None to look it up in the catalog.

    ``endpoint`` is the deprecated name of ``endpoint_override``; the new
    name wins when both are set.
    """
    group = conf[GROUP]
    return group.endpoint_override or group.endpoint


def load_auth(conf, group=GROUP):
    """The keystoneauth plugin configured in ``group``, or None.

    keystoneauth's ``load_auth_from_conf_options`` registers every option
    of the plugin; the "none" and "http_basic" plugins have an option named
    ``endpoint``, which this group already has with the same meaning (the
    fixed URL of the service). Registering it twice would fail, so plugin
    options already present in the group are not registered again and the
    plugin reads the group's own value.
    """
    section = conf[group].auth_section or group
    name = conf[section].auth_type
    if not name:
        return None
    loader = ks_loading.get_plugin_loader(name)
    for opt in ks_loading.get_auth_plugin_conf_options(loader):
        try:
            conf.register_opt(opt, group=section)
        except cfg.DuplicateOptError:
            LOG.debug('[%s] %s serves the %s auth plugin too', section,
                      opt.dest, name)
    return loader.load_from_options_getter(
        lambda opt: conf[section][opt.dest])


def has_catalog(auth):
    """True when the auth plugin ``auth`` can look the engine up in a
    service catalog."""
    return auth is not None and not isinstance(
        auth, ks_plugin.FixedEndpointPlugin)


# -- checks at start ---------------------------------------------------------

def check_conf(conf):
    """Every check of the HA engine's options, for ``driver = masakari``.

    Loads the authentication plugin, registering its options on ``conf``.

    :raises ConfigError: naming the first option found wrong.
    """
    check_endpoint(conf)
    check_auth(conf)
    check_tls(conf)


def _is_http_url(text):
    url = urllib.parse.urlsplit(text)
    return url.scheme in ('http', 'https') and bool(url.hostname)


def _check_url(group, option, value):
    if not _is_http_url(value):
        raise ConfigError(group, option, "not an http(s) URL (got '%s')"
                          % masking.mask(value))


def check_endpoint(conf):
    """The engine URLs, the interfaces, whether a URL is needed at all.

    :raises ConfigError: naming the first option found wrong.
    """
    group = conf[GROUP]
    if group.endpoint_override:
        _check_url(GROUP, 'endpoint_override', group.endpoint_override)
    if group.endpoint:
        _check_url(GROUP, 'endpoint', group.endpoint)
    if not (engine_url(conf) or group.auth_section) and (
            group.auth_type in (None, 'none')):
        # Without Keystone there is no service catalog to find the engine.
        raise ConfigError(GROUP, 'endpoint_override',
                          "required when [notifier] auth_type is unset or "
                          "'none'")
    interfaces = group.valid_interfaces or []
    wrong = [name for name in interfaces if name not in INTERFACES]
    if not interfaces or wrong:
        raise ConfigError(GROUP, 'valid_interfaces',
                          'a list of %s (got %s)' % (
                              ', '.join(INTERFACES),
                              ','.join(interfaces) or 'nothing'))
    if not math.isfinite(group.request_timeout):
        raise ConfigError(GROUP, 'request_timeout', 'must be a finite number '
                          'of seconds')


def check_auth(conf):
    """The Keystone auth plugin loads, and can find the engine.

    :raises ConfigError: naming the first option found wrong.
    """
    section = conf[GROUP].auth_section
    if section:
        if section not in conf.list_all_sections():
            raise ConfigError(GROUP, 'auth_section',
                              'no [%s] section in the configuration files'
                              % section)
        if section not in conf:
            ks_loading.register_auth_conf_options(conf, section)
    group = section or GROUP
    try:
        name = conf[group].auth_type
    except cfg.Error as exc:
        raise ConfigError(group, 'auth_type', str(exc)) from None
    if not name:
        require_endpoint(conf, None, name)
        return
    # The names of the installed plugins: loading an unknown one would log
    # a warning with a traceback before we can say what is wrong.
    known = ks_loading.get_available_plugin_names()
    if name not in known:
        raise ConfigError(group, 'auth_type',
                          "unknown authentication plugin '%s' (known: %s)"
                          % (name, ', '.join(sorted(known))))
    auth = load_auth_checked(conf)
    try:
        auth_url = conf[group].auth_url
    except (cfg.Error, KeyError, AttributeError):
        auth_url = None
    if auth_url is not None and not _is_http_url(auth_url):
        raise ConfigError(group, 'auth_url',
                          "not an http(s) URL (got '%s')" % auth_url)
    require_endpoint(conf, auth, name)


def load_auth_checked(conf):
    """``load_auth``, its failures turned into ConfigError.

    :raises ConfigError: naming the option the plugin could not use.
    """
    group = conf[GROUP].auth_section or GROUP
    name = conf[group].auth_type
    try:
        return load_auth(conf)
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


def require_endpoint(conf, auth, name):
    """Without a plugin that has a service catalog there is nowhere to
    find the HA engine but [notifier] endpoint_override (or its
    deprecated name endpoint).

    :raises ConfigError: naming endpoint_override.
    """
    if engine_url(conf):
        return
    if auth is None or name == 'none':
        raise ConfigError(GROUP, 'endpoint_override',
                          "required when [notifier] auth_type is unset "
                          "or 'none'")
    if not has_catalog(auth):
        raise ConfigError(GROUP, 'endpoint_override',
                          "required with auth_type '%s', which has no "
                          "service catalog" % name)


def check_tls(conf):
    """The TLS files exist, are readable and hold what they should: else
    every notification would fail at send time, long after start.

    :raises ConfigError: naming the first option found wrong.
    """
    group = conf[GROUP]
    for option in ('cafile', 'certfile', 'keyfile'):
        if group[option]:
            tls_files.check_readable(GROUP, option, group[option])
    if group.keyfile and not group.certfile:
        raise ConfigError(GROUP, 'keyfile', 'set without [notifier] certfile')
    context = tls_files.client_context()
    if group.cafile:
        tls_files.load_ca(context, GROUP, 'cafile', group.cafile)
    if group.certfile:
        try:
            # A key that needs a pass phrase cannot be used by a daemon;
            # the callback keeps OpenSSL from asking on the terminal.
            context.load_cert_chain(group.certfile, group.keyfile,
                                    password=lambda: b'')
        except ssl.SSLError as exc:
            option = 'keyfile' if group.keyfile else 'certfile'
            raise ConfigError(GROUP, option, 'no usable certificate and '
                              'private key (%s)' % (exc.reason or exc)) \
                from None
    if group.tls_ciphers:
        try:
            context.set_ciphers(group.tls_ciphers)
        except ssl.SSLError:
            raise ConfigError(GROUP, 'tls_ciphers',
                              "OpenSSL knows no cipher in '%s'"
                              % group.tls_ciphers) from None
    if group.tls_min_version and group.tls_min_version not in TLS_VERSIONS:
        raise ConfigError(GROUP, 'tls_min_version',
                          "must be one of %s (got '%s')"
                          % (', '.join(TLS_VERSIONS), group.tls_min_version))
