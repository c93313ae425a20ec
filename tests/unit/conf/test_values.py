"""Bad values name their option and show what was written, unless the
option is secret."""

import re

import pytest
from oslo_config import cfg

from monitor.conf import loading
from monitor.conf import opts
from tests.unit.conf.load_helpers import load_error


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


def test_options_that_look_secret_are_secret():
    looks_secret = re.compile(r'password|secret|token|credential')
    for group, group_opts in opts.list_opts():
        for opt in group_opts:
            if looks_secret.search(opt.dest):
                assert opt.secret, (group, opt.dest)


def test_an_error_about_a_url_masks_its_password(write_conf):
    error = load_error(write_conf(
        notifier={'endpoint': 'ftp://monitor:url-s3cret@engine/v1'}))
    assert str(error).startswith('[notifier] endpoint: ')
    assert 'url-s3cret' not in str(error)
    assert 'ftp://monitor:***@engine/v1' in str(error)


def test_an_option_registered_at_run_time_is_assumed_secret(
        write_conf, monkeypatch):
    build = loading.build_conf

    def build_with_extra():
        conf = build()
        conf.register_opt(cfg.IntOpt('plugin_port'), group='notifier')
        return conf

    monkeypatch.setattr(loading, 'build_conf', build_with_extra)
    error = load_error(write_conf(notifier={'plugin_port': 'pin-s3cret'}))
    assert str(error).startswith('[notifier] plugin_port: not a valid value')
    assert 's3cret' not in str(error)
