"""masakari-instancemonitor (masakari-monitors 22.0.0) on the lab host.

It runs beside the monitor in production (docs/migration-from-masakari.md)
and reports libvirt events of its own to the same masakari-api; the lab runs
it the same way to check that one failure gives one stored notification.
It is installed by bench/peer/setup.sh (``make lab``) in its own virtualenv
with the libvirt binding, and reaches the lab's masakari-api through
keystoneauth's ``none`` plugin with a fixed endpoint, as the monitor does.
"""

import os
import subprocess
import time

from lab import LAB_CACHE
from lab import daemon as lab_daemon

VENV = os.path.join(LAB_CACHE, 'masakari-monitors-venv')
# Logged (debug) right before it opens its libvirt connection and
# subscribes to domain events.
_READY = 'Using uri:'
# Its subscriptions follow the line above at once; a moment for them.
_SUBSCRIBE_MARGIN = 2.0


def installed(venv=VENV):
    return os.access(os.path.join(venv, 'bin', 'masakari-instancemonitor'),
                     os.X_OK)


def config(work_dir, endpoint, hostname):
    """Its configuration for the lab: the host's name as the monitor sends
    it, the lab's masakari-api, its own retry defaults."""
    log_path = os.path.join(work_dir, 'instancemonitor.log')
    return log_path, {
        'DEFAULT': {'hostname': hostname, 'debug': 'true',
                    'log_file': log_path},
        'libvirt': {'connection_uri': 'qemu:///system'},
        'callback': {'retry_max': '12', 'retry_interval': '10'},
        'api': {'auth_type': 'none', 'endpoint': endpoint},
    }


class InstanceMonitor:
    """One masakari-instancemonitor process with its config and log."""

    def __init__(self, work_dir, endpoint, hostname, venv=VENV):
        os.makedirs(work_dir, exist_ok=True)
        self.binary = os.path.join(venv, 'bin', 'masakari-instancemonitor')
        self.config_path = os.path.join(work_dir, 'instancemonitor.conf')
        self.output_path = os.path.join(work_dir, 'instancemonitor.out')
        self.log_path, options = config(work_dir, endpoint, hostname)
        lab_daemon.write_config(self.config_path, options)
        self.proc = None

    def start(self, timeout=30.0):
        """Start it and return once it subscribed to libvirt's events."""
        with open(self.output_path, 'ab') as output:
            self.proc = subprocess.Popen(
                [self.binary, '--config-file', self.config_path],
                stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while _READY not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    'masakari-instancemonitor did not start (exit %s): %s'
                    % (self.proc.returncode, self.output()[-2000:]))
            time.sleep(0.2)
        time.sleep(_SUBSCRIBE_MARGIN)
        return self

    def stop(self, timeout=15):
        lab_daemon.terminate(self.proc, timeout)

    def log(self):
        return _read(self.log_path)

    def output(self):
        return _read(self.output_path) + _read(self.log_path)


def _read(path):
    try:
        with open(path, errors='replace') as text:
            return text.read()
    except FileNotFoundError:
        return ''
