"""Applies what the libvirt edge saw to the per-domain health records.

This is the bookkeeping between the I/O edges: it takes a domain listing,
a round of ping results, libvirt events and delivery confirmations, runs
them through the health policy and the mass-failure breaker, keeps the
domain store up to date, logs one line per state change and queues a
notification in the outbox when the policy asks for one. It does no I/O of
its own beyond the store and the outbox it is given, so tests drive it
with plain values.
"""

import logging
import time

from monitor import lifecycle
from monitor import metrics as metrics_mod
from monitor import notification as notification_mod
from monitor import outbox as outbox_mod
from monitor import states
from monitor.ping_outcome import Outcome

LOG = logging.getLogger(__name__)

# What a lifecycle action means for monitoring, for the log line.
_ACTION_EFFECT = {
    lifecycle.Action.REARM: 'waiting for its guest agent to answer',
    lifecycle.Action.PARK: 'not pinged until it runs again',
    lifecycle.Action.AGENT_DISCONNECTED:
        'misses count only after the agent disconnect grace',
    lifecycle.Action.AGENT_CONNECTED: 'misses count again',
    lifecycle.Action.IGNORE: 'nothing to do',
    lifecycle.Action.FORGET: 'forgotten',
}


class DomainTracker:

    def __init__(self, store, policy, breaker, outbox, hostname,
                 wake_delivery=None, clock=time.time, metrics=None):
        self.store = store
        self.policy = policy
        self.breaker = breaker
        self.outbox = outbox
        self.hostname = hostname
        self.wake_delivery = wake_delivery or (lambda: None)
        self._clock = clock
        self.metrics = metrics or metrics_mod.MonitorMetrics()
        # UUIDs of listed domains without an agent channel, so that we
        # say once, not every sweep, that they are not monitored.
        self._unmonitored = set()
        # UUIDs of listed domains whose agent libvirt refused to ping (no
        # agent configured, or a driver without agent commands) although
        # the XML shows a channel: not monitored while they stay listed,
        # instead of being re-added and dropped again every sweep.
        self._agent_refused = set()

    # -- listing ------------------------------------------------------------

    def reconcile(self, domains, now=None):
        """Sync the store with a domain listing; return what to ping.

        New domains with an agent start in discovery, records of domains
        that are gone are evicted, and the listing's paused/running state
        backs up the events (which can be missed while libvirt was
        unreachable).
        """
        now = self._now(now)
        to_ping = []
        live = set()
        listed = set()
        for info in domains:
            listed.add(info.uuid)
            if info.agent is None:
                self._not_monitored(info)
                continue
            self._unmonitored.discard(info.uuid)
            if info.uuid in self._agent_refused:
                continue
            live.add(info.uuid)
            record = self.store.get(info.uuid)
            if record is None:
                record = self.policy.new_record(info.uuid, info.name, now)
                self.store.put(record)
                LOG.info('Monitoring domain %s (%s): waiting for its guest '
                         'agent to answer', info.name, info.uuid)
            elif info.paused and not record.paused:
                self._apply_action(record, lifecycle.Action.PARK, now,
                                   'domain is paused')
                continue
            elif info.running and record.paused:
                record = self._apply_action(record, lifecycle.Action.REARM,
                                            now, 'domain is running again')
            if (info.running or info.crashed) and record is not None and \
                    self.policy.should_ping(record, now):
                to_ping.append(info)
        for record in self.store.evict_missing(live):
            LOG.info('Domain %s (%s) is no longer running on this host; '
                     'forgetting it', record.name, record.uuid)
        # A domain that left the listing is looked at afresh (and said
        # again) when it runs here again.
        self._unmonitored &= listed
        self._agent_refused &= listed
        return to_ping

    def _not_monitored(self, info):
        if info.uuid in self._unmonitored:
            return
        self._unmonitored.add(info.uuid)
        if self.store.get(info.uuid) is not None:
            self.store.delete(info.uuid)
        LOG.info('Domain %s (%s) has no guest agent channel; not '
                 'monitored', info.name, info.uuid)

    # -- ping results ----------------------------------------------------------

    def apply_round(self, results, now=None):
        """Apply one sweep's ping results ({uuid: PingResult}).

        Returns True when the mass-failure breaker held this sweep's
        misses.
        """
        now = self._now(now)
        current = {}
        for uuid, result in results.items():
            record = self.store.get(uuid)
            if record is None:
                continue  # forgotten by an event while the ping ran
            if record.discovery_since is not None and \
                    result.started_at < record.discovery_since:
                # The ping started before the domain was re-armed
                # (rebooted, resumed): it says nothing about this run.
                continue
            current[uuid] = (record, result)

        # Only domains answering until now count for the breaker: a host
        # full of guests still booting is not a stalled host, and guests
        # already reported dead are no news (counting them would hold
        # back every later failure on the host). Only a ping that was
        # answered or missed says anything about the host.
        counted = [(r, res) for r, res in current.values()
                   if r.state in (states.HEALTHY, states.ERROR)
                   and res.outcome in (Outcome.OK, Outcome.MISSED)]
        missed = sum(1 for _r, res in counted
                     if res.outcome is Outcome.MISSED)
        held = self.breaker.evaluate(len(counted), missed)

        for record, result in current.values():
            self._apply_result(record, result, held, now)
        self.tick(now)
        return held

    def _apply_result(self, record, result, held, now):
        outcome = result.outcome
        if outcome is Outcome.OK:
            self._apply_verdict(self.policy.ping_ok(record, now), now)
        elif outcome is Outcome.MISSED:
            if held:
                return
            LOG.debug('Domain %s (%s) missed a ping: %s', record.name,
                      record.uuid, result.detail)
            self._apply_verdict(self.policy.ping_missed(record, now), now)
        elif outcome is Outcome.GONE:
            self.store.delete(record.uuid)
            LOG.info('Domain %s (%s) disappeared; forgetting it',
                     record.name, record.uuid)
        elif outcome is Outcome.NO_AGENT:
            self.store.delete(record.uuid)
            self._agent_refused.add(record.uuid)
            LOG.info('Domain %s (%s) has no guest agent libvirt can talk '
                     'to (%s); not monitored while it runs', record.name,
                     record.uuid, result.detail)
        # NOT_RUNNING and DISCONNECTED are nobody's miss.

    def tick(self, now=None):
        """Run the policy's timers (discovery timeout) on every record."""
        now = self._now(now)
        for record in self.store.all():
            verdict = self.policy.tick(record, now)
            if verdict.notify or verdict.record != record:
                self._apply_verdict(verdict, now)

    # -- libvirt events --------------------------------------------------------

    def libvirt_connected(self, now=None):
        """Start the agent-disconnect grace for every answering domain.

        While libvirt was out of sight a guest may have rebooted (same
        domain id, no event seen) and libvirtd may still be re-syncing
        its agent link, so early misses after a (re)connect are not
        counted.
        """
        now = self._now(now)
        graced = 0
        for record in self.store.all():
            if record.state == states.DISCOVERY:
                continue
            self._apply_action(record, lifecycle.Action.AGENT_DISCONNECTED,
                               now, 'libvirt (re)connected', quiet=True)
            graced += 1
        if graced:
            LOG.info('libvirt connected: misses of %d known domain(s) are '
                     'not counted until each answers or the agent '
                     'disconnect grace ends', graced)

    def apply_event(self, event, now=None):
        now = self._now(now)
        record = self.store.get(event.uuid)
        action = lifecycle.action_for(event)
        if record is None:
            # Not (yet) monitored: the next listing picks it up. A new run
            # may have the agent libvirt refused before.
            if action is lifecycle.Action.REARM:
                self._agent_refused.discard(event.uuid)
            return
        if action is lifecycle.Action.IGNORE:
            return
        self._apply_action(record, action, now, lifecycle.describe(event))

    def _apply_action(self, record, action, now, why, quiet=False):
        verdict = self.policy.apply_lifecycle(record, action, now)
        if verdict is None:
            self.store.delete(record.uuid)
            LOG.info('Domain %s (%s) stopped (%s); forgetting it',
                     record.name, record.uuid, why)
            return None
        if verdict.old_state != verdict.new_state:
            LOG.info('Domain %s (%s): %s -> %s (%s)', record.name,
                     record.uuid, verdict.old_state, verdict.new_state, why)
            self.metrics.state_changed(verdict.old_state, verdict.new_state)
        elif not quiet:
            LOG.info('Domain %s (%s): %s; %s', record.name, record.uuid,
                     why, _ACTION_EFFECT[action])
        self.store.put(verdict.record)
        return verdict.record

    # -- verdicts and notifications ---------------------------------------------

    def _apply_verdict(self, verdict, now):
        record = verdict.record
        if verdict.old_state != verdict.new_state:
            LOG.info('Domain %s (%s): %s -> %s (%s)', record.name,
                     record.uuid, verdict.old_state, verdict.new_state,
                     verdict.reason)
            self.metrics.state_changed(verdict.old_state, verdict.new_state)
        if verdict.notify:
            record = self._queue_notification(record, verdict.reason, now)
        self.store.put(record)

    def _queue_notification(self, record, reason, now):
        notification = notification_mod.Notification.new(
            instance_uuid=record.uuid, domain_name=record.name,
            hostname=self.hostname, at=now)
        try:
            self.outbox.enqueue(notification, now)
        except outbox_mod.OutboxFull as exc:
            # Loud, and the record stays un-notified so the next miss
            # tries again once the outbox has room.
            LOG.error('Cannot queue the notification for domain %s (%s): '
                      '%s', record.name, record.uuid, exc)
            return record
        LOG.warning('Domain %s (%s) failed (%s): notification %s queued '
                    'for the HA engine', record.name, record.uuid, reason,
                    notification.id)
        self.metrics.notification_queued()
        self.wake_delivery()
        return self.policy.notification_queued(record, notification.id, now)

    def adopt_pending(self, entries, now=None):
        """Tie notifications still pending from before a restart to their
        domains.

        The outbox is synced on every write, the domain store may not be
        (or may be in memory): without this a guest whose crash is already
        queued could be counted and notified a second time.
        """
        now = self._now(now)
        for entry in entries:
            n = entry.notification
            record = self.store.get(n.instance_uuid)
            if record is None:
                record = self.policy.new_record(n.instance_uuid,
                                                n.domain_name, now)
            if record.notification_id != n.id:
                self.store.put(self.policy.notification_queued(record, n.id,
                                                               now))

    def notification_accepted(self, notification, now=None):
        """The HA engine took ``notification``: mark its domain reported."""
        self._delivery_ended(notification, self.policy.notification_accepted,
                             now)

    def notification_rejected(self, notification, now=None):
        """The HA engine refused ``notification`` for good (dead letter)."""
        self._delivery_ended(notification, self.policy.notification_dropped,
                             now)

    def _delivery_ended(self, notification, policy_step, now):
        now = self._now(now)
        record = self.store.get(notification.instance_uuid)
        if record is None:
            return
        verdict = policy_step(record, notification.id, now)
        self._apply_verdict(verdict._replace(notify=False), now)

    def _now(self, now):
        return self._clock() if now is None else now
