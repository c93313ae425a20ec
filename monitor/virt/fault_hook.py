"""A test hook: one named domain's libvirt answers raise.

``GUEST_HEALTH_MONITOR_FAULTY_DOMAIN=name[:stage]`` makes the named
domain raise an unexpected exception when it is listed ('list') or
pinged ('ping', the default). Read once when the host object is built.
The integration tests use it to show that one hostile domain cannot blind
the monitor to the others; it has no use in production.
"""

import typing

from monitor.virt import notes

FAULTY_DOMAIN_ENV = 'GUEST_HEALTH_MONITOR_FAULTY_DOMAIN'


class FaultHook(typing.NamedTuple):
    name: typing.Optional[str] = None
    stage: typing.Optional[str] = None

    def hits(self, stage, name):
        return self.stage == stage and name == self.name

    @staticmethod
    def fault():
        return UnicodeDecodeError('utf-8', b'\xff', 0, 1,
                                  'injected by %s' % FAULTY_DOMAIN_ENV)


def parse(value):
    """The :class:`FaultHook` of the variable's ``value`` (None or empty:
    none)."""
    if not value:
        return FaultHook()
    name, _sep, stage = value.partition(':')
    stage = stage or notes.STAGE_PING
    if stage not in (notes.STAGE_LIST, notes.STAGE_PING):
        raise ValueError('%s: unknown stage %r (list or ping)'
                         % (FAULTY_DOMAIN_ENV, stage))
    return FaultHook(name, stage)
