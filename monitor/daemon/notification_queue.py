"""The tracker's side of the outbox: what the outbox says about each
domain's notifications, and queueing a new one.

The outbox alone knows what became of each notification; this module
reads its latest entries per domain into the policy's ``OutboxFacts``
(kept only until the outbox changes, and never kept anywhere else) and
queues a notification when the policy asks for one: straight for the HA
engine, or *held* until the recovery step has said what it did to the
guest.

A pending notification holds back only its own incident: one of an
earlier incident of the domain is delivered as usual (the outbox sends a
domain's notifications in order, every one once the engine is back), but
the next incident is notified, and the guest recovered, without waiting
for it. So a receiver that is down never stops self-recovery: a guest that
stays dead after its reset is reset again after the discovery timeout,
within its budget, exactly as with the receiver up.

Which incident a pending notification belongs to: for one queued by this
run, the run of the guest it was queued in (an incident ends when the
guest answers again or the domain is re-armed, which is when the record's
``last_ok`` or ``discovery_since`` changes), so no wall-clock step can mix
two incidents up; for one from before a restart, its creation time against
the start of the record's incident, as the policy judges deliveries.
"""

import logging

from monitor import crash_points
from monitor.health import failure_reasons
from monitor.health import instant_failures
from monitor.health import policy as health_policy
from monitor.health import recovery_policy as recovery_mod
from monitor.health import states
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod

LOG = logging.getLogger(__name__)


