"""Soak on the simulated edge: does the daemon stay flat over a day?

The real daemon on bench/simlibvirt (as bench/scale.py runs it), N guests,
a given number of rounds at a given interval, guests failing and
recovering throughout: every ``--churn`` seconds a fresh random set of
``--failing`` agents hangs and the previous set answers again, so the
daemon keeps confirming, reporting, re-arming and restoring agent timeouts
the whole time. After each round it samples the daemon's RSS, its open
file descriptors and its CPU time.

Prints RSS and descriptors at the end of the warm-up and at the end, the
growth after warm-up (the median of the last tenth of the rounds less the
median of the tenth after warm-up), and the CPU seconds per round (median
over the rounds after warm-up) and what they are as a share of one core
at a 10 s interval; then what the simulated binding costs alone for as
many pings (bench/binding_cost.py: the real binding does that work in C
and in libvirtd) and the monitor's own share, the difference. Writes every
sample to a CSV and a PNG (top panel:
RSS in MiB; bottom: open descriptors; one point per round, the ranges are
printed).

    .venv/bin/python -m bench.soak [--size 5000] [--rounds 1000]
        [--interval 4] [--failing 10] [--churn 30] [--warmup 50]
        [--ping-ms 20-50] [--png bench/soak.png] [--csv FILE]

Figures only; nothing is asserted.
"""

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time

from bench import binding_cost
from bench import png
from bench import scale
from bench.figures import say
from lab import REPO_ROOT

HERE = os.path.dirname(os.path.abspath(__file__))
# The interval the CPU share is given at: Masakari's default.
REFERENCE_INTERVAL = 10.0


def open_fds(pid):
    try:
        return len(os.listdir('/proc/%d/fd' % pid))
    except OSError:
        return None


def churn(proc, size, failing, rng):
    """Hang a fresh random set of ``failing`` agents; the others answer."""
    chosen = rng.sample(range(size), min(failing, size))
    proc.hang(['00000000-0000-4000-8000-%012d' % i for i in chosen])


def soak(args):
    sink = scale.Sink()
    work_dir = tempfile.mkdtemp(prefix='ghm-soak-%d-' % args.size)
    options = {'interval': str(args.interval)}
    if args.max_concurrent_pings:
        options['max_concurrent_pings'] = str(args.max_concurrent_pings)
    proc = scale.start_ours(work_dir, args.size, 'memory', sink.endpoint,
                            args.code, (args.max_client_requests,
                                        args.max_workers), options)
    rng = random.Random(args.seed)
    samples = []
    try:
        scale.wait_rounds(proc, scale.our_rounds, 1, args.round_timeout)
        seen = len(scale.our_rounds(proc))
        churned_at = time.monotonic()
        deadline = time.monotonic() + args.rounds * max(
            args.interval, 1.0) * 4 + args.round_timeout
        while len(samples) < args.rounds and time.monotonic() < deadline:
            if not proc.running:
                raise RuntimeError('monitor exited; last lines:\n'
                                   + proc.tail())
            if time.monotonic() - churned_at >= args.churn:
                churn(proc, args.size, args.failing, rng)
                churned_at = time.monotonic()
            rounds = scale.our_rounds(proc)
            if len(rounds) > seen:
                seen = len(rounds)
                usage = proc.usage()
                samples.append((len(samples) + 1, time.time(),
                                usage.rss_kib / 1024.0,
                                open_fds(proc.proc.pid), usage.cpu_seconds,
                                rounds[-1][1], proc.agent_commands()))
                if len(samples) % 50 == 0:
                    say('  round %d: RSS %.1f MiB, %s descriptors'
                        % (len(samples), samples[-1][2], samples[-1][3]))
            time.sleep(0.2)
    finally:
        proc.stop()
        sink.close()
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    return samples


