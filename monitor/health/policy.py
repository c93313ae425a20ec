"""The health policy: what a ping result, a timer or a lifecycle event does
to a domain's record, and when the HA engine must be told.

Every method is pure: it takes a record and the current time, never mutates
the record, and returns a new one (inside a :class:`Verdict` when the state
may change). Storing records, pinging and queueing notifications are the
caller's business.

Notifications. The record holds health facts only; what became of the
notifications is the outbox's, and the caller passes it in as
:class:`OutboxFacts`. An *incident* is one failure of one domain: it begins
at the record's ``failing_since`` (the first counted miss, or the restart
whose agent never came back) and ends when the guest answers again or is
restarted. A notification belongs to the incident when it was created at or
after that time for this domain.

A verdict with ``notify=True`` asks the caller to queue one notification
now. The request is repeated on every further miss while the outbox holds
neither a pending notification for the domain nor a delivered (or dead)
one for the incident, so one that the caller suppressed (mass-failure
breaker) or could not queue (outbox full) is asked for again while the
guest is still dead, and one already queued or delivered before a crash is
never asked for twice. While a notification of the incident under way is
pending no other one is asked for: the outbox always delivers it, because
the failure it reports was real even if the guest has come back since.

``reported`` is derived from the outbox: :meth:`delivery_seen` moves a
failing domain there once the outbox holds a delivered (or dead-lettered)
notification of its incident, whenever the caller looks, so a crash between
the outbox's write and the record's loses nothing.
"""

import typing

from oslo_config import cfg

