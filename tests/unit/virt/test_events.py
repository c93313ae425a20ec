"""libvirt's event thread hands events to one green thread, in order,
without ever blocking or touching the monitor's state."""

import itertools
import json
import os
import subprocess
import sys

import eventlet
import libvirt
import pytest
from eventlet import patcher

from monitor.health import lifecycle
from monitor.health.lifecycle import AgentReason
from monitor.health.lifecycle import AgentState
from monitor.health.lifecycle import EventKind
from monitor.health.lifecycle import LifecycleEvent
from monitor.health.lifecycle import StoppedDetail
from monitor.virt import events as libvirt_events
from monitor.virt import metadata as domain_metadata

native_threading = patcher.original('threading')

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

NODE_XML = """<node>
  <domain type='test'>
    <name>instance-00000001</name>
    <uuid>3a1e6e52-9a0c-4a47-8d7e-5b0f7a6c2d01</uuid>
    <memory>1024</memory>
    <os><type>hvm</type></os>
  </domain>
</node>
"""
UUID = '3a1e6e52-9a0c-4a47-8d7e-5b0f7a6c2d01'
NAME = 'instance-00000001'


@pytest.fixture(scope='module', autouse=True)
def event_loop():
    # Registering callbacks needs libvirt's event implementation, as in
    # the daemon; the loop thread lives as long as the test process.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    libvirt_events.start_event_loop()


@pytest.fixture
def conn(tmp_path):
    node = tmp_path / 'node.xml'
    node.write_text(NODE_XML)
    # A test-driver connection on a file of our own: fresh state per test.
    conn = libvirt.open('test://%s' % node)
    yield conn
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


@pytest.fixture
def bridge():
    bridge = libvirt_events.EventBridge(clock=itertools.count(100).__next__)
    yield bridge
    bridge.close()


def in_native_thread(target):
    thread = native_threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), 'the native side blocked'


def in_green_thread(target, guard=10):
    """Run ``target`` in a green thread; fail instead of hanging."""
    with eventlet.Timeout(guard):
        return eventlet.spawn(target).wait()


def test_callbacks_from_a_native_thread_come_out_in_order(bridge, conn):
    dom = conn.lookupByName(NAME)

    def callbacks():
        bridge._on_lifecycle(conn, dom, libvirt.VIR_DOMAIN_EVENT_STOPPED,
                             libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED, None)
        bridge._on_reboot(conn, dom, None)
        bridge._on_agent(
            conn, dom,
            libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_DISCONNECTED,
            libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_CHANNEL,
            None)
        bridge.on_connection_closed(libvirt.VIR_CONNECT_CLOSE_REASON_EOF)

    in_native_thread(callbacks)

    assert bridge.drain() == [
        lifecycle.DomainEvent(UUID, NAME, EventKind.LIFECYCLE,
                              LifecycleEvent.STOPPED,
                              StoppedDetail.DESTROYED, 100),
        lifecycle.DomainEvent(UUID, NAME, EventKind.REBOOT, None, None, 101),
        lifecycle.DomainEvent(UUID, NAME, EventKind.AGENT,
                              AgentState.DISCONNECTED, AgentReason.CHANNEL,
                              102),
        libvirt_events.ConnectionClosed(
            libvirt.VIR_CONNECT_CLOSE_REASON_EOF, 103),
    ]
    assert bridge.drain() == []


def test_the_events_mean_what_the_tracker_expects(bridge, conn):
    dom = conn.lookupByName(NAME)
    in_native_thread(lambda: (
        bridge._on_lifecycle(conn, dom, libvirt.VIR_DOMAIN_EVENT_STARTED,
                             0, None),
        bridge._on_reboot(conn, dom, None),
        bridge._on_lifecycle(conn, dom,
                             libvirt.VIR_DOMAIN_EVENT_SUSPENDED, 0, None)))

    assert [lifecycle.action_for(e) for e in bridge.drain()] == [
        lifecycle.Action.REARM, lifecycle.Action.REARM,
        lifecycle.Action.PARK]


def test_wait_returns_when_an_item_is_queued(bridge, conn):
    dom = conn.lookupByName(NAME)
    started = native_threading.Event()

    def later():
        started.wait(10)
        bridge._on_reboot(conn, dom, None)

    thread = native_threading.Thread(target=later, daemon=True)
    thread.start()

    def waiter():
        started.set()
        bridge.wait()  # no timeout: only an item can end it
        return bridge.drain()

    items = in_green_thread(waiter)
    thread.join(10)
    assert [item.kind for item in items] == [EventKind.REBOOT]


def test_wait_returns_at_once_when_items_are_already_queued(bridge, conn):
    dom = conn.lookupByName(NAME)
    in_native_thread(lambda: bridge._on_reboot(conn, dom, None))

    def waiter():
        bridge.wait()
        bridge.wait()  # the item is still queued: no second wake-up needed
        return bridge.drain()

    assert len(in_green_thread(waiter)) == 1


