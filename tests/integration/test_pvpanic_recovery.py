"""A pvpanic guest on a plain libvirt host, on the real lab: the panic is
reported from libvirt's crashed event (no misses counted), and the reset
the daemon then does brings the guest, which libvirt kept in the crashed
state (``on_crash`` preserve), back to a running guest whose agent answers.

Both halves meet here: the instant failure queues through the same step
that recovers, so the webhook carries the reset and its result.
"""

import socket
import time

import pytest

from lab import daemon as lab_daemon
from lab.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

SECRET = 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='
NOTIFY_TIMEOUT = 60.0
BOOT_TIMEOUT = 120.0


def healthy_line(guest):
    return r'Domain %s \(%s\): \w+ -> healthy' % (guest.name, guest.uuid)


@pytest.fixture(scope='module')
def panicked(libvirt_lab, tmp_path_factory):
    """A pvpanic guest that panicked once under [recovery] action = reset;
    what the receiver got and whether its agent answered again."""
    [guest] = libvirt_lab.start_guests(1, pvpanic=True)
    receiver = WebhookReceiver(SECRET).start()
    work_dir = str(tmp_path_factory.mktemp('pvpanic-reset'))
    options = lab_daemon.lab_options(
        work_dir, 'http://127.0.0.1:9/v1', socket.gethostname(),
        notifier__driver='webhook', webhook__url=receiver.url,
        webhook__secret=SECRET, webhook__timeout='5',
        recovery__action='reset')
    daemon = lab_daemon.MonitorDaemon(work_dir, options).start()
    outcome = {'guest': guest}
    try:
        daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
        guest.control('panic')
        receiver.wait_for(1, NOTIFY_TIMEOUT, uuid=guest.uuid)
        # The reset: libvirt's crashed guest runs again and its agent
        # answers, which the daemon logs as the way back to healthy.
        daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT, count=2)
        outcome['answered_after'] = guest.ping()
        receiver.wait_for(1, NOTIFY_TIMEOUT, uuid=guest.uuid, ends=True)
        # Time for a second notification to show, should one be sent.
        time.sleep(5)
        outcome['deliveries'] = receiver.wait_for(0, 0, uuid=guest.uuid)
        outcome['ends'] = receiver.wait_for(0, 0, uuid=guest.uuid,
                                            ends=True)
        outcome['log'] = daemon.log()
    finally:
        daemon.stop()
        receiver.stop()
        libvirt_lab.teardown()
    return outcome


def test_a_pvpanic_panic_is_reported_from_the_event_and_reset(panicked):
    [delivery] = panicked['deliveries']
    body = delivery.data()

    assert delivery.signature_valid
    assert body['recovery']['action'] == 'reset'
    assert body['recovery']['result'] == 'done'
    # Reported on libvirt's crashed event, not on missed pings.
    assert 'pvpanic' in body['reason']


def test_the_reset_brings_a_crashed_guests_agent_back(panicked):
    assert panicked['answered_after'] == {'return': {}}


def test_the_receiver_is_told_once_the_failure_is_over(panicked):
    [failure] = panicked['deliveries']
    [end] = panicked['ends']

    assert end.signature_valid
    assert end.data()['resolves'] == failure.event.get_id()
    assert end.data()['reason'] == 'guest agent answered again'
