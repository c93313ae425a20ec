"""The recovery ladder on the real lab: [recovery] ladder = nmi, reset,
two guests whose agents hang, the daemon and the lab's webhook receiver.

- A guest booted with ``unknown_nmi_panic=1`` panics on the NMI and
  reboots on its own (as a guest with a crash kernel does once its vmcore
  is written): the NMI alone brings it back, no reset is done.
- A guest that ignores NMIs stays silent through ``nmi_grace``: the reset
  step runs and brings it back.

Each notification lists the steps taken. One scenario runs for the
module; the tests read its outcome.
"""

import socket
import time

import pytest

from lab import daemon as lab_daemon
from lab.webhook_receiver import WebhookReceiver
from lab.webhook_receiver import make_secret

pytestmark = pytest.mark.integration

SECRET = make_secret()
BOOT_TIMEOUT = 120.0
# Detection (about 13 s), the grace, a reset and a boot.
REPORT_TIMEOUT = 120.0
NMI_GRACE = 30


def healthy_line(guest):
    return r'Domain %s \(%s\): \w+ -> healthy' % (guest.name, guest.uuid)


def delivery_for(receiver, guest, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in receiver.wait_for(0, 0)
                 if d.data()['domain_uuid'] == guest.uuid]
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError('no webhook for %s within %.0f s'
                         % (guest.name, timeout))


@pytest.fixture(scope='module')
def climbed(libvirt_lab, tmp_path_factory):
    [panics] = libvirt_lab.start_guests(1, nmi_panic=True)
    [ignores] = libvirt_lab.start_guests(1)
    receiver = WebhookReceiver(SECRET).start()
    work_dir = str(tmp_path_factory.mktemp('ladder'))
    options = lab_daemon.lab_options(
        work_dir, 'http://127.0.0.1:9/v1', socket.gethostname(),
        notifier__driver='webhook', webhook__url=receiver.url,
        webhook__secret=SECRET, webhook__timeout='5',
        recovery__ladder='nmi, reset', recovery__nmi_grace=str(NMI_GRACE))
    daemon = lab_daemon.MonitorDaemon(work_dir, options).start()
    outcome = {'panics': panics, 'ignores': ignores}
    try:
        for guest in (panics, ignores):
            daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
        for guest in (panics, ignores):
            guest.control('agent-hang')
        for guest in (panics, ignores):
            outcome[guest.name] = delivery_for(receiver, guest,
                                               REPORT_TIMEOUT)
            # Back: the guest answers again after the ladder.
            daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT, count=2)
            outcome[guest.name + '-answers'] = guest.wait_pingable()
        outcome['panic_console'] = panics.console_text()
        outcome['log'] = daemon.log()
    finally:
        daemon.stop()
        receiver.stop()
        libvirt_lab.teardown()
    return outcome


def steps_of(delivery):
    return [(step['action'], step['result'])
            for step in delivery.data()['recovery']['steps']]


def test_an_nmi_alone_brings_back_a_guest_that_panics_on_it(climbed):
    guest = climbed['panics']
    [delivery] = climbed[guest.name]
    recovery = delivery.data()['recovery']

    assert steps_of(delivery) == [('nmi', 'done')]
    assert (recovery['action'], recovery['result']) == ('nmi', 'done')
    assert 'NMI' in climbed['panic_console']
    assert climbed[guest.name + '-answers'] == {'return': {}}


def test_the_reset_step_runs_for_a_guest_that_ignores_the_nmi(climbed):
    guest = climbed['ignores']
    [delivery] = climbed[guest.name]
    recovery = delivery.data()['recovery']

    assert steps_of(delivery) == [('nmi', 'failed'), ('reset', 'done')]
    assert (recovery['action'], recovery['result']) == ('reset', 'done')
    assert 'did not answer within nmi_grace %d s' % NMI_GRACE in \
        delivery.data()['recovery']['steps'][0]['detail']
    assert climbed[guest.name + '-answers'] == {'return': {}}


def test_every_step_has_its_time(climbed):
    for guest in (climbed['panics'], climbed['ignores']):
        [delivery] = climbed[guest.name]
        for step in delivery.data()['recovery']['steps']:
            assert step['at'].endswith('Z')
