"""The HTTP edge both notifiers share: how every answer of a real HTTP
server is read and classified, whoever the receiver is."""

import json

import pytest
import requests

from monitor.notify import http_edge
from monitor.notify.notification import OutcomeKind
from tests.unit import http_engine
from tests.unit.http_engine import Raw


def receipt(text):
    try:
        return json.loads(text).get('id')
    except ValueError:
        return None


ENGINE = http_edge.Peer(
    name='the engine', accepted=frozenset({202}), accepted_text='202',
    timeout_option='request_timeout',
    errors=(requests.exceptions.RequestException,),
    describe=lambda e: f'connection failed: {e}',
    receipt_of=receipt)

RECEIVER = ENGINE._replace(
    name='the receiver', accepted=frozenset(range(200, 300)),
    accepted_text='2xx', redirect_hint='; give the final address',
    receipt_of=None)


@pytest.fixture
def server():
    servers = []

    def start(responder):
        started = http_engine.HTTPServer(responder)
        servers.append(started)
        return started
    yield start
    for started in servers:
        started.close()


def post(url, peer=ENGINE, timeout=5.0):
    with requests.Session() as session:
        return http_edge.post(session.post, peer, timeout, url, data=b'{}',
                              headers=dict(http_edge.ANSWER_ENCODING),
                              allow_redirects=False, stream=True)


# -- classification -----------------------------------------------------------

def test_only_the_peers_accepted_statuses_are_deliveries():
    assert http_edge.classify(ENGINE, 202, '{"id": "e-1"}') == (
        OutcomeKind.ACCEPTED, 202, '', 'e-1')
    assert http_edge.classify(RECEIVER, 204, '').kind == OutcomeKind.ACCEPTED

    outcome = http_edge.classify(ENGINE, 200, '')

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.message == ('HTTP 200: the engine answered an unexpected '
                               'status (only 202 means accepted)')


def test_a_capped_answer_still_yields_the_engine_fault_message():
    text = json.dumps({'badRequest': {'code': 400, 'message': 'nope'}})

    outcome = http_edge.classify(ENGINE, 400, text)

    assert (outcome.kind, outcome.message) == (OutcomeKind.REJECTED, 'nope')


@pytest.mark.parametrize('status,kind', [
    (409, OutcomeKind.DUPLICATE),
    (400, OutcomeKind.REJECTED),
    (422, OutcomeKind.REJECTED),
    (401, OutcomeKind.RETRY),
    (404, OutcomeKind.RETRY),
    (429, OutcomeKind.RETRY),
    (500, OutcomeKind.RETRY),
    (503, OutcomeKind.RETRY),
])
def test_each_error_status_has_one_meaning_for_every_peer(status, kind):
    for peer in (ENGINE, RECEIVER):
        assert http_edge.classify(peer, status, 'why').kind == kind


def test_a_redirect_is_retried_naming_its_location_and_the_hint():
    outcome = http_edge.classify(RECEIVER, 307, '', 'http://elsewhere/h')

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.message == ('HTTP 307: redirect not followed (Location '
                               'http://elsewhere/h); give the final address')


# -- reading the answer -------------------------------------------------------

def test_a_redirect_is_not_followed_and_its_location_is_masked(server):
    target = server(http_engine.reply(
        302, b'', {'Location': 'http://user:s3cret@127.0.0.1:9/v1'}))

    outcome = post(target.url)

    assert outcome.kind == OutcomeKind.RETRY
    assert 's3cret' not in outcome.message
    assert 'user:***@127.0.0.1:9/v1' in outcome.message
    assert len(target.requests) == 1


def test_an_answer_shorter_than_its_content_length_is_a_failed_attempt(
        server):
    head = http_engine.raw_head(202, 'Accepted', [('Content-Length', 100)])
    target = server(lambda request: Raw([head, b'{"id": "e-1"']))

    outcome = post(target.url)

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == 202
    assert not outcome.done


def test_an_accepted_answer_longer_than_the_cap_is_still_a_delivery(server):
    body = b'x' * (http_edge.MAX_ANSWER_BYTES * 2)
    target = server(http_engine.reply(200, body))

    outcome = post(target.url, peer=RECEIVER)

    assert outcome.kind == OutcomeKind.ACCEPTED


def test_an_answer_of_exactly_the_cap_is_whole(server):
    text = json.dumps({'id': 'e-2'}).encode()
    body = text + b' ' * (http_edge.MAX_ANSWER_BYTES - len(text))
    target = server(http_engine.reply(202, body))

    outcome = post(target.url)

    assert (outcome.kind, outcome.engine_uuid) == (OutcomeKind.ACCEPTED,
                                                   'e-2')


def test_a_long_error_keeps_the_note_within_the_message_bound(server):
    target = server(http_engine.reply(
        500, b'y' * (http_edge.MAX_ANSWER_BYTES + 10)))

    outcome = post(target.url)

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.message.startswith('HTTP 500: yyy')
    assert outcome.message.endswith(
        f'(answer longer than {http_edge.MAX_ANSWER_BYTES} bytes, rest not '
        f'read)')
    assert len(outcome.message) <= 500


def test_transport_errors_are_retries_described_by_the_peer():
    url = 'http://127.0.0.1:%d/' % http_engine.refused_port()

    outcome = post(url)

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code is None
    assert outcome.message.startswith('connection failed: ')


def test_a_peer_that_hangs_is_cut_off_at_the_deadline(server):
    target = server(lambda request: http_engine.HANG)

    outcome = post(target.url, timeout=0.3)

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code is None


def test_the_whole_message_is_masked(server):
    target = server(http_engine.reply(
        503, b'see http://op:pw-s3cret@proxy/x'))

    outcome = post(target.url)

    assert 'pw-s3cret' not in outcome.message
