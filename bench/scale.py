"""Scale benchmark: the real daemon (and the peer) on a simulated libvirt.

Only libvirt's Python binding is replaced (bench/simlibvirt, put first on
PYTHONPATH); the monitor's console script, its libvirt edge and everything
behind it run unchanged. For each N and store backend it prints the median
round duration, CPU seconds per round, % of one core and RSS; at the
largest N it then hangs 1 % of the agents and prints how long until every
one of them reached a local notification sink (an HTTP server on
127.0.0.1 answering 202), and how far apart the rounds started meanwhile.
The peer runs on the same edge, capped in time.

    .venv/bin/python -m bench.scale [--sizes 100,500,2000,5000]
        [--backends memory,sqlite] [--rounds 3] [--no-peer] [--code DIR]

``--code DIR`` runs the daemon from another checkout of the monitor (for a
before/after comparison on the same edge). Figures only; nothing is
asserted.
"""

import argparse
import http.server
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from bench import binding_cost
from bench import monitors
from bench import procstat
from bench.figures import median
from bench.figures import say
from lab import REPO_ROOT
from lab import daemon as lab_daemon

SIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'simlibvirt')
HOSTNAME = 'simulated-host'
# Both monitors run at Masakari's default interval: a round's CPU seconds
# are a share of a core over this many seconds.
_INTERVAL = 10.0

_SWEEP = re.compile(r'Sweep: (\d+) domains listed, (\d+) pinged, '
                    r'(\d+) missed in ([\d.]+) s'
                    r'(?: \(answering lane ([\d.]+) s)?')
_PEER_SWEEP = re.compile(r'Peer sweep started at ([\d.]+) took ([\d.]+) s, '
                         r'(\d+) pinged')

BACKENDS = {'memory': 'dogpile.cache.memory', 'dbm': 'dogpile.cache.dbm',
            'sqlite': 'guest_health_monitor.sqlite'}


class Sink:
    """A notification endpoint on 127.0.0.1 that answers 202 and records
    when each instance was first notified."""

    def __init__(self):
        self.first = {}
        self._lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the server's name
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length)
                try:
                    uuid = json.loads(body)['notification']['payload'][
                        'instance_uuid']
                except (ValueError, KeyError, TypeError):
                    uuid = None
                if uuid is not None:
                    with sink._lock:
                        sink.first.setdefault(uuid, time.time())
                reply = json.dumps({'notification': {
                    'notification_uuid': 'sink-%s' % uuid}}).encode()
                self.send_response(202)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                       Handler)
        self.endpoint = 'http://127.0.0.1:%d/v1' % self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        daemon=True)
        self._thread.start()

    def reset(self):
        with self._lock:
            self.first = {}

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def _sim_env(work_dir, size, code_dir, max_client_requests, max_workers):
    return dict(
        os.environ, PYTHONUNBUFFERED='1',
        PYTHONPATH=os.pathsep.join([SIM_DIR, code_dir]),
        GHM_SIM_DOMAINS=str(size),
        GHM_SIM_MAX_CLIENT_REQUESTS=str(max_client_requests),
        GHM_SIM_MAX_WORKERS=str(max_workers),
        GHM_SIM_HUNG_FILE=os.path.join(work_dir, 'hung'),
        GHM_SIM_COUNT_FILE=os.path.join(work_dir, 'count'))


def _lines(path):
    try:
        with open(path, errors='replace') as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


class Process:
    """One monitor process on the simulated edge."""

    def __init__(self, argv, env, work_dir, log_path):
        self.work_dir = work_dir
        self.log_path = log_path
        self._out = open(os.path.join(work_dir, 'output'), 'ab')
        self.proc = subprocess.Popen(
            argv, env=env, cwd=work_dir, stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True)

    @property
    def running(self):
        return self.proc.poll() is None

    def usage(self):
        return procstat.process_usage(self.proc.pid)

    def agent_commands(self):
        for line in _lines(os.path.join(self.work_dir, 'count')):
            return int(line.split()[0])
        return 0

    def hang(self, uuids):
        path = os.path.join(self.work_dir, 'hung')
        with open(path + '.tmp', 'w') as f:
            f.write(''.join(u + '\n' for u in uuids))
        os.rename(path + '.tmp', path)
        return time.time()

    def stop(self):
        if self.running:
            lab_daemon.terminate(self.proc, 20)
        self._out.close()

    def tail(self, count=15):
        lines = _lines(os.path.join(self.work_dir, 'output'))
        return '\n'.join((lines + _lines(self.log_path))[-count:])


