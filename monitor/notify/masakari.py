"""The HA-engine edge: the Masakari API client.

``MasakariClient.send`` never raises for HTTP, connection or Keystone
problems: it classifies every result as a ``DeliveryOutcome`` so that the
delivery worker decides what to keep, retry or give up. Nothing here logs
credentials or tokens.

Rules of this edge, each a defence against an engine or proxy that
misbehaves:

* Redirects are never followed. keystoneauth would re-POST the
  notification, with the token, to whatever origin the ``Location`` names,
  and a 2xx there would count as delivered. A 3xx is a failure retried like
  an outage, and its ``Location`` is in the message.
* Only 202 is accepted (and 409 a duplicate): the engine answers nothing
  else to a new notification, so any other 2xx comes from something that is
  not the engine and is retried.
* ``request_timeout`` bounds the whole request, not each read, and at most
  ``MAX_BODY_BYTES`` of an answer are read: a trickling or huge answer can
  neither hold delivery nor fill memory.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import time
import urllib.parse

import eventlet
from eventlet import patcher
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import plugin as ks_plugin
from oslo_config import cfg
from urllib3 import exceptions as urllib3_exc

from monitor import masking
from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind

LOG = logging.getLogger(__name__)

GROUP = 'notifier'

DEFAULT_SERVICE_TYPE = 'instance-ha'
# As every OpenStack service looks up another one: compute hosts reach the
# control plane over the internal network; public where only that exists
# (Masakari's devstack plugin registers only a public endpoint).
DEFAULT_INTERFACES = ['internal', 'public']
INTERFACES = ('public', 'internal', 'admin')

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


class OptionError(ValueError):
    """A ``[notifier]`` option that cannot work, found by check_options."""

    def __init__(self, option, reason, group=GROUP):
        super().__init__(f'[{group}] {option}: {reason}')
        self.group = group
        self.option = option
        self.reason = reason


def _check_url(option, value):
    url = urllib.parse.urlsplit(value)
    if url.scheme not in ('http', 'https') or not url.hostname:
        raise OptionError(option, "not an http(s) URL (got '%s')"
                          % masking.mask(value))


def check_options(conf):
    """Cross checks of ``[notifier]`` that option types cannot express.

    :raises OptionError: naming the first option found wrong.
    """
    group = conf[GROUP]
    if group.endpoint_override:
        _check_url('endpoint_override', group.endpoint_override)
    if group.endpoint:
        _check_url('endpoint', group.endpoint)
    if not (engine_url(conf) or group.auth_section) and (
            group.auth_type in (None, 'none')):
        # Without Keystone there is no service catalog to find the engine.
        raise OptionError('endpoint_override',
                          "required when [notifier] auth_type is unset or "
                          "'none'")
    interfaces = group.valid_interfaces or []
    wrong = [name for name in interfaces if name not in INTERFACES]
    if not interfaces or wrong:
        raise OptionError('valid_interfaces',
                          'a list of %s (got %s)' % (
                              ', '.join(INTERFACES),
                              ','.join(interfaces) or 'nothing'))
    if not math.isfinite(group.request_timeout):
        raise OptionError('request_timeout', 'must be a finite number of '
                          'seconds')


def engine_url(conf):
    """The fixed URL of the engine, or None to look it up in the catalog.

    ``endpoint`` is the deprecated name of ``endpoint_override``; the new
    name wins when both are set.
    """
    group = conf[GROUP]
    return group.endpoint_override or group.endpoint


# 4xx answers that say nothing about the notification itself: credentials
# or policy an operator can fix (401, 403), a wrong endpoint path (404,
# 405), or load (408, 429). Giving up on them would lose a failure report.
RETRYABLE_CLIENT_STATUSES = frozenset({401, 403, 404, 405, 408, 429})

# Masakari's answers (accepted notification, faults) are well under 2 KiB.
# Reading more would only let a broken or hostile peer fill the memory.
MAX_BODY_BYTES = 64 * 1024
_READ_CHUNK = 16 * 1024

_MAX_MESSAGE = 500
_MAX_LOCATION = 300


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
    return ' '.join(text[:_MAX_MESSAGE * 4].split())[:_MAX_MESSAGE]


def _engine_uuid(text):
    try:
        document = json.loads(text)
        return document['notification']['notification_uuid']
    except (ValueError, KeyError, TypeError):
        return None


def _location_text(location):
    if not location:
        return 'no Location'
    location = ' '.join(str(location).split())
    if len(location) > _MAX_LOCATION:
        location = location[:_MAX_LOCATION] + '...'
    return f'Location {masking.mask(location)}'


def classify_response(status_code, text, location=None):
    """Map an HTTP answer of the engine to a DeliveryOutcome.

    ``location`` is the answer's Location header, named in the message of
    a redirect.
    """
    if status_code == 202:
        return DeliveryOutcome(OutcomeKind.ACCEPTED, status_code, '',
                               _engine_uuid(text))
    if 300 <= status_code < 400:
        return DeliveryOutcome(
            OutcomeKind.RETRY, status_code,
            f'HTTP {status_code}: redirect not followed '
            f'({_location_text(location)})')
    if 200 <= status_code < 300 or status_code < 200:
        return DeliveryOutcome(
            OutcomeKind.RETRY, status_code,
            f'HTTP {status_code}: the engine answered an unexpected status '
            f'(only 202 means accepted)')
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


class _Deadline(Exception):
    pass


def _read_prefix(response, deadline, limit=MAX_BODY_BYTES):
    """At most ``limit`` bytes of the body, read before ``deadline``.

    Returns ``(data, cut)``: ``cut`` says why the body is incomplete, or
    is None. Each read waits at most for the time left and returns what
    has arrived, so an answer trickling in cannot outlast the deadline
    even in a native thread, where no green timeout can interrupt it.
    The connection is closed, never reused: the rest stays unread.
    """
    raw = response.raw
    chunks = []
    size = 0
    cut = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                cut = 'answer not complete within request_timeout'
                break
            if size >= limit:
                cut = f'answer longer than {limit} bytes, rest not read'
                break
            sock = getattr(raw.connection, 'sock', None)
            if sock is not None:
                sock.settimeout(left)
            # One byte more than the limit tells "exactly the limit" from
            # "longer".
            chunk = raw.read1(min(_READ_CHUNK, limit + 1 - size),
                              decode_content=False)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (urllib3_exc.ReadTimeoutError, TimeoutError):
        cut = 'answer not complete within request_timeout'
    except (urllib3_exc.HTTPError, http.client.HTTPException,
            OSError) as e:
        cut = f'reading the answer failed: {e}'
    finally:
        response.close()
    return b''.join(chunks)[:limit], cut


class MasakariClient:
    """Posts notifications to the HA engine through a keystoneauth session.

    With ``endpoint`` the URL is used as is (the token, if any, is still
    sent); otherwise the session's auth plugin finds it in the catalog.
    ``interface`` is one interface or a list in order of preference.
    """

    def __init__(self, session, endpoint=None,
                 service_type=DEFAULT_SERVICE_TYPE,
                 interface=tuple(DEFAULT_INTERFACES),
                 region_name=None, request_timeout=10.0, service_name=None):
        self._session = session
        if not isinstance(interface, str):
            interface = list(interface)
        self._adapter = ks_adapter.Adapter(
            session, service_type=service_type, service_name=service_name,
            interface=interface, region_name=region_name,
            endpoint_override=endpoint)
        self._request_timeout = request_timeout

    @classmethod
    def from_conf(cls, conf, session=None):
        """Build the client from ``[notifier]``.

        Raises ``cfg.RequiredOptError`` for ``endpoint_override`` when no
        URL could ever be found (no auth plugin, or one without a service
        catalog): a configuration mistake is better reported at start-up
        than retried for ever.
        """
        group = conf[GROUP]
        endpoint = engine_url(conf)
        if session is None:
            auth = load_auth(conf)
            has_catalog = auth is not None and not isinstance(
                auth, ks_plugin.FixedEndpointPlugin)
            if not (endpoint or has_catalog):
                raise cfg.RequiredOptError('endpoint_override',
                                           cfg.OptGroup(GROUP))
            timeout = group.timeout
            if timeout is None:
                # A Keystone that never answers must not hang delivery.
                timeout = group.request_timeout
            session = ks_loading.load_session_from_conf_options(
                conf, GROUP, auth=auth, timeout=timeout,
                app_name='guest-health-monitor')
        return cls(session,
                   endpoint=endpoint,
                   service_type=group.service_type,
                   service_name=group.service_name,
                   interface=group.valid_interfaces,
                   region_name=group.region_name,
                   request_timeout=group.request_timeout)

    def _describe_wanted(self):
        interface = self._adapter.interface
        if not isinstance(interface, str):
            interface = ', '.join(interface)
        return (f'no {self._adapter.service_type} endpoint (interface '
                f'{interface}) in the service catalog')

    def _post(self, path, body, deadline):
        """The engine's answer, its body not read yet.

        Getting a token, connecting and reading the headers are bounded by
        a green timeout at ``deadline``: under the daemon's monkey-patching
        it interrupts any socket wait, where a per-read timeout would let
        a peer trickling its headers hold the request for ever. Called from
        a native thread (not the daemon's way: the delivery worker is a
        green thread) only the per-read timeout bounds this phase.
        """
        left = max(deadline - time.monotonic(), 0.001)
        options = dict(
            json=body,
            headers={'Accept': 'application/json',
                     # A compressed answer could expand past any cap.
                     'Accept-Encoding': 'identity'},
            raise_exc=False,
            # The token must go nowhere but the engine endpoint.
            redirect=False,
            # Retries belong to the delivery worker, with backoff.
            connect_retries=0, status_code_retries=0,
            timeout=left,
            stream=True,
            # keystoneauth's response log would read the whole body.
            log=False)
        if not patcher.is_monkey_patched('socket'):
            # Not under the daemon's green sockets (a tool, a test): a green
            # timeout could never interrupt a native socket wait, and
            # creating one would start an eventlet hub in this thread.
            return self._adapter.request(path, 'POST', **options)
        # eventlet's Timeout is a BaseException: no "except Exception" in
        # keystoneauth, requests or urllib3 can swallow it.
        timer = eventlet.Timeout(left)
        try:
            return self._adapter.request(path, 'POST', **options)
        except eventlet.Timeout as e:
            if e is not timer:
                raise
            raise _Deadline() from None
        finally:
            timer.cancel()

    def send(self, notification):
        """POST one notification; returns a DeliveryOutcome, never raises
        for HTTP, connection, catalog or authentication failures."""
        outcome = self._send(notification)
        return outcome._replace(message=masking.mask(outcome.message))

    def _send(self, notification):
        deadline = time.monotonic() + self._request_timeout
        try:
            response = self._post('/notifications', notification.body(),
                                  deadline)
        except _Deadline:
            return _retry(f'timed out: no answer within request_timeout '
                          f'({self._request_timeout:g} s)')
        except ks_exc.EndpointNotFound as e:
            return _retry(f'{self._describe_wanted()}: {e}')
        except ks_exc.ConnectionError as e:
            # The message names the URL: the engine's or Keystone's.
            return _retry(f'connection failed: {e}')
        except ks_exc.ClientException as e:
            # With raise_exc=False the engine's own answers never raise, so
            # this came from getting a token or the catalog and the request
            # never left. Operators may fix credentials: keep and retry.
            return _retry(f'Keystone authentication failed '
                          f'({type(e).__name__}): {e}')
        data, cut = _read_prefix(response, deadline)
        LOG.debug('POST %s: HTTP %s, %d bytes read%s',
                  masking.mask(response.url), response.status_code, len(data),
                  f' ({cut})' if cut else '')
        outcome = classify_response(response.status_code,
                                    data.decode('utf-8', 'replace'),
                                    response.headers.get('Location'))
        if cut and outcome.kind != OutcomeKind.ACCEPTED:
            outcome = outcome._replace(message=f'{outcome.message} ({cut})')
        return outcome
