"""The webhook edge: signed JSON notifications for hosts without an HA engine.

``WebhookClient.send`` has the contract of the Masakari client: it never
raises for HTTP, TLS or connection problems and returns a
``DeliveryOutcome``, so the durable outbox and the delivery worker retry a
webhook exactly as they retry the engine. Every POST carries
``X-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the exact body bytes
with ``[webhook] secret``; the receiver recomputes it to know the report
came from this daemon. Nothing here logs, and the secret is never part of
an outcome message.

Which answers count as delivered: any 2xx. A generic receiver (a chat
bridge, an alert manager, a small script) answers 200, 201, 202 or 204 as
it pleases, and none of them means "try again". 409 means the receiver
already has this notification id (it may deduplicate on ``id`` or on the
``X-Notification-Id`` header). The deadline, the capped read of the
answer, redirect refusal and the rest of the classification are the HTTP
edge's (``http_edge``), shared with the HA engine's client.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import requests
from oslo_config import cfg

from monitor import masking
from monitor.notify import http_edge
from monitor.notify import tls_files

GROUP = 'webhook'

SIGNATURE_HEADER = 'X-Signature-256'
SIGNATURE_PREFIX = 'sha256='
ID_HEADER = 'X-Notification-Id'

# Version of the JSON document, for receivers that parse it.
BODY_VERSION = 1

OPTS = [
    cfg.URIOpt(
        'url',
        schemes=['http', 'https'],
        # Chat services put the token in the path: never logged whole.
        secret=True,
        help="""
URL every notification is POSTed to when [notifier] driver = webhook.
Redirects are not followed: give the final address. Logs show only its
scheme, host, port and first path segment. Default: unset (required with
the webhook driver).

Related options:

* [webhook] secret, [webhook] timeout, [webhook] cafile
"""),
    cfg.StrOpt(
        'secret',
        secret=True,
        help="""
Shared secret that signs every POST: the header X-Signature-256 carries
"sha256=" and the hex HMAC-SHA256 of the raw request body with this
secret. Never logged. Default: unset (required with the webhook driver).
"""),
    cfg.FloatOpt(
        'timeout',
        default=10.0, min=0.1, max=600.0,
        help="""
Seconds one POST may take, connecting and receiving the answer included;
a request past it is retried later. From 0.1 to 600. Default 10.
"""),
    cfg.StrOpt(
        'cafile',
        help="""
PEM file of the certificate authorities that may sign the receiver's
certificate, for an https url. Default: unset, the system's trusted
authorities. Certificates are always verified.
"""),
]


def list_opts():
    return [(GROUP, OPTS)]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def check_conf(conf):
    """A ``[webhook] cafile`` that is set must be a readable CA bundle.

    :raises ConfigError: naming ``[webhook] cafile``.
    """
    if conf[GROUP].cafile:
        tls_files.check_cafile(GROUP, 'cafile', conf[GROUP].cafile)


def sign(secret, body):
    """The X-Signature-256 header value for ``body`` (bytes)."""
    if isinstance(secret, str):
        secret = secret.encode('utf-8')
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify(secret, body, header):
    """True when ``header`` is the valid signature of ``body``."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body), header.strip())


def document(notification):
    """The JSON document for one notification, as a dict.

    The incident facts (consecutive misses, the recovery and the evidence)
    are read from ``notification.details``, the plain dict built by
    ``recovery.notification_details`` and kept with the notification in
    the outbox; a notification without them has null misses, no recovery
    and no evidence.
    """
    details = getattr(notification, 'details', None) or {}
    return {
        'version': BODY_VERSION,
        'id': notification.id,
        'host': notification.hostname,
        'domain_uuid': notification.instance_uuid,
        'domain_name': notification.domain_name,
        'event': notification.event,
        'vir_domain_event': notification.vir_domain_event,
        'generated_time': notification.generated_time,
        'reason': details.get('reason'),
        'consecutive_misses': details.get('consecutive_misses'),
        'recovery': details.get('recovery'),
        'evidence': list(details.get('evidence') or ()),
    }


def encode(doc):
    """The body bytes: compact, keys sorted, so a resend is byte-identical
    and so is its signature."""
    return json.dumps(doc, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=True).encode('ascii')


def _describe_failure(error):
    if isinstance(error, requests.exceptions.SSLError):
        return 'TLS verification failed: %s' % error
    if isinstance(error, requests.exceptions.Timeout):
        return 'timed out: %s' % error
    if isinstance(error, requests.exceptions.ConnectionError):
        return 'connection failed: %s' % error
    return 'request failed (%s): %s' % (type(error).__name__, error)


_PEER = http_edge.Peer(
    name='the receiver',
    # A generic receiver answers 200, 201, 202 or 204 as it pleases, and
    # none of them means "try again".
    accepted=frozenset(range(200, 300)), accepted_text='2xx',
    timeout_option='[webhook] timeout',
    errors=(requests.exceptions.RequestException,),
    describe=_describe_failure,
    redirect_hint='; set [webhook] url to the final address',
    url_text=masking.mask_webhook_url)


class WebhookClient:
    """POSTs signed notifications to one URL with one requests session."""

    def __init__(self, url, secret, timeout=10.0, cafile=None):
        if not url:
            raise ValueError('webhook url is required')
        if not secret:
            raise ValueError('webhook secret is required')
        self.url = url
        # What a library's error message may quote of the URL.
        self._url_secrets = masking.webhook_url_secrets(url)
        masking.add_known_secrets(self._url_secrets)
        self._secret = secret.encode('utf-8')
        self.timeout = timeout
        self._verify = cafile or True
        self._session = requests.Session()
        # Trust, proxies and CA bundles come from the daemon's config, not
        # from whatever environment it was started in
        # (REQUESTS_CA_BUNDLE would replace cafile, HTTPS_PROXY would
        # route signed reports elsewhere).
        self._session.trust_env = False
        self._session.headers['User-Agent'] = 'guest-health-monitor'

    @classmethod
    def from_conf(cls, conf):
        group = conf[GROUP]
        return cls(group.url, group.secret, group.timeout, group.cafile)

    def __repr__(self):
        # Never the secret, nor the token a URL's path may carry.
        return '<WebhookClient %s>' % masking.mask_webhook_url(self.url)

    def close(self):
        self._session.close()

    def send(self, notification):
        """POST one notification, signed; returns a DeliveryOutcome, never
        raises for HTTP, TLS or connection failures."""
        body = encode(document(notification))
        outcome = http_edge.post(
            self._session.post, _PEER, self.timeout, self.url, data=body,
            headers={'Content-Type': 'application/json',
                     'Accept': 'application/json, text/plain, */*',
                     SIGNATURE_HEADER: sign(self._secret, body),
                     ID_HEADER: notification.id,
                     **http_edge.ANSWER_ENCODING},
            allow_redirects=False, verify=self._verify, stream=True)
        return outcome._replace(
            message=masking.scrub(outcome.message, self._url_secrets))
