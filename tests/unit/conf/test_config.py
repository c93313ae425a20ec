import logging
import os
import re
import socket
import subprocess

import pytest
from keystoneauth1 import loading as ks_loading

from monitor import masking
from monitor.conf import config
from monitor.conf import opts

ENDPOINT = 'http://127.0.0.1:15868/v1'


@pytest.fixture
def state_path(tmp_path):
    return str(tmp_path / 'state')


@pytest.fixture
def write_conf(tmp_path, state_path):
    """Write a config file: a valid base plus the given sections."""

    def write(name='ghm.conf', **sections):
        merged = {
            'DEFAULT': {'state_path': state_path, 'host': 'compute-1'},
            'notifier': {'endpoint': ENDPOINT},
        }
        for section, values in sections.items():
            merged.setdefault(section, {}).update(values)
        lines = []
        for section, values in merged.items():
            lines.append('[%s]' % section)
            for key, value in values.items():
                if value is None:
                    continue
                for item in value if isinstance(value, list) else [value]:
                    lines.append('%s = %s' % (key, item))
        path = tmp_path / name
        path.write_text('\n'.join(lines) + '\n')
        return str(path)

    return write


def load(path):
    return config.load(['--config-file', path], default_config_files=[])


def load_error(path):
    with pytest.raises(config.ConfigError) as excinfo:
        load(path)
    return excinfo.value


# -- loading -----------------------------------------------------------------

def test_valid_file_loads_with_defaults(write_conf, state_path):
    conf = load(write_conf())
    assert conf.host == 'compute-1'
    assert conf.state_path == state_path
    assert conf.monitor.failure_threshold == 3
    assert conf.monitor.discovery_timeout == 0
    assert conf.monitor.agent_disconnect_grace == 30
    assert conf.monitor.interval == 10
    assert conf.monitor.agent_channel_name == 'org.qemu.guest_agent.0'
    assert conf.libvirt.connection_uri == 'qemu:///system'
    assert conf.cache.backend == 'dogpile.cache.memory'
    assert conf.notifier.endpoint == ENDPOINT


def test_values_from_the_file_are_used(write_conf):
    conf = load(write_conf(
        monitor={'failure_threshold': 5, 'mass_failure_ratio': 0.25,
                 'agent_channel_path_regex': r'^/var/lib/libvirt/qemu/'},
        cache={'backend': 'guest_health_monitor.sqlite',
               'backend_argument': ['filename:/tmp/x.sqlite']}))
    assert conf.monitor.failure_threshold == 5
    assert conf.monitor.mass_failure_ratio == 0.25
    assert conf.cache.backend_argument == ['filename:/tmp/x.sqlite']


def test_state_path_is_created(write_conf, state_path):
    assert not os.path.exists(state_path)
    load(write_conf())
    assert os.path.isdir(state_path)


def test_host_defaults_to_the_hostname(write_conf):
    path = write_conf(DEFAULT={'host': None})
    assert load(path).host == socket.gethostname()


def test_default_config_file_is_found_by_project_name(
        tmp_path, monkeypatch, write_conf):
    # oslo.config searches ~/.guest-health-monitor/ before /etc/...
    home = tmp_path / 'home'
    (home / '.guest-health-monitor').mkdir(parents=True)
    source = write_conf()
    target = home / '.guest-health-monitor' / 'guest-health-monitor.conf'
    target.write_text(open(source).read())
    monkeypatch.setenv('HOME', str(home))
    conf = config.load([])
    assert str(target) in conf.config_file


def test_the_project_and_program_names():
    assert config.PROJECT == 'guest-health-monitor'
    assert config.PROG == 'guest-health-monitor'


def test_build_conf_registers_every_listed_option():
    conf = config.build_conf()
    unregistered = set()
    for group, group_opts in opts.list_opts():
        name = getattr(group, 'name', group)
        registered = conf if name == 'DEFAULT' else conf[name]
        unregistered |= {(name, opt.dest) for opt in group_opts
                         if opt.dest not in registered}
    # keystoneauth registers its plugin's options when it loads the plugin
    # named by auth_type; they are listed for the sample only.
    plugin_opts = {('notifier', opt.dest) for opt in
                   ks_loading.get_auth_plugin_conf_options('password')}
    assert unregistered <= plugin_opts


