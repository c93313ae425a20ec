"""The facts kept per monitored domain.

A record holds plain values only (the state is a name, never a machine), so
any dogpile backend can keep it, including ones that pickle (dbm, file) and
let the state survive a daemon restart. Records are treated as immutable:
the health policy returns new ones with :func:`dataclasses.replace`.
"""

import dataclasses
import typing

from monitor import states


@dataclasses.dataclass
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
    # Notification queued in the outbox, not yet accepted by the engine.
    notification_id: typing.Optional[str] = None
    # Epoch seconds at which the engine accepted the last notification.
    notified_at: typing.Optional[float] = None

    def to_dict(self):
        """The record as a plain dict, the form kept in the store."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Build a record from :meth:`to_dict` output.

        Keys this version does not know are ignored and missing optional
        ones take their defaults, so a store written by an older or newer
        release still loads.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
