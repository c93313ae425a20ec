"""The host object: opens the connection, loses it, rebuilds it with
backoff, subscribes the events and empties the per-domain cache on every
new connection."""

import gc
import logging

import libvirt
import pytest

from monitor.virt import host as libvirt_host
from tests.unit.virt.libvirt_node import AGENT
from tests.unit.virt.libvirt_node import PAUSED
from tests.unit.virt.libvirt_node import PLAIN
from tests.unit.virt.libvirt_node import SHUT_OFF
from tests.unit.virt.libvirt_node import WITH_AGENT

# -- connection ---------------------------------------------------------------

def test_connect_opens_a_live_connection_even_without_keepalive(host):
    # The test driver runs in-process and refuses keepalive as not
    # supported; that must not make it unreachable.
    assert host.keepalive_interval > 0
    conn = host.connect(on_close=lambda reason, conn: None)

    assert host.connection is conn
    assert host.is_alive()

    host.close()
    assert host.connection is None
    assert not host.is_alive()
    host.close()  # closing twice is harmless


class _LibvirtGarbageBeforeKeepalive:
    """The test driver's connection, with a libvirt domain left in a
    reference cycle just before the first keepalive call: the next
    collection frees it while the binding builds that call's error."""

    def __init__(self, conn):
        self._conn = conn
        self.keepalive_calls = 0

    def setKeepAlive(self, interval, count):
        self.keepalive_calls += 1
        if self.keepalive_calls == 1:
            cycle = {'domain': self._conn.listAllDomains()[0]}
            cycle['itself'] = cycle
            del cycle
        return self._conn.setKeepAlive(interval, count)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_keepalive_error_whose_code_a_collection_wiped_is_asked_again(
        host, monkeypatch):
    # Freeing a libvirt object resets libvirt's thread-local error; when a
    # collection does it between the failed call and the binding reading
    # that error, the error has no code, and the test driver's "not
    # supported" turned into a refused connection.
    open_real = libvirt.open
    opened = []

    def open_with_garbage(uri):
        opened.append(_LibvirtGarbageBeforeKeepalive(open_real(uri)))
        return opened[-1]

    monkeypatch.setattr(libvirt, 'open', open_with_garbage)
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1, 1, 1)
    try:
        host.connect()
    finally:
        gc.set_threshold(*thresholds)

    assert host.is_alive()
    assert opened[0].keepalive_calls == 2


def test_an_unreachable_libvirt_is_reported_without_noise(capfd):
    host = libvirt_host.LibvirtHost(
        'qemu+unix:///system?socket=/nonexistent/libvirt-sock', AGENT)

    with pytest.raises(libvirt_host.LibvirtUnavailable) as err:
        host.connect()

    assert '/nonexistent/libvirt-sock' in str(err.value)
    assert host.connection is None
    assert not host.is_alive()
    # libvirt's default handler would print the error on stderr as well.
    assert capfd.readouterr().err == ''


def test_a_lost_connection_is_not_alive(connected):
    connected.connection.close()
    assert not connected.is_alive()


def test_a_domain_libvirt_still_has_is_defined_running_or_not(connected):
    assert connected.is_defined(WITH_AGENT) is True
    assert connected.is_defined(SHUT_OFF) is True


def test_a_domain_libvirt_does_not_have_is_not_defined(connected):
    assert connected.is_defined('aaaaaaaa-0000-4000-8000-00000000ffff') \
        is False


def test_without_a_connection_whether_a_domain_is_defined_is_not_known(
        host):
    assert host.is_defined(WITH_AGENT) is None


def test_another_libvirt_error_says_nothing_of_the_definition(
        connected, monkeypatch):
    def refuse(uuid):
        raise libvirt.libvirtError('internal error: rpc timed out')

    monkeypatch.setattr(connected.connection, 'lookupByUUIDString', refuse)

    assert connected.is_defined(WITH_AGENT) is None


# -- connection lifecycle: connect, lose, reconnect ------------------------------

def direct(func, *args):
    return func(*args)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Reconnects:
    """Counts libvirt_reconnected() as the daemon's metrics do."""

    def __init__(self):
        self.count = 0

    def libvirt_reconnected(self):
        self.count += 1

    def domain_error(self, stage):
        pass


