"""What the daemon logs about its configuration: every effective setting
with secrets and URL passwords masked, and each option or section of the
files that it does not know."""

import logging
import re

import pytest

from monitor import masking
from monitor.conf import settings_log
from tests.unit.conf.load_helpers import load


def test_effective_settings_log_every_option_but_no_secret(
        write_conf, caplog):
    conf = load(write_conf(
        cache={'backend_argument': 'password:cache-s3cret'},
        notifier={'auth_type': 'password', 'auth_url': 'http://ks/v3',
                  'username': 'monitor', 'password': 'ks-s3cret',
                  'endpoint': None}))
    logger = logging.getLogger('test.effective')
    caplog.set_level(logging.INFO, logger='test.effective')
    settings_log.log_effective_settings(conf, logger)
    text = '\n'.join(r.getMessage() for r in caplog.records)
    assert 's3cret' not in text
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert re.search(r'monitor\.failure_threshold\s+= 3', text)
    assert re.search(r'cache\.backend_argument\s+= \*\*\*\*', text)
    assert re.search(r'state_path\s+= ', text)


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
    settings_log.log_effective_settings(conf, logger)
    text = '\n'.join(r.getMessage() for r in caplog.records)
    assert 's3cret' not in text
    assert 'notifier.endpoint' in text
    assert 'https://monitor:***@127.0.0.1:9/v1' in text
    assert 'qemu+tcp://admin:***@127.0.0.1/system' in text


def test_misspelt_options_and_sections_are_found(write_conf):
    conf = load(write_conf(monitor={'intervall': '5'},
                           DEFAULT={'stat_path': '/x'},
                           monitr={'interval': '5'}))
    assert sorted(settings_log.unknown_options(conf), key=str) == sorted(
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
    assert settings_log.unknown_options(conf) == []


def test_options_of_the_auth_section_are_known(write_conf):
    conf = load(write_conf(
        notifier={'auth_section': 'keystone', 'endpoint': None},
        keystone={'auth_type': 'password',
                  'auth_url': 'http://127.0.0.1:9/identity',
                  'username': 'monitor', 'passwrd': 'x'}))
    assert settings_log.unknown_options(conf) == [('keystone', 'passwrd')]


def test_unknown_options_are_warned_about_once_each(write_conf, caplog):
    conf = load(write_conf(monitor={'intervall': '5'}, monitr={'a': '1'}))
    logger = logging.getLogger('test.unknown')
    caplog.set_level(logging.WARNING, logger='test.unknown')
    settings_log.warn_unknown_options(conf, logger)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, '[monitor] intervall is not a known option; '
                          'ignored'),
        (logging.WARNING, '[monitr] is not a known section; ignored'),
    ]
