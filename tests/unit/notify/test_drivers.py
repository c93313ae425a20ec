"""Choosing the notifier, and the start-up checks between the notifier,
the webhook and self-recovery."""

import pytest
from oslo_config import cfg

from monitor.errors import ConfigError
from monitor.health import recovery_policy as recovery
from monitor.notify import drivers as notifier_driver
from monitor.notify import masakari as notifier
from monitor.notify import masakari_conf
from monitor.notify import webhook
from monitor.notify.notification import Notification
from monitor.notify.notification import OutcomeKind

# A Standard Webhooks signing secret, the form [webhook] secret takes.
WEBHOOK_SECRET = 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='


def conf_from(tmp_path, text):
    path = tmp_path / 'monitor.conf'
    path.write_text(text)
    conf = cfg.ConfigOpts()
    for module in (masakari_conf, notifier_driver, recovery, webhook):
        module.register_opts(conf)
    conf(['--config-file', str(path)], default_config_files=[])
    return conf


def test_the_driver_defaults_to_masakari(tmp_path):
    assert conf_from(tmp_path, '').notifier.driver == 'masakari'


@pytest.mark.parametrize('action', ['reset', 'restart'])
def test_a_recovery_action_with_the_masakari_driver_is_refused(tmp_path,
                                                               action):
    conf = conf_from(tmp_path, '[recovery]\naction = %s\n' % action)

    with pytest.raises(ConfigError) as caught:
        notifier_driver.check_conf(conf)

    text = str(caught.value)
    assert text.startswith('[recovery] action: ')
    assert '[notifier] driver = masakari' in text
    assert (caught.value.group, caught.value.option) == ('recovery', 'action')


@pytest.mark.parametrize('driver', ['webhook', 'none'])
def test_a_recovery_action_without_an_engine_is_fine(tmp_path, driver):
    conf = conf_from(tmp_path, '[notifier]\ndriver = %s\n'
                               '[recovery]\naction = reset\n'
                               '[webhook]\nurl = http://127.0.0.1:9/h\n'
                               'secret = %s\n' % (driver, WEBHOOK_SECRET))

    notifier_driver.check_conf(conf)


def test_the_masakari_driver_without_recovery_is_fine(tmp_path):
    notifier_driver.check_conf(conf_from(tmp_path, ''))


@pytest.mark.parametrize('missing,present', [('url', 'secret = ' + WEBHOOK_SECRET),
                                             ('secret',
                                              'url = http://127.0.0.1:9/h')])
def test_the_webhook_driver_needs_url_and_secret(tmp_path, missing, present):
    conf = conf_from(tmp_path, '[notifier]\ndriver = webhook\n'
                               '[webhook]\n%s\n' % present)

    with pytest.raises(ConfigError) as caught:
        notifier_driver.check_conf(conf)

    assert str(caught.value).startswith('[webhook] %s: ' % missing)


def test_an_unknown_driver_is_refused(tmp_path):
    conf = conf_from(tmp_path, '[notifier]\ndriver = email\n')

    with pytest.raises(ValueError):
        conf.notifier.driver


def test_each_driver_builds_its_client(tmp_path):
    webhook_conf = conf_from(tmp_path, '[notifier]\ndriver = webhook\n'
                                       '[webhook]\nurl = http://127.0.0.1:9/h'
                                       '\nsecret = %s\n' % WEBHOOK_SECRET)
    none_conf = conf_from(tmp_path, '[notifier]\ndriver = none\n')
    engine_conf = conf_from(tmp_path, '[notifier]\nauth_type = none\n'
                                      'endpoint = http://127.0.0.1:9/v1\n')

    assert isinstance(notifier_driver.build_client(webhook_conf),
                      webhook.WebhookClient)
    assert isinstance(notifier_driver.build_client(none_conf),
                      notifier_driver.NoNotifier)
    assert isinstance(notifier_driver.build_client(engine_conf),
                      notifier.MasakariClient)


def test_the_none_driver_counts_every_notification_as_delivered():
    n = Notification.new('u', 'd', 'h', 1.0)

    outcome = notifier_driver.NoNotifier().send(n)

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert outcome.done


def test_the_none_driver_counts_the_end_of_a_failure_as_delivered():
    n = Notification.resolving(Notification.new('u', 'd', 'h', 1.0), 2.0)

    outcome = notifier_driver.NoNotifier().send(n)

    assert outcome.done
    assert 'end of a failure not sent' in outcome.message


@pytest.mark.parametrize('driver,expected', [('masakari', True),
                                             ('webhook', False),
                                             ('none', False)])
def test_only_the_masakari_driver_uses_the_engine(tmp_path, driver,
                                                  expected):
    conf = conf_from(tmp_path, '[notifier]\ndriver = %s\n' % driver)

    assert notifier_driver.uses_masakari(conf) is expected


@pytest.mark.parametrize('text,option', [
    # No catalog and no URL: nowhere to find the engine.
    ('[notifier]\nauth_type = none\n', 'endpoint_override'),
    # keystoneauth refuses the plugin's options when it loads it.
    ('[notifier]\nauth_type = password\n', 'auth_url'),
])
def test_an_engine_client_that_cannot_be_built_is_a_config_error(
        tmp_path, text, option):
    conf = conf_from(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        notifier_driver.build_client(conf)

    assert caught.value.group == 'notifier'
    assert option in caught.value.option
