"""The daemon end to end on real guests: a silent agent on a guest that
keeps working is not reported, a guest that stops working is, and a panic
libvirt sees through a pvpanic device is notified at once, exactly once.

One daemon watches three guests for the whole module (booting them costs
most of the time): ``working`` has a data disk its ``disk-writer`` keeps
writing to, ``pvpanic`` a pvpanic device, ``watchdog`` an i6300esb
watchdog whose firing libvirt only reports (action none). Timings: interval 2 s, ping
timeout 1 s, threshold 3 (lab_options), I/O corroboration at its default
(on).
"""

import re
import socket
import time
import urllib.request
from concurrent import futures

import pytest

from lab import daemon as lab_daemon
from lab import fixtures_masakari
from monitor.daemon import metrics
from tests.unit import exposition

pytestmark = pytest.mark.integration

HEALTHY = r'%s\): \w+ -> healthy'
ACTIVE = r'Domain %s \(%s\): agent unresponsive, guest active'
# Several failure thresholds at these timings (a threshold takes about
# 1 + 2 x (0.5 + 5) = 12 s of silence; a guest held active is judged
# again at each later miss, every 5-7 s).
WATCH_ACTIVE = 40.0
# Long enough for the sweep to count a crashed guest's misses past the
# threshold after the event (about 12 s), so that a second notification
# would have been sent.
WATCH_AFTER_PANIC = 25.0


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Watched:
    """The module's daemon, masakari-api and guests."""

    def __init__(self, daemon, masakari, metrics_port, working, pvpanic,
                 watchdog):
        self.daemon = daemon
        self.masakari = masakari
        self.metrics_port = metrics_port
        self.working = working
        self.pvpanic = pvpanic
        self.watchdog = watchdog

    def metric(self, name):
        url = 'http://127.0.0.1:%d/metrics' % self.metrics_port
        with urllib.request.urlopen(url, timeout=5) as response:
            parsed = exposition.parse(response.read().decode('utf-8'))
        return parsed.value(metrics.PREFIX + name)


@pytest.fixture(scope='module')
def watched(libvirt_lab, masakari_server, tmp_path_factory):
    """Watched, started once per module."""
    masakari_server.start()
    masakari_server.clear()
    segment = masakari_server.create_segment(fixtures_masakari.SEGMENT_NAME)
    masakari_server.add_host(segment, socket.gethostname())
    working = libvirt_lab.new_guest(disk=True)
    pvpanic = libvirt_lab.new_guest(pvpanic=True)
    watchdog = libvirt_lab.new_guest(watchdog=True)
    guests = (working, pvpanic, watchdog)
    with futures.ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda guest: guest.start(), guests))
    for guest in guests:
        guest.wait_agent_connected()
        guest.wait_pingable()
    work_dir = str(tmp_path_factory.mktemp('monitor'))
    port = free_port()
    daemon = lab_daemon.MonitorDaemon(work_dir, lab_daemon.lab_options(
        work_dir, masakari_server.endpoint, socket.gethostname(),
        metrics__listen_port=str(port))).start()
    try:
        for guest in guests:
            daemon.wait_for_log(HEALTHY % guest.uuid, 60)
        yield Watched(daemon, masakari_server, port, *guests)
    finally:
        daemon.stop()
        libvirt_lab.teardown()


def hang_agent_while_writing(daemon, guest):
    guest.control('disk-writer')
    guest.control('agent-hang')
    return daemon.wait_for_log(ACTIVE % (guest.name, guest.uuid), 60)


def test_a_working_guest_whose_agent_hangs_is_not_reported(watched):
    daemon, masakari, working = (watched.daemon, watched.masakari,
                                 watched.working)

    [line] = hang_agent_while_writing(daemon, working)
    print(line)
    time.sleep(WATCH_ACTIVE)

    assert masakari.notifications_for(working.uuid) == [], daemon.tail()
    assert 'disk requests' in line
    # Logged once for the incident, though judged again at each miss.
    assert len(re.findall(ACTIVE % (working.name, working.uuid),
                          daemon.log())) == 1
    assert not re.search(r'Domain %s \(%s\) failed' % (
        working.name, working.uuid), daemon.log())
    assert watched.metric('agent_silent_guest_active_total') == 1


def test_a_pvpanic_panic_is_notified_at_once_and_only_once(watched):
    daemon, masakari, guest = (watched.daemon, watched.masakari,
                               watched.pvpanic)

    asked_at = time.monotonic()
    guest.control('panic')
    # control() returns once the panic shows on the console (polled every
    # 0.1 s); the command itself waits for the guest's init to poll its
    # port (up to 1 s).
    seen_at = time.monotonic()
    stored = masakari.wait_notifications_for(guest.uuid, 30, poll=0.1)
    stored_at = time.monotonic()
    print('pvpanic crash to stored notification: %.2f s after the panic '
          'showed on the console, %.2f s after the panic command was sent'
          % (stored_at - seen_at, stored_at - asked_at))
    assert len(stored) == 1, daemon.tail()
    # The event, not the misses, reported it.
    daemon.wait_for_log(
        r'Domain %s \(%s\) failed \(guest kernel panicked \(reported by its '
        r'pvpanic device\)\)' % (guest.name, guest.uuid), 10)

    time.sleep(WATCH_AFTER_PANIC)
    assert len(masakari.notifications_for(guest.uuid)) == 1
    daemon.wait_for_log(r'%s\): error -> reported' % guest.uuid, 10)
    assert len(re.findall(r'Domain %s \(%s\) failed' % (guest.name,
                                                        guest.uuid),
                          daemon.log())) == 1


def test_a_guest_held_active_is_reported_once_its_io_stops(watched):
    daemon, masakari, working = (watched.daemon, watched.masakari,
                                 watched.working)
    hang_agent_while_writing(daemon, working)

    # No pvpanic device: libvirt sees nothing; the disk-writer dies with
    # the kernel.
    working.control('panic')

    stored = masakari.wait_notifications_for(working.uuid, 60, poll=0.1)
    assert len(stored) == 1, daemon.tail()
    [line] = daemon.wait_for_log(r'Domain %s \(%s\) failed' % (
        working.name, working.uuid), 10)
    print(line)
    assert 'no I/O above the noise floor' in line
    assert stored[0]['payload'] == {
        'event': 'QEMU_GUEST_AGENT_ERROR', 'instance_uuid': working.uuid,
        'vir_domain_event': 'STOPPED_FAILED'}


def test_a_watchdog_that_fired_is_notified_without_waiting_for_misses(
        watched):
    daemon, masakari, guest = (watched.daemon, watched.masakari,
                               watched.watchdog)

    guest.control('watchdog-hang')

    stored = masakari.wait_notifications_for(guest.uuid, 30, poll=0.1)
    assert len(stored) == 1, daemon.tail()
    daemon.wait_for_log(
        r'Domain %s \(%s\) failed \(watchdog fired \(no action '
        r'configured\)\)' % (guest.name, guest.uuid), 10)
    # Its agent never stopped answering: no miss reported it.
    assert not re.search(r'%s\): healthy -> error \(1 missed ping'
                         % guest.uuid, daemon.log())