def start_ours(work_dir, size, backend, endpoint, code_dir, libvirtd,
               monitor_options):
    state = os.path.join(work_dir, 'state')
    cache = {'backend': BACKENDS.get(backend, backend)}
    if backend == 'dbm':
        cache['backend_argument'] = [
            'filename:%s' % os.path.join(state, 'domains.dbm')]
    log_path = os.path.join(work_dir, 'monitor.log')
    options = {
        'DEFAULT': {'host': HOSTNAME, 'state_path': state, 'debug': 'true',
                    'log_file': log_path},
        'libvirt': {'connection_uri': 'qemu:///system'},
        'monitor': dict(monitor_options),
        'notifier': {'endpoint': endpoint, 'auth_type': 'none',
                     'request_timeout': '5'},
        'cache': cache,
    }
    config = os.path.join(work_dir, 'monitor.conf')
    lab_daemon.write_config(config, options)
    argv = [sys.executable, '-m', 'monitor.cmd.daemon', '--config-file', config]
    return Process(argv, _sim_env(work_dir, size, code_dir, *libvirtd),
                   work_dir, log_path)


def start_peer(work_dir, size, endpoint, libvirtd):
    log_path, options = monitors.peer_config(
        work_dir, endpoint, HOSTNAME,
        monitors.Settings(interval=10, ping_timeout=2, failure_threshold=3))
    config = os.path.join(work_dir, 'peer.conf')
    lab_daemon.write_config(config, options)
    python = os.path.join(monitors.PEER_VENV, 'bin', 'python')
    env = _sim_env(work_dir, size, REPO_ROOT, *libvirtd)
    # The harness imports nothing from this repository.
    env['PYTHONPATH'] = SIM_DIR
    return Process([python, monitors.PEER_HARNESS, '--config-file', config],
                   env, work_dir, log_path)


def our_rounds(proc):
    """[(end epoch, duration, answering lane)] from the daemon's log."""
    found = []
    for line in _lines(proc.log_path):
        match = _SWEEP.search(line)
        if match:
            answering = match.group(5)
            found.append((monitors.log_time(line), float(match.group(4)),
                          float(answering) if answering else None))
    return found


def peer_rounds(proc):
    found = []
    for line in _lines(proc.log_path):
        match = _PEER_SWEEP.search(line)
        if match:
            duration = float(match.group(2))
            found.append((float(match.group(1)) + duration, duration, None))
    return found


