"""Detection latency: a guest dies, how long until the HA engine has stored
the notification?

For each monitor in turn, at the given settings, on fresh guests (the same
number and kind for both monitors):

1. start the monitor and wait until it has pinged every guest twice;
2. footprint (optional, ``idle`` seconds): with every agent answering, the
   monitor's CPU time over the window (whole process session), its RSS at
   the end and libvirtd's CPU time over the same window;
3. *crash*: the kernel of one guest at a time panics (the lab guest panics
   on request and has no pvpanic device, so libvirt still shows it running
   and only its agent tells), every other guest healthy;
4. *hang among hung*: the agents of ``hung_before`` (2) guests are stopped
   (SIGSTOP of qemu-ga: the guest runs on, its agent stays connected and
   silent) and the run waits until the engine has stored both
   notifications; then one more agent at a time is stopped while those two
   stay hung.

Each guest that failed is removed once its notification is stored, so
exactly the guests named above are silent at any time. Per incident:

- *fault*: when the fault is in place: for a crash, when the panic shows on
  the guest's console; for a hang, when the guest's init answers that it
  stopped qemu-ga;
- *stored*: the first poll (every 0.2 s) of masakari-api's
  ``GET /notifications`` that lists the guest, in seconds after the fault;
- *detected*: the monitor's own log line for its decision to notify (ours:
  "Domain ... failed ...: notification ... queued"; the peer: "Send a
  notification.");
- *phase*: how far into the monitor's sweep interval the fault fell
  (fault time less the start of the last sweep that began before it).

Where the fault falls within the interval moves the latency by up to one
interval, so incident i of n is aimed at (i - 0.5) / n of an interval
after a sweep start (projected from the monitor's last logged sweep, less
the time the guest's init took to carry out the last command): the
faults spread over the interval the same way for both monitors. The
phases reached are printed with each incident.

For ours the run also prints where the time went, from the daemon's debug
log: the wait for the next round, the first miss (the ping timeout), the
confirmations (``confirm_interval`` plus libvirt's guest-sync wait each:
the ping timeout with fast confirmation, its default, else 5 s), the
delivery (queued to the engine's 202) and the poll.

    .venv/bin/python -m bench.detection [--monitors ours,peer]
        [--settings 10/2/3] [--crashes 3] [--hangs 2] [--idle-seconds 30]
        [--confirm-interval S]
"""

import argparse
import statistics
import time
import typing
from concurrent import futures

from bench import figures
from bench import monitors
from bench import procstat
from bench import testbed as testbed_mod
from bench.figures import Figure
from bench.figures import say
from lab import libvirtd

CRASHES = 3
HANGS = 2
HUNG_BEFORE = 2
IDLE_SECONDS = 30.0
STORE_TIMEOUT = 150.0
POLL = 0.2
# libvirt waits at least this long in its guest-sync before every command to
# an agent that has timed out once.
SYNC_FLOOR = 5.0
# First guess of how long the guest's init takes to carry out a command (it
# polls its control port once a second).
CONTROL_LEAD = 0.6


class Incident(typing.NamedTuple):
    scenario: str                   # 'crash' or 'hang'
    guest: str
    uuid: str
    fault: float                    # epoch seconds
    phase: typing.Optional[float]   # seconds into the sweep interval
    detected: typing.Optional[float]  # seconds after the fault
    stored: typing.Optional[float]
    timeline: dict                  # event -> seconds after the fault


def _wait_stored(bed, uuid, timeout=STORE_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bed.stored(uuid):
            return time.time()
        time.sleep(POLL)
    return None


def _phase(sweeps, moment):
    started = [s.started for s in sweeps if s.started <= moment]
    return moment - max(started) if started else None


class _Aim:
    """Times faults to land at a chosen point of the monitor's interval."""

    def __init__(self, monitor, interval):
        self.monitor = monitor
        self.interval = interval
        self.leads = [CONTROL_LEAD]

    def wait_for(self, fraction):
        """Sleep until a command issued now lands ``fraction`` of an
        interval after a sweep start."""
        sweeps = self.monitor.sweeps()
        last = sweeps[-1]
        # A sweep longer than the interval is followed by the next at once.
        period = max(self.interval, last.duration)
        lead = statistics.median(self.leads)
        target = last.started + fraction * self.interval
        while target - lead < time.time() + 0.1:
            target += period
        time.sleep(max(0.0, target - lead - time.time()))

    def control(self, guest, command):
        issued = time.time()
        guest.control(command)
        done = time.time()
        self.leads.append(done - issued)
        return done


def _hang_all(guests):
    with futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda guest: guest.control('agent-hang'), guests))


