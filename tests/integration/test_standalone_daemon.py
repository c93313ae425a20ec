"""The daemon on a plain libvirt host, on the real lab: real libvirtd, QEMU
guests running qemu-ga, the real console script and the lab's webhook
receiver on 127.0.0.1.

To keep the lab time short, two scenarios run once per module and several
tests read their outcome:

- *budget*: one guest panics three times under a budget of two resets;
  the first panic shows the signed webhook and the reset after which the
  agent answers again, the third the exhausted budget;
- *outage*: the receiver is down for a minute while one guest panics and
  an opted-out guest's agent hangs; afterwards exactly one webhook
  arrives, and nothing about the opted-out guest.
"""

import os
import socket
import subprocess
import time

import pytest

from lab import daemon as lab_daemon
from lab import guests as lab_guests
from lab.webhook_receiver import WebhookReceiver
from lab.webhook_receiver import about
from monitor import crash_points
from monitor.virt import metadata as domain_metadata

pytestmark = pytest.mark.integration

# A Standard Webhooks secret ([webhook] secret): the receiver verifies
# every request with the reference library.
SECRET = 'whsec_bGFiLXdlYmhvb2stc2VjcmV0LTU1MjEtc3RhbmRhbG9uZQ=='
# Detection takes about 13 s at interval 2, ping timeout 1, threshold 3;
# a TCG guest boots its agent in about 10 s on an idle host, several
# times that on the shared lab machine.
NOTIFY_TIMEOUT = 60.0
BOOT_TIMEOUT = 120.0


def start_daemon(work_dir, receiver, **overrides):
    settings = {
        'notifier__driver': 'webhook',
        'webhook__url': receiver.url,
        'webhook__secret': SECRET,
        'webhook__timeout': '5',
        'recovery__action': 'reset',
        # Short retries: the outage test waits for a resend after a minute.
        'outbox__retry_max_delay': '5',
    }
    settings.update(overrides)
    options = lab_daemon.lab_options(work_dir, 'http://127.0.0.1:9/v1',
                                     socket.gethostname(), **settings)
    return lab_daemon.MonitorDaemon(work_dir, options).start()


def set_metadata(guest, element):
    subprocess.run(
        ['virsh', '-c', lab_guests.URI, 'metadata', guest.name,
         '--uri', domain_metadata.NAMESPACE, '--key', domain_metadata.KEY,
         '--set', element, '--live'],
        check=True, capture_output=True)


def healthy_line(guest):
    return r'Domain %s \(%s\): \w+ -> healthy' % (guest.name, guest.uuid)


# -- budget: three panics, two resets ------------------------------------------

@pytest.fixture(scope='module')
def budget(libvirt_lab, tmp_path_factory):
    """One guest panicked three times with [recovery] max_actions = 2;
    what the receiver got and what the guest did after each panic.

    Everything is stopped and removed before the tests read the outcome:
    a daemon left running would recover the next tests' guests."""
    [guest] = libvirt_lab.start_guests(1)
    receiver = WebhookReceiver(SECRET).start()
    daemon = start_daemon(str(tmp_path_factory.mktemp('budget')), receiver,
                          recovery__max_actions='2')
    outcome = {'guest': guest, 'answered_after': []}
    try:
        daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
        for panic in (1, 2, 3):
            guest.control('panic')
            receiver.wait_for(panic, NOTIFY_TIMEOUT, uuid=guest.uuid)
            if panic < 3:
                # Reset: the agent comes back and the daemon sees it (the
                # test pings only then: libvirt serializes agent commands).
                daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT,
                                    count=panic + 1)
                outcome['answered_after'].append(guest.ping())
        # Past the budget nothing is done: give a reset time to show.
        time.sleep(5)
        outcome['deliveries'] = receiver.wait_for(0, 0, uuid=guest.uuid)
        outcome['ends'] = receiver.wait_for(0, 0, uuid=guest.uuid,
                                            ends=True)
        outcome['log'] = daemon.log()
        try:
            guest.wait_pingable(timeout=3)
            outcome['silent_after_third'] = False
        except lab_guests.LabError:
            outcome['silent_after_third'] = True
    finally:
        daemon.stop()
        receiver.stop()
        libvirt_lab.teardown()
    return outcome