def wait_rounds(proc, reader, count, timeout):
    """Wait until ``count`` rounds are logged; return them, or the ones
    seen when ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        rounds = reader(proc)
        if len(rounds) >= count:
            return rounds
        if not proc.running:
            raise RuntimeError('monitor exited; last lines:\n' + proc.tail())
        if time.monotonic() > deadline:
            return rounds
        time.sleep(0.2)


def measure(proc, reader, rounds, timeout):
    """Skip the first round (every domain is new), then measure
    ``rounds`` rounds: durations, CPU and RSS."""
    first = wait_rounds(proc, reader, 1, timeout)
    if not first:
        return None
    cpu0, t0 = proc.usage().cpu_seconds, time.monotonic()
    commands0 = proc.agent_commands()
    seen = wait_rounds(proc, reader, 1 + rounds, timeout)
    usage, t1 = proc.usage(), time.monotonic()
    window = seen[1:]
    if not window:
        return None
    cpu = usage.cpu_seconds - cpu0
    return {'round': median([r[1] for r in window]),
            # Pings and the freeze-status checks among them (one per
            # domain every 30 s): what the simulated binding did.
            'commands_per_round': (proc.agent_commands() - commands0)
            / len(window),
            'answering': median([r[2] for r in window if r[2] is not None]),
            'cpu_per_round': cpu / len(window),
            'core': 100.0 * cpu / (t1 - t0),
            'rss_mib': usage.rss_kib / 1024.0,
            'rounds': len(window)}


def hung_detection(proc, sink, size, fraction, timeout):
    """Hang every (1/fraction)-th agent; return (seconds until every hung
    one was notified or None, how many were, the hung count, the longest
    gap between two round ends meanwhile)."""
    step = max(1, int(round(1 / fraction)))
    hung = ['00000000-0000-4000-8000-%012d' % i
            for i in range(step // 2, size, step)]
    sink.reset()
    before = len(our_rounds(proc))
    hung_at = proc.hang(hung)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.running:
        if all(u in sink.first for u in hung):
            break
        time.sleep(0.5)
    notified = {u: sink.first[u] - hung_at for u in hung if u in sink.first}
    ends = [r[0] for r in our_rounds(proc)[before:]]
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    every = max(notified.values()) if len(notified) == len(hung) else None
    return {'every': every, 'median': median(list(notified.values())),
            'notified': len(notified), 'hung': len(hung),
            'max_gap': max(gaps) if gaps else None,
            'false': len(set(sink.first) - set(hung))}


def crash_latency(args, sink, size=10):
    """Hang one agent after another (each at a random moment of the
    interval, the earlier ones staying hung) on a small host; return the
    seconds from each hang to its notification."""
    work_dir = tempfile.mkdtemp(prefix='ghm-scale-crash-')
    options = {}
    if args.max_concurrent_pings:
        options['max_concurrent_pings'] = str(args.max_concurrent_pings)
    proc = start_ours(work_dir, size, 'memory', sink.endpoint, args.code,
                      (args.max_client_requests, args.max_workers), options)
    latencies = []
    try:
        wait_rounds(proc, our_rounds, 2, args.round_timeout)
        hung = []
        for i in range(min(args.crashes, size)):
            time.sleep(random.uniform(0, 10))
            uuid = '00000000-0000-4000-8000-%012d' % i
            hung.append(uuid)
            sink.reset()
            hung_at = proc.hang(hung)
            deadline = time.monotonic() + 90
            while uuid not in sink.first and time.monotonic() < deadline:
                time.sleep(0.1)
            latencies.append(sink.first[uuid] - hung_at
                             if uuid in sink.first else None)
        return latencies
    finally:
        proc.stop()
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)


def run_ours(args, sink, size, backend):
    work_dir = tempfile.mkdtemp(prefix='ghm-scale-%d-%s-' % (size, backend))
    options = {}
    if args.max_concurrent_pings:
        options['max_concurrent_pings'] = str(args.max_concurrent_pings)
    proc = start_ours(work_dir, size, backend, sink.endpoint, args.code,
                      (args.max_client_requests, args.max_workers), options)
    try:
        figures = measure(proc, our_rounds, args.rounds,
                          timeout=args.round_timeout)
        if figures and size == max(args.sizes) and args.hung:
            figures['hung'] = hung_detection(proc, sink, size, args.hung,
                                             args.hung_timeout)
        return figures
    finally:
        proc.stop()
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)


def run_peer(args, sink, size):
    work_dir = tempfile.mkdtemp(prefix='ghm-scale-peer-%d-' % size)
    proc = start_peer(work_dir, size, sink.endpoint,
                      (args.max_client_requests, args.max_workers))
    try:
        # Start measuring once it pings (imports and config are done).
        deadline = time.monotonic() + args.peer_cap
        while proc.agent_commands() == 0 and time.monotonic() < deadline:
            if not proc.running:
                raise RuntimeError('peer exited; last lines:\n'
                                   + proc.tail())
            time.sleep(0.2)
        cpu0, pings0 = proc.usage().cpu_seconds, proc.agent_commands()
        started = time.monotonic()
        rounds = wait_rounds(proc, peer_rounds, 2,
                             max(0.0, deadline - started))
        elapsed = time.monotonic() - started
        usage = proc.usage()
        pings = proc.agent_commands() - pings0
        if len(rounds) >= 2:
            figures = {'round': median([r[1] for r in rounds[1:]]),
                       'reached': None}
        else:
            # A serial sweep of this size does not end within the cap:
            # extrapolate from the pings made so far.
            rate = pings / elapsed if elapsed else 0
            figures = {'round': size / rate if rate else None,
                       'reached': pings}
        cpu = usage.cpu_seconds - cpu0
        figures.update(
            cpu_per_round=cpu / pings * size if pings else None,
            core=100.0 * cpu / elapsed if elapsed else None,
            rss_mib=usage.rss_kib / 1024.0, elapsed=elapsed)
        return figures
    finally:
        proc.stop()
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)


def _f(value, digits=2, unit=''):
    return 'n/a' if value is None else '%.*f%s' % (digits, value, unit)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='100,500,2000,5000')
    parser.add_argument('--backends', default='memory',
                        help='memory, sqlite, dbm or a dogpile backend name')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--hung', type=float, default=0.01,
                        help='fraction of agents hung at the largest size '
                             '(0: skip)')
    parser.add_argument('--hung-timeout', type=float, default=180.0)
    parser.add_argument('--round-timeout', type=float, default=240.0)
    parser.add_argument('--max-concurrent-pings', type=int, default=None,
                        help="the daemon's [monitor] max_concurrent_pings "
                             '(default: its own default)')
    parser.add_argument('--max-client-requests', type=int, default=5,
                        help="the simulated libvirtd's max_client_requests")
    parser.add_argument('--max-workers', type=int, default=20,
                        help="the simulated libvirtd's max_workers")
    parser.add_argument('--crashes', type=int, default=0,
                        help='hang this many agents in turn on a host of '
                             '10 and print each hang-to-notification time')
    parser.add_argument('--no-peer', action='store_true')
    parser.add_argument('--no-ours', action='store_true',
                        help='run the peer only')
    parser.add_argument('--peer-cap', type=float, default=60.0,
                        help='seconds the peer may run per size')
    parser.add_argument('--code', default=REPO_ROOT,
                        help='checkout of the monitor to run')
    parser.add_argument('--keep', action='store_true',
                        help='keep the work directories')
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(',')]
    backends = args.backends.split(',')
    peer = not args.no_peer and monitors.peer_installed()

    say('Simulated libvirtd: max_client_requests %d, max_workers %d; '
        'guest-ping 20-50 ms; monitor code: %s'
        % (args.max_client_requests, args.max_workers, args.code))
    sink = Sink()
    results = {}
    try:
        for backend in [] if args.no_ours else backends:
            for size in args.sizes:
                say('ours  N=%-5d %-7s ...' % (size, backend))
                results[('ours', size, backend)] = run_ours(
                    args, sink, size, backend)
        if args.crashes:
            say('ours  %d hangs in turn on 10 domains ...' % args.crashes)
            results['crashes'] = crash_latency(args, sink)
        if peer:
            for size in args.sizes:
                say('peer  N=%-5d (capped at %.0f s) ...'
                    % (size, args.peer_cap))
                results[('peer', size)] = run_peer(args, sink, size)
        elif not args.no_peer:
            say('peer: not installed (bench/peer/setup.sh); left out')
    finally:
        sink.close()

    say()
    say('%-8s %-8s %9s %10s %9s %8s %9s %11s'
        % ('N', 'backend', 'round s', 'answer s', 'CPU s/rd', '% core',
           'RSS MiB', 'peer/ours'))
    for backend in backends:
        for size in args.sizes:
            ours = results.get(('ours', size, backend))
            theirs = results.get(('peer', size))
            if ours is None:
                if not args.no_ours:
                    say('%-8d %-8s no round completed' % (size, backend))
                continue
            ratio = (theirs['round'] / ours['round']
                     if theirs and theirs['round'] and ours['round']
                     else None)
            say('%-8d %-8s %9s %10s %9s %8s %9s %11s'
                % (size, backend, _f(ours['round']),
                   _f(ours['answering']), _f(ours['cpu_per_round']),
                   _f(ours['core'], 1), _f(ours['rss_mib'], 1),
                   _f(ratio, 1)))
    # The simulated binding runs in the monitor's process: its own share
    # of the CPU column, measured alone for as many agent commands as the
    # monitor made per round (its pings and freeze-status checks).
    slots = args.max_concurrent_pings or 5
    for size in [] if args.no_ours else args.sizes:
        ours = results.get(('ours', size, backends[0])) or {}
        commands = int(round(ours.get('commands_per_round') or size))
        alone = binding_cost.cost_of_pings(
            _sim_env(tempfile.gettempdir(), size, args.code,
                     args.max_client_requests, args.max_workers),
            commands, slots)
        if alone is not None:
            own = (None if ours.get('cpu_per_round') is None else
                   ours['cpu_per_round'] - alone['cpu_seconds'])
            say('N=%-5d the simulated binding alone, %d agent commands '
                '(a round\'s pings and freeze checks) %d at a time: CPU '
                '%.2f s of the CPU s/rd above; the monitor\'s own %s s '
                '(%s %% of a core at a %.0f s interval)'
                % (size, commands, slots, alone['cpu_seconds'], _f(own),
                   _f(None if own is None else 100.0 * own / _INTERVAL, 1),
                   _INTERVAL))
    for size in args.sizes:
        theirs = results.get(('peer', size))
        if theirs:
            reached = ('' if theirs['reached'] is None else
                       ' (no sweep ended in %.0f s: %d pings made, sweep '
                       'extrapolated)' % (theirs['elapsed'],
                                          theirs['reached']))
            say('peer     N=%-5d sweep %s s, CPU %s s per sweep, %s %% '
                'core, RSS %s MiB%s'
                % (size, _f(theirs['round']), _f(theirs['cpu_per_round']),
                   _f(theirs['core'], 1), _f(theirs['rss_mib'], 1),
                   reached))
    latencies = results.get('crashes')
    if latencies:
        found = [x for x in latencies if x is not None]
        say('hang to notification on 10 domains, each hang among those '
            'before: %s s; median %s s'
            % (', '.join(_f(x, 1) for x in latencies),
               _f(median(found), 1)))
    for backend in backends:
        ours = results.get(('ours', max(args.sizes), backend)) or {}
        hung = ours.get('hung')
        if hung:
            say('%s, N=%d, %d hung agents: every hung one notified within '
                '%s s (median %s s, %d of %d notified); longest gap between '
                'two rounds meanwhile %s s; %d other domains notified'
                % (backend, max(args.sizes), hung['hung'],
                   _f(hung['every'], 1), _f(hung['median'], 1),
                   hung['notified'], hung['hung'], _f(hung['max_gap'], 1),
                   hung['false']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