def test_build_conf_gives_fresh_objects():
    assert config.build_conf() is not config.build_conf()


# -- errors name the option --------------------------------------------------

def test_negative_interval(write_conf):
    error = load_error(write_conf(monitor={'interval': -1}))
    assert (error.group, error.option) == ('monitor', 'interval')
    assert str(error).startswith('[monitor] interval: ')
    assert str(error).endswith('(got -1)')
    assert 'greater than' in str(error)


@pytest.mark.parametrize('section,option,value', [
    ('monitor', 'failure_threshold', '0'),
    ('monitor', 'failure_threshold', 'three'),
    ('monitor', 'discovery_timeout', '-5'),
    ('monitor', 'agent_disconnect_grace', '-1'),
    ('monitor', 'mass_failure_min_domains', '0'),
    ('monitor', 'mass_failure_ratio', '1.5'),
    ('monitor', 'ping_timeout', '0'),
    ('monitor', 'max_concurrent_pings', '0'),
    ('cache', 'expiration_time', '-1'),
    ('libvirt', 'keepalive_count', 'many'),
])
def test_bad_value_names_the_option(write_conf, section, option, value):
    error = load_error(write_conf(**{section: {option: value}}))
    assert (error.group, error.option) == (section, option)
    assert str(error).startswith('[%s] %s: ' % (section, option))
    assert str(error).endswith('(got %s)' % value)


def test_bad_value_in_default_section(write_conf):
    error = load_error(write_conf(DEFAULT={'debug': 'maybe'}))
    assert (error.group, error.option) == (None, 'debug')
    assert str(error).startswith('[DEFAULT] debug: ')
    assert str(error).endswith('(got maybe)')


def test_the_last_file_given_wins_in_the_raw_value(write_conf):
    first = write_conf('a.conf', monitor={'interval': '-1'})
    second = write_conf('b.conf', monitor={'interval': '-2'})
    with pytest.raises(config.ConfigError, match=re.escape('(got -2)')):
        config.load(['--config-file', first, '--config-file', second],
                    default_config_files=[])


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


def test_missing_config_file(tmp_path):
    missing = str(tmp_path / 'missing.conf')
    with pytest.raises(config.ConfigError) as excinfo:
        config.load(['--config-file', missing], default_config_files=[])
    assert excinfo.value.option is None
    assert 'missing.conf' in str(excinfo.value)


def test_unparsable_config_file(tmp_path):
    path = tmp_path / 'broken.conf'
    path.write_text('interval = 5\n')  # no section
    with pytest.raises(config.ConfigError) as excinfo:
        load(str(path))
    assert 'broken.conf' in str(excinfo.value)


def test_a_parse_error_does_not_quote_the_line(write_conf, tmp_path):
    path = tmp_path / 'broken.conf'
    path.write_text('[notifier]\npassword pw-s3cret-without-equals\n')
    with pytest.raises(config.ConfigError) as excinfo:
        load(str(path))
    assert str(excinfo.value) == (
        "configuration file %s, line 2: No ':' or '=' found in assignment"
        % path)


def test_config_error_text():
    assert str(config.ConfigError('monitor', 'interval',
                                  'must be greater than 0 (got -1)')) == \
        '[monitor] interval: must be greater than 0 (got -1)'
    assert str(config.ConfigError(None, 'host', 'must not be empty')) == \
        '[DEFAULT] host: must not be empty'
    assert str(config.ConfigError(None, None, 'file not found')) == \
        'file not found'


# -- the effective settings log -----------------------------------------------

