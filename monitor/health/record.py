"""The facts kept per monitored domain.

A record holds plain values only (the state is a name, never a machine), so
any dogpile backend can keep it, including ones that pickle (dbm, file) and
let the state survive a daemon restart. Records are immutable (frozen):
the health policy returns new ones with :meth:`DomainRecord.replace`, so the
store can hand the same object to every reader.

A record holds health facts only. What became of a notification (queued,
delivered, dead) is the outbox's alone: a copy kept here would disagree
with it after a crash between the two writes.
"""

import dataclasses
import typing

from monitor.health import states


@dataclasses.dataclass(frozen=True)
class DomainRecord:
    uuid: str
    name: str
    state: str = states.DISCOVERY
    # Consecutive missed pings that counted towards the failure threshold.
    misses: int = 0
    # Epoch seconds of the last answered ping.
    last_ok: typing.Optional[float] = None
    # Epoch seconds at which the domain entered discovery.
    discovery_since: typing.Optional[float] = None
    # The agent answered at least once since this daemon began monitoring
    # the domain. A re-arm (reboot, resume) keeps it; only forgetting the
    # domain clears it. The discovery timeout applies only to such guests:
    # one whose agent never answered may simply not run an agent.
    ever_healthy: bool = False
    # Paused, PM-suspended or shutting down: no pings, no counting.
    paused: bool = False
    # Epoch seconds of the last agent disconnect event, while disconnected.
    agent_disconnected_at: typing.Optional[float] = None
    # Epoch seconds at which the current failure began: the first counted
    # miss, or the restart whose agent did not come back within the
    # discovery timeout. None while nothing fails. A notification created
    # at or after this time for this domain belongs to this incident.
    failing_since: typing.Optional[float] = None

    def __eq__(self, other):
        # Most comparisons are of a record with itself (a verdict that
        # changed nothing), thousands per round: identity first.
        if self is other:
            return True
        if other.__class__ is not self.__class__:
            return NotImplemented
        return vars(self) == vars(other)

    def __hash__(self):
        return hash(tuple(vars(self).values()))

    def replace(self, **changes):
        """A copy with ``changes``: what :func:`dataclasses.replace` makes,
        without its field-by-field ``__init__`` (the policy makes one per
        answered ping, thousands per round, and a record has no checks to
        run). A name that is no field raises TypeError, as there."""
        if not FIELD_NAMES.issuperset(changes):
            raise TypeError('%s has no field %s' % (
                self.__class__.__name__,
                ', '.join(sorted(changes.keys() - FIELD_NAMES))))
        new = object.__new__(self.__class__)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return new

    def to_dict(self):
        """The record as a plain dict, the form kept in the store."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Build a record from :meth:`to_dict` output.

        Keys this version does not know are ignored and missing optional
        ones take their defaults, so a store written by an older or newer
        release still loads (older records carry ``notification_id`` and
        ``notified_at``, facts the outbox now owns).
        """
        if FIELD_NAMES.issuperset(data):
            return cls(**data)
        return cls(**{k: v for k, v in data.items() if k in FIELD_NAMES})


# Fields a store may write late: every answered ping moves ``last_ok``, so
# writing it each time would rewrite every record every round (thousands
# of rows in a file-backed store) for a fact whose freshness matters only
# in memory. A failure's end changes other fields too and is written at
# once.
LAGGING_FIELDS = ('last_ok',)
# The keys of a stored record this release writes.
FIELD_NAMES = frozenset(field.name for field in
                         dataclasses.fields(DomainRecord))
