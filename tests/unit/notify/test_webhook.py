"""The webhook client: the CloudEvent it POSTs and its Standard Webhooks
signature, as the reference libraries read them, how every answer of a
real HTTP receiver on 127.0.0.1 is classified, and that the outbox's
delivery worker retries it like the HA engine."""

import base64
import dataclasses
import datetime
import hashlib
import hmac
import http.server
import itertools
import json
import logging
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time

import pytest
import standardwebhooks
from oslo_config import cfg

from lab import webhook_receiver
from monitor.conf import log_setup
from monitor.errors import ConfigError
from monitor.health import recovery_policy as recovery
from monitor.notify import delivery
from monitor.notify import notification as notification_mod
from monitor.notify import webhook
from monitor.notify.notification import OutcomeKind
from monitor.notify.outbox import Outbox
from monitor.store import evidence
from tests.unit import http_engine
from tests.unit.http_engine import HANG
from tests.unit.http_engine import Response

KEY = bytes(range(32))
SECRET = 'whsec_' + base64.b64encode(KEY).decode()
UUID = '6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1'


def details(misses=3, result=recovery.RESULT_DONE):
    report = recovery.RecoveryReport(recovery.RESET, result, 'reset')
    ref = evidence.EvidenceRef(
        'console', '/var/lib/guest-health-monitor/evidence/x-console.log',
        12, 'ab' * 32, 'text/plain')
    return recovery.notification_details(
        misses, report, [ref],
        reason='3 consecutive missed pings (failure threshold 3)')


def notification(at=1700000000.0, with_details=True):
    return notification_mod.Notification.new(
        instance_uuid=UUID, domain_name='appliance-1', hostname='hv-1', at=at,
        details=details() if with_details else None)


@pytest.fixture
def servers():
    started = []

    def start(responder):
        server = http_engine.HTTPServer(responder)
        started.append(server)
        return server
    yield start
    for server in started:
        server.close()


@pytest.fixture
def receiver():
    with webhook_receiver.WebhookReceiver(SECRET) as running:
        yield running


def client(url, **kwargs):
    return webhook.WebhookClient(url, SECRET, **kwargs)


