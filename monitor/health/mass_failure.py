"""The host-wide mass-failure breaker.

When many guests on one host stop answering in the same sweep, the cause is
almost always the host (libvirt hung, storage stalled, host overloaded), not
the guests. Recovering each of them through the HA engine would make things
worse, so while the breaker is tripped the caller suppresses notifications.
"""

import logging

from oslo_config import cfg

LOG = logging.getLogger(__name__)

GROUP = 'monitor'

OPTS = [
    cfg.IntOpt(
        'mass_failure_min_domains',
        default=3, min=1, max=100000,
        help="""
Smallest number of domains missing their ping in one sweep that can trip the
host-wide mass-failure breaker.

While the breaker is tripped no notification is sent for any domain on this
host; one error line is logged when it trips and one line when it clears.
Guests still failing after it clears are reported then.

Possible values:

* An integer from 1 to 100000. Default 3.

Related options:

* mass_failure_ratio
"""),
    cfg.FloatOpt(
        'mass_failure_ratio',
        default=0.5, min=0.0, max=1.0,
        help="""
Fraction of the monitored domains that must miss their ping in one sweep,
together with mass_failure_min_domains, to trip the mass-failure breaker. The
breaker trips when the share of missed pings is greater than this value.

Possible values:

* A number from 0.0 to 1.0. Default 0.5. 1.0 disables the breaker.

Related options:

* mass_failure_min_domains
"""),
]


def list_opts():
    return [(GROUP, OPTS)]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


class MassFailureBreaker:
    """Decides, once per sweep, whether notifications are suppressed."""

    def __init__(self, min_domains, ratio):
        self.min_domains = min_domains
        self.ratio = ratio
        self.tripped = False

    @classmethod
    def from_conf(cls, conf):
        return cls(min_domains=conf.monitor.mass_failure_min_domains,
                   ratio=conf.monitor.mass_failure_ratio)

    def evaluate(self, monitored, missed):
        """Feed one sweep's counts; return True while tripped.

        :param monitored: domains whose ping result counted in this sweep.
        :param missed: how many of those missed their ping.
        """
        tripped = (missed >= self.min_domains and monitored > 0
                   and missed / monitored > self.ratio)
        if tripped and not self.tripped:
            LOG.error(
                'Mass failure on this host: %(missed)d of %(monitored)d '
                'monitored domains missed their ping in one sweep (breaker: '
                'at least %(min)d and more than %(ratio).0f%%); the host, '
                'not the guests, is likely at fault. Holding back all '
                'notifications until it clears.',
                {'missed': missed, 'monitored': monitored,
                 'min': self.min_domains, 'ratio': self.ratio * 100})
        elif self.tripped and not tripped:
            LOG.warning(
                'Mass failure cleared: %(missed)d of %(monitored)d monitored '
                'domains missed their ping; notifications resume.',
                {'missed': missed, 'monitored': monitored})
        self.tripped = tripped
        return tripped
