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

The two stores are tested side by side: one daemon of each watches the
same guests, each with a masakari-api of its own, so one guest crash is
seen, and its step interrupted, by both. One guest per step, shared by
both daemons, to keep the number of guest boots low. Failure threshold 2
(not 3) and no agent disconnect grace, so each crash is seen within about
6 s.
"""

import os
import re
import signal
import socket
import time

import pytest

from lab import masakari as lab_masakari
from monitor import crash_points

BACKENDS = (('memory', 'dogpile.cache.memory'),
            ('sqlite', 'guest_health_monitor.sqlite'))


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


def wait_logged(daemon, offset, pattern, timeout):
    regex = re.compile(pattern)
    return wait_until('%r in the monitor log' % pattern,
                      lambda: regex.search(log_since(daemon, offset)),
                      timeout, daemon)


def answered_times(log, uuid):
    """generated_time of every notification of ``uuid`` the engine
    answered (accepted or already had), as the daemons logged them."""
    return re.findall(r'HA engine (?:accepted|already had) the notification '
                      r'for domain \S+ \(%s\) generated at (\S+)' % uuid, log)


def same_second(stored_time, logged_time):
    # The engine stores naive UTC with microseconds; the daemon sends
    # whole seconds with a Z.
    return stored_time[:19] == logged_time.rstrip('Z')[:19]


class Run:
    """The daemons of one state store: their options, work_dir and engine."""

    def __init__(self, name, backend, engine, work_dir, guest_count):
        self.name = name
        self.backend = backend
        self.engine = engine
        self.work_dir = work_dir
        self.options = dict(
            work_dir=work_dir, cache__backend=backend,
            notifier__endpoint=engine.endpoint,
            monitor__failure_threshold='2',
            monitor__agent_disconnect_grace='0',
            # All guests crash at once at the end: that is the test's
            # doing, not a stalled host.
            monitor__mass_failure_min_domains=str(guest_count + 1))
        self.daemon = None
        self.offset = 0

    def start(self, monitor_daemon):
        self.offset = log_size(self.work_dir)
        self.daemon = monitor_daemon(**self.options)
        return self.daemon

    def log(self):
        with open(os.path.join(self.work_dir, 'monitor.log'),
                  errors='replace') as f:
            return f.read()

    def __repr__(self):
        return '<%s store>' % self.name


@pytest.fixture
def second_engine(tmp_path_factory):
    """Another real masakari-api knowing this machine, for the second
    daemon: each daemon's notifications are counted apart."""
    server = lab_masakari.MasakariServer(
        str(tmp_path_factory.mktemp('masakari-second')))
    try:
        server.start()
        segment = server.create_segment('lab-segment')
        server.add_host(segment, socket.gethostname())
        yield server
    finally:
        server.close()


def test_a_daemon_killed_at_each_step_notifies_each_crash_once(
        lab_guests, masakari, second_engine, monitor_daemon, monkeypatch,
        tmp_path):
    guests = lab_guests(len(crash_points.ALL))
    runs = [Run(name, backend, engine, str(tmp_path / name), len(guests))
            for (name, backend), engine in zip(BACKENDS,
                                               (masakari, second_engine))]
    for step, victim in zip(crash_points.ALL, guests):
        monkeypatch.setenv(crash_points.ENV, step)
        for run in runs:
            run.start(monitor_daemon)
        monkeypatch.delenv(crash_points.ENV)
        # The victim answered in a whole sweep: the first one pings every
        # guest, and the live ones answer within it. (The crashed ones'
        # misses may come in a later round: a round waits for a ping at
        # most ping_timeout + 6 s, and libvirt holds a ping to a guest
        # whose agent died longer.)
        for run in runs:
            wait_logged(run.daemon, run.offset,
                        r'Sweep: \d+ domains listed, %d pinged'
                        % len(guests), 60)

        victim.control('panic')
        for run in runs:
            daemon = run.daemon
            status = wait_until('the kill at %s (%r)' % (step, run),
                                lambda: daemon.proc.poll() is not None, 60,
                                daemon)
            assert daemon.proc.returncode == -signal.SIGKILL, (
                run, status, daemon.tail())
            daemon.stop()

        for run in runs:
            run.start(monitor_daemon)
        for run in runs:
            again = run.daemon
            stored = wait_until(
                'a notification for %s (%r)' % (victim.uuid, run),
                lambda: run.engine.notifications_for(victim.uuid), 30, again)
            assert len(stored) == 1, run
            if run.backend == 'guest_health_monitor.sqlite':
                # The record survived the kill: the delivery is seen in
                # the outbox, whatever step the kill interrupted.
                wait_logged(again, run.offset,
                            r'%s\): error -> reported' % victim.uuid, 20)
            # A sweep of the dead guest after the restart, then a clean
            # stop.
            wait_logged(again, run.offset, r'Sweep: ', 30)
            assert again.stop() == 0, run

    for run in runs:
        # Still exactly one each, after the other steps' daemons ran.
        for victim in guests:
            [stored] = run.engine.notifications_for(victim.uuid)
            # Whatever reached the engine was that one notification: a
            # second one queued after a restart would carry a later
            # generated_time (the engine's 180 s duplicate window would
            # hide it from the count above).
            for logged in answered_times(run.log(), victim.uuid):
                assert same_second(stored['generated_time'], logged), (
                    run, victim, stored['generated_time'], logged)
        # The engine has recovered them: forget their notifications so
        # that its duplicate window does not hide the next ones.
        run.engine.forget_notifications()

    # Recovered (destroyed and started again, as the engine does), healthy,
    # then crashed again: each is a new incident, notified again.
    for run in runs:
        run.start(monitor_daemon)
    for victim in guests:
        victim.destroy()
        victim.start()
    for run in runs:
        for victim in guests:
            wait_logged(run.daemon, run.offset, r'%s\): discovery -> healthy'
                        % victim.uuid, 60)
    for victim in guests:
        victim.control('panic')
    for run in runs:
        for victim in guests:
            wait_until('a second notification for %s (%r)'
                       % (victim.uuid, run),
                       lambda: run.engine.notifications_for(victim.uuid), 30,
                       run.daemon)
    time.sleep(6)  # a few more sweeps of the dead guests
    for run in runs:
        assert [len(run.engine.notifications_for(g.uuid)) for g in guests] == \
            [1, 1, 1], run
        for victim in guests:
            [stored] = run.engine.notifications_for(victim.uuid)
            answered = answered_times(log_since(run.daemon, run.offset),
                                      victim.uuid)
            assert answered, (run, victim)  # delivered by this daemon
            for logged in answered:
                assert same_second(stored['generated_time'], logged), (
                    run, victim, stored['generated_time'], logged)
        assert run.daemon.stop() == 0, run
