"""The HA-engine client: the notification document and how every kind of
answer (or its absence) from a real HTTP server is classified."""

import datetime
import logging

import pytest
from oslo_config import cfg

from monitor import notification as notification_mod
from monitor import notifier
from monitor.notification import OutcomeKind
from tests.unit import http_engine
from tests.unit.http_engine import HANG
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
    notifier.register_opts(conf)
    conf(args=['--config-file', str(path)], default_config_files=[])
    return conf


def notification(at=1700000000.0):
    return notification_mod.Notification.new(
        instance_uuid=UUID, domain_name='instance-0000002a',
        hostname='compute-1', at=at)


@pytest.fixture
def engine():
    servers = []

    def start(responder):
        server = http_engine.HTTPServer(responder)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


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


# -- endpoint and authentication ---------------------------------------------

def test_auth_type_none_with_an_endpoint_reaches_the_engine(engine, tmp_path):
    server = engine(http_engine.reply(202, {}))
    conf = make_conf(tmp_path, auth_type='none',
                     endpoint=server.url + '/v1')

    outcome = notifier.MasakariClient.from_conf(conf).send(notification())

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert server.requests[0].path == '/v1/notifications'


def test_no_endpoint_and_no_catalog_is_a_configuration_error(tmp_path):
    for opts in ({}, {'auth_type': 'none'}):
        conf = make_conf(tmp_path, **opts)
        with pytest.raises(cfg.RequiredOptError) as error:
            notifier.MasakariClient.from_conf(conf)
        assert error.value.opt_name == 'endpoint'


def catalog(engine_url):
    return [
        http_engine.catalog_entry('identity', [
            ('public', 'RegionOne', 'http://keystone.invalid/v3')]),
        http_engine.catalog_entry('instance-ha', [
            ('public', 'RegionOne', engine_url + '/public-one/v1'),
            ('internal', 'RegionOne', engine_url + '/internal-one/v1'),
            ('internal', 'RegionTwo', engine_url + '/internal-two/v1'),
        ]),
    ]


def password_conf(tmp_path, keystone, password=PASSWORD, **opts):
    return make_conf(tmp_path, auth_type='password',
                     auth_url=keystone.auth_url, username='monitor',
                     password=password, project_name='service',
                     user_domain_name='Default',
                     project_domain_name='Default', **opts)


def test_password_auth_finds_the_internal_endpoint_in_the_catalog(
        engine, tmp_path):
    server = engine(http_engine.reply(202, {}))
    with http_engine.FakeKeystone('monitor', PASSWORD, TOKEN,
                                  catalog(server.url)) as keystone:
        conf = password_conf(tmp_path, keystone, region_name='RegionOne')

        outcome = notifier.MasakariClient.from_conf(conf).send(
            notification())

    assert outcome.kind == OutcomeKind.ACCEPTED
    [request] = server.requests
    assert request.path == '/internal-one/v1/notifications'
    assert request.headers['X-Auth-Token'] == TOKEN


def test_interface_and_region_select_the_catalog_endpoint(engine, tmp_path):
    server = engine(http_engine.reply(202, {}))
    with http_engine.FakeKeystone('monitor', PASSWORD, TOKEN,
                                  catalog(server.url)) as keystone:
        for opts, path in (
                ({'interface': 'public'}, '/public-one/v1/notifications'),
                ({'region_name': 'RegionTwo'},
                 '/internal-two/v1/notifications')):
            conf = password_conf(tmp_path, keystone, **opts)
            notifier.MasakariClient.from_conf(conf).send(notification())
            assert server.requests[-1].path == path


def test_a_service_missing_from_the_catalog_is_retried(engine, tmp_path):
    with http_engine.FakeKeystone('monitor', PASSWORD, TOKEN,
                                  catalog('http://127.0.0.1:9')) as keystone:
        conf = password_conf(tmp_path, keystone,
                             service_type='no-such-service')

        outcome = notifier.MasakariClient.from_conf(conf).send(
            notification())

    assert outcome.kind == OutcomeKind.RETRY
    assert 'no no-such-service endpoint' in outcome.message


def test_failed_authentication_is_retried_and_logs_no_secret(
        engine, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with http_engine.FakeKeystone('monitor', 'the-real-one', TOKEN,
                                  catalog('http://127.0.0.1:9')) as keystone:
        conf = password_conf(tmp_path, keystone)

        outcome = notifier.MasakariClient.from_conf(conf).send(
            notification())
        sent = keystone.server.requests[-1].body.decode()

    assert outcome.kind == OutcomeKind.RETRY
    assert 'Keystone authentication failed' in outcome.message
    assert PASSWORD in sent  # it was really used...
    assert PASSWORD not in caplog.text  # ...and never logged
    assert PASSWORD not in outcome.message


def test_a_successful_exchange_logs_neither_token_nor_password(
        engine, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server = engine(http_engine.reply(202, {}))
    with http_engine.FakeKeystone('monitor', PASSWORD, TOKEN,
                                  catalog(server.url)) as keystone:
        conf = password_conf(tmp_path, keystone)

        notifier.MasakariClient.from_conf(conf).send(notification())

    assert server.requests[0].headers['X-Auth-Token'] == TOKEN
    assert caplog.records  # keystoneauth did log the requests
    assert TOKEN not in caplog.text
    assert PASSWORD not in caplog.text


def test_tls_is_verified_unless_told_otherwise(tmp_path):
    conf = make_conf(tmp_path, endpoint='https://engine.example/v1')
    verify = notifier.MasakariClient.from_conf(conf)._session.verify

    assert verify is True


def test_the_request_timeout_also_bounds_keystone_requests(tmp_path):
    conf = make_conf(tmp_path, endpoint='http://engine.example/v1',
                     request_timeout=4)

    assert notifier.MasakariClient.from_conf(conf)._session.timeout == 4.0


# -- options ---------------------------------------------------------------

def test_list_opts_has_our_options_and_keystoneauths_once_each():
    [(group, opts)] = notifier.list_opts()
    names = [opt.dest for opt in opts]

    assert group == 'notifier'
    assert len(names) == len(set(names))
    for name in ('endpoint', 'service_type', 'interface', 'region_name',
                 'request_timeout', 'auth_type', 'auth_section', 'auth_url',
                 'username', 'password', 'cafile', 'insecure', 'timeout'):
        assert name in names
    assert {opt.dest for opt in opts if opt.secret} == {'password'}


def test_defaults(tmp_path):
    group = make_conf(tmp_path).notifier

    assert group.endpoint is None
    assert group.service_type == 'instance-ha'
    assert group.interface == 'internal'
    assert group.request_timeout == 10.0
    assert group.insecure is False
