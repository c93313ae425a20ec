"""The lab's webhook receiver checks what it gets with the reference
libraries alone: the Standard Webhooks signature (refusing a replay
older than five minutes) and then the CloudEvents envelope."""

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests

from lab import webhook_receiver

KEY = b'k' * 32
SECRET = 'whsec_' + base64.b64encode(KEY).decode()
EVENT = {
    'specversion': '1.0', 'id': 'n-1', 'type': 'io.example.test',
    'source': '//guest-health-monitor/hv-1', 'subject': 'appliance-1',
    'time': '2026-12-06T10:15:32Z', 'datacontenttype': 'application/json',
    'data': {'domain_name': 'appliance-1'},
}


def signed(body, msg_id='n-1', timestamp=None, key=KEY):
    """Headers of a request signed the Standard Webhooks way, written
    out here rather than with either side's code."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(key, b'%s.%d.%s' % (msg_id.encode(), timestamp, body),
                      hashlib.sha256).digest()
    return {'Content-Type': 'application/cloudevents+json',
            'webhook-id': msg_id, 'webhook-timestamp': str(timestamp),
            'webhook-signature': 'v1,' + base64.b64encode(digest).decode()}


@pytest.fixture
def receiver():
    with webhook_receiver.WebhookReceiver(SECRET) as running:
        yield running


def post(receiver, body, headers):
    return requests.post(receiver.url, data=body, headers=headers,
                         timeout=10)


def test_a_signed_cloudevent_is_accepted_and_parsed(receiver):
    body = json.dumps(EVENT).encode()

    answer = post(receiver, body, signed(body))

    assert answer.status_code == 202
    [got] = receiver.valid()
    assert got.event.get_type() == 'io.example.test'
    assert got.event.get_subject() == 'appliance-1'
    assert got.data() == {'domain_name': 'appliance-1'}


def test_a_replay_older_than_five_minutes_is_refused(receiver):
    body = json.dumps(EVENT).encode()
    captured = signed(body, timestamp=int(time.time()) - 301)

    answer = post(receiver, body, captured)

    assert answer.status_code == 401
    [got] = receiver.deliveries
    assert not got.signature_valid
    assert got.refusal == 'Message timestamp too old'
    assert receiver.valid() == []


def test_a_timestamp_far_in_the_future_is_refused(receiver):
    body = json.dumps(EVENT).encode()

    answer = post(receiver, body,
                  signed(body, timestamp=int(time.time()) + 600))

    assert answer.status_code == 401
    assert receiver.deliveries[0].refusal == 'Message timestamp too new'


@pytest.mark.parametrize('tamper', ['body', 'id', 'timestamp', 'key'])
def test_anything_changed_after_signing_is_refused(receiver, tamper):
    body = json.dumps(EVENT).encode()
    now = int(time.time())
    headers = signed(body, timestamp=now,
                     key=b'x' * 32 if tamper == 'key' else KEY)
    if tamper == 'body':
        body = body.replace(b'appliance-1', b'appliance-2')
    elif tamper == 'id':
        headers['webhook-id'] = 'n-2'
    elif tamper == 'timestamp':
        headers['webhook-timestamp'] = str(now - 1)

    answer = post(receiver, body, headers)

    assert answer.status_code == 401
    assert receiver.deliveries[0].refusal == 'No matching signature found'


def test_a_request_without_the_headers_is_refused(receiver):
    body = json.dumps(EVENT).encode()

    answer = post(receiver, body, {'Content-Type': 'application/json'})

    assert answer.status_code == 401
    assert receiver.deliveries[0].refusal == 'Missing required headers'


def test_a_signed_body_that_is_not_a_cloudevent_is_a_bad_request(receiver):
    body = json.dumps({'specversion': '1.0', 'id': 'n-1'}).encode()

    answer = post(receiver, body, signed(body))

    assert answer.status_code == 400
    [got] = receiver.deliveries
    assert got.signature_valid and got.event is None
    assert got.refusal.startswith('not a CloudEvent')
    assert receiver.valid() == []


def test_a_secret_made_for_the_lab_is_in_the_standard_form():
    secret = webhook_receiver.make_secret()

    assert secret.startswith('whsec_')
    assert len(base64.b64decode(secret[len('whsec_'):])) == 32


def event_about(uuid, event_type, msg_id):
    return dict(EVENT, id=msg_id, type=event_type,
                data={'domain_uuid': uuid})


def test_the_deliveries_about_one_domain_are_its_failures_or_their_ends(
        receiver):
    failed = 'io.guest-health-monitor.guest.failed'
    for msg_id, uuid, event_type in (
            ('n-1', 'u-1', failed), ('n-2', 'u-2', failed),
            ('n-3', 'u-1', webhook_receiver.RECOVERED)):
        body = json.dumps(event_about(uuid, event_type, msg_id)).encode()
        assert post(receiver, body, signed(body, msg_id)).status_code == 202

    [failure] = receiver.wait_for(1, 5, uuid='u-1')
    [end] = receiver.wait_for(1, 5, uuid='u-1', ends=True)

    assert failure.json()['id'] == 'n-1'
    assert end.json()['id'] == 'n-3'
    assert webhook_receiver.about(receiver.wait_for(3, 5), 'u-2',
                                  ends=True) == []
    # Counted among that domain's alone: two do not arrive.
    assert len(receiver.wait_for(2, 0.2, uuid='u-1')) == 1
