"""The metrics endpoint over real HTTP on 127.0.0.1: what /metrics and
/healthz answer, where it listens, that it is off unless configured, and
the running daemon serving it. The server runs in a green thread of this
process and the requests go through eventlet's green HTTP client, so both
share one hub; no test here reaches a libvirt daemon."""

import logging
import socket

import eventlet
import pytest
from dogpile.cache import region as dogpile_region
from eventlet.green import threading as green_threading
from eventlet.green.http import client as http_client

from monitor.conf import loading
from monitor.daemon import metrics
from monitor.daemon import metrics_server
from monitor.daemon import scheduler as scheduler_mod
from monitor.daemon import service as service_mod
from monitor.daemon import tracker as domain_tracker
from monitor.health import mass_failure
from monitor.health import policy as health_policy
from monitor.health.ping_outcome import Outcome
from monitor.notify import delivery
from monitor.notify import outbox as outbox_mod
from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind
from monitor.store import domain_store
from tests.unit import exposition
from tests.unit.cmd import test_daemon as test_cmd
from tests.unit.daemon.test_metrics import FakeHost
from tests.unit.daemon.test_metrics import domain

P = metrics.PREFIX


def get(port, path, method='GET', address='127.0.0.1'):
    """(status, content type, body) of one request."""
    conn = http_client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return (response.status, response.getheader('Content-Type'),
                response.read().decode('utf-8'))
    finally:
        conn.close()


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve():
    """serve(app, **kwargs) -> a started MetricsServer, stopped after."""
    servers = []

    def start(app, **kwargs):
        server = metrics_server.MetricsServer(app, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Health:
    def __init__(self):
        self.ok = False

    def __call__(self):
        return (True, 'ok') if self.ok else (False, 'libvirt not connected')


# -- what it answers ----------------------------------------------------------------


def test_metrics_are_served_in_the_prometheus_text_format(serve):
    m = metrics.MonitorMetrics()
    m.sweep_finished(0.02, [Outcome.OK])
    server = serve(metrics_server.make_app(m, Health()))

    status, content_type, body = get(server.port, '/metrics')

    assert status == 200
    assert content_type == 'text/plain; version=0.0.4; charset=utf-8'
    # The process_* samples (CPU time, open files) move between scrapes.
    assert ([line for line in body.splitlines()
             if not line.startswith('process_')]
            == [line for line in m.render().splitlines()
                if not line.startswith('process_')])
    assert exposition.parse(body).value(P + 'sweeps_total') == 1


def test_healthz_says_why_the_monitor_is_not_healthy(serve):
    health = Health()
    server = serve(metrics_server.make_app(metrics.MonitorMetrics(),
                                           health))

    down = get(server.port, '/healthz')
    health.ok = True
    up = get(server.port, '/healthz')

    assert down[0] == 503 and down[2] == 'libvirt not connected\n'
    assert up[0] == 200 and up[2] == 'ok\n'


def test_healthz_fails_loudly_when_health_cannot_be_told(serve, caplog):
    def broken():
        raise AttributeError('no last_progress_at')

    server = serve(metrics_server.make_app(metrics.MonitorMetrics(), broken))

    status, _, body = get(server.port, '/healthz')

    assert status == 503 and 'see the daemon log' in body
    assert any('last_progress_at' in r.exc_text for r in caplog.records
               if r.exc_text)


# -- liveness: a monitor that stopped completing rounds is not healthy -----------

INTERVAL, PING_TIMEOUT = 10.0, 2
BOUND = metrics_server.progress_bound(INTERVAL, PING_TIMEOUT)


def live(connected=True, last_progress_at=None, now=1000.0, started_at=990.0):
    return metrics_server.liveness(connected, last_progress_at, now,
                                   INTERVAL, PING_TIMEOUT, started_at)


def test_the_progress_bound_leaves_room_for_an_overrun_round():
    assert BOUND == 3 * 10 + 2 * (2 + 5) + 30 == 74
    # Longer than a round with a hung agent (interval, ping timeout and
    # libvirt's 5 s guest-sync floor) followed by a whole interval.
    assert BOUND > 2 * INTERVAL + PING_TIMEOUT + 5


def test_a_monitor_without_libvirt_is_not_live():
    assert live(connected=False, last_progress_at=999.0) == (
        False, 'libvirt not connected')


def test_a_monitor_that_completed_a_round_recently_is_live():
    assert live(last_progress_at=1000.0 - BOUND) == (True, 'ok')


def test_a_monitor_whose_last_round_is_older_than_the_bound_is_not_live():
    ok, reason = live(last_progress_at=1000.0 - BOUND - 1)
    assert not ok
    assert reason == 'no round of pings completed for 75 s (bound 74 s)'


def test_the_first_round_gets_the_bound_from_the_start():
    assert live(last_progress_at=None, started_at=1000.0 - BOUND)[0]
    assert not live(last_progress_at=None, started_at=1000.0 - BOUND - 1)[0]


class FakeScheduler:
    interval = INTERVAL
    ping_timeout = PING_TIMEOUT
    connected = True
    last_progress_at = None


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self):
        return self.now


