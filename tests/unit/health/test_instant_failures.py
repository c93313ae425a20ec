"""Failures libvirt reports itself are notified at once, and once."""

import pytest

from monitor.health import instant_failures as inst
from monitor.health import lifecycle
from monitor.health import states
from monitor.health.lifecycle import CrashedDetail
from monitor.health.lifecycle import EventKind
from monitor.health.lifecycle import LifecycleEvent
from monitor.health.lifecycle import StoppedDetail
from monitor.health.lifecycle import WatchdogAction

UUID = '6f1f5a7e-2c8e-4d0a-9a57-0d6a3c1b2e11'


def lifecycle_event(event, detail=None):
    return lifecycle.DomainEvent(UUID, 'vm', EventKind.LIFECYCLE, event,
                                 detail, 1.0)


def watchdog_event(action):
    return lifecycle.DomainEvent(UUID, 'vm', EventKind.WATCHDOG, action,
                                 None, 1.0)


PANICKED = lifecycle_event(LifecycleEvent.CRASHED,
                           CrashedDetail.PANICKED)


# -- which events are failures --------------------------------------------------

@pytest.mark.parametrize('event,detail,reason', [
    (LifecycleEvent.CRASHED,
     CrashedDetail.PANICKED,
     'guest kernel panicked (reported by its pvpanic device)'),
    (LifecycleEvent.STOPPED,
     StoppedDetail.CRASHED,
     'guest crashed and libvirt stopped it'),
    (LifecycleEvent.STOPPED,
     StoppedDetail.FAILED,
     'QEMU process of the guest ended unexpectedly'),
])
def test_lifecycle_failures(event, detail, reason):
    assert inst.failure_of(lifecycle_event(event, detail)) == reason


def test_a_crash_that_loaded_the_crash_kernel_is_left_to_the_guest():
    # kdump: the guest dumps and reboots by itself.
    event = lifecycle_event(LifecycleEvent.CRASHED,
                            CrashedDetail.CRASHLOADED)

    assert inst.failure_of(event) is None


@pytest.mark.parametrize('detail', [
    StoppedDetail.SHUTDOWN,
    StoppedDetail.DESTROYED,
    StoppedDetail.MIGRATED,
    StoppedDetail.SAVED,
    StoppedDetail.FROM_SNAPSHOT,
])
def test_stops_someone_asked_for_are_no_failure(detail):
    event = lifecycle_event(LifecycleEvent.STOPPED, detail)

    assert inst.failure_of(event) is None


@pytest.mark.parametrize('event', [
    LifecycleEvent.STARTED, LifecycleEvent.SUSPENDED,
    LifecycleEvent.RESUMED, LifecycleEvent.SHUTDOWN,
    LifecycleEvent.DEFINED, LifecycleEvent.UNDEFINED,
    LifecycleEvent.PMSUSPENDED,
])
def test_other_lifecycle_events_are_no_failure(event):
    assert inst.failure_of(lifecycle_event(event)) is None


@pytest.mark.parametrize('event', [LifecycleEvent.CRASHED,
                                   LifecycleEvent.STOPPED])
def test_a_crash_or_stop_without_a_known_cause_is_no_failure(event):
    # A detail a newer libvirt added, or none: only a known cause counts.
    assert inst.failure_of(lifecycle_event(event, None)) is None


@pytest.mark.parametrize('action,reason', [
    (WatchdogAction.NONE,
     'watchdog fired (no action configured)'),
    (WatchdogAction.PAUSE,
     'watchdog fired; libvirt paused the guest'),
    (WatchdogAction.POWEROFF,
     'watchdog fired; libvirt powered the guest off'),
    (WatchdogAction.SHUTDOWN,
     'watchdog fired; libvirt asked the guest to shut down'),
    (WatchdogAction.DEBUG,
     'watchdog fired; libvirt only logged it'),
])
def test_a_watchdog_that_leaves_the_guest_down_or_stuck_is_a_failure(
        action, reason):
    assert inst.failure_of(watchdog_event(action)) == reason


@pytest.mark.parametrize('action', [
    WatchdogAction.RESET,
    WatchdogAction.INJECTNMI,
])
def test_a_watchdog_action_that_recovers_the_guest_is_left_to_it(action):
    assert inst.failure_of(watchdog_event(action)) is None


@pytest.mark.parametrize('kind,event', [
    (EventKind.REBOOT, None),
    (EventKind.AGENT, lifecycle.AgentState.DISCONNECTED)])
