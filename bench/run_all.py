"""Every benchmark on the lab, ours head to head with the peer, then a
summary table.

    make bench           (or: .venv/bin/python -m bench.run_all)

Two settings in one run, each monitor in turn on the same number and kind
of fresh guests:

- Masakari's defaults (interval 10 s, ping timeout 2 s, failure threshold
  3): idle footprint, crash to stored notification, and a hang among two
  hung agents (bench/detection.py);
- the fast timings of the first figures (2 / 1 / 3): crash to stored
  notification; with ``--sweeps`` also the sweep duration against 0-4 hung
  agents and the footprint at those timings (bench/sweep_duration.py).

The peer (Masakari's introspective instance monitor) is installed first by
bench/peer/setup.sh; when it cannot be installed or started, our figures
are still measured and the reason is printed. Both monitors watch every
domain on the host: nobody else may run lab guests meanwhile (wrap the run
in ``flock /tmp/ghm-lab.lock``).
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

from bench import detection
from bench import figures
from bench import monitors
from bench import sweep_duration
from bench import testbed as testbed_mod
from bench.figures import say

PEER_SETUP = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          'peer', 'setup.sh')


def install_peer():
    """Run bench/peer/setup.sh; return None when the peer is ready, else
    why it is not."""
    try:
        result = subprocess.run(['bash', PEER_SETUP], capture_output=True,
                                text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 'bench/peer/setup.sh could not run: %s' % exc
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        return 'bench/peer/setup.sh failed (%d): %s' % (
            result.returncode, output.splitlines()[-1] if output else '')
    say(output.splitlines()[-1] if output else 'peer ready')
    return None


def peer_version():
    result = subprocess.run(
        [os.path.join(monitors.PEER_VENV, 'bin', 'python'), '-c',
         'import importlib.metadata as m; '
         'print(m.version("masakari-monitors"))'],
        capture_output=True, text=True, check=False)
    return result.stdout.strip() or 'unknown'


def machine():
    return '%d cores, %s, Python %s, TCG guests (no KVM)' % (
        os.cpu_count(), platform.platform(terse=True),
        platform.python_version())


def main(argv=None):
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument('--no-peer', action='store_true',
                      help='measure our monitor only')
    args.add_argument('--crashes', type=int, default=detection.CRASHES,
                      help='crashes per monitor and settings')
    args.add_argument('--hangs', type=int, default=detection.HANGS,
                      help='hangs among hung agents per monitor, at '
                           "Masakari's defaults")
    args.add_argument('--idle-seconds', type=float,
                      default=detection.IDLE_SECONDS,
                      help="footprint window at Masakari's defaults")
    args.add_argument('--no-fast', action='store_true',
                      help='skip the 2/1/3 crashes')
    args.add_argument('--sweeps', action='store_true',
                      help='also the sweep duration against hung agents '
                           'at 2/1/3 (about 6 minutes more)')
    args.add_argument('--sweep-idle-seconds', type=float,
                      default=sweep_duration.IDLE_SECONDS)
    args.add_argument('--samples', type=int, default=sweep_duration.SAMPLES)
    args.add_argument('--confirm-interval', type=float,
                      help="ours' [monitor] confirm_interval (default: the "
                           "daemon's default)")
    options = args.parse_args(argv)

    started = time.monotonic()
    say('guest-health-monitor benchmarks, %s' %
        datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))
    say('machine: %s' % machine())
    kinds = ['ours']
    peer_missing = 'not asked for (--no-peer)' if options.no_peer \
        else install_peer()
    if peer_missing is None:
        kinds.append('peer')
        say('peer: masakari-monitors %s, masakari-introspectiveinstancemonitor'
            ' (run by bench/peer/harness.py)' % peer_version())
    else:
        say('peer: NOT MEASURED: %s' % peer_missing)
    say('ours: [monitor] confirm_interval %s s%s, max_concurrent_pings at '
        'its default' % (
            monitors.our_confirm_interval()
            if options.confirm_interval is None else options.confirm_interval,
            ' (its default)' if options.confirm_interval is None else ''))
    say('notifications to a local masakari-api 22.0.0 (noauth2, no Keystone '
        'on either side)')
    say()

    found = []
    with testbed_mod.Testbed(monitors.FAST,
                             confirm_interval=options.confirm_interval) as bed:
        say('work directory (configs and logs): %s' % bed.work_dir)
        found += detection.run(bed, kinds, monitors.MASAKARI_DEFAULTS,
                               options.crashes, options.hangs,
                               options.idle_seconds)
        say()
        if not options.no_fast:
            found += detection.run(bed, kinds, monitors.FAST,
                                   options.crashes, hangs=0, idle=0)
            say()
        if options.sweeps:
            found += sweep_duration.run(bed, kinds,
                                        options.sweep_idle_seconds,
                                        options.samples)
            say()
    say('== summary ==')
    for line in figures.table(found):
        say(line)
    if peer_missing is not None:
        say('peer not measured: %s' % peer_missing)
    say('total %.0f s' % (time.monotonic() - started))
    # Our own figures must all be there; the peer's may be missing.
    return 0 if found and all(f.ours is not None for f in found) else 1


if __name__ == '__main__':
    sys.exit(main())
