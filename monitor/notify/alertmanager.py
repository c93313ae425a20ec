"""The Alertmanager edge: a failed guest becomes an alert in Prometheus's
Alertmanager, firing while the guest is down, resolved when it is back.

``[notifier] driver = alertmanager``. ``AlertmanagerClient.send`` has the
contract of the other clients (a ``DeliveryOutcome``, never an exception
for HTTP, TLS or connection problems), so the outbox and the delivery
worker send, retry and record alerts exactly as engine notifications. A
failure notification starts an alert (``alertmanager_alerts``); the
notification that its incident is over (kind RESOLVED) ends it
(``endsAt``).

Several URLs (an HA pair, as Prometheus is given): every alert goes to
each of them, the way Prometheus sends to every Alertmanager it knows. A
notification counts as delivered as soon as one of them has taken it, so
one Alertmanager down holds back neither the others nor the outbox; while
another answers, the delivery worker does not wait for it again, and it
gets every active alert, and the end of each that ended meanwhile, from
the re-post loop once it answers again.

The re-post loop (``run``) sends every active alert to every URL each
``[alertmanager] repost_interval``: Alertmanager resolves an alert that
is not sent again before its ``endsAt``. Every request has the deadline
of ``[alertmanager] timeout`` (``http_edge``), redirects are never
followed, and neither a password nor a token is ever part of a message.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse

import requests
from oslo_config import cfg

from monitor import masking
from monitor.errors import ConfigError
from monitor.notify import alertmanager_alerts as alerts_mod
from monitor.notify import http_edge
from monitor.notify import notification as notification_mod
from monitor.notify import tls_files
from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind

LOG = logging.getLogger(__name__)

GROUP = 'alertmanager'

API_PATH = '/api/v2/alerts'

# Alerts per request of a re-post: a host with many failed guests makes
# several small requests rather than one large one.
BATCH = 200

OPTS = [
    cfg.ListOpt(
        'urls',
        help="""
Base URLs of the Alertmanagers, comma separated, e.g.
http://127.0.0.1:9093 (the API path /api/v2/alerts is appended). Every
alert goes to each of them, as Prometheus sends to every Alertmanager of
an HA pair. Redirects are not followed. Default: unset (required with
[notifier] driver = alertmanager).
"""),
    cfg.FloatOpt(
        'repost_interval',
        default=60.0, min=5.0, max=3600.0,
        help="""
Seconds between two re-posts of the active alerts to every Alertmanager.
Each alert is sent valid for four intervals (its endsAt), so an
Alertmanager resolves it by itself once the monitor has stopped sending it
for that long. From 5 to 3600. Default 60.
"""),
    cfg.FloatOpt(
        'timeout',
        default=10.0, min=0.1, max=600.0,
        help="""
Seconds one POST to one Alertmanager may take, connecting and receiving
the answer included. From 0.1 to 600. Default 10.
"""),
    cfg.StrOpt(
        'username',
        help="""
User name for HTTP basic authentication to the Alertmanagers (their
web.config.file basic_auth_users). Default: unset, no authentication.

Related options:

* [alertmanager] password, [alertmanager] bearer_token
"""),
    cfg.StrOpt(
        'password',
        secret=True,
        help='Password of [alertmanager] username. Never logged. Default: '
             'unset.'),
    cfg.StrOpt(
        'bearer_token',
        secret=True,
        help="""
Token sent as "Authorization: Bearer <token>" (an authenticating proxy in
front of the Alertmanagers). Not together with a username. Never logged.
Default: unset.
"""),
    cfg.StrOpt(
        'cafile',
        help="""
PEM file of the certificate authorities that may sign the Alertmanagers'
certificates, for https URLs. Default: unset, the system's trusted
authorities.
"""),
    cfg.BoolOpt(
        'insecure',
        default=False,
        help="""
