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
``X-Notification-Id`` header). Redirects are never followed: a 3xx is
retried and names the Location, so the body and its signature never go
to an address the operator did not configure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import requests
import urllib3
from oslo_config import cfg

from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind

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
        help="""
URL every notification is POSTed to when [notifier] driver = webhook.
Redirects are not followed: give the final address. Default: unset
(required with the webhook driver).

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


# 4xx answers that say nothing about the notification itself: a receiver
# that does not yet know the secret (401, 403), a wrong path (404, 405) or
# load (408, 429). Giving up on them would lose a failure report.
RETRYABLE_CLIENT_STATUSES = frozenset({401, 403, 404, 405, 408, 429})

# Most of an answer read: only its message is kept, and a receiver must not
# make the daemon buffer an endless body.
MAX_ANSWER_BYTES = 64 * 1024
_MAX_MESSAGE = 500


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


def _message(raw):
    text = raw.decode('utf-8', 'replace')
    return ' '.join(text.split())[:_MAX_MESSAGE]


def classify_response(status_code, raw, location=None):
    """Map the receiver's answer to a DeliveryOutcome."""
    if 200 <= status_code < 300:
        return DeliveryOutcome(OutcomeKind.ACCEPTED, status_code, '')
    message = _message(raw) or 'HTTP %d' % status_code
    if 300 <= status_code < 400:
        return DeliveryOutcome(
            OutcomeKind.RETRY, status_code,
            'HTTP %d: redirect to %s not followed; set [webhook] url to the '
            'final address' % (status_code, location or '(no Location)'))
    if status_code == 409:
        return DeliveryOutcome(OutcomeKind.DUPLICATE, status_code, message)
    if 400 <= status_code < 500 and (
            status_code not in RETRYABLE_CLIENT_STATUSES):
        return DeliveryOutcome(OutcomeKind.REJECTED, status_code, message)
    return DeliveryOutcome(OutcomeKind.RETRY, status_code,
                           'HTTP %d: %s' % (status_code, message))


def _retry(reason):
    return DeliveryOutcome(OutcomeKind.RETRY, None, reason)


class WebhookClient:
    """POSTs signed notifications to one URL with one requests session."""

    def __init__(self, url, secret, timeout=10.0, cafile=None,
                 clock=time.monotonic):
        if not url:
            raise ValueError('webhook url is required')
        if not secret:
            raise ValueError('webhook secret is required')
        self.url = url
        self._secret = secret.encode('utf-8')
        self.timeout = timeout
        self._verify = cafile or True
        self._clock = clock
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
        # Never the secret.
        return '<WebhookClient %s>' % self.url

    def close(self):
        self._session.close()

    def send(self, notification):
        """POST one notification; returns a DeliveryOutcome, never raises
        for HTTP, TLS or connection failures."""
        return self.post(notification.id, encode(document(notification)))

    def post(self, notification_id, body):
        """POST ``body`` (bytes) signed; the outcome of that one request."""
        headers = {'Content-Type': 'application/json',
                   'Accept': 'application/json, text/plain, */*',
                   SIGNATURE_HEADER: sign(self._secret, body),
                   ID_HEADER: notification_id}
        deadline = self._clock() + self.timeout
        try:
            response = self._session.post(
                self.url, data=body, headers=headers,
                allow_redirects=False, verify=self._verify, stream=True,
                # total: connecting and waiting for the answer's headers
                # share one deadline; reading the body is bounded below.
                timeout=urllib3.Timeout(total=self.timeout))
        except requests.exceptions.SSLError as e:
            return _retry('TLS verification failed: %s' % e)
        except requests.exceptions.Timeout as e:
            return _retry('timed out after %.1f s: %s' % (self.timeout, e))
        except requests.exceptions.ConnectionError as e:
            return _retry('connection failed: %s' % e)
        except requests.exceptions.RequestException as e:
            return _retry('request failed (%s): %s' % (type(e).__name__, e))
        try:
            raw = self._read_capped(response, deadline)
        except (requests.exceptions.RequestException,
                urllib3.exceptions.HTTPError, OSError):
            # The status line arrived; a broken body does not change it.
            raw = b''
        finally:
            response.close()
        return classify_response(response.status_code, raw,
                                 response.headers.get('Location'))

    def _read_capped(self, response, deadline):
        chunks = []
        size = 0
        for chunk in response.iter_content(chunk_size=8192):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_ANSWER_BYTES or self._clock() >= deadline:
                break
        return b''.join(chunks)[:MAX_ANSWER_BYTES]
