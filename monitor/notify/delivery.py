"""Delivery of outbox notifications to the HA engine.

The worker sends every due outbox entry once per pass, one request at a
time, oldest first, and records what became of it: delivered (the engine
accepted it or already had it), retried later with capped exponential
backoff, or kept as a dead letter when the engine refused it for good.

It needs only the outbox and the engine client: what became of each
notification is written to the outbox, which is where the rest of the
daemon reads it. It runs in one (green or native) thread; whoever enqueues
sets the wake-up event shared with it, so the first attempt is immediate.
Everything time-related goes through the injected clock, so tests drive
``run_once`` without sleeping.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from oslo_config import cfg

from monitor import crash_points
from monitor.notify import outbox as outbox_mod
from monitor.notify.notification import OutcomeKind

LOG = logging.getLogger(__name__)

GROUP = outbox_mod.GROUP

RETRY_OPTS = [
    cfg.FloatOpt('retry_initial_delay',
                 default=1.0, min=0.1, max=3600.0,
                 help='Seconds between the first failed attempt to deliver '
                      'a notification to the HA engine and the next one. '
                      'From 0.1 to 3600. Default 1.\n\n'
                      'Related options: retry_backoff_factor, '
                      'retry_max_delay.'),
    cfg.FloatOpt('retry_max_delay',
                 default=60.0, min=1.0, max=86400.0,
                 help='Upper bound in seconds of the delay between two '
                      'delivery attempts of one notification. Delivery is '
                      'retried for as long as the HA engine is unavailable; '
                      'only a definitive refusal (HTTP 4xx other than 401, '
                      '403, 404, 405, 408, 409 and 429) stops it. '
                      'Default 60.'),
    cfg.FloatOpt('retry_backoff_factor',
                 default=2.0, min=1.0, max=10.0,
                 help='Factor applied to the retry delay after each failed '
                      'attempt. From 1 to 10. Default 2.'),
    cfg.FloatOpt('retry_jitter',
                 default=0.2, min=0.0, max=1.0,
                 help='Fraction of each retry delay removed at random, so '
                      'that monitors of many hosts do not retry in step '
                      'after an HA engine outage. Default 0.2.'),
]


def list_opts():
    return [(GROUP, RETRY_OPTS)]


def register_opts(conf):
    conf.register_opts(RETRY_OPTS, group=GROUP)


# Who receives the notifications, by [notifier] driver, for the log.
PEERS = {'masakari': 'HA engine', 'webhook': 'Webhook receiver',
         'alertmanager': 'Alertmanager', 'none': 'Notifier none'}

# Longest sleep of an idle worker: it also picks up dead letters requeued
# by an operator from another process.
IDLE_POLL = 30.0


class RetryPolicy:
    """Capped exponential backoff with jitter."""

    def __init__(self, initial_delay=1.0, max_delay=60.0, factor=2.0,
                 jitter=0.2, rand=random.random):
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.factor = factor
        self.jitter = jitter
        self._rand = rand

    @classmethod
    def from_conf(cls, conf):
        group = conf[GROUP]
        return cls(initial_delay=group.retry_initial_delay,
                   max_delay=group.retry_max_delay,
                   factor=group.retry_backoff_factor,
                   jitter=group.retry_jitter)

    def delay(self, failed_attempts):
        """Seconds to wait after the ``failed_attempts``-th failure (>= 1)."""
        # The exponent is bounded so that the power never overflows.
        exponent = min(max(failed_attempts - 1, 0), 256)
        base = min(self.max_delay,
                   self.initial_delay * self.factor ** exponent)
        return base * (1.0 - self.jitter * self._rand())


class _Outage:
    def __init__(self, since, cause):
        self.since = since
        self.cause = cause
        self.failed_attempts = 0


def _cause(outcome):
    # Retry messages read "<what failed>: <details>"; the details (URLs,
    # request ids) vary between attempts, the first part does not.
    return outcome.status_code, outcome.message.partition(':')[0]


class _NoMetrics:
    """Counts nothing: the metrics of a worker built without any."""

    def notification_delivered(self, kind):
        pass

    def notification_attempt_failed(self):
        pass

    def notification_rejected(self):
        pass


class DeliveryWorker:
    """Sends due outbox entries with ``client`` and records the outcomes
    in the outbox.

    ``wakeup`` is a ``threading.Event`` also given to whoever enqueues
    (the tracker): setting it starts a pass at once. One is made when not
    given. ``metrics`` counts what became of each attempt: any object with
    ``notification_delivered(kind)``, ``notification_attempt_failed()``
    and ``notification_rejected()`` (the daemon's metrics); none counts
    nothing.
    """

    def __init__(self, outbox, client, clock=time.time, retry_policy=None,
                 metrics=None, wakeup=None, peer='HA engine'):
        """``peer`` names who receives the notifications in the log."""
        self.outbox = outbox
        self.peer = peer
        self._client = client
        self._clock = clock
        self._policy = retry_policy or RetryPolicy()
        self.metrics = _NoMetrics() if metrics is None else metrics
        self._wake_event = threading.Event() if wakeup is None else wakeup
        self._stop_event = None
        self._outage = None
        # After a failed attempt nothing is sent before this time: when the
        # engine is down or failing, the other entries would fail the same
        # way, and with a hung engine each would cost a request timeout.
        self._engine_retry_at = 0.0

    @classmethod
    def from_conf(cls, conf, outbox, client, clock=time.time, metrics=None,
                  wakeup=None):
        return cls(outbox, client, clock=clock,
                   retry_policy=RetryPolicy.from_conf(conf), metrics=metrics,
                   wakeup=wakeup, peer=PEERS.get(conf.notifier.driver,
                                                 'HA engine'))

    def wake(self):
        """Start a pass now instead of at the next scheduled attempt.

        Call it after enqueueing, and after setting the stop event so that
        ``run`` returns at once.
        """
        self._wake_event.set()

    def run(self, stop_event):
        """Deliver until ``stop_event`` is set, sleeping until the next
        due attempt (or ``wake()``) between passes."""
        self._stop_event = stop_event
        LOG.info('Delivery to the %s started; %d notification(s) '
                 'pending in %s', self.peer, len(self.outbox.pending()),
                 self.outbox.path)
        while not stop_event.is_set():
            self._wake_event.clear()
            try:
                self.run_once()
                timeout = self._idle_timeout()
            except outbox_mod.OutboxBusy as exc:
                # Another process (the operators' tool) holds the outbox:
                # expected, and nothing was changed; try again shortly.
                LOG.warning('Delivery pass postponed: %s', exc)
                timeout = self._policy.initial_delay
            except Exception:  # loop boundary: never stop delivering
                LOG.exception('Delivery pass failed; next pass in %.0f s',
                              self._policy.max_delay)
                timeout = self._policy.max_delay
            if not stop_event.is_set():
                self._wake_event.wait(timeout)
        LOG.info('Delivery to the %s stopped; %d notification(s) '
                 'pending', self.peer, len(self.outbox.pending()))

    def _idle_timeout(self):
        next_due = self.outbox.next_due_at()
        if next_due is None:
            return IDLE_POLL
        next_due = max(next_due, self._engine_retry_at)
        return min(max(next_due - self._clock(), 0.0), IDLE_POLL)

    def run_once(self, now=None):
        """Send every due entry once, in order; returns [(entry, outcome)].

        The entries returned are the outbox's records after the attempt.
        With ``now`` given, that time is used for the whole pass (tests);
        otherwise the clock is read after each request.
        """
        start = self._clock() if now is None else now
        if start < self._engine_retry_at <= start + self._policy.max_delay:
            return []
        # Entries scheduled beyond the longest backoff can only come from a
        # wall clock that stepped back: they are due, not years away.
        due = self.outbox.due(start, horizon=self._policy.max_delay)
        results = []
        for entry in due:
            if self._stop_event is not None and self._stop_event.is_set():
                break
            outcome = self._client.send(entry.notification)
            crash_points.reached(crash_points.AFTER_POST)
            at = self._clock() if now is None else now
            after = self._record(entry, outcome, at)
            results.append((after, outcome))
            if outcome.kind == OutcomeKind.RETRY:
                self._engine_retry_at = after.next_attempt_at
                break
        return results

    def _record(self, entry, outcome, now):
        n = entry.notification
        attempt = entry.attempts + 1
        if outcome.kind == OutcomeKind.RETRY:
            delay = self._policy.delay(attempt)
            LOG.debug('Notification for domain %s (%s) not delivered '
                      '(attempt %d), next attempt in %.1f s: %s',
                      n.domain_name, n.instance_uuid, attempt, delay,
                      outcome.message)
            self._note_failure(now, n, outcome)
            entry = self.outbox.record_attempt_failed(
                n.id, now, now + delay, outcome.message)
            self.metrics.notification_attempt_failed()
            return entry
        self._note_answer(now)
        if outcome.kind == OutcomeKind.REJECTED:
            LOG.error('%s rejected the notification for domain %s '
                      '(%s) for good (HTTP %s, attempt %d): %s. Kept as '
                      'dead letter %s; requeue it with '
                      '"guest-health-monitor-outbox retry %s" once fixed',
                      self.peer, n.domain_name, n.instance_uuid,
                      outcome.status_code, attempt, outcome.message, n.id,
                      n.id)
            dead = self.outbox.mark_dead(n.id, now, outcome.message)
            self.metrics.notification_rejected()
            return dead
        updated = self.outbox.mark_delivered(n.id, outcome.kind, now)
        crash_points.reached(crash_points.AFTER_MARK_DELIVERED)
        self.metrics.notification_delivered(outcome.kind)
        if outcome.kind == OutcomeKind.ACCEPTED:
            LOG.info('%s accepted the notification for domain %s '
                     '(%s) generated at %s (attempt %d, engine '
                     'notification %s)', self.peer, n.domain_name,
                     n.instance_uuid, n.generated_time, attempt,
                     outcome.engine_uuid)
        else:
            LOG.warning('%s already had the notification for domain '
                        '%s (%s) generated at %s (attempt %d): %s',
                        self.peer, n.domain_name, n.instance_uuid,
                        n.generated_time, attempt, outcome.message)
        return updated

    def _note_failure(self, now, notification, outcome):
        cause = _cause(outcome)
        if self._outage is None:
            self._outage = _Outage(now, cause)
            LOG.error('%s unavailable, notifications are kept in the '
                      'outbox and retried (first kept: domain %s (%s)): %s',
                      self.peer, notification.domain_name,
                      notification.instance_uuid, outcome.message)
        elif cause != self._outage.cause:
            self._outage.cause = cause
            LOG.error('%s still unavailable, now: %s', self.peer,
                      outcome.message)
        self._outage.failed_attempts += 1

    def _note_answer(self, now):
        if self._outage is None:
            return
        LOG.info('%s answering again after %.0f s (%d failed '
                 'attempt(s) during the outage)', self.peer,
                 now - self._outage.since, self._outage.failed_attempts)
        self._outage = None
