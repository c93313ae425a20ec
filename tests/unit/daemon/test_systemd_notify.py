"""sd_notify messages and the watchdog keeper, against a real datagram
socket standing in for systemd's NOTIFY_SOCKET."""

import os
import socket
import time
import uuid

import pytest

from monitor.daemon import systemd_notify


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, address):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def messages(self):
        received = []
        while True:
            try:
                received.append(self.sock.recv(4096).decode('utf-8'))
            except BlockingIOError:
                return received

    def close(self):
        self.sock.close()


@pytest.fixture
def systemd(tmp_path):
    fake = FakeSystemd(str(tmp_path / 'notify'))
    yield fake
    fake.close()


@pytest.fixture
def notifier(systemd):
    notifier = systemd_notify.SystemdNotifier.from_environ(
        {'NOTIFY_SOCKET': systemd.address})
    yield notifier
    notifier.close()


class SteppedEvent:
    """A stop event whose wait() returns False ``waits`` times, then True."""

    def __init__(self, waits):
        self.waits = waits
        self.timeouts = []

    def wait(self, timeout):
        self.timeouts.append(timeout)
        if self.waits == 0:
            return True
        self.waits -= 1
        return False


def test_ready_reaches_systemd(systemd, notifier):
    assert notifier.ready() is True

    assert systemd.messages() == ['READY=1']


def test_ready_can_carry_a_status_line(systemd, notifier):
    notifier.ready('Monitoring 3 domains\non host c1')

    assert systemd.messages() == [
        'READY=1\nSTATUS=Monitoring 3 domains on host c1']


def test_status_watchdog_and_stopping_are_single_fields(systemd, notifier):
    notifier.status('Waiting for libvirt')
    notifier.watchdog()
    notifier.stopping()

    assert systemd.messages() == [
        'STATUS=Waiting for libvirt', 'WATCHDOG=1', 'STOPPING=1']


def test_reloading_carries_the_monotonic_time(systemd, notifier):
    notifier.reloading(clock_usec=12345)

    assert systemd.messages() == ['RELOADING=1\nMONOTONIC_USEC=12345']


def test_abstract_namespace_socket_is_reached():
    name = 'ghm-test-%s' % uuid.uuid4().hex
    receiver = FakeSystemd('\0' + name)
    notifier = systemd_notify.SystemdNotifier('@' + name)
    try:
        notifier.ready()
        assert receiver.messages() == ['READY=1']
    finally:
        notifier.close()
        receiver.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails():
    notifier = systemd_notify.SystemdNotifier.from_environ({})

    assert notifier.enabled is False
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_a_vanished_systemd_socket_is_reported_not_raised(tmp_path):
    receiver = FakeSystemd(str(tmp_path / 'notify'))
    notifier = systemd_notify.SystemdNotifier(receiver.address)
    receiver.close()
    os.unlink(receiver.address)

    assert notifier.ready() is False
    notifier.close()


def test_a_full_systemd_queue_does_not_block(systemd, notifier):
    # Nobody reads: the receive queue fills and sendto would block.
    results = [notifier.watchdog() for _ in range(10000)]

    assert results[0] is True
    assert results[-1] is False