class Clock:
    """Epoch seconds that move only when told."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


# -- the CloudEvent --------------------------------------------------------------

def test_the_post_is_a_structured_mode_cloudevent(receiver):
    n = notification()
    client(receiver.url).send(n)

    [got] = receiver.valid()
    assert got.header('Content-Type') == 'application/cloudevents+json'
    event = got.event
    assert event.get_specversion() == '1.0'
    assert event.get_id() == n.id
    assert event.get_source() == '//guest-health-monitor/hv-1'
    assert event.get_type() == 'io.guest-health-monitor.guest.failed'
    assert event.get_subject() == 'appliance-1'
    assert event.get_time().isoformat() == '2023-11-14T22:13:20+00:00'
    assert event.get_datacontenttype() == 'application/json'


def test_the_data_carries_the_whole_incident(receiver):
    client(receiver.url).send(notification())

    assert receiver.valid()[0].data() == {
        'host': 'hv-1',
        'domain_uuid': UUID,
        'domain_name': 'appliance-1',
        'event': 'QEMU_GUEST_AGENT_ERROR',
        'vir_domain_event': 'STOPPED_FAILED',
        'reason': '3 consecutive missed pings (failure threshold 3)',
        'consecutive_misses': 3,
        'recovery': {'action': 'reset', 'result': 'done', 'detail': 'reset'},
        'evidence': [{
            'kind': 'console',
            'path': '/var/lib/guest-health-monitor/evidence/x-console.log',
            'size': 12, 'sha256': 'ab' * 32, 'media_type': 'text/plain'}],
        'resolves': None,
    }


def test_a_notification_without_incident_facts_still_goes_out(receiver):
    client(receiver.url).send(notification(with_details=False))

    data = receiver.valid()[0].data()
    assert data['reason'] is None
    assert data['consecutive_misses'] is None
    assert data['recovery'] is None
    assert data['evidence'] == []


@pytest.mark.parametrize('result, kind', [
    (recovery.RESULT_DONE, 'failed'),
    (recovery.RESULT_NOT_REQUESTED, 'failed'),
    (recovery.RESULT_BREAKER_OPEN, 'failed'),
    (recovery.RESULT_INTERRUPTED, 'failed'),
    (recovery.RESULT_TIMED_OUT, 'failed'),
    (recovery.RESULT_BUDGET_EXHAUSTED, 'recovery_exhausted'),
    (recovery.RESULT_FAILED, 'recovery_exhausted'),
])
def test_the_type_says_whether_the_recovery_is_exhausted(result, kind):
    n = dataclasses.replace(notification(), details=details(result=result))

    assert webhook.event_type(n) == 'io.guest-health-monitor.guest.' + kind


def test_a_notification_without_details_is_a_failure():
    assert webhook.event_type(notification(with_details=False)) == \
        webhook.TYPE_FAILED


def test_an_application_failure_and_its_end_have_types_of_their_own():
    app = dataclasses.replace(
        notification(), details=dict(details(result=recovery.RESULT_FAILED),
                                     incident='application'))
    ended = notification_mod.Notification.resolving(
        app, 1700000100.0,
        details={'resolves': app.id, 'incident': 'application',
                 'reason': 'application probe passes again'})

    assert webhook.event_type(app) == webhook.TYPE_APPLICATION_FAILED
    assert webhook.event_type(ended) == webhook.TYPE_APPLICATION_RECOVERED


def test_the_end_of_a_failure_is_a_recovered_event(receiver):
    failure = notification()
    ended = notification_mod.Notification.resolving(
        failure, 1700000100.0,
        details={'resolves': failure.id,
                 'reason': 'guest agent answered again',
                 'failure': failure.details['reason']})

    client(receiver.url).send(ended)

    [got] = receiver.valid()
    assert got.event.get_type() == 'io.guest-health-monitor.guest.recovered'
    assert got.event.get_id() == ended.id != failure.id
    assert got.event.get_subject() == 'appliance-1'
    data = got.data()
    assert data['resolves'] == failure.id
    assert data['reason'] == 'guest agent answered again'
    assert data['failure'] == \
        '3 consecutive missed pings (failure threshold 3)'
    assert data['recovery'] is None


def test_other_details_are_passed_on_under_their_own_names():
    n = dataclasses.replace(notification(),
                            details={**details(), 'incident': 'application'})

    data = webhook.event_data(n)

    assert data['incident'] == 'application'
    assert data['consecutive_misses'] == 3


def test_an_unusual_host_name_is_escaped_in_the_source():
    assert webhook.source('hv 1/a') == '//guest-health-monitor/hv%201%2Fa'


# -- the Standard Webhooks signature -------------------------------------------

def test_the_reference_library_verifies_what_was_sent(receiver):
    outcome = client(receiver.url).send(notification())

    assert outcome.kind == OutcomeKind.ACCEPTED
    [got] = receiver.deliveries
    assert got.signature_valid and got.refusal is None


def test_the_signature_is_the_hmac_of_id_timestamp_and_body(receiver):
    n = notification()
    client(receiver.url, clock=Clock(1800000000.7)).send(n)

    # Refused as too old, but what was signed is what was sent.
    [got] = receiver.deliveries
    assert got.header('webhook-id') == n.id
    assert got.header('webhook-timestamp') == '1800000000'
    signed = b'%s.1800000000.%s' % (n.id.encode(), got.body)
    expected = hmac.new(KEY, signed, hashlib.sha256).digest()
    assert got.header('webhook-signature') == \
        'v1,' + base64.b64encode(expected).decode()


def test_a_receiver_with_another_secret_refuses_the_signature():
    other_secret = 'whsec_' + base64.b64encode(b'x' * 32).decode()
    with webhook_receiver.WebhookReceiver(other_secret) as other:
        outcome = client(other.url).send(notification())

    assert not other.deliveries[0].signature_valid
    assert other.deliveries[0].refusal == 'No matching signature found'
    # Its 401 says nothing about the report: kept and retried.
    assert outcome.kind == OutcomeKind.RETRY


def test_a_request_signed_more_than_five_minutes_ago_is_refused(receiver):
    # A captured request replayed six minutes later: its timestamp is the
    # one it was signed with.
    replayed = client(receiver.url, clock=Clock(time.time() - 360))

    outcome = replayed.send(notification())

    [got] = receiver.deliveries
    assert not got.signature_valid
    assert got.refusal == 'Message timestamp too old'
    assert outcome.kind == OutcomeKind.RETRY


def test_a_resend_keeps_the_id_and_body_and_is_signed_afresh(receiver):
    clock = Clock(time.time() - 200)
    sender = client(receiver.url, clock=clock)
    n = notification()

    sender.send(n)
    clock.now += 150
    sender.send(n)

    first, second = receiver.deliveries
    assert first.signature_valid and second.signature_valid
    assert first.header('webhook-id') == second.header('webhook-id') == n.id
    assert first.event.get_id() == second.event.get_id() == n.id
    assert first.body == second.body
    assert int(second.header('webhook-timestamp')) == \
        int(first.header('webhook-timestamp')) + 150
    assert first.header('webhook-signature') != \
        second.header('webhook-signature')


def test_a_resend_signed_now_passes_where_the_first_attempt_is_too_old(
        receiver):
    clock = Clock(time.time() - 600)
    sender = client(receiver.url, clock=clock)
    n = notification()

    assert sender.send(n).kind == OutcomeKind.RETRY
    clock.now = time.time()
    assert sender.send(n).kind == OutcomeKind.ACCEPTED

    stale, fresh = receiver.deliveries
    assert stale.header('webhook-id') == fresh.header('webhook-id')
    assert (stale.signature_valid, fresh.signature_valid) == (False, True)


def test_no_header_of_the_old_format_is_sent(receiver):
    client(receiver.url).send(notification())

    [got] = receiver.deliveries
    assert got.header('X-Signature-256') is None
    assert got.header('X-Notification-Id') is None


def test_the_secret_is_never_in_the_body_repr_or_an_outcome(servers):
    server = servers(http_engine.reply(500, b'boom'))
    sender = client(server.url)

    outcome = sender.send(notification())

    for text in (SECRET, SECRET[len('whsec_'):]):
        assert text not in outcome.message
        assert text not in repr(sender)
        assert text.encode() not in server.requests[0].body
    assert KEY not in server.requests[0].body


def test_the_library_signs_as_the_client_does():
    n = notification()
    body = webhook.encode(webhook.cloud_event(n))
    headers = webhook.signature_headers(KEY, n.id, body, 1700000000.0)

    expected = standardwebhooks.Webhook(SECRET).sign(
        n.id, datetime.datetime.fromtimestamp(1700000000,
                                              datetime.timezone.utc), body)
    assert headers['webhook-signature'] == expected


# -- the secret -------------------------------------------------------------------

def test_the_key_is_the_base64_after_the_prefix():
    assert webhook.secret_key(SECRET) == KEY
    # Padding is optional, as for the reference libraries.
    assert webhook.secret_key(SECRET.rstrip('=')) == KEY


@pytest.mark.parametrize('secret, says', [
    ('s3cret-never-logged', 'does not start with "whsec_"'),
    (base64.b64encode(KEY).decode(), 'does not start with "whsec_"'),
    ('whsec_not base64!', 'not base64'),
    ('whsec_' + base64.urlsafe_b64encode(b'\xfb' * 32).decode(),
     'not base64'),
    ('whsec_' + base64.b64encode(b'k' * 16).decode(), 'the key is 16 bytes'),
    ('whsec_' + base64.b64encode(b'k' * 65).decode(), 'the key is 65 bytes'),
])
def test_a_secret_not_in_the_standard_form_is_refused(secret, says):
    with pytest.raises(ValueError) as caught:
        webhook.secret_key(secret)

    message = str(caught.value)
    assert says in message
    assert 'openssl rand -base64 32' in message
    assert secret not in message
    with pytest.raises(ValueError):
        webhook.WebhookClient('http://127.0.0.1:1/hook', secret)


def test_the_suggested_command_makes_a_secret_the_client_accepts():
    if shutil.which('openssl') is None:
        pytest.skip('openssl is needed to run the suggested command')
    made = subprocess.run(['sh', '-c', webhook.MAKE_SECRET], check=True,
                          capture_output=True, text=True).stdout.strip()

    assert len(webhook.secret_key(made)) == 32
    assert webhook.secret_key(webhook_receiver.make_secret())


# -- answers ------------------------------------------------------------------

@pytest.mark.parametrize('status', [200, 201, 202, 204])
def test_any_2xx_is_accepted(servers, status):
    server = servers(http_engine.reply(status))

    outcome = client(server.url).send(notification())

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert outcome.status_code == status


@pytest.mark.parametrize('status', [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_is_retried_naming_the_location(
        servers, status):
    target = servers(http_engine.reply(202))
    location = target.url + '/v2/elsewhere'
    server = servers(http_engine.reply(status, b'',
                                       {'Location': location}))

    outcome = client(server.url).send(notification())

    assert target.requests == []
    assert len(server.requests) == 1
    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == status
    # Named as a webhook URL is logged: it may carry the same token.
    assert 'Location %s/v2/***)' % target.url in outcome.message


@pytest.mark.parametrize('status', [500, 502, 503, 504])
def test_a_5xx_is_retried_with_the_status_and_message(servers, status):
    server = servers(http_engine.reply(status, b'receiver is\n restarting'))

    outcome = client(server.url).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == status
    assert outcome.message == 'HTTP %d: receiver is restarting' % status


def test_409_means_the_receiver_already_has_it(servers):
    server = servers(http_engine.reply(409, b'already have it'))

    outcome = client(server.url).send(notification())

    assert outcome.kind == OutcomeKind.DUPLICATE
    assert outcome.done


def test_400_is_rejected_with_the_receivers_message(servers):
    server = servers(http_engine.reply(400, b'unknown field'))

    outcome = client(server.url).send(notification())

    assert outcome.kind == OutcomeKind.REJECTED
    assert outcome.message == 'unknown field'


@pytest.mark.parametrize('status', [401, 403, 404, 405, 408, 429])
def test_answers_that_say_nothing_about_the_report_are_retried(servers,
                                                                status):
    server = servers(http_engine.reply(status))

    assert client(server.url).send(notification()).kind == OutcomeKind.RETRY


def test_a_refused_connection_is_retried():
    url = 'http://127.0.0.1:%d/hook' % http_engine.refused_port()

    outcome = client(url).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code is None
    assert outcome.message.startswith('connection failed:')


def test_a_receiver_that_hangs_past_the_timeout_is_retried(servers):
    server = servers(lambda request: HANG)

    outcome = client(server.url, timeout=0.5).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.message.startswith('timed out')


class _EndlessBody(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_POST(self):
        self.rfile.read(int(self.headers['Content-Length']))
        self.send_response(500)
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        chunk = b'x' * 65536
        try:
            while not self.server.stopping.is_set():
                self.wfile.write(b'%x\r\n%s\r\n' % (len(chunk), chunk))
        except OSError:
            pass

    def log_message(self, *args):
        pass


class _EndlessServer(http.server.ThreadingHTTPServer):
    # Bound when this module is imported: a test that imports eventlet's
    # WSGI server leaves a green copy as ``http.server``, whose shutdown
    # would wait for ever from a native thread.
    daemon_threads = True


def test_an_endless_answer_is_read_only_up_to_the_cap():
    server = _EndlessServer(('127.0.0.1', 0), _EndlessBody)
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = 'http://127.0.0.1:%d/hook' % server.server_address[1]
        outcome = client(url, timeout=30).send(notification())
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == 500
    assert len(outcome.message) <= 520


# -- a receiver that trickles its answer ------------------------------------------

# One byte every half second, with [webhook] timeout = 2: without one
# deadline over the whole request, each byte would restart a per-read
# timeout and one POST would hold delivery for as long as the receiver
# pleased.
TRICKLE_INTERVAL = 0.5
TRICKLE_TIMEOUT = 2
# The attempt ends at the timeout; the margin is for a loaded machine.
TRICKLE_BOUND = 3.0

TRICKLES = {
    # The headers never end: no per-read timeout ever fires.
    'headers': b'HTTP/1.1 200 OK\r\nX-Slow: ',
    # An accepted answer whose body never completes: truncated, so not a
    # delivery.
    'body': http_engine.raw_head(200, 'OK', [('Content-Length', 1000)]),
}


def trickling(head, bytewise=False):
    """The answer ``head`` then endless 'x', one chunk per interval:
    ``head`` whole then a byte at a time, or every byte on its own."""
    if bytewise:
        chunks = (bytes([b]) for b in itertools.chain(
            head, itertools.repeat(ord('x'))))
    else:
        chunks = itertools.chain([head], itertools.repeat(b'x'))
    return http_engine.Raw(chunks, TRICKLE_INTERVAL)


def timed(send):
    start = time.monotonic()
    outcome = send()
    return outcome, time.monotonic() - start


def test_a_trickling_answer_ends_the_attempt_at_the_timeout(servers):
    server = servers(lambda request: trickling(TRICKLES['body']))
    sender = client(server.url, timeout=TRICKLE_TIMEOUT)

    outcome, seconds = timed(lambda: sender.send(notification()))

    assert seconds < TRICKLE_BOUND
    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == 200
    assert 'not complete within [webhook] timeout' in outcome.message


def test_the_delivery_worker_retries_a_trickling_receiver(tmp_path, servers):
    server = servers(lambda request: trickling(TRICKLES['body']))
    box = Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
    worker = delivery.DeliveryWorker(
        box, client(server.url, timeout=TRICKLE_TIMEOUT),
        retry_policy=delivery.RetryPolicy(jitter=0.0))
    n = notification(with_details=False)
    box.enqueue(n, now=1000.0)

    [(entry, outcome)], seconds = timed(lambda: worker.run_once(now=1000.0))

    assert seconds < TRICKLE_BOUND
    assert outcome.kind == OutcomeKind.RETRY
    assert (entry.status, entry.attempts) == ('pending', 1)
    assert entry.next_attempt_at > 1000.0
    assert '[webhook] timeout' in entry.last_error
    box.close()


def green_attempt(how, url, path):
    """One attempt from a green thread of a monkey-patched process, as the
    daemon makes it: what ``tests.unit.green_webhook`` prints."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    done = subprocess.run(
        [sys.executable, '-m', 'tests.unit.green_webhook', how, url,
         str(TRICKLE_TIMEOUT), str(path)],
        cwd=root, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('how, trickle, bytewise', [
    ('client', 'headers', False),
    ('worker', 'headers', False),
    ('worker', 'body', False),
    ('client', 'body', True),
], ids=['client-headers', 'worker-headers', 'worker-body',
        'client-every-byte'])
