"""The monitor beside masakari-instancemonitor (masakari-monitors 22.0.0) on
one host, both reporting to one masakari-api, as the migration guide has
operators run them: each failure gives exactly one stored notification.

* A guest whose QEMU process is killed: both see libvirt's stopped (failed)
  event and both send LIFECYCLE / STOPPED_FAILED for it; ours waits
  [notifier] instancemonitor_wait (10 s) and masakari-api answers it 409.
* A guest whose kernel panics without a pvpanic device: only the monitor
  sees it (its agent falls silent, the domain keeps running), so only the
  monitor's notification is stored.
"""

import os
import signal
import socket
import time

import pytest

import lab
from lab import instancemonitor as lab_instancemonitor

pytestmark = pytest.mark.integration

# The bound: exactly one notification within this long.
WATCH = 60.0
BOOT_TIMEOUT = 120.0
QEMU_PID_DIR = '/run/libvirt/qemu'
DUPLICATE = (r'already had the notification for domain %s '
             r'\(%s\)')
ACCEPTED = r'accepted the notification for domain %s \(%s\)'


def healthy_line(guest):
    return r'Domain %s \(%s\): \w+ -> healthy' % (guest.name, guest.uuid)


@pytest.fixture
def instancemonitor(masakari, tmp_path):
    lab.require(lab_instancemonitor.installed(),
                'masakari-instancemonitor not installed in %s (make lab)'
                % lab_instancemonitor.VENV)
    peer = lab_instancemonitor.InstanceMonitor(
        str(tmp_path / 'instancemonitor'), masakari.endpoint,
        socket.gethostname()).start()
    yield peer
    peer.stop()


def qemu_pid(guest):
    with open(os.path.join(QEMU_PID_DIR, '%s.pid' % guest.name)) as pidfile:
        return int(pidfile.read().strip())


def stored_within(masakari, guest, seconds):
    """The notifications masakari-api stored for ``guest`` by the end of
    ``seconds`` from now."""
    time.sleep(seconds)
    return masakari.notifications_for(guest.uuid)


def test_a_killed_qemu_gives_one_notification(lab_guests, masakari,
                                              monitor_daemon,
                                              instancemonitor):
    [guest] = lab_guests(1)
    daemon = monitor_daemon()
    daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
    killed_at = time.monotonic()

    os.kill(qemu_pid(guest), signal.SIGKILL)

    # Ours leaves after its wait and is answered as a duplicate.
    daemon.wait_for_log(DUPLICATE % (guest.name, guest.uuid), WATCH)
    stored = stored_within(masakari, guest,
                           max(0.0, WATCH - (time.monotonic() - killed_at)))
    assert len(stored) == 1, stored
    assert stored[0]['payload'] == {'event': 'LIFECYCLE',
                                    'instance_uuid': guest.uuid,
                                    'vir_domain_event': 'STOPPED_FAILED'}
    assert 'Send a notification' in instancemonitor.log()


def test_a_panic_without_pvpanic_gives_one_notification(lab_guests,
                                                        masakari,
                                                        monitor_daemon,
                                                        instancemonitor):
    [guest] = lab_guests(1)
    daemon = monitor_daemon()
    daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
    panicked_at = time.monotonic()

    guest.control('panic')

    daemon.wait_for_log(ACCEPTED % (guest.name, guest.uuid), WATCH)
    stored = stored_within(
        masakari, guest,
        max(0.0, WATCH - (time.monotonic() - panicked_at)))
    assert len(stored) == 1, stored
    assert stored[0]['payload']['event'] == 'QEMU_GUEST_AGENT_ERROR'
