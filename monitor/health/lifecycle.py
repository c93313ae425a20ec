"""What a domain event means for health monitoring.

Pure mapping, no libvirt: a :class:`DomainEvent` carries the monitor's
own names for what happened (:class:`EventKind`, :class:`LifecycleEvent`,
the detail enums the policy tells apart); the libvirt edge
(``monitor.virt.events``) translates libvirt's numbers into them, by
name: a member's name is that of libvirt's constant, less its prefix.
"""

import dataclasses
import enum
import typing


class EventKind(enum.Enum):
    """Which kind of domain event: the libvirt callback it came from."""
    LIFECYCLE = 'lifecycle'
    REBOOT = 'reboot'
    AGENT = 'agent'
    # A watchdog device fired: ``event`` is the action libvirt took.
    WATCHDOG = 'watchdog'
    # A disk I/O error (libvirt's io-error-reason event): ``event`` is
    # the action libvirt took, ``detail`` an :class:`IOErrorInfo`.
    IO_ERROR = 'io_error'


def _words(name, members):
    """An enum whose members' values are their names in words (what
    :func:`describe` says): FROM_SNAPSHOT is 'from snapshot'."""
    return enum.Enum(name, [(member, member.lower().replace('_', ' '))
                            for member in members.split()],
                     module=__name__, qualname=name)


LifecycleEvent = _words('LifecycleEvent', """
    DEFINED UNDEFINED STARTED SUSPENDED RESUMED STOPPED SHUTDOWN PMSUSPENDED
    CRASHED""")

# Why a domain crashed: PANICKED is reported by the guest's pvpanic
# device; CRASHLOADED means the guest loaded its crash kernel (kdump).
CrashedDetail = _words('CrashedDetail', 'PANICKED CRASHLOADED')

# Why a domain stopped: CRASHED after a crash with on_crash=destroy;
# FAILED when the QEMU process ended on its own.
StoppedDetail = _words('StoppedDetail', """
    SHUTDOWN DESTROYED CRASHED MIGRATED SAVED FAILED FROM_SNAPSHOT""")

# Why a domain was paused: PAUSED by a client (virsh suspend, Nova's
# pause), IOERROR by its disk error policy (error_policy='stop' or
# 'enospace') on a failed disk write or read.
SuspendedDetail = _words('SuspendedDetail', 'PAUSED IOERROR')

# What libvirt did about a disk I/O error: PAUSE (the disk's error policy
# is stop or enospace), REPORT (the error was passed to the guest), NONE.
IOErrorAction = _words('IOErrorAction', 'NONE PAUSE REPORT')

# What libvirt did when a watchdog device fired.
WatchdogAction = _words('WatchdogAction', """
    NONE PAUSE RESET POWEROFF SHUTDOWN DEBUG INJECTNMI""")

AgentState = _words('AgentState', 'CONNECTED DISCONNECTED')

# Why the guest agent's state changed.
AgentReason = _words('AgentReason', 'UNKNOWN DOMAIN_STARTED CHANNEL')


class Action(enum.Enum):
    # Monitoring starts over in discovery: the guest (re)booted or runs
    # again after a pause.
    REARM = 'rearm'
    # Keep the record but stop pinging: the guest cannot answer on purpose.
    PARK = 'park'
    # The domain is gone from this host: drop its record.
    FORGET = 'forget'
    AGENT_CONNECTED = 'agent_connected'
    AGENT_DISCONNECTED = 'agent_disconnected'
    IGNORE = 'ignore'


@dataclasses.dataclass(frozen=True)
class DomainEvent:
    """A domain event, reduced to plain values."""

    uuid: str
    name: str
    kind: EventKind
    # lifecycle: a LifecycleEvent; agent: an AgentState; watchdog: a
    # WatchdogAction; io_error: an IOErrorAction; reboot: None.
    event: typing.Any
    # lifecycle: CrashedDetail, StoppedDetail or SuspendedDetail for
    # those events, None for details the policy does not tell apart;
    # agent: an AgentReason (None when unknown); io_error: an
    # IOErrorInfo; reboot, watchdog: None.
    detail: typing.Any
    # Epoch seconds at which the event was seen.
    at: float


