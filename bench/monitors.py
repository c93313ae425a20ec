"""The two monitors the benchmarks compare, behind one small interface.

``OurMonitor`` is the real ``guest-health-monitor`` console script (through
lab.daemon); ``PeerMonitor`` is Masakari's introspective instance monitor
from masakari-monitors, run by bench/peer/harness.py in its own virtualenv.
Both get the same timings (``Settings``), watch every domain on the host and
send their notifications to the same local masakari-api; the peer reaches it
through keystoneauth's ``none`` plugin with a fixed endpoint, exactly as
ours does, so no Keystone is involved on either side.

Each exposes what the benchmarks read from its log: the sweeps (start time,
duration, guests pinged) and the moment it decided to notify for a domain.
"""

import os
import re
import subprocess
import time
import typing

from lab import LAB_CACHE
from lab import daemon as lab_daemon

PEER_VENV = os.path.join(LAB_CACHE, 'masakari-monitors-venv')
PEER_HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            'peer', 'harness.py')

# The agent socket path libvirt generates for a channel without a source
# path. The peer finds guests by a regex on this path; its default expects
# the path Nova sets.
PEER_AGENT_SOCKET = (r'/var/lib/libvirt/qemu/channel/target/domain-\d+-[^/]+'
                     r'/org\.qemu\.guest_agent\.0')

# "2026-11-22 00:02:06,454 ..." (ours) or "2026-11-22 00:02:06.454 ..." (the
# peer's oslo.log): local time, milliseconds.
_STAMP = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[,.](\d{3}) ')
_OUR_SWEEP = re.compile(r'Sweep: (\d+) domains listed, (\d+) pinged, '
                        r'(\d+) missed in ([\d.]+) s')
_OUR_FAILED = re.compile(r'Domain \S+ \(([0-9a-f-]{36})\) failed \(')
_OUR_MISSED = r'Domain \S+ \(%s\) missed a ping'
_OUR_ANSWERED = (r'HA engine (accepted|already had) the notification for '
                 r'domain \S+ \(%s\)')
_PEER_SWEEP = re.compile(r'Peer sweep started at ([\d.]+) took ([\d.]+) s, '
                         r'(\d+) pinged')
_PEER_NOTIFY = re.compile(r"Send a notification\. .*'instance_uuid': "
                          r"'([0-9a-f-]{36})'")


class Settings(typing.NamedTuple):
    """Timings both monitors run with."""
    interval: int = 2
    ping_timeout: int = 1
    failure_threshold: int = 3

    @property
    def label(self):
        return '%d/%d/%d' % self

    @classmethod
    def parse(cls, text):
        """'10/2/3' -> Settings(10, 2, 3)."""
        try:
            return cls(*(int(part) for part in text.split('/')))
        except (TypeError, ValueError):
            raise ValueError('settings %r: expected interval/ping_timeout/'
                             'failure_threshold, e.g. 10/2/3' % text)


# Masakari's defaults (masakari-monitors' [introspectiveinstancemonitor]
# options; also ours), and the fast timings the lab tests use.
MASAKARI_DEFAULTS = Settings(10, 2, 3)
FAST = Settings(2, 1, 3)


def our_confirm_interval():
    """The daemon's default [monitor] confirm_interval, which the
    benchmarks leave as it is."""
    from monitor.daemon import scheduler
    return next(opt.default for opt in scheduler.SCHEDULER_OPTS
                if opt.name == 'confirm_interval')


class Sweep(typing.NamedTuple):
    started: float  # epoch seconds
    duration: float
    pinged: int


def log_time(line):
    """Epoch seconds of a log line's leading local timestamp, or None."""
    match = _STAMP.match(line)
    if match is None:
        return None
    whole = time.mktime(time.strptime(match.group(1), '%Y-%m-%d %H:%M:%S'))
    return whole + int(match.group(2)) / 1000.0


def _read(path):
    try:
        with open(path, errors='replace') as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def _first_times(lines, pattern):
    """{uuid: time of the first line matching ``pattern``}."""
    found = {}
    for line in lines:
        match = pattern.search(line)
        if match and match.group(1) not in found:
            found[match.group(1)] = log_time(line)
    return found


class MonitorGone(Exception):
    """The monitor process exited while a benchmark was using it."""


class _Monitor:
    name = None
    log_path = None

    def wait_for_sweeps(self, count, since, timeout, pinged=0, skip=0):
        """Wait for ``count`` sweeps that started after ``since`` (epoch)
        and pinged at least ``pinged`` guests, after the first ``skip`` of
        them; return those ``count`` sweeps."""
        deadline = time.monotonic() + timeout
        while True:
            fresh = [s for s in self.sweeps()
                     if s.started >= since and s.pinged >= pinged]
            if len(fresh) >= skip + count:
                return fresh[skip:skip + count]
            if not self.running:
                raise MonitorGone('%s monitor exited; last lines of %s:\n%s'
                                  % (self.name, self.log_path,
                                     '\n'.join(self.output()[-15:])))
            if time.monotonic() > deadline:
                raise TimeoutError(
                    '%s monitor: %d of %d sweeps after %.0f s; log %s'
                    % (self.name, len(fresh), skip + count, timeout,
                       self.log_path))
            time.sleep(0.2)


    def output(self):
        """The lines the process wrote, for a report of why it died."""
        return _read(self.log_path)

    def timeline(self, uuid, since):
        """{event: seconds after ``since``} for one failing domain: the
        first sweep that started after ``since`` ('round') and when the
        monitor decided to notify ('queued')."""
        found = {}
        rounds = [s.started for s in self.sweeps() if s.started >= since]
        if rounds:
            found['round'] = min(rounds) - since
        detected = self.detections().get(uuid)
        if detected is not None:
            found['queued'] = detected - since
        return found


