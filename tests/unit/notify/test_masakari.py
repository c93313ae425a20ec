"""The HA-engine client: the notification document and how every kind of
answer (or its absence) from a real HTTP server is classified."""

import datetime
import itertools
import json
import os
import subprocess
import sys

import pytest
from oslo_config import cfg

from monitor.notify import drivers
from monitor.notify import http_edge
from monitor.notify import masakari as notifier
from monitor.notify import masakari_conf
from monitor.notify import notification as notification_mod
from monitor.notify.notification import OutcomeKind
from tests.unit import http_engine
from tests.unit.http_engine import HANG
from tests.unit.http_engine import Raw
from tests.unit.http_engine import Response

UUID = '6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1'
PASSWORD = 'pa55-w0rd-never-logged'
TOKEN = 'gAAAAA-token-never-logged'


def make_conf(tmp_path, **notifier_opts):
    """A ConfigOpts read from a real config file with [notifier] options."""
    lines = ['[notifier]'] + [f'{k} = {v}' for k, v in notifier_opts.items()]
    path = tmp_path / 'monitor.conf'
    path.write_text('\n'.join(lines) + '\n')
    conf = cfg.ConfigOpts()
    masakari_conf.register_opts(conf)
    conf(args=['--config-file', str(path)], default_config_files=[])
    return conf


def notification(at=1700000000.0):
    return notification_mod.Notification.new(
        instance_uuid=UUID, domain_name='instance-0000002a',
        hostname='compute-1', at=at)


def client_for(tmp_path, server, **opts):
    conf = make_conf(tmp_path, endpoint=server.url + '/v1', **opts)
    return notifier.MasakariClient.from_conf(conf)


# -- the notification ---------------------------------------------------------

def test_body_is_exactly_the_engine_schema_with_string_values():
    n = notification(at=1700000000.75)

    assert n.body() == {'notification': {
        'type': 'VM',
        'hostname': 'compute-1',
        'generated_time': '2023-11-14T22:13:20Z',
        'payload': {'event': 'QEMU_GUEST_AGENT_ERROR',
                    'instance_uuid': UUID,
                    'vir_domain_event': 'STOPPED_FAILED'},
    }}


def test_generated_time_is_utc_iso8601_of_the_failure_time():
    at = 1700000000.0
    parsed = datetime.datetime.strptime(notification(at).generated_time,
                                        '%Y-%m-%dT%H:%M:%SZ')

    assert parsed.replace(tzinfo=datetime.timezone.utc).timestamp() == at


def test_each_new_notification_has_its_own_id():
    assert notification().id != notification().id


def test_notification_round_trips_through_a_plain_dict():
    n = notification()

    assert notification_mod.Notification.from_dict(n.to_dict()) == n


def test_other_events_can_be_reported():
    n = notification_mod.Notification.new(UUID, 'vm', 'compute-1', 0,
                                  event='LIFECYCLE',
                                  vir_domain_event='STOPPED_FAILED')

    assert n.body()['notification']['payload']['event'] == 'LIFECYCLE'


# -- answers of the engine ----------------------------------------------------

def test_202_is_accepted_and_the_request_is_a_json_post(engine, tmp_path):
    server = engine(http_engine.reply(202, {'notification': {
        'notification_uuid': 'engine-id-1', 'status': 'new'}}))
    n = notification()

    outcome = client_for(tmp_path, server).send(n)

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert outcome.status_code == 202
    assert outcome.engine_uuid == 'engine-id-1'
    assert outcome.done
    [request] = server.requests
    assert (request.method, request.path) == ('POST', '/v1/notifications')
    assert request.headers['Content-Type'] == 'application/json'
    assert request.json() == n.body()


def test_the_end_of_a_failure_is_delivered_without_being_sent(engine,
                                                              tmp_path):
    # The engine knows failures only; another driver left the end in the
    # outbox.
    server = engine(http_engine.reply(202, {}))
    failure = notification()
    resolved = notification_mod.Notification.resolving(
        failure, 1700000060.0, details={'resolves': failure.id})

    outcome = client_for(tmp_path, server).send(resolved)

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert 'not sent' in outcome.message
    assert server.requests == []


def test_409_is_a_duplicate_and_keeps_the_engine_message(engine, tmp_path):
    server = engine(http_engine.reply(*http_engine.fault(
        409, 'conflictingRequest',
        "Notification received from host compute-1 of type 'VM' is "
        "ignored as the host is already under maintenance.")))

    outcome = client_for(tmp_path, server).send(notification())

    assert outcome.kind == OutcomeKind.DUPLICATE
    assert outcome.done
    assert outcome.status_code == 409
    assert 'under maintenance' in outcome.message


