"""The ping loop: rounds of guest-pings in lanes, one batch per round.

A round lists the domains, pings the ones that are due and hands every
result gathered since the last round to the tracker in one batch
(``apply_round``). Rounds start ``interval`` seconds apart, measured start
to start; a round that overruns is followed by the next one at once.

Three lanes, each a queue drained by at most its own number of pings in
flight; a ping starts as soon as a slot of its lane frees, so a hung agent
holds one slot, never the round:

- the *answering lane* pings every domain whose last ping was answered
  (or that was never pinged) once per round. The round waits for it,
  at most ``ping_timeout`` + 6 s: libvirt holds a ping up to 30 s while
  another agent command (a freeze, a quiesced snapshot) holds the agent.
- the *confirming lane* pings domains whose last ping missed. libvirt
  serialises agent commands per domain and, once an agent has timed out,
  makes every later command to it wait at least 5 s for a guest-sync, so
  such pings are slow; in a lane of their own they cannot starve the
  answering domains. After a first miss, each confirmation ping starts
  ``confirm_interval`` seconds after the previous ping of that domain
  ended, until the domain has missed its failure threshold in a row (the
  tracker owns each domain's threshold: the configured one or its own,
  from its metadata, and says it with the round's outcome).
- the *silent lane* then pings it once per interval, so that guests
  reported long ago never hold up the confirmation of a new failure.

All lanes share ``max_concurrent_pings`` slots; the confirming lane may
take all but a fifth kept for the answering lane and a tenth for the
silent lane, the answering lane whatever they leave free (the lanes and
their slots: ``lanes``). The round waits for the confirming lane at most until
``interval`` seconds after its start (less the time the last round took
to apply its results), and not for the silent lane; a ping still running
then is handed to the tracker with the round in which it ends.

When a confirmation is due before the next regular round, the next round
starts early, at that moment, and pings the answering domains again too.
That keeps the mass-failure breaker meaningful: it judges how many of the
answering domains missed *at once*, so each batch it sees must cover the
whole host, never only the few domains being confirmed (three confirmations
missing together would read as "every domain missed" and suppress the very
notifications they confirm). Per-domain schedules spread over the interval
would cost fewer pings while something is being confirmed, but would hand
the breaker slices of the host, too thin to tell a host stall from a few
dead guests. Early rounds last only while a domain is being confirmed
(threshold - 1 confirmations per failure).

While a round's results are applied, the tracker asks for the I/O
counters of the domains that missed and whose silence it corroborates;
they are taken in one libvirt call (``counter_snapshots``: bounded wait,
one call in flight).

A domain is never queued or in flight twice, and never pinged again before
its last result has been applied: libvirt would queue two pings to one
agent behind each other, and the tracker counts one result per domain per
round. Misses of a round the breaker suppressed do not start confirmations
and keep the domains in the answering lane: the host, not the guest, is
suspected.
"""

import functools
import logging
import time
import typing

from oslo_config import cfg

from monitor import concurrency
from monitor.daemon import counter_snapshots as counters_mod
from monitor.daemon import fast_confirmation as fast_mod
from monitor.daemon import lanes as lanes_mod
from monitor.daemon import metrics as metrics_mod
from monitor.health import host_operations as host_operations_mod
from monitor.health.ping_outcome import Outcome
from monitor.virt import host as libvirt_host

LOG = logging.getLogger(__name__)

# How much longer than the ping timeout a round waits for its answering
# lane: libvirt's guest-sync floor (5 s) after an agent timed out, and a
# second to spare.
_ANSWERING_SLACK = 6.0


def _prose(text):
    """Help text written as prose: each paragraph's lines joined by one
    space, paragraphs kept apart by a blank line."""
    return '\n\n'.join(' '.join(paragraph.split())
                        for paragraph in text.strip().split('\n\n'))


