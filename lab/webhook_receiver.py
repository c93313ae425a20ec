"""A small webhook receiver on 127.0.0.1 for tests and the demo.

It checks each POST as any receiver of the monitor would, with the
reference libraries only: the Standard Webhooks signature (the
``standardwebhooks`` package, with the shared ``whsec_`` secret; it
refuses a timestamp more than five minutes away from now, so a captured
request cannot be replayed later) and then the CloudEvents envelope (the
``cloudevents`` SDK). It records every delivery (valid or not) and
answers with what its responder says: 202 by default, 401 for a bad
signature or a stale timestamp, 400 for a signed body that is not a
CloudEvent. Stopping and starting it again on the same port stands in
for a receiver that is down for a while.

    python -m lab.webhook_receiver --secret whsec_... [--port 8099]

prints each delivery as it arrives.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import sys
import threading
import time
import typing

import standardwebhooks
from cloudevents.core import exceptions as cloudevent_errors
from cloudevents.core.bindings import http as cloudevent_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

MAX_BODY = 1024 * 1024


def make_secret():
    """A new Standard Webhooks secret: ``whsec_`` and 32 random bytes in
    base64."""
    return 'whsec_' + base64.b64encode(os.urandom(32)).decode('ascii')


# The type of the report that a guest's failure is over.
RECOVERED = 'io.guest-health-monitor.guest.recovered'


def about(deliveries, uuid, ends=False):
    """The ``deliveries`` about domain ``uuid``: its failure reports or,
    with ``ends``, the reports that a failure is over (RECOVERED)."""
    return [d for d in deliveries
            if d.json()['data']['domain_uuid'] == uuid
            and (d.json()['type'] == RECOVERED) == ends]


class Delivery(typing.NamedTuple):
    path: str
    headers: dict
    body: bytes
    signature_valid: bool
    # Why the signature or the envelope was refused, or None.
    refusal: typing.Optional[str] = None
    # The parsed CloudEvent (cloudevents.core.v1.event.CloudEvent) of a
    # delivery whose signature checked out, or None.
    event: typing.Any = None

    def json(self):
        """The body as JSON: the whole structured-mode event."""
        return json.loads(self.body)

    def data(self):
        """The event's ``data``, as the CloudEvents SDK parsed it."""
        return self.event.get_data()

    def header(self, name):
        """A request header, whatever the case of its name."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


class Answer(typing.NamedTuple):
    status: int
    body: bytes = b''
    headers: typing.Optional[dict] = None


def accept(delivery):
    """The default responder: 202 for a signed CloudEvent, 401 for a bad
    signature, 400 for a signed body that is not a CloudEvent."""
    if not delivery.signature_valid:
        return Answer(401, b'{"error": "bad signature"}')
    if delivery.event is None:
        return Answer(400, b'{"error": "not a CloudEvent"}')
    return Answer(202, b'{"status": "accepted"}')


def check(verifier, path, headers, body):
    """The Delivery of one request: its signature verified by
    ``verifier`` (a ``standardwebhooks.Webhook``), then its CloudEvent
    parsed."""
    try:
        verifier.verify(body, headers, json_parse=False)
    except standardwebhooks.WebhookVerificationError as exc:
        return Delivery(path, headers, body, False, str(exc))
    message = cloudevent_http.HTTPMessage(
        headers={k.lower(): v for k, v in headers.items()}, body=body)
    try:
        event = cloudevent_http.from_http(message, JSONFormat(), CloudEvent)
    except (cloudevent_errors.BaseCloudEventException, ValueError,
            TypeError, KeyError) as exc:
        return Delivery(path, headers, body, True,
                        'not a CloudEvent: %s' % exc)
    return Delivery(path, headers, body, True, None, event)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_POST(self):
        receiver = self.server.receiver
        length = int(self.headers.get('Content-Length') or 0)
        if length > MAX_BODY:
            self._answer(Answer(413, b'too large'))
            return
        body = self.rfile.read(length)
        delivery = check(receiver.verifier, self.path, dict(self.headers),
                         body)
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
        self.verifier = standardwebhooks.Webhook(secret)
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
        """The deliveries whose signature checked out and whose body is a
        CloudEvent."""
        with self.lock:
            return [d for d in self.deliveries
                    if d.signature_valid and d.event is not None]

    def wait_for(self, count, timeout, uuid=None, ends=False):
        """Wait until ``count`` deliveries arrived; returns them all.
        With ``uuid``, only those about that domain count and are
        returned (see :func:`about`)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = list(self.deliveries)
            if uuid is not None:
                got = about(got, uuid, ends)
            if len(got) >= count or time.monotonic() >= deadline:
                return got
            time.sleep(0.05)


def print_delivery(delivery):
    if delivery.event is not None:
        verdict = 'valid %s %s' % (delivery.event.get_type(),
                                   delivery.header('webhook-id'))
    else:
        verdict = 'REFUSED (%s)' % delivery.refusal
    try:
        shown = json.dumps(delivery.json(), indent=2, sort_keys=True)
    except ValueError:
        shown = delivery.body.decode('utf-8', 'replace')
    print('webhook received, %s:\n%s' % (verdict, shown), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--secret', required=True,
                        help='the [webhook] secret, whsec_ and base64')
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