def test_under_eventlet_a_trickling_answer_ends_the_attempt_at_the_timeout(
        tmp_path, servers, how, trickle, bytewise):
    server = servers(lambda request: trickling(TRICKLES[trickle], bytewise))

    result = green_attempt(how, server.url + '/hook',
                           tmp_path / 'outbox.sqlite')

    assert result['seconds'] < TRICKLE_BOUND
    assert result['outcome']['kind'] == 'RETRY'
    assert '[webhook] timeout' in result['outcome']['message']
    assert (result['status'], result['attempts']) == (
        'pending', 1 if how == 'worker' else 0)


# -- what a receiver answers, as it is kept and logged ----------------------------

def test_control_characters_in_an_answer_are_kept_as_escapes(tmp_path,
                                                             servers):
    server = servers(http_engine.reply(
        503, b'busy\x1b[2J\x1b]0;owned\x07 2026-01-01 ERROR forged'))
    box = Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
    worker = delivery.DeliveryWorker(box, client(server.url))
    n = notification(with_details=False)
    box.enqueue(n, now=1000.0)

    [(entry, outcome)] = worker.run_once(now=1000.0)

    assert outcome.message == ('HTTP 503: busy\\x1b[2J\\x1b]0;owned\\x07 '
                               '2026-01-01 ERROR forged')
    assert entry.last_error == outcome.message
    box.close()