def test_a_panic_gives_a_signed_webhook_and_a_reset_after_which_the_agent_answers(  # noqa: E501
        budget):
    guest = budget['guest']
    first = budget['deliveries'][0]

    assert first.signature_valid
    event = first.event
    assert event.get_type() == 'io.guest-health-monitor.guest.failed'
    assert event.get_source() == \
        '//guest-health-monitor/%s' % socket.gethostname()
    assert event.get_subject() == guest.name
    assert event.get_id() == first.header('webhook-id')
    body = first.data()
    assert (body['host'], body['domain_uuid'], body['domain_name'],
            body['event']) == (socket.gethostname(), guest.uuid, guest.name,
                               'QEMU_GUEST_AGENT_ERROR')
    assert body['consecutive_misses'] == 3
    assert body['recovery']['action'] == 'reset'
    assert body['recovery']['result'] == 'done'
    [console] = [e for e in body['evidence'] if e['kind'] == 'console']
    with open(console['path'], 'rb') as saved:
        assert b'Kernel panic - not syncing' in saved.read()
    assert event.get_time() is not None
    # The guest's agent answered again after the reset.
    assert budget['answered_after'][0] == {'return': {}}


def test_past_the_budget_no_reset_an_alarm_and_the_webhook_says_so(budget):
    guest = budget['guest']
    deliveries = budget['deliveries']

    assert len(deliveries) == 3
    assert all(d.signature_valid for d in deliveries)
    results = [d.data()['recovery']['result'] for d in deliveries]
    assert results == ['done', 'done', 'budget_exhausted']
    assert [d.event.get_type() for d in deliveries] == [
        'io.guest-health-monitor.guest.failed',
        'io.guest-health-monitor.guest.failed',
        'io.guest-health-monitor.guest.recovery_exhausted']
    assert len({d.header('webhook-id') for d in deliveries}) == 3
    # A report that a failure is over names one the guest came back
    # from (the first two, after their resets), never the third.
    resolved = [d.data()['resolves'] for d in budget['ends']]
    assert all(d.signature_valid for d in budget['ends'])
    assert set(resolved) <= {d.event.get_id() for d in deliveries[:2]}
    assert len(resolved) == len(set(resolved))
    alarms = [line for line in budget['log'].splitlines()
              if 'ALARM' in line and guest.uuid in line]
    assert len(alarms) == 1
    recovered = [line for line in budget['log'].splitlines()
                 if 'recovered: reset' in line and guest.uuid in line]
    assert len(recovered) == 2
    # No third reset: the agent stays silent.
    assert budget['silent_after_third']


# -- outage: the receiver down for a minute, an opted-out guest hung -----------

@pytest.fixture(scope='module')
def outage(libvirt_lab, tmp_path_factory):
    panicking, opted_out = libvirt_lab.start_guests(2)
    set_metadata(opted_out, '<monitor enabled="no"/>')
    opted_out_id = opted_out.dom.ID()
    receiver = WebhookReceiver(SECRET).start()
    daemon = start_daemon(str(tmp_path_factory.mktemp('outage')), receiver)
    outcome = {'panicking': panicking, 'opted_out': opted_out,
               'opted_out_id': opted_out_id}
    try:
        daemon.wait_for_log(healthy_line(panicking), BOOT_TIMEOUT)
        daemon.wait_for_log(
            r'%s.*not monitored: its metadata says enabled="no"'
            % opted_out.name, 30)
        receiver.stop()
        down_at = time.monotonic()
        opted_out.control('agent-hang')
        panicking.control('panic')
        daemon.wait_for_log(r'Webhook receiver unavailable',
                            NOTIFY_TIMEOUT)
        time.sleep(max(0.0, 60.0 - (time.monotonic() - down_at)))
        receiver.start()
        # retry_max_delay 5: the resend comes within seconds; wait longer
        # to see that no second one follows.
        receiver.wait_for(1, 30, uuid=panicking.uuid)
        time.sleep(10)
        outcome['deliveries'] = receiver.wait_for(0, 0)
        outcome['log'] = daemon.log()
        outcome['opted_out_id_after'] = opted_out.dom.ID()
        try:
            opted_out.wait_pingable(timeout=3)
            outcome['opted_out_still_hung'] = False
        except lab_guests.LabError:
            outcome['opted_out_still_hung'] = True
    finally:
        daemon.stop()
        receiver.stop()
        libvirt_lab.teardown()
    return outcome


def test_with_the_receiver_down_a_minute_exactly_one_delivery_follows(
        outage):
    panicking = outage['panicking']

    [delivery] = about(outage['deliveries'], panicking.uuid)

    assert delivery.signature_valid
    body = delivery.data()
    assert body['domain_uuid'] == panicking.uuid
    # The reset did not wait for the receiver.
    assert body['recovery']['result'] == 'done'
    # Besides it, at most the report that this failure is over.
    others = [d for d in outage['deliveries'] if d is not delivery]
    assert [d.data()['resolves'] for d in others] in (
        [], [delivery.event.get_id()])


