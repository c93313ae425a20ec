"""Corroboration: whether a guest whose agent went silent still works, by
its own I/O over the silence, before the failure is reported.

A guest found active is spared the report for now; its record stays
``error`` and keeps counting misses, and the policy asks again on each
further miss, judged over the time since this one: a guest whose I/O then
stops is reported. ``error`` is the truth (its agent does not answer) and
keeps the four states the status tool, the metrics and the store know; the
engine is not told, because restarting a guest that works is an outage the
monitor would cause. No evidence (a panicked guest, no counters, a domain
without disks or interfaces) reports it as before.
"""

import logging

LOG = logging.getLogger(__name__)


def corroborate(silent_periods, metrics, verdict, counters):
    """The threshold miss of ``verdict`` asks to notify: the verdict as it
    stands once the guest's I/O ``counters`` (guest_activity
    DomainCounters, or None) over its silent period
    (``silent_periods``, a guest_activity.SilentPeriods) were looked at:
    ``notify`` cleared when the guest still works, the reason saying
    why."""
    record = verdict.record
    judgement = silent_periods.judge(record.uuid, counters)
    assessment = judgement.assessment
    if not judgement.defer:
        if silent_periods.enabled:
            # Why the guest is reported though its I/O was looked at.
            verdict = verdict._replace(
                reason='%s; %s' % (verdict.reason, assessment.reason))
        return verdict
    if judgement.newly_active:
        LOG.warning('Domain %s (%s): agent unresponsive, guest active '
                    '(%s); not reported while its I/O goes on',
                    record.name, record.uuid, assessment.reason)
        metrics.agent_silent_guest_active()
    else:
        LOG.debug('Domain %s (%s): agent still unresponsive, guest '
                  'still active (%s)', record.name, record.uuid,
                  assessment.reason)
    return verdict._replace(
        notify=False, reason='%s; guest active: %s' % (
            verdict.reason, assessment.reason))