def test_a_huge_location_is_named_short(servers):
    location = 'https://elsewhere.example/' + 'a' * 60000
    server = servers(http_engine.reply(302, b'', {'Location': location}))

    outcome = client(server.url).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert 'Location https://elsewhere.example/***' in outcome.message
    assert len(outcome.message) < 500


# -- tokens in the URL ------------------------------------------------------------

TOKEN_PATHS = {
    'slack': '/services/T0A1B2C3D4/B0A1B2C3D4/aBcDeFgHiJkLmNoPqRsTuVwX',
    'discord': '/api/webhooks/112233445566778899/Zy-XwVuTsRqPoNmLkJiHgFe',
    'teams': '/webhookb2/0f8fad5b-d9cb-469f-a165-70867728950e/'
             'IncomingWebhook/6d5e4f3a2b1c4d5e?sig=Q29udG9zb1NpZ25hdHVyZQ',
    'query': '/hook?key=k3y-value-0123&sig=s1gnature-4567&sv=2022-11-02',
}
TOKENS = ['T0A1B2C3D4', 'aBcDeFgHiJ', '112233445566778899', 'Zy-XwVuTs',
          '0f8fad5b', '6d5e4f3a2b1c4d5e', 'Q29udG9zb1', 'k3y-value',
          's1gnature', '2022-11-02']


