"""A small webhook receiver on 127.0.0.1 for tests and the demo.

It checks each POST's X-Signature-256 against the shared secret, records
every delivery (valid or not) and answers with what its responder says
(202 by default, 401 for a bad signature). Stopping and starting it again
on the same port stands in for a receiver that is down for a while.

    python -m lab.webhook_receiver --secret S [--port 8099]

prints each delivery as it arrives.
"""

from __future__ import annotations

import argparse
import http.server
import json
import sys
import threading
import time
import typing

from monitor.notify import webhook

MAX_BODY = 1024 * 1024


class Delivery(typing.NamedTuple):
    path: str
    headers: dict
    body: bytes
    signature_valid: bool

    def json(self):
        return json.loads(self.body)


class Answer(typing.NamedTuple):
    status: int
    body: bytes = b''
    headers: typing.Optional[dict] = None


def accept(delivery):
    """The default responder: 202 for a valid signature, else 401."""
    if delivery.signature_valid:
        return Answer(202, b'{"status": "accepted"}')
    return Answer(401, b'{"error": "bad signature"}')


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_POST(self):
        receiver = self.server.receiver
        length = int(self.headers.get('Content-Length') or 0)
        if length > MAX_BODY:
            self._answer(Answer(413, b'too large'))
            return
        body = self.rfile.read(length)
        delivery = Delivery(
            self.path, dict(self.headers), body,
            webhook.verify(receiver.secret, body,
                           self.headers.get(webhook.SIGNATURE_HEADER)))
        with receiver.lock:
            receiver.deliveries.append(delivery)
        if receiver.on_delivery is not None:
            receiver.on_delivery(delivery)
        self._answer(receiver.responder(delivery))

    def _answer(self, answer):
        self.send_response(answer.status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(answer.body)))
        for name, value in (answer.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format, *args):
        # Deliveries are recorded (and printed by the command) instead.
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class WebhookReceiver:
    """Receives webhooks on 127.0.0.1:``port`` (0: any free port) until
    stopped; ``deliveries`` is every POST received, in order."""

    def __init__(self, secret, port=0, responder=accept, on_delivery=None,
                 address='127.0.0.1'):
        self.secret = secret
        self.address = address
        self.port = port
        self.responder = responder
        self.on_delivery = on_delivery
        self.deliveries = []
        self.lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self):
        return 'http://%s:%d/hook' % (self.address, self.port)

    def start(self):
        self._server = _Server((self.address, self.port), _Handler)
        self._server.receiver = self
        # Keep the port across stop() and start(): the daemon's url stays.
        self.port = self._server.server_address[1]
        self._server.timeout = 0.05
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self):
        # A loop of its own rather than serve_forever(): shutdown() waits
        # for serve_forever without a bound.
        while not self._stopping.is_set():
            self._server.handle_request()

    def stop(self):
        if self._server is None:
            return
        self._stopping.set()
        self._thread.join(5.0)
        self._server.server_close()
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def valid(self):
        """The deliveries whose signature checked out."""
        with self.lock:
            return [d for d in self.deliveries if d.signature_valid]

    def wait_for(self, count, timeout):
        """Wait until ``count`` deliveries arrived; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = list(self.deliveries)
            if len(got) >= count or time.monotonic() >= deadline:
                return got
            time.sleep(0.05)


def print_delivery(delivery):
    verdict = 'valid' if delivery.signature_valid else 'INVALID'
    try:
        shown = json.dumps(delivery.json(), indent=2, sort_keys=True)
    except ValueError:
        shown = delivery.body.decode('utf-8', 'replace')
    print('webhook received (signature %s):\n%s' % (verdict, shown),
          flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--secret', required=True)
    parser.add_argument('--port', type=int, default=8099)
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(args.secret, args.port,
                               on_delivery=print_delivery).start()
    print('listening on %s' % receiver.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