def test_wait_times_out_when_nothing_comes(bridge):
    def waiter():
        bridge.wait(timeout=0.05)
        return bridge.drain()

    assert in_green_thread(waiter) == []


def test_a_full_pipe_never_blocks_the_native_side(bridge):
    count = 100_000  # far more wake-up bytes than a pipe holds

    def flood():
        for reason in range(count):
            bridge.on_connection_closed(reason)

    in_native_thread(flood)

    items = bridge.drain()
    assert [item.reason for item in items] == list(range(count))
    assert bridge.drain() == []


MONKEY_PATCHED = r"""
import json, sys, warnings
warnings.simplefilter('ignore')
import eventlet
eventlet.monkey_patch()
from eventlet import patcher
from monitor.virt import events as libvirt_events

threading = patcher.original('threading')
bridge = libvirt_events.EventBridge()
result = {}

def flood():
    for reason in range(100000):
        bridge.on_connection_closed(reason)

def dispatcher():
    result['empty'] = len(bridge.drain())
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    thread.join(10)
    result['native_blocked'] = thread.is_alive()
    bridge.wait(timeout=5)
    items = bridge.drain()
    result['drained'] = len(items)
    result['in_order'] = [i.reason for i in items] == list(range(100000))
    result['again'] = len(bridge.drain())
    bridge.wait(timeout=0.05)

with eventlet.Timeout(20):
    eventlet.spawn(dispatcher).wait()
json.dump(result, sys.stdout)
"""


class VanishingDomain:
    """A domain object whose every question raises, as for a domain
    undefined while its event was on the way."""

    def UUIDString(self):
        raise libvirt.libvirtError('Domain not found')

    def name(self):
        raise UnicodeDecodeError('utf-8', b'\xff', 0, 1, 'bad name')


def test_an_event_that_cannot_be_read_is_queued_as_lost_not_raised(bridge,
                                                                  conn):
    def callbacks():
        bridge._on_lifecycle(conn, VanishingDomain(),
                             libvirt.VIR_DOMAIN_EVENT_STOPPED, 1, None)
        bridge._on_reboot(conn, conn.lookupByName(NAME), None)

    in_native_thread(callbacks)

    lost, reboot = bridge.drain()
    assert isinstance(lost, libvirt_events.EventLost)
    assert lost.kind == 'lifecycle'
    assert 'libvirtError' in lost.text
    assert reboot.kind is EventKind.REBOOT


def test_it_works_in_the_daemon_where_eventlet_patches_os():
    # The daemon calls eventlet.monkey_patch(): os.read and os.write turn
    # green and would wait in the hub instead of raising BlockingIOError.
    proc = subprocess.run([sys.executable, '-c', MONKEY_PATCHED],
                          cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        'empty': 0, 'native_blocked': False, 'drained': 100_000,
        'in_order': True, 'again': 0}


def test_register_subscribes_to_lifecycle_reboot_agent_and_watchdog_events(
        bridge):
    class RecordingConn:
        def __init__(self):
            self.registered = []
            self.deregistered = []

        def domainEventRegisterAny(self, dom, event_id, callback, opaque):
            self.registered.append((dom, event_id, callback, opaque))
            return 40 + len(self.registered)

        def domainEventDeregisterAny(self, callback_id):
            self.deregistered.append(callback_id)

    conn = RecordingConn()
    bridge.register(conn)

    assert conn.registered == [
        (None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, bridge._on_lifecycle,
         None),
        (None, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, bridge._on_reboot, None),
        (None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, bridge._on_agent,
         None),
        (None, libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG, bridge._on_watchdog,
         None),
        (None, libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON,
         bridge._on_io_error, None),
        (None, libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
         bridge._on_metadata, None),
    ]

    bridge.deregister(conn)
    bridge.deregister(conn)  # nothing left to deregister the second time
    assert conn.deregistered == [41, 42, 43, 44, 45, 46]


def test_a_watchdog_event_comes_out_with_its_action(bridge, conn):
    dom = conn.lookupByName(NAME)
    in_native_thread(lambda: bridge._on_watchdog(
        conn, dom, libvirt.VIR_DOMAIN_EVENT_WATCHDOG_PAUSE, None))

    assert bridge.drain() == [lifecycle.DomainEvent(
        UUID, NAME, EventKind.WATCHDOG, lifecycle.WatchdogAction.PAUSE, None,
        100)]