def assert_no_token(text):
    for token in TOKENS:
        assert token not in text


@pytest.mark.parametrize('kind', sorted(TOKEN_PATHS))
def test_a_token_in_the_url_is_never_in_an_outcome_or_the_log(
        servers, caplog, kind):
    server = servers(http_engine.reply(503, b'down'))
    url = server.url + TOKEN_PATHS[kind]
    refused = 'http://127.0.0.1:%d%s' % (http_engine.refused_port(),
                                         TOKEN_PATHS[kind])

    with caplog.at_level(logging.DEBUG):
        answered = client(url).send(notification())
        unreachable = client(refused).send(notification())

    assert len(server.requests) == 1
    assert answered.kind == unreachable.kind == OutcomeKind.RETRY
    assert unreachable.message.startswith('connection failed:')
    assert_no_token(answered.message + unreachable.message)
    assert_no_token(repr(client(url)))
    # As the daemon's log handlers format them (urllib3 names the path).
    formatter = log_setup.MaskingFormatter(logging.Formatter('%(message)s'))
    logged = '\n'.join(formatter.format(r) for r in caplog.records)
    assert 'POST %s/' % server.url in logged
    assert '"POST /' in logged
    assert_no_token(logged)


def test_the_url_option_is_never_logged_whole():
    [url] = [opt for opt in webhook.OPTS if opt.dest == 'url']
    assert url.secret