class IOErrorInfo(typing.NamedTuple):
    """Which disk failed and how, in libvirt's words."""
    # The disk's device alias (e.g. 'virtio-disk1').
    device: str
    # Its source: a file path, a volume or a network disk's name.
    source: str
    # libvirt's error, e.g. 'enospc' (no space left), 'eio'.
    reason: str

    def describe(self):
        return 'disk %s (%s): %s' % (self.device, self.source or 'no source',
                                     self.reason or 'unknown error')


_LIFECYCLE_ACTIONS = {
    # Booted, migrated in, restored, from snapshot, woken up: a new run of
    # the guest whose agent has to come up first.
    LifecycleEvent.STARTED: Action.REARM,
    LifecycleEvent.RESUMED: Action.REARM,
    # Paused for any reason (user, migration, I/O error, watchdog): the
    # agent cannot answer, and no miss counts. A pause on an I/O error
    # that lasts past [monitor] io_error_grace is a failure all the same,
    # notified by the tracker's io_error_pauses, not by misses.
    LifecycleEvent.SUSPENDED: Action.PARK,
    LifecycleEvent.PMSUSPENDED: Action.PARK,
    # The guest is shutting down: no misses while it goes away. A STOPPED
    # event normally follows; a fake reboot resumes it instead.
    LifecycleEvent.SHUTDOWN: Action.PARK,
    LifecycleEvent.STOPPED: Action.FORGET,
    LifecycleEvent.UNDEFINED: Action.FORGET,
    LifecycleEvent.DEFINED: Action.IGNORE,
    # A guest panic seen by a pvpanic device. Nothing changes for the
    # record's lifecycle: the domain either stops or restarts (other
    # events follow) or is kept 'crashed' and still pinged. The failure
    # itself is notified at once by instant_failures, before this action
    # is applied, and never again by the misses that follow.
    LifecycleEvent.CRASHED: Action.IGNORE,
}

_AGENT_ACTIONS = {
    AgentState.CONNECTED: Action.AGENT_CONNECTED,
    AgentState.DISCONNECTED: Action.AGENT_DISCONNECTED,
}


def _value(member):
    return 'unknown' if member is None else member.value


def describe(event):
    """Short operator text for a :class:`DomainEvent`, e.g.
    'stopped (failed)' or 'agent disconnected (reason channel)'."""
    if event.kind is EventKind.REBOOT:
        return 'reboot'
    if event.kind is EventKind.WATCHDOG:
        return 'watchdog fired (action %s)' % _value(event.event)
    if event.kind is EventKind.AGENT:
        return 'agent %s (reason %s)' % (_value(event.event),
                                         _value(event.detail))
    if event.kind is EventKind.IO_ERROR:
        where = 'unknown disk' if event.detail is None else \
            event.detail.describe()
        return 'I/O error on %s (action %s)' % (where, _value(event.event))
    text = _value(event.event)
    if event.detail is not None:
        text += ' (%s)' % event.detail.value
    return text


def action_for(event):
    """Return the :class:`Action` a :class:`DomainEvent` calls for.

    :raises ValueError: when ``event.kind`` is not an :class:`EventKind`.
    """
    if event.kind is EventKind.LIFECYCLE:
        return _LIFECYCLE_ACTIONS.get(event.event, Action.IGNORE)
    if event.kind is EventKind.REBOOT:
        return Action.REARM
    if event.kind is EventKind.AGENT:
        return _AGENT_ACTIONS.get(event.event, Action.IGNORE)
    if event.kind is EventKind.WATCHDOG:
        # What the watchdog's action does to the domain comes as events
        # of its own (suspended for pause, stopped for poweroff, reboot
        # for reset); the failure is instant_failures' to notify.
        return Action.IGNORE
    if event.kind is EventKind.IO_ERROR:
        # A pause it causes comes as a suspended event of its own.
        return Action.IGNORE
    raise ValueError(
        "unknown domain event kind '%s' (known: %s)"
        % (event.kind, ', '.join(k.value for k in EventKind)))