def test_an_io_error_comes_out_with_the_disk_and_libvirts_reason(bridge,
                                                                 conn):
    dom = conn.lookupByName(NAME)
    in_native_thread(lambda: bridge._on_io_error(
        conn, dom, '/run/lab/data.img', 'virtio-disk1',
        libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE, 'enospc', None))

    assert bridge.drain() == [lifecycle.DomainEvent(
        UUID, NAME, EventKind.IO_ERROR, lifecycle.IOErrorAction.PAUSE,
        lifecycle.IOErrorInfo('virtio-disk1', '/run/lab/data.img', 'enospc'),
        100)]


def test_a_pause_on_an_io_error_is_told_from_a_pause_by_a_client(bridge,
                                                                 conn):
    dom = conn.lookupByName(NAME)
    for detail in (libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR,
                   libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED):
        in_native_thread(lambda detail=detail: bridge._on_lifecycle(
            conn, dom, libvirt.VIR_DOMAIN_EVENT_SUSPENDED, detail, None))

    assert [e.detail for e in bridge.drain()] == [
        lifecycle.SuspendedDetail.IOERROR, lifecycle.SuspendedDetail.PAUSED]


def test_a_refused_subscription_leaves_none_behind(bridge):
    class DyingConn:
        def __init__(self):
            self.live = []

        def domainEventRegisterAny(self, dom, event_id, callback, opaque):
            if event_id == libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE:
                raise libvirt.libvirtError('connection reset by peer')
            self.live.append(event_id)
            return event_id

        def domainEventDeregisterAny(self, callback_id):
            self.live.remove(callback_id)

    conn = DyingConn()
    with pytest.raises(libvirt_events.EventsUnavailable) as err:
        bridge.register(conn)

    assert 'connection reset by peer' in str(err.value)
    assert conn.live == []
    bridge.deregister(conn)  # nothing left to deregister


def test_real_libvirt_events_reach_the_green_side(bridge, conn):
    bridge.register(conn)
    dom = conn.lookupByName(NAME)
    dom.suspend()
    dom.resume()
    dom.destroy()

    def collect():
        items = []
        while len(items) < 3:
            bridge.wait()
            items.extend(bridge.drain())
        return items

    items = in_green_thread(collect)
    assert [(i.uuid, i.name, i.kind, i.event) for i in items] == [
        (UUID, NAME, EventKind.LIFECYCLE, LifecycleEvent.SUSPENDED),
        (UUID, NAME, EventKind.LIFECYCLE, LifecycleEvent.RESUMED),
        (UUID, NAME, EventKind.LIFECYCLE, LifecycleEvent.STOPPED),
    ]
    bridge.deregister(conn)


def test_deregister_tolerates_a_dead_connection(bridge, conn):
    bridge.register(conn)
    conn.close()
    with pytest.raises(libvirt.libvirtError):
        conn.domainEventDeregisterAny(0)

    bridge.deregister(conn)  # must not raise


def test_only_a_change_of_our_metadata_element_is_passed_on(bridge, conn):
    dom = conn.lookupByName(NAME)

    def callbacks():
        bridge._on_metadata(conn, dom, libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                            'http://openstack.org/xmlns/libvirt/nova/1.1',
                            None)
        bridge._on_metadata(conn, dom,
                            libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None,
                            None)
        bridge._on_metadata(conn, dom, libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                            domain_metadata.NAMESPACE, None)

    in_native_thread(callbacks)

    [item] = bridge.drain()
    assert item == libvirt_events.MetadataChanged(UUID, NAME, 100)


def test_a_real_metadata_change_reaches_the_green_side(bridge, conn):
    bridge.register(conn)
    dom = conn.lookupByName(NAME)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    '<monitor enabled="no"/>', domain_metadata.KEY,
                    domain_metadata.NAMESPACE,
                    libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def collect():
        items = []
        while not items:
            bridge.wait()
            items.extend(bridge.drain())
        return items

    [item] = in_green_thread(collect)
    assert isinstance(item, libvirt_events.MetadataChanged)
    assert item.uuid == UUID
    bridge.deregister(conn)


# -- libvirt's numbers, translated at the edge -------------------------------------

A = lifecycle.Action
LIFECYCLE = EventKind.LIFECYCLE

# (libvirt event, every detail libvirt 9-12 defines for it, action called
# for once translated)
LIFECYCLE_TABLE = [
    # booted, migrated, restored, from snapshot, wakeup
    (libvirt.VIR_DOMAIN_EVENT_STARTED, range(5), A.REARM),
    # unpaused, migrated, from snapshot, postcopy, postcopy failed
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, range(5), A.REARM),
    # paused, migrated, I/O error, watchdog, restored, from snapshot,
    # API error, postcopy, postcopy failed
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, range(9), A.PARK),
    # memory, disk
    (libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED, range(2), A.PARK),
    # finished, guest, host
    (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, range(3), A.PARK),
    # shutdown, destroyed, crashed, migrated, saved, failed, from snapshot
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, range(7), A.FORGET),
    # removed, renamed
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, range(2), A.FORGET),
    # added, updated, renamed, from snapshot
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, range(4), A.IGNORE),
    # panicked, crashloaded: the pings decide
    (libvirt.VIR_DOMAIN_EVENT_CRASHED, range(2), A.IGNORE),
]


