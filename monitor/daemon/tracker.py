"""Applies what the libvirt edge saw to the per-domain health records.

This is the bookkeeping between the I/O edges: it takes a domain listing,
a round of ping results and libvirt events, runs them through the health
policy and the mass-failure breaker, keeps the domain store up to date,
logs one line per state change and queues a notification in the outbox
when the policy asks for one. It does no I/O of its own beyond the store
and the outbox it is given, so tests drive it with plain values.

A round's outcome (:class:`RoundOutcome`) tells the scheduler whether the
breaker suppressed the round's misses and, for each domain that missed,
the threshold that reports it (its own, from its metadata, or the
configured one): the scheduler confirms each domain up to that threshold
and never counts against one of its own.

Two checks sit between a failure and its notification: the guest's own
I/O over its agent's silence (``corroboration``, with the counters the
scheduler takes when asked), which spares a guest that still works the
report, and failures libvirt reports as events (``instant_failures``),
which are notified at once instead of after the misses.

The outbox alone knows what became of each notification. The tracker reads
it (never copies it) once per round and at every event, so a domain turns
``reported`` when the tracker next looks after the delivery, whatever
crashed in between, and nobody calls back into the tracker. A
notification still pending for an earlier incident of a domain holds back
neither the next incident's notification nor its recovery: what the
tracker decides keys on the incident, never on a delivery. Queueing a
notification (``notification_queue``), each domain's own settings
(``domain_settings``) and the records kept of stopped domains
(``stopped_domains``) have modules of their own.
"""

import logging
import time
import typing

from monitor.daemon import corroboration
from monitor.daemon import domain_settings
from monitor.daemon import libvirt_failures
from monitor.daemon import maintenance as maintenance_mod
from monitor.daemon import metrics as metrics_mod
from monitor.daemon import notification_queue
from monitor.daemon import stopped_domains
from monitor.health import guest_activity
from monitor.health import instant_failures
from monitor.health import lifecycle
from monitor.health import policy as health_policy
from monitor.health import recovery_policy as recovery_mod
from monitor.health import states
from monitor.health.ping_outcome import Outcome

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


class RoundOutcome(typing.NamedTuple):
    """What a round's results did, for the scheduler."""
    # True when the mass-failure breaker suppressed the round's misses.
    suppressed: bool
    # {uuid: misses in a row that report it} of the domains that missed:
    # the scheduler confirms each one up to its own threshold.
    thresholds: dict


