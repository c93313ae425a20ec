"""Run the real ``guest-health-monitor`` console script against the lab.

Integration tests, the demo and the benchmarks start the daemon exactly as
an operator would: a config file and the console script, as a separate
process, with its log in a file they can read.
"""

import os
import re
import signal
import subprocess
import sys
import time

from lab import REPO_ROOT
from lab import guests


def terminate(proc, timeout=15):
    """SIGTERM ``proc`` (started with start_new_session=True), and SIGKILL
    its whole process group if it has not ended within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def console_script():
    """The console script next to the interpreter running the tests."""
    candidate = os.path.join(os.path.dirname(sys.executable),
                             'guest-health-monitor')
    if os.path.exists(candidate):
        return [candidate]
    return [sys.executable, '-m', 'monitor.cmd.launcher']


def write_config(path, options):
    """Write ``{section: {key: value}}`` as an ini file; lists become
    repeated keys (oslo.config multi-valued options)."""
    lines = []
    for section, values in options.items():
        lines.append('[%s]' % section)
        for key, value in values.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append('%s = %s' % (key, item))
        lines.append('')
    with open(path, 'w') as f:
        f.write('\n'.join(lines))


def lab_options(work_dir, endpoint, hostname, **overrides):
    """Settings for the lab: fast timings, the local masakari-api, a
    durable (sqlite) state store under ``work_dir``."""
    state = os.path.join(work_dir, 'state')
    options = {
        'DEFAULT': {'host': hostname, 'state_path': state, 'debug': 'true'},
        'libvirt': {'connection_uri': 'qemu:///system'},
        'monitor': {'interval': '2', 'ping_timeout': '1',
                    'failure_threshold': '3'},
        'notifier': {'endpoint': endpoint, 'auth_type': 'none',
                     'request_timeout': '5'},
        'cache': {'backend': 'guest_health_monitor.sqlite',
                  'backend_argument':
                      ['filename:%s' % os.path.join(state,
                                                    'domains.sqlite')]},
    }
    if os.environ.get('PYTEST_XDIST_WORKER'):
        # Integration tests in parallel processes share one libvirtd: each
        # daemon watches its own process's guests alone, or it would report
        # the crashes another process's tests cause. A test run in one
        # process keeps the default (no filter).
        options['monitor']['agent_channel_path_regex'] = (
            guests.own_agent_channel_regex())
    for key, value in overrides.items():
        section, _, option = key.partition('__')
        options.setdefault(section, {})[option] = value
    return options


class MonitorDaemon:
    """One guest-health-monitor process with its config and log."""

    def __init__(self, work_dir, options, args=()):
        self.work_dir = work_dir
        # Command-line options after --config-file (--log-file, --debug).
        self.args = list(args)
        os.makedirs(work_dir, exist_ok=True)
        self.config_path = os.path.join(work_dir, 'monitor.conf')
        self.log_path = os.path.join(work_dir, 'monitor.log')
        write_config(self.config_path, options)
        self.proc = None
        self._log = None

    def start(self):
        self._log = open(self.log_path, 'ab')
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        env.setdefault('PYTHONPATH', REPO_ROOT)
        self.proc = subprocess.Popen(
            console_script() + ['--config-file', self.config_path]
            + self.args,
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
            cwd=self.work_dir, start_new_session=True)
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self._finish()

    def kill(self):
        """SIGKILL: the daemon gets no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self._finish()

    def _finish(self):
        status = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return status

    def log(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def wait_for_log(self, pattern, timeout, count=1):
        """Wait until ``pattern`` (regex) has matched ``count`` log lines;
        return the matches. Fails fast if the daemon died."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            matches = [line for line in self.log().splitlines()
                       if regex.search(line)]
            if len(matches) >= count:
                return matches
            if not self.running:
                raise AssertionError(
                    'monitor exited (%s) while waiting for %r; log tail:\n%s'
                    % (self.proc.returncode, pattern, self.tail()))
            if time.monotonic() > deadline:
                raise AssertionError(
                    'no %r in the monitor log after %.0f s; log tail:\n%s'
                    % (pattern, timeout, self.tail()))
            time.sleep(0.2)

    def tail(self, lines=40):
        return '\n'.join(self.log().splitlines()[-lines:])