def test_the_scheduler_health_reads_the_scheduler_on_each_call():
    scheduler, clock = FakeScheduler(), Clock()
    health = metrics_server.scheduler_health(scheduler, clock=clock)

    clock.now += BOUND
    assert health() == (True, 'ok')
    clock.now += 1
    assert health()[0] is False
    scheduler.last_progress_at = clock.now
    assert health() == (True, 'ok')
    scheduler.connected = False
    assert health() == (False, 'libvirt not connected')


class FakeRecovery:
    late = None

    def overdue_reason(self):
        return self.late


def test_a_recovery_holding_its_slot_past_its_bound_fails_the_health():
    scheduler, recovery = FakeScheduler(), FakeRecovery()
    health = metrics_server.scheduler_health(scheduler, clock=Clock(),
                                             recovery=recovery)
    assert health() == (True, 'ok')

    recovery.late = ('the recovery of domain vm-1 (u-1) has held its slot '
                     'for 200 s, past its bound of 180 s')

    assert health() == (False, recovery.late)
    # The sweep's own reason comes first.
    scheduler.connected = False
    assert health() == (False, 'libvirt not connected')


# -- clients that connect and say nothing ------------------------------------------


def idle_clients(port, count):
    socks = []
    for _ in range(count):
        sock = eventlet.connect(('127.0.0.1', port))
        socks.append(sock)
    eventlet.sleep(0.1)  # let the server accept them all
    return socks


def test_healthz_answers_with_fifty_idle_clients_connected(serve):
    health = Health()
    health.ok = True
    server = serve(metrics_server.make_app(metrics.MonitorMetrics(), health))
    socks = idle_clients(server.port, 50)
    try:
        assert get(server.port, '/healthz')[:1] == (200,)
    finally:
        for sock in socks:
            sock.close()


def test_a_full_server_sheds_the_client_idle_longest(serve):
    health = Health()
    health.ok = True
    server = serve(metrics_server.make_app(metrics.MonitorMetrics(), health),
                   max_connections=4)
    socks = idle_clients(server.port, 4)
    try:
        status = get(server.port, '/healthz')[0]
        # The first idle client was shut down to make room.
        socks[0].settimeout(5)
        shed = socks[0].recv(1)
        socks[-1].settimeout(0.2)
        with pytest.raises(socket.timeout):
            socks[-1].recv(1)
    finally:
        for sock in socks:
            sock.close()

    assert status == 200
    assert shed == b''


def test_an_idle_client_is_let_go_after_the_read_timeout(serve):
    server = serve(metrics_server.make_app(metrics.MonitorMetrics(),
                                           Health()), read_timeout=0.2)
    [sock] = idle_clients(server.port, 1)
    try:
        sock.settimeout(5)
        assert sock.recv(1) == b''
    finally:
        sock.close()


@pytest.mark.parametrize('path', ['/', '/metrics/', '/metric',
                                  '/favicon.ico', '/healthz/metrics'])
def test_other_paths_are_not_found(serve, path):
    server = serve(metrics_server.make_app(metrics.MonitorMetrics(),
                                           Health()))

    assert get(server.port, path)[0] == 404


