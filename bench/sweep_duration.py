"""Sweep duration against hung guest agents, and the monitor's footprint.

For each monitor in turn, on six fresh guests:

1. start the monitor and wait for a sweep that pinged all six;
2. watch it for ``--idle-seconds`` (60) with every agent healthy: the sweeps
   of that window are the hung=0 figures, and the monitor's CPU time over
   the window and its resident memory at the end are its footprint (with
   libvirtd's CPU time over the same window, since a monitor's calls cost
   libvirtd work too);
3. stop (SIGSTOP) one guest agent more at a time until 1, 2 and 4 are hung;
   after each step skip the first sweep (its first ping to a newly hung
   agent fails after the ping timeout; later ones wait for libvirt's 5 s
   guest-sync floor) and record the next ``--samples`` sweeps.

A monitor that pings in parallel should take about 5 s a sweep for any
number of hung agents up to its concurrency limit; one that pings in turn
takes about 5 s per hung agent.

    .venv/bin/python -m bench.sweep_duration [--monitors ours,peer]
"""

import argparse
import time
from concurrent import futures

from bench import figures
from bench import procstat
from bench import testbed as testbed_mod
from bench.figures import Figure
from bench.figures import say
from lab import libvirtd

GUESTS = 6
HUNG_STEPS = (1, 2, 4)
IDLE_SECONDS = 60.0
SAMPLES = 3
# libvirt waits at least this long in its guest-sync before every command to
# an agent that has timed out once.
SYNC_FLOOR = 5.0


def _hang(guests):
    with futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda guest: guest.control('agent-hang'), guests))


def _libvirtd_cpu():
    pid = libvirtd.pid()
    return None if pid is None else procstat.process_usage(pid).cpu_seconds


def measure(bed, kind, idle_seconds=IDLE_SECONDS, hung_steps=HUNG_STEPS,
            samples=SAMPLES):
    """One monitor on fresh guests; returns {'sweeps': {hung: [Sweep]},
    'cpu': s, 'rss_kib': KiB, 'libvirtd_cpu': s}."""
    interval = bed.settings.interval
    result = {'sweeps': {}}
    guests = bed.start_guests(GUESTS)
    try:
        monitor = bed.start_monitor(kind)
        monitor.wait_for_sweeps(1, since=time.time(), timeout=60,
                                pinged=GUESTS)
        before = procstat.session_usage(monitor.pid)
        libvirtd_before = _libvirtd_cpu()
        idle_from = time.time()
        time.sleep(idle_seconds)
        idle_to = time.time()
        after = procstat.session_usage(monitor.pid)
        libvirtd_after = _libvirtd_cpu()
        result['cpu'] = after.cpu_seconds - before.cpu_seconds
        result['rss_kib'] = after.rss_kib
        result['libvirtd_cpu'] = (
            None if libvirtd_before is None or libvirtd_after is None
            else libvirtd_after - libvirtd_before)
        result['sweeps'][0] = [
            s for s in monitor.sweeps()
            if s.started >= idle_from and s.started + s.duration <= idle_to]
        _report_phase(kind, 0, result['sweeps'][0])
        hung = 0
        for step in hung_steps:
            _hang(guests[hung:step])
            hung = step
            since = time.time()
            timeout = (samples + 2) * (step * SYNC_FLOOR + interval + 2)
            result['sweeps'][step] = monitor.wait_for_sweeps(
                samples, since=since, timeout=timeout, pinged=GUESTS, skip=1)
            _report_phase(kind, step, result['sweeps'][step])
    finally:
        bed.stop_monitors()
        bed.remove_guests()
    return result


def _report_phase(kind, hung, sweeps):
    say('  %s: hung=%d %d sweeps: %s' % (
        kind, hung, len(sweeps),
        ' '.join('%.3f' % s.duration for s in sweeps[:12]) +
        (' ...' if len(sweeps) > 12 else '')))


def _durations(results, kind, hung):
    if kind not in results:
        return []
    return [s.duration for s in results[kind]['sweeps'].get(hung, [])]


def summarize(results, idle_seconds, hung_steps=HUNG_STEPS):
    """Print the comparison lines; return the figures."""
    found = []
    for hung in (0,) + tuple(hung_steps):
        ours = _durations(results, 'ours', hung)
        peer = _durations(results, 'peer', hung)
        ours_median, peer_median = figures.median(ours), figures.median(peer)
        say('sweep_duration hung=%d ours_median=%s ours_max=%s '
            'peer_median=%s peer_max=%s peer/ours=%s' % (
                hung, figures.fmt(ours_median, 's', 3),
                figures.fmt(max(ours, default=None), 's', 3),
                figures.fmt(peer_median, 's', 3),
                figures.fmt(max(peer, default=None), 's', 3),
                figures.fmt_ratio(figures.ratio(peer_median, ours_median))))
        found.append(Figure('sweep_duration hung=%d' % hung,
                            'sweep, %d hung agent%s (median)' % (
                                hung, '' if hung == 1 else 's'), 's',
                            ours_median, peer_median, 3))

    def value(kind, key, scale=1.0):
        if kind not in results or results[kind].get(key) is None:
            return None
        return results[kind][key] * scale

    footprint = [
        ('rss', 'RSS after %d s, 6 guests', 'MiB', 'rss_kib', 1 / 1024.0, 1),
        ('cpu', 'CPU time over %d s', 's', 'cpu', 1.0, 2),
        ('libvirtd_cpu', 'libvirtd CPU time over %d s', 's', 'libvirtd_cpu',
         1.0, 2),
    ]
    idle = int(round(idle_seconds))
    for key, label, unit, field, scale, digits in footprint:
        ours, peer = value('ours', field, scale), value('peer', field, scale)
        say('footprint %s ours=%s peer=%s peer/ours=%s' % (
            key, figures.fmt(ours, unit, digits),
            figures.fmt(peer, unit, digits),
            figures.fmt_ratio(figures.ratio(peer, ours))))
        found.append(Figure('footprint %s' % key, label % idle, unit,
                            ours, peer, digits))
    return found


def run(bed, kinds, idle_seconds=IDLE_SECONDS, samples=SAMPLES):
    say('== sweep duration vs hung agents (%d guests, interval %d s, ping '
        'timeout %d s) and footprint over %.0f s ==' % (
            GUESTS, bed.settings.interval, bed.settings.ping_timeout,
            idle_seconds))
    results = testbed_mod.each_monitor(
        kinds, lambda kind: measure(bed, kind, idle_seconds, samples=samples))
    return summarize(results, idle_seconds)


def parser(description):
    args = argparse.ArgumentParser(description=description)
    args.add_argument('--monitors', default='ours,peer',
                      help='comma-separated: ours, peer (default both)')
    return args


def main(argv=None):
    args = parser(__doc__.splitlines()[0])
    args.add_argument('--idle-seconds', type=float, default=IDLE_SECONDS)
    args.add_argument('--samples', type=int, default=SAMPLES)
    options = args.parse_args(argv)
    with testbed_mod.Testbed() as bed:
        run(bed, options.monitors.split(','), options.idle_seconds,
            options.samples)


if __name__ == '__main__':
    main()
