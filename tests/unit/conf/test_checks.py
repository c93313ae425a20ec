"""Validation at start: each setting that cannot work is refused, naming
the option, before the daemon runs."""

import os
import subprocess

import pytest

from monitor import errors
from tests.unit.conf.load_helpers import load
from tests.unit.conf.load_helpers import load_error

# A Standard Webhooks signing secret, the form [webhook] secret takes.
WEBHOOK_SECRET = 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='

# -- the state directory -----------------------------------------------------

def test_state_path_is_created(write_conf, state_path):
    assert not os.path.exists(state_path)
    load(write_conf())
    assert os.path.isdir(state_path)


# -- errors name the option --------------------------------------------------

@pytest.mark.parametrize('uri', ['/var/run/libvirt/libvirt-sock',
                                 'qemu:/system', 'system', ''])
def test_bad_libvirt_uri(write_conf, uri):
    error = load_error(write_conf(libvirt={'connection_uri': uri}))
    assert str(error).startswith('[libvirt] connection_uri: ')


@pytest.mark.parametrize('uri', ['qemu:///system', 'qemu+ssh://h/system',
                                 'qemu+tls://h.example.org/system',
                                 'test:///default'])
def test_good_libvirt_uri(write_conf, uri):
    assert load(write_conf(libvirt={'connection_uri': uri}))


def test_unknown_cache_backend(write_conf):
    error = load_error(write_conf(cache={'backend': 'dogpile.cache.nosuch'}))
    assert (error.group, error.option) == ('cache', 'backend')
    assert 'dogpile.cache.nosuch' in str(error)


def test_backend_argument_without_key(write_conf):
    error = load_error(write_conf(cache={'backend_argument': 'filename'}))
    assert str(error).startswith('[cache] backend_argument: ')


def test_state_path_that_is_a_file(write_conf, tmp_path):
    a_file = tmp_path / 'file'
    a_file.write_text('')
    error = load_error(write_conf(DEFAULT={'state_path': str(a_file)}))
    assert (error.group, error.option) == (None, 'state_path')
    assert str(error).startswith('[DEFAULT] state_path: ')
    assert 'not a directory' in str(error)


def test_state_path_that_cannot_be_created(write_conf, tmp_path):
    a_file = tmp_path / 'file'
    a_file.write_text('')
    error = load_error(write_conf(
        DEFAULT={'state_path': str(a_file / 'state')}))
    assert str(error).startswith('[DEFAULT] state_path: cannot create ')


def test_empty_host(write_conf):
    error = load_error(write_conf(DEFAULT={'host': ''}))
    assert str(error) == '[DEFAULT] host: must not be empty'


@pytest.mark.parametrize('endpoint', ['ftp://engine/v1', 'engine:15868/v1'])
def test_endpoint_must_be_http(write_conf, endpoint):
    error = load_error(write_conf(notifier={'endpoint': endpoint}))
    assert (error.group, error.option) == ('notifier', 'endpoint')


def test_https_endpoint(write_conf):
    url = 'https://masakari.example.org:15868/v1'
    conf = load(write_conf(notifier={'endpoint': url}))
    assert conf.notifier.endpoint == url


@pytest.mark.parametrize('auth_type', [None, 'none'])
def test_endpoint_needed_without_keystone(write_conf, auth_type):
    error = load_error(write_conf(notifier={'endpoint': None,
                                            'auth_type': auth_type}))
    assert str(error) == ("[notifier] endpoint_override: required when "
                          "[notifier] auth_type is unset or 'none'")


def test_endpoint_needed_with_a_plugin_without_catalog(write_conf):
    error = load_error(write_conf(notifier={
        'endpoint': None, 'auth_type': 'http_basic', 'username': 'monitor',
        'password': 'basic-s3cret'}))
    assert str(error) == ("[notifier] endpoint_override: required with "
                          "auth_type "
                          "'http_basic', which has no service catalog")


def test_endpoint_from_the_catalog_with_keystone(write_conf):
    conf = load(write_conf(notifier={'endpoint': None,
                                     'auth_type': 'password',
                                     'auth_url': 'http://127.0.0.1:9/v3',
                                     'username': 'monitor'}))
    assert conf.notifier.endpoint is None