def test_400_is_rejected_with_the_engine_message(engine, tmp_path):
    server = engine(http_engine.reply(*http_engine.fault(
        400, 'badRequest', 'Host with name compute-1 could not be found.')))

    outcome = client_for(tmp_path, server).send(notification())

    assert outcome.kind == OutcomeKind.REJECTED
    assert not outcome.done
    assert outcome.status_code == 400
    assert outcome.message == 'Host with name compute-1 could not be found.'


def test_500_is_retried_with_the_status_and_message(engine, tmp_path):
    server = engine(http_engine.reply(*http_engine.fault(
        500, 'computeFault', 'Unexpected API Error.')))

    outcome = client_for(tmp_path, server).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == 500
    assert 'Unexpected API Error.' in outcome.message


@pytest.mark.parametrize('status', [401, 403, 404, 408, 429, 503])
def test_answers_that_say_nothing_about_the_notification_are_retried(
        engine, tmp_path, status):
    server = engine(http_engine.reply(status, b'<html>nope</html>'))

    outcome = client_for(tmp_path, server).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == status


def test_a_non_json_error_body_becomes_a_short_one_line_message(
        engine, tmp_path):
    server = engine(http_engine.reply(400, b'<h1>Bad\n  request</h1>' * 200))

    outcome = client_for(tmp_path, server).send(notification())

    assert outcome.kind == OutcomeKind.REJECTED
    assert '\n' not in outcome.message
    assert outcome.message.startswith('<h1>Bad request</h1>')
    assert len(outcome.message) <= 500


def test_an_engine_that_hangs_past_the_timeout_is_retried(engine, tmp_path):
    server = engine(lambda request: HANG)

    outcome = client_for(tmp_path, server,
                         request_timeout=0.3).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code is None
    assert 'timed out' in outcome.message


def test_a_refused_connection_is_retried(tmp_path):
    port = http_engine.refused_port()
    conf = make_conf(tmp_path, endpoint=f'http://127.0.0.1:{port}/v1')

    outcome = notifier.MasakariClient.from_conf(conf).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code is None
    assert f'127.0.0.1:{port}' in outcome.message


def test_a_password_in_the_engine_url_never_reaches_the_message(tmp_path):
    port = http_engine.refused_port()
    conf = make_conf(tmp_path, endpoint_override=(
        f'http://monitor:{PASSWORD}@127.0.0.1:{port}/v1'))

    outcome = notifier.MasakariClient.from_conf(conf).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert f'monitor:***@127.0.0.1:{port}' in outcome.message
    assert PASSWORD not in outcome.message


def test_a_resend_carries_the_same_generated_time(engine, tmp_path):
    server = engine(http_engine.script(Response(503, b'busy'),
                                       Response(202, {})))
    client = client_for(tmp_path, server)
    n = notification()

    first = client.send(n)
    second = client.send(n)

    assert (first.kind, second.kind) == (OutcomeKind.RETRY,
                                         OutcomeKind.ACCEPTED)
    bodies = [r.json() for r in server.requests]
    assert bodies[0] == bodies[1] == n.body()


# -- redirects, statuses other than 202, slow and huge answers ---------------

REDIRECTS = [301, 302, 303, 305, 307, 308]


@pytest.mark.parametrize('status', REDIRECTS)
def test_a_redirect_is_not_followed_and_is_retried_naming_its_location(
        engine, tmp_path, status):
    elsewhere = engine(http_engine.reply(202, {}))
    location = elsewhere.url + '/v1/notifications'
    server = engine(http_engine.reply(status, b'', {'Location': location}))

    outcome = client_for(tmp_path, server).send(notification())

    assert elsewhere.requests == []
    assert len(server.requests) == 1
    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == status
    assert f'HTTP {status}' in outcome.message
    assert location in outcome.message


def test_a_redirect_without_location_says_so(engine, tmp_path):
    server = engine(http_engine.reply(302, b''))

    outcome = client_for(tmp_path, server).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert 'no Location' in outcome.message


def test_a_location_carrying_a_password_is_masked(engine, tmp_path):
    server = engine(http_engine.reply(
        302, b'', {'Location': 'http://user:s3cret@127.0.0.1:9/v1'}))

    outcome = client_for(tmp_path, server).send(notification())

    assert 's3cret' not in outcome.message
    assert 'user:***@127.0.0.1:9/v1' in outcome.message