@pytest.mark.parametrize('environ, interval', [
    ({'WATCHDOG_USEC': '60000000'}, 30.0),
    ({'WATCHDOG_USEC': '60000000', 'WATCHDOG_PID': '42'}, 30.0),
    ({'WATCHDOG_USEC': '60000000', 'WATCHDOG_PID': '43'}, None),
    ({'WATCHDOG_USEC': '0'}, None),
    ({'WATCHDOG_USEC': 'soon'}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_what_systemd_set_for_us(
        environ, interval):
    assert systemd_notify.watchdog_interval(environ, pid=42) == interval


def test_no_keeper_without_a_watchdog(notifier):
    assert systemd_notify.WatchdogKeeper.from_environ(
        notifier, lambda: True, environ={}) is None


def test_no_keeper_without_a_notify_socket():
    notifier = systemd_notify.SystemdNotifier(None)

    assert systemd_notify.WatchdogKeeper.from_environ(
        notifier, lambda: True,
        environ={'WATCHDOG_USEC': '60000000'}) is None


def test_watchdog_is_fed_while_the_loop_progresses(systemd, notifier):
    keeper = systemd_notify.WatchdogKeeper.from_environ(
        notifier, lambda: True, environ={'WATCHDOG_USEC': '60000000'})
    stop = SteppedEvent(waits=2)

    keeper.run(stop)

    assert systemd.messages() == ['WATCHDOG=1'] * 3
    assert stop.timeouts == [30.0] * 3


def test_watchdog_is_not_fed_while_the_loop_is_stuck(systemd, notifier):
    keeper = systemd_notify.WatchdogKeeper(notifier, 30.0, lambda: False)

    keeper.run(SteppedEvent(waits=3))

    assert systemd.messages() == []


def test_watchdog_feeding_follows_liveness(systemd, notifier):
    alive = [True, False, False, True]
    keeper = systemd_notify.WatchdogKeeper(notifier, 30.0,
                                           lambda: alive.pop(0))

    fed = [keeper.beat() for _ in range(4)]

    assert fed == [True, False, False, True]
    assert systemd.messages() == ['WATCHDOG=1', 'WATCHDOG=1']


def test_a_stuck_loop_is_logged_once_and_its_recovery_too(
        notifier, caplog):
    alive = [False, False, True]
    keeper = systemd_notify.WatchdogKeeper(notifier, 30.0,
                                           lambda: alive.pop(0))

    with caplog.at_level('WARNING', logger='monitor.daemon.systemd_notify'):
        for _ in range(3):
            keeper.beat()

    assert [r.levelname for r in caplog.records] == ['ERROR', 'WARNING']


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_loop_progress_is_alive_until_stall_after_without_a_mark():
    clock = FakeClock()
    progress = systemd_notify.LoopProgress(stall_after=60.0, clock=clock)

    clock.now += 60.0
    assert progress.alive() is True
    clock.now += 0.5
    assert progress.alive() is False

    progress.mark()
    assert progress.alive() is True


def test_keeper_with_loop_progress_stops_feeding_a_stalled_loop(
        systemd, notifier):
    clock = FakeClock()
    progress = systemd_notify.LoopProgress(stall_after=60.0, clock=clock)
    keeper = systemd_notify.WatchdogKeeper(notifier, 30.0, progress.alive)

    keeper.beat()
    clock.now += 61.0
    keeper.beat()
    progress.mark()
    keeper.beat()

    assert systemd.messages() == ['WATCHDOG=1', 'WATCHDOG=1']


def test_stall_threshold_leaves_room_for_hung_guests_and_reconnects():
    # Defaults: interval 10, ping timeout 2, reconnect backoff up to 30 s.
    assert systemd_notify.sweep_stall_after(10.0, 2, 30.0) == 98.0
    # A longer interval or timeout widens it; the unit's 60 s WatchdogSec
    # does not need to follow.
    assert systemd_notify.sweep_stall_after(60.0, 10, 30.0) == 330.0


# -- the daemon ---------------------------------------------------------------


def receive_until(receiver, wanted, guard=30.0):
    """Messages received until one equals ``wanted``; fail after ``guard``
    seconds (a guard against hanging, not a timing assertion)."""
    received = []
    receiver.sock.settimeout(0.5)
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        try:
            message = receiver.sock.recv(4096).decode('utf-8')
        except socket.timeout:
            continue
        received.append(message)
        if message.split('\n')[0] == wanted:
            return received
    pytest.fail('no %s from the daemon; received %r' % (wanted, received))


def test_the_daemon_is_ready_and_fed_while_libvirt_is_down_then_stopping(
        tmp_path, monkeypatch):
    from tests.unit.cmd import test_daemon as test_cmd

    name = 'ghm-test-%s' % uuid.uuid4().hex
    receiver = FakeSystemd('\0' + name)
    monkeypatch.setenv('NOTIFY_SOCKET', '@' + name)
    # Beats every 0.5 s.
    monkeypatch.setenv('WATCHDOG_USEC', '1000000')
    log = tmp_path / 'stderr.log'
    try:
        with test_cmd.daemon(test_cmd.write_conf(tmp_path), log) as proc:
            # Ready although libvirt is unreachable: the daemon runs as
            # intended and keeps retrying.
            before_ready = receive_until(receiver, 'READY=1')
            # The loop goes round (reconnect attempts), so it is fed.
            receive_until(receiver, 'WATCHDOG=1')
            receive_until(receiver, 'WATCHDOG=1')
            assert test_cmd.terminate(proc) == 0, log.read_text()
            stopping = receive_until(receiver, 'STOPPING=1')
    finally:
        receiver.close()

    assert before_ready == [before_ready[-1]]
    assert stopping[-1] == 'STOPPING=1'
    assert 'Cannot connect to libvirt' in log.read_text()
