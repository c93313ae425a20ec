import logging
import os
import re
import socket

import pytest
from keystoneauth1 import loading as ks_loading

from monitor import config
from monitor import opts

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
        cache={'backend': 'dogpile.cache.dbm',
               'backend_argument': ['filename:/tmp/x.dbm']}))
    assert conf.monitor.failure_threshold == 5
    assert conf.monitor.mass_failure_ratio == 0.25
    assert conf.cache.backend_argument == ['filename:/tmp/x.dbm']


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
    assert str(error) == ("[notifier] endpoint: required when "
                          "[notifier] auth_type is unset or 'none'")


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
