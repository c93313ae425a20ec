"""Guests paused on a disk I/O error, on the real lab with the webhook
driver: a guest whose data disk (error_policy='stop') runs out of space is
paused by QEMU, reported once [monitor] io_error_grace is over, naming the
disk and libvirt's error, and resumed by [recovery] io_error_action =
resume; a guest paused with ``virsh suspend`` beside it is never reported.
"""

import socket
import time

import libvirt
import pytest

from lab import daemon as lab_daemon
from lab import failing_disk
from lab.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

SECRET = 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='
GRACE = 5
BOOT_TIMEOUT = 120.0
PAUSE_TIMEOUT = 30.0
# The grace, a sweep or two, the resume: well within this.
REPORT_TIMEOUT = 40.0


def healthy_line(guest):
    return r'Domain %s \(%s\): \w+ -> healthy' % (guest.name, guest.uuid)


def wait_paused_on_io_error(guest, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if guest.state() == (libvirt.VIR_DOMAIN_PAUSED,
                             libvirt.VIR_DOMAIN_PAUSED_IOERROR):
            return time.monotonic()
        time.sleep(0.2)
    raise AssertionError('%s not paused on an I/O error within %d s: %s'
                         % (guest.name, timeout, guest.state()))


@pytest.fixture(scope='module')
def paused(libvirt_lab, tmp_path_factory):
    """A guest paused on a full disk and one paused by a client, watched by
    one daemon; what the receiver got and what became of the guests."""
    receiver = WebhookReceiver(SECRET).start()
    work_dir = str(tmp_path_factory.mktemp('io-error'))
    outcome = {}
    with failing_disk.mounted('io-error') as disk:
        try:
            failing = disk.start_guest(libvirt_lab)
            [suspended] = libvirt_lab.start_guests(1)
            options = lab_daemon.lab_options(
                work_dir, 'http://127.0.0.1:9/v1', socket.gethostname(),
                notifier__driver='webhook', webhook__url=receiver.url,
                webhook__secret=SECRET, webhook__timeout='5',
                monitor__io_error_grace=str(GRACE),
                recovery__io_error_action='resume')
            daemon = lab_daemon.MonitorDaemon(work_dir, options).start()
            try:
                for guest in (failing, suspended):
                    daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
                disk.fill()
                failing.control('disk-writer')
                suspended.pause()
                paused_at = wait_paused_on_io_error(failing, PAUSE_TIMEOUT)
                # The storage comes back: the resume lets the guest go on.
                disk.free()
                outcome['deliveries'] = receiver.wait_for(
                    1, REPORT_TIMEOUT, uuid=failing.uuid)
                outcome['reported_after'] = time.monotonic() - paused_at
                failing.wait_state(libvirt.VIR_DOMAIN_RUNNING, 15)
                outcome['answered_after'] = failing.wait_pingable()
                # A second notification, or one for the suspended guest,
                # would show by now.
                time.sleep(GRACE + 5)
                outcome['deliveries'] = receiver.wait_for(
                    0, 0, uuid=failing.uuid)
                outcome['suspended'] = receiver.wait_for(
                    0, 0, uuid=suspended.uuid)
                outcome['suspended_state'] = suspended.state()
                outcome['log'] = daemon.log()
            finally:
                daemon.stop()
        finally:
            receiver.stop()
            libvirt_lab.teardown()
    return outcome


def test_a_guest_paused_on_a_full_disk_is_reported_after_the_grace(paused):
    [delivery] = paused['deliveries']
    body = delivery.data()

    assert delivery.signature_valid
    assert body['reason'].startswith('guest paused on a disk I/O error for ')
    assert 'enospc' in body['reason']
    seconds = int(body['reason'].split(' for ')[1].split(' s ')[0])
    assert seconds >= GRACE


def test_the_paused_guest_is_resumed_and_answers_again(paused):
    [delivery] = paused['deliveries']

    assert delivery.data()['recovery']['action'] == 'resume'
    assert delivery.data()['recovery']['result'] == 'done'
    assert paused['answered_after'] == {'return': {}}


def test_a_guest_paused_by_virsh_suspend_is_never_reported(paused):
    assert paused['suspended_state'][0] == libvirt.VIR_DOMAIN_PAUSED
    assert paused['suspended'] == []
