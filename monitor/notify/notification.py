"""The notification value and what became of one delivery attempt.

Plain values shared by the middle of the daemon (tracker, outbox,
delivery) and the HA-engine edge. Nothing here does I/O or imports an
HTTP client, so the logic that queues and records notifications does not
depend on keystoneauth.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import typing
import uuid

from monitor.health.instant_failures import AGENT_ERROR
from monitor.health.instant_failures import QEMU_ENDED

# The engine recovers a VM only for these (event, vir_domain_event) pairs
# (masakari's INSTANCE_EVENTS): QEMU_GUEST_AGENT_ERROR or LIFECYCLE with
# STOPPED_FAILED, IO_ERROR with IO_ERROR_REPORT. It stores and ignores
# any other pair. Which failure is sent in which shape:
# health.instant_failures.
QEMU_GUEST_AGENT_ERROR = AGENT_ERROR.event
LIFECYCLE = QEMU_ENDED.event
STOPPED_FAILED = AGENT_ERROR.vir_domain_event

# What a notification reports: a failure, or that the failure a former
# one reported is over (the guest answered again, or its domain is gone).
# Only the drivers that can say so are sent the second kind
# (drivers.wants_resolved); the HA engine has no such notion.
FAILURE = 'failure'
RESOLVED = 'resolved'

# UTC, second resolution: the engine parses ISO 8601 and stores it in a
# column that may not keep fractions of a second.
_TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'


def format_time(epoch_seconds):
    """ISO 8601 UTC time string the engine accepts as generated_time."""
    moment = datetime.datetime.fromtimestamp(epoch_seconds,
                                             datetime.timezone.utc)
    return moment.strftime(_TIME_FORMAT)


# Namespace of the ids of RESOLVED notifications, derived from the id of
# the failure they end.
_RESOLVED_IDS = uuid.UUID('8d5c3a52-9f1e-4a55-a4f6-2f0d7c1e6b3a')


@dataclasses.dataclass(frozen=True)
class Notification:
    """One failure report (or, of kind RESOLVED, the end of one), fixed
    at creation and resent unchanged.

    ``id`` is the monitor's own identity of the report (outbox key);
    the engine never sees it. ``generated_time`` is kept across retries so
    that a resend after a lost response is recognised by the engine as a
    duplicate (409) instead of starting a second recovery.
    """

    id: str
    instance_uuid: str
    domain_name: str
    hostname: str
    generated_time: str
    event: str = QEMU_GUEST_AGENT_ERROR
    vir_domain_event: str = STOPPED_FAILED
    # The incident facts besides the engine's fields, a plain JSON-able
    # dict (recovery.notification_details): consecutive misses, the
    # recovery and its result, the evidence. Kept in the outbox and sent
    # in the webhook body; the engine's body never carries them.
    details: typing.Optional[dict] = dataclasses.field(default=None,
                                                       hash=False)
    # FAILURE or RESOLVED; a notification stored before kinds existed is
    # a failure.
    kind: str = FAILURE

    @classmethod
    def new(cls, instance_uuid, domain_name, hostname, at,
            event=QEMU_GUEST_AGENT_ERROR, vir_domain_event=STOPPED_FAILED,
            details=None):
        """A new notification for a failure observed at ``at`` (epoch s)."""
        return cls(id=str(uuid.uuid4()),
                   instance_uuid=str(instance_uuid),
                   domain_name=str(domain_name),
                   hostname=str(hostname),
                   generated_time=format_time(at),
                   event=str(event),
                   vir_domain_event=str(vir_domain_event),
                   details=details)

    @classmethod
    def resolving(cls, failure, at, details=None):
        """The notice that ``failure``'s incident is over, observed at
        ``at`` (epoch s).

        Its id follows from the failure's, so queueing it again (after a
        crash, or by a second look at the same incident) finds the one
        already in the outbox: at most one per failure.
        """
        return cls(id=str(uuid.uuid5(_RESOLVED_IDS, failure.id)),
                   instance_uuid=failure.instance_uuid,
                   domain_name=failure.domain_name,
                   hostname=failure.hostname,
                   generated_time=format_time(at),
                   event=failure.event,
                   vir_domain_event=failure.vir_domain_event,
                   details=details, kind=RESOLVED)

    def body(self):
        """The JSON document POSTed to ``{endpoint}/notifications``."""
        return {'notification': {
            'type': 'VM',
            'hostname': self.hostname,
            'generated_time': self.generated_time,
            'payload': {
                'event': self.event,
                'instance_uuid': self.instance_uuid,
                'vir_domain_event': self.vir_domain_event,
            },
        }}

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        # A dict written before kinds existed has none: a failure.
        return cls(**values)


class OutcomeKind(str, enum.Enum):
    ACCEPTED = 'ACCEPTED'
    DUPLICATE = 'DUPLICATE'
    REJECTED = 'REJECTED'
    RETRY = 'RETRY'


class DeliveryOutcome(typing.NamedTuple):
    """What became of one send.

    ``status_code`` is None when no HTTP response was received.
    ``message`` is the engine's own message for 4xx/5xx answers, or the
    reason the request did not complete. ``engine_uuid`` is the engine's
    id of the notification when it accepted it.
    """

    kind: OutcomeKind
    status_code: int | None
    message: str
    engine_uuid: str | None = None

    @property
    def done(self):
        """The engine has the notification: nothing left to send."""
        return self.kind in (OutcomeKind.ACCEPTED, OutcomeKind.DUPLICATE)
