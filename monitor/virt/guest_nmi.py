"""The libvirt edge of a ladder's nmi step: inject an NMI, then ask
whether the guest's agent answers again.

A guest booted with ``unknown_nmi_panic=1`` (or ``kernel.unknown_nmi_panic``,
or a crash kernel loaded with ``nmi_watchdog`` panics) panics on the NMI;
with a crash kernel it writes a vmcore, then reboots, and its agent
answers again. A guest that ignores NMIs logs one and carries on, still
silent, and the ladder's next step runs.

Runs on a native thread (``concurrency.NativeCall``, bounded by the
caller): nothing here logs or raises for libvirt errors.
"""

from monitor.virt import guest_actions
from monitor.virt.libvirt_errors import error_text

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # pragma: no cover - only on hosts without it
    libvirt = None
    libvirt_qemu = None

_PING = '{"execute":"guest-ping"}'


def inject_nmi(dom):
    """An NMI to every vCPU of the guest (virDomainInjectNMI)."""
    try:
        dom.injectNMI(0)
    except libvirt.libvirtError as exc:
        return guest_actions.ActionResult(
            False, 'NMI injection failed: %s' % error_text(exc))
    return guest_actions.ActionResult(True, 'NMI injected')


def agent_answers(dom, timeout):
    """Whether the guest's agent answers a guest-ping now."""
    try:
        libvirt_qemu.qemuAgentCommand(dom, _PING, max(1, int(timeout)), 0)
    except libvirt.libvirtError:
        return False
    return True
