"""The sweep loop: list domains, ping them all in parallel, apply results.

One sweep pings every monitored domain at once through native threads
(libvirt calls block), bounded by ``max_concurrent_pings``, and waits for
all of them, so a sweep lasts as long as its slowest ping, not the sum:
one hung guest costs one ping timeout (libvirt adds a 5 s guest-sync floor
once an agent has timed out), however many others are hung with it. A
domain is in at most one sweep at a time, so two pings are never in
flight for the same domain (libvirt would queue them behind each other).

Sweeps start ``interval`` seconds apart, measured start to start; a sweep
that overruns is followed by the next one at once rather than by a whole
extra interval.
"""

import logging
import time
import typing

import eventlet
from eventlet import tpool
from oslo_config import cfg

from monitor import libvirt_host
from monitor import metrics as metrics_mod
from monitor.ping_outcome import Outcome

LOG = logging.getLogger(__name__)

SCHEDULER_OPTS = [
    cfg.FloatOpt('interval',
                 default=10.0, min=0.5, max=86400.0,
                 help='Seconds between the starts of two sweeps; each '
                      'sweep pings every monitored guest once. From 0.5 to '
                      '86400 (a day). Default 10.'
                      '\n\nRelated options: ping_timeout, '
                      'failure_threshold.'),
    cfg.IntOpt('ping_timeout',
               default=2, min=1, max=3600,
               help='Seconds to wait for one guest-ping answer. libvirt '
                    'rounds this to whole seconds and, once an agent has '
                    'timed out, adds its own guest-sync wait of at least 5 '
                    's to every later command to that guest. From 1 to '
                    '3600: libvirt takes a C int, and a longer wait only '
                    'hides a dead guest. Default 2.'),
    cfg.IntOpt('max_concurrent_pings',
               default=5, min=1, max=64,
               help='Most guest-pings in flight at once. libvirtd serves '
                    'at most max_client_requests (default 5) calls per '
                    'client connection at a time; raise both together. '
                    'Each ping in flight holds one native thread here and '
                    'one of libvirtd\'s worker threads (max_workers, '
                    'default 20), so more than 64 only queues calls in '
                    'libvirtd and starves its other clients. From 1 to 64. '
                    'Default 5.'),
]


def list_opts():
    return [('monitor', SCHEDULER_OPTS)]


def register_opts(conf):
    conf.register_opts(SCHEDULER_OPTS, group='monitor')


class SweepStats(typing.NamedTuple):
    duration: float
    listed: int
    pinged: int
    missed: int
    held: bool


