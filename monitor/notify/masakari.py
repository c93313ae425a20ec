"""The HA engine's client: notifications POSTed to Masakari's API.

``MasakariClient.send`` never raises for HTTP, connection or Keystone
problems: the HTTP edge (``http_edge``) classifies every result as a
``DeliveryOutcome`` so that the delivery worker decides what to keep,
retry or give up. Nothing here logs credentials or tokens.

What is the engine's own:

* Redirects are never followed. keystoneauth would re-POST the
  notification, with the token, to whatever origin the ``Location`` names,
  and a 2xx there would count as delivered.
* Only 202 is accepted (and 409 a duplicate): the engine answers nothing
  else to a new notification, so any other 2xx comes from something that is
  not the engine and is retried.
* ``request_timeout`` bounds the whole request, getting a token included.
* Keystone failures (no endpoint in the catalog, credentials refused) are
  retried: operators may fix them while the notification waits.

Beside masakari-instancemonitor: a failure it reports too is sent in its
payload shape (``health.instant_failures``) and, with
``coexist_with_instancemonitor``, only ``instancemonitor_wait`` seconds
after the failure, so that masakari-api has stored theirs and answers ours
409 (a duplicate, which the outbox counts as delivered). Two identical
notifications reaching masakari-api at the same moment would both pass its
duplicate check: it compares with the notifications already stored, and
only a coordination backend or its random pre-insert delay serialises two
requests.
"""

from __future__ import annotations

import json

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from monitor.errors import ConfigError
from monitor.notify import delivery
from monitor.notify import http_edge
from monitor.notify import masakari_conf
from monitor.notify.notification import RESOLVED
from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind

OPTS = [
    cfg.BoolOpt(
        'coexist_with_instancemonitor',
        default=True,
        help="""
masakari-instancemonitor (masakari-monitors) runs on this host beside this
monitor and sends the same masakari-api a LIFECYCLE / STOPPED_FAILED
notification when a guest's QEMU process ends on its own. This monitor
sends that failure with exactly the same payload, [notifier]
instancemonitor_wait seconds later, so that masakari-api stores
masakari-instancemonitor's and refuses ours as a duplicate (409): one
recovery. Without masakari-instancemonitor ours is the one stored, the wait
later. False: sent at once. Only with [notifier] driver = masakari.

Related options:

* [notifier] instancemonitor_wait
"""),
    cfg.IntOpt(
        'instancemonitor_wait',
        default=10, min=1, max=60,
        help="""
Seconds a notification that masakari-instancemonitor also sends waits
before its first attempt, with [notifier] coexist_with_instancemonitor.
Keep it above masakari-api's notification_delay_max (5 by default: its
random wait before storing a notification) plus masakari-instancemonitor's
own time to reach masakari-api, and at most [outbox] retry_max_delay (checked at start).
From 1 to 60. Default 10.
"""),
]


def list_opts():
    return [(masakari_conf.GROUP, OPTS)]


def register_opts(conf):
    conf.register_opts(OPTS, group=masakari_conf.GROUP)


def instancemonitor_wait(conf):
    """Seconds a notification masakari-instancemonitor also sends
    waits before its first attempt: 0 unless it runs beside this monitor
    and the notifications go to masakari-api."""
    group = conf[masakari_conf.GROUP]
    if group.driver != 'masakari' or not group.coexist_with_instancemonitor:
        return 0
    return group.instancemonitor_wait


def check_conf(conf):
    """The wait must fit the delivery's own pace: the outbox counts an
    attempt due further away than [outbox] retry_max_delay as due now
    (a clock stepped back), which would send ours first.

    :raises ConfigError: naming the option.
    """
    wait = instancemonitor_wait(conf)
    ceiling = conf[delivery.GROUP].retry_max_delay
    if wait > ceiling:
        raise ConfigError(masakari_conf.GROUP, 'instancemonitor_wait',
                          'must be at most [%s] retry_max_delay (%g); got %d'
                          % (delivery.GROUP, ceiling, wait))


def _engine_uuid(text):
    try:
        document = json.loads(text)
        return document['notification']['notification_uuid']
    except (ValueError, KeyError, TypeError):
        return None


