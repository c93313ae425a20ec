"""The end of a reported failure: queued as a notification of its own
(kind RESOLVED) for the drivers that are told (``drivers.wants_resolved``).

A failure is over when its guest answered again after the failure was
notified (the record's ``last_ok`` is later than the notification), or
when its domain was undefined. Only a failure the receiver has
(delivered) is ever ended: one still pending is ended once delivered, one
refused for good (a dead letter) never, as the receiver never had it.

Judged from what is stored, not from a transition seen in passing: each
pass reads the newest failure of every domain in the outbox and the
domain's record, so an end seen while the daemon was down, or lost to a
crash between the record's write and the queueing, is queued at the next
pass. At most one per failure: its id follows from the failure's
(``Notification.resolving``), and the outbox keeps one entry per id.

An application's failure (a probe's incident) is over when the probe
runner says that the probe passes again (``application_passed``), or its
domain was undefined: the guest answering a ping says nothing of it.

A stopped domain's failure is not over: the domain may start again (a
hard reboot, a recovery), and its guest answering again ends the failure
then. An undefine ends it: the daemon sees its libvirt event, and for
one it could not see (undefined while the daemon was not running, or not
connected to libvirt) it asks libvirt whether a domain it no longer
monitors is still defined, once per connection while the answer is yes.
"""

import logging

from monitor.health import lifecycle
from monitor.notify import drivers
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod

LOG = logging.getLogger(__name__)

ANSWERED = 'guest agent answered again'
UNDEFINED = 'domain undefined'
APPLICATION_PASSED = 'application probe passes again'


def why_over(record, failure_created_at, undefined):
    """Why the failure notified at ``failure_created_at`` (epoch s) is
    over, or None while it lasts.

    :param record: the domain's health record, None when not monitored
        (stopped or gone).
    :param undefined: the domain was seen undefined since.
    """
    if record is None:
        return UNDEFINED if undefined else None
    if record.last_ok is not None and record.last_ok > failure_created_at:
        return ANSWERED
    return None


def why_application_over(record, failure_created_at, undefined,
                         passed_at):
    """Why an application failure notified at ``failure_created_at`` is
    over, or None while it lasts: its probe passed again since
    (``passed_at``, epoch s, None when not), or its domain was undefined."""
    if record is None:
        return UNDEFINED if undefined else None
    if passed_at is not None and passed_at > failure_created_at:
        return APPLICATION_PASSED
    return None


def _is_guest_failure(notification):
    # An application's failure ends when its probe passes again, which
    # no record here tells: it is not ended by a ping.
    details = notification.details or {}
    return details.get('incident') is None


