"""libvirt's errors at the edge: how they are worded for the operator,
which mean the connection itself is lost, and what each means for a
guest-ping."""

from monitor.health.ping_outcome import Outcome

try:
    import libvirt
except ImportError:  # pragma: no cover - exercised only on hosts without it
    libvirt = None

# Longest exception text kept: an exception carrying a whole reply or XML
# would flood the log.
_MAX_TEXT = 200


def error_text(exc):
    """A libvirtError as 'message (code N)'."""
    message = exc.get_error_message() if hasattr(
        exc, 'get_error_message') else None
    return '%s (code %s)' % (message or exc, exc.get_error_code())


def exception_text(exc):
    """Any exception's text, bounded."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + '...'


def is_disconnect(exc):
    """Whether a libvirtError says the connection is lost (reconnect),
    rather than something about one domain."""
    return is_disconnect_code(exc.get_error_code(), exc.get_error_domain())


def is_disconnect_code(code, domain):
    """True when a libvirt error (code, domain) means the connection
    itself is lost.

    Only these errors trigger a reconnect; everything else is about one
    domain.
    """
    if code in (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN):
        return True
    return (code in (libvirt.VIR_ERR_SYSTEM_ERROR,
                     libvirt.VIR_ERR_INTERNAL_ERROR)
            and domain in (libvirt.VIR_FROM_REMOTE, libvirt.VIR_FROM_RPC))


def classify_error(code, domain):
    """The ping Outcome of a libvirt error (code, domain) raised by a
    guest-ping."""
    if is_disconnect_code(code, domain):
        return Outcome.DISCONNECTED
    if code in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_INVALID_DOMAIN):
        return Outcome.GONE
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        # "domain is not running": paused, or going down.
        return Outcome.NOT_RUNNING
    if code == libvirt.VIR_ERR_OPERATION_TIMEOUT:
        # "cannot acquire state change lock (held by agent=...)": libvirt
        # waited 30 s for another agent command (a freeze whose hook is
        # quiescing, a quiesced snapshot, another client's command) and
        # never sent the ping. An agent that does not answer is
        # VIR_ERR_AGENT_UNRESPONSIVE instead.
        return Outcome.BUSY
    if code == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED:
        # "QEMU guest agent is not configured".
        return Outcome.NO_AGENT
    if code == libvirt.VIR_ERR_NO_SUPPORT:
        # "this function is not supported by the connection driver": the
        # driver (test://, or another hypervisor than QEMU) cannot run
        # agent commands at all. Counting that as misses would report
        # every guest on the host.
        return Outcome.NO_AGENT
    # VIR_ERR_AGENT_UNRESPONSIVE (hung, not connected, in error),
    # VIR_ERR_AGENT_UNSYNCED and anything we do
    # not know: the guest did not answer. Counting an unknown error as a
    # miss keeps a dead guest from hiding behind an unexpected code; the
    # threshold still needs several in a row.
    return Outcome.MISSED