class DomainTracker:

    def __init__(self, store, policy, breaker, outbox, hostname,
                 delivery_wakeup=None, clock=time.time, metrics=None,
                 silent_periods=None, recovery=None, maintenance=None,
                 failures=None):
        """``delivery_wakeup`` (a ``threading.Event`` shared with the
        delivery worker) is set after each enqueue, so the first attempt
        is made at once. ``silent_periods`` (guest_activity.SilentPeriods)
        corroborates a silent agent with the guest's I/O; None: the
        agent's silence alone reports the guest. ``recovery`` (a
        ``recovery_step.RecoveryStep``) recovers failed guests itself on a
        plain libvirt host; None: notify only. ``maintenance``
        (maintenance.Maintenance): the domains operators paused."""
        self.store = store
        self.policy = policy
        self.breaker = breaker
        self._clock = clock
        self.metrics = metrics or metrics_mod.MonitorMetrics()
        self.notifications = notification_queue.NotificationQueue(
            outbox, hostname, self.metrics, delivery_wakeup=delivery_wakeup,
            recovery=recovery)
        self.silent_periods = silent_periods or guest_activity.SilentPeriods(
            enabled=False)
        # UUIDs of listed domains without an agent channel, so that we
        # say once, not every sweep, that they are not monitored.
        self._unmonitored = set()
        # UUIDs of listed domains whose agent libvirt refused to ping (no
        # agent configured, or a driver without agent commands) although
        # the XML shows a channel: not monitored while they stay listed,
        # instead of being re-added and dropped again every sweep.
        self._agent_refused = set()
        self.stopped = stopped_domains.StoppedDomains(policy, store,
                                                      self.metrics)
        self.settings = domain_settings.DomainSettings(
            store, policy.failure_threshold)
        self.maintenance = maintenance or maintenance_mod.Maintenance()
        self.failures = failures or libvirt_failures.LibvirtFailures()

    # -- listing ------------------------------------------------------------

    def reconcile(self, domains, now=None):
        """Sync the store with a domain listing; return what to ping.

        New domains with an agent start in discovery, records of domains
        that are gone are evicted, and the listing's paused/running state
        backs up the events (which can be missed while libvirt was
        unreachable).
        """
        now = self._now(now)
        self.maintenance_over(self.maintenance.expire(), now)
        to_ping = []
        live = set()
        listed = set()
        for info in domains:
            listed.add(info.uuid)
            if info.agent is None:
                self._not_monitored(info)
                continue
            self._unmonitored.discard(info.uuid)
            if not self.settings.listed(info):
                continue
            if info.uuid in self._agent_refused:
                continue
            live.add(info.uuid)
            record = self.store.get(info.uuid)
            if record is None:
                record = self.stopped.restore(info.uuid, now,
                                              'listed again')
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
                    self.policy.should_ping(record, now) and \
                    not self.maintenance.covers(info.uuid):
                to_ping.append(info)
        for record in self.store.evict_missing(live):
            self.stopped.keep(record, now)
            LOG.info('Domain %s (%s) is no longer running on this host; '
                     'forgetting it', record.name, record.uuid)
        self.stopped.expire(now)
        self.silent_periods.keep_only(live)
        # A domain that left the listing is looked at afresh (and said
        # again) when it runs here again.
        self._unmonitored &= listed
        self._agent_refused &= listed
        self.settings.keep_only(listed)
        self.failures.listing(domains, live, now)
        self.notifications.keep_only(listed)
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

    def wants_counters(self, uuids):
        """Of the domains whose ping just missed, those whose guest's
        I/O counters a round would use: domains being counted towards (or
        past) the failure threshold, while corroboration is on."""
        return [uuid for uuid in uuids if self.silent_periods.enabled
                and _counts_misses(self.store.get(uuid))]

    def apply_round(self, results, now=None, counters_of=None):
        """Apply one round's ping results ({uuid: PingResult}).

        ``counters_of(uuids)`` takes the guests' I/O counters
        ({uuid: guest_activity.DomainCounters}) of the domains that missed
        and whose silence is corroborated; a domain it leaves out has none
        (the stats call failed or was late).

        The outbox is read once, for the round's results and for every
        record's look at its deliveries and timers (:meth:`review`).
        Returns a :class:`RoundOutcome`.
        """
        now = self._now(now)
        facts = self._facts()
        current = self._current(results, facts, now)
        missed = [r.uuid for r, res in current.values()
                  if res.outcome is Outcome.MISSED]
        counters = {}
        if counters_of is not None and self.silent_periods.enabled:
            wanted = [uuid for uuid in missed
                      if _counts_misses(current[uuid][0])]
            if wanted:
                counters = counters_of(wanted)
                # Taking them yields to the event dispatcher: a reboot
                # applied meanwhile must not be overwritten by a record
                # read before it.
                facts = self._facts()
                current = self._current(results, facts, now)
                missed = [uuid for uuid in missed if uuid in current]

        # Only domains answering until now count for the breaker: a host
        # full of guests still booting is not a stalled host, and guests
        # already reported dead are no news (counting them would suppress
        # every later failure on the host). Only a ping that was answered
        # or missed says anything about the host.
        # Guests whose agent is silent while they keep working are no
        # news either: a host with a few of them must not suppress the
        # next real failure.
        counted = [(r, res) for r, res in current.values()
                   if r.state in (states.HEALTHY, states.ERROR)
                   and res.outcome in (Outcome.OK, Outcome.MISSED)
                   and not self.silent_periods.is_active(r.uuid)]
        suppressed = self.breaker.evaluate(
            len(counted), sum(1 for _r, res in counted
                              if res.outcome is Outcome.MISSED))

        for record, result in current.values():
            self._apply_result(record, result, suppressed, now, facts,
                               counters.get(record.uuid))
        self.review(now, facts)
        return RoundOutcome(suppressed, {
            uuid: self.settings.threshold_of(uuid) for uuid in missed})

    def _current(self, results, facts, now):
        """{uuid: (record, result)} of the results that still count."""
        current = {}
        for uuid, result in results.items():
            record = self.store.get(uuid)
            if record is None or self.maintenance.covers(uuid):
                continue  # forgotten or paused while the ping ran
            if record.discovery_since is not None and \
                    result.started_at < record.discovery_since:
                # The ping started before the domain was re-armed
                # (rebooted, resumed): it says nothing about this run.
                continue
            # A delivery since the last look makes the domain reported
            # before its result counts (and it no longer counts for the
            # breaker).
            current[uuid] = (self._see_delivery(record, facts, now), result)
        return current

    def _apply_result(self, record, result, suppressed, now, facts,
                      counters=None):
        outcome = result.outcome
        if outcome is Outcome.OK:
            self.silent_periods.ended(record.uuid)
            self._apply_verdict(self.policy.ping_ok(record, now), now)
        elif outcome is Outcome.MISSED:
            if suppressed:
                return
            LOG.debug('Domain %s (%s) missed a ping: %s', record.name,
                      record.uuid, result.detail)
            verdict = self.policy.ping_missed(
                record, now, facts.get(record.uuid,
                                       health_policy.NOTHING_QUEUED),
                failure_threshold=self.settings.threshold_of(record.uuid))
            if verdict.record.misses > record.misses:
                # A counted miss: the first one opens the silent period.
                self.silent_periods.missed(record.uuid, counters)
            if result.held_for is not None:
                # Frozen or held too long: its own I/O cannot vouch for
                # a guest whose writes hang.
                verdict = verdict._replace(reason='%s; %s' % (
                    result.detail, verdict.reason))
            elif verdict.notify:
                verdict = corroboration.corroborate(
                    self.silent_periods, self.metrics, verdict, counters)
            self._apply_verdict(verdict, now, facts)
        elif outcome is Outcome.GONE:
            self.silent_periods.ended(record.uuid)
            self.store.delete(record.uuid)
            self.stopped.keep(record, now)
            LOG.info('Domain %s (%s) disappeared; forgetting it',
                     record.name, record.uuid)
        elif outcome is Outcome.NO_AGENT:
            self.silent_periods.ended(record.uuid)
            self.store.delete(record.uuid)
            self._agent_refused.add(record.uuid)
            LOG.info('Domain %s (%s) has no guest agent libvirt can talk '
                     'to (%s); not monitored while it runs', record.name,
                     record.uuid, result.detail)
        # NOT_RUNNING and DISCONNECTED are nobody's miss.

    def review(self, now=None, facts=None):
        """Look at every record: a delivery the outbox shows makes a
        failing domain reported, and the policy's timers run (discovery
        timeout). ``facts``: the outbox as the round read it; None reads
        it now."""
        now = self._now(now)
        facts = self._facts() if facts is None else facts
        for record in self.store.all():
            # Under maintenance, its discovery timeout starts when it ends.
            if self.policy.settled(record) or self.maintenance.covers(
                    record.uuid):
                continue
            record = self._see_delivery(record, facts, now)
            verdict = self.policy.tick(record, now, facts.get(
                record.uuid, health_policy.NOTHING_QUEUED))
            if verdict.notify or verdict.record != record:
                self._apply_verdict(verdict, now, facts)
        self.failures.report_due(self, now, facts)

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
        self.failures.saw(event, record is not None)
        failure = instant_failures.failure_of(event)
        if record is not None and self.maintenance.holds_back(record, failure):
            failure = None
        if record is not None and (failure is not None
                                   or action is not lifecycle.Action.IGNORE):
            facts = self._facts(event.uuid).get(
                event.uuid, health_policy.NOTHING_QUEUED)
            record = self._see_delivery_of(record, facts, now)
            if failure is not None:
                # Before the action: a stopped event forgets the record.
                record = self.failures.instant(self, record, event, facts,
                                               now)
        if record is None:
            # Not (yet) monitored: the next listing picks it up. A new run
            # may have the agent libvirt refused before. A domain that
            # stopped moments ago (hard reboot) is taken back with its
            # history.
            if action is lifecycle.Action.REARM:
                self._agent_refused.discard(event.uuid)
                self.stopped.restore(event.uuid, now,
                                     lifecycle.describe(event))
            return
        if action is lifecycle.Action.IGNORE:
            return
        if action in (lifecycle.Action.REARM, lifecycle.Action.PARK,
                      lifecycle.Action.FORGET):
            # A new run, a pause or the end of the domain ends the
            # silent period with the misses.
            self.silent_periods.ended(record.uuid)
        self._apply_action(record, action, now, lifecycle.describe(event))

    def _apply_action(self, record, action, now, why, quiet=False):
        verdict = self.policy.apply_lifecycle(record, action, now)
        if verdict is None:
            self.store.delete(record.uuid)
            self.stopped.keep(record, now)
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

    def _apply_verdict(self, verdict, now, facts=None, action=None,
                       shape=None):
        """Store the verdict's record, logging a change of state, and queue
        the notification it asks for. ``facts``: the outbox facts the
        caller read, told of the notification queued now; ``action``: the
        recovery action instead of the domain's; ``shape``: the payload's
        (instant_failures), by default the agent error."""
        record = verdict.record
        if verdict.old_state != verdict.new_state:
            LOG.info('Domain %s (%s): %s -> %s (%s)', record.name,
                     record.uuid, verdict.old_state, verdict.new_state,
                     verdict.reason)
            self.metrics.state_changed(verdict.old_state, verdict.new_state)
        if verdict.notify:
            queued = self.notifications.queue(
                record, verdict.reason, now,
                action or self.settings.of(record.uuid).action,
                self.recovery_ended, shape)
            if queued is not None and facts is not None:
                facts[record.uuid] = facts.get(
                    record.uuid, health_policy.NOTHING_QUEUED)._replace(
                        pending_id=queued)
        self.store.put(record)

    def _facts(self, uuid=None):
        """The outbox's facts as the policy judges each domain's incident
        under way by them: a notification still pending for an earlier
        incident holds back neither this one's nor its recovery."""
        return self.notifications.facts(uuid, record_of=self.store.get)

    def _see_delivery(self, record, facts, now):
        return self._see_delivery_of(
            record, facts.get(record.uuid, health_policy.NOTHING_QUEUED), now)

    def _see_delivery_of(self, record, facts, now):
        if self.policy.settled(record):
            return record
        verdict = self.policy.delivery_seen(record, facts, now)
        if verdict.record == record:
            return record
        self._apply_verdict(verdict, now)
        return verdict.record

    # -- self-recovery ---------------------------------------------------------

    def recovery_ended(self, uuid, report, now=None):
        """A recovery is over and its notification released. A guest that
        was reset or restarted starts over in discovery: one that answers
        again is healthy, one that never does is reported again only
        after the discovery timeout."""
        now = self._now(now)
        if report.result != recovery_mod.RESULT_DONE:
            return
        record = self.store.get(uuid)
        if record is None:
            # Restarted: the stop forgot it and the start takes it back.
            return
        self._apply_action(record, lifecycle.Action.REARM, now,
                           'recovered by %s' % report.action)

    def maintenance_over(self, pauses, now=None):
        """The domains that the ended ``pauses`` released start over in
        discovery, as after a start."""
        now = self._now(now)
        for record in self.maintenance.released(pauses, self.store.all):
            self.silent_periods.ended(record.uuid)
            self._apply_action(record, lifecycle.Action.REARM, now,
                               'maintenance over', quiet=True)

    # -- start-up ----------------------------------------------------------------

    def adopt_pending(self, entries, now=None):
        """Say which notifications from before a restart are still
        pending.

        Nothing is copied: the policy reads the outbox itself, so a
        pending notification is never queued a second time, whatever the
        domain store kept.
        """
        for entry in entries:
            n = entry.notification
            LOG.info('Notification %s for domain %s (%s), generated at %s, '
                     'is still pending from before the restart (%d '
                     'attempt(s) so far)', n.id, n.domain_name,
                     n.instance_uuid, n.generated_time, entry.attempts)

    def _now(self, now):
        return self._clock() if now is None else now


def _counts_misses(record):
    """Whether ``record``'s misses count towards its failure threshold
    (or it is past it): a monitored, not paused domain that answered."""
    return (record is not None and not record.paused
            and record.state in (states.HEALTHY, states.ERROR))
