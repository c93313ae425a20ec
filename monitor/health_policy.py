"""The health policy: what a ping result, a timer or a lifecycle event does
to a domain's record, and when the HA engine must be told.

Every method is pure: it takes a record and the current time, never mutates
the record, and returns a new one (inside a :class:`Verdict` when the state
may change). Storing records, pinging and queueing notifications are the
caller's business.

Notifications. A verdict with ``notify=True`` asks the caller to queue one
notification now and then record it with :meth:`notification_queued`. While
a notification is queued no other one is asked for: the outbox is durable and
always delivers it, because the failure it reports was real even if the guest
has come back since. When the engine accepts it
(:meth:`notification_accepted`) a failing domain moves to ``reported``, where
it stays until its agent answers again or it is restarted. The request to
notify is repeated on every further miss until a notification is queued, so
one that the caller held back (mass-failure breaker) or lost (daemon killed
before queueing) is asked for again while the guest is still dead.
"""

import dataclasses
import typing

from oslo_config import cfg

from monitor import domain_record
from monitor import lifecycle
from monitor import states

GROUP = 'monitor'

OPTS = [
    cfg.IntOpt(
        'failure_threshold',
        default=3,
        min=1,
        max=1000,
        help="""
Number of consecutive missed pings after which a guest is reported to the HA
engine. The notification is sent on exactly this miss: with 3, the third
consecutive miss reports the guest.

Possible values:

* An integer from 1 to 1000. Default 3.

Related options:

* [monitor] interval, [monitor] ping_timeout: together with this option they
  bound the time from a guest failure to its notification.
"""),
    cfg.IntOpt(
        'discovery_timeout',
        default=0,
        min=0,
        max=86400,
        help="""
Seconds a restarted guest whose agent had answered before may take for its
agent to answer again, after which it is reported to the HA engine.

A guest whose agent never answered since monitoring began is never reported
from discovery: it may simply not run an agent.

Possible values:

* 0 (default): wait in discovery for ever, like Masakari's monitor.
* An integer from 1 to 86400 (a day): seconds, counted from the restart or
  resume.
"""),
    cfg.IntOpt(
        'agent_disconnect_grace',
        default=30,
        min=0,
        max=3600,
        help="""
Seconds after libvirt reports that a guest's agent disconnected from its
channel during which missed pings are not counted. This covers an agent being
restarted inside the guest (for example by a package upgrade). A ping that
answers ends the grace at once.

Possible values:

* An integer from 0 to 3600. Default 30. 0 counts every miss.

Related options:

* failure_threshold
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]


class Verdict(typing.NamedTuple):
    record: domain_record.DomainRecord
    old_state: str
    new_state: str
    # True: the caller must queue one notification now.
    notify: bool
    # Operator text, e.g. '3 consecutive missed pings'.
    reason: str


def _misses_text(misses):
    if misses == 1:
        return '1 missed ping'
    return '%d consecutive missed pings' % misses


class HealthPolicy:

    def __init__(self, failure_threshold, discovery_timeout=0,
                 agent_disconnect_grace=30):
        if failure_threshold < 1:
            raise ValueError('failure_threshold must be at least 1, got %s'
                             % failure_threshold)
        self.failure_threshold = failure_threshold
        self.discovery_timeout = discovery_timeout
        self.agent_disconnect_grace = agent_disconnect_grace

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.monitor.failure_threshold,
                   discovery_timeout=conf.monitor.discovery_timeout,
                   agent_disconnect_grace=conf.monitor.agent_disconnect_grace)

    def new_record(self, uuid, name, now):
        """A record for a domain seen for the first time."""
        return domain_record.DomainRecord(
            uuid=uuid, name=name, state=states.DISCOVERY,
            discovery_since=now)

    def should_ping(self, record, now):
        return not record.paused

    def ping_ok(self, record, now):
        new_state = states.next_state(record.state, states.GUEST_PINGABLE)
        changes = dict(state=new_state, misses=0, last_ok=now,
                       ever_healthy=True, agent_disconnected_at=None,
                       discovery_since=None)
        if record.state == states.REPORTED:
            # Re-armed: a later failure is a new incident and is reported
            # again. A queued notification is kept (see module doc).
            changes['notified_at'] = None
        new = dataclasses.replace(record, **changes)
        if record.state == states.DISCOVERY:
            reason = 'guest agent answered'
        elif record.misses:
            reason = 'guest agent answered again after %s' % _misses_text(
                record.misses)
        else:
            reason = 'guest agent answered again'
        return Verdict(new, record.state, new_state, False, reason)

    def ping_missed(self, record, now):
        if record.paused:
            return self._unchanged(record, 'miss not counted: domain paused')
        if record.state in (states.DISCOVERY, states.REPORTED):
            new_state = states.next_state(
                record.state, states.GUEST_NOT_PINGABLE)
            if record.state == states.DISCOVERY:
                reason = 'agent not answering yet'
            else:
                reason = 'still not answering; already reported'
            return Verdict(record, record.state, new_state, False, reason)
        if self._in_disconnect_grace(record, now):
            return self._unchanged(
                record,
                'miss not counted: agent disconnected %.0f s ago (grace %s s)'
                % (now - record.agent_disconnected_at,
                   self.agent_disconnect_grace))
        new_state = states.next_state(record.state, states.GUEST_NOT_PINGABLE)
        misses = record.misses + 1
        new = dataclasses.replace(record, state=new_state, misses=misses)
        reason = _misses_text(misses)
        notify = False
        if misses >= self.failure_threshold:
            if record.notification_id is None:
                notify = True
                reason += ' (failure threshold %d)' % self.failure_threshold
            else:
                reason += '; notification %s already queued' % (
                    record.notification_id)
        return Verdict(new, record.state, new_state, notify, reason)

    def tick(self, record, now):
        """Timers: the discovery timeout of a restarted guest."""
        if (self.discovery_timeout > 0
                and record.state == states.DISCOVERY
                and record.ever_healthy
                and not record.paused
                and record.notification_id is None
                and record.discovery_since is not None
                and now - record.discovery_since >= self.discovery_timeout):
            return Verdict(
                record, record.state, record.state, True,
                'agent did not come back within %d s after restart'
                % self.discovery_timeout)
        return self._unchanged(record, 'no timer due')

    def notification_queued(self, record, notification_id, now):
        return dataclasses.replace(record, notification_id=notification_id)

    def notification_accepted(self, record, notification_id, now):
        """The engine accepted a notification queued for this domain."""
        if record.notification_id != notification_id:
            return self._unchanged(
                record, 'notification %s is not the one queued (%s)'
                % (notification_id, record.notification_id))
        new = dataclasses.replace(record, notification_id=None,
                                  notified_at=now)
        if record.state in (states.ERROR, states.DISCOVERY):
            new_state = states.next_state(record.state, states.REPORT)
            new = dataclasses.replace(new, state=new_state)
            return Verdict(new, record.state, new_state, False,
                           'HA engine accepted notification %s'
                           % notification_id)
        return Verdict(new, record.state, record.state, False,
                       'HA engine accepted notification %s; guest answers '
                       'again meanwhile' % notification_id)

    def notification_dropped(self, record, notification_id, now):
        """The engine rejected this domain's notification for good.

        The incident is closed as if reported: asking again on every
        miss would only pile up identical dead letters and error lines
        (a rejection is a configuration problem, e.g. an unknown host,
        that the next request will not fix). The dead letter stays in the
        outbox for operators to requeue; the domain is re-armed as usual
        when its guest answers again or it is restarted.
        """
        if record.notification_id != notification_id:
            return self._unchanged(
                record, 'notification %s is not the one queued (%s)'
                % (notification_id, record.notification_id))
        new = dataclasses.replace(record, notification_id=None)
        new_state = record.state
        if record.state in (states.ERROR, states.DISCOVERY):
            new_state = states.next_state(record.state, states.REPORT)
            new = dataclasses.replace(new, state=new_state)
        return Verdict(new, record.state, new_state, False,
                       'HA engine rejected notification %s; kept as a dead '
                       'letter' % notification_id)

    def apply_lifecycle(self, record, action, now):
        """Apply a :class:`lifecycle.Action`; None means forget the domain."""
        if action is lifecycle.Action.FORGET:
            return None
        if action is lifecycle.Action.REARM:
            new = domain_record.DomainRecord(
                uuid=record.uuid, name=record.name, state=states.DISCOVERY,
                discovery_since=now, last_ok=record.last_ok,
                ever_healthy=record.ever_healthy,
                notification_id=record.notification_id)
            return Verdict(new, record.state, new.state, False,
                           're-armed: waiting for the agent to answer')
        if action is lifecycle.Action.PARK:
            new = dataclasses.replace(record, paused=True, misses=0)
            return Verdict(new, record.state, record.state, False,
                           'parked: not pinged until resumed or restarted')
        if action is lifecycle.Action.AGENT_DISCONNECTED:
            new = dataclasses.replace(record, agent_disconnected_at=now)
            return Verdict(new, record.state, record.state, False,
                           'agent disconnected from its channel')
        if action is lifecycle.Action.AGENT_CONNECTED:
            new = dataclasses.replace(record, agent_disconnected_at=None)
            return Verdict(new, record.state, record.state, False,
                           'agent connected to its channel')
        if action is lifecycle.Action.IGNORE:
            return self._unchanged(record, 'event ignored')
        raise ValueError('unknown lifecycle action %r' % (action,))

    def _in_disconnect_grace(self, record, now):
        return (record.agent_disconnected_at is not None
                and now - record.agent_disconnected_at
                < self.agent_disconnect_grace)

    @staticmethod
    def _unchanged(record, reason):
        return Verdict(record, record.state, record.state, False, reason)
