"""Application probes on the real lab: the daemon, real guests whose
agents answer, probes declared in each domain's metadata, and the lab's
webhook receiver.

One scenario runs once for the module, four guests at once, and each test
reads its outcome:

- a command that exits 1 in a healthy guest: an application failure,
  after failure_threshold x period_seconds, and nothing for the ping;
- a command that sleeps for ever: reported the same way, with one
  command in flight and no pile-up of them in the guest;
- a heartbeat file the guest stops rewriting: reported after max_age;
- a heartbeat rewritten in a guest whose clock is an hour behind the
  host's: judged by the guest's clock, never reported;
- an agent started with guest-exec denied: the probe is unavailable,
  said once, and nothing is reported.
"""

import socket
import time

import libvirt
import pytest

from lab import daemon as lab_daemon
from lab import guests as lab_guests
from lab.webhook_receiver import WebhookReceiver
from lab.webhook_receiver import make_secret
from monitor.virt import metadata as domain_metadata

pytestmark = pytest.mark.integration

SECRET = make_secret()
BOOT_TIMEOUT = 120.0
REPORT_TIMEOUT = 60.0
# Period 2 s, threshold 3: a failing probe is reported about 6 s after
# its first failed run.
TIMINGS = 'period_seconds="2" timeout_seconds="1" failure_threshold="3"'
SLEEPER = '3600'
MAX_AGE = 5


def probe(kind, target, *args):
    where = 'path' if kind == 'exec' else 'file'
    extra = ' max_age="%d"' % MAX_AGE if kind == 'heartbeat' else ''
    return ('<monitor><probe name="app" kind="%s" %s="%s" %s%s>%s</probe>'
            '</monitor>' % (kind, where, target, TIMINGS, extra,
                            ''.join('<arg>%s</arg>' % arg for arg in args)))


def declare(guest, element):
    guest.dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element,
                          domain_metadata.KEY, domain_metadata.NAMESPACE,
                          libvirt.VIR_DOMAIN_AFFECT_LIVE)


def healthy_line(guest):
    return r'Domain %s \(%s\): \w+ -> healthy' % (guest.name, guest.uuid)


def deliveries_for(receiver, guest):
    return [d for d in receiver.wait_for(0, 0)
            if d.data()['domain_uuid'] == guest.uuid]


def wait_delivery(receiver, guest, timeout=REPORT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = deliveries_for(receiver, guest)
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError('no webhook for %s within %.0f s'
                         % (guest.name, timeout))


@pytest.fixture(scope='module')
def probed(libvirt_lab, tmp_path_factory):
    exits_1, sleeper, beating, denied, drifted = \
        libvirt_lab.start_guests(5)
    declare(exits_1, probe('exec', '/bin/false'))
    declare(sleeper, probe('exec', '/bin/sleep', SLEEPER))
    declare(beating, probe('heartbeat', lab_guests.HEARTBEAT_FILE))
    declare(denied, probe('exec', '/bin/true'))
    declare(drifted, probe('heartbeat', lab_guests.HEARTBEAT_FILE))
    beating.control('heartbeat-start')
    drifted.control('clock-back')
    drifted.control('heartbeat-start')
    # What the agent says of the guest's clock (guest-get-time), against
    # the host's.
    outcome = {'drift': drifted.dom.getTime()['seconds'] - time.time()}
    denied.control('agent-deny-exec')
    denied.wait_pingable()
    receiver = WebhookReceiver(SECRET).start()
    work_dir = str(tmp_path_factory.mktemp('probes'))
    options = lab_daemon.lab_options(
        work_dir, 'http://127.0.0.1:9/v1', socket.gethostname(),
        notifier__driver='webhook', webhook__url=receiver.url,
        webhook__secret=SECRET, webhook__timeout='5')
    daemon = lab_daemon.MonitorDaemon(work_dir, options).start()
    guests = (exits_1, sleeper, beating, denied, drifted)
    try:
        for guest in guests:
            daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
        outcome['exits_1'] = wait_delivery(receiver, exits_1)
        outcome['sleeper'] = wait_delivery(receiver, sleeper)
        # Three more periods with the command still running.
        time.sleep(6)
        outcome['sleepers'] = sleeper.processes('sleep ' + SLEEPER)
        # The heartbeat passed while it was rewritten; now it stops.
        outcome['beating_before'] = deliveries_for(receiver, beating)
        beating.control('heartbeat-stop')
        stopped_at = time.monotonic()
        outcome['beating'] = wait_delivery(receiver, beating)
        outcome['beating_after'] = time.monotonic() - stopped_at
        outcome['unavailable'] = daemon.wait_for_log(
            r'Domain %s \(%s\): application probe app is unavailable'
            % (denied.name, denied.uuid), REPORT_TIMEOUT)
        # Time for a second notification to show, should one be sent.
        time.sleep(4)
        outcome['all'] = {guest.name: deliveries_for(receiver, guest)
                          for guest in guests}
        outcome['log'] = daemon.log()
        outcome['guests'] = guests
    finally:
        daemon.stop()
        receiver.stop()
        libvirt_lab.teardown()
    return outcome


def test_a_command_that_exits_1_is_an_application_failure(probed):
    data = probed['exits_1'].data()

    assert probed['exits_1'].signature_valid
    assert data['event'] == 'APPLICATION_ERROR'
    assert 'application probe app (exec /bin/false) failed 3 time(s) in a ' \
           'row: /bin/false exited 1' in data['reason']
    assert data['recovery']['action'] == 'none'


def test_nothing_is_reported_for_the_ping_of_a_guest_that_answers(probed):
    exits_1 = probed['guests'][0]

    assert len(probed['all'][exits_1.name]) == 1
    assert 'missed' not in probed['exits_1'].data()['reason']


def test_a_command_that_never_ends_fails_without_piling_up(probed):
    data = probed['sleeper'].data()

    assert data['event'] == 'APPLICATION_ERROR'
    assert 'did not end within 1 s' in data['reason']
    # One command in the guest, however many periods passed.
    assert len(probed['sleepers']) == 1, probed['sleepers']


def test_a_heartbeat_that_stops_is_reported_after_max_age(probed):
    data = probed['beating'].data()

    assert probed['beating_before'] == []
    assert data['event'] == 'APPLICATION_ERROR'
    assert 'more than max_age %d s' % MAX_AGE in data['reason']
    assert probed['beating_after'] > MAX_AGE
    # Judged by the guest's own clock, which the real agent told.
    assert "host's clock" not in data['reason']


def test_a_heartbeat_in_a_guest_whose_clock_is_behind_is_not_reported(
        probed):
    drifted = probed['guests'][4]

    assert abs(probed['drift'] + lab_guests.CLOCK_BACK_SECONDS) < 60, \
        probed['drift']
    assert probed['all'][drifted.name] == []


def test_an_agent_that_denies_guest_exec_makes_the_probe_unavailable(
        probed):
    denied = probed['guests'][3]

    assert probed['all'][denied.name] == []
    assert len(probed['unavailable']) == 1
    assert 'has been disabled' in probed['unavailable'][0]