def test_only_get_and_head_are_allowed(serve):
    server = serve(metrics_server.make_app(metrics.MonitorMetrics(),
                                           Health()))

    assert get(server.port, '/metrics', method='POST')[0] == 405
    assert get(server.port, '/metrics', method='DELETE')[0] == 405
    status, _, body = get(server.port, '/metrics', method='HEAD')
    assert (status, body) == (200, '')


class Broken:
    def render(self):
        raise RuntimeError('sqlite said: database disk image is malformed')


def test_a_scrape_that_cannot_render_fails_whole_and_is_logged(serve,
                                                               caplog):
    server = serve(metrics_server.make_app(Broken(), Health()))

    status, _, body = get(server.port, '/metrics')

    assert status == 500
    # The client learns that it failed, not why: the why is in the log.
    assert 'malformed' not in body and 'Traceback' not in body
    assert any(r.levelno == logging.ERROR and 'malformed' in r.exc_text
               for r in caplog.records if r.exc_text)


def test_scrapes_stay_out_of_the_operator_log(serve, caplog):
    caplog.set_level(logging.DEBUG)
    server = serve(metrics_server.make_app(metrics.MonitorMetrics(),
                                           Health()))

    for _ in range(3):
        get(server.port, '/metrics')
    get(server.port, '/nothing-here')

    loud = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.INFO]
    assert loud == ['Serving metrics at http://127.0.0.1:%d/metrics'
                    % server.port]
    access = [r.getMessage() for r in caplog.records
              if r.levelno == logging.DEBUG and 'GET /metrics' in
              r.getMessage()]
    assert len(access) == 3


# -- where it listens -------------------------------------------------------------


def test_it_listens_on_localhost_by_default():
    server = metrics_server.MetricsServer(lambda e, s: [])
    try:
        port = server.listen()
        assert server.address == '127.0.0.1'
        assert server._sock.getsockname() == ('127.0.0.1', port)
    finally:
        server.stop()


def test_port_zero_binds_an_ephemeral_port_and_tells_it():
    server = metrics_server.MetricsServer(lambda e, s: [], port=0)
    assert server.port is None
    try:
        port = server.listen()
        assert port > 0 and server.port == port
    finally:
        server.stop()


def test_a_port_in_use_is_a_clear_error(serve):
    first = serve(metrics_server.make_app(metrics.MonitorMetrics(),
                                          Health()))
    second = metrics_server.MetricsServer(lambda e, s: [],
                                          port=first.port)

    with pytest.raises(metrics_server.MetricsServerError) as error:
        second.listen()

    assert isinstance(error.value, OSError)
    assert str(error.value) == ('cannot serve metrics on 127.0.0.1:%d: '
                                'Address already in use' % first.port)


def test_stop_releases_the_port(serve):
    server = serve(metrics_server.make_app(metrics.MonitorMetrics(),
                                           Health()))
    port = server.port
    assert get(port, '/metrics')[0] == 200

    server.stop()
    eventlet.sleep(0)

    with pytest.raises(ConnectionRefusedError):
        get(port, '/metrics')
    again = metrics_server.MetricsServer(lambda e, s: [], port=port)
    assert again.listen() == port
    again.stop()


def test_an_ipv6_address_is_served(serve):
    try:
        server = serve(metrics_server.make_app(metrics.MonitorMetrics(),
                                               Health()), address='::1')
    except metrics_server.MetricsServerError as exc:
        pytest.skip('no IPv6 loopback here: %s' % exc)

    assert get(server.port, '/metrics', address='::1')[0] == 200


def conf_with(tmp_path, **metrics_options):
    lines = ['[DEFAULT]', 'host = compute-1',
             'state_path = %s' % (tmp_path / 'state'),
             '[libvirt]', 'connection_uri = test:///default',
             '[notifier]', 'endpoint = http://127.0.0.1:9/v1',
             'auth_type = none', '[metrics]']
    lines += ['%s = %s' % item for item in metrics_options.items()]
    path = tmp_path / 'monitor.conf'
    path.write_text('\n'.join(lines) + '\n')
    return loading.load(['--config-file', str(path)],
                       default_config_files=[])


