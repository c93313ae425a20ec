"""The simulated private ``libvirtmod_qemu`` module, as called by the
peer: like the real one, it returns None for every kind of failure."""

import libvirt


def virDomainQemuAgentCommand(domain, command, timeout, flags):  # noqa: N802
    try:
        return libvirt.agent_command(domain, command, timeout)
    except libvirt.libvirtError:
        return None