from monitor.health import lifecycle
from monitor.health import record as domain_record
from monitor.health import states

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
    cfg.IntOpt(
        'hard_reboot_window',
        default=120,
        min=0,
        max=3600,
        help="""
Seconds the history of a stopped or vanished domain is kept. A domain that
runs again within this time (a destroy followed by a start, as in Nova's
hard reboot) keeps what was known about it, in particular that its agent
answered before, so the discovery timeout still applies when its agent never
comes back. After this time the domain is forgotten and, should it run here
again, starts over as a new domain.

Possible values:

* An integer from 0 to 3600. Default 120. 0 forgets a stopped domain at
  once.

Related options:

* discovery_timeout
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]


class OutboxFacts(typing.NamedTuple):
    """What the outbox holds for one domain: the only notification facts
    the policy reads. Times are epoch seconds."""

    # Id of the newest notification waiting for delivery, if any.
    pending_id: typing.Optional[str] = None
    # The newest notification the engine has (delivered) or refused for
    # good (dead letter), if any, and when it was created.
    finished_id: typing.Optional[str] = None
    finished_created_at: typing.Optional[float] = None
    finished_dead: bool = False


NOTHING_QUEUED = OutboxFacts()

# The states a delivery turns into reported, and the only ones with a timer
# (the discovery timeout, in discovery).
_AWAITING_REPORT = frozenset((states.ERROR, states.DISCOVERY))


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
                 agent_disconnect_grace=30, hard_reboot_window=120):
        if failure_threshold < 1:
            raise ValueError('failure_threshold must be at least 1, got %s'
                             % failure_threshold)
        self.failure_threshold = failure_threshold
        self.discovery_timeout = discovery_timeout
        self.agent_disconnect_grace = agent_disconnect_grace
        self.hard_reboot_window = hard_reboot_window

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.monitor.failure_threshold,
                   discovery_timeout=conf.monitor.discovery_timeout,
                   agent_disconnect_grace=conf.monitor.agent_disconnect_grace,
                   hard_reboot_window=conf.monitor.hard_reboot_window)

    def new_record(self, uuid, name, now):
        """A record for a domain seen for the first time."""
        return domain_record.DomainRecord(
            uuid=uuid, name=name, state=states.DISCOVERY,
            discovery_since=now)

    def should_ping(self, record, now):
        return not record.paused

    def ping_ok(self, record, now):
        new_state = states.next_state(record.state, states.GUEST_PINGABLE)
        # The incident, if any, ends here: a later failure is a new one and
        # is reported again. A queued notification is kept (module doc).
        new = record.replace(
            state=new_state, misses=0, last_ok=now, ever_healthy=True,
            agent_disconnected_at=None, discovery_since=None,
            failing_since=None)
        if record.state == states.DISCOVERY:
            reason = 'guest agent answered'
        elif record.misses:
            reason = 'guest agent answered again after %s' % _misses_text(
                record.misses)
        else:
            reason = 'guest agent answered again'
        return Verdict(new, record.state, new_state, False, reason)

    def ping_missed(self, record, now, facts=NOTHING_QUEUED,
                    failure_threshold=None):
        """A missed ping; ``failure_threshold`` is the domain's own (its
        metadata), None for the configured one."""
        threshold = failure_threshold or self.failure_threshold
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
        failing_since = record.failing_since
        if failing_since is None:
            failing_since = now
        new = record.replace(state=new_state, misses=misses,
                             failing_since=failing_since)
        reason = _misses_text(misses)
        notify = False
        if misses >= threshold:
            already = self._already_notified(new, facts)
            if already is None:
                notify = True
                reason += ' (failure threshold %d)' % threshold
            else:
                reason += '; ' + already
        return Verdict(new, record.state, new_state, notify, reason)

    @staticmethod
    def settled(record):
        """Whether neither :meth:`delivery_seen` nor :meth:`tick` can
        change ``record`` or ask for a notification, whatever the outbox
        holds and the time: its guest answers, or its failure was
        reported. The tracker looks at every record every round; most are
        settled, and are skipped without building a verdict."""
        return record.state not in _AWAITING_REPORT

    def tick(self, record, now, facts=NOTHING_QUEUED):
        """Timers: the discovery timeout of a restarted guest."""
        if (self.discovery_timeout > 0
                and record.state == states.DISCOVERY
                and record.ever_healthy
                and not record.paused
                and record.discovery_since is not None
                and now - record.discovery_since >= self.discovery_timeout):
            # The incident is this run of the guest: it began at the
            # restart.
            new = record.replace(failing_since=record.discovery_since)
            if self._already_notified(new, facts) is None:
                return Verdict(
                    new, record.state, record.state, True,
                    'agent did not come back within %d s after restart'
                    % self.discovery_timeout)
        return self._unchanged(record, 'no timer due')

    def delivery_seen(self, record, facts, now):
        """Derive ``reported`` from the outbox: a failing domain whose
        incident has a delivered or dead-lettered notification is reported.

        A dead letter closes the incident as if reported: asking again on
        every miss would only pile up identical dead letters and error
        lines (a rejection is a configuration problem, e.g. an unknown
        host, that the next request will not fix). It stays in the outbox
        for operators to requeue; the domain is re-armed as usual when its
        guest answers again or it is restarted.
        """
        if (record.state not in _AWAITING_REPORT
                or not self._incident_has(record, facts)):
            return self._unchanged(record, 'not reported')
        new_state = states.next_state(record.state, states.REPORT)
        new = record.replace(state=new_state)
        if facts.finished_dead:
            reason = ('HA engine rejected notification %s; kept as a dead '
                      'letter' % facts.finished_id)
        else:
            reason = 'HA engine accepted notification %s' % facts.finished_id
        return Verdict(new, record.state, new_state, False, reason)

    def notified_already(self, record, facts):
        """Why no notification may be queued for ``record`` now (one is
        pending, or one of its incident was delivered or refused), or
        None."""
        return self._already_notified(record, facts)

    def instant_failure(self, record, at, reason):
        """A failure libvirt reported at ``at`` (instant_failures): the
        record enters its failing state as on the threshold miss and the
        caller is asked to notify now.

        ``healthy`` -> ``error``; ``discovery`` and ``error`` stay. The
        misses count as the threshold's, so that the misses that follow
        (a crashed domain is still pinged) go on from there, and the
        incident begins at the event unless it began earlier: the
        notification queued now belongs to it, and neither a later miss
        nor a repeated event asks for another one.
        """
        if record.state == states.HEALTHY:
            new_state = states.next_state(record.state,
                                          states.GUEST_NOT_PINGABLE)
        else:
            new_state = record.state
        failing_since = at if record.failing_since is None else min(
            record.failing_since, at)
        new = record.replace(
            state=new_state, misses=max(record.misses, self.failure_threshold),
            failing_since=failing_since)
        return Verdict(new, record.state, new_state, True, reason)

    def _already_notified(self, record, facts):
        """Why no notification may be asked for now, or None."""
        if facts.pending_id is not None:
            return 'notification %s already queued' % facts.pending_id
        if self._incident_has(record, facts):
            return 'notification %s already delivered' % facts.finished_id
        return None

    @staticmethod
    def _incident_has(record, facts):
        """True when the outbox's newest finished notification for the
        domain belongs to the record's current incident."""
        start = record.failing_since
        if start is None and record.state == states.DISCOVERY:
            # Only the discovery timeout notifies from discovery, for
            # this run of the guest.
            start = record.discovery_since
        if start is None or facts.finished_id is None:
            return False
        # A wall clock that stepped back between the first miss and the
        # notification makes this False: one notification too many rather
        # than a failure never reported.
        return facts.finished_created_at >= start

    def apply_lifecycle(self, record, action, now):
        """Apply a :class:`lifecycle.Action`; None means forget the domain."""
        if action is lifecycle.Action.FORGET:
            return None
        if action is lifecycle.Action.REARM:
            new = domain_record.DomainRecord(
                uuid=record.uuid, name=record.name, state=states.DISCOVERY,
                discovery_since=now, last_ok=record.last_ok,
                ever_healthy=record.ever_healthy)
            return Verdict(new, record.state, new.state, False,
                           're-armed: waiting for the agent to answer')
        if action is lifecycle.Action.PARK:
            new = record.replace(paused=True, misses=0)
            return Verdict(new, record.state, record.state, False,
                           'parked: not pinged until resumed or restarted')
        if action is lifecycle.Action.AGENT_DISCONNECTED:
            new = record.replace(agent_disconnected_at=now)
            return Verdict(new, record.state, record.state, False,
                           'agent disconnected from its channel')
        if action is lifecycle.Action.AGENT_CONNECTED:
            new = record.replace(agent_disconnected_at=None)
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
