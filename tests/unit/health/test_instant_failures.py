"""Failures libvirt reports itself are notified at once, and once."""

import libvirt
import pytest

from monitor.health import instant_failures as inst
from monitor.health import lifecycle
from monitor.health import states

UUID = '6f1f5a7e-2c8e-4d0a-9a57-0d6a3c1b2e11'


def lifecycle_event(event, detail=0):
    return lifecycle.DomainEvent(UUID, 'vm', lifecycle.KIND_LIFECYCLE, event,
                                 detail, 1.0)


def watchdog_event(action):
    return lifecycle.DomainEvent(UUID, 'vm', inst.KIND_WATCHDOG, action, 0,
                                 1.0)


PANICKED = lifecycle_event(libvirt.VIR_DOMAIN_EVENT_CRASHED,
                           libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED)


# -- which events are failures --------------------------------------------------

@pytest.mark.parametrize('event,detail,reason', [
    (libvirt.VIR_DOMAIN_EVENT_CRASHED,
     libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED,
     'guest kernel panicked (reported by its pvpanic device)'),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED,
     'guest crashed and libvirt stopped it'),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED,
     'QEMU process of the guest ended unexpectedly'),
])
def test_lifecycle_failures(event, detail, reason):
    assert inst.failure_of(lifecycle_event(event, detail)) == reason


def test_a_crash_that_loaded_the_crash_kernel_is_left_to_the_guest():
    # kdump: the guest dumps and reboots by itself.
    event = lifecycle_event(libvirt.VIR_DOMAIN_EVENT_CRASHED,
                            libvirt.VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED)

    assert inst.failure_of(event) is None


@pytest.mark.parametrize('detail', [
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN,
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED,
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED,
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED,
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT,
])
def test_stops_someone_asked_for_are_no_failure(detail):
    event = lifecycle_event(libvirt.VIR_DOMAIN_EVENT_STOPPED, detail)

    assert inst.failure_of(event) is None


@pytest.mark.parametrize('event', [
    libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_SHUTDOWN,
    libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED,
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED, 99,
])
def test_other_lifecycle_events_are_no_failure(event):
    # Detail 0 of a suspended event is a pause, of crashed a panic: the
    # event number decides.
    assert inst.failure_of(lifecycle_event(event, 0)) is None


@pytest.mark.parametrize('action,reason', [
    (libvirt.VIR_DOMAIN_EVENT_WATCHDOG_NONE,
     'watchdog fired (no action configured)'),
    (libvirt.VIR_DOMAIN_EVENT_WATCHDOG_PAUSE,
     'watchdog fired; libvirt paused the guest'),
    (libvirt.VIR_DOMAIN_EVENT_WATCHDOG_POWEROFF,
     'watchdog fired; libvirt powered the guest off'),
    (libvirt.VIR_DOMAIN_EVENT_WATCHDOG_SHUTDOWN,
     'watchdog fired; libvirt asked the guest to shut down'),
    (libvirt.VIR_DOMAIN_EVENT_WATCHDOG_DEBUG,
     'watchdog fired; libvirt only logged it'),
])
def test_a_watchdog_that_leaves_the_guest_down_or_stuck_is_a_failure(
        action, reason):
    assert inst.failure_of(watchdog_event(action)) == reason


@pytest.mark.parametrize('action', [
    libvirt.VIR_DOMAIN_EVENT_WATCHDOG_RESET,
    libvirt.VIR_DOMAIN_EVENT_WATCHDOG_INJECTNMI,
    99,
])
def test_a_watchdog_action_that_recovers_the_guest_is_left_to_it(action):
    assert inst.failure_of(watchdog_event(action)) is None


@pytest.mark.parametrize('kind', [lifecycle.KIND_REBOOT,
                                  lifecycle.KIND_AGENT])
def test_reboot_and_agent_events_are_no_failure(kind):
    event = lifecycle.DomainEvent(UUID, 'vm', kind,
                                  libvirt.VIR_DOMAIN_EVENT_CRASHED, 0, 1.0)

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
    event = lifecycle_event(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                            libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED)

    decision = inst.decide(event, states.REPORTED, already_notified=False)

    assert decision == inst.Decision(
        False, 'guest crashed and libvirt stopped it; already reported')


def test_not_for_a_domain_that_is_not_monitored():
    decision = inst.decide(PANICKED, None, already_notified=False)

    assert decision.notify is False
    assert decision.reason.endswith('; domain not monitored')


def test_an_event_that_is_no_failure_is_never_notified():
    event = lifecycle_event(libvirt.VIR_DOMAIN_EVENT_STARTED)

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
    stopped = lifecycle_event(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                              libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED)
    watchdog = watchdog_event(libvirt.VIR_DOMAIN_EVENT_WATCHDOG_NONE)
    state, notified, decisions = states.HEALTHY, False, []
    for event in (PANICKED, watchdog, watchdog, stopped):
        decision = inst.decide(event, state, notified)
        decisions.append(decision.notify)
        if decision.notify:
            state, notified = states.ERROR, True

    assert decisions == [True, False, False, False]
