"""Stop and start the lab host's libvirtd, as a crash or an upgrade would.

There is no systemd on the lab host: lab/host-setup.sh starts libvirtd by
hand, and so does this module after a test killed it.
"""

import os
import signal
import subprocess
import time

import libvirt

PID_FILE = '/var/run/libvirtd.pid'


def pid():
    try:
        with open(PID_FILE) as f:
            value = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(value, 0)
    except ProcessLookupError:
        return None
    return value


def kill(signum=signal.SIGKILL, timeout=10.0):
    """Kill libvirtd (QEMU processes live on, as in a real crash)."""
    target = pid()
    if target is None:
        return
    os.kill(target, signum)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open('/proc/%d/stat' % target) as f:
                if ') Z' in f.read():
                    break  # a zombie: gone for libvirt's purposes
        except FileNotFoundError:
            break
        if time.monotonic() > deadline:
            raise RuntimeError('libvirtd %d did not exit' % target)
        time.sleep(0.05)


def start(uri='qemu:///system', timeout=60.0):
    """Start libvirtd and wait until ``uri`` answers; return the seconds
    it took. libvirtd re-attaches to the QEMU processes still running."""
    started = time.monotonic()
    if pid() is None:
        # Nothing open but stdin, stdout and stderr (Python's default,
        # kept on purpose): libvirtd keeps what it inherits for as long as
        # it runs, a lab lock held by whoever runs the tests included.
        subprocess.run(['/usr/sbin/libvirtd', '-d'], check=True,
                       close_fds=True)
    deadline = started + timeout
    while True:
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        conn.close()
        return time.monotonic() - started