SCHEDULER_OPTS = [
    cfg.FloatOpt('interval',
                 default=10.0, min=0.5, max=86400.0,
                 help=_prose("""
Seconds between the starts of two rounds; each round pings every monitored
guest once. From 0.5 to 86400 (a day). Default 10.

Related options: ping_timeout, confirm_interval, failure_threshold.""")),
    cfg.IntOpt('ping_timeout',
               default=2, min=1, max=3600,
               help=_prose("""
Seconds to wait for one guest-ping answer. libvirt rounds this to whole
seconds and, once an agent has timed out, adds its own guest-sync wait of
at least 5 s to every later command to that guest. From 1 to 3600: libvirt
takes a C int, and a longer wait only hides a dead guest. Default 2.""")),
    # Default 0: libvirt already paces confirmations (every command to an
    # agent that timed out waits at least 5 s for its guest-sync), so any
    # wait added here only delays the report. Measured on the lab at
    # 10/2/3, 0.5 put crash to stored notification at 18.1 s on median,
    # 1.0 s of it these waits (bench/README.md).
    cfg.FloatOpt('confirm_interval',
                 default=0.0, min=0.0, max=60.0,
                 help=_prose("""
Seconds between the end of a missed ping and the next ping of that guest,
until it has missed failure_threshold pings in a row (or answers). Each
confirmation also waits for libvirt's own guest-sync, 5 s (ping_timeout
with fast_confirmation), so with the defaults a guest is reported after
about 2 + 2 x (0 + 2) = 6 s of silence (12 s without fast confirmation)
instead of 2 intervals. A longer value lets a guest stall for
longer (heavy swapping, a host under load) without being reported, at the
cost of a later report of a real failure: each second here adds
failure_threshold - 1 seconds to both; with interval or more,
confirmations wait for the regular rounds. A miss libvirt returns at once
(the agent's channel closed, as during a reboot) is confirmed no sooner
than ping_timeout after it started, so that the reboot's own events arrive
first. Default 0 (confirm at the pace libvirt allows).

Related options: interval, failure_threshold.""")),
    cfg.IntOpt('max_concurrent_pings',
               default=5, min=1, max=64,
               help=_prose("""
Most guest-pings in flight at once on the libvirt connection. Guests being
confirmed (their last ping missed) may take all but a fifth of them (at
least one) kept for the answering guests and a tenth (at least one, from
3) for guests already reported; the answering guests use whatever is left.
libvirtd serves at most
max_client_requests (default 5) calls per client connection at a time and
max_workers (default 20) in all; calls beyond them wait in libvirtd, where
hung agents would then hold up the others. Keep this value at most
max_client_requests. The default pings about 1,400 guests per 10 s
interval; for more, raise libvirtd's max_client_requests to this value and
max_workers to this value plus what other clients (nova-compute) need,
e.g. 50 / 70 / 50 for 5,000 guests. Each ping in flight holds one native
thread here and one of libvirtd's workers, so more than 64 only queues
calls in libvirtd and starves its other clients. From 1 to 64. Default
5.""")),
]


def list_opts():
    return [('monitor', SCHEDULER_OPTS)]


def register_opts(conf):
    conf.register_opts(SCHEDULER_OPTS, group='monitor')


class SweepStats(typing.NamedTuple):
    """What one round did. ``answering`` is how long its answering lane
    took; ``duration`` includes the wait for confirmations."""
    duration: float
    listed: int
    pinged: int
    missed: int
    suppressed: bool
    answering: float = 0.0
    confirming: int = 0


