"""Real Prometheus Alertmanagers on 127.0.0.1 for the lab.

Each instance runs the Debian package's binary with its own storage
directory, a free port, no cluster (two instances are two independent
Alertmanagers, as an HA pair whose gossip is down) and a minimal
configuration: one route to a receiver that sends nowhere, short group
waits. Tests read what it holds through its API (``/api/v2/alerts``).

``alertmanagers`` (a pytest fixture) starts them on demand and stops
every one at teardown, each within a deadline.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

import lab
from lab import daemon as lab_daemon

BINARY = os.environ.get('LAB_ALERTMANAGER',
                        '/usr/bin/prometheus-alertmanager')

# Seconds an Alertmanager has to answer its readiness check after start.
START_TIMEOUT = 30.0

CONFIG = """\
route:
  receiver: nowhere
  group_by: [alertname, host]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: nowhere
"""


def available():
    return os.access(BINARY, os.X_OK)


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Alertmanager:
    """One Alertmanager process with its config, storage and log."""

    def __init__(self):
        self.work_dir = tempfile.mkdtemp(prefix='lab-alertmanager-')
        self.port = _free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.proc = None
        self._log = None

    def start(self):
        config = os.path.join(self.work_dir, 'alertmanager.yml')
        with open(config, 'w') as f:
            f.write(CONFIG)
        storage = os.path.join(self.work_dir, 'data')
        os.makedirs(storage, exist_ok=True)
        self._log = open(os.path.join(self.work_dir, 'alertmanager.log'),
                         'ab')
        self.proc = subprocess.Popen(
            [BINARY, '--config.file=' + config,
             '--storage.path=' + storage,
             '--web.listen-address=127.0.0.1:%d' % self.port,
             # No gossip: an independent instance.
             '--cluster.listen-address='],
            stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise RuntimeError('Alertmanager did not start on %s: %s'
                                   % (self.url, log[-2000:]))
            time.sleep(0.2)
        return self

    def _ready(self):
        try:
            with urllib.request.urlopen(self.url + '/-/ready',
                                        timeout=2) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def alerts(self, active=None):
        """The alerts its API lists (gettableAlerts): the firing ones;
        ``active=False`` lists only those suppressed or not yet
        processed. A resolved alert is not listed."""
        query = '' if active is None else '?active=%s' % str(active).lower()
        with urllib.request.urlopen(self.url + '/api/v2/alerts' + query,
                                    timeout=5) as answer:
            return json.loads(answer.read())

    def log(self):
        try:
            with open(os.path.join(self.work_dir, 'alertmanager.log'),
                      errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.proc is not None:
            lab_daemon.terminate(self.proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove(self):
        self.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)


@pytest.fixture(scope='module')
def alertmanagers():
    """Factory: ``alertmanagers(count)`` starts ``count`` independent
    Alertmanagers and returns them; all are stopped at the end of the
    module."""
    lab.require(available(), '%s missing (package prometheus-alertmanager)'
                % BINARY)
    started = []

    def start(count=1):
        new = []
        for _ in range(count):
            instance = Alertmanager()
            started.append(instance)
            new.append(instance.start())
        return new

    yield start
    for instance in started:
        instance.remove()
