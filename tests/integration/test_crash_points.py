"""The daemon killed at each step of the notification path, on the real lab.

The real console script runs with GUEST_HEALTH_MONITOR_CRASH_AT naming one
step (monitor/crash_points.py): it gets SIGKILL right after queueing a
notification, after the engine answered the POST but before the outbox
recorded it, or after the outbox recorded the delivery but before the
domain's state was looked at again. Started again without the hook, on the
same state_path, it must leave exactly one notification per guest crash in
the real masakari-api, and notify a later crash of the same guest again,
with the in-memory state store (lost at the kill) and the sqlite one
(kept).

One guest per step, shared by the whole run of one backend, to keep the
number of guest boots low. Failure threshold 2 (not 3) and no agent
disconnect grace, so each crash is seen within about 6 s.
"""

import os
import re
import signal
import time

import pytest

from monitor import crash_points


def wait_until(what, predicate, timeout, daemon):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('%s not within %.0f s; monitor log tail:\n%s'
                                 % (what, timeout, daemon.tail()))
        time.sleep(0.25)


def log_since(daemon, offset):
    return daemon.log()[offset:]


def log_size(work_dir):
    """Where the next daemon's lines start: every daemon started on one
    work_dir appends to the same log."""
    try:
        with open(os.path.join(work_dir, 'monitor.log'),
                  errors='replace') as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


def stored_for(masakari, uuid):
    return [n for n in masakari.notifications()
            if n['payload']['instance_uuid'] == uuid]


def wait_logged(daemon, offset, pattern, timeout):
    regex = re.compile(pattern)
    return wait_until('%r in the monitor log' % pattern,
                      lambda: regex.search(log_since(daemon, offset)),
                      timeout, daemon)


@pytest.mark.parametrize('backend', ['dogpile.cache.memory',
                                     'guest_health_monitor.sqlite'],
                         ids=['memory', 'sqlite'])
def test_a_daemon_killed_at_each_step_notifies_each_crash_once(
        backend, lab_guests, masakari, monitor_daemon, monkeypatch,
        tmp_path):
    guests = lab_guests(len(crash_points.ALL))
    work_dir = str(tmp_path / 'monitor')
    options = dict(work_dir=work_dir, cache__backend=backend,
                   monitor__failure_threshold='2',
                   monitor__agent_disconnect_grace='0',
                   # All guests crash at once at the end: that is the
                   # test's doing, not a stalled host.
                   monitor__mass_failure_min_domains=str(len(guests) + 1))
    dead = 0
    for step, victim in zip(crash_points.ALL, guests):
        offset = log_size(work_dir)
        monkeypatch.setenv(crash_points.ENV, step)
        daemon = monitor_daemon(**options)
        monkeypatch.delenv(crash_points.ENV)
        # The victim answered in a whole sweep: every guest not yet
        # crashed by this test answers, the crashed ones miss.
        wait_logged(daemon, offset,
                    r'Sweep: %d domains listed, %d pinged, %d missed'
                    % (len(guests), len(guests), dead), 60)

        victim.control('panic')
        status = wait_until('the kill at %s' % step,
                            lambda: daemon.proc.poll() is not None, 60,
                            daemon)
        assert daemon.proc.returncode == -signal.SIGKILL, (status,
                                                           daemon.tail())
        daemon.stop()
        dead += 1

        offset = log_size(work_dir)
        again = monitor_daemon(**options)
        stored = wait_until('a notification for %s' % victim.uuid,
                            lambda: stored_for(masakari, victim.uuid), 30,
                            again)
        assert len(stored) == 1
        if backend == 'guest_health_monitor.sqlite':
            # The record survived the kill: the delivery is seen in the
            # outbox, whatever step the kill interrupted.
            wait_logged(again, offset,
                        r'%s\): error -> reported' % victim.uuid, 20)
        # A sweep of the dead guest after the restart, then a clean stop.
        wait_logged(again, offset, r'Sweep: ', 30)
        assert again.stop() == 0

    # Still exactly one each, after the other steps' daemons ran.
    for victim in guests:
        assert len(stored_for(masakari, victim.uuid)) == 1, victim

    # Recovered (destroyed and started again, as the engine does), healthy,
    # then crashed again: each is a new incident, notified again.
    offset = log_size(work_dir)
    daemon = monitor_daemon(**options)
    for victim in guests:
        victim.destroy()
        victim.start()
    for victim in guests:
        wait_logged(daemon, offset, r'%s\): discovery -> healthy'
                    % victim.uuid, 60)
    for victim in guests:
        victim.control('panic')
    for victim in guests:
        wait_until('a second notification for %s' % victim.uuid,
                   lambda: stored_for(masakari, victim.uuid), 30, daemon)
    time.sleep(6)  # a few more sweeps of the dead guests
    assert [len(stored_for(masakari, g.uuid)) for g in guests] == [1, 1, 1]
    assert daemon.stop() == 0