def test_bad_path_regex(write_conf):
    error = load_error(write_conf(
        monitor={'agent_channel_path_regex': '(unclosed'}))
    assert str(error).startswith('[monitor] agent_channel_path_regex: ')


def test_config_error_text():
    assert str(errors.ConfigError('monitor', 'interval',
                                  'must be greater than 0 (got -1)')) == \
        '[monitor] interval: must be greater than 0 (got -1)'
    assert str(errors.ConfigError(None, 'host', 'must not be empty')) == \
        '[DEFAULT] host: must not be empty'
    assert str(errors.ConfigError(None, None, 'file not found')) == \
        'file not found'


# -- credentials never printed ------------------------------------------------

def test_a_bad_backend_argument_is_not_quoted(write_conf):
    error = load_error(write_conf(
        cache={'backend_argument': 'cache-s3cret-without-key'}))
    assert str(error) == '[cache] backend_argument: expected key:value'


# -- numbers -------------------------------------------------------------------

def test_a_foreign_numeric_option_is_bounded(write_conf):
    error = load_error(write_conf(notifier={'timeout': '100000'}))
    assert str(error) == ('[notifier] timeout: must be from 0.1 to 600.0 '
                          '(got 100000.0)')


@pytest.mark.parametrize('section, option', [
    ('monitor', 'interval'),
    ('outbox', 'retry_max_delay'),
    ('notifier', 'request_timeout'),
])
def test_nan_is_refused(write_conf, section, option):
    error = load_error(write_conf(**{section: {option: 'nan'}}))
    assert str(error) == '[%s] %s: must be a finite number (got nan)' % (
        section, option)


def test_an_empty_value_of_an_option_with_a_default_is_refused(write_conf):
    error = load_error(write_conf(monitor={'failure_threshold': ''}))
    assert str(error) == '[monitor] failure_threshold: must not be empty'


# -- cache backends ------------------------------------------------------------

def test_a_backend_that_keeps_nothing_is_refused(write_conf):
    error = load_error(write_conf(cache={'backend': 'dogpile.cache.null'}))
    assert (error.group, error.option) == ('cache', 'backend')
    assert 'keeps nothing' in str(error)


@pytest.mark.parametrize('backend, library', [
    ('dogpile.cache.memcached', 'memcache'),
    ('dogpile.cache.redis', 'redis'),
])
def test_a_backend_without_its_library_is_refused(write_conf, backend,
                                                  library):
    import importlib.util

    if importlib.util.find_spec(library) is not None:
        pytest.skip('%s is installed here' % library)
    error = load_error(write_conf(cache={
        'backend': backend,
        'backend_argument': 'url:redis://:cache-s3cret@127.0.0.1:6379/0'}))
    assert str(error).startswith('[cache] backend: %s cannot be used: its '
                                 'Python library is not installed' % backend)
    assert library in str(error)


def test_the_sqlite_backend_is_accepted(write_conf, state_path):
    conf = load(write_conf(cache={'backend': 'guest_health_monitor.sqlite'}))
    assert conf.cache.backend == 'guest_health_monitor.sqlite'
    # Validation builds no state file: the daemon does, once it holds the
    # state directory.
    assert os.listdir(state_path) == []


# -- the authentication plugin ---------------------------------------------------

def test_an_unknown_auth_section_is_named(write_conf):
    error = load_error(write_conf(notifier={'auth_section': 'keystone'}))
    assert str(error) == ('[notifier] auth_section: no [keystone] section in '
                          'the configuration files')


def test_the_plugin_is_read_from_the_auth_section(write_conf):
    conf = load(write_conf(
        notifier={'auth_section': 'keystone', 'endpoint': None},
        keystone={'auth_type': 'password',
                  'auth_url': 'http://127.0.0.1:9/identity',
                  'username': 'monitor'}))
    assert conf.keystone.username == 'monitor'


def test_options_the_plugin_in_the_auth_section_needs_are_named(write_conf):
    error = load_error(write_conf(notifier={'auth_section': 'keystone'},
                                  keystone={'auth_type': 'password'}))
    assert str(error) == ("[keystone] auth_url: required by auth_type "
                          "'password'")


