"""Failures libvirt already knows about: notify at once, never twice.

Most dead guests only show as an agent that stops answering, and the
failure threshold has to be counted out. Some failures libvirt sees as they
happen, and waiting for missed pings would only delay the recovery:

* a guest kernel panic, through a pvpanic device (``<panic model='isa'/>``
  with the guest's pvpanic driver): a crashed lifecycle event, detail
  panicked, whatever ``on_crash`` does next (preserve keeps the domain
  'crashed', destroy stops it, restart boots it again: the panic was real
  in every case);
* the QEMU process of a guest ending on its own (killed, crashed, the host
  out of memory): a stopped lifecycle event, detail failed, or detail
  crashed after a panic with on_crash=destroy;
* a watchdog device firing (``<watchdog action=.../>``): the guest stopped
  feeding it, so it hangs. Reported when libvirt's action leaves the guest
  down or stuck (none, pause, dump, poweroff, shutdown, debug; dump shows
  as pause); not when the action is itself a recovery (reset, inject-nmi),
  whose outcome the pings and a crash event judge.

Not reported: a crash that loaded the guest's crash kernel (kdump), as the
guest dumps and reboots by itself.

Each failure also has the payload shape the HA engine is sent
(``notification.Shape``). Where masakari-instancemonitor, which runs beside
this monitor, reports the same failure in a shape the engine recovers, ours
is exactly its shape, so that masakari-api keeps one of the two: a QEMU
process that ended on its own (stopped, failed) and a watchdog that powered
the guest off are sent as LIFECYCLE / STOPPED_FAILED. Every other failure
is this monitor's alone (masakari-instancemonitor sends nothing, or a pair
the engine ignores) and keeps QEMU_GUEST_AGENT_ERROR / STOPPED_FAILED.

A guest paused on an I/O error is a failure only once the pause has
lasted (``io_error_pauses``); :func:`decide_pause` decides about it as
:func:`decide` does about an event.

Plain code: :func:`failure_of` says what failure an event reports and
:func:`decide` whether to notify now, from the domain's facts.

The contract the tracker follows, so that one failure is notified once:

1. Call :func:`decide` for every domain event, before the event's
   lifecycle action is applied (a stopped event forgets the record), with
   the record's health state (None: no record, the domain is not
   monitored) and what the health policy knows of notifications for it:
   a pending one, or one of the current incident delivered or refused
   (the reason text the policy gives, or simply True; falsy for none).
2. When it says notify, queue the notification and record the incident
   as the threshold miss would: the record enters the failing state
   (``healthy`` -> ``error``; ``discovery`` stays), ``misses`` = failure
   threshold, and the incident's start (``failing_since``) is the event's
   time unless it began earlier, so that the notification, created now,
   belongs to it. The engine's acceptance then makes the domain
   ``reported`` as for any other failure.
3. From then on the same incident is never notified again: the health
   policy asks for no notification while one is pending or one of the
   incident is delivered (later misses, a crashed domain's pings), and
   :func:`decide` declines for the same reasons (a repeated watchdog, the
   stopped event that follows a crash) and for a ``reported`` domain. A
   later incident starts when the guest answers again or is restarted, as
   for any other failure.
"""

import typing

from monitor.health import states
from monitor.health.lifecycle import CrashedDetail
from monitor.health.lifecycle import EventKind
from monitor.health.lifecycle import LifecycleEvent
from monitor.health.lifecycle import StoppedDetail
from monitor.health.lifecycle import WatchdogAction


class Shape(typing.NamedTuple):
    """A notification payload's (event, vir_domain_event) pair."""
    event: str
    vir_domain_event: str


