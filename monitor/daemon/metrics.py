"""The daemon's metrics, kept and rendered by prometheus_client.

:class:`MonitorMetrics` is the daemon's own set, on a registry of its own:
nothing is registered on prometheus_client's process-wide default registry,
so two sets in one process (the tests make many) never collide and a
library that registers on the default registry never leaks into the
daemon's scrape. This module serves nothing; metrics_server.py is the
HTTP edge and asks :meth:`MonitorMetrics.render` for the text.

The modules that count (scheduler, tracker, delivery worker) call its
named methods. Values that already live elsewhere (domains per state, the
outbox, the libvirt connection, the breaker) are read at each scrape
rather than copied, so they can never drift from the truth.

Every label takes a fixed, declared set of values and the methods refuse
anything else, so no series is ever keyed by a domain: the number of
series stays the same whatever the number of guests. Per-domain detail is
in the log, which names each domain at each state change.

Threads: prometheus_client takes a ``threading`` lock around each update.
It is imported before the daemon's monkey-patching, so those may be
native locks; either kind is safe here because only green threads, all on
the hub's one OS thread, touch the metrics (native threads -- run_native's
workers, libvirt's event thread -- never do), and no green switch happens
while a lock is taken: reads that may do I/O (the store, the outbox) run
outside them.
"""

import collections
import logging

import prometheus_client
from prometheus_client import exposition
from prometheus_client import metrics_core

from monitor import version as build_version
from monitor.daemon import failure_metrics
from monitor.health import states
from monitor.health.ping_outcome import Outcome
from monitor.notify import notification as notification_mod

LOG = logging.getLogger(__name__)

PREFIX = 'guest_health_monitor_'

# What render() returns is the classic text format with plain metric
# names. prometheus_client 0.22 moved CONTENT_TYPE_LATEST to the 1.0.0
# text format (names beyond [a-zA-Z0-9_:]) and kept the 0.0.4 one, which
# it sends itself when a scraper does not negotiate, under this name.
CONTENT_TYPE = getattr(exposition, 'CONTENT_TYPE_PLAIN_0_0_4',
                       prometheus_client.CONTENT_TYPE_LATEST)

# A sweep lasts about as long as its slowest ping: tens of milliseconds
# when every agent answers, one ping timeout plus libvirt's 5 s guest-sync
# floor when one is hung. The buckets split those cases and show sweeps
# longer than the default 10 s interval.
SWEEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0,
                 30.0, 60.0)

PING_OUTCOMES = tuple(o.value for o in Outcome)
# Label values are lower case, as Prometheus conventions have them.
DELIVERY_RESULTS = (notification_mod.OutcomeKind.ACCEPTED.value.lower(),
                    notification_mod.OutcomeKind.DUPLICATE.value.lower())
# The stages of libvirt_host (kept here as values: metrics must not import
# the libvirt edge).
DOMAIN_ERROR_STAGES = ('list', 'xml', 'ping')
# The libvirt calls of a recovery (recovery_deadlines.STEPS).
RECOVERY_STEPS = ('console', 'screenshot', 'action')


# This build's version, or 'unknown' when it cannot be told.
version = build_version.version_string


class ReadAtScrape:
    """A gauge read from another part of the daemon at each scrape.

    ``read`` returns a number, a mapping from label value to number (when
    the gauge has a label), or None; None, or no ``read`` at all, gives the
    family without samples, which Prometheus reads as "no data", not as
    zero.

    A read that fails leaves out this family's samples and no other: the
    scrape still carries sweeps_total and libvirt_connected, the signals
    that the daemon works, when for example the outbox file cannot be
    read. The series of the family go stale, which an alert on absent()
    catches; the log says why, once when the reads start failing and once
    when they work again.
    """

    def __init__(self, name, documentation, label=None):
        self.name = name
        self.documentation = documentation
        self.label = label
        self.read = None
        self.failing = False

    def _family(self):
        return metrics_core.GaugeMetricFamily(
            self.name, self.documentation,
            labels=[self.label] if self.label else [])

    def describe(self):
        return [self._family()]

    def collect(self):
        family = self._family()
        if self.read is None:
            return [family]
        try:
            value = self.read()
        except Exception as exc:  # scrape boundary: this family only
            if self.failing:
                LOG.debug('Still cannot read %s: %s', self.name, exc)
            else:
                self.failing = True
                LOG.warning('Cannot read %s, served without samples until '
                            'it can be read: %s', self.name, exc)
            return [family]
        if self.failing:
            self.failing = False
            LOG.info('%s can be read again', self.name)
        if value is None:
            return [family]
        if self.label is None:
            family.add_metric([], value)
        else:
            for label_value, number in value.items():
                family.add_metric([label_value], number)
        return [family]