def test_effective_settings_log_every_option_but_no_secret(
        write_conf, caplog):
    conf = load(write_conf(
        cache={'backend_argument': 'password:cache-s3cret'},
        notifier={'auth_type': 'password', 'auth_url': 'http://ks/v3',
                  'username': 'monitor', 'password': 'ks-s3cret',
                  'endpoint': None}))
    logger = logging.getLogger('test.effective')
    caplog.set_level(logging.INFO, logger='test.effective')
    config.log_effective_settings(conf, logger)
    text = '\n'.join(r.getMessage() for r in caplog.records)
    assert 's3cret' not in text
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert re.search(r'monitor\.failure_threshold\s+= 3', text)
    assert re.search(r'cache\.backend_argument\s+= \*\*\*\*', text)
    assert re.search(r'state_path\s+= ', text)


def test_options_that_look_secret_are_secret():
    looks_secret = re.compile(r'password|secret|token|credential')
    for group, group_opts in opts.list_opts():
        for opt in group_opts:
            if looks_secret.search(opt.dest):
                assert opt.secret, (group, opt.dest)


# -- credentials never printed ------------------------------------------------

@pytest.mark.parametrize('text, masked', [
    ('https://user:pa55@engine:15868/v1', 'https://user:***@engine:15868/v1'),
    ('redis://:pa55@127.0.0.1:6379/0', 'redis://:***@127.0.0.1:6379/0'),
    ("['url:redis://u:pa55@h/0']", "['url:redis://u:***@h/0']"),
    ('qemu+tls://h/system?password=pa55&x=1',
     'qemu+tls://h/system?password=***&x=1'),
    ('http://user@engine/v1', 'http://user@engine/v1'),
    ('http://u:p@ss@engine/v1@x', 'http://u:***@engine/v1@x'),
    ('qemu:///system', 'qemu:///system'),
])
def test_mask_credentials(text, masked):
    assert masking.mask(text) == masked


def test_effective_settings_mask_passwords_in_urls(write_conf, caplog):
    conf = load(write_conf(
        notifier={'endpoint': 'https://monitor:url-s3cret@127.0.0.1:9/v1'},
        libvirt={'connection_uri':
                 'qemu+tcp://admin:uri-s3cret@127.0.0.1/system'}))
    logger = logging.getLogger('test.effective')
    caplog.set_level(logging.INFO, logger='test.effective')
    config.log_effective_settings(conf, logger)
    text = '\n'.join(r.getMessage() for r in caplog.records)
    assert 's3cret' not in text
    assert 'notifier.endpoint' in text
    assert 'https://monitor:***@127.0.0.1:9/v1' in text
    assert 'qemu+tcp://admin:***@127.0.0.1/system' in text


def test_an_error_about_a_url_masks_its_password(write_conf):
    error = load_error(write_conf(
        notifier={'endpoint': 'ftp://monitor:url-s3cret@engine/v1'}))
    assert str(error).startswith('[notifier] endpoint: ')
    assert 'url-s3cret' not in str(error)
    assert 'ftp://monitor:***@engine/v1' in str(error)


def test_a_bad_backend_argument_is_not_quoted(write_conf):
    error = load_error(write_conf(
        cache={'backend_argument': 'cache-s3cret-without-key'}))
    assert str(error) == '[cache] backend_argument: expected key:value'


def test_an_option_registered_at_run_time_is_assumed_secret(
        write_conf, monkeypatch):
    from oslo_config import cfg

    build = config.build_conf

    def build_with_extra():
        conf = build()
        conf.register_opt(cfg.IntOpt('plugin_port'), group='notifier')
        return conf

    monkeypatch.setattr(config, 'build_conf', build_with_extra)
    error = load_error(write_conf(notifier={'plugin_port': 'pin-s3cret'}))
    assert str(error).startswith('[notifier] plugin_port: not a valid value')
    assert 's3cret' not in str(error)


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


def test_the_libvirt_integer_limits_are_respected():
    conf = config.build_conf()
    for group, name in (('libvirt', 'keepalive_interval'),
                        ('monitor', 'ping_timeout')):
        opt = conf._get_opt_info(name, group)['opt']
        assert opt.type.max < 2 ** 31, name


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


# -- files -----------------------------------------------------------------------

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