class Resolutions:
    """Queues the end of each delivered failure once it is over."""

    def __init__(self, store, outbox, delivery_wakeup=None, interval=2.0,
                 defined=None):
        """``defined(uuid)``: whether libvirt still has the domain (True,
        False, or None when it cannot tell), bounded in time by the
        caller; None: libvirt is never asked."""
        self.store = store
        self._defined = defined
        # Domains libvirt said it still has since the last (re)connect.
        self._still_defined = set()
        self.outbox = outbox
        self.interval = interval
        self._delivery_wakeup = delivery_wakeup
        # Failures whose end is queued already (a cache of what the
        # outbox holds, so a pass does not ask it again).
        self._ended = set()
        # Domains seen undefined, until their failure is ended.
        self._undefined = set()
        # uuid -> epoch s an application probe of the domain passed again
        # after failing, until the failure is ended. In memory: after a
        # restart the probes start afresh and pass again, which is told
        # here then.
        self._passed = {}

    @classmethod
    def from_conf(cls, conf, store, outbox, delivery_wakeup=None,
                  defined=None):
        """None when the driver is not told of ends."""
        if not drivers.wants_resolved(conf):
            return None
        return cls(store, outbox, delivery_wakeup,
                   interval=max(float(conf.monitor.interval), 1.0),
                   defined=defined)

    def connected(self):
        """libvirt (re)connected: the events of the time without it are
        lost, so whether a domain is still defined is asked again."""
        self._still_defined.clear()

    def saw(self, event):
        """A libvirt domain event, after the tracker applied it."""
        if (getattr(event, 'kind', None) is lifecycle.EventKind.LIFECYCLE
                and event.event is lifecycle.LifecycleEvent.UNDEFINED):
            self._undefined.add(event.uuid)

    def application_passed(self, uuid, at):
        """An application probe of domain ``uuid`` passes again after
        its failure (the probe runner's word), at ``at`` (epoch s)."""
        self._passed[uuid] = at

    def run(self, stop_event, clock):
        while not stop_event.is_set():
            try:
                self.check(clock())
            except outbox_mod.OutboxBusy as exc:
                LOG.warning('Looking for failures that are over postponed: '
                            '%s', exc)
            except Exception:  # loop boundary: keep looking
                LOG.exception('Looking for failures that are over failed')
            stop_event.wait(self.interval)

    def check(self, now):
        """Queue the end of every delivered failure that is over; returns
        the notifications queued."""
        queued = []
        seen = set()
        domains = set()
        listed = set()
        ask = self._defined is not None
        for entry in self.outbox.latest_per_domain():
            failure = entry.notification
            listed.add(failure.instance_uuid)
            if entry.status != outbox_mod.DELIVERED:
                continue
            seen.add(failure.id)
            domains.add(failure.instance_uuid)
            if failure.id in self._ended:
                continue
            uuid = failure.instance_uuid
            record = self.store.get(uuid)
            if record is None and ask:
                ask = self._ask_defined(failure)
            if _is_guest_failure(failure):
                why = why_over(record, entry.created_at,
                               uuid in self._undefined)
            else:
                why = why_application_over(
                    record, entry.created_at, uuid in self._undefined,
                    self._passed.get(uuid))
            if why is None:
                continue
            resolved = self._queue(failure, why, now)
            if resolved is not None:
                queued.append(resolved)
        # Only what the outbox still shows is remembered.
        self._ended &= seen
        self._undefined &= domains
        self._still_defined &= domains
        for uuid in set(self._passed) - listed:
            del self._passed[uuid]
        return queued

    def _ask_defined(self, failure):
        """For a failed domain no longer monitored (stopped or gone):
        whether libvirt still has it, unless known; returns whether to
        go on asking in this pass (not once libvirt cannot tell: the next
        pass asks again)."""
        uuid = failure.instance_uuid
        if uuid in self._undefined or uuid in self._still_defined:
            return True
        defined = self._defined(uuid)
        if defined is None:
            return False
        if defined:
            self._still_defined.add(uuid)
        else:
            LOG.info('Domain %s (%s) is no longer defined in libvirt',
                     failure.domain_name, uuid)
            self._undefined.add(uuid)
        return True

    def _queue(self, failure, why, now):
        details = {'resolves': failure.id, 'reason': why,
                   'failure': (failure.details or {}).get('reason')}
        if not _is_guest_failure(failure):
            # The end of an application's failure says so, as the failure
            # did (receivers tell the two incidents apart).
            details['incident'] = failure.details['incident']
        resolved = notification_mod.Notification.resolving(
            failure, now, details=details)
        try:
            entry = self.outbox.enqueue(resolved, now)
        except outbox_mod.OutboxFull as exc:
            LOG.error('Cannot queue the end of the failure of domain %s '
                      '(%s): %s; trying again', failure.domain_name,
                      failure.instance_uuid, exc)
            return None
        self._ended.add(failure.id)
        self._undefined.discard(failure.instance_uuid)
        self._passed.pop(failure.instance_uuid, None)
        if entry.created_at != now:
            return None  # queued before (a restart): nothing new
        LOG.info('Domain %s (%s): the failure notified by %s is over (%s); '
                 'notification %s queued', failure.domain_name,
                 failure.instance_uuid, failure.id, why, resolved.id)
        if self._delivery_wakeup is not None:
            self._delivery_wakeup.set()
        return resolved
