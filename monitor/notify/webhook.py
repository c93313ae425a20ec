"""The webhook edge: CloudEvents signed per Standard Webhooks, for hosts
without an HA engine.

Each notification is POSTed as one CloudEvents 1.0 event in structured
mode (``Content-Type: application/cloudevents+json``): the envelope says
what happened (``type``), where (``source``, the host), to which guest
(``subject``, the domain name) and when (``time``, the failure time);
``data`` carries the incident facts (the document
``docs/schemas/webhook-event-data.schema.json`` describes). The body of a
notification is the same bytes on every resend.

The request is signed as Standard Webhooks says: ``webhook-id`` is the
notification id, the same on every resend, so a receiver deduplicates on
it; ``webhook-timestamp`` is the time of this attempt, in seconds; and
``webhook-signature`` is ``v1,`` and the base64 HMAC-SHA256 of
``id.timestamp.body`` with the key of ``[webhook] secret``
(``whsec_<base64>``). A receiver refuses a timestamp out of its
tolerance (five minutes for the reference libraries), so a captured
request cannot be replayed later, and each attempt is signed afresh
when it is made. Nothing here logs, and neither the secret nor its key
is ever part of an outcome message.

``WebhookClient.send`` has the contract of the Masakari client: it never
raises for HTTP, TLS or connection problems and returns a
``DeliveryOutcome``, so the durable outbox and the delivery worker retry a
webhook exactly as they retry the engine; each ``send`` is one attempt.
Which answers count as delivered: any 2xx. A generic receiver (a chat
bridge, an alert manager, a small script) answers 200, 201, 202 or 204 as
it pleases, and none of them means "try again". 409 means the receiver
already has this ``webhook-id``. The deadline, the capped read of the
answer, redirect refusal and the rest of the classification are the HTTP
edge's (``http_edge``), shared with the HA engine's client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import urllib.parse

import requests
from oslo_config import cfg

from monitor import masking
from monitor.errors import ConfigError
from monitor.health import recovery_policy as recovery
from monitor.notify import http_edge
from monitor.notify import tls_files
from monitor.notify.notification import RESOLVED

GROUP = 'webhook'

CONTENT_TYPE = 'application/cloudevents+json'
SPECVERSION = '1.0'
DATA_CONTENT_TYPE = 'application/json'

# The event types, reverse-DNS names of the product's own.
TYPE_PREFIX = 'io.guest-health-monitor.guest.'
TYPE_FAILED = TYPE_PREFIX + 'failed'
TYPE_RECOVERY_EXHAUSTED = TYPE_PREFIX + 'recovery_exhausted'
TYPE_RECOVERED = TYPE_PREFIX + 'recovered'
# An application probe's failure on a guest that answers its pings
# (details 'incident': 'application'), and its end.
APPLICATION_PREFIX = 'io.guest-health-monitor.application.'
TYPE_APPLICATION_FAILED = APPLICATION_PREFIX + 'failed'
TYPE_APPLICATION_RECOVERED = APPLICATION_PREFIX + 'recovered'
TYPES = (TYPE_FAILED, TYPE_RECOVERY_EXHAUSTED, TYPE_RECOVERED,
         TYPE_APPLICATION_FAILED, TYPE_APPLICATION_RECOVERED)

# A URI-reference naming the monitor of one host: the host name is the
# path's last segment.
SOURCE_PREFIX = '//guest-health-monitor/'

# The recovery results that leave the guest failed with nothing more
# the monitor will do about it: the budget is spent, or the action was
# tried and did not work. A human has to look.
RECOVERY_NOT_DONE = frozenset((recovery.RESULT_BUDGET_EXHAUSTED,
                               recovery.RESULT_FAILED))

ID_HEADER = 'webhook-id'
TIMESTAMP_HEADER = 'webhook-timestamp'
SIGNATURE_HEADER = 'webhook-signature'
SIGNATURE_VERSION = 'v1'

SECRET_PREFIX = 'whsec_'
# Standard Webhooks asks for keys of 24 to 64 bytes; a shorter one is
# guessable, a longer one adds nothing to HMAC-SHA256.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
MAKE_SECRET = 'echo "whsec_$(openssl rand -base64 32)"'

OPTS = [
    cfg.URIOpt(
        'url',
        schemes=['http', 'https'],
        # Chat services put the token in the path: never logged whole.
        secret=True,
        help="""
