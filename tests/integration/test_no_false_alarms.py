"""Faults a compute host throws at the monitor, on the real lab.

Every test runs the real daemon (interval 2 s, ping timeout 1 s,
threshold 3) against real guests and the real masakari-api, and checks
what the engine stored: nothing for a guest that was only rebooted,
paused, restarted or briefly lost its agent; exactly one notification for
a real crash, whatever happens to libvirtd, the engine or the daemon.
"""

import os
import re
import subprocess
import time

import libvirt
import pytest

from lab import daemon as lab_daemon
from lab import libvirtd

HEALTHY = r'%s\): \w+ -> healthy'


def wait_healthy(daemon, guests, count=1, timeout=60):
    for guest in guests:
        daemon.wait_for_log(HEALTHY % guest.uuid, timeout, count=count)


# Three ways a guest reboots: Nova's soft reboot (through the agent), a
# hard reset, and a reboot from inside the guest.
REBOOTS = (lambda g: g.reboot(), lambda g: g.reset(),
           lambda g: g.control('reboot'))
# Every guest goes through each kind twice, after each of the other
# kinds; every round has the three kinds at once, one per guest.
REBOOT_ROUNDS = 2 * len(REBOOTS)


def test_reboots_are_never_reported(lab_guests, masakari, monitor_daemon):
    guests = lab_guests(len(REBOOTS))
    daemon = monitor_daemon()
    wait_healthy(daemon, guests)
    for round_no in range(REBOOT_ROUNDS):
        for index, guest in enumerate(guests):
            REBOOTS[(round_no + index) % len(REBOOTS)](guest)
        # The monitor must have seen each guest come back before the
        # next round: it stays on duty through every reboot.
        wait_healthy(daemon, guests, count=round_no + 2)
    time.sleep(8)  # longer than threshold x interval: late misses show up
    assert masakari.notifications() == []
    assert 'failed (' not in daemon.log()
    assert daemon.stop() == 0


PAUSE = 40


def test_pause_and_restart_are_never_reported(lab_guests, masakari,
                                              monitor_daemon):
    paused, restarted = lab_guests(2)
    daemon = monitor_daemon()
    wait_healthy(daemon, [paused, restarted])
    paused.pause()
    paused_at = time.monotonic()
    daemon.wait_for_log(r'%s\): .*not pinged' % paused.uuid, 10)
    restarted.destroy()
    # Forgotten on libvirt's stopped event, or by a round that listed the
    # domain gone before that event was read (then dropped quietly).
    daemon.wait_for_log(r'%s\) (stopped|is no longer running on this '
                        r'host)' % restarted.uuid, 10)
    restarted.start()
    wait_healthy(daemon, [restarted], count=2)
    # Paused for longer than anything that counts time could wait:
    # the agent disconnect grace (30 s) and a crash's detection (about
    # 13 s).
    time.sleep(max(0, paused_at + PAUSE - time.monotonic()))
    paused.resume()
    wait_healthy(daemon, [paused], count=2, timeout=30)
    time.sleep(8)
    assert masakari.notifications() == []
    assert 'failed (' not in daemon.log()
    assert daemon.stop() == 0


def test_an_agent_restarted_within_the_grace_is_not_reported(
        lab_guests, masakari, monitor_daemon):
    [guest] = lab_guests(1)
    daemon = monitor_daemon(monitor__agent_disconnect_grace='30')
    wait_healthy(daemon, [guest])
    guest.control('agent-kill')
    guest.wait_agent_disconnected()
    time.sleep(12)  # several misses' worth: none may count
    guest.control('agent-start')
    guest.wait_agent_connected(30)
    daemon.wait_for_log(r'%s\): \w+ -> healthy' % guest.uuid, 30)
    time.sleep(4)
    assert masakari.notifications() == []
    assert 'failed (' not in daemon.log()
    assert daemon.stop() == 0


def test_an_agent_that_stays_away_is_reported_after_the_grace(
        lab_guests, masakari, monitor_daemon):
    [guest] = lab_guests(1)
    daemon = monitor_daemon(monitor__agent_disconnect_grace='6')
    wait_healthy(daemon, [guest])
    killed_at = time.monotonic()
    guest.control('agent-kill')
    stored = masakari.wait_notifications_for(guest.uuid, 40, poll=0.5)
    assert len(stored) == 1, daemon.tail()
    assert time.monotonic() - killed_at >= 6
    assert daemon.stop() == 0


