"""Fast confirmation on real guests: a suspect's agent response timeout is
lowered to the ping timeout while its silence is confirmed and put back
afterwards, also by the next start of a daemon killed in between; a
working guest whose agent stalls is still not reported.

libvirt has no call that reads the timeout (``virsh guest-agent-timeout``
only sets it); the tests read it where libvirt keeps it, the domain's
status file, as the daemon does. Timings: interval 2 s, ping timeout 1 s,
threshold 3 (lab_options).
"""

import re
import subprocess

import pytest

from monitor.virt import agent_timeout

pytestmark = pytest.mark.integration

HEALTHY = r'%s\): \w+ -> healthy'
LOWERED = (r'Domain %s \(%s\): agent response timeout lowered from %s to '
           r'1 s')
RESTORED = r'Domain %s \(%s\): agent response timeout restored to %s'
ACTIVE = r'Domain %s \(%s\): agent unresponsive, guest active'


def timeout_of(guest):
    reading = agent_timeout.read(guest.name)
    assert reading.known, 'no agentTimeout in the status file of %s' % (
        guest.name)
    return reading.seconds


def test_a_working_guest_whose_agent_stalls_is_not_reported_and_gets_its_timeout_back(  # noqa: E501
        lab_guests, monitor_daemon, masakari):
    [guest] = lab_guests(1, disk=True)
    before = timeout_of(guest)
    daemon = monitor_daemon()
    daemon.wait_for_log(HEALTHY % guest.uuid, 60)

    guest.control('disk-writer')
    guest.control('agent-hang')
    daemon.wait_for_log(LOWERED % (guest.name, guest.uuid,
                                   re.escape(agent_timeout.describe(before))),
                        30)
    daemon.wait_for_log(ACTIVE % (guest.name, guest.uuid), 30)
    daemon.wait_for_log(RESTORED % (guest.name, guest.uuid,
                                    re.escape(agent_timeout.describe(before))),
                        30)
    guest.control('agent-resume')
    daemon.wait_for_log(HEALTHY % guest.uuid, 30, count=2)

    assert timeout_of(guest) == before
    assert masakari.notifications_for(guest.uuid) == [], daemon.tail()
    assert daemon.stop() == 0


def test_a_daemon_killed_during_a_confirmation_restores_the_timeout_at_its_next_start(  # noqa: E501
        lab_guests, monitor_daemon):
    [guest] = lab_guests(1)
    before = timeout_of(guest)
    daemon = monitor_daemon()
    daemon.wait_for_log(HEALTHY % guest.uuid, 60)

    guest.control('agent-hang')
    daemon.wait_for_log(LOWERED % (guest.name, guest.uuid,
                                   re.escape(agent_timeout.describe(before))),
                        30)
    daemon.kill()
    assert timeout_of(guest) == 1
    guest.control('agent-resume')

    again = monitor_daemon(work_dir=daemon.work_dir)
    again.wait_for_log(RESTORED % (guest.name, guest.uuid,
                                   re.escape(agent_timeout.describe(before))),
                       30)
    assert timeout_of(guest) == before
    assert again.stop() == 0


def test_a_stop_during_a_confirmation_restores_the_timeout(
        lab_guests, monitor_daemon):
    [guest] = lab_guests(1)
    before = timeout_of(guest)
    daemon = monitor_daemon()
    daemon.wait_for_log(HEALTHY % guest.uuid, 60)

    guest.control('agent-hang')
    daemon.wait_for_log(LOWERED % (guest.name, guest.uuid,
                                   re.escape(agent_timeout.describe(before))),
                        30)
    assert daemon.stop() in (0, 3), daemon.tail()

    assert timeout_of(guest) == before, daemon.tail()
    guest.control('agent-resume')


def virsh(*args):
    return subprocess.run(['virsh', '-c', 'qemu:///system'] + list(args),
                          capture_output=True, text=True, timeout=60,
                          check=False)


def test_a_quiesce_of_another_guest_during_a_confirmation_works_as_before(
        lab_guests, monitor_daemon, masakari):
    frozen, suspect = lab_guests(2, fs_disk=True)
    before = timeout_of(frozen)
    daemon = monitor_daemon()
    for guest in (frozen, suspect):
        daemon.wait_for_log(HEALTHY % guest.uuid, 60)

    suspect.control('agent-hang')
    daemon.wait_for_log(LOWERED % (suspect.name, suspect.uuid, '.*'), 30)
    freeze = virsh('domfsfreeze', frozen.name)
    thaw = virsh('domfsthaw', frozen.name)

    assert freeze.returncode == 0, freeze.stderr
    assert 'Froze 1 filesystem' in freeze.stdout, freeze.stdout
    assert thaw.returncode == 0, thaw.stderr
    assert timeout_of(frozen) == before
    suspect.control('agent-resume')
    daemon.wait_for_log(RESTORED % (suspect.name, suspect.uuid, '.*'), 30)
    assert masakari.notifications_for(frozen.uuid) == [], daemon.tail()
