"""The HA-engine client and Keystone: a fixed endpoint or the service
catalog, tokens and passwords that never reach a message or a log, and
the configuration errors found when the client is built."""

import logging

import pytest

from monitor.errors import ConfigError
from monitor.notify import masakari as notifier
from monitor.notify.notification import OutcomeKind
from tests.unit import http_engine
from tests.unit.notify.test_masakari import PASSWORD
from tests.unit.notify.test_masakari import TOKEN
from tests.unit.notify.test_masakari import make_conf
from tests.unit.notify.test_masakari import notification


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
        with pytest.raises(ConfigError) as error:
            notifier.MasakariClient.from_conf(conf)
        assert (error.value.group, error.value.option) == (
            'notifier', 'endpoint_override')


@pytest.mark.parametrize('name', ['endpoint_override', 'endpoint'])
def test_a_fixed_url_reaches_the_engine_without_keystone(engine, tmp_path,
                                                          name):
    server = engine(http_engine.reply(202, {}))
    conf = make_conf(tmp_path, auth_type='none',
                     **{name: server.url + '/fixed/v1'})

    outcome = notifier.MasakariClient.from_conf(conf).send(notification())

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert server.requests[0].path == '/fixed/v1/notifications'


def test_endpoint_override_wins_over_the_deprecated_endpoint(engine,
                                                             tmp_path):
    server = engine(http_engine.reply(202, {}))
    conf = make_conf(tmp_path, endpoint='http://127.0.0.1:9/old/v1',
                     endpoint_override=server.url + '/new/v1')

    notifier.MasakariClient.from_conf(conf).send(notification())

    assert server.requests[0].path == '/new/v1/notifications'


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


@pytest.mark.parametrize('opts,path', [
    ({'valid_interfaces': 'public'}, '/public-one/v1/notifications'),
    ({'valid_interfaces': 'public,internal'},
     '/public-one/v1/notifications'),
    ({'region_name': 'RegionTwo'}, '/internal-two/v1/notifications'),
    # The deprecated single interface still selects.
    ({'interface': 'public'}, '/public-one/v1/notifications'),
])
def test_adapter_options_select_the_catalog_endpoint(engine, tmp_path,
                                                     opts, path):
    server = engine(http_engine.reply(202, {}))
    with http_engine.FakeKeystone('monitor', PASSWORD, TOKEN,
                                  catalog(server.url)) as keystone:
        conf = password_conf(tmp_path, keystone, **opts)
        notifier.MasakariClient.from_conf(conf).send(notification())

    assert server.requests[-1].path == path


def test_public_is_used_where_the_engine_has_no_internal_endpoint(
        engine, tmp_path):
    # Masakari's devstack plugin registers only a public endpoint.
    server = engine(http_engine.reply(202, {}))
    public_only = [http_engine.catalog_entry('instance-ha', [
        ('public', 'RegionOne', server.url + '/public-only/v1')])]
    with http_engine.FakeKeystone('monitor', PASSWORD, TOKEN,
                                  public_only) as keystone:
        conf = password_conf(tmp_path, keystone)

        outcome = notifier.MasakariClient.from_conf(conf).send(
            notification())

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert server.requests[0].path == '/public-only/v1/notifications'


def test_service_type_and_name_select_the_catalog_entry(engine, tmp_path):
    server = engine(http_engine.reply(202, {}))
    entries = catalog(server.url) + [http_engine.catalog_entry('ha-two', [
        ('internal', 'RegionOne', server.url + '/ha-two/v1')])]
    with http_engine.FakeKeystone('monitor', PASSWORD, TOKEN,
                                  entries) as keystone:
        conf = password_conf(tmp_path, keystone, service_type='ha-two',
                             service_name='ha-two')
        notifier.MasakariClient.from_conf(conf).send(notification())

    assert server.requests[-1].path == '/ha-two/v1/notifications'


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


def test_the_token_goes_to_the_engine_and_never_to_a_redirect_target(
        engine, tmp_path):
    elsewhere = engine(http_engine.reply(202, {}))
    server = engine(http_engine.reply(
        307, b'', {'Location': elsewhere.url + '/v1/notifications'}))
    with http_engine.FakeKeystone('monitor', PASSWORD, TOKEN,
                                  catalog(server.url)) as keystone:
        conf = password_conf(tmp_path, keystone)

        outcome = notifier.MasakariClient.from_conf(conf).send(
            notification())

    [request] = server.requests
    assert request.headers['X-Auth-Token'] == TOKEN
    assert elsewhere.requests == []
    assert outcome.kind == OutcomeKind.RETRY
    assert elsewhere.url in outcome.message
    assert TOKEN not in outcome.message