URL every notification is POSTed to when [notifier] driver = webhook, as
a CloudEvents 1.0 event in structured mode. Redirects are not followed:
give the final address. Logs show only its scheme, host, port and first
path segment. Default: unset (required with the webhook driver).

Related options:

* [webhook] secret, [webhook] timeout, [webhook] cafile
"""),
    cfg.StrOpt(
        'secret',
        secret=True,
        help="""
Standard Webhooks signing secret: "whsec_" followed by the base64 of
24 to 64 random bytes (the key), for example the output of
    echo "whsec_$(openssl rand -base64 32)"
Give the receiver the same text. Every attempt carries webhook-id (the
notification id, the same on every resend), webhook-timestamp (the
attempt's time) and webhook-signature ("v1," and the base64 HMAC-SHA256
of id.timestamp.body with the key). Any other text is refused at start.
Never logged. Default: unset (required with the webhook driver).
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
    """A ``[webhook] secret`` or ``cafile`` that is set must be usable,
    whatever the driver: a signing secret in the Standard Webhooks form,
    a readable CA bundle.

    :raises ConfigError: naming the option; never quoting the secret.
    """
    if conf[GROUP].secret:
        try:
            secret_key(conf[GROUP].secret)
        except ValueError as exc:
            raise ConfigError(GROUP, 'secret', str(exc)) from None
    if conf[GROUP].cafile:
        tls_files.check_cafile(GROUP, 'cafile', conf[GROUP].cafile)


def secret_key(secret):
    """The HMAC key (bytes) of a ``whsec_<base64>`` secret.

    The base64 is the standard alphabet, padding optional, as the
    Standard Webhooks libraries read it; text they would read otherwise
    (another alphabet, stray characters) is refused rather than signed
    with a key the receiver does not have.

    :raises ValueError: saying what to give instead; the message never
        quotes the secret.
    """
    how = ('give "%s" followed by the base64 of %d to %d random bytes, '
           'for example the output of: %s'
           % (SECRET_PREFIX, MIN_KEY_BYTES, MAX_KEY_BYTES, MAKE_SECRET))
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError('not a Standard Webhooks signing secret (it does '
                         'not start with "%s"): %s' % (SECRET_PREFIX, how))
    encoded = secret[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded + '=' * (-len(encoded) % 4),
                               validate=True)
    except (binascii.Error, ValueError):
        raise ValueError('the text after "%s" is not base64: %s'
                         % (SECRET_PREFIX, how)) from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError('the key is %d bytes: %s' % (len(key), how))
    return key


def event_type(notification):
    """The CloudEvents ``type`` of a notification.

    The end of a failure (kind RESOLVED: the guest answered again, or
    its domain is gone) is ``recovered``; a failure whose recovery ran
    out of budget or did not work is ``recovery_exhausted`` (the
    recovery result is in the details, ``notification_details``); any
    other failure, recovered by the monitor or not, is ``failed``. An
    application probe's failure and its end have types of their own
    (``application.failed``, ``application.recovered``), whatever the
    recovery did.
    """
    details = notification.details or {}
    application = details.get('incident') == 'application'
    if notification.kind == RESOLVED:
        return TYPE_APPLICATION_RECOVERED if application else TYPE_RECOVERED
    if application:
        return TYPE_APPLICATION_FAILED
    result = (details.get('recovery') or {}).get('result')
    if result in RECOVERY_NOT_DONE:
        return TYPE_RECOVERY_EXHAUSTED
    return TYPE_FAILED


def source(hostname):
    """The event ``source`` of the monitor on ``hostname``."""
    return SOURCE_PREFIX + urllib.parse.quote(hostname, safe='')


