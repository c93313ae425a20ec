"""Wires the monitor together and runs its green threads.

Three green threads share one hub: the sweep loop (scheduler), the
libvirt event dispatcher, and the outbox delivery worker; more serve the
metrics (when [metrics] listen_port is set) and the status socket, and
feed the systemd watchdog. Green threads only switch at I/O, so the
tracker and the store need no locks; blocking libvirt calls go to native
threads through ``concurrency.run_native``.
"""

import functools
import logging
import threading
import time

from monitor import concurrency
from monitor.daemon import libvirt_failures
from monitor.daemon import maintenance as maintenance_mod
from monitor.daemon import malloc_tuning
from monitor.daemon import metrics as metrics_mod
from monitor.daemon import metrics_server
from monitor.daemon import probe_runner
from monitor.daemon import recovery_step
from monitor.daemon import resolutions
from monitor.daemon import scheduler as scheduler_mod
from monitor.daemon import status_server
from monitor.daemon import systemd_notify
from monitor.daemon import tracker as domain_tracker
from monitor.health import guest_activity
from monitor.health import mass_failure
from monitor.health import policy as health_policy
from monitor.notify import delivery
from monitor.notify import drivers as notifier_driver
from monitor.notify import masakari
from monitor.notify import outbox as outbox_mod
from monitor.store import domain_store
from monitor.store import evidence as evidence_mod
from monitor.store import recovery_history
from monitor.virt import events as libvirt_events
from monitor.virt import host as libvirt_host

LOG = logging.getLogger(__name__)

# How long the end of a failure waits for libvirt to say whether a domain
# is still defined; past it the next pass asks again.
DEFINED_TIMEOUT = 5.0