def test_an_opted_out_domain_with_a_hung_agent_gets_nothing_sent_and_no_action(  # noqa: E501
        outage):
    opted_out = outage['opted_out']

    assert about(outage['deliveries'], opted_out.uuid) == []
    assert about(outage['deliveries'], opted_out.uuid, ends=True) == []
    assert outage['opted_out_id_after'] == outage['opted_out_id']
    lines = [line for line in outage['log'].splitlines()
             if opted_out.uuid in line]
    assert not [line for line in lines
                if 'failed' in line or 'recovered' in line
                or 'missed' in line]
    # Its agent is still hung: nobody reset the guest.
    assert outage['opted_out_still_hung']


# -- a metadata change while the daemon runs --------------------------------

def test_metadata_changed_while_the_daemon_runs_takes_effect(
        lab_guests_module, tmp_path):
    [guest] = lab_guests_module(1)
    with WebhookReceiver(SECRET) as receiver:
        # Configured to notify only; the domain's metadata asks for a reset.
        daemon = start_daemon(str(tmp_path / 'monitor'), receiver,
                              recovery__action='none')
        try:
            daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)

            set_metadata(guest, '<monitor action="reset"/>')
            daemon.wait_for_log(r'%s.*action=reset' % guest.uuid, 30)
            guest.control('panic')
            [delivery] = receiver.wait_for(1, NOTIFY_TIMEOUT,
                                           uuid=guest.uuid)
        finally:
            daemon.stop()

    assert delivery.data()['recovery'] == {
        'action': 'reset', 'result': 'done', 'detail': 'reset'}
    guest.wait_agent_connected(BOOT_TIMEOUT)
    assert guest.wait_pingable(BOOT_TIMEOUT) == {'return': {}}


@pytest.fixture
def lab_guests_module(libvirt_lab):
    """Guests of one test, removed after it."""
    yield libvirt_lab.start_guests
    libvirt_lab.teardown()


# -- refused at start --------------------------------------------------------

def test_the_masakari_driver_with_a_reset_action_exits_2_naming_both(
        tmp_path):
    work_dir = str(tmp_path / 'monitor')
    options = lab_daemon.lab_options(work_dir, 'http://127.0.0.1:9/v1',
                                     socket.gethostname(),
                                     recovery__action='reset')
    daemon = lab_daemon.MonitorDaemon(work_dir, options)
    env = dict(os.environ, PYTHONPATH=lab_daemon.REPO_ROOT)

    proc = subprocess.run(
        lab_daemon.console_script() + ['--config-file', daemon.config_path],
        capture_output=True, text=True, timeout=60, env=env, cwd=work_dir)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert '[recovery] action' in proc.stderr
    assert '[notifier] driver = masakari' in proc.stderr
    assert 'Traceback' not in proc.stdout + proc.stderr


# -- a crash between queueing and the recovery ---------------------------------

def test_a_daemon_killed_before_the_reset_sends_the_report_as_interrupted(
        lab_guests_module, tmp_path, monkeypatch):
    [guest] = lab_guests_module(1)
    work_dir = str(tmp_path / 'monitor')
    with WebhookReceiver(SECRET) as receiver:
        # SIGKILL right after the held notification is committed: before
        # evidence, reset and release.
        monkeypatch.setenv(crash_points.ENV, crash_points.AFTER_ENQUEUE)
        daemon = start_daemon(work_dir, receiver)
        try:
            daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
            guest.control('panic')
            daemon.proc.wait(NOTIFY_TIMEOUT)
        finally:
            status = daemon.stop()
        assert status == -9
        assert receiver.wait_for(1, 3) == []

        monkeypatch.delenv(crash_points.ENV)
        again = start_daemon(work_dir, receiver)
        try:
            [delivery] = receiver.wait_for(1, NOTIFY_TIMEOUT,
                                           uuid=guest.uuid)
            # Exactly one: the restarted daemon does not report the same
            # failure again while the guest stays dead.
            time.sleep(10)
            deliveries = receiver.wait_for(0, 0)
        finally:
            again.stop()

    assert deliveries == [delivery]
    assert delivery.signature_valid
    assert delivery.data()['recovery']['action'] == 'reset'
    assert delivery.data()['recovery']['result'] == 'interrupted'