def event_data(notification):
    """The event's ``data``: the incident facts, as a dict.

    Consecutive misses, the recovery and the evidence are read from
    ``notification.details``, the plain dict built by
    ``recovery.notification_details`` and kept with the notification in
    the outbox; a notification without them has null misses, no
    recovery and no evidence. Other details are passed on under their
    own names. ``event`` and ``vir_domain_event`` name the failure as
    the HA engine would (a silent guest agent, QEMU that ended, a disk
    I/O error).
    """
    details = notification.details or {}
    data = {
        # Facts other parts of the daemon add to some notifications, under
        # their own names (the core fields below win).
        **{key: value for key, value in details.items()
           if key not in _CORE_DETAILS},
        'host': notification.hostname,
        'domain_uuid': notification.instance_uuid,
        'domain_name': notification.domain_name,
        'event': notification.event,
        'vir_domain_event': notification.vir_domain_event,
        'reason': details.get('reason'),
        'consecutive_misses': details.get('consecutive_misses'),
        'recovery': details.get('recovery'),
        'evidence': list(details.get('evidence') or ()),
        # The end of a failure names the failure's id (the id of the
        # event it ends); null in a failure.
        'resolves': details.get('resolves'),
    }
    return data


_CORE_DETAILS = frozenset(('reason', 'consecutive_misses', 'recovery',
                           'evidence', 'resolves'))


def cloud_event(notification):
    """The CloudEvents 1.0 event of one notification, as a dict (the
    structured-mode JSON document)."""
    return {
        'specversion': SPECVERSION,
        'id': notification.id,
        'source': source(notification.hostname),
        'type': event_type(notification),
        'subject': notification.domain_name,
        # RFC 3339, UTC, seconds: when the failure (or its end) was seen,
        # not when this attempt is made.
        'time': notification.generated_time,
        'datacontenttype': DATA_CONTENT_TYPE,
        'data': event_data(notification),
    }


def encode(doc):
    """The body bytes: compact, keys sorted, so every resend of a
    notification is the same body."""
    return json.dumps(doc, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=True).encode('ascii')


def sign(key, msg_id, timestamp, body):
    """The ``webhook-signature`` value: ``v1,`` and the base64
    HMAC-SHA256 of ``msg_id.timestamp.body`` with ``key`` (bytes)."""
    signed = b'%s.%d.%s' % (msg_id.encode('utf-8'), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return '%s,%s' % (SIGNATURE_VERSION,
                      base64.b64encode(digest).decode('ascii'))


def signature_headers(key, msg_id, body, now):
    """The Standard Webhooks headers of one attempt made at ``now``
    (epoch seconds)."""
    timestamp = int(now)
    return {ID_HEADER: msg_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(key, msg_id, timestamp, body)}


_PEER = http_edge.Peer(
    name='the receiver',
    # A generic receiver answers 200, 201, 202 or 204 as it pleases, and
    # none of them means "try again".
    accepted=frozenset(range(200, 300)), accepted_text='2xx',
    timeout_option='[webhook] timeout',
    errors=(requests.exceptions.RequestException,),
    describe=http_edge.describe_requests_failure,
    redirect_hint='; set [webhook] url to the final address',
    url_text=masking.mask_webhook_url)


class WebhookClient:
    """POSTs signed CloudEvents to one URL with one requests session.

    ``clock`` (epoch seconds) dates each attempt's signature.
    """

    def __init__(self, url, secret, timeout=10.0, cafile=None,
                 clock=time.time):
        if not url:
            raise ValueError('webhook url is required')
        if not secret:
            raise ValueError('webhook secret is required')
        self._key = secret_key(secret)
        self.url = url
        # What a library's error message may quote of the URL.
        self._url_secrets = masking.webhook_url_secrets(url)
        masking.add_known_secrets(self._url_secrets)
        self.timeout = timeout
        self._clock = clock
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
        """POST one notification, signed for this attempt; returns a
        DeliveryOutcome, never raises for HTTP, TLS or connection
        failures."""
        body = encode(cloud_event(notification))
        # Signed here, at each attempt: a resend carries the same id and
        # body with a fresh timestamp, which the receiver's replay check
        # accepts.
        headers = signature_headers(self._key, notification.id, body,
                                    self._clock())
        outcome = http_edge.post(
            self._session.post, _PEER, self.timeout, self.url, data=body,
            headers={'Content-Type': CONTENT_TYPE,
                     'Accept': 'application/json, text/plain, */*',
                     **headers, **http_edge.ANSWER_ENCODING},
            allow_redirects=False, verify=self._verify, stream=True)
        return outcome._replace(
            message=masking.scrub(outcome.message, self._url_secrets))
