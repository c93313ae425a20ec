"""The tracker's side of the outbox: what the outbox says about each
domain's notifications, and queueing a new one.

The outbox alone knows what became of each notification; this module
reads its latest entries per domain into the policy's ``OutboxFacts``
(never copies them anywhere that outlives the caller's look) and queues a
notification when the policy asks for one: straight for the HA engine, or
*held* until the recovery step has said what it did to the guest.
"""

import logging

from monitor import crash_points
from monitor.health import policy as health_policy
from monitor.health import recovery_policy as recovery_mod
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod

LOG = logging.getLogger(__name__)


class NotificationQueue:

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

    def facts(self, uuid=None):
        """{uuid: OutboxFacts} for every domain the outbox holds
        notifications for (only ``uuid``'s when given), in one read."""
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

    def queue(self, record, reason, now, action_override=None,
              on_recovered=None):
        """Queue one notification of ``record``'s failure; return its id,
        or None when the outbox could not take it (said loudly: the policy
        asks again on the next miss).

        ``action_override``: the domain's own recovery action (its
        metadata), if any; ``on_recovered(uuid, report, now)`` is called
        once a recovery is over and its notification released."""
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
            return None
        crash_points.reached(crash_points.AFTER_ENQUEUE)
        self.metrics.notification_queued()
        if held:
            LOG.warning('Domain %s (%s) failed (%s): notification %s '
                        'queued, sent once the %s is done', record.name,
                        record.uuid, reason, notification.id, action)
            self.recovery.start(notification, record.misses, action,
                                on_recovered)
            return notification.id
        LOG.warning('Domain %s (%s) failed (%s): notification %s queued '
                    'for the HA engine', record.name, record.uuid, reason,
                    notification.id)
        if self._delivery_wakeup is not None:
            self._delivery_wakeup.set()
        return notification.id