class MonitorService:

    # Seconds close() waits for the libvirt connection to close, at least:
    # libvirt closes it once the calls using it have returned, and a ping
    # to a hung agent returns within its timeout plus the 5 s guest-sync
    # wait, so a stop gives the close what its bound has left.
    close_timeout = 2.0

    def __init__(self, conf, clock=time.time):
        self.conf = conf
        self._clock = clock
        self.stop_event = threading.Event()
        self.malloc_trimmer = malloc_tuning.Trimmer(time.monotonic)
        self.metrics = metrics_mod.MonitorMetrics()
        self.store = domain_store.DomainStore.from_conf(conf)
        self.outbox = outbox_mod.Outbox.from_conf(conf)
        # Held by a daemon that stopped while recovering a guest: sent,
        # saying so, by the delivery worker this start begins. Here, so
        # that an outbox locked by another process for longer than its
        # wait stops the start with one line, like an unusable outbox.
        recovery_step.release_interrupted(self.outbox, clock())
        # [notifier] driver: the engine, a signed webhook or nothing. One
        # outbox and one delivery worker serve them all, so a webhook gets
        # the engine's guarantees (durable, retried, exactly once).
        self.client = notifier_driver.build_client(conf)
        # Set by the tracker after each enqueue, waited on by the delivery
        # worker: the first attempt goes out at once. Neither knows the
        # other; what became of a notification is read from the outbox.
        delivery_wakeup = threading.Event()
        # The host object subscribes the bridge on every new connection
        # and turns its close callback into a reconnect.
        self.events = libvirt_events.EventBridge(clock=clock)
        self.host = libvirt_host.LibvirtHost.from_conf(
            conf, events=self.events, metrics=self.metrics,
            on_connected=self._on_connected)
        breaker = mass_failure.MassFailureBreaker.from_conf(conf)
        # Self-recovery (plain libvirt host): with the masakari driver
        # every action is none, and the step only says once per domain
        # that a metadata action is ignored.
        self.recovery = recovery_step.RecoveryStep.from_conf(
            conf, self.outbox, breaker, self.host,
            recovery_history.RecoveryHistory.from_conf(conf),
            evidence_mod.EvidenceStore.from_conf(conf),
            delivery_wakeup=delivery_wakeup, metrics=self.metrics)
        self.tracker = domain_tracker.DomainTracker(
            self.store,
            health_policy.HealthPolicy.from_conf(conf),
            breaker,
            self.outbox, conf.host, delivery_wakeup=delivery_wakeup,
            clock=clock, metrics=self.metrics,
            silent_periods=guest_activity.SilentPeriods.from_conf(conf),
            recovery=self.recovery,
            maintenance=maintenance_mod.Maintenance.from_conf(conf, clock),
            failures=libvirt_failures.LibvirtFailures.from_conf(conf))
        self.tracker.notifications.instancemonitor_wait = \
            masakari.instancemonitor_wait(conf)
        # Application probes: their own threads and slots, never the
        # ping lanes'.
        self.probes = probe_runner.ProbeRunner.from_conf(
            conf, self.tracker, self.host, metrics=self.metrics)
        self.delivery = delivery.DeliveryWorker.from_conf(
            conf, self.outbox, self.client, metrics=self.metrics,
            wakeup=delivery_wakeup)
        # The end of each reported failure, for the drivers told of it
        # (None for the others).
        self.resolutions = resolutions.Resolutions.from_conf(
            conf, self.store, self.outbox, delivery_wakeup,
            defined=self._is_defined)
        if self.resolutions is not None:
            self.probes.on_passed_again = \
                self.resolutions.application_passed
        self.scheduler = scheduler_mod.Scheduler.from_conf(
            conf, self.host, self.tracker,
            metrics=self.metrics)
        self.metrics.watch(store=self.store, outbox=self.outbox,
                           scheduler=self.scheduler,
                           breaker=self.tracker.breaker,
                           maintenance=self.tracker.maintenance,
                           stuck_calls=self.recovery.stuck)
        self.metrics_server = metrics_server.MetricsServer.from_conf(
            conf, metrics_server.make_app(
                self.metrics, metrics_server.scheduler_health(
                    self.scheduler, recovery=self.recovery)))
        if self.metrics_server is not None:
            # Bound now, so that a port in use stops the daemon at start
            # with the address in the error, like any other bad setting.
            self.metrics_server.listen()
        self.status_server = status_server.StatusServer.from_conf(
            conf, self.status_snapshot,
            requests=functools.partial(maintenance_mod.answer, self.tracker))
        self.status_server.listen()
        self.systemd = systemd_notify.SystemdNotifier.from_environ()
        # The loop counts as stuck once it has not come round for this
        # long; reconnect waits count as coming round, so systemd does not
        # restart a daemon that is only waiting for libvirt.
        self._stall_after = systemd_notify.sweep_stall_after(
            conf.monitor.interval, conf.monitor.ping_timeout,
            conf.libvirt.reconnect_max_delay)
        self._started_at = time.monotonic()
        self.watchdog = systemd_notify.WatchdogKeeper.from_environ(
            self.systemd, self.loop_alive, why_not=self.why_not_alive)
        self._threads = []

    def loop_alive(self):
        """True while the scheduler's loop keeps coming round and no
        recovery holds its slot past its bound."""
        return self.why_not_alive() is None

    def why_not_alive(self):
        last = self.scheduler.last_loop_at
        since = self._started_at if last is None else last
        stalled = time.monotonic() - since
        if stalled > self._stall_after:
            return ('the sweep loop has made no progress for %.0f s'
                    % stalled)
        return self.recovery.overdue_reason()

    def status_snapshot(self):
        """What ``guest-health-monitor-status`` shows."""
        return status_server.build_snapshot(
            self.store.all(), self.outbox.latest_per_domain(),
            self.conf.host, self._clock(),
            libvirt_connected=self.scheduler.connected,
            maintenance=self.tracker.maintenance,
            stuck_calls=self.recovery.stuck.snapshot())

    def _on_connected(self):
        # Whatever happened while we could not see libvirt (a reboot, a
        # libvirtd restart re-syncing its agent link) must not count as
        # misses; the agent-disconnect grace covers it.
        self.tracker.libvirt_connected()
        if self.resolutions is not None:
            self.resolutions.connected()

    def _is_defined(self, uuid):
        """host.is_defined on a native thread, waited for at most
        DEFINED_TIMEOUT seconds (None past it: cannot tell)."""
        call = concurrency.NativeCall(self.host.is_defined, uuid,
                                      name='is-defined')
        if not call.wait(DEFINED_TIMEOUT):
            return None
        try:
            return call.result()
        finally:
            call.close()

    # -- event dispatch ----------------------------------------------------------

    def dispatch(self, item):
        """Apply one item from libvirt's event thread."""
        if isinstance(item, libvirt_events.EventLost):
            LOG.warning('A libvirt %s event could not be read (%s); the '
                        'next listing stands in for it', item.kind, item.text)
            # It may have been a metadata change: the next listing reads
            # every domain's settings again, as after a reconnect.
            self.host.reread_settings()
        elif isinstance(item, libvirt_events.ConnectionClosed):
            self.host.connection_closed(item.reason, item.conn)
        elif isinstance(item, libvirt_events.MetadataChanged):
            self._metadata_changed(item)
        else:
            self.tracker.apply_event(item)
            if self.resolutions is not None:
                self.resolutions.saw(item)

    def _metadata_changed(self, event):
        # A listing reads the settings once per run of the domain; read
        # them now so that the change applies at once.
        read = concurrency.run_native(self.host.refresh_settings,
                                      event.uuid)
        if read is None:
            # Gone meanwhile, or libvirt with it (the reconnect reads
            # every domain again); any other failure has the next listing
            # read it.
            return
        self.tracker.settings.changed(event.uuid, event.name, read.settings,
                                      read.error, read.read_at)

    def _dispatch_loop(self):
        while not self.stop_event.is_set():
            self.events.wait(timeout=1.0)
            for item in self.events.drain():
                try:
                    self.dispatch(item)
                except Exception:  # loop boundary: log and keep going
                    LOG.exception('Unexpected error applying %r', item)
            # What the libvirt calls in native threads had to say.
            self.host.log_notes(self.metrics)
            # Said once a call a recovery gave up on returns at last.
            self.recovery.stuck.prune()
            self.malloc_trimmer.maybe_trim()

    # -- lifecycle ------------------------------------------------------------------

    def start(self):
        libvirt_events.start_event_loop()
        pending = self.outbox.pending()
        if pending:
            LOG.warning('%d notification(s) from before the restart are '
                        'still pending; delivering them', len(pending))
            self.tracker.adopt_pending(pending)
        self._threads = [
            concurrency.spawn(self.scheduler.run, self.stop_event),
            concurrency.spawn(self._dispatch_loop),
            concurrency.spawn(self.delivery.run, self.stop_event),
            concurrency.spawn(self.probes.run, self.stop_event),
        ]
        if self.resolutions is not None:
            self._threads.append(concurrency.spawn(
                self.resolutions.run, self.stop_event, self._clock))
        # The Alertmanager driver re-posts its active alerts.
        repost = getattr(self.client, 'run', None)
        if repost is not None:
            self._threads.append(concurrency.spawn(repost, self.stop_event))
        if self.metrics_server is not None:
            self._threads.append(concurrency.spawn(self._serve_metrics))
        self._threads.append(
            concurrency.spawn(self.status_server.serve, self.stop_event))
        if self.watchdog is not None:
            self._threads.append(
                concurrency.spawn(self.watchdog.run, self.stop_event))
        # Ready once the loops run: waiting for libvirt is part of running
        # as intended, and a unit that never became ready would only be
        # restarted in a loop that cannot bring libvirt back.
        self.systemd.ready('Monitoring guests on %s' % self.host.uri)

    def _serve_metrics(self):
        # stop() may run in a signal handler, where killing a green
        # thread is not safe; the server is stopped from here instead.
        self.metrics_server.start()
        while not self.stop_event.wait(1.0):
            pass
        self.metrics_server.stop()

    def stop(self):
        self.systemd.stopping()
        self.stop_event.set()
        self.delivery.wake()

    def wait(self, grace=None):
        """Wait for the green threads, at most ``grace`` seconds in all
        after stop() (a ping in flight ends within one ping timeout).
        Returns whether every one ended."""
        ended = []
        with concurrency.deadline(grace):
            for thread in self._threads:
                thread.wait()
                ended.append(thread)
        all_ended = len(ended) == len(self._threads)
        # One still in a round (waiting for a ping to a hung agent) must
        # not go on with it once close() has closed the stores under it.
        for thread in self._threads:
            if thread not in ended:
                thread.kill()
        self._threads = []
        return all_ended

    def close(self, timeout=None):
        """Flush and release everything; pending notifications stay in
        the outbox for the next start, held ones too (the next start
        sends them as interrupted). Bounded: a libvirt call stuck in a
        native thread is left behind (see :func:`abandoned`); the
        connection's close is waited for ``timeout`` seconds (at least
        ``close_timeout``)."""
        timeout = max(self.close_timeout, timeout or 0)
        # While the connection is open, with half the close's share: a
        # timeout left lowered is restored at the next start.
        self.scheduler.fast_confirmation.restore_all(timeout / 2)
        # Before the outbox closes: none of them may touch it any more.
        self.recovery.stop()
        if self.metrics_server is not None:
            # Before the outbox closes: a scrape reads it.
            self.metrics_server.stop()
        self.status_server.close()
        self.store.close()
        self.outbox.close()
        # The webhook's HTTP session; the engine's client keeps none open.
        close_client = getattr(self.client, 'close', None)
        if close_client is not None:
            close_client()
        # In a native thread of its own: closing a connection that a
        # stuck call still uses must not hold the stop.
        # Not counted as abandoned when given up on: the process's exit
        # closes the connection all the same.
        closing = concurrency.NativeCall(self.host.close, name='close',
                                         tracked=False)
        if not closing.wait(timeout):
            LOG.warning('The libvirt connection to %s did not close within '
                        '%.0f s; leaving it', self.host.uri, timeout)
        self.events.close()
        self.systemd.close()

    def settle(self, timeout):
        """Let the native calls still running end, for up to ``timeout``
        seconds: a ping to a hung agent ends within libvirt's guest-sync
        floor (5 s) past its own timeout, and a routine stop must not be
        told as one that abandoned it. Recovery calls already given up on
        are not waited for."""
        return concurrency.wait_native_calls(timeout,
                                             leave=len(self.recovery.stuck))

    @staticmethod
    def abandoned():
        """How many native calls are still running once the service is
        closed: libvirt calls that never returned, left to end with the
        process."""
        return concurrency.native_calls_running()