Do not verify the Alertmanagers' TLS certificates. For a test bed only:
anyone on the path can then read and forge alerts. Default false.
"""),
]


def list_opts():
    return [(GROUP, OPTS)]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def check_required(conf):
    """What ``[notifier] driver = alertmanager`` needs.

    :raises ConfigError: naming ``[alertmanager] urls``.
    """
    if not conf[GROUP].urls:
        raise ConfigError(GROUP, 'urls', 'required with [notifier] driver '
                          '= alertmanager: at least one Alertmanager URL')


def check_conf(conf):
    """The options of this group that are set, checked at start whatever
    the driver: a mistake is heard of now, not when the driver is
    switched.

    :raises ConfigError: naming the option.
    """
    group = conf[GROUP]
    for url in group.urls or ():
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ConfigError(GROUP, 'urls', '%s is not an http or https URL'
                              % masking.mask(url))
        if parts.password:
            raise ConfigError(GROUP, 'urls', '%s carries a password: set '
                              '[alertmanager] username and password instead'
                              % masking.mask(url))
    if group.username and group.bearer_token:
        raise ConfigError(GROUP, 'bearer_token', 'not together with '
                          '[alertmanager] username: choose one '
                          'authentication')
    if group.password and not group.username:
        raise ConfigError(GROUP, 'password', 'set without [alertmanager] '
                          'username: set both, or neither')
    if group.cafile:
        tls_files.check_cafile(GROUP, 'cafile', group.cafile)


_PEER = http_edge.Peer(
    name='the Alertmanager',
    accepted=frozenset(range(200, 300)), accepted_text='2xx',
    timeout_option='[alertmanager] timeout',
    errors=(requests.exceptions.RequestException,),
    describe=http_edge.describe_requests_failure,
    redirect_hint='; set [alertmanager] urls to the final address')


def _api_url(base):
    return base.rstrip('/') + API_PATH


def encode(alerts):
    return json.dumps(alerts, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=True).encode('ascii')


class AlertmanagerClient:
    """Sends alerts to every URL of ``urls`` and re-posts the active ones.

    ``state_file``: where the active alerts are kept (None: in memory
    only, for tests).
    """

    def __init__(self, urls, state_file=None, timeout=10.0,
                 repost_interval=60.0, username=None, password=None,
                 bearer_token=None, cafile=None, insecure=False,
                 clock=time.time):
        if not urls:
            raise ValueError('at least one Alertmanager URL is required')
        self.urls = [u.rstrip('/') for u in urls]
        self.timeout = timeout
        self.repost_interval = repost_interval
        self._clock = clock
        self._secrets = [(s, masking.MASK) for s in (password, bearer_token)
                         if s]
        masking.add_known_secrets(self._secrets)
        self._verify = False if insecure else (cafile or True)
        self._headers = {'Content-Type': 'application/json',
                         'Accept': 'application/json, */*',
                         'User-Agent': 'guest-health-monitor',
                         **http_edge.ANSWER_ENCODING}
        if bearer_token:
            self._headers['Authorization'] = 'Bearer ' + bearer_token
        self._auth = (username, password or '') if username else None
        # One session per green thread that sends: the delivery worker's
        # and the re-post loop's.
        self._sessions = {name: self._session() for name in ('send',
                                                             'repost')}
        self.alerts = alerts_mod.ActiveAlerts(state_file)
        self._lock = threading.Lock()
        # Held from a re-post pass's reading of the alerts to its last
        # POST, and around the sending of an end: a pass that read an
        # alert as firing must not reach an Alertmanager after its end,
        # which would make it active there again for valid_for seconds.
        # Every POST under it has the [alertmanager] timeout.
        self._posting = threading.Lock()
        # URL -> why it last failed, while it does: said once when it
        # starts failing and once when it answers again.
        self._down = {}

    @staticmethod
    def _session():
        session = requests.Session()
        # Trust and proxies come from the daemon's options, never from
        # the environment it was started in.
        session.trust_env = False
        return session

    @classmethod
    def from_conf(cls, conf, clock=time.time):
        group = conf[GROUP]
        return cls(group.urls, alerts_mod.state_file(conf.state_path),
                   timeout=group.timeout,
                   repost_interval=group.repost_interval,
                   username=group.username, password=group.password,
                   bearer_token=group.bearer_token, cafile=group.cafile,
                   insecure=group.insecure, clock=clock)

    def __repr__(self):
        return '<AlertmanagerClient %s>' % ', '.join(
            masking.mask(u) for u in self.urls)

    def close(self):
        for session in self._sessions.values():
            session.close()

    @property
    def valid_for(self):
        """Seconds an alert stays valid without a re-post."""
        return alerts_mod.VALIDITY_INTERVALS * self.repost_interval

    # -- one notification -------------------------------------------------

    def send(self, notification):
        """Start or end the alert of ``notification``; a DeliveryOutcome,
        never an exception for HTTP, TLS or connection failures."""
        if notification.kind == notification_mod.RESOLVED:
            return self._send_end(notification)
        return self._send_failure(notification)

    def _send_failure(self, notification):
        now = self._clock()
        alert = alerts_mod.alert_of(notification)
        valid_until = now + self.valid_for
        posted = dict(alert, endsAt=alerts_mod.rfc3339(valid_until))
        outcomes = self._post_up_first(self.urls, [posted])
        outcome = _combined(outcomes)
        if outcome.kind == OutcomeKind.ACCEPTED:
            with self._lock:
                self.alerts.add(notification.id, notification.instance_uuid,
                                alert, valid_until, now, self.urls)
        return outcome

    def _send_end(self, notification):
        with self._posting:
            return self._send_end_now(notification)

    def _send_end_now(self, notification):
        failure_id = (notification.details or {}).get('resolves')
        with self._lock:
            entry = self.alerts.get(failure_id) if failure_id else None
            if entry is None:
                return DeliveryOutcome(
                    OutcomeKind.ACCEPTED, None,
                    'not sent: no active alert for this failure')
            if entry['ends_at'] is None:
                ended_at = alerts_mod.epoch_of(notification.generated_time)
                self.alerts.end(failure_id, ended_at, self.urls)
            owed = list(entry['owed'])
            posted = dict(entry['alert'],
                          endsAt=alerts_mod.rfc3339(entry['ends_at']))
        if not owed:
            return DeliveryOutcome(OutcomeKind.ACCEPTED, None, '')
        outcomes = self._post_up_first(owed, [posted])
        with self._lock:
            for url, outcome in outcomes:
                if outcome.kind in (OutcomeKind.ACCEPTED,
                                    OutcomeKind.REJECTED):
                    self.alerts.settled(failure_id, url)
        return _combined(outcomes)

    # -- re-posts ---------------------------------------------------------

    def run(self, stop_event):
        """Re-post the active alerts every ``repost_interval`` until
        ``stop_event`` is set; the first pass at once (a restart)."""
        LOG.info('Re-posting active alerts to %d Alertmanager(s) every '
                 '%.0f s; %d alert(s) active', len(self.urls),
                 self.repost_interval, len(self.alerts))
        while not stop_event.is_set():
            try:
                self.repost()
            except Exception:  # loop boundary: never stop re-posting
                LOG.exception('Re-posting the active alerts failed; next '
                              'pass in %.0f s', self.repost_interval)
            stop_event.wait(self.repost_interval)

    def repost(self):
        """One pass: every firing alert, and every end still owed, to
        each URL; returns {url: [outcome, ...]}."""
        with self._posting:
            return self._repost_now()

    def _repost_now(self):
        now = self._clock()
        valid_until = now + self.valid_for
        with self._lock:
            self.alerts.expire(now)
            firing = self.alerts.firing()
            ended = self.alerts.ended()
        results = {}
        for url in self.urls:
            batch = [(key, dict(e['alert'],
                                endsAt=alerts_mod.rfc3339(valid_until)))
                     for key, e in sorted(firing.items())]
            batch += [(key, dict(e['alert'],
                                 endsAt=alerts_mod.rfc3339(e['ends_at'])))
                      for key, e in sorted(ended.items())
                      if url in e['owed']]
            results[url] = []
            for start in range(0, len(batch), BATCH):
                part = batch[start:start + BATCH]
                [(_, outcome)] = self._post_each(
                    [url], [alert for _key, alert in part], 'repost')
                results[url].append(outcome)
                if outcome.kind == OutcomeKind.RETRY:
                    break  # down: the rest waits for the next pass
                with self._lock:
                    taken = [key for key, _alert in part]
                    self.alerts.refreshed(
                        [k for k in taken if k in firing], valid_until)
                    for key in taken:
                        if key in ended:
                            self.alerts.settled(key, url)
        return results

    # -- HTTP -------------------------------------------------------------

    def _post_up_first(self, urls, alerts):
        """POST to the URLs of ``urls`` that answered last time; to the
        others only when none of those took it: an Alertmanager that is
        down (or hangs until the timeout) costs the delivery worker
        nothing while another one answers, and gets the alert from the
        re-post loop once back."""
        up = [u for u in urls if u not in self._down]
        outcomes = self._post_each(up, alerts, 'send')
        if not any(o.kind == OutcomeKind.ACCEPTED for _u, o in outcomes):
            outcomes += self._post_each([u for u in urls if u not in up],
                                        alerts, 'send')
        return outcomes

    def _post_each(self, urls, alerts, session):
        """POST ``alerts`` to each of ``urls``: [(url, outcome)]."""
        body = encode(alerts)
        results = []
        for url in urls:
            outcome = http_edge.post(
                self._sessions[session].post, _PEER, self.timeout,
                _api_url(url), data=body, headers=self._headers,
                auth=self._auth, allow_redirects=False,
                verify=self._verify, stream=True)
            outcome = outcome._replace(message=masking.scrub(
                outcome.message, self._secrets))
            self._note(url, outcome)
            results.append((url, outcome))
        return results

    def _note(self, url, outcome):
        shown = masking.mask(url)
        if outcome.kind == OutcomeKind.ACCEPTED:
            if self._down.pop(url, None) is not None:
                LOG.info('Alertmanager %s takes alerts again', shown)
            return
        if url not in self._down:
            LOG.warning('Alertmanager %s did not take alerts (HTTP %s): %s;'
                        ' the others still get them, and it gets every '
                        'active alert once it answers again', shown,
                        outcome.status_code, outcome.message)
        self._down[url] = outcome.message


def _combined(outcomes):
    """One outcome for the notification: delivered once one Alertmanager
    has it; refused for good only when every one refused it."""
    failed = [(url, o) for url, o in outcomes
              if o.kind != OutcomeKind.ACCEPTED]
    text = '; '.join('%s: %s' % (masking.mask(url), o.message)
                     for url, o in failed)
    if len(failed) < len(outcomes):
        if not failed:
            return DeliveryOutcome(OutcomeKind.ACCEPTED, 200, '')
        return DeliveryOutcome(
            OutcomeKind.ACCEPTED, 200,
            'taken by %d of the %d Alertmanagers tried; re-posted to the '
            'others: %s' % (len(outcomes) - len(failed), len(outcomes),
                            text))
    if all(o.kind == OutcomeKind.REJECTED for _url, o in failed):
        return DeliveryOutcome(OutcomeKind.REJECTED, failed[0][1].status_code,
                               text)
    status = next((o.status_code for _u, o in failed
                   if o.kind == OutcomeKind.RETRY), None)
    return DeliveryOutcome(OutcomeKind.RETRY, status, text)
