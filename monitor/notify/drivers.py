"""Which notifier the daemon uses, and the checks that tie it to recovery.

``[notifier] driver`` chooses the HA engine (Masakari), a signed webhook,
Prometheus's Alertmanager, or nothing. The HA engine's client is imported
only when built, so a host without an HA engine never needs Keystone
settings.
"""

from __future__ import annotations

from oslo_config import cfg

from monitor.errors import ConfigError
from monitor.health import recovery_policy as recovery
from monitor.notify import alertmanager
from monitor.notify import webhook
from monitor.notify.notification import RESOLVED
from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind

GROUP = 'notifier'

MASAKARI = 'masakari'
WEBHOOK = 'webhook'
ALERTMANAGER = 'alertmanager'
NONE = 'none'

# The drivers that are sent the end of a failure (kind RESOLVED) when the
# guest answers again or its domain is undefined: an alert is resolved, a
# webhook receiver gets a recovered event. The HA engine has no such
# notion.
SENDS_RESOLVED = frozenset({ALERTMANAGER, WEBHOOK})

OPTS = [
    cfg.StrOpt(
        'driver',
        default=MASAKARI,
        choices=[
            (MASAKARI, 'the OpenStack Masakari API, which recovers the VM'),
            (WEBHOOK, 'a signed JSON POST to [webhook] url'),
            (ALERTMANAGER, 'alerts to the Prometheus Alertmanagers of '
                           '[alertmanager] urls, resolved when the guest is '
                           'back'),
            (NONE, 'no notification; log only (with [recovery] action '
                   'the monitor still recovers guests itself)'),
        ],
        help="""
Where failure notifications go. Default masakari.

With webhook, alertmanager or none the monitor can recover guests itself
([recovery] action); the Keystone and endpoint options of this group are
then unused.

Related options:

* [webhook] url, [webhook] secret, [alertmanager] urls, [recovery] action
"""),
]


def list_opts():
    return [(GROUP, OPTS)]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def uses_masakari(conf):
    """True when notifications go to the HA engine: only then are the
    engine's endpoint, Keystone and TLS options used and checked
    (``masakari_conf.check_conf``)."""
    return conf[GROUP].driver == MASAKARI


def wants_resolved(conf):
    """True when the driver is sent the end of each failure it was sent
    (kind RESOLVED)."""
    return conf[GROUP].driver in SENDS_RESOLVED


def check_conf(conf):
    """Refuse option combinations of the standalone mode at start.

    The HA engine's own options are checked by ``masakari_conf.check_conf``
    when ``uses_masakari(conf)``, the webhook's CA file by
    ``webhook.check_conf`` whatever the driver.

    :raises ConfigError: names the option to change; the message names
        the other one involved.
    """
    driver = conf[GROUP].driver
    action = conf[recovery.GROUP].action
    if driver == MASAKARI and action != recovery.NONE:
        raise ConfigError(
            recovery.GROUP, 'action',
            "'%s' cannot be used with [notifier] driver = masakari: the HA "
            "engine recovers the VM itself and two recoverers must not act "
            "on one VM; set [notifier] driver = webhook, alertmanager or "
            "none, or [recovery] action = none" % action)
    if driver == ALERTMANAGER:
        alertmanager.check_required(conf)
    if driver == WEBHOOK:
        if not conf.webhook.url:
            raise ConfigError('webhook', 'url',
                              'required with [notifier] driver = webhook')
        if not conf.webhook.secret:
            raise ConfigError('webhook', 'secret',
                              'required with [notifier] driver = webhook: '
                              'every POST is signed with it')


class NoNotifier:
    """``[notifier] driver = none``: every notification counts as
    delivered at once, so the health state moves on as with an engine."""

    def send(self, notification):
        # The end of a failure too, left in the outbox by another driver.
        what = 'end of a failure ' if notification.kind == RESOLVED else ''
        return DeliveryOutcome(OutcomeKind.ACCEPTED, None,
                               '%snot sent: [notifier] driver = none' % what)

    def close(self):
        pass


def build_client(conf):
    """The client for ``[notifier] driver``; each has ``send(notification)
    -> DeliveryOutcome``.

    :raises ConfigError: when the client cannot be built from the options
        (for the HA engine: its Keystone auth plugin or session).
    """
    driver = conf[GROUP].driver
    if driver == WEBHOOK:
        return webhook.WebhookClient.from_conf(conf)
    if driver == ALERTMANAGER:
        return alertmanager.AlertmanagerClient.from_conf(conf)
    if driver == NONE:
        return NoNotifier()
    from monitor.notify import masakari
    return masakari.MasakariClient.from_conf(conf)
