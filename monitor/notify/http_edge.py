"""The one HTTP edge of the notifiers: one POST, bounded, read, classified.

The HA engine's client (through keystoneauth) and the webhook's (through
requests) each hand ``post`` the function that starts their request; this
module owns what every answer needs, each a defence against a receiver or
proxy that misbehaves:

* One deadline bounds the whole request: connecting, the headers and the
  body. Under eventlet's green sockets (the daemon, whose delivery worker
  is a green thread) a green timeout interrupts any socket wait, where a
  per-read timeout would let a peer trickling its headers hold delivery
  for ever. In a native thread (a test) the body is bounded by the
  deadline checks between reads, the headers only by the per-read
  timeout.
* At most ``MAX_ANSWER_BYTES`` of an answer are read: a huge or endless
  answer can neither hold delivery nor fill memory.
* A truncated answer (fewer bytes than its Content-Length, a read that
  failed or hit the deadline) is a failed attempt, retried whatever its
  status: a resend of a notification the receiver already has is answered
  409 (the engine) or deduplicated on its id (a webhook receiver).
* Redirects are never followed: a 3xx is retried like an outage and names
  the Location, so the body, its signature or the token never go to an
  address the operator did not configure.
* Every outcome message is masked: URLs in it keep no password, and the
  receiver's text in it (its message, a Location) is cut short and shows
  control characters as escapes, so it cannot forge a log line or drive
  the terminal of whoever lists the outbox.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from typing import Callable
from typing import NamedTuple

import requests
from urllib3 import exceptions as urllib3_exc

from monitor import concurrency
from monitor import masking
from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind

LOG = logging.getLogger(__name__)

# 4xx answers that say nothing about the notification itself: credentials
# or policy an operator can fix (401, 403), a wrong endpoint path (404,
# 405), or load (408, 429). Giving up on them would lose a failure report.
RETRYABLE_CLIENT_STATUSES = frozenset({401, 403, 404, 405, 408, 429})

# The engine's answers (accepted notification, faults) are well under
# 2 KiB, and of any answer only its message is kept.
MAX_ANSWER_BYTES = 64 * 1024
_READ_CHUNK = 16 * 1024

# A compressed answer could expand past any cap.
ANSWER_ENCODING = {'Accept-Encoding': 'identity'}

_MAX_MESSAGE = 500
_MAX_LOCATION = 300


class Peer(NamedTuple):
    """How the answers of one kind of receiver are read."""

    # Who answers, in messages ("the engine").
    name: str
    # The statuses that mean delivered, and how a message names them.
    accepted: frozenset
    accepted_text: str
    # The option that bounds one request, named when it is cut off.
    timeout_option: str
    # The transport's exceptions, and the retry message of each.
    errors: tuple
    describe: Callable[[Exception], str]
    # Appended to the message of a redirect.
    redirect_hint: str = ''
    # The receiver's id of an accepted notification, from its answer.
    receipt_of: Callable[[str], object] | None = None
    # How a URL of this receiver (the one posted to, a Location) is shown.
    url_text: Callable[[str], str] = masking.mask


def post(request, peer, timeout, *args, **options):
    """POST with ``request(*args, timeout=timeout, **options)``, bounded
    by one deadline ``timeout`` seconds away; the classified answer.

    ``request`` returns a streamed ``requests.Response`` with its body
    unread. Never raises for HTTP or connection failures, nor for the
    transport errors of ``peer``: every result is a ``DeliveryOutcome``
    with a masked message.
    """
    deadline = time.monotonic() + timeout
    timer = _green_timeout(timeout)
    timed_out = type(timer) if timer is not None else ()
    try:
        response = request(*args, timeout=timeout, **options)
    except timed_out as e:
        if e is not timer:
            raise
        return _retry(f'timed out: no answer within {peer.timeout_option} '
                      f'({timeout:g} s)')
    except peer.errors as e:
        return _retry(peer.describe(e))
    finally:
        if timer is not None:
            timer.cancel()
    data, cut, truncated = read_answer(response, deadline,
                                       peer.timeout_option)
    LOG.debug('POST %s: HTTP %s, %d bytes read%s',
              peer.url_text(response.url), response.status_code, len(data),
              f' ({cut})' if cut else '')
    outcome = classify(peer, response.status_code,
                       data.decode('utf-8', 'replace'),
                       response.headers.get('Location'))
    if truncated:
        outcome = DeliveryOutcome(OutcomeKind.RETRY, response.status_code,
                                  _noted(_headline(outcome), cut))
    elif cut and outcome.kind != OutcomeKind.ACCEPTED:
        outcome = outcome._replace(message=_noted(outcome.message, cut))
    return outcome._replace(message=masking.outside(outcome.message))


def _green_timeout(seconds):
    """A green timeout of ``seconds`` when this process's sockets are
    green, else None.

    Only a green timeout interrupts a peer trickling its headers. It is a
    BaseException: no "except Exception" in keystoneauth, requests or
    urllib3 can swallow it. With native sockets (a tool, a test) it could
    never interrupt a socket wait, and creating one would start an eventlet
    hub in this thread.
    """
    if not concurrency.is_green('socket'):
        return None
    return concurrency.Timeout(seconds)


def read_answer(response, deadline, timeout_option,
                limit=MAX_ANSWER_BYTES):
    """At most ``limit`` bytes of the body, read before ``deadline``.

    Returns ``(data, cut, truncated)``: ``cut`` is None for a whole
    answer, else says why it is incomplete; ``truncated`` when the answer
    itself is (not only capped here). Each read waits at most for the
    time left and returns what has arrived, so an answer trickling in
    cannot outlast the deadline even in a native thread, where no green
    timeout can interrupt it. The connection is closed, never reused: the
    rest stays unread.
    """
    raw = response.raw
    chunks = []
    size = 0
    cut = None
    try:
        while size <= limit:
            left = deadline - time.monotonic()
            if left <= 0:
                cut = f'answer not complete within {timeout_option}'
                break
            sock = getattr(raw.connection, 'sock', None)
            if sock is not None:
                sock.settimeout(left)
            # One byte more than the limit tells "exactly the limit" from
            # "longer".
            chunk = raw.read1(min(_READ_CHUNK, limit + 1 - size),
                              decode_content=False)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (urllib3_exc.ReadTimeoutError, TimeoutError):
        cut = f'answer not complete within {timeout_option}'
    except (urllib3_exc.HTTPError, http.client.HTTPException,
            OSError) as e:
        cut = f'reading the answer failed: {e}'
    finally:
        response.close()
    data = b''.join(chunks)[:limit]
    if cut is not None:
        return data, cut, True
    if size > limit:
        return data, f'answer longer than {limit} bytes, rest not read', False
    expected = _content_length(response)
    if expected is not None and size < expected:
        return data, (f'answer shorter than its Content-Length ({size} of '
                      f'{expected} bytes)'), True
    return data, None, False


def _content_length(response):
    try:
        return int(response.headers.get('Content-Length'))
    except (TypeError, ValueError):
        return None


def classify(peer, status_code, text, location=None):
    """Map a whole answer of ``peer`` to a DeliveryOutcome.

    ``location`` is the answer's Location header, named in the message of
    a redirect.
    """
    if status_code in peer.accepted:
        receipt = peer.receipt_of(text) if peer.receipt_of else None
        return DeliveryOutcome(OutcomeKind.ACCEPTED, status_code, '',
                               receipt)
    if 300 <= status_code < 400:
        return _retry(f'HTTP {status_code}: redirect not followed '
                      f'({_location_text(peer, location)})'
                      f'{peer.redirect_hint}', status_code)
    if status_code < 300:
        return _retry(f'HTTP {status_code}: {peer.name} answered an '
                      f'unexpected status (only {peer.accepted_text} means '
                      f'accepted)', status_code)
    message = answer_message(text) or f'HTTP {status_code}'
    if status_code == 409:
        return DeliveryOutcome(OutcomeKind.DUPLICATE, status_code, message)
    if 400 <= status_code < 500 and (
            status_code not in RETRYABLE_CLIENT_STATUSES):
        return DeliveryOutcome(OutcomeKind.REJECTED, status_code, message)
    return _retry(f'HTTP {status_code}: {message}', status_code)


def answer_message(text):
    """The human message of an answer.

    Masakari (as every OpenStack API) wraps faults as
    ``{"conflictingRequest": {"message": ...}}``; anything else is
    returned as shortened one-line text.
    """
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and len(document) == 1:
        fault = next(iter(document.values()))
        if isinstance(fault, dict) and fault.get('message'):
            return masking.outside(str(fault['message']), _MAX_MESSAGE)
    return masking.outside(' '.join(text[:_MAX_MESSAGE * 4].split()),
                           _MAX_MESSAGE)


def _location_text(peer, location):
    if not location:
        return 'no Location'
    # Cut before it is parsed: a header of tens of kilobytes is no address
    # anyone configured.
    location = str(location)[:_MAX_LOCATION * 4]
    return 'Location ' + masking.outside(peer.url_text(location),
                                         _MAX_LOCATION)


def _headline(outcome):
    # "HTTP <status>: <message>", as retry messages already read.
    if outcome.message.startswith('HTTP '):
        return outcome.message
    if outcome.message:
        return f'HTTP {outcome.status_code}: {outcome.message}'
    return f'HTTP {outcome.status_code}'


def _noted(message, note):
    # The note must survive the bound on the message's length.
    suffix = f' ({note})'
    return message[:max(_MAX_MESSAGE - len(suffix), 0)] + suffix


def _retry(reason, status_code=None):
    # A transport error's text may quote what the peer sent.
    return DeliveryOutcome(OutcomeKind.RETRY, status_code,
                           masking.outside(reason))


def describe_requests_failure(error):
    """Operator text for a ``requests`` exception of a POST (the webhook's
    and the Alertmanagers' clients)."""
    if isinstance(error, requests.exceptions.SSLError):
        return 'TLS verification failed: %s' % error
    if isinstance(error, requests.exceptions.Timeout):
        return 'timed out: %s' % error
    if isinstance(error, requests.exceptions.ConnectionError):
        return 'connection failed: %s' % error
    return 'request failed (%s): %s' % (type(error).__name__, error)