@pytest.mark.whole_host
def test_a_libvirtd_restart_is_survived_and_a_later_crash_reported_once(
        libvirt_lab, lab_guests, masakari, monitor_daemon):
    guests = lab_guests(2)
    daemon = monitor_daemon()
    wait_healthy(daemon, guests)
    try:
        libvirtd.kill()
        daemon.wait_for_log(r'Lost the libvirt connection', 15)
        time.sleep(6)  # down for a few sweeps
    finally:
        print('libvirtd back in %.1f s' % libvirtd.start())
    daemon.wait_for_log(r'Reconnected to libvirt', 60)
    # The lab's own connection died with libvirtd too.
    conn = libvirt_lab.conn = libvirt.open('qemu:///system')
    for guest in guests:
        guest.conn = conn
        guest.dom = conn.lookupByUUIDString(guest.uuid)
    assert daemon.running
    # Every guest answers again, then one crashes.
    for guest in guests:
        daemon.wait_for_log(r'Sweep: 2 domains listed, 2 pinged, 0 missed',
                            30)
    victim = guests[0]
    victim.control('panic')
    stored = masakari.wait_notifications_for(victim.uuid, 30, poll=0.5)
    assert len(stored) == 1, daemon.tail()
    time.sleep(8)
    assert [n['payload']['instance_uuid']
            for n in masakari.notifications()] == [victim.uuid]
    assert len(daemon.wait_for_log('Lost the libvirt connection', 0)) == 1
    assert daemon.stop() == 0


ENGINE_OUTAGE = 50


def test_an_engine_outage_loses_nothing(lab_guests, masakari,
                                        monitor_daemon):
    [guest] = lab_guests(1)
    daemon = monitor_daemon(outbox__retry_max_delay='10')
    wait_healthy(daemon, [guest])
    masakari.stop()
    down_at = time.monotonic()
    guest.control('panic')
    daemon.wait_for_log(r'%s\) failed .*queued' % guest.uuid, 30)
    # Down long enough for the retry delay to reach its cap (1, 2, 4, 8,
    # then 10 s) and for a few attempts at the cap.
    time.sleep(max(0, down_at + ENGINE_OUTAGE - time.monotonic()))
    masakari.start()
    stored = masakari.wait_notifications_for(guest.uuid, 30, poll=0.5)
    assert len(stored) == 1, daemon.tail()
    time.sleep(5)
    assert len(masakari.notifications_for(guest.uuid)) == 1
    daemon.wait_for_log(r'%s\): error -> reported' % guest.uuid, 10)
    [accepted] = daemon.wait_for_log(
        r'HA engine accepted the notification for domain \S+ \(%s\) .*'
        r'\(attempt \d+' % guest.uuid, 10)
    attempt = int(re.search(r'\(attempt (\d+)', accepted).group(1))
    # Five failed attempts: the delay after the fifth is at the cap.
    assert attempt >= 6, accepted
    assert daemon.stop() == 0


def test_a_killed_daemon_delivers_its_queued_notification_after_restart(
        lab_guests, masakari, monitor_daemon, tmp_path):
    [guest] = lab_guests(1)
    work_dir = str(tmp_path / 'monitor')
    daemon = monitor_daemon(work_dir=work_dir)
    wait_healthy(daemon, [guest])
    masakari.stop()
    guest.control('panic')
    [queued] = daemon.wait_for_log(r'%s\) failed .*queued' % guest.uuid, 30)
    daemon.kill()
    masakari.start()
    assert masakari.notifications_for(guest.uuid) == []
    log_before = len(daemon.log())

    again = monitor_daemon(work_dir=work_dir)
    stored = masakari.wait_notifications_for(guest.uuid, 30, poll=0.5)
    assert len(stored) == 1, again.tail()
    time.sleep(10)  # several sweeps of the still-dead guest
    assert len(masakari.notifications_for(guest.uuid)) == 1
    after_restart = again.log()[log_before:]
    assert 'failed (' not in after_restart, 'queued a second notification'
    queued_id = queued.rsplit('notification ', 1)[1].split()[0]
    assert queued_id in after_restart
    assert again.stop() == 0


@pytest.mark.parametrize('section, option, value', [
    ('monitor', 'interval', '-1'),
    ('libvirt', 'connection_uri', 'not a uri'),
    ('cache', 'backend', 'dogpile.cache.nonexistent'),
    ('monitor', 'failure_threshold', 'three'),
])
def test_a_bad_config_file_exits_2_naming_the_option(tmp_path, section,
                                                     option, value):
    options = lab_daemon.lab_options(str(tmp_path), 'http://127.0.0.1:9/v1',
                                     'host-1')
    options[section][option] = value
    config = str(tmp_path / 'bad.conf')
    lab_daemon.write_config(config, options)
    result = subprocess.run(
        lab_daemon.console_script() + ['--config-file', config],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=lab_daemon.REPO_ROOT))
    assert result.returncode == 2
    assert '[%s] %s' % (section, option) in result.stderr
    assert 'Traceback' not in result.stderr