class Scheduler:

    def __init__(self, host, tracker, interval, ping_timeout,
                 max_concurrent_pings, confirm_interval=0.0,
                 clock=time.monotonic, execute=concurrency.run_native,
                 metrics=None, native_pings=None, counter_snapshots=None,
                 host_operations=None, fast_confirmation=None):
        self.host = host
        self.tracker = tracker
        self.interval = interval
        self.ping_timeout = ping_timeout
        self.max_concurrent_pings = max_concurrent_pings
        self.confirm_interval = confirm_interval
        self._clock = clock
        self._execute = execute
        # Bounded by the ping timeout: one round trip per domain, as a
        # ping.
        self.counter_snapshots = (
            counter_snapshots
            or counters_mod.CounterSnapshots(execute, timeout=ping_timeout))
        # Guest-pings on native threads of their own, unless the caller
        # runs libvirt calls some other way (tests: directly).
        if native_pings is None:
            native_pings = execute is concurrency.run_native
        # Lowers a suspect's agent timeout for its confirmation pings.
        self.fast_confirmation = (fast_confirmation
                                  or fast_mod.FastConfirmation.off(host))
        self._lanes = lanes_mod.Lanes(max_concurrent_pings, self._ping_ended,
                                      native=native_pings, execute=execute)
        # Domains queued, in flight, or with a result not applied yet.
        self._busy = set()
        # Results not handed to the tracker yet, by UUID.
        self._results = {}
        # When each domain's last ping ended (clock seconds).
        self._ended = {}
        # Domains whose last applied ping missed, and how many misses in a
        # row the breaker let through.
        self._missed = {}
        # When the next confirmation of a domain is due (clock seconds).
        self._confirm_due = {}
        # Start of the round that last queued a domain of the silent lane
        # (it keeps the interval).
        self._queued_round = {}
        # How long the last round took to apply its results (s).
        self._apply_took = 0.0
        # (UUID, exception type) already logged, to log each once.
        self._ping_errors = set()
        self.metrics = metrics or metrics_mod.MonitorMetrics()
        # Freezes and held agents, nobody's miss up to the frozen grace.
        self.host_operations = (host_operations
                                or host_operations_mod.HostOperations())
        self.last_sweep = None
        # Clock seconds when the loop last completed a round (domains
        # listed, pinged and the results applied); None before the first.
        # The liveness check compares it with interval and ping_timeout.
        self.last_progress_at = None
        # Monotonic time the loop last came round, reconnect waits
        # included: the systemd watchdog is fed while it does.
        self.last_loop_at = None

    @classmethod
    def from_conf(cls, conf, host, tracker, metrics=None):
        return cls(host, tracker,
                   interval=conf.monitor.interval,
                   ping_timeout=conf.monitor.ping_timeout,
                   max_concurrent_pings=conf.monitor.max_concurrent_pings,
                   confirm_interval=conf.monitor.confirm_interval,
                   metrics=metrics,
                   host_operations=host_operations_mod.HostOperations
                   .from_conf(conf),
                   fast_confirmation=fast_mod.FastConfirmation.from_conf(
                       conf, host))

    # -- connection ------------------------------------------------------------

    def connection_lost(self, why):
        """libvirt dropped us (close callback or a disconnect error)."""
        self.host.connection_lost(why)

    def ensure_connected(self):
        """Connect if needed; return the seconds to wait before retrying
        (0 when connected)."""
        return self.host.ensure_connected()

    @property
    def connected(self):
        return self.host.connected

    # -- one round ----------------------------------------------------------------

    def sweep(self):
        """One round: list, ping what is due, apply every result gathered
        since the last round. Returns SweepStats, or None when libvirt
        could not be reached."""
        started = self._clock()
        try:
            domains = self._execute(self.host.list_domains)
        except libvirt_host.LibvirtUnavailable as exc:
            self.connection_lost(exc)
            return None
        with _batch(self.tracker):
            to_ping = self.tracker.reconcile(domains)
        listed = {info.uuid: info for info in to_ping}
        self._forget_unlisted(set(listed))
        pinged = 0
        for info in to_ping:
            lane = self._lane_for(info.uuid, started)
            if lane is None:
                continue
            self._busy.add(info.uuid)
            ping = (self.fast_confirmation.ping
                    if lane is self._lanes.confirming else self.host.ping)
            self._lanes.start(lane, ping, (info, self.ping_timeout), info)
            pinged += 1
        # Bounded: libvirt holds a ping up to 30 s while another agent
        # command (a freeze, a quiesced snapshot) holds the agent; such a
        # ping stays busy and is applied with the round in which it ends.
        self._lanes.answering.wait_idle(self.ping_timeout
                                        + _ANSWERING_SLACK)
        answering = self._clock() - started
        # Confirmations may finish in this round as long as the round
        # still ends within the interval. Nothing waits for the silent
        # lane: its results are no news, the next round applies them.
        self._lanes.confirming.wait_idle(max(
            0.0, started + self.interval - self._apply_took - self._clock()))
        apply_started = self._clock()

        results, self._results = self._results, {}
        self._busy.difference_update(results)
        # Every ping made, before a lost connection discards some of them.
        outcomes = [r.outcome for r in results.values()]
        results = self.host_operations.judge_round(results)
        for uuid, change in self.host_operations.take_changes():
            LOG.info('Domain %s (%s): %s', getattr(listed.get(uuid), 'name',
                                                   '?'), uuid, change)
        if any(r.outcome is Outcome.DISCONNECTED for r in results.values()):
            # Results gathered from a dying connection say nothing about
            # the guests; drop the round's misses with them.
            self.connection_lost('connection lost during a round')
            results = {uuid: r for uuid, r in results.items()
                       if r.outcome is Outcome.OK}
        with _batch(self.tracker):
            outcome = self.tracker.apply_round(
                results, counters_of=functools.partial(self._counters,
                                                       listed))
        self._note_outcomes(results, outcome)
        # Domains no longer confirmed get their agent timeouts back.
        self.fast_confirmation.settle(self._confirm_due, listed)
        self._apply_took = self._clock() - apply_started
        stats = SweepStats(
            duration=self._clock() - started, listed=len(domains),
            pinged=pinged,
            missed=sum(1 for r in results.values()
                       if r.outcome is Outcome.MISSED),
            suppressed=outcome.suppressed, answering=answering,
            confirming=len(self._confirm_due))
        self.last_sweep = stats
        self.last_progress_at = self._clock()
        self.metrics.sweep_finished(stats.duration, outcomes)
        LOG.debug('Sweep: %d domains listed, %d pinged, %d missed in '
                  '%.3f s (answering lane %.3f s, %d being confirmed)',
                  stats.listed, stats.pinged, stats.missed,
                  stats.duration, stats.answering, stats.confirming)
        return stats

    def _counters(self, listed, uuids):
        """The I/O counters of the domains ``uuids`` (of the round's
        listing ``listed``), taken now, in one call: the tracker asks for
        those of the domains that missed and whose silence it
        corroborates."""
        domains = [listed[uuid].dom for uuid in uuids
                   if uuid in listed and listed[uuid].dom is not None]
        return self.counter_snapshots.take(self.host.connection, domains)

    def _lane_for(self, uuid, round_started):
        """The lane to queue ``uuid`` in this round, or None to skip it."""
        if uuid in self._busy:
            return None
        if uuid not in self._missed:
            return self._lanes.answering
        due = self._confirm_due.get(uuid)
        if due is not None:
            return self._lanes.confirming if due <= round_started else None
        # Past the threshold: once per interval, in the silent lane, even
        # when rounds start early.
        last = self._queued_round.get(uuid)
        if last is not None and last + self.interval > round_started:
            return None
        self._queued_round[uuid] = round_started
        return self._lanes.silent

    def _ping_ended(self, info, ok, value):
        if not ok:
            # One domain's failure stays its own.
            key = (info.uuid, type(value).__name__)
            if key not in self._ping_errors:
                self._ping_errors.add(key)
                LOG.error('Cannot ping domain %s (%s): %s: %s; its result '
                          'is left out of this round', info.name, info.uuid,
                          type(value).__name__, value)
            self._busy.discard(info.uuid)
            return
        self._ended[info.uuid] = self._clock()
        self._results[info.uuid] = value

    def _note_outcomes(self, results, outcome):
        """Decide from the applied results (and the tracker's
        ``RoundOutcome`` of them) which domains are confirmed next, and
        when."""
        for uuid, result in results.items():
            if result.outcome is not Outcome.MISSED or outcome.suppressed \
                    or uuid not in outcome.thresholds:
                # A suppressed miss is the host's, not the guest's: it
                # keeps its place among the answering domains. One the
                # tracker did not count (the domain was forgotten or put
                # under maintenance while the ping ran) is nobody's.
                self._missed.pop(uuid, None)
                self._confirm_due.pop(uuid, None)
                self._queued_round.pop(uuid, None)
                continue
            misses = self._missed.get(uuid, 0) + 1
            self._missed[uuid] = misses
            if misses < outcome.thresholds[uuid]:
                # A miss libvirt returned at once (the agent's channel
                # closed: a reboot or an agent restart under way) is
                # confirmed no sooner than one that timed out. The reboot
                # or agent event that explains it comes moments later;
                # three instant misses must not beat it to a report.
                # Timed-out misses are paced by libvirt's guest-sync
                # floor and get nothing added.
                early = max(0.0, self.ping_timeout - result.duration)
                self._confirm_due[uuid] = (self._ended[uuid]
                                           + self.confirm_interval + early)
            else:
                self._confirm_due.pop(uuid, None)

    def _forget_unlisted(self, to_ping):
        for uuid in set(self._missed) - to_ping - self._busy:
            self._missed.pop(uuid, None)
            self._confirm_due.pop(uuid, None)
            self._queued_round.pop(uuid, None)
        for uuid in set(self._ended) - to_ping - self._busy:
            del self._ended[uuid]
        self.host_operations.keep_only(to_ping | self._busy)

    def next_round_at(self, started):
        """When the round after one started at ``started`` is due: an
        interval later, or earlier when a confirmation is due first."""
        due = [started + self.interval]
        due.extend(when for uuid, when in self._confirm_due.items()
                   if uuid not in self._busy)
        return min(due)

    # -- the loop -------------------------------------------------------------------

    def run(self, stop_event):
        """Run rounds until ``stop_event`` is set."""
        while not stop_event.is_set():
            started = self._clock()
            self.last_loop_at = started
            try:
                retry_in = self.ensure_connected()
                if retry_in:
                    stop_event.wait(retry_in)
                    continue
                self.sweep()
            except Exception:  # loop boundary: log and keep monitoring
                LOG.exception('Unexpected error during a round')
            remaining = self.next_round_at(started) - self._clock()
            if remaining > 0:
                stop_event.wait(remaining)


class _NoBatch:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def _batch(tracker):
    """The store's transaction for a round's writes, where it has one."""
    store = getattr(tracker, 'store', None)
    if store is not None and hasattr(store, 'batch'):
        return store.batch()
    return _NoBatch()
