"""Failures libvirt reports, through the tracker: a QEMU that ended goes
out in masakari-instancemonitor's shape, late enough for masakari-api to
keep one of the two; a guest paused on a disk I/O error is reported once
the grace is over, with its own recovery action and a count; a pause by a
client never is."""

import pytest

from monitor.daemon import libvirt_failures
from monitor.daemon import metrics as metrics_mod
from monitor.health import io_error_pauses
from monitor.health import states
from monitor.health.lifecycle import EventKind
from monitor.health.lifecycle import IOErrorAction
from monitor.health.lifecycle import IOErrorInfo
from monitor.health.lifecycle import LifecycleEvent
from monitor.health.lifecycle import StoppedDetail
from monitor.health.lifecycle import SuspendedDetail
from monitor.health.ping_outcome import Outcome
from monitor.virt import domains as libvirt_domains
from tests.unit.daemon.test_tracker import AGENT
from tests.unit.daemon.test_tracker import HOST
from tests.unit.daemon.test_tracker import Host
from tests.unit.daemon.test_tracker import event
from tests.unit.daemon.test_tracker import healthy
from tests.unit.daemon.test_tracker import listed
from tests.unit.daemon.test_tracker import make_tracker
from tests.unit.daemon.test_tracker import name
from tests.unit.daemon.test_tracker import outbox  # noqa: F401 (fixture)
from tests.unit.daemon.test_tracker import store  # noqa: F401 (fixture)
from tests.unit.daemon.test_tracker import uuid
from tests.unit.daemon.test_tracker import wakes  # noqa: F401 (fixture)

GRACE = 60
DISK = IOErrorInfo('virtio-disk1', '/srv/data.img', 'enospc')


@pytest.fixture
def metrics():
    return metrics_mod.MonitorMetrics()


@pytest.fixture
def tracker(store, outbox, wakes, metrics):  # noqa: F811
    tracker = make_tracker(store, outbox, wakes, metrics=metrics)
    tracker.failures = libvirt_failures.LibvirtFailures(
        io_error_pauses.IOErrorPauses(grace=GRACE, action='resume'))
    return tracker


@pytest.fixture
def host(tracker, store, outbox):  # noqa: F811
    return Host(tracker, store, outbox)


def io_pause(n, at):
    return event(n, EventKind.LIFECYCLE, LifecycleEvent.SUSPENDED,
                 SuspendedDetail.IOERROR, at=at)


def user_pause(n, at):
    return event(n, EventKind.LIFECYCLE, LifecycleEvent.SUSPENDED,
                 SuspendedDetail.PAUSED, at=at)


def paused(n, io_error=''):
    """As the listing shows a domain paused on an I/O error whose disk
    errors libvirt does not name; ``io_error=None``: paused otherwise."""
    return libvirt_domains.DomainInfo(uuid(n), name(n), False, True, AGENT,
                                      io_error=io_error)


def reported(metrics):
    return metrics.registry.get_sample_value(
        'guest_health_monitor_io_error_pauses_reported_total')


# -- a QEMU process that ended -------------------------------------------------

def test_a_qemu_that_ended_is_sent_in_masakari_instancemonitors_shape(host):
    healthy(host, 1)

    host.event(event(1, EventKind.LIFECYCLE, LifecycleEvent.STOPPED,
                     StoppedDetail.FAILED))

    [entry] = host.outbox.pending()
    assert (entry.notification.event,
            entry.notification.vir_domain_event) == ('LIFECYCLE',
                                                     'STOPPED_FAILED')
    assert entry.next_attempt_at == host.now  # nobody to wait for


def test_beside_masakari_instancemonitor_it_waits_for_theirs(host, tracker):
    tracker.notifications.instancemonitor_wait = 10
    healthy(host, 1)

    host.event(event(1, EventKind.LIFECYCLE, LifecycleEvent.STOPPED,
                     StoppedDetail.FAILED))

    [entry] = host.outbox.pending()
    assert entry.next_attempt_at == host.now + 10


def test_a_failure_only_this_monitor_sees_never_waits(host, tracker):
    tracker.notifications.instancemonitor_wait = 10
    healthy(host, 1)

    host.sweeps(3, [listed(1)], default=Outcome.MISSED)

    [entry] = host.outbox.pending()
    assert entry.notification.event == 'QEMU_GUEST_AGENT_ERROR'
    assert entry.next_attempt_at == entry.created_at


# -- guests paused on an I/O error ----------------------------------------------

def test_a_pause_on_an_io_error_is_reported_after_the_grace(host, metrics):
    healthy(host, 1)
    host.event(event(1, EventKind.IO_ERROR, IOErrorAction.PAUSE, DISK,
                     at=host.now))
    host.event(io_pause(1, host.now))
    started = host.now

    while host.now + 10 < started + GRACE:
        host.sweep([paused(1)])
        assert host.outbox.pending() == []
    host.sweep([paused(1)])
    host.sweeps(3, [paused(1)])

    [entry] = host.outbox.pending()
    reason = entry.notification.details['reason']
    assert reason.startswith('guest paused on a disk I/O error for 6')
    assert 'disk virtio-disk1 (/srv/data.img): enospc' in reason
    assert entry.notification.event == 'QEMU_GUEST_AGENT_ERROR'
    assert host.state(1) == states.ERROR
    assert reported(metrics) == 1


def test_a_pause_by_a_client_is_never_reported(host, metrics):
    healthy(host, 1)
    host.event(user_pause(1, host.now))

    host.sweeps(20, [paused(1, io_error=None)])

    assert host.outbox.pending() == []
    assert reported(metrics) == 0


def test_a_guest_resumed_within_the_grace_is_not_reported(host):
    healthy(host, 1)
    host.event(io_pause(1, host.now))
    host.sweeps(2, [paused(1)])

    host.event(event(1, EventKind.LIFECYCLE, LifecycleEvent.RESUMED, None,
                     at=host.now))
    host.sweeps(10, [listed(1)])

    assert host.outbox.pending() == []
    assert host.state(1) == states.HEALTHY


def test_a_pause_only_the_listing_shows_is_reported_too(host):
    healthy(host, 1)

    host.sweeps(8, [paused(1, io_error='vdb: no space left')])

    [entry] = host.outbox.pending()
    assert 'vdb: no space left' in entry.notification.details['reason']


def test_the_io_error_action_recovers_the_pause(host, tracker, monkeypatch):
    queued = []
    monkeypatch.setattr(
        tracker.notifications, 'queue',
        lambda record, reason, now, action, on_done, shape: queued.append(
            (record.uuid, action, shape)))
    healthy(host, 1)
    host.event(io_pause(1, host.now))

    host.sweeps(8, [paused(1)])

    assert queued == [(uuid(1), 'resume',
                       ('QEMU_GUEST_AGENT_ERROR', 'STOPPED_FAILED'))]


def test_a_pause_of_a_domain_not_monitored_is_not_reported(host):
    host.event(io_pause(7, host.now))

    host.sweeps(8, [listed(1)])

    assert [e.notification.instance_uuid
            for e in host.outbox.pending()] == []


def test_the_hostname_is_the_configured_one(host):
    healthy(host, 1)
    host.event(io_pause(1, host.now))

    host.sweeps(8, [paused(1)])

    assert host.pending() == [(uuid(1), name(1), HOST)]