class _WithoutCreated:
    """The registry as a scrape sees it: no ``*_created`` samples.

    prometheus_client gives each counter and histogram series a creation
    timestamp, an OpenMetrics notion that the classic text format can only
    carry as one extra gauge family per counter; Prometheus stores them as
    ordinary series. prometheus_client's switch to leave them out is
    process-wide (a module global), so they are dropped here, for this
    registry only.
    """

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        for family in self.registry.collect():
            created = family.name + '_created'
            # Each collect() builds new families, so trimming one in place
            # changes nothing that the registry keeps.
            family.samples = [s for s in family.samples if s.name != created]
            yield family


# (name, help) of the metrics about the outbox and the libvirt connection
# without labels, by name.
_OUTBOX_AND_LIBVIRT = {name: (PREFIX + name, text) for name, text in (
    ('notification_attempts_failed_total',
     'Delivery attempts that failed and will be retried (HA engine '
     'unreachable, timing out or answering with a retryable error).'),
    ('notifications_rejected_total',
     'Notifications the HA engine refused for good, kept as dead letters.'),
    ('outbox_pending', 'Notifications in the outbox waiting for delivery.'),
    ('outbox_dead_letters',
     'Dead letters in the outbox, waiting for an operator '
     '(guest-health-monitor-outbox dead / retry).'),
    ('libvirt_connected',
     '1 while the daemon holds a connection to libvirt, else 0.'),
    ('libvirt_reconnects_total',
     'Connections to libvirt made again after the first one.'),
    ('mass_failure_breaker_tripped',
     '1 while the mass-failure breaker holds back notifications, else 0.'),
)}


