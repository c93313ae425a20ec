"""The daemon's metrics, rendered in the Prometheus text format.

A tiny registry of counters, gauges and one histogram, in plain Python: the
daemon needs a dozen series, and prometheus_client would bring its own
threads, a process-wide default registry and a second HTTP server next to
the eventlet one; this module does not serve anything (metrics_server.py
is the HTTP edge).

Every label is declared with the values it may take and an unknown value
is refused, so no series can ever be keyed by a domain: the number of
series stays fixed whatever the number of guests. Per-domain detail is in
the log, which names each domain at each state change.

:class:`MonitorMetrics` is the daemon's own set. The modules that count
(scheduler, tracker, delivery worker) call its named methods; values that
already live elsewhere (domains per state, the outbox, the libvirt
connection, the breaker) are read when scraped rather than copied, so
they can never drift from the truth.
"""

import itertools
import math
import re
import threading

from monitor import notification as notification_mod
from monitor import states
from monitor.ping_outcome import Outcome

PREFIX = 'guest_health_monitor_'

CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

_METRIC_NAME = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
_LABEL_NAME = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')


def format_value(value):
    """A sample value as Prometheus parses it (Go's ParseFloat)."""
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    if value.is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(value)


def escape_help(text):
    return text.replace('\\', r'\\').replace('\n', r'\n')


def escape_label_value(text):
    return (text.replace('\\', r'\\').replace('"', r'\"')
            .replace('\n', r'\n'))


def _sample_line(name, pairs, value):
    if pairs:
        labels = ','.join('%s="%s"' % (k, escape_label_value(v))
                          for k, v in pairs)
        return '%s{%s} %s' % (name, labels, format_value(value))
    return '%s %s' % (name, format_value(value))


class _Metric:
    kind = None

    def __init__(self, name, help, labels=None):
        if not _METRIC_NAME.match(name):
            raise ValueError('invalid metric name %r' % name)
        labels = dict(labels or {})
        for label in labels:
            if not _LABEL_NAME.match(label) or label.startswith('__'):
                raise ValueError('invalid label name %r' % label)
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._allowed = {k: frozenset(v) for k, v in labels.items()}
        # Green threads and the native threads of tpool both may count;
        # under eventlet's monkey-patching this is a green lock, held for
        # a few dict operations only.
        self._lock = threading.Lock()

    def _key(self, labels):
        """Label values in declaration order; unknown labels or values
        are a programming error, refused before they make a series."""
        if set(labels) != set(self.label_names):
            raise ValueError('%s takes labels %s, got %s'
                             % (self.name, sorted(self.label_names),
                                sorted(labels)))
        key = []
        for label in self.label_names:
            value = labels[label]
            if value not in self._allowed[label]:
                raise ValueError('%s: %r is not a value of label %s'
                                 % (self.name, value, label))
            key.append(value)
        return tuple(key)

    def _all_keys(self):
        return itertools.product(*(sorted(self._allowed[label])
                                   for label in self.label_names))

    def samples(self):
        """[(name, [(label, value)], number)] at this instant."""
        raise NotImplementedError

    def render(self):
        lines = ['# HELP %s %s' % (self.name, escape_help(self.help)),
                 '# TYPE %s %s' % (self.name, self.kind)]
        lines.extend(_sample_line(*sample) for sample in self.samples())
        return lines

    def _labelled(self, values):
        return [(self.name, list(zip(self.label_names, key)), values[key])
                for key in sorted(values)]


class Counter(_Metric):
    """A count that only goes up (until the daemon restarts)."""

    kind = 'counter'

    def __init__(self, name, help, labels=None, initial=None):
        """``initial``: label-value tuples shown at 0 before their first
        increment; default every combination of the declared values, so
        that rates work from the first scrape."""
        super().__init__(name, help, labels)
        keys = self._all_keys() if initial is None else initial
        self._values = {tuple(key): 0.0 for key in keys}
        for key in self._values:
            self._key(dict(zip(self.label_names, key)))

    def inc(self, amount=1, **labels):
        if amount < 0:
            raise ValueError('%s: a counter cannot decrease' % self.name)
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels):
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self):
        with self._lock:
            values = dict(self._values)
        return self._labelled(values)


