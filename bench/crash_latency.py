"""Crash-to-notification latency: a guest kernel panics, how long until the
HA engine has stored the notification?

For each monitor in turn: boot ``--repeats`` (3) fresh guests, start the
monitor, wait until it has pinged them all twice, then crash one guest's
kernel at a time (the lab guest panics on request; it has no pvpanic
device, so libvirt still shows it running and only its agent tells). For
each crash two times are taken from the moment the panic shows on the
guest's console:

- detected: the monitor's log line for its decision to notify (ours:
  "Domain ... failed ...: notification ... queued"; the peer: "Send a
  notification.");
- stored: the first poll (every 0.2 s) of the engine's
  ``GET /notifications`` that lists the guest.

The crashed guest is then removed, so that a monitor that pings in turn is
not slowed by a dead guest during the next crash, and the next guest is
crashed once the monitor has swept without it. Where a crash falls within
the sweep interval moves the latency by up to one interval, so crash i of
n is made (i - 0.5) / n of an interval after a sweep ended: the crashes
are spread evenly over the interval, the same way for both monitors.

The expected latency follows from the settings: the first ping to a dead
agent fails after the ping timeout, every later one after libvirt's 5 s
guest-sync floor, sweeps start ``interval`` apart (at once after an
overrun), and the crash lands anywhere within a sweep interval. Ours
notifies on the ``failure_threshold``-th miss; the peer on the
``failure_threshold + 2``-th (it notifies on the first miss that finds more
than ``failure_threshold`` earlier misses already counted).

    .venv/bin/python -m bench.crash_latency [--monitors ours,peer]
"""

import time
import typing

from bench import figures
from bench import testbed as testbed_mod
from bench.figures import Figure
from bench.figures import say
from bench.sweep_duration import SYNC_FLOOR
from bench.sweep_duration import parser

REPEATS = 3
STORE_TIMEOUT = 90.0
POLL = 0.2
DESIGN_BOUND = 'about 11-13 s'


class Crash(typing.NamedTuple):
    detected: typing.Optional[float]  # seconds after the crash
    stored: typing.Optional[float]


def misses_to_notify(kind, threshold):
    return threshold if kind == 'ours' else threshold + 2


def expected_range(settings, misses):
    """(earliest, latest) seconds from crash to the notifying miss."""
    started = 0.0
    ended = 0.0
    for miss in range(misses):
        ended = started + (settings.ping_timeout if miss == 0
                           else max(SYNC_FLOOR, settings.ping_timeout))
        started = max(started + settings.interval, ended)
    return ended, ended + settings.interval


def _wait_stored(bed, uuid, timeout=STORE_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bed.stored(uuid):
            return time.time()
        time.sleep(POLL)
    return None


def measure(bed, kind, repeats=REPEATS):
    guests = bed.start_guests(repeats)
    crashes = []
    try:
        monitor = bed.start_monitor(kind)
        monitor.wait_for_sweeps(2, since=time.time(), timeout=60,
                                pinged=repeats)
        for number, guest in enumerate(guests, 1):
            time.sleep((number - 0.5) / repeats * bed.settings.interval)
            guest.control('panic')
            crashed = time.time()
            stored = _wait_stored(bed, guest.uuid)
            detected = monitor.detections().get(guest.uuid)
            crash = Crash(None if detected is None else detected - crashed,
                          None if stored is None else stored - crashed)
            crashes.append(crash)
            say('  %s: crash %d of %s (%s): detected after %s, stored after '
                '%s' % (kind, number, guest.name, guest.uuid,
                        figures.fmt(crash.detected, 's'),
                        figures.fmt(crash.stored, 's')))
            guest.remove()
            if number < len(guests):
                monitor.wait_for_sweeps(1, since=time.time(), timeout=60)
    finally:
        bed.stop_monitors()
        bed.remove_guests()
    return crashes


def summarize(results, settings):
    found = []
    medians = {}
    for kind, crashes in results.items():
        for number, crash in enumerate(crashes, 1):
            say('crash_latency run=%d %s_detected=%s %s_stored=%s' % (
                number, kind, figures.fmt(crash.detected, 's'), kind,
                figures.fmt(crash.stored, 's')))
        medians[kind] = (
            figures.median([c.detected for c in crashes
                            if c.detected is not None]),
            figures.median([c.stored for c in crashes
                            if c.stored is not None]))
    for index, what in enumerate(('detected', 'stored')):
        ours = medians.get('ours', (None, None))[index]
        peer = medians.get('peer', (None, None))[index]
        say('crash_latency %s ours_median=%s peer_median=%s ratio=%s' % (
            what, figures.fmt(ours, 's'), figures.fmt(peer, 's'),
            figures.fmt_ratio(figures.ratio(peer, ours))))
        found.append(Figure('crash_latency %s' % what,
                            'crash to %s (median)' % (
                                'detection' if what == 'detected'
                                else 'stored notification'),
                            's', ours, peer))
    for kind in ('ours', 'peer'):
        misses = misses_to_notify(kind, settings.failure_threshold)
        low, high = expected_range(settings, misses)
        say('crash_bound %s misses=%d expected=%.0f-%.0f s%s' % (
            kind, misses, low, high,
            ' (DESIGN.md: %s)' % DESIGN_BOUND if kind == 'ours' else ''))
    missing = [kind for kind, crashes in results.items()
               if any(c.stored is None for c in crashes)]
    for kind in missing:
        say('crash_latency WARNING: %s: some notification never reached '
            'the engine within %.0f s' % (kind, STORE_TIMEOUT))
    return found


def run(bed, kinds, repeats=REPEATS):
    s = bed.settings
    say('== crash-to-notification latency (interval %d s, ping timeout %d '
        's, threshold %d; %d crashes each) ==' % (
            s.interval, s.ping_timeout, s.failure_threshold, repeats))
    results = testbed_mod.each_monitor(
        kinds, lambda kind: measure(bed, kind, repeats))
    return summarize(results, bed.settings)


def main(argv=None):
    args = parser(__doc__.splitlines()[0])
    args.add_argument('--repeats', type=int, default=REPEATS)
    options = args.parse_args(argv)
    with testbed_mod.Testbed() as bed:
        run(bed, options.monitors.split(','), options.repeats)


if __name__ == '__main__':
    main()
