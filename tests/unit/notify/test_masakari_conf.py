"""The HA engine's options: what they are, their defaults, and the checks
at start that name an option that cannot work."""

import pytest
from oslo_config import cfg

from monitor.errors import ConfigError
from monitor.notify import masakari_conf
from tests.unit.notify.test_masakari import make_conf

# -- options ---------------------------------------------------------------

def test_list_opts_has_our_options_and_keystoneauths_once_each():
    [(group, opts)] = masakari_conf.list_opts()
    names = [opt.dest for opt in opts]

    assert group == 'notifier'
    assert len(names) == len(set(names))
    for name in ('endpoint_override', 'service_type', 'service_name',
                 'valid_interfaces', 'region_name', 'endpoint',
                 'request_timeout', 'auth_type', 'auth_section', 'auth_url',
                 'username', 'password', 'cafile', 'insecure', 'timeout'):
        assert name in names
    assert {opt.dest for opt in opts if opt.secret} == {'password'}


def test_keystoneauth_retries_and_version_discovery_are_not_offered():
    # Retries belong to the delivery worker; a retry inside one request
    # would outlast request_timeout.
    [(_, opts)] = masakari_conf.list_opts()
    names = {opt.dest for opt in opts}

    assert not names & {'connect_retries', 'status_code_retries',
                        'retriable_status_codes', 'version', 'min_version',
                        'max_version'}


def test_old_names_are_deprecated_aliases():
    [(_, opts)] = masakari_conf.list_opts()
    by_name = {opt.dest: opt for opt in opts}

    assert 'Deprecated alias of endpoint_override' in by_name['endpoint'].help
    assert [(d.name, d.group) for d in
            by_name['valid_interfaces'].deprecated_opts] == [
        ('interface', 'notifier')]


def test_defaults(tmp_path):
    conf = make_conf(tmp_path)
    group = conf.notifier

    assert group.endpoint_override is None
    assert group.endpoint is None
    assert masakari_conf.engine_url(conf) is None
    assert group.service_type == 'instance-ha'
    assert group.service_name is None
    assert group.valid_interfaces == ['internal', 'public']
    assert group.region_name is None
    assert group.request_timeout == 10.0
    assert group.insecure is False


def test_a_deprecated_interface_becomes_the_list_of_one(tmp_path):
    conf = make_conf(tmp_path, interface='public')

    assert conf.notifier.valid_interfaces == ['public']


# -- checks at start ---------------------------------------------------------

def check_error(tmp_path, **opts):
    with pytest.raises(ConfigError) as error:
        masakari_conf.check_endpoint(make_conf(tmp_path, **opts))
    return error.value


@pytest.mark.parametrize('opts', [
    {'endpoint_override': 'http://127.0.0.1:15868/v1'},
    {'endpoint': 'https://engine.example/v1', 'auth_type': 'none'},
    {'auth_type': 'password'},
    {'auth_type': 'password', 'valid_interfaces': 'admin'},
])
def test_good_notifier_options_pass_the_checks(tmp_path, opts):
    masakari_conf.check_endpoint(make_conf(tmp_path, **opts))


@pytest.mark.parametrize('opts,option', [
    ({}, 'endpoint_override'),
    ({'auth_type': 'none'}, 'endpoint_override'),
    ({'endpoint_override': 'ftp://engine/v1'}, 'endpoint_override'),
    ({'endpoint_override': 'engine:15868/v1'}, 'endpoint_override'),
    ({'endpoint_override': 'http://127.0.0.1/v1',
      'valid_interfaces': 'internal,private'}, 'valid_interfaces'),
    ({'endpoint_override': 'http://127.0.0.1/v1', 'valid_interfaces': ''},
     'valid_interfaces'),
    ({'endpoint_override': 'http://127.0.0.1/v1', 'request_timeout': 'nan'},
     'request_timeout'),
])
def test_bad_notifier_options_are_named(tmp_path, opts, option):
    error = check_error(tmp_path, **opts)

    assert (error.group, error.option) == ('notifier', option)
    assert str(error).startswith(f'[notifier] {option}: ')


def test_an_auth_section_may_hold_the_keystone_credentials(tmp_path):
    masakari_conf.check_endpoint(make_conf(tmp_path, auth_section='keystone'))


@pytest.mark.parametrize('value', ['601', 'inf'])
def test_request_timeout_is_bounded(tmp_path, value):
    conf = make_conf(tmp_path, request_timeout=value)

    with pytest.raises(cfg.ConfigFileValueError):
        conf.notifier.request_timeout


def test_a_password_in_a_bad_url_is_not_repeated(tmp_path):
    error = check_error(tmp_path,
                        endpoint_override='ftp://user:s3cret@engine/v1')

    assert 's3cret' not in str(error)


def conf_error(tmp_path, **opts):
    with pytest.raises(ConfigError) as error:
        masakari_conf.check_conf(make_conf(tmp_path, **opts))
    return error.value


def test_a_fixed_url_without_keystone_passes_every_check(tmp_path):
    masakari_conf.check_conf(make_conf(
        tmp_path, endpoint_override='http://127.0.0.1:15868/v1',
        auth_type='none'))


def test_an_auth_section_must_exist_in_the_files(tmp_path):
    error = conf_error(tmp_path, auth_section='keystone')

    assert str(error) == ('[notifier] auth_section: no [keystone] section in '
                          'the configuration files')


def test_a_plugin_without_its_required_options_names_them(tmp_path):
    error = conf_error(tmp_path, auth_type='password')

    assert error.group == 'notifier'
    assert 'auth_url' in error.option
    assert "required by auth_type 'password'" in str(error)


def test_a_plugin_without_a_catalog_needs_a_fixed_url(tmp_path):
    error = conf_error(tmp_path, auth_type='http_basic', username='u',
                       password='p')

    assert str(error) == ("[notifier] endpoint_override: required with "
                          "auth_type 'http_basic', which has no service "
                          "catalog")


@pytest.mark.parametrize('option', ['cafile', 'certfile', 'keyfile'])
def test_a_missing_tls_file_is_named(tmp_path, option):
    missing = tmp_path / 'missing.pem'
    error = conf_error(tmp_path, endpoint_override='https://engine/v1',
                       auth_type='none', **{option: missing})

    assert str(error) == '[notifier] %s: %s does not exist' % (option,
                                                                missing)


def test_a_key_without_its_certificate_is_refused(tmp_path):
    key = tmp_path / 'key.pem'
    key.write_text('')
    error = conf_error(tmp_path, endpoint_override='https://engine/v1',
                       auth_type='none', keyfile=key)

    assert str(error) == ('[notifier] keyfile: set without [notifier] '
                          'certfile')


def test_ciphers_openssl_does_not_know_are_refused(tmp_path):
    error = conf_error(tmp_path, endpoint_override='https://engine/v1',
                       auth_type='none', tls_ciphers='NO-SUCH-CIPHER')

    assert str(error) == ("[notifier] tls_ciphers: OpenSSL knows no cipher "
                          "in 'NO-SUCH-CIPHER'")