def _libvirtd_cpu():
    pid = libvirtd.pid()
    return None if pid is None else procstat.process_usage(pid).cpu_seconds


def _footprint(monitor, seconds):
    before = procstat.session_usage(monitor.pid)
    libvirtd_before = _libvirtd_cpu()
    time.sleep(seconds)
    after = procstat.session_usage(monitor.pid)
    libvirtd_after = _libvirtd_cpu()
    return {
        'cpu': after.cpu_seconds - before.cpu_seconds,
        'rss_mib': after.rss_kib / 1024.0,
        'libvirtd_cpu': (None if None in (libvirtd_before, libvirtd_after)
                         else libvirtd_after - libvirtd_before),
    }


def _incident(bed, monitor, aim, guest, scenario, fraction):
    aim.wait_for(fraction)
    fault = aim.control(guest, 'panic' if scenario == 'crash'
                        else 'agent-hang')
    stored_at = _wait_stored(bed, guest.uuid)
    if stored_at is not None:
        # The engine's answer is logged just after it stored the
        # notification; give the log a moment to show it.
        time.sleep(0.3)
    detected_at = monitor.detections().get(guest.uuid)
    timeline = monitor.timeline(guest.uuid, fault)
    if stored_at is not None:
        timeline['stored'] = stored_at - fault
    incident = Incident(
        scenario, guest.name, guest.uuid, fault,
        _phase(monitor.sweeps(), fault),
        None if detected_at is None else detected_at - fault,
        None if stored_at is None else stored_at - fault, timeline)
    say('  %s: %s %s (%s) at %s of the interval: detected after %s, '
        'stored after %s' % (
            monitor.name, scenario, guest.name, guest.uuid,
            figures.fmt(incident.phase, 's'),
            figures.fmt(incident.detected, 's'),
            figures.fmt(incident.stored, 's')))
    say('    timeline (s after the fault): %s' % _format_timeline(timeline))
    guest.remove()
    return incident


def _format_timeline(timeline):
    return ', '.join('%s %.2f' % (event, seconds) for event, seconds in
                     sorted(timeline.items(), key=lambda item: item[1]))


def measure(bed, kind, settings, crashes=CRASHES, hangs=HANGS,
            hung_before=HUNG_BEFORE, idle=IDLE_SECONDS):
    """One monitor on fresh guests; returns {'incidents': [Incident],
    'footprint': {...} or None}."""
    count = crashes + (hung_before + hangs if hangs else 0)
    guests = bed.start_guests(count)
    crash_guests = guests[:crashes]
    hung = guests[crashes:crashes + hung_before] if hangs else []
    hang_guests = guests[crashes + hung_before:] if hangs else []
    result = {'incidents': [], 'footprint': None}
    try:
        monitor = bed.start_monitor(kind, settings)
        monitor.wait_for_sweeps(2, since=time.time(),
                                timeout=4 * settings.interval + 60,
                                pinged=count)
        if idle:
            result['footprint'] = _footprint(monitor, idle)
            say('  %s: %d guests, %.0f s idle: CPU %.2f s, RSS %.1f MiB, '
                'libvirtd CPU %s' % (
                    kind, count, idle, result['footprint']['cpu'],
                    result['footprint']['rss_mib'],
                    figures.fmt(result['footprint']['libvirtd_cpu'], 's')))
        aim = _Aim(monitor, settings.interval)
        for number, guest in enumerate(crash_guests, 1):
            result['incidents'].append(_incident(
                bed, monitor, aim, guest, 'crash',
                (number - 0.5) / len(crash_guests)))
        if hang_guests:
            _hang_all(hung)
            for guest in hung:
                if _wait_stored(bed, guest.uuid) is None:
                    raise TimeoutError('%s: no notification stored for the '
                                       'hung %s within %.0f s' % (
                                           kind, guest.name, STORE_TIMEOUT))
            say('  %s: %d agents hung and notified' % (kind, len(hung)))
        for number, guest in enumerate(hang_guests, 1):
            result['incidents'].append(_incident(
                bed, monitor, aim, guest, 'hang',
                (number - 0.5) / len(hang_guests)))
    finally:
        bed.stop_monitors()
        bed.remove_guests()
    return result