def test_port_zero_in_the_configuration_serves_nothing(tmp_path):
    conf = conf_with(tmp_path)
    assert conf.metrics.listen_port == 0

    assert metrics_server.MetricsServer.from_conf(conf, None) is None
    service = service_mod.MonitorService(conf)
    try:
        assert service.metrics_server is None
    finally:
        service.close()


def test_a_configured_port_listens_on_localhost_unless_told(tmp_path):
    port = free_port()
    conf = conf_with(tmp_path, listen_port=port)

    server = metrics_server.MetricsServer.from_conf(conf, None)

    assert (server.address, server.requested_port) == ('127.0.0.1', port)


# -- a scrape of the daemon's parts, driven with fakes ------------------------------


class Engine:
    def send(self, notification):
        return DeliveryOutcome(OutcomeKind.ACCEPTED, 202, '', 'engine-1')


def test_a_scrape_shows_what_the_sweeps_and_deliveries_did(tmp_path, serve):
    m = metrics.MonitorMetrics()
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    store = domain_store.DomainStore(region, namespace='compute-1')
    box = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
    breaker = mass_failure.MassFailureBreaker(3, 0.5)
    tracker = domain_tracker.DomainTracker(
        store, health_policy.HealthPolicy(3, 0, 0), breaker, box,
        'compute-1', metrics=m)
    worker = delivery.DeliveryWorker(box, Engine(), metrics=m)
    host = FakeHost([domain(1), domain(2), domain(3)])
    scheduler = scheduler_mod.Scheduler(
        host, tracker, interval=1.0, ping_timeout=1, max_concurrent_pings=4,
        confirm_interval=0.0, execute=lambda f, *a: f(*a), metrics=m)
    m.watch(store=store, outbox=box, scheduler=scheduler, breaker=breaker)
    server = serve(metrics_server.make_app(
        m, metrics_server.scheduler_health(scheduler)))

    scheduler.ensure_connected()
    scheduler.sweep()                           # all three answer
    host.outcomes = {domain(1).uuid: Outcome.MISSED}
    for _ in range(3):                          # the third miss notifies
        scheduler.sweep()
    queued = exposition.parse(get(server.port, '/metrics')[2])
    worker.run_once()                           # the engine accepts it
    tracker.review()                            # as every sweep: reported
    status, _, body = get(server.port, '/metrics')
    box.close()

    assert status == 200
    assert queued.value(P + 'outbox_pending') == 1
    assert queued.value(P + 'domains', state='error') == 1
    scrape = exposition.parse(body)
    assert scrape.value(P + 'sweeps_total') == 4
    assert scrape.value(P + 'sweep_duration_seconds_count') == 4
    assert scrape.value(P + 'pings_total', outcome='ok') == 9
    assert scrape.value(P + 'pings_total', outcome='missed') == 3
    assert scrape.series(P + 'domains') == {
        frozenset({('state', 'discovery')}): 0,
        frozenset({('state', 'healthy')}): 2,
        frozenset({('state', 'error')}): 0,
        frozenset({('state', 'reported')}): 1}
    assert scrape.series(P + 'state_transitions_total') == {
        frozenset({('from', 'discovery'), ('to', 'healthy')}): 3,
        frozenset({('from', 'healthy'), ('to', 'error')}): 1,
        frozenset({('from', 'error'), ('to', 'reported')}): 1}
    assert scrape.value(P + 'notifications_queued_total') == 1
    assert scrape.value(P + 'notifications_delivered_total',
                        result='accepted') == 1
    assert scrape.value(P + 'outbox_pending') == 0
    assert scrape.value(P + 'outbox_dead_letters') == 0
    assert scrape.value(P + 'libvirt_connected') == 1
    assert scrape.value(P + 'libvirt_reconnects_total') == 0
    assert scrape.value(P + 'mass_failure_breaker_tripped') == 0