def test_an_unknown_plugin_in_the_auth_section_is_named(write_conf):
    error = load_error(write_conf(notifier={'auth_section': 'keystone'},
                                  keystone={'auth_type': 'no-such-plugin'}))
    assert str(error).startswith("[keystone] auth_type: unknown "
                                 "authentication plugin 'no-such-plugin'")


def test_an_application_credential_without_its_options(write_conf):
    error = load_error(write_conf(notifier={
        'auth_type': 'v3applicationcredential',
        'auth_url': 'http://127.0.0.1:9/identity'}))
    assert str(error).startswith('[notifier] ')
    assert 'application_credential' in str(error) or (
        'application credential' in str(error))


def test_an_application_credential_with_its_options(write_conf):
    conf = load(write_conf(notifier={
        'auth_type': 'v3applicationcredential',
        'auth_url': 'http://127.0.0.1:9/identity',
        'application_credential_id': 'a1',
        'application_credential_secret': 'app-s3cret'}))
    assert conf.notifier.application_credential_id == 'a1'


def test_auth_url_must_be_http(write_conf):
    error = load_error(write_conf(notifier={
        'auth_type': 'password', 'auth_url': 'keystone:5000',
        'username': 'monitor'}))
    assert str(error) == ("[notifier] auth_url: not an http(s) URL "
                          "(got 'keystone:5000')")


# -- TLS, log and state files ----------------------------------------------

@pytest.mark.parametrize('option', ['cafile', 'certfile'])
def test_a_missing_tls_file_is_named(write_conf, tmp_path, option):
    missing = str(tmp_path / 'missing.pem')
    error = load_error(write_conf(notifier={option: missing}))
    assert str(error) == '[notifier] %s: %s does not exist' % (option,
                                                                missing)


def test_a_tls_file_that_is_a_directory(write_conf, tmp_path):
    error = load_error(write_conf(notifier={'cafile': str(tmp_path)}))
    assert str(error) == ('[notifier] cafile: %s is not a regular file'
                          % tmp_path)


def test_a_cafile_without_certificates(write_conf, tmp_path):
    garbage = tmp_path / 'ca.pem'
    garbage.write_text('not a certificate\n')
    error = load_error(write_conf(notifier={'cafile': str(garbage)}))
    assert str(error).startswith('[notifier] cafile: %s holds no usable CA '
                                 'certificate' % garbage)


def test_a_keyfile_without_certfile(write_conf, tmp_path):
    key = tmp_path / 'key.pem'
    key.write_text('')
    error = load_error(write_conf(notifier={'keyfile': str(key)}))
    assert str(error) == ('[notifier] keyfile: set without [notifier] '
                          'certfile')


@pytest.fixture
def cert_and_key(tmp_path):
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                    '-nodes', '-subj', '/CN=monitor', '-days', '1',
                    '-keyout', str(key), '-out', str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


def test_usable_tls_files_are_accepted(write_conf, cert_and_key):
    cert, key = cert_and_key
    conf = load(write_conf(notifier={'cafile': cert, 'certfile': cert,
                                     'keyfile': key}))
    assert conf.notifier.certfile == cert


def test_a_certfile_that_does_not_match_its_key(write_conf, tmp_path,
                                                cert_and_key):
    cert, _key = cert_and_key
    error = load_error(write_conf(notifier={'certfile': cert,
                                            'keyfile': cert}))
    assert str(error).startswith('[notifier] keyfile: no usable '
                                 'certificate and private key')


def test_unknown_tls_ciphers(write_conf):
    error = load_error(write_conf(notifier={'tls_ciphers': 'NO-SUCH-CIPHER'}))
    assert str(error) == ("[notifier] tls_ciphers: OpenSSL knows no cipher "
                          "in 'NO-SUCH-CIPHER'")


def test_the_log_file_is_created(write_conf, tmp_path):
    log_file = tmp_path / 'ghm.log'
    load(write_conf(DEFAULT={'log_file': str(log_file)}))
    assert log_file.exists()


@pytest.mark.parametrize('where, problem', [
    ('missing-dir/ghm.log', 'cannot write {path}: No such file or directory'),
    ('', '{path} is a directory'),
])
def test_an_unusable_log_file_is_named(write_conf, tmp_path, where, problem):
    path = str(tmp_path / where) if where else str(tmp_path)
    error = load_error(write_conf(DEFAULT={'log_file': path}))
    assert str(error) == '[DEFAULT] log_file: ' + problem.format(path=path)


