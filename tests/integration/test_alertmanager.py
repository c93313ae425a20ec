"""The Alertmanager driver on the real lab: real libvirtd, a pvpanic guest
running qemu-ga, the real console script and two real Alertmanagers on
127.0.0.1 (an HA pair without gossip).

Two scenarios, each run once and read by several tests:

- *pair*: one of the two Alertmanagers is down when the guest panics, and
  the monitor does not recover guests ([recovery] action = none). The
  alert reaches the one that is up; the other gets it from the re-posts
  once it is back; an operator's reset brings the guest back, and the
  alert is resolved in both.
- *self-recovery*: with [recovery] action = reset the monitor resets the
  panicked guest itself; the alert fires, then is resolved once the
  guest answers again.
- *undefined unseen*: the guest panics and its alert fires; the monitor
  is stopped, the domain destroyed and undefined (an instance deleted
  during a monitor upgrade), and the monitor started again: it asks
  libvirt, finds the domain gone and resolves the alert.
"""

import socket
import time

import pytest

import lab
from lab import alertmanager as lab_alertmanager
from lab import daemon as lab_daemon

pytestmark = pytest.mark.integration

# A pvpanic panic is reported from libvirt's event at once; the rest is
# the shared lab machine's pace.
ALERT_TIMEOUT = 30.0
BOOT_TIMEOUT = 120.0
# Re-posts every 5 s (the option's least): a restarted Alertmanager has
# the alert within one interval.
REPOST = '5'


def start_daemon(work_dir, urls, **overrides):
    settings = {
        'notifier__driver': 'alertmanager',
        'alertmanager__urls': ','.join(urls),
        'alertmanager__timeout': '3',
        'alertmanager__repost_interval': REPOST,
        'outbox__retry_max_delay': '3',
    }
    settings.update(overrides)
    options = lab_daemon.lab_options(work_dir, 'http://127.0.0.1:9/v1',
                                     socket.gethostname(), **settings)
    return lab_daemon.MonitorDaemon(work_dir, options).start()


def healthy_line(guest):
    return r'Domain %s \(%s\): \w+ -> healthy' % (guest.name, guest.uuid)


def alerts_of(am, guest):
    return [a for a in am.alerts() if a['labels'].get('uuid') == guest.uuid]


def wait_alerts(am, guest, present, timeout):
    """The guest's alerts once some are listed (``present``) or none are;
    what is listed at the deadline otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        found = alerts_of(am, guest)
        if bool(found) == present or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def require_alertmanager():
    lab.require(lab_alertmanager.available(),
                '%s missing (package prometheus-alertmanager)'
                % lab_alertmanager.BINARY)


@pytest.fixture(scope='module')
def pair(libvirt_lab, alertmanagers, tmp_path_factory):
    require_alertmanager()
    up, down = alertmanagers(2)
    down.stop()
    [guest] = libvirt_lab.start_guests(1, pvpanic=True)
    daemon = start_daemon(str(tmp_path_factory.mktemp('am-pair')),
                          [up.url, down.url], recovery__action='none')
    outcome = {'guest': guest}
    try:
        daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
        guest.control('panic')
        outcome['firing'] = wait_alerts(up, guest, True, ALERT_TIMEOUT)
        down.start()
        outcome['after_restart'] = wait_alerts(down, guest, True,
                                               3 * float(REPOST))
        # An operator's reset; libvirt keeps the crashed guest paused
        # after it.
        guest.reset()
        guest.resume()
        daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT, count=2)
        outcome['resolved'] = [wait_alerts(am, guest, False, 15)
                               for am in (up, down)]
        outcome['log'] = daemon.log()
    finally:
        daemon.stop()
        libvirt_lab.teardown()
    return outcome


@pytest.fixture(scope='module')
def self_recovery(libvirt_lab, alertmanagers, tmp_path_factory):
    require_alertmanager()
    [am] = alertmanagers(1)
    [guest] = libvirt_lab.start_guests(1, pvpanic=True)
    daemon = start_daemon(str(tmp_path_factory.mktemp('am-reset')),
                          [am.url], recovery__action='reset')
    outcome = {'guest': guest}
    try:
        daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
        guest.control('panic')
        outcome['firing'] = wait_alerts(am, guest, True, ALERT_TIMEOUT)
        daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT, count=2)
        outcome['resolved'] = wait_alerts(am, guest, False, 15)
        outcome['log'] = daemon.log()
    finally:
        daemon.stop()
        libvirt_lab.teardown()
    return outcome


@pytest.fixture(scope='module')
def undefined_unseen(libvirt_lab, alertmanagers, tmp_path_factory):
    require_alertmanager()
    [am] = alertmanagers(1)
    [guest] = libvirt_lab.start_guests(1, pvpanic=True)
    work_dir = str(tmp_path_factory.mktemp('am-undefined'))
    daemon = start_daemon(work_dir, [am.url], recovery__action='none')
    outcome = {'guest': guest}
    try:
        daemon.wait_for_log(healthy_line(guest), BOOT_TIMEOUT)
        guest.control('panic')
        outcome['firing'] = wait_alerts(am, guest, True, ALERT_TIMEOUT)
        outcome['first_exit'] = daemon.stop()
        guest.remove()
        daemon = start_daemon(work_dir, [am.url], recovery__action='none')
        outcome['resolved'] = wait_alerts(am, guest, False, ALERT_TIMEOUT)
        outcome['log'] = daemon.log()
    finally:
        daemon.stop()
        libvirt_lab.teardown()
    return outcome


def test_a_panic_fires_an_alert_naming_the_guest(pair):
    guest = pair['guest']
    [alert] = pair['firing']

    assert alert['labels'] == {
        'alertname': 'GuestHealthMonitorGuestFailed', 'severity': 'critical',
        'host': socket.gethostname(), 'domain': guest.name,
        'uuid': guest.uuid, 'reason': 'pvpanic'}
    assert alert['status']['state'] == 'active'
    assert guest.name in alert['annotations']['summary']
    assert 'pvpanic' in alert['annotations']['description']


def test_an_alertmanager_down_at_the_failure_gets_the_alert_once_back(pair):
    [alert] = pair['after_restart']

    assert alert['labels'] == pair['firing'][0]['labels']
    assert alert['startsAt'] == pair['firing'][0]['startsAt']


def test_the_alert_is_resolved_in_both_once_the_guest_answers_again(pair):
    assert pair['resolved'] == [[], []]
    assert 'is over (guest agent answered again)' in pair['log']


def test_a_guest_the_monitor_resets_fires_then_resolves(self_recovery):
    [alert] = self_recovery['firing']

    assert alert['labels']['reason'] == 'pvpanic'
    assert alert['annotations']['recovery'].startswith('reset: ')
    assert self_recovery['resolved'] == []


def test_a_domain_undefined_while_the_monitor_was_stopped_resolves_its_alert(
        undefined_unseen):
    guest = undefined_unseen['guest']

    assert len(undefined_unseen['firing']) == 1
    assert undefined_unseen['first_exit'] == 0
    assert undefined_unseen['resolved'] == []
    log = undefined_unseen['log']
    assert 'Domain %s (%s) is no longer defined in libvirt' % (
        guest.name, guest.uuid) in log
    assert 'is over (domain undefined)' in log