class Scheduler:

    def __init__(self, host, tracker, interval, ping_timeout,
                 max_concurrent_pings, on_connected=None, on_close=None,
                 reconnect_initial_delay=1.0, reconnect_max_delay=30.0,
                 clock=time.monotonic, execute=tpool.execute, metrics=None):
        self.host = host
        self.tracker = tracker
        self.interval = interval
        self.ping_timeout = ping_timeout
        self.max_concurrent_pings = max_concurrent_pings
        self.reconnect_initial_delay = reconnect_initial_delay
        self.reconnect_max_delay = reconnect_max_delay
        self._on_connected = on_connected or (lambda conn: None)
        self._on_close = on_close
        self._clock = clock
        self._execute = execute
        self._pool = eventlet.GreenPool(max_concurrent_pings)
        self._connected = False
        self._outage_since = None
        self._reconnect_delay = reconnect_initial_delay
        # A connection after the first one is a reconnect, for the metrics
        # (the log says "Reconnected" after a failed first attempt too).
        self._ever_connected = False
        self.metrics = metrics or metrics_mod.MonitorMetrics()
        self.last_sweep = None

    @classmethod
    def from_conf(cls, conf, host, tracker, on_connected=None,
                  on_close=None, metrics=None):
        return cls(host, tracker,
                   interval=conf.monitor.interval,
                   ping_timeout=conf.monitor.ping_timeout,
                   max_concurrent_pings=conf.monitor.max_concurrent_pings,
                   on_connected=on_connected, on_close=on_close,
                   reconnect_initial_delay=conf.libvirt.
                   reconnect_initial_delay,
                   reconnect_max_delay=conf.libvirt.reconnect_max_delay,
                   metrics=metrics)

    # -- connection ------------------------------------------------------------

    def connection_lost(self, why):
        """libvirt dropped us (close callback or a disconnect error)."""
        if self._connected:
            self._connected = False
            self._outage_since = self._clock()
            self._reconnect_delay = self.reconnect_initial_delay
            LOG.warning('Lost the libvirt connection to %s (%s); '
                        'reconnecting', self.host.uri, why)
            self._execute(self.host.close)

    def ensure_connected(self):
        """Connect if needed; return the seconds to wait before retrying
        (0 when connected)."""
        if self._connected:
            return 0
        try:
            conn = self._execute(self.host.connect, self._on_close)
        except libvirt_host.LibvirtUnavailable as exc:
            if self._outage_since is None:
                self._outage_since = self._clock()
                LOG.error('Cannot connect to libvirt at %s: %s; retrying '
                          'with backoff up to %.0f s', self.host.uri, exc,
                          self.reconnect_max_delay)
            delay = self._reconnect_delay
            self._reconnect_delay = min(self._reconnect_delay * 2,
                                        self.reconnect_max_delay)
            return delay
        self._on_connected(conn)
        self._connected = True
        if self._ever_connected:
            self.metrics.libvirt_reconnected()
        self._ever_connected = True
        self._reconnect_delay = self.reconnect_initial_delay
        if self._outage_since is None:
            LOG.info('Connected to libvirt at %s', self.host.uri)
        else:
            LOG.info('Reconnected to libvirt at %s after %.1f s',
                     self.host.uri, self._clock() - self._outage_since)
        self._outage_since = None
        return 0

    @property
    def connected(self):
        return self._connected

    # -- one sweep ----------------------------------------------------------------

    def sweep(self):
        """List, ping everything in parallel, apply. Returns SweepStats,
        or None when libvirt could not be reached."""
        started = self._clock()
        try:
            domains = self._execute(self.host.list_domains)
        except libvirt_host.LibvirtUnavailable as exc:
            self.connection_lost(exc)
            return None
        to_ping = self.tracker.reconcile(domains)
        results = {}
        for info, result in zip(to_ping,
                                self._pool.imap(self._ping, to_ping)):
            results[info.uuid] = result
        # Every ping made, before a lost connection discards some of them.
        outcomes = [r.outcome for r in results.values()]
        if any(r.outcome is Outcome.DISCONNECTED for r in results.values()):
            # Results gathered from a dying connection say nothing about
            # the guests; drop the whole sweep's misses with them.
            self.connection_lost('connection lost during a sweep')
            results = {uuid: r for uuid, r in results.items()
                       if r.outcome is Outcome.OK}
        held = self.tracker.apply_round(results)
        stats = SweepStats(
            duration=self._clock() - started, listed=len(domains),
            pinged=len(to_ping),
            missed=sum(1 for r in results.values()
                       if r.outcome is Outcome.MISSED),
            held=held)
        self.last_sweep = stats
        self.metrics.sweep_finished(stats.duration, outcomes)
        LOG.debug('Sweep: %d domains listed, %d pinged, %d missed in '
                  '%.3f s', stats.listed, stats.pinged, stats.missed,
                  stats.duration)
        return stats

    def _ping(self, info):
        return self._execute(self.host.ping, info.uuid, self.ping_timeout)

    # -- the loop -------------------------------------------------------------------

    def run(self, stop_event):
        """Sweep every ``interval`` seconds until ``stop_event`` is set."""
        while not stop_event.is_set():
            started = self._clock()
            try:
                retry_in = self.ensure_connected()
                if retry_in:
                    stop_event.wait(retry_in)
                    continue
                self.sweep()
            except Exception:  # loop boundary: log and keep monitoring
                LOG.exception('Unexpected error during a sweep')
            remaining = started + self.interval - self._clock()
            if remaining > 0:
                stop_event.wait(remaining)
