"""What a libvirt domain event means for health monitoring.

Pure mapping, no libvirt needed: the libvirt constants this module relies on
are copied here as plain ints under their libvirt names (a unit test checks
them against the libvirt module when it is installed).
"""

import dataclasses
import enum

# virDomainEventID: the callbacks the monitor registers.
VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0
VIR_DOMAIN_EVENT_ID_REBOOT = 1
VIR_DOMAIN_EVENT_ID_WATCHDOG = 3
VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE = 18

# virDomainEventType: the ``event`` of a lifecycle event.
VIR_DOMAIN_EVENT_DEFINED = 0
VIR_DOMAIN_EVENT_UNDEFINED = 1
VIR_DOMAIN_EVENT_STARTED = 2
VIR_DOMAIN_EVENT_SUSPENDED = 3
VIR_DOMAIN_EVENT_RESUMED = 4
VIR_DOMAIN_EVENT_STOPPED = 5
VIR_DOMAIN_EVENT_SHUTDOWN = 6
VIR_DOMAIN_EVENT_PMSUSPENDED = 7
VIR_DOMAIN_EVENT_CRASHED = 8

# virConnectDomainEventAgentLifecycleState / ...Reason: the ``event`` and
# ``detail`` of an agent lifecycle event.
VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED = 1
VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_DISCONNECTED = 2
VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_UNKNOWN = 0
VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_DOMAIN_STARTED = 1
VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_CHANNEL = 2

KIND_LIFECYCLE = 'lifecycle'
KIND_REBOOT = 'reboot'
KIND_AGENT = 'agent'
# A watchdog device fired: ``event`` is the watchdog action libvirt took
# (virDomainEventWatchdogAction), ``detail`` 0.
KIND_WATCHDOG = 'watchdog'
KINDS = (KIND_LIFECYCLE, KIND_REBOOT, KIND_AGENT, KIND_WATCHDOG)

_LIFECYCLE_EVENT_NAMES = {
    VIR_DOMAIN_EVENT_DEFINED: 'defined',
    VIR_DOMAIN_EVENT_UNDEFINED: 'undefined',
    VIR_DOMAIN_EVENT_STARTED: 'started',
    VIR_DOMAIN_EVENT_SUSPENDED: 'suspended',
    VIR_DOMAIN_EVENT_RESUMED: 'resumed',
    VIR_DOMAIN_EVENT_STOPPED: 'stopped',
    VIR_DOMAIN_EVENT_SHUTDOWN: 'shutdown',
    VIR_DOMAIN_EVENT_PMSUSPENDED: 'pmsuspended',
    VIR_DOMAIN_EVENT_CRASHED: 'crashed',
}

_AGENT_STATE_NAMES = {
    VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED:
        'agent connected',
    VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_DISCONNECTED:
        'agent disconnected',
}


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
    """A libvirt domain event, reduced to plain values."""

    uuid: str
    name: str
    # One of KINDS: which libvirt callback produced it.
    kind: str
    # lifecycle: virDomainEventType; agent: the agent state; watchdog:
    # the action; reboot: 0.
    event: int
    # lifecycle: the event's detail; agent: the reason; reboot, watchdog:
    # 0.
    detail: int
    # Epoch seconds at which the callback ran.
    at: float


_LIFECYCLE_ACTIONS = {
    # Booted, migrated in, restored, from snapshot, woken up: a new run of
    # the guest whose agent has to come up first.
    VIR_DOMAIN_EVENT_STARTED: Action.REARM,
    VIR_DOMAIN_EVENT_RESUMED: Action.REARM,
    # Paused for any reason (user, migration, I/O error, watchdog): the
    # agent cannot answer and that is not a guest failure.
    VIR_DOMAIN_EVENT_SUSPENDED: Action.PARK,
    VIR_DOMAIN_EVENT_PMSUSPENDED: Action.PARK,
    # The guest is shutting down: no misses while it goes away. A STOPPED
    # event normally follows; a fake reboot resumes it instead.
    VIR_DOMAIN_EVENT_SHUTDOWN: Action.PARK,
    VIR_DOMAIN_EVENT_STOPPED: Action.FORGET,
    VIR_DOMAIN_EVENT_UNDEFINED: Action.FORGET,
    VIR_DOMAIN_EVENT_DEFINED: Action.IGNORE,
    # A guest panic seen by a pvpanic device. Nothing changes for the
    # record's lifecycle: the domain either stops or restarts (other
    # events follow) or is kept 'crashed' and still pinged. The failure
    # itself is notified at once by instant_failures, before this action
    # is applied, and never again by the misses that follow.
    VIR_DOMAIN_EVENT_CRASHED: Action.IGNORE,
}

_AGENT_ACTIONS = {
    VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED:
        Action.AGENT_CONNECTED,
    VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_DISCONNECTED:
        Action.AGENT_DISCONNECTED,
}


def describe(event):
    """Short operator text for a :class:`DomainEvent`, e.g.
    'stopped (detail 5)' or 'agent disconnected (reason 2)'."""
    if event.kind == KIND_REBOOT:
        return 'reboot'
    if event.kind == KIND_WATCHDOG:
        return 'watchdog fired (action %s)' % event.event
    if event.kind == KIND_AGENT:
        name = _AGENT_STATE_NAMES.get(event.event,
                                      'agent state %s' % event.event)
        return '%s (reason %s)' % (name, event.detail)
    name = _LIFECYCLE_EVENT_NAMES.get(event.event,
                                      'lifecycle event %s' % event.event)
    return '%s (detail %s)' % (name, event.detail)


def action_for(event):
    """Return the :class:`Action` a :class:`DomainEvent` calls for.

    Event numbers this module does not know (a newer libvirt) are ignored.

    :raises ValueError: when ``event.kind`` is not one of :data:`KINDS`.
    """
    if event.kind == KIND_LIFECYCLE:
        return _LIFECYCLE_ACTIONS.get(event.event, Action.IGNORE)
    if event.kind == KIND_REBOOT:
        return Action.REARM
    if event.kind == KIND_AGENT:
        return _AGENT_ACTIONS.get(event.event, Action.IGNORE)
    if event.kind == KIND_WATCHDOG:
        # What the watchdog's action does to the domain comes as events
        # of its own (suspended for pause, stopped for poweroff, reboot
        # for reset); the failure is instant_failures' to notify.
        return Action.IGNORE
    raise ValueError(
        "unknown domain event kind '%s' (known: %s)"
        % (event.kind, ', '.join(KINDS)))
