"""Real HTTP servers on 127.0.0.1 standing in for the HA engine and Keystone.

A server answers each request with what its responder returns for it, and
records every request it received. ``HANG`` makes it hold the request
without answering until the server is closed, to exercise client timeouts.
``Raw`` writes bytes as they are, chunk by chunk, for answers no HTTP
library would produce: headers or bodies trickling in, endless bodies.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import typing

HANG = object()

# Longest a hung request is held, so a forgotten server cannot wedge a run.
_HANG_LIMIT = 30.0


class Request(typing.NamedTuple):
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class Response(typing.NamedTuple):
    status: int
    body: object = b''
    headers: dict | None = None

    def encoded(self):
        if isinstance(self.body, bytes):
            return self.body, 'text/plain'
        return json.dumps(self.body).encode(), 'application/json'


class Raw(typing.NamedTuple):
    """An answer written as raw bytes: ``chunks`` one after the other,
    ``interval`` seconds apart, until they run out, the client hangs up,
    or the server is closed. The server records how many bytes it wrote.
    """

    chunks: typing.Iterable[bytes]
    interval: float = 0.0


def raw_head(status, reason, headers=()):
    """The status line and headers of a raw answer, blank line included."""
    lines = [f'HTTP/1.1 {status} {reason}'] + [f'{k}: {v}'
                                                for k, v in headers]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode()


def reply(status, body=b'', headers=None):
    """A responder that always answers the same."""
    response = Response(status, body, headers)
    return lambda request: response


def script(*answers):
    """A responder answering with ``answers`` in turn, then the last one."""
    remaining = list(answers)

    def respond(request):
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]
    return respond


def fault(status, kind, message):
    """An error answer shaped like OpenStack services' faults."""
    return Response(status, {kind: {'code': status, 'message': message}})


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def _handle(self):
        length = int(self.headers.get('Content-Length') or 0)
        request = Request(self.command, self.path, dict(self.headers),
                          self.rfile.read(length))
        server = self.server.owner
        with server.lock:
            server.requests.append(request)
        answer = server.responder(request)
        if answer is HANG:
            server.released.wait(_HANG_LIMIT)
            self.close_connection = True
            return
        if isinstance(answer, Raw):
            self.close_connection = True
            server.record_written(self._write_raw(answer, server))
            return
        body, content_type = answer.encoded()
        self.send_response(answer.status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        for name, value in (answer.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _write_raw(self, answer, server):
        written = 0
        give_up_at = time.monotonic() + _HANG_LIMIT
        for chunk in answer.chunks:
            if server.released.is_set() or time.monotonic() > give_up_at:
                break
            try:
                self.wfile.write(chunk)
                self.wfile.flush()
            except OSError:
                break  # the client hung up
            written += len(chunk)
            if answer.interval:
                server.released.wait(answer.interval)
        return written

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, format, *args):
        # Keep test output clean; requests are recorded instead.
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up on a hung request closed its socket.
        pass


class HTTPServer:
    """Serves ``responder`` on 127.0.0.1 at ``url`` until closed."""

    def __init__(self, responder):
        self.responder = responder
        self.requests = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self._written = []
        self._written_changed = threading.Condition(self.lock)
        self._server = _Server(('127.0.0.1', 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.url = f'http://127.0.0.1:{self.port}'
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={'poll_interval': 0.05},
                                        daemon=True)
        self._thread.start()

    def record_written(self, count):
        with self._written_changed:
            self._written.append(count)
            self._written_changed.notify_all()

    def written(self, answers=1):
        """Bytes written for each of the first ``answers`` raw answers,
        once the server has finished writing them."""
        with self._written_changed:
            self._written_changed.wait_for(
                lambda: len(self._written) >= answers, _HANG_LIMIT)
            return list(self._written)

    def close(self):
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def refused_port():
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class FakeKeystone:
    """Just enough of Keystone v3 for password authentication.

    Issues ``token`` for ``username``/``password`` and returns
    ``catalog`` with it; any other credentials get a 401.
    """

    def __init__(self, username, password, token, catalog):
        self.username = username
        self.password = password
        self.token = token
        self.catalog = catalog
        self.server = HTTPServer(self._respond)
        self.auth_url = self.server.url + '/v3'

    def _respond(self, request):
        if request.method == 'GET':
            return Response(200, {'version': {
                'id': 'v3.14', 'status': 'stable',
                'links': [{'rel': 'self', 'href': self.auth_url + '/'}],
                'media-types': [{
                    'base': 'application/json',
                    'type': 'application/vnd.openstack.identity-v3+json'}],
            }})
        user = request.json()['auth']['identity']['password']['user']
        if (user.get('name'), user.get('password')) != (
                self.username, self.password):
            return fault(
                401, 'error', 'The request you have made requires '
                              'authentication.')
        return Response(201, {'token': {
            'methods': ['password'],
            'expires_at': '2999-01-01T00:00:00.000000Z',
            'issued_at': '2000-01-01T00:00:00.000000Z',
            'user': {'id': 'u1', 'name': self.username,
                     'domain': {'id': 'default', 'name': 'Default'}},
            'project': {'id': 'p1', 'name': 'service',
                        'domain': {'id': 'default', 'name': 'Default'}},
            'roles': [{'id': 'r1', 'name': 'admin'}],
            'catalog': self.catalog,
        }}, {'X-Subject-Token': self.token})

    def close(self):
        self.server.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def catalog_entry(service_type, endpoints):
    """``endpoints``: [(interface, region, url)]."""
    return {'type': service_type, 'name': service_type, 'id': service_type,
            'endpoints': [{'id': f'{service_type}-{i}',
                           'interface': interface,
                           'region_id': region, 'region': region,
                           'url': url}
                          for i, (interface, region, url)
                          in enumerate(endpoints)]}