def report(args, samples):
    if len(samples) <= args.warmup + 2:
        say('too few rounds after warm-up: %d' % len(samples))
        return
    after = samples[args.warmup:]
    tenth = max(1, len(after) // 10)
    rss = [s[2] for s in samples]
    fds = [s[3] or 0 for s in samples]
    start_rss = statistics.median([s[2] for s in after[:tenth]])
    end_rss = statistics.median([s[2] for s in after[-tenth:]])
    start_fds = statistics.median([s[3] or 0 for s in after[:tenth]])
    end_fds = statistics.median([s[3] or 0 for s in after[-tenth:]])
    cpu = [b[4] - a[4] for a, b in zip(after, after[1:])]
    cpu_round = statistics.median(cpu)
    say('soak: %d guests, %d rounds at interval %.1f s (%d of warm-up), '
        '%d agents failing at a time, a new set every %.0f s; guest-pings '
        'take %s ms' % (args.size, len(samples), args.interval, args.warmup,
                        args.failing, args.churn, args.ping_ms))
    say('soak RSS after warm-up %.1f MiB, at the end %.1f MiB: growth '
        '%.1f MiB (max %.1f MiB)' % (start_rss, end_rss,
                                     end_rss - start_rss, max(rss)))
    say('soak open descriptors after warm-up %d, at the end %d (max %d)'
        % (start_fds, end_fds, max(fds)))
    say('soak CPU %.2f s per round (median; round %.2f s): %.1f %% of a '
        'core at a %.0f s interval'
        % (cpu_round, statistics.median([s[5] for s in after]),
           100.0 * cpu_round / REFERENCE_INTERVAL, REFERENCE_INTERVAL))
    # As many agent commands as the monitor made per round: its pings and
    # the freeze-status checks among them. The mean, not the median: the
    # domains' checks come due together, so most rounds make none and one
    # round in (check interval / round interval) makes them all.
    commands = int(round((after[-1][6] - after[0][6])
                         / (len(after) - 1))) or args.size
    alone = binding_cost.cost_of_pings(
        scale._sim_env(tempfile.gettempdir(), args.size, args.code,
                       args.max_client_requests, args.max_workers),
        commands, args.max_concurrent_pings)
    if alone is not None:
        own = cpu_round - alone['cpu_seconds']
        say('soak CPU of the simulated binding alone, %d agent commands '
            '(a round\'s pings and freeze checks) %d at a time: %.2f s; the '
            'monitor\'s own %.2f s per round: %.1f %% of a core at a %.0f s '
            'interval'
            % (commands, args.max_concurrent_pings, alone['cpu_seconds'],
               own, 100.0 * own / REFERENCE_INTERVAL, REFERENCE_INTERVAL))
    if args.csv:
        with open(args.csv, 'w') as out:
            out.write('round,epoch,rss_mib,open_fds,cpu_seconds,'
                      'round_seconds,agent_commands\n')
            for sample in samples:
                out.write('%d,%.3f,%.2f,%s,%.2f,%.3f,%d\n' % sample)
        say('samples: %s' % args.csv)
    if args.png:
        low_rss, high_rss = min(rss) - 1, max(rss) + 1
        low_fds, high_fds = min(fds) - 1, max(fds) + 1
        with open(args.png, 'wb') as out:
            out.write(png.panels(800, 200, [
                [(rss, (200, 30, 30), (low_rss, high_rss))],
                [(fds, (30, 30, 200), (low_fds, high_fds))]]))
        say('chart: %s (top: RSS %.0f-%.0f MiB; bottom: open descriptors '
            '%d-%d; x: rounds 1-%d)' % (args.png, low_rss, high_rss,
                                        low_fds, high_fds, len(samples)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=5000)
    parser.add_argument('--rounds', type=int, default=1000)
    parser.add_argument('--interval', type=float, default=4.0,
                        help='the daemon\'s interval (s); rounds of 5,000 '
                             'take about 4 s')
    parser.add_argument('--failing', type=int, default=10,
                        help='agents hung at any time')
    parser.add_argument('--churn', type=float, default=30.0,
                        help='seconds between two sets of hung agents')
    parser.add_argument('--warmup', type=int, default=50)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--ping-ms', default='20-50',
                        help='how long a simulated guest-ping takes, '
                             'LOW-HIGH ms: shorter rounds allow a shorter '
                             'interval, for a soak that ends sooner')
    parser.add_argument('--max-concurrent-pings', type=int, default=50)
    parser.add_argument('--max-client-requests', type=int, default=50)
    parser.add_argument('--max-workers', type=int, default=70)
    parser.add_argument('--round-timeout', type=float, default=240.0)
    parser.add_argument('--png', default=os.path.join(HERE, 'soak.png'))
    parser.add_argument('--csv', default=None)
    parser.add_argument('--code', default=REPO_ROOT)
    parser.add_argument('--keep', action='store_true')
    args = parser.parse_args(argv)
    os.environ['GHM_SIM_PING_MS'] = args.ping_ms
    started = time.monotonic()
    samples = soak(args)
    report(args, samples)
    say('total %.0f s' % (time.monotonic() - started))
    return 0 if samples else 1


if __name__ == '__main__':
    raise SystemExit(main())
