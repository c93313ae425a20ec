"""The simulated ``libvirt_qemu`` module: agent commands (see libvirt.py)."""

import libvirt


def qemuAgentCommand(domain, command, timeout, flags):  # noqa: N802
    return libvirt.agent_command(domain, command, timeout)
