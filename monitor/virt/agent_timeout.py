"""A domain's agent response timeout: read it, set it.

libvirt keeps one response timeout per running domain for the commands it
sends to the guest agent on its own behalf (virDomainAgentSetResponseTimeout,
``virsh guest-agent-timeout``). It also caps libvirt's guest-sync wait:
once an agent has timed out, every later command to it first waits for a
guest-sync, 5 s, or this timeout when it is shorter.

libvirt has no call that reads the value back. The QEMU driver keeps it in
the domain's status file (``<agentTimeout>`` in
``/run/libvirt/qemu/<name>.xml``, readable by root on the host libvirtd runs
on), which :func:`read` parses. Where that file cannot be read (a remote
libvirt, another status directory, no permission) the value is taken to be
libvirt's default (-1) and said to be assumed.

Runs in native threads: nothing here logs.
"""

import os
import re
import typing

from monitor.errors import AgentTimeoutUnchanged
from monitor.virt.libvirt_errors import error_text

try:
    import libvirt
except ImportError:  # pragma: no cover - exercised only on hosts without it
    libvirt = None

# libvirt's special values (virDomainAgentResponseTimeoutValues).
BLOCK = getattr(libvirt, 'VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_BLOCK', -2)
DEFAULT = getattr(libvirt, 'VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT', -1)
NOWAIT = getattr(libvirt, 'VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_NOWAIT', 0)

# Where the QEMU driver of a system libvirtd keeps its domains' status.
STATUS_DIR = '/run/libvirt/qemu'
# A status file is the whole live domain XML; a few hundred KiB at most.
_MAX_STATUS_BYTES = 4 * 1024 * 1024
_ELEMENT = re.compile(rb'<agentTimeout>\s*(-?\d+)\s*</agentTimeout>')


class Reading(typing.NamedTuple):
    """A domain's agent response timeout, and whether it was read
    (False: assumed to be libvirt's default)."""
    seconds: int
    known: bool


def describe(seconds):
    """The operator's wording of a timeout value."""
    if seconds == BLOCK:
        return 'block (%d)' % BLOCK
    if seconds == DEFAULT:
        return 'default (%d)' % DEFAULT
    if seconds == NOWAIT:
        return 'no wait (%d)' % NOWAIT
    return '%d s' % seconds


def read(name, status_dir=STATUS_DIR):
    """The agent response timeout of the running domain ``name`` from
    libvirt's status file; the default, not known, when it cannot be
    read."""
    if not status_dir or not name or os.sep in name:
        return Reading(DEFAULT, False)
    path = os.path.join(status_dir, name + '.xml')
    try:
        with open(path, 'rb') as status:
            text = status.read(_MAX_STATUS_BYTES)
    except OSError:
        return Reading(DEFAULT, False)
    found = _ELEMENT.search(text)
    if found is None:
        return Reading(DEFAULT, False)
    return Reading(int(found.group(1)), True)


def set_timeout(dom, seconds):
    """Set the agent response timeout of ``dom``.

    :raises AgentTimeoutUnchanged: libvirt refused.
    """
    try:
        dom.agentSetResponseTimeout(int(seconds), 0)
    except libvirt.libvirtError as exc:
        raise AgentTimeoutUnchanged(error_text(exc), _is_gone(exc)) from None


def lookup(conn, uuid):
    """The domain ``uuid`` of ``conn``.

    :raises AgentTimeoutUnchanged: it cannot be looked up.
    """
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        raise AgentTimeoutUnchanged(error_text(exc), _is_gone(exc)) from None


def domain_id(dom):
    """The domain's ID, which changes when it is started again (and with
    it the agent timeout goes back to libvirt's default); None when it
    cannot be read."""
    try:
        return dom.ID()
    except libvirt.libvirtError:
        return None


def _is_gone(exc):
    """Whether a libvirtError says the domain is no longer there or no
    longer running: its runtime agent timeout went with it."""
    return exc.get_error_code() in (
        libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)