# A guest this monitor found failed: its agent silent, a panic, a
# watchdog, a pause on an I/O error.
AGENT_ERROR = Shape('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED')
# The guest's QEMU process ended on its own: exactly the payload
# masakari-instancemonitor sends for it. masakari-api refuses (409) a VM
# notification whose payload equals one it stored for the same host with a
# generated_time at most duplicate_notification_detection_interval (180 s)
# before the new one's, so whichever of the two arrives second is a
# duplicate, as long as they do not reach it at the same moment.
QEMU_ENDED = Shape('LIFECYCLE', 'STOPPED_FAILED')
# The shapes masakari-instancemonitor sends too, for the same failure.
INSTANCEMONITOR_SHAPES = frozenset({QEMU_ENDED})


class Decision(typing.NamedTuple):
    notify: bool
    # Operator text: the failure when notifying, else why not.
    reason: str
    # The payload's (event, vir_domain_event) for the HA engine.
    shape: Shape = AGENT_ERROR


class Failure(typing.NamedTuple):
    text: str
    shape: Shape


_LIFECYCLE_FAILURES = {
    (LifecycleEvent.CRASHED, CrashedDetail.PANICKED): Failure(
        'guest kernel panicked (reported by its pvpanic device)',
        AGENT_ERROR),
    (LifecycleEvent.STOPPED, StoppedDetail.CRASHED): Failure(
        'guest crashed and libvirt stopped it', AGENT_ERROR),
    (LifecycleEvent.STOPPED, StoppedDetail.FAILED): Failure(
        'QEMU process of the guest ended unexpectedly', QEMU_ENDED),
}

# Reset and inject-nmi are recoveries themselves: the pings and a crash
# event judge their outcome. A power-off ends the QEMU process, which
# libvirt may report as stopped (failed): masakari-instancemonitor's shape.
_WATCHDOG_FAILURES = {
    WatchdogAction.NONE: Failure('watchdog fired (no action configured)',
                                 AGENT_ERROR),
    WatchdogAction.PAUSE: Failure('watchdog fired; libvirt paused the guest',
                                  AGENT_ERROR),
    WatchdogAction.POWEROFF: Failure(
        'watchdog fired; libvirt powered the guest off', QEMU_ENDED),
    WatchdogAction.SHUTDOWN: Failure(
        'watchdog fired; libvirt asked the guest to shut down', AGENT_ERROR),
    WatchdogAction.DEBUG: Failure('watchdog fired; libvirt only logged it',
                                  AGENT_ERROR),
}


def classify(event):
    """The :class:`Failure` a domain event reports, or None."""
    if event.kind is EventKind.LIFECYCLE:
        return _LIFECYCLE_FAILURES.get((event.event, event.detail))
    if event.kind is EventKind.WATCHDOG:
        return _WATCHDOG_FAILURES.get(event.event)
    return None


def failure_of(event):
    """The failure a domain event reports, as operator text, or None.

    ``event`` is a :class:`lifecycle.DomainEvent`; kinds, events and
    details that are no failure report None.
    """
    failure = classify(event)
    return None if failure is None else failure.text


def decide(event, state, already_notified):
    """Whether ``event`` must be notified now.

    :param state: the domain record's health state, None without a record.
    :param already_notified: falsy when the outbox holds neither a pending
        notification for the domain nor a delivered or refused one of its
        current incident; else True or the policy's text saying which.
    """
    failure = classify(event)
    if failure is None:
        return Decision(False, 'no failure')
    return _decide(failure, state, already_notified)


def decide_pause(text, state, already_notified):
    """Whether a pause on an I/O error that outlasted its grace must be
    notified now; ``text`` says which disk and how long, the other
    arguments are :func:`decide`'s."""
    return _decide(Failure(text, AGENT_ERROR), state, already_notified)


def _decide(failure, state, already_notified):
    failure, shape = failure
    if state is None:
        return Decision(False, '%s; domain not monitored' % failure)
    if already_notified:
        if already_notified is True:
            already_notified = 'a notification is already queued'
        return Decision(False, '%s; %s' % (failure, already_notified))
    if state == states.REPORTED:
        return Decision(False, '%s; already reported' % failure)
    return Decision(True, failure, shape)
