"""What one guest-ping told us, and how libvirt's answers map onto it.

Plain code: libvirt's error codes are copied here as integers (a unit test
checks them against the installed binding) so the classification table can
be read and tested without a libvirt connection.
"""

import enum
import json
import typing


class Outcome(enum.Enum):
    # The agent answered the ping.
    OK = 'ok'
    # The agent did not answer (hung, gone, or answered with garbage):
    # counts towards the failure threshold.
    MISSED = 'missed'
    # The domain exists but is not running (paused, shutting down, shut
    # off): not the guest's fault, nothing is counted.
    NOT_RUNNING = 'not_running'
    # The domain no longer exists on this host (undefined, migrated away).
    GONE = 'gone'
    # The domain has no guest agent channel: it is not monitored.
    NO_AGENT = 'no_agent'
    # libvirt itself was unreachable: nobody's miss.
    DISCONNECTED = 'disconnected'
    # Something unexpected was raised for this domain (by the binding, or
    # while handling its reply). Not counted as a miss: it says nothing
    # about the guest, and an error that hit every domain (a binding bug,
    # an upgrade) would otherwise report every healthy guest on the host.
    # It is logged and counted (domain_errors_total) for the operator.
    ERROR = 'error'


class PingResult(typing.NamedTuple):
    outcome: Outcome
    detail: str
    started_at: float
    duration: float
    # For Outcome.ERROR: the exception type name, e.g. 'RecursionError'.
    error_kind: typing.Optional[str] = None


# A healthy reply is 15 bytes; anything far longer is garbage, and is not
# worth parsing (a hostile agent could send megabytes of nested arrays).
MAX_REPLY_CHARS = 4096


# libvirt error codes (virErrorNumber) and domains (virErrorDomain).
VIR_ERR_INTERNAL_ERROR = 1
VIR_ERR_NO_SUPPORT = 3
VIR_ERR_NO_CONNECT = 5
VIR_ERR_INVALID_CONN = 6
VIR_ERR_INVALID_DOMAIN = 7
VIR_ERR_SYSTEM_ERROR = 38
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_OPERATION_TIMEOUT = 68
VIR_ERR_ARGUMENT_UNSUPPORTED = 74
VIR_ERR_AGENT_UNRESPONSIVE = 86
VIR_ERR_AGENT_UNSYNCED = 97

VIR_FROM_RPC = 7
VIR_FROM_REMOTE = 13

LIBVIRT_CONSTANTS = {
    name: value for name, value in globals().items()
    if name.startswith(('VIR_ERR_', 'VIR_FROM_'))
}


def is_disconnect(code, domain):
    """True when a libvirt error means the connection itself is lost.

    Only these errors trigger a reconnect; everything else is about one
    domain.
    """
    if code in (VIR_ERR_NO_CONNECT, VIR_ERR_INVALID_CONN):
        return True
    return (code in (VIR_ERR_SYSTEM_ERROR, VIR_ERR_INTERNAL_ERROR)
            and domain in (VIR_FROM_REMOTE, VIR_FROM_RPC))


def classify_error(code, domain):
    """Map a libvirt error raised by a guest-ping to an Outcome."""
    if is_disconnect(code, domain):
        return Outcome.DISCONNECTED
    if code in (VIR_ERR_NO_DOMAIN, VIR_ERR_INVALID_DOMAIN):
        return Outcome.GONE
    if code == VIR_ERR_OPERATION_INVALID:
        # "domain is not running": paused, or going down.
        return Outcome.NOT_RUNNING
    if code == VIR_ERR_ARGUMENT_UNSUPPORTED:
        # "QEMU guest agent is not configured".
        return Outcome.NO_AGENT
    if code == VIR_ERR_NO_SUPPORT:
        # "this function is not supported by the connection driver": the
        # driver (test://, or another hypervisor than QEMU) cannot run
        # agent commands at all. Counting that as misses would report
        # every guest on the host.
        return Outcome.NO_AGENT
    # VIR_ERR_AGENT_UNRESPONSIVE (hung, not connected, in error),
    # VIR_ERR_OPERATION_TIMEOUT, VIR_ERR_AGENT_UNSYNCED and anything we do
    # not know: the guest did not answer. Counting an unknown error as a
    # miss keeps a dead guest from hiding behind an unexpected code; the
    # threshold still needs several in a row.
    return Outcome.MISSED


def classify_reply(reply):
    """Check a guest-ping reply; return (Outcome, detail).

    A healthy agent answers ``{"return": {}}``. Anything else means the
    agent channel is carrying garbage, which is as bad as no answer.
    """
    if isinstance(reply, (str, bytes)) and len(reply) > MAX_REPLY_CHARS:
        return Outcome.MISSED, 'agent reply of %d characters: %.80r' % (
            len(reply), reply)
    try:
        decoded = json.loads(reply) if reply is not None else None
    except (TypeError, ValueError, RecursionError):
        # ValueError covers integers beyond Python's digit limit too.
        return Outcome.MISSED, 'agent reply is not JSON: %.80r' % (reply,)
    if isinstance(decoded, dict) and 'return' in decoded:
        return Outcome.OK, 'ok'
    return Outcome.MISSED, 'unexpected agent reply: %.80r' % (reply,)
