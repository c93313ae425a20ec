"""What libvirt itself shows of a failing guest, on real QEMU guests.

A guest with a pvpanic device reports its panic as a crashed lifecycle
event and is kept 'crashed'; a watchdog device that is no longer fed
raises libvirt's watchdog event; a guest whose agent hangs while it keeps
writing to its disk shows its block counters growing in libvirt's bulk
stats, while a panicked guest's stand still though its vCPU spins. These
are the facts the instant failures and the I/O corroboration stand on.

The module's four guests boot once, together, and each test uses its own.
"""

import collections
import logging
import time
from concurrent import futures

import libvirt
import pytest

from lab import guests
from monitor.health import guest_activity
from monitor.health import instant_failures
from monitor.health import lifecycle
from monitor.health import states
from monitor.virt import events as libvirt_events
from monitor.virt import stats as libvirt_stats

LOG = logging.getLogger(__name__)

pytestmark = pytest.mark.integration

EVENT_TIMEOUT = 15.0
# Long enough for a disk-writer under TCG on a busy host to write a few
# times over the noise floor.
IO_TIMEOUT = 60.0


@pytest.fixture(scope='module')
def module_guests(libvirt_lab):
    """Guests by role, booted at once: a pvpanic one, a watchdog one and
    two with a data disk."""
    roles = {'pvpanic': dict(pvpanic=True), 'watchdog': dict(watchdog=True),
             'working': dict(disk=True), 'panicked': dict(disk=True)}
    guests = {role: libvirt_lab.new_guest(**options)
              for role, options in roles.items()}
    try:
        with futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda guest: guest.start(), guests.values()))
        for guest in guests.values():
            guest.wait_agent_connected()
            guest.wait_pingable()
        yield guests
    finally:
        libvirt_lab.teardown()


@pytest.fixture(scope='module')
def domain_events(libvirt_lab):
    """Lifecycle and watchdog events of every domain, as DomainEvents, from
    a real libvirt event loop (started before this connection is opened)."""
    libvirt_events.start_event_loop()
    conn = guests.connect()
    seen = collections.deque()

    def on_lifecycle(_conn, dom, event, detail, _opaque):
        seen.append(libvirt_events.domain_event(
            dom.UUIDString(), dom.name(), lifecycle.EventKind.LIFECYCLE,
            event, detail, time.time()))

    def on_watchdog(_conn, dom, action, _opaque):
        seen.append(libvirt_events.domain_event(
            dom.UUIDString(), dom.name(), lifecycle.EventKind.WATCHDOG,
            action, 0, time.time()))

    callbacks = [
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None),
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG, on_watchdog, None),
    ]
    yield seen
    for callback in callbacks:
        conn.domainEventDeregisterAny(callback)
    conn.close()


def wait_event(seen, uuid, kind, event, timeout=EVENT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in list(seen):
            if item is not None and (item.uuid, item.kind, item.event) == (
                    uuid, kind, event):
                return item
        time.sleep(0.1)
    raise AssertionError('no %s event %s for %s within %.0f s; saw %s'
                         % (kind, event, uuid, timeout, list(seen)))


def test_pvpanic_guest_panic_is_a_crashed_event_and_state(
        module_guests, domain_events):
    guest = module_guests['pvpanic']

    guest.control('panic')

    crashed = wait_event(domain_events, guest.uuid,
                         lifecycle.EventKind.LIFECYCLE,
                         lifecycle.LifecycleEvent.CRASHED)
    assert crashed.detail is lifecycle.CrashedDetail.PANICKED
    assert guest.wait_state(libvirt.VIR_DOMAIN_CRASHED, EVENT_TIMEOUT) == (
        libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_CRASHED_PANICKED)
    assert instant_failures.decide(crashed, states.HEALTHY, False) == (
        instant_failures.Decision(
            True, 'guest kernel panicked (reported by its pvpanic device)'))
    counters = libvirt_stats.collect(guest.conn, [guest.dom]).counters
    assert counters[guest.uuid].state == guest_activity.CRASHED


def test_a_watchdog_no_longer_fed_raises_the_watchdog_event(
        module_guests, domain_events):
    guest = module_guests['watchdog']

    guest.control('watchdog-hang')

    fired = wait_event(domain_events, guest.uuid, lifecycle.EventKind.WATCHDOG,
                       lifecycle.WatchdogAction.NONE)
    assert instant_failures.decide(fired, states.HEALTHY, False) == (
        instant_failures.Decision(True,
                                  'watchdog fired (no action configured)'))
    # Action none: libvirt only reports it; the guest runs on.
    assert guest.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def all_counters(conn):
    collected = libvirt_stats.collect(conn)
    assert collected.errors == {}
    return collected.counters


def test_disk_io_shows_a_working_guest_behind_a_hung_agent(module_guests):
    working, panicked = module_guests['working'], module_guests['panicked']
    for guest in (working, panicked):
        guest.control('disk-writer')
    working.control('agent-hang')
    panicked.control('panic')
    for guest in (working, panicked):
        with pytest.raises(libvirt.libvirtError) as silent:
            guest.ping(2)
        assert silent.value.get_error_code() == \
            libvirt.VIR_ERR_AGENT_UNRESPONSIVE

    first = all_counters(working.conn)
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        time.sleep(1.0)
        last = all_counters(working.conn)
        active = guest_activity.assess(first[working.uuid],
                                       last[working.uuid])
        if active.activity is guest_activity.Activity.ACTIVE or \
                time.monotonic() >= deadline:
            break
    dead = guest_activity.assess(first[panicked.uuid], last[panicked.uuid])
    LOG.info('agent hung, disk-writer on: %s; panicked: %s', active.reason,
             dead.reason)

    assert active.activity is guest_activity.Activity.ACTIVE, active.reason
    assert active.disk_requests > guest_activity.NoiseFloors().disk_requests
    assert dead.activity is guest_activity.Activity.SILENT, dead.reason
    assert dead.disk_requests == 0
    # The panicked kernel spins (panic=0): busy vCPU, no I/O.
    assert last[panicked.uuid].vcpu_time_ns > \
        first[panicked.uuid].vcpu_time_ns
    assert last[panicked.uuid].state == guest_activity.RUNNING
