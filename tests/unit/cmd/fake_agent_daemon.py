"""The console script's main(), on libvirt's test driver, with faults an
operator's host has and the test driver lacks.

Run as ``python -m tests.unit.cmd.fake_agent_daemon CONTROL ARGS...``:
ARGS are the daemon's own, and the directory CONTROL says, one empty file
per fault, what goes wrong while the daemon runs:

* ``silent-NAME``: the guest agent of domain NAME does not answer (the
  test driver has no agent; every other guest answers every ping);
* ``hang-screenshot-NAME``: a screenshot of NAME never returns, as with
  a QEMU that no longer answers its monitor;
* ``hang-reset-NAME``: a reset of NAME never returns, likewise;
* ``hang-listing``: listing the domains never returns, as with a wedged
  libvirtd;
* ``slow-listing``: listing the domains takes 3 s, as on a busy
  libvirtd.

A call that hangs blocks its native thread for good, as libvirt does.
Used by test_daemon.py; it has no use in production.
"""

import os
import sys

import libvirt
import libvirt_qemu

from monitor import concurrency
from monitor.cmd import daemon

_native_time = concurrency.original('time')


def _hang():
    while True:
        _native_time.sleep(3600)


def install(control):
    def has(name):
        return os.path.exists(os.path.join(control, name))

    def agent_command(dom, command, timeout, flags):
        if has('silent-' + dom.name()):
            exc = libvirt.libvirtError('Guest agent is not responding: '
                                       'QEMU guest agent is not connected')
            exc.err = (libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                       libvirt.VIR_FROM_QEMU, str(exc),
                       libvirt.VIR_ERR_ERROR, None, None, None, -1, -1)
            raise exc
        return '{"return": {}}'

    real_screenshot = libvirt.virDomain.screenshot

    def screenshot(dom, stream, screen, flags=0):
        if has('hang-screenshot-' + dom.name()):
            _hang()
        return real_screenshot(dom, stream, screen, flags)

    real_reset = libvirt.virDomain.reset

    def reset(dom, flags=0):
        if has('hang-reset-' + dom.name()):
            _hang()
        return real_reset(dom, flags)

    def listing(real):
        def call(*args, **kwargs):
            if has('hang-listing'):
                _hang()
            if has('slow-listing'):
                _native_time.sleep(3)
            return real(*args, **kwargs)
        return call

    libvirt_qemu.qemuAgentCommand = agent_command
    libvirt.virDomain.screenshot = screenshot
    libvirt.virDomain.reset = reset
    for name in ('getAllDomainStats', 'listAllDomains'):
        setattr(libvirt.virConnect, name,
                listing(getattr(libvirt.virConnect, name)))


if __name__ == '__main__':
    install(sys.argv[1])
    sys.exit(daemon.main(sys.argv[2:]))
