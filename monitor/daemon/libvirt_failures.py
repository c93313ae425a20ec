"""The tracker's side of the failures libvirt reports.

Two kinds, both notified once per incident through the tracker's
verdicts, as the threshold miss would be:

* at once, on the event (``health.instant_failures``): a pvpanic crash,
  QEMU ending on its own, a watchdog; in the payload shape the failure
  calls for (masakari-instancemonitor's for a QEMU that ended);
* once a pause on a disk I/O error has lasted past its grace
  (``health.io_error_pauses``): this module feeds it the tracker's events
  and listings, logs each pause once, and notifies a pause that is due,
  recovered by ``[recovery] io_error_action`` within the domain's recovery
  budget, and counted.
"""

import logging

from monitor.health import instant_failures
from monitor.health import io_error_pauses
from monitor.health import policy as health_policy

LOG = logging.getLogger(__name__)


class LibvirtFailures:

    def __init__(self, pauses=None):
        self.pauses = pauses or io_error_pauses.IOErrorPauses()

    @classmethod
    def from_conf(cls, conf):
        return cls(io_error_pauses.IOErrorPauses.from_conf(conf))

    def saw(self, event, monitored):
        """A domain event; ``monitored``: the domain has a record."""
        pause = self.pauses.saw(event)
        if pause is not None and monitored:
            self._say(pause)

    def listing(self, domains, live, now):
        """A domain listing; ``live``: the UUIDs of monitored domains."""
        for info in domains:
            if info.uuid in live:
                pause = self.pauses.listed(info.uuid, info.name, now,
                                           getattr(info, 'io_error', None))
                if pause is not None:
                    self._say(pause)
        self.pauses.keep_only(live)

    def _say(self, pause):
        LOG.warning('Domain %s (%s) paused on a disk I/O error (%s); '
                    'reported as failed if still paused in %d s',
                    pause.name, pause.uuid,
                    pause.disk or 'libvirt did not say which disk',
                    self.pauses.grace)

    def instant(self, tracker, record, event, facts, now):
        """Notify a failure libvirt reports at once (a pvpanic crash,
        QEMU ending on its own, a watchdog), once per incident; return
        the record as it is now. The tracker calls it before the event's
        lifecycle action is applied (a stopped event forgets the
        record)."""
        decision = instant_failures.decide(
            event, record.state,
            tracker.policy.notified_already(record, facts))
        if not decision.notify:
            LOG.info('Domain %s (%s): %s; not notified again',
                     record.name, record.uuid, decision.reason)
            return record
        verdict = tracker.policy.instant_failure(
            record, min(event.at, now), decision.reason)
        tracker._apply_verdict(verdict, now, shape=decision.shape)
        return verdict.record

    def report_due(self, tracker, now, facts):
        """Notify, through ``tracker``, every pause past its grace."""
        for pause in self.pauses.due(now):
            record = tracker.store.get(pause.uuid)
            if record is None or tracker.maintenance.covers(pause.uuid):
                continue
            decision = instant_failures.decide_pause(
                pause.reason(now), record.state, tracker.policy.
                notified_already(record, facts.get(
                    record.uuid, health_policy.NOTHING_QUEUED)))
            if not decision.notify:
                LOG.info('Domain %s (%s): %s; not notified again',
                         record.name, record.uuid, decision.reason)
                continue
            tracker.metrics.io_error_pause_reported()
            verdict = tracker.policy.instant_failure(
                record, min(pause.since, now), decision.reason)
            tracker._apply_verdict(verdict, now, facts,
                                   action=self.pauses.action,
                                   shape=decision.shape)