class MonitorMetrics:
    """The daemon's metrics; one instance per daemon, shared by its parts.

    ``registry``: the prometheus_client CollectorRegistry to register on;
    by default a new one of this instance's own.
    """

    def __init__(self, registry=None):
        if registry is None:
            registry = prometheus_client.CollectorRegistry()
        r = self.registry = registry
        self._scrape = _WithoutCreated(r)
        self.sweeps = self._plain_counter(
            PREFIX + 'sweeps_total',
            'Sweeps completed (domains listed, pinged and the results '
            'applied). A sweep that could not list the domains because '
            'libvirt was unreachable is not counted.')
        self.sweep_duration = prometheus_client.Histogram(
            PREFIX + 'sweep_duration_seconds',
            'Duration of completed sweeps, in seconds.',
            buckets=SWEEP_BUCKETS, registry=r)
        # Read from the last sweep rather than a set gauge, so that before
        # the first sweep there is no sample instead of a misleading 0.
        self.last_sweep_duration = self._read_at_scrape(
            PREFIX + 'last_sweep_duration_seconds',
            'Duration of the last completed sweep, in seconds.')
        self._last_sweep = None
        self.last_sweep_duration.read = lambda: self._last_sweep
        self.pings = self._counter(
            PREFIX + 'pings_total',
            'Guest-pings by outcome: ok (answered), missed (counts towards '
            'the failure threshold), not_running, gone, no_agent, '
            'disconnected (libvirt lost; nobody\'s miss), error (something '
            'unexpected raised for that domain; not a miss).',
            'outcome', PING_OUTCOMES)
        self.domains = self._read_at_scrape(
            PREFIX + 'domains',
            'Monitored domains on this host by health state.', 'state')
        # Only changes between states are counted; what can happen is
        # bounded by the four states, so the series appear on first use.
        self.state_transitions = prometheus_client.Counter(
            PREFIX + 'state_transitions_total',
            'Changes of a domain\'s health state, by old and new state.',
            ['from', 'to'], registry=r)
        self.notifications_queued = self._plain_counter(
            PREFIX + 'notifications_queued_total',
            'Notifications written to the outbox for the HA engine.')
        self.notifications_delivered = self._counter(
            PREFIX + 'notifications_delivered_total',
            'Notifications the HA engine has: accepted (HTTP 202) or '
            'duplicate (HTTP 409, it already had them).',
            'result', DELIVERY_RESULTS)
        self.notification_attempts_failed = self._plain_counter(
            *_OUTBOX_AND_LIBVIRT['notification_attempts_failed_total'])
        self.notifications_rejected = self._plain_counter(
            *_OUTBOX_AND_LIBVIRT['notifications_rejected_total'])
        self.outbox_pending = self._read_at_scrape(
            *_OUTBOX_AND_LIBVIRT['outbox_pending'])
        self.outbox_dead_letters = self._read_at_scrape(
            *_OUTBOX_AND_LIBVIRT['outbox_dead_letters'])
        self.libvirt_connected = self._read_at_scrape(
            *_OUTBOX_AND_LIBVIRT['libvirt_connected'])
        self.libvirt_reconnects = self._plain_counter(
            *_OUTBOX_AND_LIBVIRT['libvirt_reconnects_total'])
        self.mass_failure_breaker_tripped = self._read_at_scrape(
            *_OUTBOX_AND_LIBVIRT['mass_failure_breaker_tripped'])
        self.domain_errors = self._counter(
            PREFIX + 'domain_errors_total',
            'Unexpected errors raised for one domain, by stage: list '
            '(describing it; the domain is skipped), xml (reading its '
            'XML; not monitored), ping (pinging it; not counted as a '
            'miss). Each domain is named once in the log.',
            'stage', DOMAIN_ERROR_STAGES)
        self.io_error_pauses = self._plain_counter(
            PREFIX + 'io_error_pauses_reported_total',
            'Guests reported as failed because they stayed paused on a '
            'disk I/O error longer than [monitor] io_error_grace. Counted '
            'once per pause.')
        self.guests_active_spared = self._plain_counter(
            PREFIX + 'agent_silent_guest_active_total',
            'Incidents in which a guest\'s agent stopped answering for '
            'failure_threshold pings while the guest\'s own disk or network '
            'I/O went on: logged as "agent unresponsive, guest active" and '
            'not reported to the HA engine. Counted once per incident.')
        self.maintenance_domains = self._read_at_scrape(
            PREFIX + 'maintenance_domains',
            'Monitored domains under an operator\'s maintenance pause '
            '(guest-health-monitor-status pause): not pinged, notified or '
            'recovered until it ends. The status command names them.')
        self.maintenance_host = self._read_at_scrape(
            PREFIX + 'maintenance_host',
            '1 while every domain on this host is paused for maintenance '
            '(pause --all), else 0.')
        self.recovery_timeouts = self._counter(
            PREFIX + 'recovery_timeouts_total',
            'Recovery calls given up on at their deadline, by step: '
            'console, screenshot, action. The notification went at once '
            'with the result timed_out.',
            'step', RECOVERY_STEPS)
        self.recovery_calls_stuck = self._read_at_scrape(
            PREFIX + 'recovery_calls_stuck',
            'Recovery calls given up on that have still not returned: '
            'each holds a native thread, and its domain is not recovered '
            'again until it returns.')
        # Failures by reason, recoveries by action and result, probe runs.
        self.failures = failure_metrics.FailureMetrics(r)
        self.build_info = prometheus_client.Gauge(
            PREFIX + 'build_info',
            'Always 1; the version label names the running release.',
            ['version'], registry=r)
        self.build_info.labels(version()).set(1)
        # process_cpu_seconds_total, process_resident_memory_bytes,
        # process_open_fds, ...: read from /proc at each scrape.
        prometheus_client.ProcessCollector(registry=r)

    def _counter(self, name, documentation, label, values):
        """A counter with one label, every value shown at 0 from the
        start so that rate() works from the first scrape."""
        counter = prometheus_client.Counter(name, documentation, [label],
                                            registry=self.registry)
        for value in values:
            counter.labels(value)
        return counter

    def _plain_counter(self, name, documentation):
        """A counter without labels."""
        return prometheus_client.Counter(name, documentation,
                                         registry=self.registry)

    def _read_at_scrape(self, name, documentation, label=None):
        gauge = ReadAtScrape(name, documentation, label)
        self.registry.register(gauge)
        return gauge

    # -- what the counting modules call ------------------------------------

    def sweep_finished(self, duration, outcomes):
        """One sweep completed; ``outcomes`` of every ping it made."""
        # One increment per outcome rather than per ping: a sweep of
        # thousands of domains takes six label look-ups, not thousands.
        counts = collections.Counter(outcomes)
        self.sweeps.inc()
        self.sweep_duration.observe(duration)
        self._last_sweep = duration
        for outcome, count in counts.items():
            self.pings.labels(Outcome(outcome).value).inc(count)

    def state_changed(self, old_state, new_state):
        for state in (old_state, new_state):
            if state not in states.ALL_STATES:
                raise ValueError('%r is not a health state' % (state,))
        if old_state != new_state:
            self.state_transitions.labels(old_state, new_state).inc()

    def notification_queued(self):
        self.notifications_queued.inc()

    def notification_delivered(self, kind):
        """The engine has it; ``kind`` is accepted or duplicate."""
        result = notification_mod.OutcomeKind(kind).value.lower()
        if result not in DELIVERY_RESULTS:
            raise ValueError('%r is not a delivery' % (kind,))
        self.notifications_delivered.labels(result).inc()

    def notification_attempt_failed(self):
        self.notification_attempts_failed.inc()

    def notification_rejected(self):
        self.notifications_rejected.inc()

    def agent_silent_guest_active(self):
        """A guest was found active behind its silent agent (once per
        incident)."""
        self.guests_active_spared.inc()

    def io_error_pause_reported(self):
        """A guest paused on a disk I/O error past its grace was
        reported (once per pause)."""
        self.io_error_pauses.inc()

    def recovery_timed_out(self, step):
        """A recovery gave up on its ``step`` call (RECOVERY_STEPS)."""
        if step not in RECOVERY_STEPS:
            raise ValueError('%r is not a recovery step' % (step,))
        self.recovery_timeouts.labels(step).inc()

    def libvirt_reconnected(self):
        self.libvirt_reconnects.inc()

    def domain_error(self, stage):
        """Something unexpected was raised for one domain at ``stage``,
        one of DOMAIN_ERROR_STAGES."""
        if stage not in DOMAIN_ERROR_STAGES:
            raise ValueError('%r is not a domain error stage' % (stage,))
        self.domain_errors.labels(stage).inc()

    # -- values read at scrape time -----------------------------------------

    def watch(self, store=None, outbox=None, scheduler=None, breaker=None,
              maintenance=None, stuck_calls=None):
        """Read these parts' current values at each scrape.

        A gauge whose part is not given has no sample (HELP and TYPE
        only), which Prometheus reads as "no data", not as zero.
        """
        if store is not None:
            self.domains.read = lambda: _count_states(store.all())
        if outbox is not None:
            # A few hundred rows at most (max_pending), read every scrape
            # interval: cheap next to a sweep.
            self.outbox_pending.read = lambda: len(outbox.pending())
            self.outbox_dead_letters.read = (
                lambda: len(outbox.dead_letters()))
        if scheduler is not None:
            self.libvirt_connected.read = lambda: int(scheduler.connected)
        if breaker is not None:
            self.mass_failure_breaker_tripped.read = (
                lambda: int(breaker.tripped))
        if stuck_calls is not None:
            self.recovery_calls_stuck.read = lambda: len(stuck_calls)
        if maintenance is not None:
            self.maintenance_host.read = (
                lambda: int(any(p.host_wide for p in maintenance.all())))
            if store is not None:
                self.maintenance_domains.read = lambda: sum(
                    1 for record in store.all()
                    if maintenance.covers(record.uuid))

    def render(self):
        """The whole exposition in the text format (see CONTENT_TYPE)."""
        return prometheus_client.generate_latest(self._scrape).decode('utf-8')


def _count_states(records):
    counts = dict.fromkeys(states.ALL_STATES, 0)
    for record in records:
        # A state name this version does not know (a store written by
        # another release) is left out rather than breaking the scrape.
        if record.state in counts:
            counts[record.state] += 1
    return counts