def test_a_relative_log_file_is_refused(write_conf):
    error = load_error(write_conf(DEFAULT={'log_file': 'ghm.log'}))
    assert str(error) == ('[DEFAULT] log_file: must be an absolute path '
                          'unless log_dir is set (got ghm.log)')


def test_a_relative_state_path_is_refused(write_conf):
    error = load_error(write_conf(DEFAULT={'state_path': 'state'}))
    assert str(error) == ('[DEFAULT] state_path: must be an absolute path '
                          '(got state)')


def test_the_state_path_is_created_private(write_conf, state_path):
    old = os.umask(0o022)
    try:
        load(write_conf())
    finally:
        os.umask(old)
    assert os.stat(state_path).st_mode & 0o777 == 0o700


# -- the notifier driver and self-recovery ------------------------------------

@pytest.mark.parametrize('action', ['reset', 'restart'])
def test_a_recovery_action_with_the_masakari_driver_names_both_options(
        write_conf, action):
    error = load_error(write_conf(recovery={'action': action}))

    assert (error.group, error.option) == ('recovery', 'action')
    assert str(error).startswith('[recovery] action: ')
    assert '[notifier] driver = masakari' in str(error)


def test_the_webhook_driver_needs_no_engine_endpoint(write_conf):
    conf = load(write_conf(
        notifier={'endpoint': None, 'driver': 'webhook'},
        webhook={'url': 'https://hooks.example.org/guests', 'secret': WEBHOOK_SECRET},
        recovery={'action': 'reset'}))

    assert conf.notifier.driver == 'webhook'
    assert conf.recovery.action == 'reset'


def test_the_none_driver_ignores_broken_engine_settings(write_conf):
    # An auth plugin that would need options: unused without the engine.
    load(write_conf(notifier={'endpoint': None, 'driver': 'none',
                              'auth_type': 'password'}))


def test_the_masakari_driver_still_needs_its_endpoint(write_conf):
    error = load_error(write_conf(notifier={'endpoint': None,
                                            'auth_type': 'none'}))
    assert error.option == 'endpoint_override'


@pytest.mark.parametrize('missing', ['url', 'secret'])
def test_the_webhook_driver_names_a_missing_url_or_secret(write_conf,
                                                          missing):
    webhook = {'url': 'http://127.0.0.1:9/hook', 'secret': WEBHOOK_SECRET}
    webhook[missing] = None
    error = load_error(write_conf(notifier={'driver': 'webhook'},
                                  webhook=webhook))

    assert str(error).startswith('[webhook] %s: required with [notifier] '
                                 'driver = webhook' % missing)


def test_a_missing_webhook_ca_file_is_named(write_conf, tmp_path):
    error = load_error(write_conf(
        webhook={'cafile': str(tmp_path / 'nowhere.pem')}))
    assert (error.group, error.option) == ('webhook', 'cafile')
    assert 'does not exist' in str(error)


def test_a_webhook_ca_file_without_a_certificate_is_named(write_conf,
                                                          tmp_path):
    bogus = tmp_path / 'bogus.pem'
    bogus.write_text('not a certificate\n')
    error = load_error(write_conf(webhook={'cafile': str(bogus)}))
    assert (error.group, error.option) == ('webhook', 'cafile')


def test_a_wait_for_instancemonitor_beyond_the_retry_ceiling_is_refused(
        write_conf):
    error = load_error(write_conf(notifier={'instancemonitor_wait': '30'},
                                  outbox={'retry_max_delay': '20'}))
    assert (error.group, error.option) == ('notifier', 'instancemonitor_wait')
    assert 'retry_max_delay' in str(error)


@pytest.mark.parametrize('notifier', [
    {'instancemonitor_wait': '20'},
    {'instancemonitor_wait': '30', 'coexist_with_instancemonitor': 'false'},
])
def test_a_wait_within_the_retry_ceiling_or_unused_is_accepted(write_conf,
                                                               notifier):
    conf = load(write_conf(notifier=notifier,
                           outbox={'retry_max_delay': '20'}))
    assert conf.notifier.instancemonitor_wait == int(
        notifier['instancemonitor_wait'])