def _load_session(conf):
    """The keystoneauth session of ``[notifier]``.

    :raises ConfigError: naming the option keystoneauth could not use.
    """
    group = conf[masakari_conf.GROUP]
    auth = masakari_conf.load_auth_checked(conf)
    section = conf[group.auth_section or masakari_conf.GROUP]
    masakari_conf.require_endpoint(conf, auth, section.auth_type)
    timeout = group.timeout
    if timeout is None:
        # A Keystone that never answers must not hang delivery.
        timeout = group.request_timeout
    try:
        return ks_loading.load_session_from_conf_options(
            conf, masakari_conf.GROUP, auth=auth, timeout=timeout,
            app_name='guest-health-monitor')
    except (ks_exc.ClientException, cfg.Error, ValueError, TypeError) as e:
        raise ConfigError(masakari_conf.GROUP, None, 'cannot build the '
                          'Keystone session: %s' % e) from None


class MasakariClient:
    """Posts notifications to the HA engine through a keystoneauth session.

    With ``endpoint`` the URL is used as is (the token, if any, is still
    sent); otherwise the session's auth plugin finds it in the catalog.
    ``interface`` is one interface or a list in order of preference.
    """

    def __init__(self, session, endpoint=None,
                 service_type=masakari_conf.DEFAULT_SERVICE_TYPE,
                 interface=tuple(masakari_conf.DEFAULT_INTERFACES),
                 region_name=None, request_timeout=10.0, service_name=None):
        self._session = session
        if not isinstance(interface, str):
            interface = list(interface)
        self._adapter = ks_adapter.Adapter(
            session, service_type=service_type, service_name=service_name,
            interface=interface, region_name=region_name,
            endpoint_override=endpoint)
        self._request_timeout = request_timeout
        self._peer = http_edge.Peer(
            name='the engine',
            # The engine answers nothing else to a new notification: any
            # other 2xx comes from something that is not the engine.
            accepted=frozenset({202}), accepted_text='202',
            timeout_option='request_timeout',
            errors=(ks_exc.ClientException,),
            describe=self._describe_failure,
            receipt_of=_engine_uuid)

    @classmethod
    def from_conf(cls, conf, session=None):
        """Build the client from ``[notifier]``.

        :raises ConfigError: for ``endpoint_override`` when no URL could
            ever be found (no auth plugin, or one without a service
            catalog), or naming the auth or session option keystoneauth
            could not use: a configuration mistake is better reported at
            start-up than retried for ever.
        """
        group = conf[masakari_conf.GROUP]
        if session is None:
            session = _load_session(conf)
        return cls(session,
                   endpoint=masakari_conf.engine_url(conf),
                   service_type=group.service_type,
                   service_name=group.service_name,
                   interface=group.valid_interfaces,
                   region_name=group.region_name,
                   request_timeout=group.request_timeout)

    def _describe_failure(self, error):
        if isinstance(error, ks_exc.EndpointNotFound):
            interface = self._adapter.interface
            if not isinstance(interface, str):
                interface = ', '.join(interface)
            return (f'no {self._adapter.service_type} endpoint (interface '
                    f'{interface}) in the service catalog: {error}')
        if isinstance(error, ks_exc.ConnectionError):
            # The message names the URL: the engine's or Keystone's.
            return f'connection failed: {error}'
        # With raise_exc=False the engine's own answers never raise, so
        # this came from getting a token or the catalog and the request
        # never left. Operators may fix credentials: keep and retry.
        return (f'Keystone authentication failed ({type(error).__name__}): '
                f'{error}')

    def send(self, notification):
        """POST one notification; returns a DeliveryOutcome, never raises
        for HTTP, connection, catalog or authentication failures.

        The engine knows failures only: the end of one (kind RESOLVED,
        left in the outbox by another driver) counts as delivered
        without being sent."""
        if notification.kind == RESOLVED:
            return DeliveryOutcome(OutcomeKind.ACCEPTED, None,
                                   'not sent: the HA engine takes failures '
                                   'only')
        return http_edge.post(
            self._adapter.request, self._peer, self._request_timeout,
            '/notifications', 'POST',
            json=notification.body(),
            headers={'Accept': 'application/json', **http_edge.ANSWER_ENCODING},
            raise_exc=False,
            # The token must go nowhere but the engine endpoint.
            redirect=False,
            # Retries belong to the delivery worker, with backoff.
            connect_retries=0, status_code_retries=0,
            stream=True,
            # keystoneauth's response log would read the whole body.
            log=False)