def expected_range(settings, kind, confirm_interval, others_hung=0):
    """(earliest, latest) seconds from the fault to the notifying miss, from
    the timings alone (no delivery, no CPU time)."""
    floor = max(SYNC_FLOOR, settings.ping_timeout)
    if kind == 'ours':
        # The next round pings it (up to one interval later); each miss
        # below the threshold starts a confirmation confirm_interval
        # after it ended, which waits for libvirt's guest-sync: the ping
        # timeout, to which fast confirmation (its default) lowers the
        # domain's agent response timeout.
        low = settings.ping_timeout + (settings.failure_threshold - 1) * (
            min(confirm_interval, settings.interval) + settings.ping_timeout)
        return low, low + settings.interval
    # The peer pings in turn, one sweep per miss, and notifies on the
    # (threshold + 2)th miss. Each sweep lasts a floor per other hung
    # agent plus its own ping; sweeps start an interval apart, or at once
    # after one that overran. Earliest: its guest is pinged first in each
    # sweep and the fault falls just before a sweep; latest: it is pinged
    # last and the fault just missed a sweep.
    started = first = last = 0.0
    for miss in range(settings.failure_threshold + 2):
        own = settings.ping_timeout if miss == 0 else floor
        first = started + own
        last = started + own + others_hung * floor
        started = max(started + settings.interval, last)
    period = max(settings.interval, others_hung * floor + floor)
    return first, last + period


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return min(values), max(values)


def summarize(results, settings, confirm_interval, hung_before=HUNG_BEFORE):
    """Print the comparison lines; return the figures."""
    tag = settings.label
    found = []
    for kind, result in results.items():
        for incident in result['incidents']:
            say('detection %s %s %s phase=%s detected=%s stored=%s' % (
                tag, kind, incident.scenario, figures.fmt(incident.phase, 's'),
                figures.fmt(incident.detected, 's'),
                figures.fmt(incident.stored, 's')))
    labels = {'crash': 'crash', 'hang': 'hang among %d hung' % hung_before}
    for scenario in ('crash', 'hang'):
        for what in ('detected', 'stored'):
            values = {}
            for kind, result in results.items():
                values[kind] = [getattr(i, what) for i in result['incidents']
                                if i.scenario == scenario
                                and getattr(i, what) is not None]
            if not any(values.values()):
                continue
            ours = figures.median(values.get('ours', []))
            peer = figures.median(values.get('peer', []))
            say('detection %s %s %s ours_median=%s ours_spread=%s '
                'peer_median=%s peer_spread=%s ours/peer=%s' % (
                    tag, scenario, what, figures.fmt(ours, 's'),
                    figures.fmt_spread(_spread(values.get('ours', []))),
                    figures.fmt(peer, 's'),
                    figures.fmt_spread(_spread(values.get('peer', []))),
                    figures.fmt_ratio(figures.ratio(ours, peer), 2)))
            found.append(Figure(
                'detection %s %s %s' % (tag, scenario, what),
                '%s: %s to %s' % (tag, labels[scenario],
                                  'detection' if what == 'detected'
                                  else 'stored'),
                's', ours, peer, 2,
                _spread(values.get('ours', [])),
                _spread(values.get('peer', []))))
    measured = {i.scenario for result in results.values()
                for i in result['incidents']}
    for scenario, others in (('crash', 0), ('hang', hung_before)):
        if scenario not in measured:
            continue
        for kind in results:
            low, high = expected_range(settings, kind, confirm_interval,
                                       others)
            say('detection %s %s %s expected=%.1f-%.1f s (to the decision, '
                'from the timings alone)' % (tag, scenario, kind, low, high))
    _where_the_time_goes(results, tag)
    footprint = [
        ('cpu', 'CPU time over %.0f s idle', 's', 2),
        ('rss_mib', 'RSS after %.0f s idle', 'MiB', 1),
        ('libvirtd_cpu', 'libvirtd CPU time over %.0f s idle', 's', 2),
    ]
    for key, label, unit, digits in footprint:
        values = {kind: (result['footprint'] or {}).get(key)
                  for kind, result in results.items()}
        idle = next((r['idle'] for r in results.values()
                     if r.get('idle')), None)
        if idle is None or not any(v is not None for v in values.values()):
            continue
        ours, peer = values.get('ours'), values.get('peer')
        say('footprint %s %s ours=%s peer=%s' % (
            tag, key, figures.fmt(ours, unit, digits),
            figures.fmt(peer, unit, digits)))
        found.append(Figure('footprint %s %s' % (tag, key),
                            '%s: %s' % (tag, label % idle), unit, ours, peer,
                            digits))
    return found


