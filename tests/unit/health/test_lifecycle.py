import pytest

from monitor.health import lifecycle as lc

A = lc.Action
UUID = '6f1f5a7e-2c8e-4d0a-9a57-0d6a3c1b2e11'

LIBVIRT_CONSTANTS = [name for name in dir(lc) if name.startswith('VIR_')]


def lifecycle_event(event, detail=0):
    return lc.DomainEvent(UUID, 'vm', lc.KIND_LIFECYCLE, event, detail, 1.0)


def test_constants_equal_libvirts():
    libvirt = pytest.importorskip('libvirt')
    assert len(LIBVIRT_CONSTANTS) == 18
    for name in LIBVIRT_CONSTANTS:
        assert getattr(lc, name) == getattr(libvirt, name), name


def test_importing_lifecycle_does_not_need_libvirt():
    with open(lc.__file__) as source:
        text = source.read()
    assert 'import libvirt' not in text


# (event, every detail libvirt 9-12 defines for it, expected action)
LIFECYCLE_TABLE = [
    # booted, migrated, restored, from snapshot, wakeup
    (lc.VIR_DOMAIN_EVENT_STARTED, range(5), A.REARM),
    # unpaused, migrated, from snapshot, postcopy, postcopy failed
    (lc.VIR_DOMAIN_EVENT_RESUMED, range(5), A.REARM),
    # paused, migrated, I/O error, watchdog, restored, from snapshot,
    # API error, postcopy, postcopy failed
    (lc.VIR_DOMAIN_EVENT_SUSPENDED, range(9), A.PARK),
    # memory, disk
    (lc.VIR_DOMAIN_EVENT_PMSUSPENDED, range(2), A.PARK),
    # finished, guest, host
    (lc.VIR_DOMAIN_EVENT_SHUTDOWN, range(3), A.PARK),
    # shutdown, destroyed, crashed, migrated, saved, failed, from snapshot
    (lc.VIR_DOMAIN_EVENT_STOPPED, range(7), A.FORGET),
    # removed, renamed
    (lc.VIR_DOMAIN_EVENT_UNDEFINED, range(2), A.FORGET),
    # added, updated, renamed, from snapshot
    (lc.VIR_DOMAIN_EVENT_DEFINED, range(4), A.IGNORE),
    # panicked, crashloaded: the pings decide
    (lc.VIR_DOMAIN_EVENT_CRASHED, range(2), A.IGNORE),
]


@pytest.mark.parametrize(
    'event,detail,action',
    [(event, detail, action) for event, details, action in LIFECYCLE_TABLE
     for detail in details])
def test_lifecycle_event_action(event, detail, action):
    assert lc.action_for(lifecycle_event(event, detail)) is action


def test_every_lifecycle_event_type_is_mapped():
    assert sorted(event for event, _d, _a in LIFECYCLE_TABLE) == \
        list(range(9))


def test_unknown_lifecycle_event_from_a_newer_libvirt_is_ignored():
    assert lc.action_for(lifecycle_event(42)) is A.IGNORE


def test_reboot_rearms():
    event = lc.DomainEvent(UUID, 'vm', lc.KIND_REBOOT, 0, 0, 1.0)
    assert lc.action_for(event) is A.REARM


@pytest.mark.parametrize('reason', [
    lc.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_UNKNOWN,
    lc.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_DOMAIN_STARTED,
    lc.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_CHANNEL,
])
@pytest.mark.parametrize('state,action', [
    (lc.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED,
     A.AGENT_CONNECTED),
    (lc.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_DISCONNECTED,
     A.AGENT_DISCONNECTED),
])
def test_agent_event_action_whatever_the_reason(state, action, reason):
    event = lc.DomainEvent(UUID, 'vm', lc.KIND_AGENT, state, reason, 1.0)
    assert lc.action_for(event) is action


def test_unknown_agent_state_is_ignored():
    event = lc.DomainEvent(UUID, 'vm', lc.KIND_AGENT, 7, 0, 1.0)
    assert lc.action_for(event) is A.IGNORE


@pytest.mark.parametrize('action', range(7))
def test_a_watchdog_changes_nothing_by_itself(action):
    # What its action does to the domain comes as events of its own; the
    # failure is notified by instant_failures.
    event = lc.DomainEvent(UUID, 'vm', lc.KIND_WATCHDOG, action, 0, 1.0)
    assert lc.action_for(event) is A.IGNORE


def test_unknown_kind_is_a_programming_error():
    event = lc.DomainEvent(UUID, 'vm', 'block_job', 0, 0, 1.0)
    with pytest.raises(ValueError, match="'block_job'"):
        lc.action_for(event)


def test_event_is_a_frozen_value():
    event = lifecycle_event(lc.VIR_DOMAIN_EVENT_STARTED)
    with pytest.raises(AttributeError):
        event.event = 5
    assert event == lifecycle_event(lc.VIR_DOMAIN_EVENT_STARTED)


@pytest.mark.parametrize('event,text', [
    (lifecycle_event(lc.VIR_DOMAIN_EVENT_STOPPED, 5), 'stopped (detail 5)'),
    (lifecycle_event(lc.VIR_DOMAIN_EVENT_CRASHED, 0), 'crashed (detail 0)'),
    (lifecycle_event(99, 1), 'lifecycle event 99 (detail 1)'),
    (lc.DomainEvent(UUID, 'vm', lc.KIND_REBOOT, 0, 0, 1.0), 'reboot'),
    (lc.DomainEvent(UUID, 'vm', lc.KIND_AGENT, 2, 2, 1.0),
     'agent disconnected (reason 2)'),
    (lc.DomainEvent(UUID, 'vm', lc.KIND_AGENT, 1, 1, 1.0),
     'agent connected (reason 1)'),
    (lc.DomainEvent(UUID, 'vm', lc.KIND_WATCHDOG, 1, 0, 1.0),
     'watchdog fired (action 1)'),
])
def test_describe(event, text):
    assert lc.describe(event) == text