class Gauge(_Metric):
    """A value that goes up and down.

    Either set by the code that knows it, or read at scrape time through
    ``collect``: a callable returning a number (no labels) or a mapping
    from label values (a tuple, or a string for one label) to numbers.
    """

    kind = 'gauge'

    def __init__(self, name, help, labels=None, collect=None):
        super().__init__(name, help, labels)
        self.collect = collect
        self._values = {}

    def set(self, value, **labels):
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def value(self, **labels):
        return dict(self._current()).get(self._key(labels))

    def _current(self):
        if self.collect is None:
            with self._lock:
                return dict(self._values)
        collected = self.collect()
        if not isinstance(collected, dict):
            return {(): collected}
        values = {}
        for key, number in collected.items():
            key = key if isinstance(key, tuple) else (key,)
            values[self._key(dict(zip(self.label_names, key)))] = number
        return values

    def samples(self):
        return self._labelled(self._current())


class Histogram(_Metric):
    """Observations counted in cumulative buckets, with their sum."""

    kind = 'histogram'

    def __init__(self, name, help, buckets):
        super().__init__(name, help)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = tuple(bounds)
        self._counts = [0] * len(bounds)
        self._sum = 0.0

    def observe(self, value):
        with self._lock:
            for i, bound in enumerate(self.bounds):
                if value <= bound:
                    self._counts[i] += 1
                    break
            self._sum += value

    @property
    def count(self):
        with self._lock:
            return sum(self._counts)

    def samples(self):
        with self._lock:
            counts, total = list(self._counts), self._sum
        lines = []
        cumulative = 0
        for bound, count in zip(self.bounds, counts):
            cumulative += count
            lines.append((self.name + '_bucket',
                          [('le', format_value(bound))], cumulative))
        lines.append((self.name + '_sum', [], total))
        lines.append((self.name + '_count', [], cumulative))
        return lines


class Registry:
    """Metrics by name, rendered in the order they were declared."""

    def __init__(self):
        self._metrics = {}

    def _add(self, metric):
        if metric.name in self._metrics:
            raise ValueError('metric %s declared twice' % metric.name)
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name, help, labels=None, initial=None):
        return self._add(Counter(name, help, labels, initial))

    def gauge(self, name, help, labels=None, collect=None):
        return self._add(Gauge(name, help, labels, collect))

    def histogram(self, name, help, buckets):
        return self._add(Histogram(name, help, buckets))

    def render(self):
        """The whole exposition, one text document ending in a newline."""
        lines = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return '\n'.join(lines) + '\n'


# A sweep lasts about as long as its slowest ping: tens of milliseconds
# when every agent answers, one ping timeout plus libvirt's 5 s guest-sync
# floor when one is hung. The buckets split those cases and show sweeps
# longer than the default 10 s interval.
SWEEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0,
                 30.0, 60.0)

PING_OUTCOMES = tuple(o.value for o in Outcome)
# The stages of libvirt_host (kept here as values: metrics must not import
# the libvirt edge).
DOMAIN_ERROR_STAGES = ('list', 'xml', 'ping')
# Label values are lower case, as Prometheus conventions have them.
DELIVERY_RESULTS = (notification_mod.OutcomeKind.ACCEPTED.value.lower(),
                    notification_mod.OutcomeKind.DUPLICATE.value.lower())