# -- TLS ----------------------------------------------------------------------

@pytest.fixture
def tls_receiver(tmp_path):
    if shutil.which('openssl') is None:
        pytest.skip('openssl is needed to make a test certificate')
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
         '-keyout', str(key), '-out', str(cert), '-days', '1',
         '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
        check=True, capture_output=True)
    receiver = webhook_receiver.WebhookReceiver(SECRET).start()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    receiver._server.socket = context.wrap_socket(receiver._server.socket,
                                                  server_side=True)
    yield receiver.url.replace('http:', 'https:'), str(cert), receiver
    receiver.stop()


def test_an_unknown_certificate_is_refused_and_retried(tls_receiver):
    url, _cafile, receiver = tls_receiver

    outcome = client(url).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.message.startswith('TLS verification failed')
    assert receiver.deliveries == []


def test_a_certificate_signed_by_the_cafile_is_trusted(tls_receiver):
    url, cafile, receiver = tls_receiver

    outcome = client(url, cafile=cafile).send(notification())

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert receiver.deliveries[0].signature_valid


# -- configuration --------------------------------------------------------------

def conf_with(tmp_path, **webhook_opts):
    path = tmp_path / 'monitor.conf'
    path.write_text('[webhook]\n' + ''.join(
        '%s = %s\n' % item for item in webhook_opts.items()))
    conf = cfg.ConfigOpts()
    webhook.register_opts(conf)
    conf(args=['--config-file', str(path)], default_config_files=[])
    return conf