class NotificationQueue:

    # Seconds a notification in a shape masakari-instancemonitor sends too
    # waits before its first attempt, so that masakari-api stores theirs
    # first and answers ours 409 (notifier.masakari.instancemonitor_wait:
    # 0 unless it runs beside this monitor). Set by the service.
    instancemonitor_wait = 0.0

    def __init__(self, outbox, hostname, metrics, delivery_wakeup=None,
                 recovery=None):
        """``delivery_wakeup`` (a ``threading.Event`` shared with the
        delivery worker) is set after each enqueue, so the first attempt
        is made at once. ``recovery`` (a ``recovery_step.RecoveryStep``)
        recovers failed guests itself on a plain libvirt host; None:
        notify only."""
        self.outbox = outbox
        self.hostname = hostname
        self.metrics = metrics
        self._delivery_wakeup = delivery_wakeup
        self.recovery = recovery
        # What facts() last built from the outbox's latest_states(): the
        # facts of its domains before their pending entries, and the
        # outbox's version they were read at.
        self._settled = None
        self._version_seen = None
        # {uuid: (notification id, run of the guest)} of the newest
        # notification this run queued for each domain (see _run_of).
        self._queued = {}

    def facts(self, uuid=None, record_of=None):
        """{uuid: OutboxFacts} for every domain the outbox holds
        notifications for (only ``uuid``'s when given), in one read.

        With ``record_of(uuid)`` (the domain's record, or None), a
        pending notification of an earlier incident than the record's is
        left out: it neither stops the policy from asking for the
        notification of the incident under way nor makes it wait.

        The caller's dict is its own to change. The facts of domains with
        nothing pending (most of them: every domain that failed within the
        day, delivered) are built once per change of the outbox and only
        copied each round: rebuilding thousands of them every round cost
        CPU, and memory as the history grew.
        """
        if uuid is not None:
            settled, pending = _settled_and_pending(
                self.outbox.latest_states(uuid))
        else:
            version = self.outbox.version()
            if version != self._version_seen:
                # The old facts go first: never two copies at once.
                self._version_seen = self._settled = None
                self._settled = _settled_and_pending(
                    self.outbox.latest_states())
                self._version_seen = version
                # Only a pending entry is ever judged by what this run
                # queued: once none is, the domain's is dropped (a
                # requeued dead letter is judged by its time, as after a
                # restart), so it is not kept for every domain that ever
                # failed.
                for key in self._queued.keys() - self._settled[1].keys():
                    del self._queued[key]
            settled, pending = self._settled
        facts = dict(settled)
        for key, p in pending.items():
            if record_of is not None and \
                    not self._of_incident(p, record_of(key)):
                continue
            facts[key] = facts.get(key, health_policy.NOTHING_QUEUED
                                   )._replace(pending_id=p.id)
        return facts

    def _of_incident(self, entry, record):
        """Whether the pending ``entry`` belongs to ``record``'s incident
        under way (True when there is no record to judge by, and while
        it is held: one recovery of a domain at a time; the policy asks
        again once it is released)."""
        if record is None or entry.held:
            return True
        queued = self._queued.get(record.uuid)
        if queued is not None:
            queued_id, run = queued
            # An older entry than the newest this run queued belongs to
            # an earlier incident: no incident is notified twice.
            return queued_id == entry.id and run == _run_of(record)
        start = _incident_start(record)
        return start is not None and entry.created_at >= start

    def keep_only(self, uuids):
        """Forget what was queued for domains not in ``uuids`` (no longer
        listed): one that comes back is judged by its notifications'
        times."""
        for uuid in set(self._queued) - set(uuids):
            del self._queued[uuid]

    def queue(self, record, reason, now, action_override=None,
              on_recovered=None, shape=None, extra_details=None):
        """Queue one notification of ``record``'s failure; return its id,
        or None when the outbox could not take it (said loudly: the policy
        asks again on the next miss).

        ``action_override``: the domain's own recovery action (its
        metadata), if any; ``on_recovered(uuid, report, now)`` is called
        once a recovery is over and its notification released. ``shape``:
        the payload's (event, vir_domain_event), the agent error's by
        default. ``extra_details``: keys added to the details (an
        application failure's, ``probes.failure_details``)."""
        shape = shape or instant_failures.AGENT_ERROR
        action = recovery_mod.NONE
        if self.recovery is not None:
            action = self.recovery.action_for(record.uuid, record.name,
                                              action_override)
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
        if extra_details:
            details.update(extra_details)
        notification = notification_mod.Notification.new(
            instance_uuid=record.uuid, domain_name=record.name,
            hostname=self.hostname, at=now, event=shape.event,
            vir_domain_event=shape.vir_domain_event, details=details)
        wait = self.instancemonitor_wait \
            if shape in instant_failures.INSTANCEMONITOR_SHAPES else 0
        try:
            self.outbox.enqueue(notification, now, held=held,
                                due_at=now + wait if wait else None)
        except (outbox_mod.OutboxFull, outbox_mod.OutboxBusy) as exc:
            # Loud; nothing is queued, so the policy asks again on the
            # next miss, once the outbox has room or its lock is free.
            LOG.error('Cannot queue the notification for domain %s (%s): '
                      '%s', record.name, record.uuid, exc)
            return None
        crash_points.reached(crash_points.AFTER_ENQUEUE)
        self._queued[record.uuid] = (notification.id, _run_of(record))
        self.metrics.notification_queued()
        failures = getattr(self.metrics, 'failures', None)
        if failures is not None:
            failures.guest_failure(failure_reasons.reason_of(
                reason, shape, details))
        if held:
            LOG.warning('Domain %s (%s) failed (%s): notification %s '
                        'queued, sent once the %s is done', record.name,
                        record.uuid, reason, notification.id, action)
            self.recovery.start(notification, record.misses, action,
                                on_recovered)
            return notification.id
        LOG.warning('Domain %s (%s) failed (%s): notification %s queued '
                    'for the HA engine%s', record.name, record.uuid, reason,
                    notification.id, '' if not wait else ', sent in %d s '
                    '(masakari-instancemonitor reports it too; masakari-api '
                    'keeps the first of the two)' % wait)
        if self._delivery_wakeup is not None:
            self._delivery_wakeup.set()
        return notification.id


def _settled_and_pending(states):
    """({uuid: OutboxFacts} of every domain in ``states`` (the outbox's
    latest entries per domain) as if nothing were pending, {uuid: its
    pending entry})."""
    settled = {}
    pending = {}
    for entry in states:
        key = entry.instance_uuid
        if entry.status == outbox_mod.PENDING:
            pending[key] = entry
            settled.setdefault(key, health_policy.NOTHING_QUEUED)
        else:
            settled[key] = health_policy.OutboxFacts(
                finished_id=entry.id,
                finished_created_at=entry.created_at,
                finished_dead=entry.status == outbox_mod.DEAD)
    return settled, pending


def _run_of(record):
    """What changes exactly when an incident ends: the guest answered
    again (``last_ok``) or the domain was re-armed (``discovery_since``),
    whatever the wall clock did."""
    return (record.discovery_since, record.last_ok)


def _incident_start(record):
    """When the record's incident began, as the policy counts it (None
    while nothing fails)."""
    if record.failing_since is not None:
        return record.failing_since
    if record.state == states.DISCOVERY:
        # Only the discovery timeout notifies from discovery, for this
        # run of the guest.
        return record.discovery_since
    return None