def test_a_config_path_that_is_a_directory(tmp_path):
    with pytest.raises(config.ConfigError) as excinfo:
        load(str(tmp_path))
    assert str(excinfo.value) == ('configuration file %s: is a directory'
                                  % tmp_path)


def test_a_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / 'latin1.conf'
    path.write_bytes('[DEFAULT]\nhost = h\xf6st\n'.encode('latin-1'))
    with pytest.raises(config.ConfigError) as excinfo:
        load(str(path))
    assert str(excinfo.value) == ('configuration file %s: not UTF-8 text '
                                  '(byte 18)' % path)


def test_a_config_dir_file_that_is_not_utf8(tmp_path, write_conf):
    conf_dir = tmp_path / 'conf.d'
    conf_dir.mkdir()
    (conf_dir / '10-bad.conf').write_bytes(b'[monitor]\n# \xff\n')
    with pytest.raises(config.ConfigError) as excinfo:
        config.load(['--config-file', write_conf(),
                     '--config-dir', str(conf_dir)], default_config_files=[])
    assert '10-bad.conf: not UTF-8 text' in str(excinfo.value)


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads any file')
def test_an_unreadable_config_file(write_conf):
    path = write_conf()
    os.chmod(path, 0)
    with pytest.raises(config.ConfigError) as excinfo:
        load(path)
    assert 'Permission denied' in str(excinfo.value)


# -- unknown options -------------------------------------------------------------

def test_misspelt_options_and_sections_are_found(write_conf):
    conf = load(write_conf(monitor={'intervall': '5'},
                           DEFAULT={'stat_path': '/x'},
                           monitr={'interval': '5'}))
    assert sorted(config.unknown_options(conf), key=str) == sorted(
        [('monitor', 'intervall'), ('DEFAULT', 'stat_path'),
         ('monitr', None)], key=str)


def test_every_known_spelling_is_known(write_conf):
    conf = load(write_conf(
        monitor={'interval': '5'},
        notifier={'auth_type': 'password', 'endpoint': None,
                  'auth_url': 'http://127.0.0.1:9/identity',
                  'username': 'monitor', 'password': 'x',
                  # keystoneauth's old name of auth_type
                  'auth_plugin': 'password',
                  'collect-timing': 'false'}))
    assert config.unknown_options(conf) == []


def test_options_of_the_auth_section_are_known(write_conf):
    conf = load(write_conf(
        notifier={'auth_section': 'keystone', 'endpoint': None},
        keystone={'auth_type': 'password',
                  'auth_url': 'http://127.0.0.1:9/identity',
                  'username': 'monitor', 'passwrd': 'x'}))
    assert config.unknown_options(conf) == [('keystone', 'passwrd')]


def test_unknown_options_are_warned_about_once_each(write_conf, caplog):
    conf = load(write_conf(monitor={'intervall': '5'}, monitr={'a': '1'}))
    logger = logging.getLogger('test.unknown')
    caplog.set_level(logging.WARNING, logger='test.unknown')
    config.warn_unknown_options(conf, logger)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, '[monitor] intervall is not a known option; '
                          'ignored'),
        (logging.WARNING, '[monitr] is not a known section; ignored'),
    ]


# -- state kept outside state_path ------------------------------------------------

def test_a_state_file_outside_the_state_path_is_state(write_conf, tmp_path):
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    for name in ('domains.sqlite-wal', 'other.txt'):
        (elsewhere / name).write_text('')
    conf = load(write_conf(cache={
        'backend': 'guest_health_monitor.sqlite',
        'backend_argument': 'filename:%s' % (elsewhere / 'domains.sqlite')}))
    assert config.state_files(conf) == [str(elsewhere / 'domains.sqlite-wal')]


def test_no_state_files_outside_the_state_path_by_default(write_conf):
    conf = load(write_conf(cache={'backend': 'guest_health_monitor.sqlite'}))
    assert config.state_files(conf) == []


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
        webhook={'url': 'https://hooks.example.org/guests', 'secret': 's'},
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
    webhook = {'url': 'http://127.0.0.1:9/hook', 'secret': 's'}
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
