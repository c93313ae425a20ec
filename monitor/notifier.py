"""The HA-engine edge: the Masakari API client.

``MasakariClient.send`` never raises for HTTP, connection or Keystone
problems: it classifies every result as a ``DeliveryOutcome`` so that the
delivery worker decides what to keep, retry or give up. Nothing here logs
credentials or tokens; keystoneauth's own request logging hashes tokens and
does not log authentication bodies.
"""

from __future__ import annotations

import json
import logging

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import plugin as ks_plugin
from oslo_config import cfg

from monitor.notification import DeliveryOutcome
from monitor.notification import OutcomeKind

LOG = logging.getLogger(__name__)

GROUP = 'notifier'

DEFAULT_SERVICE_TYPE = 'instance-ha'

NOTIFIER_OPTS = [
    cfg.URIOpt('endpoint',
               schemes=['http', 'https'],
               help='URL of the HA engine (Masakari) API including the '
                    'version, e.g. http://127.0.0.1:15868/v1. Default: '
                    'unset, which means the URL is looked up in the '
                    'Keystone service catalog by service_type, interface '
                    'and region_name. Required when auth_type is unset or '
                    'is "none" (an engine running without Keystone).\n\n'
                    'Related options: service_type, interface, '
                    'region_name, auth_type.'),
    cfg.StrOpt('service_type',
               default=DEFAULT_SERVICE_TYPE,
               help='Service type of the HA engine in the Keystone '
                    'catalog. Default instance-ha. Ignored when endpoint '
                    'is set.'),
    cfg.StrOpt('interface',
               default='internal',
               choices=['public', 'internal', 'admin'],
               help='Which catalog endpoint of the HA engine to use. '
                    'Default internal: compute hosts reach control-plane '
                    'services over the internal network, as nova-compute '
                    'does. Ignored when endpoint is set.'),
    cfg.StrOpt('region_name',
               help='Region of the HA engine endpoint in the Keystone '
                    'catalog. Default: unset (any region). Ignored when '
                    'endpoint is set.'),
    cfg.FloatOpt('request_timeout',
                 default=10.0, min=0.1, max=600.0,
                 help='Seconds to wait for the HA engine (connect and '
                      'read) on each notification request. From 0.1 to '
                      '600 (ten minutes). Default 10. '
                      'Also bounds Keystone requests when the session '
                      'option "timeout" is unset.'),
]


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
    return [(GROUP, NOTIFIER_OPTS + _ksa_opts())]


def register_opts(conf):
    conf.register_opts(NOTIFIER_OPTS, group=GROUP)
    ks_loading.register_auth_conf_options(conf, GROUP)
    ks_loading.register_session_conf_options(conf, GROUP)


# 4xx answers that say nothing about the notification itself: credentials
# or policy an operator can fix (401, 403), a wrong endpoint path (404,
# 405), or load (408, 429). Giving up on them would lose a failure report.
RETRYABLE_CLIENT_STATUSES = frozenset({401, 403, 404, 405, 408, 429})

_MAX_MESSAGE = 500


def engine_message(text):
    """The human message of an engine answer.

    Masakari wraps faults as ``{"conflictingRequest": {"message": ...}}``;
    anything else is returned as (shortened) text.
    """
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and len(document) == 1:
        fault = next(iter(document.values()))
        if isinstance(fault, dict) and fault.get('message'):
            return str(fault['message'])[:_MAX_MESSAGE]
    return ' '.join(text.split())[:_MAX_MESSAGE]


def _engine_uuid(text):
    try:
        document = json.loads(text)
        return document['notification']['notification_uuid']
    except (ValueError, KeyError, TypeError):
        return None


def classify_response(status_code, text):
    """Map an HTTP answer of the engine to a DeliveryOutcome."""
    if 200 <= status_code < 300:
        return DeliveryOutcome(OutcomeKind.ACCEPTED, status_code, '',
                               _engine_uuid(text))
    message = engine_message(text) or f'HTTP {status_code}'
    if status_code == 409:
        return DeliveryOutcome(OutcomeKind.DUPLICATE, status_code, message)
    if 400 <= status_code < 500 and (
            status_code not in RETRYABLE_CLIENT_STATUSES):
        return DeliveryOutcome(OutcomeKind.REJECTED, status_code, message)
    return DeliveryOutcome(OutcomeKind.RETRY, status_code,
                           f'HTTP {status_code}: {message}')


def _retry(reason):
    return DeliveryOutcome(OutcomeKind.RETRY, None, reason)


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


class MasakariClient:
    """Posts notifications to the HA engine through a keystoneauth session.

    With ``endpoint`` the URL is used as is (the token, if any, is still
    sent); otherwise the session's auth plugin finds it in the catalog.
    """

    def __init__(self, session, endpoint=None,
                 service_type=DEFAULT_SERVICE_TYPE, interface='internal',
                 region_name=None, request_timeout=10.0):
        self._session = session
        self._endpoint = endpoint
        self._endpoint_filter = {'service_type': service_type,
                                 'interface': interface}
        if region_name:
            self._endpoint_filter['region_name'] = region_name
        self._request_timeout = request_timeout

    @classmethod
    def from_conf(cls, conf, session=None):
        """Build the client from ``[notifier]``.

        Raises ``cfg.RequiredOptError`` for ``endpoint`` when no URL could
        ever be found (no auth plugin, or one without a service catalog):
        a configuration mistake is better reported at start-up than
        retried for ever.
        """
        group = conf[GROUP]
        if session is None:
            auth = load_auth(conf)
            has_catalog = auth is not None and not isinstance(
                auth, ks_plugin.FixedEndpointPlugin)
            if not (group.endpoint or has_catalog):
                raise cfg.RequiredOptError('endpoint', cfg.OptGroup(GROUP))
            timeout = group.timeout
            if timeout is None:
                # A Keystone that never answers must not hang delivery.
                timeout = group.request_timeout
            session = ks_loading.load_session_from_conf_options(
                conf, GROUP, auth=auth, timeout=timeout,
                app_name='guest-health-monitor')
        return cls(session,
                   endpoint=group.endpoint,
                   service_type=group.service_type,
                   interface=group.interface,
                   region_name=group.region_name,
                   request_timeout=group.request_timeout)

    def _request(self, method, path, body):
        kwargs = {'json': body,
                  'headers': {'Accept': 'application/json'},
                  'raise_exc': False,
                  'timeout': self._request_timeout,
                  'connect_retries': 0}
        if self._endpoint:
            kwargs['endpoint_override'] = self._endpoint
        else:
            kwargs['endpoint_filter'] = self._endpoint_filter
        return self._session.request(path, method, **kwargs)
    def send(self, notification):
        """POST one notification; returns a DeliveryOutcome, never raises
        for HTTP, connection, catalog or authentication failures."""
        try:
            response = self._request('POST', '/notifications',
                                     notification.body())
        except ks_exc.EndpointNotFound as e:
            wanted = self._endpoint_filter
            return _retry(f'no {wanted["service_type"]} endpoint '
                          f'(interface {wanted["interface"]}) in the service '
                          f'catalog: {e}')
        except ks_exc.ConnectionError as e:
            # The message names the URL: the engine's or Keystone's.
            return _retry(f'connection failed: {e}')
        except ks_exc.ClientException as e:
            # With raise_exc=False the engine's own answers never raise, so
            # this came from getting a token or the catalog and the request
            # never left. Operators may fix credentials: keep and retry.
            return _retry(f'Keystone authentication failed '
                          f'({type(e).__name__}): {e}')
        return classify_response(response.status_code, response.text)