@pytest.mark.parametrize('status,body', [
    (200, {'notification': {'notification_uuid': 'from-a-proxy'}}),
    (201, {}),
    (204, b''),
])
def test_a_success_other_than_202_is_not_the_engine_and_is_retried(
        engine, tmp_path, status, body):
    server = engine(http_engine.reply(status, body))

    outcome = client_for(tmp_path, server).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert not outcome.done
    assert outcome.status_code == status
    assert f'HTTP {status}: the engine answered an unexpected status' in (
        outcome.message)


def trickling(head, interval=0.05):
    """An answer that starts with ``head`` and then sends one byte per
    ``interval`` for as long as the client listens."""
    return Raw(itertools.chain([head], itertools.repeat(b'x')), interval)


def test_an_answer_trickling_in_is_cut_off_at_request_timeout(engine,
                                                              tmp_path):
    head = http_engine.raw_head(500, 'Internal Server Error',
                                [('Content-Length', 10 ** 6)])
    server = engine(lambda request: trickling(head))

    outcome = client_for(tmp_path, server,
                         request_timeout=0.5).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == 500
    assert 'not complete within request_timeout' in outcome.message
    # The client hung up long before the server meant to stop.
    [written] = server.written()
    assert written < 10 ** 6


def test_an_accepted_notification_whose_body_trickles_is_retried(
        engine, tmp_path):
    # A truncated answer is a failed attempt: the resend is answered 409
    # (the engine has the notification of that generated_time), which
    # counts as delivered.
    head = http_engine.raw_head(202, 'Accepted', [('Content-Length', 1000)])
    server = engine(lambda request: trickling(head))

    outcome = client_for(tmp_path, server,
                         request_timeout=0.5).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == 202
    assert 'not complete within request_timeout' in outcome.message


def test_a_huge_answer_is_read_only_up_to_the_cap(engine, tmp_path):
    total = 200 * 2 ** 20
    chunk = b'<p>Service Unavailable</p>\n' * 2048
    head = http_engine.raw_head(503, 'Service Unavailable',
                                [('Content-Length', total),
                                 ('Content-Type', 'text/html')])
    server = engine(lambda request: Raw(itertools.chain(
        [head], itertools.repeat(chunk, total // len(chunk) + 1))))

    outcome = client_for(tmp_path, server).send(notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert outcome.status_code == 503
    assert outcome.message.startswith('HTTP 503: <p>Service Unavailable</p>')
    assert f'longer than {http_edge.MAX_ANSWER_BYTES} bytes' in outcome.message
    assert len(outcome.message) < 1000
    # What the server got out before the client hung up: the capped read
    # plus what the kernel buffers held, far from the whole answer.
    [written] = server.written()
    assert written < total // 4


def green_send(url, request_timeout):
    """The outcome of one send from a green thread of a monkey-patched
    process, as the daemon sends."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    done = subprocess.run(
        [sys.executable, '-m', 'tests.unit.green_send', url,
         str(request_timeout)],
        cwd=root, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('head', [
    # The headers never end: no per-read timeout ever fires.
    b'HTTP/1.1 202 Accepted\r\nX-Slow: ',
    http_engine.raw_head(500, 'Internal Server Error',
                         [('Content-Length', 10 ** 6)]),
], ids=['headers', 'body'])
def test_under_eventlet_a_trickling_answer_is_cut_off_at_request_timeout(
        engine, head):
    server = engine(lambda request: trickling(head))

    outcome = green_send(server.url + '/v1', 0.5)

    assert outcome['kind'] == 'RETRY'
    assert 'request_timeout' in outcome['message']
    [written] = server.written()
    assert written < 10 ** 6


def wait_conf(tmp_path, **notifier_opts):
    lines = ['[notifier]'] + [f'{k} = {v}' for k, v in notifier_opts.items()]
    path = tmp_path / 'monitor.conf'
    path.write_text('\n'.join(lines) + '\n')
    conf = cfg.ConfigOpts()
    drivers.register_opts(conf)
    notifier.register_opts(conf)
    conf(args=['--config-file', str(path)], default_config_files=[])
    return conf


@pytest.mark.parametrize('opts,wait', [
    # Beside masakari-instancemonitor by default.
    ({'driver': 'masakari'}, 10),
    ({'driver': 'masakari', 'instancemonitor_wait': 20}, 20),
    ({'driver': 'masakari', 'coexist_with_instancemonitor': 'false'}, 0),
    # No masakari-api to share: nothing to wait for.
    ({'driver': 'webhook'}, 0),
    ({'driver': 'none'}, 0),
])
def test_a_failure_masakari_instancemonitor_reports_too_waits_only_beside_it(
        tmp_path, opts, wait):
    assert notifier.instancemonitor_wait(wait_conf(tmp_path, **opts)) == wait
