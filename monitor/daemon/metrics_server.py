"""The HTTP edge for operators: GET /metrics and GET /healthz.

Served by a green WSGI server (``concurrency.serve_wsgi``) in one green
thread, like the daemon's other loops; a scrape renders the metrics in the
hub's thread, so it sees the tracker's and the scheduler's state between
two of their steps, never half-way through one.

Off by default (listen_port 0), and on 127.0.0.1 when on: the endpoint
has no authentication, so exposing it beyond the host is the operator's
explicit choice. Nothing served here comes from the configuration or the
notifications, so no secret can leak through it.
"""

import collections
import logging
import socket
import time

from oslo_config import cfg

from monitor import concurrency
from monitor.daemon import metrics as metrics_mod
from monitor.errors import MetricsServerError

LOG = logging.getLogger(__name__)

GROUP = 'metrics'

OPTS = [
    cfg.PortOpt(
        'listen_port',
        default=0,
        help="""
TCP port of the HTTP endpoint serving the daemon's metrics in the Prometheus
text format at /metrics, and a health check at /healthz (200 while libvirt
is connected, the monitor keeps completing its rounds of pings and no
recovery holds its turn past [recovery] step_timeout, 503 otherwise, with
the reason in the body).

Possible values:

* 0 (default): no endpoint; nothing listens.
* A port number, e.g. 9178.

Related options:

* listen_address
"""),
    cfg.IPOpt(
        'listen_address',
        default='127.0.0.1',
        help="""
IP address the metrics endpoint listens on. The endpoint has no
authentication; listen on another address than the loopback only where the
network limits who can reach it.

Possible values:

* An IPv4 or IPv6 address. Default 127.0.0.1. 0.0.0.0 or :: listen on every
  address of the host.

Related options:

* listen_port
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]


# Scrapers are few (Prometheus, a probe, an operator's curl), but a client
# that connects and sends nothing (a port scanner, a half-open probe, a
# stuck proxy) holds its connection until a timeout. At most
# MAX_CONNECTIONS are kept open: one more sheds the connection that has
# been idle longest, so /healthz always gets an answer; each connection
# waits READ_TIMEOUT for a request (and as long between two requests on a
# kept-alive one). The green pool has room for the shed connections still
# winding down, so accepting never waits for a free slot.
MAX_CONNECTIONS = 64
READ_TIMEOUT = 10.0
_POOL_SLACK = 16

_METHODS = ('GET', 'HEAD')


def progress_bound(interval, ping_timeout):
    """Seconds without a completed round of work after which the monitor
    is not live.

    A round lasts at most about an interval plus one ping (its timeout
    plus libvirt's 5 s guest-sync floor once an agent has timed out).
    Three intervals and two such pings let one overrun round and the
    wait after it pass; 30 s more keep a slow start (thousands of domain
    XMLs to read) or a starved CPU from failing the probe, since a probe
    that fails restarts the daemon and so loses the guests' history.
    With the defaults (10 s, 2 s): 74 s.
    """
    return 3 * interval + 2 * (ping_timeout + 5) + 30


def liveness(connected, last_progress_at, now, interval, ping_timeout,
             started_at):
    """(ok, reason) of the monitor's health; plain code.

    :param connected: libvirt is connected.
    :param last_progress_at: monotonic time the scheduler last completed
        a round of work, None before its first.
    :param now: the monotonic time now.
    :param started_at: monotonic time the monitor started; the first
        round gets the same bound from there.
    """
    if not connected:
        return False, 'libvirt not connected'
    bound = progress_bound(interval, ping_timeout)
    since = started_at if last_progress_at is None else last_progress_at
    if now - since > bound:
        return False, ('no round of pings completed for %.0f s (bound '
                       '%.0f s)' % (now - since, bound))
    return True, 'ok'


def scheduler_health(scheduler, clock=time.monotonic, recovery=None):
    """A health() for make_app reading the scheduler's ``connected``,
    ``last_progress_at``, ``interval`` and ``ping_timeout``, and, given
    ``recovery`` (recovery_step.RecoveryStep), whether a recovery holds
    its slot past its bound: each of its calls is bounded, so a slot
    still held then means the bound itself failed, and failures of
    other guests may be left waiting."""
    started_at = clock()

    def health():
        ok, reason = liveness(scheduler.connected,
                              scheduler.last_progress_at, clock(),
                              scheduler.interval, scheduler.ping_timeout,
                              started_at)
        if ok and recovery is not None:
            late = recovery.overdue_reason()
            if late is not None:
                return False, late
        return ok, reason
    return health


def make_app(metrics, health):
    """The WSGI application: /metrics renders ``metrics``, /healthz asks
    ``health()`` for (ok, reason)."""

    def app(environ, start_response):
        path = environ.get('PATH_INFO', '')
        if path not in ('/metrics', '/healthz'):
            return _respond(start_response, '404 Not Found', 'not found\n')
        if environ.get('REQUEST_METHOD') not in _METHODS:
            return _respond(start_response, '405 Method Not Allowed',
                            'method not allowed\n',
                            [('Allow', ', '.join(_METHODS))])
        if path == '/healthz':
            try:
                ok, reason = health()
            except Exception:  # request boundary: the probe fails, loudly
                LOG.exception('Cannot tell the monitor\'s health')
                ok, reason = False, 'cannot tell; see the daemon log'
            if ok:
                return _respond(start_response, '200 OK', 'ok\n')
            return _respond(start_response, '503 Service Unavailable',
                            reason + '\n')
        try:
            body = metrics.render()
        except Exception:  # request boundary: one scrape fails, loudly
            # A scrape answered 500 shows up in Prometheus as a failed
            # scrape; leaving out the series that broke would look like
            # data.
            LOG.exception('Cannot render the metrics')
            return _respond(start_response, '500 Internal Server Error',
                            'cannot render the metrics; see the daemon '
                            'log\n')
        return _respond(start_response, '200 OK', body,
                        content_type=metrics_mod.CONTENT_TYPE)

    return app


def _respond(start_response, status, text, headers=(),
             content_type='text/plain; charset=utf-8'):
    body = text.encode('utf-8')
    start_response(status, [('Content-Type', content_type),
                            ('Content-Length', str(len(body))),
                            *headers])
    return [body]


class _DebugLog:
    """The WSGI server's log, at debug: it writes an access line per request
    and Prometheus scrapes every few seconds, which would drown the
    operator's log."""

    def info(self, msg, *args, **kwargs):
        LOG.debug('%s', msg.rstrip())

    debug = error = info

    def write(self, msg, *args):
        LOG.debug('%s', msg.rstrip())


class _SheddingListener:
    """The listening socket as the WSGI server sees it: accept() keeps at
    most ``limit`` client connections open by shutting down the one idle
    longest (its green thread then reads end-of-file and ends)."""

    def __init__(self, sock, limit, clock=time.monotonic):
        self._sock = sock
        self.limit = limit
        self._clock = clock
        # (host, port) -> client socket, least recently active first.
        self._open = collections.OrderedDict()

    def accept(self):
        conn, addr = self._sock.accept()
        for key, old in list(self._open.items()):
            if old.fileno() == -1:  # closed by its handler
                del self._open[key]
        while len(self._open) >= self.limit:
            key, old = self._open.popitem(last=False)
            LOG.debug('Closing the metrics connection from %s:%s, idle '
                      'longest, to serve a new one', *key)
            concurrency.shutdown_safe(old)
        self._open[_peer_key(addr)] = conn
        return conn, addr

    def touch(self, environ):
        """A request arrived on this connection: it is not idle."""
        key = (environ.get('REMOTE_ADDR'), environ.get('REMOTE_PORT'))
        if key in self._open:
            self._open.move_to_end(key)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _peer_key(addr):
    return (str(addr[0]), str(addr[1]))


class MetricsServer:
    """Serves a WSGI app on ``address``:``port`` in one green thread.

    Port 0 binds an ephemeral port (for tests); :attr:`port` is the port
    bound. The daemon's configuration uses 0 for "disabled" instead: see
    :func:`from_conf`.
    """

    def __init__(self, app, address='127.0.0.1', port=0,
                 max_connections=MAX_CONNECTIONS,
                 read_timeout=READ_TIMEOUT):
        self.app = app
        self.address = address
        self.requested_port = port
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self._sock = None
        self._thread = None

    @classmethod
    def from_conf(cls, conf, app):
        """The configured server, or None when listen_port is 0."""
        if not conf[GROUP].listen_port:
            return None
        return cls(app, conf[GROUP].listen_address, conf[GROUP].listen_port)

    @property
    def port(self):
        """The bound port, or None before listen()."""
        if self._sock is None:
            return None
        return self._sock.getsockname()[1]

    def listen(self):
        """Bind and listen; raise MetricsServerError when that fails.

        Separate from start() so that a daemon that cannot bind its
        metrics port fails at start with a clear error, before any green
        thread runs.
        """
        family = socket.AF_INET6 if ':' in self.address else socket.AF_INET
        try:
            # No SO_REUSEPORT: a second daemon on the same port must
            # fail, not take half the scrapes.
            self._sock = concurrency.listen(
                (self.address, self.requested_port), family,
                reuse_port=False)
        except OSError as exc:
            raise MetricsServerError(
                'cannot serve metrics on %s: %s'
                % (self._where(self.requested_port),
                   exc.strerror or exc)) from None
        return self.port

    def start(self):
        """Serve in a green thread (listening first if needed)."""
        if self._sock is None:
            self.listen()
        LOG.info('Serving metrics at http://%s/metrics',
                 self._where(self.port))
        listener = _SheddingListener(self._sock, self.max_connections)

        def app(environ, start_response):
            listener.touch(environ)
            return self.app(environ, start_response)

        self._thread = concurrency.serve_wsgi(
            listener, app, _DebugLog(), self.max_connections + _POOL_SLACK,
            self.read_timeout)

    def stop(self):
        """Stop serving and release the port; requests in progress end
        first (idle keep-alive connections are closed)."""
        thread, self._thread = self._thread, None
        sock, self._sock = self._sock, None
        if thread is not None:
            thread.kill()
        if sock is not None:
            # The server closes it on its way out, unless it never ran.
            sock.close()

    def _where(self, port):
        if ':' in self.address:
            return '[%s]:%s' % (self.address, port)
        return '%s:%s' % (self.address, port)
