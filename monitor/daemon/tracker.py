"""Applies what the libvirt edge saw to the per-domain health records.

This is the bookkeeping between the I/O edges: it takes a domain listing,
a round of ping results and libvirt events, runs them through the health
policy and the mass-failure breaker, keeps the domain store up to date,
logs one line per state change and queues a notification in the outbox
when the policy asks for one. It does no I/O of its own beyond the store
and the outbox it is given, so tests drive it with plain values.

Two checks sit between a failure and its notification: the guest's own
I/O over its agent's silence (``guest_activity.SilentPeriods``, with the
counters the scheduler hands over), which holds back a guest that still
works, and failures libvirt reports as events (``instant_failures``),
which are notified at once instead of after the misses.

The outbox alone knows what became of each notification. The tracker reads
it (never copies it) at every sweep and event, so a domain turns
``reported`` when the tracker next looks after the delivery, whatever
crashed in between, and nobody calls back into the tracker.
"""

import logging
import time

from monitor import crash_points
from monitor.daemon import metrics as metrics_mod
from monitor.health import guest_activity
from monitor.health import instant_failures
from monitor.health import lifecycle
from monitor.health import policy as health_policy
from monitor.health import recovery_policy as recovery_mod
from monitor.health import states
from monitor.health.ping_outcome import Outcome
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.virt import metadata as domain_metadata

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
                 delivery_wakeup=None, clock=time.time, metrics=None,
                 silent_periods=None, recovery=None):
        """``delivery_wakeup`` (a ``threading.Event`` shared with the
        delivery worker) is set after each enqueue, so the first attempt
        is made at once. ``silent_periods`` (guest_activity.SilentPeriods)
        corroborates a silent agent with the guest's I/O; None: the
        agent's silence alone reports the guest. ``recovery`` (a
        ``recovery_step.RecoveryStep``) recovers failed guests itself on a
        plain libvirt host; None: notify only."""
        self.store = store
        self.policy = policy
        self.breaker = breaker
        self.outbox = outbox
        self.hostname = hostname
        self._delivery_wakeup = delivery_wakeup
        self._clock = clock
        self.metrics = metrics or metrics_mod.MonitorMetrics()
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
        # Records of domains that stopped or vanished, by UUID, with the
        # time they did, kept for the policy's hard_reboot_window: a
        # domain that runs again meanwhile (destroy + start) keeps its
        # history. Held here, not in the store: they are not monitored.
        self._stopped = {}
        self.recovery = recovery
        # Each listed domain's own settings (its metadata element), by
        # UUID; a domain not in here has the defaults.
        self._settings = {}
        # UUIDs opted out by their metadata (enabled="no"), said once.
        self._opted_out = set()
        # (UUID, error) of invalid metadata elements already logged.
        self._settings_errors = set()

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
            if not self._note_settings(info.uuid, info.name,
                                       getattr(info, 'settings', None),
                                       getattr(info, 'settings_error', None)):
                continue
            if info.uuid in self._agent_refused:
                continue
            live.add(info.uuid)
            record = self.store.get(info.uuid)
            if record is None:
                record = self._restore(info.uuid, now, 'listed again')
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
            self._hold(record, now)
            LOG.info('Domain %s (%s) is no longer running on this host; '
                     'forgetting it', record.name, record.uuid)
        self._expire_stopped(now)
        self.silent_periods.keep_only(live)
        # A domain that left the listing is looked at afresh (and said
        # again) when it runs here again.
        self._unmonitored &= listed
        self._agent_refused &= listed
        self._opted_out &= listed
        for uuid in set(self._settings) - listed:
            del self._settings[uuid]
        self._settings_errors = {key for key in self._settings_errors
                                 if key[0] in listed}
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
        I/O counters the next :meth:`apply_round` would use: domains
        being counted towards (or past) the failure threshold, while
        corroboration is on."""
        if not self.silent_periods.enabled:
            return []
        wanted = []
        for uuid in uuids:
            record = self.store.get(uuid)
            if record is not None and not record.paused and \
                    record.state in (states.HEALTHY, states.ERROR):
                wanted.append(uuid)
        return wanted

    def apply_round(self, results, now=None, counters=None):
        """Apply one sweep's ping results ({uuid: PingResult}).

        ``counters``: {uuid: guest_activity.DomainCounters} taken after
        the round's misses, for the domains :meth:`wants_counters` named;
        a domain left out has none (the stats call failed or was late).

        Returns True when the mass-failure breaker held this sweep's
        misses.
        """
        now = self._now(now)
        counters = counters or {}
        facts = self._outbox_facts()
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
            # A delivery since the last look makes the domain reported
            # before its result counts (and it no longer counts for the
            # breaker).
            record = self._see_delivery(record, facts, now)
            current[uuid] = (record, result)

        # Only domains answering until now count for the breaker: a host
        # full of guests still booting is not a stalled host, and guests
        # already reported dead are no news (counting them would hold
        # back every later failure on the host). Only a ping that was
        # answered or missed says anything about the host.
        # Guests whose agent is silent while they keep working are no
        # news either: a host with a few of them must not hold back the
        # next real failure.
        counted = [(r, res) for r, res in current.values()
                   if r.state in (states.HEALTHY, states.ERROR)
                   and res.outcome in (Outcome.OK, Outcome.MISSED)
                   and not self.silent_periods.is_active(r.uuid)]
        missed = sum(1 for _r, res in counted
                     if res.outcome is Outcome.MISSED)
        held = self.breaker.evaluate(len(counted), missed)

        for record, result in current.values():
            self._apply_result(record, result, held, now,
                               facts.get(record.uuid,
                                         health_policy.NOTHING_QUEUED),
                               counters.get(record.uuid))
        self.tick(now)
        return held

    def _apply_result(self, record, result, held, now, facts,
                      counters=None):
        outcome = result.outcome
        if outcome is Outcome.OK:
            self.silent_periods.ended(record.uuid)
            self._apply_verdict(self.policy.ping_ok(record, now), now)
        elif outcome is Outcome.MISSED:
            if held:
                return
            LOG.debug('Domain %s (%s) missed a ping: %s', record.name,
                      record.uuid, result.detail)
            verdict = self.policy.ping_missed(
                record, now, facts,
                failure_threshold=self.settings_of(
                    record.uuid).failure_threshold)
            if verdict.record.misses > record.misses:
                # A counted miss: the first one opens the silent period.
                self.silent_periods.missed(record.uuid, counters)
            if verdict.notify:
                verdict = self._corroborate(verdict, counters)
            self._apply_verdict(verdict, now)
        elif outcome is Outcome.GONE:
            self.silent_periods.ended(record.uuid)
            self.store.delete(record.uuid)
            self._hold(record, now)
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

    def _corroborate(self, verdict, counters):
        """The threshold miss asks to notify: does the guest's own I/O
        over its silent period say it still works?

        A guest found active is not notified now; its record stays
        ``error`` and keeps counting misses, and the policy asks again on
        each further miss, judged over the time since this one: a guest
        whose I/O then stops is reported. ``error`` is the truth (its
        agent does not answer) and keeps the four states the status
        tool, the metrics and the store know; the engine is not told,
        because restarting a guest that works is an outage the monitor
        would cause. No evidence (a panicked guest, no counters, a
        domain without disks or interfaces) reports it as before.
        """
        record = verdict.record
        judgement = self.silent_periods.judge(record.uuid, counters)
        assessment = judgement.assessment
        if not judgement.hold:
            if self.silent_periods.enabled:
                # Why the guest is reported though its I/O was looked at.
                verdict = verdict._replace(
                    reason='%s; %s' % (verdict.reason, assessment.reason))
            return verdict
        if judgement.newly_active:
            LOG.warning('Domain %s (%s): agent unresponsive, guest active '
                        '(%s); not reported while its I/O goes on',
                        record.name, record.uuid, assessment.reason)
            self.metrics.agent_silent_guest_active()
        else:
            LOG.debug('Domain %s (%s): agent still unresponsive, guest '
                      'still active (%s)', record.name, record.uuid,
                      assessment.reason)
        return verdict._replace(
            notify=False, reason='%s; guest active: %s' % (
                verdict.reason, assessment.reason))

    def tick(self, now=None):
        """Look at the outbox for every record (deliveries make failing
        domains reported) and run the policy's timers (discovery
        timeout)."""
        now = self._now(now)
        facts = self._outbox_facts()
        for record in self.store.all():
            record = self._see_delivery(record, facts, now)
            verdict = self.policy.tick(
                record, now, facts.get(record.uuid,
                                       health_policy.NOTHING_QUEUED))
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
        failure = instant_failures.failure_of(event)
        if record is not None and (failure is not None
                                   or action is not lifecycle.Action.IGNORE):
            facts = self._outbox_facts(event.uuid).get(
                event.uuid, health_policy.NOTHING_QUEUED)
            record = self._see_delivery_of(record, facts, now)
            if failure is not None:
                # Before the action: a stopped event forgets the record.
                record = self._instant_failure(record, event, facts, now)
        if record is None:
            # Not (yet) monitored: the next listing picks it up. A new run
            # may have the agent libvirt refused before. A domain that
            # stopped moments ago (hard reboot) is taken back with its
            # history.
            if action is lifecycle.Action.REARM:
                self._agent_refused.discard(event.uuid)
                self._restore(event.uuid, now, lifecycle.describe(event))
            return
        if action is lifecycle.Action.IGNORE:
            return
        if action in (lifecycle.Action.REARM, lifecycle.Action.PARK,
                      lifecycle.Action.FORGET):
            # A new run, a pause or the end of the domain ends the
            # silent period with the misses.
            self.silent_periods.ended(record.uuid)
        self._apply_action(record, action, now, lifecycle.describe(event))

    def _instant_failure(self, record, event, facts, now):
        """Notify a failure libvirt reports at once (a pvpanic crash,
        QEMU ending on its own, a watchdog), once per incident; return
        the record as it is now."""
        decision = instant_failures.decide(
            event, record.state, self.policy.notified_already(record, facts))
        if not decision.notify:
            LOG.info('Domain %s (%s): %s; not notified again',
                     record.name, record.uuid, decision.reason)
            return record
        verdict = self.policy.instant_failure(
            record, min(event.at, now), decision.reason)
        self._apply_verdict(verdict, now)
        return verdict.record

    def _apply_action(self, record, action, now, why, quiet=False):
        verdict = self.policy.apply_lifecycle(record, action, now)
        if verdict is None:
            self.store.delete(record.uuid)
            self._hold(record, now)
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
            self._queue_notification(record, verdict.reason, now)
        self.store.put(record)

    def _queue_notification(self, record, reason, now):
        action = recovery_mod.NONE
        if self.recovery is not None:
            action = self.recovery.action_for(
                record.uuid, record.name,
                self.settings_of(record.uuid).action)
        held = action != recovery_mod.NONE
        if held:
            # Stored before the guest is touched, held until the recovery
            # has said what it did: a crash in between loses nothing.
            details = self.recovery.initial_details(record.misses, action,
                                                    reason)
        else:
            details = recovery_mod.notification_details(
                record.misses, recovery_mod.RecoveryReport(
                    recovery_mod.NONE, recovery_mod.RESULT_NOT_REQUESTED),
                reason=reason)
        notification = notification_mod.Notification.new(
            instance_uuid=record.uuid, domain_name=record.name,
            hostname=self.hostname, at=now, details=details)
        try:
            self.outbox.enqueue(notification, now, held=held)
        except (outbox_mod.OutboxFull, outbox_mod.OutboxBusy) as exc:
            # Loud; nothing is queued, so the policy asks again on the
            # next miss, once the outbox has room or its lock is free.
            LOG.error('Cannot queue the notification for domain %s (%s): '
                      '%s', record.name, record.uuid, exc)
            return
        crash_points.reached(crash_points.AFTER_ENQUEUE)
        self.metrics.notification_queued()
        if held:
            LOG.warning('Domain %s (%s) failed (%s): notification %s '
                        'queued, sent once the %s is done', record.name,
                        record.uuid, reason, notification.id, action)
            self.recovery.start(notification, record.misses, action,
                                self.recovery_ended)
            return
        LOG.warning('Domain %s (%s) failed (%s): notification %s queued '
                    'for the HA engine', record.name, record.uuid, reason,
                    notification.id)
        if self._delivery_wakeup is not None:
            self._delivery_wakeup.set()

    # -- self-recovery and per-domain settings -------------------------------

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

    def settings_of(self, uuid):
        """The domain's own settings (defaults when it has none)."""
        return self._settings.get(uuid, domain_metadata.DEFAULTS)

    def settings_changed(self, uuid, name, settings, error=None):
        """A domain's metadata changed while it runs: apply its new
        settings now, without waiting for the next listing."""
        before = self.settings_of(uuid)
        # Opted out: the record goes now. Enabled again: the next listing
        # takes the domain back, in discovery.
        self._note_settings(uuid, name, settings, error)
        after = self.settings_of(uuid)
        if after != before:
            LOG.info('Domain %s (%s): settings from its metadata now '
                     'enabled=%s, failure_threshold=%s, action=%s', name,
                     uuid, 'yes' if after.enabled else 'no',
                     after.failure_threshold or 'default',
                     after.action or 'default')

    def _note_settings(self, uuid, name, settings, error):
        """Keep a listed domain's settings; False when it opted out
        (its record, if any, is dropped and it is said once)."""
        if error is not None and (uuid, error) not in self._settings_errors:
            self._settings_errors.add((uuid, error))
            LOG.warning('Domain %s (%s): its <monitor/> metadata element is '
                        'ignored, the configured defaults apply: %s', name,
                        uuid, error)
        settings = settings or domain_metadata.DEFAULTS
        if settings == domain_metadata.DEFAULTS:
            self._settings.pop(uuid, None)
        else:
            self._settings[uuid] = settings
        if settings.enabled:
            if uuid in self._opted_out:
                self._opted_out.discard(uuid)
                LOG.info('Domain %s (%s) is monitored again: its metadata '
                         'no longer says enabled="no"', name, uuid)
            return True
        if uuid not in self._opted_out:
            self._opted_out.add(uuid)
            LOG.info('Domain %s (%s) is not monitored: its metadata says '
                     'enabled="no"', name, uuid)
        if self.store.get(uuid) is not None:
            self.store.delete(uuid)
        return False

    def _outbox_facts(self, uuid=None):
        """{uuid: OutboxFacts} for every domain the outbox holds
        notifications for (only ``uuid``'s when given)."""
        pending = {}
        finished = {}
        for entry in self.outbox.latest_per_domain(uuid):
            key = entry.notification.instance_uuid
            if entry.status == outbox_mod.PENDING:
                pending[key] = entry
            else:
                finished[key] = entry
        facts = {}
        for key in pending.keys() | finished.keys():
            p, f = pending.get(key), finished.get(key)
            facts[key] = health_policy.OutboxFacts(
                pending_id=None if p is None else p.id,
                finished_id=None if f is None else f.id,
                finished_created_at=None if f is None else f.created_at,
                finished_dead=f is not None and f.status == outbox_mod.DEAD)
        return facts

    def _see_delivery(self, record, facts, now):
        return self._see_delivery_of(
            record, facts.get(record.uuid, health_policy.NOTHING_QUEUED), now)

    def _see_delivery_of(self, record, facts, now):
        verdict = self.policy.delivery_seen(record, facts, now)
        if verdict.record == record:
            return record
        self._apply_verdict(verdict, now)
        return verdict.record

    # -- stopped domains (hard reboot) ------------------------------------------

    def _hold(self, record, now):
        if self.policy.hard_reboot_window > 0:
            self._stopped[record.uuid] = (record, now)

    def _expire_stopped(self, now):
        window = self.policy.hard_reboot_window
        for uuid, (_record, since) in list(self._stopped.items()):
            if now - since > window:
                del self._stopped[uuid]

    def _restore(self, uuid, now, why):
        """Take back the record of a domain that stopped within the hard
        reboot window, re-armed; None when there is none."""
        held = self._stopped.pop(uuid, None)
        if held is None:
            return None
        record, since = held
        if now - since > self.policy.hard_reboot_window:
            return None
        verdict = self.policy.apply_lifecycle(record, lifecycle.Action.REARM,
                                              now)
        LOG.info('Domain %s (%s) runs again %.0f s after it stopped (%s); '
                 'keeping its history: waiting for its guest agent to '
                 'answer', record.name, record.uuid, now - since, why)
        if verdict.old_state != verdict.new_state:
            self.metrics.state_changed(verdict.old_state, verdict.new_state)
        self.store.put(verdict.record)
        return verdict.record

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

