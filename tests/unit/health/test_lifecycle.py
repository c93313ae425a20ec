import pytest

from monitor.health import lifecycle as lc

A = lc.Action
K = lc.EventKind
E = lc.LifecycleEvent
UUID = '6f1f5a7e-2c8e-4d0a-9a57-0d6a3c1b2e11'


def lifecycle_event(event, detail=None):
    return lc.DomainEvent(UUID, 'vm', K.LIFECYCLE, event, detail, 1.0)


def test_the_policy_knows_no_libvirt_numbers():
    with open(lc.__file__) as source:
        text = source.read()
    assert 'import libvirt' not in text
    assert 'VIR_' not in text


# (event, every detail it may carry, expected action)
LIFECYCLE_TABLE = [
    (E.STARTED, [None], A.REARM),
    (E.RESUMED, [None], A.REARM),
    # Whatever paused it: a pause on an I/O error is reported, after its
    # grace, by io_error_pauses, never by misses.
    (E.SUSPENDED, [None, *lc.SuspendedDetail], A.PARK),
    (E.PMSUSPENDED, [None], A.PARK),
    (E.SHUTDOWN, [None], A.PARK),
    (E.STOPPED, [None, *lc.StoppedDetail], A.FORGET),
    (E.UNDEFINED, [None], A.FORGET),
    (E.DEFINED, [None], A.IGNORE),
    # panicked, crashloaded: the pings decide
    (E.CRASHED, [None, *lc.CrashedDetail], A.IGNORE),
]


@pytest.mark.parametrize(
    'event,detail,action',
    [(event, detail, action) for event, details, action in LIFECYCLE_TABLE
     for detail in details])
def test_lifecycle_event_action(event, detail, action):
    assert lc.action_for(lifecycle_event(event, detail)) is action


def test_every_lifecycle_event_is_mapped():
    assert {event for event, _d, _a in LIFECYCLE_TABLE} == set(E)


def test_reboot_rearms():
    event = lc.DomainEvent(UUID, 'vm', K.REBOOT, None, None, 1.0)
    assert lc.action_for(event) is A.REARM


@pytest.mark.parametrize('reason', [*lc.AgentReason, None])
@pytest.mark.parametrize('state,action', [
    (lc.AgentState.CONNECTED, A.AGENT_CONNECTED),
    (lc.AgentState.DISCONNECTED, A.AGENT_DISCONNECTED),
])
def test_agent_event_action_whatever_the_reason(state, action, reason):
    event = lc.DomainEvent(UUID, 'vm', K.AGENT, state, reason, 1.0)
    assert lc.action_for(event) is action


@pytest.mark.parametrize('action', list(lc.WatchdogAction))
def test_a_watchdog_changes_nothing_by_itself(action):
    # What its action does to the domain comes as events of its own; the
    # failure is notified by instant_failures.
    event = lc.DomainEvent(UUID, 'vm', K.WATCHDOG, action, None, 1.0)
    assert lc.action_for(event) is A.IGNORE


@pytest.mark.parametrize('action', list(lc.IOErrorAction))
def test_an_io_error_changes_nothing_by_itself(action):
    # A pause it causes comes as a suspended event of its own.
    event = lc.DomainEvent(UUID, 'vm', K.IO_ERROR, action,
                           lc.IOErrorInfo('virtio-disk1', '/d.img', 'eio'),
                           1.0)
    assert lc.action_for(event) is A.IGNORE


def test_unknown_kind_is_a_programming_error():
    event = lc.DomainEvent(UUID, 'vm', 'block_job', None, None, 1.0)
    with pytest.raises(ValueError, match="'block_job'"):
        lc.action_for(event)


def test_event_is_a_frozen_value():
    event = lifecycle_event(E.STARTED)
    with pytest.raises(AttributeError):
        event.event = E.STOPPED
    assert event == lifecycle_event(E.STARTED)


@pytest.mark.parametrize('event,text', [
    (lifecycle_event(E.STOPPED, lc.StoppedDetail.FAILED), 'stopped (failed)'),
    (lifecycle_event(E.CRASHED, lc.CrashedDetail.PANICKED),
     'crashed (panicked)'),
    (lifecycle_event(E.SUSPENDED), 'suspended'),
    (lc.DomainEvent(UUID, 'vm', K.REBOOT, None, None, 1.0), 'reboot'),
    (lc.DomainEvent(UUID, 'vm', K.AGENT, lc.AgentState.DISCONNECTED,
                    lc.AgentReason.CHANNEL, 1.0),
     'agent disconnected (reason channel)'),
    (lc.DomainEvent(UUID, 'vm', K.AGENT, lc.AgentState.CONNECTED, None, 1.0),
     'agent connected (reason unknown)'),
    (lc.DomainEvent(UUID, 'vm', K.WATCHDOG, lc.WatchdogAction.PAUSE, None,
                    1.0),
     'watchdog fired (action pause)'),
    (lifecycle_event(E.SUSPENDED, lc.SuspendedDetail.IOERROR),
     'suspended (ioerror)'),
    (lc.DomainEvent(UUID, 'vm', K.IO_ERROR, lc.IOErrorAction.PAUSE,
                    lc.IOErrorInfo('virtio-disk1', '/srv/d.img', 'enospc'),
                    1.0),
     'I/O error on disk virtio-disk1 (/srv/d.img): enospc (action pause)'),
])
def test_describe(event, text):
    assert lc.describe(event) == text