def test_a_domain_whose_ping_raises_is_counted_but_never_reported(tmp_path,
                                                                  serve):
    m = metrics.MonitorMetrics()
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    store = domain_store.DomainStore(region, namespace='compute-1')
    box = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'), max_size=10)
    breaker = mass_failure.MassFailureBreaker(3, 0.5)
    tracker = domain_tracker.DomainTracker(
        store, health_policy.HealthPolicy(3, 0, 0), breaker, box,
        'compute-1', metrics=m)
    host = FakeHost([domain(1), domain(2), domain(3)])
    scheduler = scheduler_mod.Scheduler(
        host, tracker, interval=1.0, ping_timeout=1, max_concurrent_pings=4,
        execute=lambda f, *a: f(*a), metrics=m)
    m.watch(store=store, outbox=box, scheduler=scheduler, breaker=breaker)
    server = serve(metrics_server.make_app(
        m, metrics_server.scheduler_health(scheduler)))

    scheduler.ensure_connected()
    scheduler.sweep()                           # all three answer
    host.outcomes = {domain(1).uuid: Outcome.ERROR}
    for _ in range(5):
        scheduler.sweep()
    scrape = exposition.parse(get(server.port, '/metrics')[2])
    box.close()

    assert scrape.value(P + 'pings_total', outcome='error') == 5
    assert scrape.value(P + 'pings_total', outcome='missed') == 0
    assert scrape.value(P + 'notifications_queued_total') == 0
    assert scrape.value(P + 'domains', state='healthy') == 3


# -- the service and the daemon -------------------------------------------------------


def test_the_service_serves_until_it_stops(tmp_path):
    port = free_port()
    service = service_mod.MonitorService(conf_with(tmp_path,
                                                   listen_port=port))
    # The daemon's threading is monkey-patched; this test's is not.
    service.stop_event = green_threading.Event()
    try:
        assert service.metrics_server.port == port
        serving = eventlet.spawn(service._serve_metrics)
        eventlet.sleep(0)
        before = get(port, '/healthz')[0]
        service.scheduler.ensure_connected()
        after = get(port, '/healthz')[0]
        scrape = exposition.parse(get(port, '/metrics')[2])

        service.stop()
        with eventlet.Timeout(5):
            serving.wait()

        assert (before, after) == (503, 200)
        assert scrape.value(P + 'libvirt_connected') == 1
        with pytest.raises(ConnectionRefusedError):
            get(port, '/metrics')
    finally:
        service.close()


def test_the_service_refuses_to_start_on_a_port_in_use(tmp_path, serve):
    taken = serve(metrics_server.make_app(metrics.MonitorMetrics(),
                                          Health()))

    with pytest.raises(OSError, match='cannot serve metrics on '
                       '127.0.0.1:%d' % taken.port):
        service_mod.MonitorService(conf_with(tmp_path,
                                             listen_port=taken.port))


def test_the_daemon_serves_metrics_and_stops_on_sigterm(tmp_path):
    port = free_port()
    log = tmp_path / 'stderr.log'
    conf = test_cmd.write_conf(tmp_path, metrics={'listen_port': port})
    with test_cmd.daemon(conf, log) as proc:
        test_cmd.wait_for(log, 'Cannot connect to libvirt')
        test_cmd.wait_for(log, 'Serving metrics at http://127.0.0.1:%d/'
                          % port)
        health = get(port, '/healthz')
        body = get(port, '/metrics')[2]
        status = test_cmd.terminate(proc)

    text = log.read_text()
    assert status == 0, text
    assert health[0] == 503
    scrape = exposition.parse(body)
    assert scrape.value(P + 'libvirt_connected') == 0
    assert scrape.value(P + 'sweeps_total') == 0
    assert scrape.value(P + 'outbox_pending') == 0
    assert 'Traceback' not in text
    assert test_cmd.PASSWORD not in body
    with pytest.raises(ConnectionRefusedError):
        get(port, '/metrics')


def test_the_daemon_exits_clearly_when_its_metrics_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = test_cmd.run(test_cmd.write_conf(
            tmp_path, metrics={'listen_port': port}))

    test_cmd.assert_quiet_failure(
        proc, 1, 'Cannot start: cannot serve metrics on 127.0.0.1:%d: '
        'Address already in use' % port)