# The stages of ours' timeline, in order, and what each one is.
STAGES = (
    ('next round', 'round', 'fault to the next round that pinged it'),
    ('first miss', 'miss 1', 'that round to its first miss applied'),
    ('confirmations', 'queued', 'first miss to the notification queued'),
    ('delivery', 'engine answered', 'queued to the engine\'s answer'),
    ('poll', 'stored', 'the engine\'s answer to the poll that saw it'),
)


def _where_the_time_goes(results, tag):
    """Median of each stage of ours' timeline, per scenario."""
    if 'ours' not in results:
        return
    for scenario in ('crash', 'hang'):
        incidents = [i for i in results['ours']['incidents']
                     if i.scenario == scenario]
        if not incidents:
            continue
        parts = []
        previous = None
        for name, event, _ in STAGES:
            spans = []
            for incident in incidents:
                line = incident.timeline
                if event in line and (previous is None or previous in line):
                    spans.append(line[event] - (line[previous]
                                                if previous else 0.0))
            parts.append('%s %s' % (name, figures.fmt(
                figures.median(spans), 's')))
            previous = event
        say('detection %s %s ours where the time goes (medians): %s' % (
            tag, scenario, ', '.join(parts)))


def confirm_interval_of(bed):
    """The confirm_interval ours runs with on ``bed``."""
    if bed.confirm_interval is not None:
        return bed.confirm_interval
    return monitors.our_confirm_interval()


def run(bed, kinds, settings, crashes=CRASHES, hangs=HANGS, idle=IDLE_SECONDS):
    say('== detection latency (%s: interval %d s, ping timeout %d s, '
        'threshold %d; %d crashes, %d hangs among %d hung each) ==' % (
            settings.label, settings.interval, settings.ping_timeout,
            settings.failure_threshold, crashes, hangs, HUNG_BEFORE))

    def one(kind):
        result = measure(bed, kind, settings, crashes, hangs, idle=idle)
        result['idle'] = idle
        return result

    results = testbed_mod.each_monitor(kinds, one)
    return summarize(results, settings, confirm_interval_of(bed))


def main(argv=None):
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument('--monitors', default='ours,peer',
                      help='comma-separated: ours, peer (default both)')
    args.add_argument('--settings', default='10/2/3',
                      help='interval/ping_timeout/failure_threshold')
    args.add_argument('--crashes', type=int, default=CRASHES)
    args.add_argument('--hangs', type=int, default=HANGS)
    args.add_argument('--idle-seconds', type=float, default=IDLE_SECONDS)
    args.add_argument('--confirm-interval', type=float,
                      help="ours' [monitor] confirm_interval (default: the "
                           "daemon's default)")
    options = args.parse_args(argv)
    settings = monitors.Settings.parse(options.settings)
    with testbed_mod.Testbed(settings,
                             confirm_interval=options.confirm_interval) as bed:
        found = run(bed, options.monitors.split(','), settings,
                    options.crashes, options.hangs, options.idle_seconds)
    for line in figures.table(found):
        say(line)


if __name__ == '__main__':
    main()