class MonitorMetrics:
    """The daemon's metrics; one instance per daemon, shared by its parts."""

    def __init__(self, registry=None):
        r = self.registry = registry or Registry()
        self.sweeps = r.counter(
            PREFIX + 'sweeps_total',
            'Sweeps completed (domains listed, pinged and the results '
            'applied). A sweep that could not list the domains because '
            'libvirt was unreachable is not counted.')
        self.sweep_duration = r.histogram(
            PREFIX + 'sweep_duration_seconds',
            'Duration of completed sweeps, in seconds.', SWEEP_BUCKETS)
        self.last_sweep_duration = r.gauge(
            PREFIX + 'last_sweep_duration_seconds',
            'Duration of the last completed sweep, in seconds.')
        self.pings = r.counter(
            PREFIX + 'pings_total',
            'Guest-pings by outcome: ok (answered), missed (counts towards '
            'the failure threshold), not_running, gone, no_agent, '
            'disconnected (libvirt lost; nobody\'s miss), error (something '
            'unexpected raised for that domain; not a miss).',
            labels={'outcome': PING_OUTCOMES})
        self.domains = r.gauge(
            PREFIX + 'domains',
            'Monitored domains on this host by health state.',
            labels={'state': states.ALL_STATES})
        # Only changes between states are counted; what can happen is
        # bounded by the four states, so the series appear on first use.
        self.state_transitions = r.counter(
            PREFIX + 'state_transitions_total',
            'Changes of a domain\'s health state, by old and new state.',
            labels={'from': states.ALL_STATES, 'to': states.ALL_STATES},
            initial=())
        self.notifications_queued = r.counter(
            PREFIX + 'notifications_queued_total',
            'Notifications written to the outbox for the HA engine.')
        self.notifications_delivered = r.counter(
            PREFIX + 'notifications_delivered_total',
            'Notifications the HA engine has: accepted (HTTP 202) or '
            'duplicate (HTTP 409, it already had them).',
            labels={'result': DELIVERY_RESULTS})
        self.notification_attempts_failed = r.counter(
            PREFIX + 'notification_attempts_failed_total',
            'Delivery attempts that failed and will be retried (HA engine '
            'unreachable, timing out or answering with a retryable error).')
        self.notifications_rejected = r.counter(
            PREFIX + 'notifications_rejected_total',
            'Notifications the HA engine refused for good, kept as dead '
            'letters.')
        self.outbox_pending = r.gauge(
            PREFIX + 'outbox_pending',
            'Notifications in the outbox waiting for delivery.')
        self.outbox_dead_letters = r.gauge(
            PREFIX + 'outbox_dead_letters',
            'Dead letters in the outbox, waiting for an operator '
            '(guest-health-monitor-outbox dead / retry).')
        self.libvirt_connected = r.gauge(
            PREFIX + 'libvirt_connected',
            '1 while the daemon holds a connection to libvirt, else 0.')
        self.libvirt_reconnects = r.counter(
            PREFIX + 'libvirt_reconnects_total',
            'Connections to libvirt made again after the first one.')
        self.domain_errors = r.counter(
            PREFIX + 'domain_errors_total',
            'Unexpected errors raised for one domain, by stage: list '
            '(describing it; the domain is skipped), xml (reading its '
            'XML; not monitored), ping (pinging it; not counted as a '
            'miss). Each domain is named once in the log.',
            labels={'stage': DOMAIN_ERROR_STAGES})
        self.mass_failure_breaker_tripped = r.gauge(
            PREFIX + 'mass_failure_breaker_tripped',
            '1 while the mass-failure breaker holds back notifications, '
            'else 0.')

    # -- what the counting modules call ------------------------------------

    def sweep_finished(self, duration, outcomes):
        """One sweep completed; ``outcomes`` of every ping it made."""
        self.sweeps.inc()
        self.sweep_duration.observe(duration)
        self.last_sweep_duration.set(duration)
        for outcome in outcomes:
            self.pings.inc(outcome=Outcome(outcome).value)

    def state_changed(self, old_state, new_state):
        if old_state != new_state:
            self.state_transitions.inc(**{'from': old_state,
                                          'to': new_state})

    def notification_queued(self):
        self.notifications_queued.inc()

    def notification_delivered(self, kind):
        """The engine has it; ``kind`` is accepted or duplicate."""
        self.notifications_delivered.inc(
            result=notification_mod.OutcomeKind(kind).value.lower())

    def notification_attempt_failed(self):
        self.notification_attempts_failed.inc()

    def notification_rejected(self):
        self.notifications_rejected.inc()

    def libvirt_reconnected(self):
        self.libvirt_reconnects.inc()

    def domain_error(self, stage):
        """Something unexpected was raised for one domain at ``stage``."""
        self.domain_errors.inc(stage=stage)

    # -- values read at scrape time -----------------------------------------

    def watch(self, store=None, outbox=None, scheduler=None, breaker=None):
        """Read these parts' current values at each scrape.

        A gauge whose part is not given has no sample (HELP and TYPE
        only), which Prometheus reads as "no data", not as zero.
        """
        if store is not None:
            self.domains.collect = lambda: _count_states(store.all())
        if outbox is not None:
            # A few hundred rows at most (max_pending), read every scrape
            # interval: cheap next to a sweep.
            self.outbox_pending.collect = lambda: len(outbox.pending())
            self.outbox_dead_letters.collect = (
                lambda: len(outbox.dead_letters()))
        if scheduler is not None:
            self.libvirt_connected.collect = lambda: int(scheduler.connected)
        if breaker is not None:
            self.mass_failure_breaker_tripped.collect = (
                lambda: int(breaker.tripped))

    def render(self):
        return self.registry.render()


def _count_states(records):
    counts = dict.fromkeys(states.ALL_STATES, 0)
    for record in records:
        # A state name this version does not know (a store written by
        # another release) is left out rather than breaking the scrape.
        if record.state in counts:
            counts[record.state] += 1
    return counts