class RecordingBridge:
    """An event bridge that records what it was subscribed on."""

    def __init__(self):
        self.registered = []
        self.deregistered = []

    def register(self, conn):
        self.registered.append(conn)

    def deregister(self, conn):
        self.deregistered.append(conn)

    def on_connection_closed(self, reason, conn=None):
        pass


def lifecycle_host(uri, **kwargs):
    options = dict(clock=FakeClock(), execute=direct,
                   reconnect_initial_delay=1.0, reconnect_max_delay=8.0)
    options.update(kwargs)
    return libvirt_host.LibvirtHost(uri, AGENT, **options)


def failing_connects(monkeypatch, host, failures):
    """Make the next ``failures`` connects of ``host`` fail."""
    real = host.connect
    left = [failures]

    def connect(on_close=None):
        if left[0]:
            left[0] -= 1
            raise libvirt_host.LibvirtUnavailable('socket missing')
        return real(on_close)

    monkeypatch.setattr(host, 'connect', connect)


def test_libvirt_down_at_start_is_retried_with_capped_backoff(
        uri, monkeypatch, caplog):
    host = lifecycle_host(uri)
    failing_connects(monkeypatch, host, 5)
    caplog.set_level(logging.INFO)

    delays = [host.ensure_connected() for _ in range(6)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 0]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, 'one log line per outage, not per attempt'
    assert host.connected and host.is_alive()
    host.close()


def test_a_lost_connection_is_rebuilt_on_the_next_try(uri, caplog):
    clock = FakeClock()
    host = lifecycle_host(uri, clock=clock)
    caplog.set_level(logging.INFO)
    host.ensure_connected()
    first = host.connection

    host.connection_lost('EOF')
    assert not host.connected and host.connection is None
    with pytest.raises(libvirt.libvirtError):
        first.isAlive()  # closed
    clock.now += 2.5
    assert host.ensure_connected() == 0

    assert host.connected and host.connection is not first
    assert 'Lost the libvirt connection to %s (EOF); reconnecting' % uri \
        in caplog.text
    assert 'Reconnected to libvirt at %s after 2.5 s' % uri in caplog.text
    host.close()


def test_only_connections_after_the_first_are_reconnects(uri, monkeypatch):
    metrics = Reconnects()
    host = lifecycle_host(uri, metrics=metrics)
    failing_connects(monkeypatch, host, 1)

    assert host.ensure_connected() > 0
    assert host.ensure_connected() == 0
    assert metrics.count == 0

    for _ in range(2):
        host.connection_lost('test')
        host.ensure_connected()
    assert metrics.count == 2
    host.close()


def test_every_new_connection_subscribes_the_events(uri):
    events = RecordingBridge()
    host = lifecycle_host(uri, events=events)

    host.ensure_connected()
    first = host.connection
    host.connection_lost('EOF')
    host.ensure_connected()

    assert events.registered == [first, host.connection]
    assert events.deregistered == [first]
    host.close()
    assert events.deregistered[-1] is not first


def test_every_reconnect_reads_the_domains_xml_again(uri, xml_reads):
    # What changed while libvirt was out of sight, <monitor/> settings
    # included, is read again.
    host = lifecycle_host(uri)
    host.ensure_connected()
    host.list_domains()
    host.ensure_connected()  # still connected: nothing happens
    host.list_domains()
    assert len(xml_reads) == 3

    host.connection_lost('EOF')
    host.ensure_connected()
    host.list_domains()

    assert sorted(xml_reads) == sorted([PLAIN, WITH_AGENT, PAUSED] * 2)
    host.close()


def test_the_close_of_a_replaced_connection_is_ignored(uri):
    host = lifecycle_host(uri)
    host.ensure_connected()
    old = host.connection
    host.connection_lost('EOF')
    host.ensure_connected()

    host.connection_closed(0, old)
    assert host.connected

    host.connection_closed(0, host.connection)
    assert not host.connected


def test_a_failure_after_connecting_leaves_it_to_the_next_try(uri):
    calls = []

    def flaky_on_connected():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('cache backend down')

    host = lifecycle_host(uri, on_connected=flaky_on_connected)

    with pytest.raises(RuntimeError):
        host.ensure_connected()
    assert not host.connected and host.connection is None

    assert host.ensure_connected() == 0
    assert host.connected and len(calls) == 2
    host.close()