def translated(kind, event, detail=0):
    return libvirt_events.domain_event(UUID, NAME, kind, event, detail, 1.0)


@pytest.mark.parametrize(
    'event,detail,action',
    [(event, detail, action) for event, details, action in LIFECYCLE_TABLE
     for detail in details])
def test_every_lifecycle_event_and_detail_means_an_action(event, detail,
                                                          action):
    assert lifecycle.action_for(translated(LIFECYCLE, event, detail)) is \
        action


def test_every_lifecycle_event_type_is_translated():
    assert sorted(event for event, _d, _a in LIFECYCLE_TABLE) == \
        list(range(9))
    assert {translated(LIFECYCLE, event).event
            for event, _d, _a in LIFECYCLE_TABLE} == set(LifecycleEvent)


@pytest.mark.parametrize('event,detail,ours', [
    (libvirt.VIR_DOMAIN_EVENT_CRASHED,
     libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED,
     lifecycle.CrashedDetail.PANICKED),
    (libvirt.VIR_DOMAIN_EVENT_CRASHED,
     libvirt.VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED,
     lifecycle.CrashedDetail.CRASHLOADED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED, StoppedDetail.FAILED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED,
     libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED, StoppedDetail.CRASHED),
    # A pause on an I/O error is a failure once it lasts; one by a
    # client never is.
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
     libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR,
     lifecycle.SuspendedDetail.IOERROR),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
     libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED,
     lifecycle.SuspendedDetail.PAUSED),
    # Details the policy does not tell apart: a pause for a migration.
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
     libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED, None),
])
def test_the_details_the_policy_uses_are_translated(event, detail, ours):
    assert translated(LIFECYCLE, event, detail).detail is ours


def test_an_event_number_from_a_newer_libvirt_is_not_passed_on():
    assert translated(LIFECYCLE, 42) is None
    assert translated(EventKind.AGENT, 7) is None
    assert translated(EventKind.WATCHDOG, 99) is None


def test_a_detail_from_a_newer_libvirt_leaves_the_event_known():
    event = translated(LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_STOPPED, 42)

    assert (event.event, event.detail) == (LifecycleEvent.STOPPED, None)


def test_a_binding_without_a_newer_constant_still_translates_the_rest(
        monkeypatch):
    # An older libvirt-python lacks the constants of details added after
    # it (CRASHED_CRASHLOADED came with libvirt 6.1): the daemon must still
    # start and know every other event.
    older = type(libvirt)('libvirt')
    for name in dir(libvirt):
        if name.startswith('VIR_') and name not in (
                'VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED',
                'VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_UNKNOWN'):
            setattr(older, name, getattr(libvirt, name))
    monkeypatch.setattr(libvirt_events, 'libvirt', older)

    table = libvirt_events._translation_table()

    stopped, stopped_details = table[LIFECYCLE][
        libvirt.VIR_DOMAIN_EVENT_STOPPED]
    crashed, crashed_details = table[LIFECYCLE][
        libvirt.VIR_DOMAIN_EVENT_CRASHED]
    assert stopped_details[libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED] is \
        StoppedDetail.FAILED
    assert libvirt.VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED not in crashed_details
    assert libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED in crashed_details


@pytest.mark.parametrize('action', range(7))
def test_every_watchdog_action_is_translated(action):
    assert translated(EventKind.WATCHDOG, action).event in \
        set(lifecycle.WatchdogAction)


@pytest.mark.parametrize('reason,ours', [
    (libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_UNKNOWN,
     AgentReason.UNKNOWN),
    (libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_DOMAIN_STARTED,
     AgentReason.DOMAIN_STARTED),
    (libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_CHANNEL,
     AgentReason.CHANNEL),
])
@pytest.mark.parametrize('state,ours_state', [
    (libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED,
     AgentState.CONNECTED),
    (libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_DISCONNECTED,
     AgentState.DISCONNECTED),
])
def test_agent_states_and_reasons_are_translated(state, ours_state, reason,
                                                 ours):
    event = translated(EventKind.AGENT, state, reason)

    assert (event.event, event.detail) == (ours_state, ours)


def test_an_unknown_event_from_libvirts_thread_is_dropped(bridge, conn):
    dom = conn.lookupByName(NAME)
    in_native_thread(lambda: (
        bridge._on_lifecycle(conn, dom, 42, 0, None),
        bridge._on_watchdog(conn, dom, 99, None)))

    assert bridge.drain() == []
