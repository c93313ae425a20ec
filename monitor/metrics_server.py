"""The HTTP edge for operators: GET /metrics and GET /healthz.

Served by eventlet.wsgi in one green thread, like the daemon's other
loops; a scrape renders the metrics in the hub's thread, so it sees the
tracker's and the scheduler's state between two of their steps, never
half-way through one.

Off by default (listen_port 0), and on 127.0.0.1 when on: the endpoint
has no authentication, so exposing it beyond the host is the operator's
explicit choice. Nothing served here comes from the configuration or the
notifications, so no secret can leak through it.
"""

import logging
import socket

import eventlet
from eventlet import wsgi
from oslo_config import cfg

from monitor import metrics as metrics_mod

LOG = logging.getLogger(__name__)

GROUP = 'metrics'

OPTS = [
    cfg.PortOpt(
        'listen_port',
        default=0,
        help="""
TCP port of the HTTP endpoint serving the daemon's metrics in the Prometheus
text format at /metrics, and a health check at /healthz (200 while libvirt
is connected, 503 otherwise).

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


# Scrapers are few (Prometheus, a probe, an operator's curl): a small pool
# keeps a misbehaving client from taking more than a few green threads,
# and the timeout from holding one for ever.
MAX_CONNECTIONS = 8
CLIENT_TIMEOUT = 30.0

_METHODS = ('GET', 'HEAD')


class MetricsServerError(OSError):
    """The metrics endpoint cannot listen (address in use, not local)."""


def make_app(metrics, is_healthy):
    """The WSGI application: /metrics renders ``metrics``, /healthz asks
    ``is_healthy()``."""

    def app(environ, start_response):
        path = environ.get('PATH_INFO', '')
        if path not in ('/metrics', '/healthz'):
            return _respond(start_response, '404 Not Found', 'not found\n')
        if environ.get('REQUEST_METHOD') not in _METHODS:
            return _respond(start_response, '405 Method Not Allowed',
                            'method not allowed\n',
                            [('Allow', ', '.join(_METHODS))])
        if path == '/healthz':
            if is_healthy():
                return _respond(start_response, '200 OK', 'ok\n')
            return _respond(start_response, '503 Service Unavailable',
                            'libvirt not connected\n')
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
    """eventlet.wsgi's log, at debug: it writes an access line per request
    and Prometheus scrapes every few seconds, which would drown the
    operator's log."""

    def info(self, msg, *args, **kwargs):
        LOG.debug('%s', msg.rstrip())

    debug = error = info

    def write(self, msg, *args):
        LOG.debug('%s', msg.rstrip())


class MetricsServer:
    """Serves a WSGI app on ``address``:``port`` in one green thread.

    Port 0 binds an ephemeral port (for tests); :attr:`port` is the port
    bound. The daemon's configuration uses 0 for "disabled" instead: see
    :func:`from_conf`.
    """

    def __init__(self, app, address='127.0.0.1', port=0):
        self.app = app
        self.address = address
        self.requested_port = port
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
            # No SO_REUSEPORT (eventlet sets it by default): a second
            # daemon on the same port must fail, not take half the scrapes.
            self._sock = eventlet.listen((self.address, self.requested_port),
                                         family=family, reuse_port=False)
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
        self._thread = eventlet.spawn(
            wsgi.server, self._sock, self.app, log=_DebugLog(),
            log_output=True, debug=False, custom_pool=eventlet.GreenPool(
                MAX_CONNECTIONS),
            keepalive=CLIENT_TIMEOUT, socket_timeout=CLIENT_TIMEOUT)

    def stop(self):
        """Stop serving and release the port; requests in progress end
        first (idle keep-alive connections are closed)."""
        thread, self._thread = self._thread, None
        sock, self._sock = self._sock, None
        if thread is not None:
            thread.kill()
        if sock is not None:
            # wsgi.server closes it on its way out, unless it never ran.
            sock.close()

    def _where(self, port):
        if ':' in self.address:
            return '[%s]:%s' % (self.address, port)
        return '%s:%s' % (self.address, port)