class OurMonitor(_Monitor):
    """guest-health-monitor with the lab's settings and a debug log (the
    per-sweep line is a debug line)."""

    name = 'ours'

    def __init__(self, work_dir, endpoint, hostname, settings=Settings(),
                 confirm_interval=None):
        overrides = {}
        if confirm_interval is not None:
            overrides['monitor__confirm_interval'] = str(confirm_interval)
        options = lab_daemon.lab_options(
            work_dir, endpoint, hostname,
            monitor__interval=str(settings.interval),
            monitor__ping_timeout=str(settings.ping_timeout),
            monitor__failure_threshold=str(settings.failure_threshold),
            **overrides)
        self._daemon = lab_daemon.MonitorDaemon(work_dir, options)
        self.log_path = self._daemon.log_path

    def start(self):
        self._daemon.start()
        return self

    def stop(self):
        self._daemon.stop()

    @property
    def pid(self):
        return self._daemon.proc.pid

    @property
    def running(self):
        return self._daemon.running

    def sweeps(self):
        found = []
        for line in _read(self.log_path):
            match = _OUR_SWEEP.search(line)
            if match:
                duration = float(match.group(4))
                # The line is written when the sweep ends.
                found.append(Sweep(log_time(line) - duration, duration,
                                   int(match.group(2))))
        return found

    def detections(self):
        """{uuid: when it queued the notification}."""
        return _first_times(_read(self.log_path), _OUR_FAILED)

    def timeline(self, uuid, since):
        """As for any monitor, plus each missed ping applied ('miss N',
        from the debug log) and the engine's answer ('engine answered')."""
        found = super().timeline(uuid, since)
        missed = re.compile(_OUR_MISSED % re.escape(uuid))
        answered = re.compile(_OUR_ANSWERED % re.escape(uuid))
        misses = 0
        for line in _read(self.log_path):
            stamp = log_time(line)
            if stamp is None or stamp < since:
                continue
            if missed.search(line):
                misses += 1
                found['miss %d' % misses] = stamp - since
            elif answered.search(line) and 'engine answered' not in found:
                found['engine answered'] = stamp - since
        return found


def peer_config(work_dir, endpoint, hostname, settings):
    log_path = os.path.join(work_dir, 'peer.log')
    return log_path, {
        'DEFAULT': {'hostname': hostname, 'debug': 'false',
                    'log_file': log_path},
        'libvirt': {'connection_uri': 'qemu:///system'},
        'introspectiveinstancemonitor': {
            'guest_monitoring_interval': str(settings.interval),
            'guest_monitoring_timeout': str(settings.ping_timeout),
            'guest_monitoring_failure_threshold':
                str(settings.failure_threshold),
            'qemu_guest_agent_sock_path': PEER_AGENT_SOCKET,
        },
        # Its default: 12 retries 10 s apart.
        'callback': {'retry_max': '12', 'retry_interval': '10'},
        'api': {'auth_type': 'none', 'endpoint': endpoint},
    }


class PeerMonitor(_Monitor):
    """masakari-introspectiveinstancemonitor (masakari-monitors), timed by
    bench/peer/harness.py. It logs at info level: its sweep line is the
    harness's and its decision to notify is an info line."""

    name = 'peer'

    def __init__(self, work_dir, endpoint, hostname, settings=Settings(),
                 venv=PEER_VENV):
        os.makedirs(work_dir, exist_ok=True)
        self.work_dir = work_dir
        self.python = os.path.join(venv, 'bin', 'python')
        self.config_path = os.path.join(work_dir, 'peer.conf')
        self.output_path = os.path.join(work_dir, 'peer.out')
        self.log_path, options = peer_config(work_dir, endpoint, hostname,
                                             settings)
        lab_daemon.write_config(self.config_path, options)
        self.proc = None

    def start(self):
        with open(self.output_path, 'ab') as output:
            self.proc = subprocess.Popen(
                [self.python, PEER_HARNESS, '--config-file',
                 self.config_path],
                stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, cwd=self.work_dir,
                start_new_session=True)
        return self

    def stop(self, timeout=15):
        lab_daemon.terminate(self.proc, timeout)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        # Errors before its logging is set up go to standard error.
        return _read(self.output_path) + _read(self.log_path)

    def sweeps(self):
        found = []
        for line in _read(self.log_path):
            match = _PEER_SWEEP.search(line)
            if match:
                found.append(Sweep(float(match.group(1)),
                                   float(match.group(2)),
                                   int(match.group(3))))
        return found

    def detections(self):
        """{uuid: when it started sending the notification}."""
        return _first_times(_read(self.log_path), _PEER_NOTIFY)


def peer_installed(venv=PEER_VENV):
    return os.path.exists(os.path.join(venv, 'bin', 'python'))