def test_reboot_and_agent_events_are_no_failure(kind, event):
    event = lifecycle.DomainEvent(UUID, 'vm', kind, event, None, 1.0)

    assert inst.failure_of(event) is None


# -- notify now, and never twice ------------------------------------------------------

@pytest.mark.parametrize('state', [states.HEALTHY, states.ERROR,
                                   states.DISCOVERY])
def test_a_failure_of_a_monitored_domain_is_notified_now(state):
    decision = inst.decide(PANICKED, state, already_notified=False)

    assert decision == inst.Decision(
        True, 'guest kernel panicked (reported by its pvpanic device)')


def test_not_while_a_notification_is_queued():
    # The sweep reached the threshold first, or an earlier event of the
    # same incident (a watchdog fires again every period).
    decision = inst.decide(PANICKED, states.ERROR, already_notified=True)

    assert decision == inst.Decision(
        False, 'guest kernel panicked (reported by its pvpanic device); '
               'a notification is already queued')


def test_not_once_the_incident_is_reported():
    event = lifecycle_event(LifecycleEvent.STOPPED,
                            StoppedDetail.CRASHED)

    decision = inst.decide(event, states.REPORTED, already_notified=False)

    assert decision == inst.Decision(
        False, 'guest crashed and libvirt stopped it; already reported')


def test_not_for_a_domain_that_is_not_monitored():
    decision = inst.decide(PANICKED, None, already_notified=False)

    assert decision.notify is False
    assert decision.reason.endswith('; domain not monitored')


def test_an_event_that_is_no_failure_is_never_notified():
    event = lifecycle_event(LifecycleEvent.STARTED)

    assert inst.decide(event, states.HEALTHY, False) == inst.Decision(
        False, 'no failure')


def test_the_policys_words_say_what_was_already_notified():
    decision = inst.decide(PANICKED, states.ERROR,
                           'notification n-1 already queued')

    assert decision == inst.Decision(
        False, 'guest kernel panicked (reported by its pvpanic device); '
               'notification n-1 already queued')


def test_one_crash_seen_by_its_events_is_notified_once():
    # The panic, then the watchdog firing again and the stopped event of
    # on_crash=destroy: once the first is queued, the others find it.
    stopped = lifecycle_event(LifecycleEvent.STOPPED,
                              StoppedDetail.CRASHED)
    watchdog = watchdog_event(WatchdogAction.NONE)
    state, notified, decisions = states.HEALTHY, False, []
    for event in (PANICKED, watchdog, watchdog, stopped):
        decision = inst.decide(event, state, notified)
        decisions.append(decision.notify)
        if decision.notify:
            state, notified = states.ERROR, True

    assert decisions == [True, False, False, False]


# -- payload shapes ---------------------------------------------------------------

def test_a_qemu_that_ended_is_sent_as_masakari_instancemonitor_sends_it():
    decision = inst.decide(lifecycle_event(LifecycleEvent.STOPPED,
                                           StoppedDetail.FAILED),
                           states.HEALTHY, None)

    assert decision.shape == ('LIFECYCLE', 'STOPPED_FAILED')
    assert decision.shape in inst.INSTANCEMONITOR_SHAPES


def test_a_watchdog_that_powered_the_guest_off_takes_the_same_shape():
    decision = inst.decide(watchdog_event(WatchdogAction.POWEROFF),
                           states.HEALTHY, None)

    assert decision.shape == inst.QEMU_ENDED


@pytest.mark.parametrize('event', [
    lifecycle_event(LifecycleEvent.CRASHED, CrashedDetail.PANICKED),
    lifecycle_event(LifecycleEvent.STOPPED, StoppedDetail.CRASHED),
    watchdog_event(WatchdogAction.NONE),
    watchdog_event(WatchdogAction.PAUSE),
])
def test_failures_only_this_monitor_sees_are_agent_errors(event):
    decision = inst.decide(event, states.HEALTHY, None)

    assert decision.notify
    assert decision.shape == ('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED')
    assert decision.shape not in inst.INSTANCEMONITOR_SHAPES


def test_a_pause_on_an_io_error_is_decided_as_an_event_is():
    text = 'guest paused on a disk I/O error for 60 s (vdb)'

    assert inst.decide_pause(text, states.HEALTHY, None) == inst.Decision(
        True, text, inst.AGENT_ERROR)
    assert not inst.decide_pause(text, states.REPORTED, None).notify
    assert not inst.decide_pause(text, None, None).notify
    assert inst.decide_pause(text, states.HEALTHY, True).reason == (
        text + '; a notification is already queued')