def test_the_client_is_built_from_its_options(tmp_path, receiver):
    conf = conf_with(tmp_path, url=receiver.url, secret=SECRET, timeout=3)

    sender = webhook.WebhookClient.from_conf(conf)

    assert sender.timeout == 3
    assert sender.send(notification()).kind == OutcomeKind.ACCEPTED
    assert receiver.deliveries[0].signature_valid


def test_the_secret_option_is_masked_in_logs():
    [secret] = [opt for opt in webhook.OPTS if opt.dest == 'secret']
    assert secret.secret


def test_a_client_without_url_or_secret_cannot_be_built():
    with pytest.raises(ValueError):
        webhook.WebhookClient('', SECRET)
    with pytest.raises(ValueError):
        webhook.WebhookClient('http://127.0.0.1:1/hook', '')


def test_a_missing_cafile_is_refused(tmp_path):
    missing = tmp_path / 'no-such-ca.pem'
    conf = conf_with(tmp_path, cafile=missing)

    with pytest.raises(ConfigError) as caught:
        webhook.check_conf(conf)

    assert str(caught.value) == '[webhook] cafile: %s does not exist' % missing


def test_a_cafile_without_a_certificate_is_refused(tmp_path):
    garbage = tmp_path / 'ca.pem'
    garbage.write_text('not a certificate\n')
    conf = conf_with(tmp_path, cafile=garbage)

    with pytest.raises(ConfigError) as caught:
        webhook.check_conf(conf)

    assert str(caught.value).startswith(
        '[webhook] cafile: %s holds no usable CA certificate' % garbage)


def test_no_cafile_means_the_system_authorities(tmp_path):
    webhook.check_conf(conf_with(tmp_path))


def test_a_secret_in_the_standard_form_passes_the_checks(tmp_path):
    webhook.check_conf(conf_with(tmp_path, secret=SECRET))


def test_a_secret_without_the_prefix_is_refused_at_start(tmp_path):
    conf = conf_with(tmp_path, secret='s3cret-never-logged')

    with pytest.raises(ConfigError) as caught:
        webhook.check_conf(conf)

    message = str(caught.value)
    assert message.startswith(
        '[webhook] secret: not a Standard Webhooks signing secret')
    assert 'echo "whsec_$(openssl rand -base64 32)"' in message
    assert 's3cret' not in message


# -- with the outbox ------------------------------------------------------------

def test_the_delivery_worker_retries_a_webhook_until_it_is_accepted(
        tmp_path, servers):
    server = servers(http_engine.script(Response(503, b'busy'),
                                        Response(204)))
    box = Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
    worker = delivery.DeliveryWorker(
        box, client(server.url),
        retry_policy=delivery.RetryPolicy(jitter=0.0))
    n = notification(with_details=False)
    box.enqueue(n, now=1000.0)

    worker.run_once(now=1000.0)
    assert box.get(n.id).status == 'pending'
    worker.run_once(now=1001.0)

    assert box.get(n.id).status == 'delivered'
    assert box.pending() == []
    first, second = server.requests
    assert first.body == second.body
    assert first.headers['webhook-id'] == second.headers['webhook-id'] == n.id
    box.close()


def test_the_details_kept_in_the_outbox_are_in_the_body_and_signed(
        tmp_path, receiver):
    box = Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
    worker = delivery.DeliveryWorker(box, client(receiver.url))
    n = notification()
    box.enqueue(n, now=1000.0)
    box.close()
    # What a restarted daemon reads back is what it sends.
    box = Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
    worker = delivery.DeliveryWorker(box, client(receiver.url))

    worker.run_once(now=1001.0)

    [got] = receiver.valid()
    data = got.data()
    assert data['consecutive_misses'] == 3
    assert data['recovery'] == {'action': 'reset', 'result': 'done',
                                'detail': 'reset'}
    assert [e['kind'] for e in data['evidence']] == ['console']
    assert box.get(n.id).status == 'delivered'
    box.close()
