"""What one guest-ping told us: its outcome, and what a reply means.

Plain code, no libvirt: the libvirt edge maps libvirt's errors onto
:class:`Outcome` (``monitor.virt.libvirt_errors.classify_error``) and
checks the agent's reply with :func:`classify_reply`.
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
    # libvirt could not start the ping: another agent command holds the
    # guest's agent (a filesystem freeze whose hook is still quiescing, a
    # quiesced snapshot, another client's command). The guest is busy, not
    # silent: nobody's miss, until it is held longer than the frozen
    # grace (``monitor.health.host_operations``).
    BUSY = 'busy'
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
    # For Outcome.OK: whether the guest's filesystems are frozen
    # (guest-fsfreeze-status); None when it was not asked or not known.
    frozen: typing.Optional[bool] = None
    # Set when the miss is a host operation's held too long: seconds the
    # agent has been held or the filesystems frozen (the detail says
    # which). Such a miss is reported on that alone, not corroborated.
    held_for: typing.Optional[float] = None


# A healthy reply is 15 bytes; anything far longer is garbage, and is not
# worth parsing (a hostile agent could send megabytes of nested arrays).
MAX_REPLY_CHARS = 4096


# The replies of a healthy agent as libvirt hands them back (qemu-ga's
# reply printed again, compact; spaced as qemu-ga writes it): known text is
# looked up before any decoding, one hash look-up instead of the JSON
# decoder's Python calls and regular expressions, on every ping. Anything
# else is decoded.
HEALTHY_REPLIES = frozenset(('{"return":{}}', '{"return": {}}'))
_HEALTHY = (Outcome.OK, 'ok')
FREEZE_REPLIES = {form % status: status
                  for form in ('{"return":"%s"}', '{"return": "%s"}')
                  for status in ('frozen', 'thawed')}


def classify_reply(reply):
    """Check a guest-ping reply; return (Outcome, detail).

    A healthy agent answers ``{"return": {}}``. Anything else means the
    agent channel is carrying garbage, which is as bad as no answer.
    """
    if type(reply) is str and reply in HEALTHY_REPLIES:
        return _HEALTHY
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


def freeze_status_of(reply):
    """'frozen' or 'thawed' from a guest-fsfreeze-status reply; None for
    anything else."""
    if type(reply) is str and reply in FREEZE_REPLIES:
        return FREEZE_REPLIES[reply]
    if not isinstance(reply, (str, bytes)) or len(reply) > MAX_REPLY_CHARS:
        return None
    try:
        decoded = json.loads(reply)
    except (TypeError, ValueError, RecursionError):
        return None
    status = decoded.get('return') if isinstance(decoded, dict) else None
    return status if status in ('frozen', 'thawed') else None
