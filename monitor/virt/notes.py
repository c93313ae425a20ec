"""What the libvirt calls in native threads have to say, said by the
green side.

Under eventlet the logging module's locks are green: a native thread that
logs can take a lock a green thread holds and wedge the hub. So nothing
that runs in a native thread logs, counts a metric or touches an eventlet
object. What deserves a log line (a domain that vanished while listed,
XML we cannot read, an unexpected error for one domain) becomes a
:class:`DomainNote` appended to a deque (atomic, lock-free); the green
side calls :meth:`Notes.log` to log and count them.
"""

import collections
import logging
import typing

from monitor.virt import native_queue

LOG = logging.getLogger(__name__)

# Stages of domain_errors_total{stage}.
STAGE_LIST = 'list'
STAGE_XML = 'xml'
STAGE_PING = 'ping'
STAGES = (STAGE_LIST, STAGE_XML, STAGE_PING)
# Notes about the connection itself, not about a domain.
STAGE_CONNECT = 'connect'

# At most this many notes wait for the green side; a daemon whose green
# side stalls must not grow without bound (the oldest notes go first).
_MAX_NOTES = 10000


class DomainNote(typing.NamedTuple):
    """Something about one domain (or the connection) worth a log line,
    produced in a native thread and logged by the green side."""

    # Where it happened: one of STAGES, or STAGE_CONNECT.
    stage: str
    uuid: typing.Optional[str]
    name: typing.Optional[str]
    # What happened: an exception type name, or a condition's name
    # ('vanished', 'no_keepalive').
    kind: str
    text: str
    # An unexpected error (logged as a warning, counted in
    # domain_errors_total) rather than an expected condition (debug).
    error: bool = True
    # The first note of this kind for this domain since it was last
    # fine at this stage: the warning is logged once, repeats at debug.
    first: bool = True


class Notes:
    """Notes made in native threads, waiting for the green side."""

    def __init__(self):
        # (uuid, stage) -> kind of the error last noted, so that a domain
        # failing the same way every sweep is logged once. Single dict
        # operations are atomic under the GIL: no lock is needed between
        # the native threads of a listing and of pings.
        self._failing = {}
        self._notes = collections.deque(maxlen=_MAX_NOTES)

    # -- native threads -----------------------------------------------------

    def add(self, stage, uuid, name, kind, text, error=True):
        key = (uuid, stage)
        first = self._failing.get(key) != kind
        if error:
            self._failing[key] = kind
        self._notes.append(DomainNote(stage, uuid, name, kind, text, error,
                                      first))

    def fine(self, uuid, *stages):
        """``uuid`` went through these stages without an error: its next
        error there is news again."""
        if not self._failing:
            return  # the common case, once per ping
        for stage in stages:
            self._failing.pop((uuid, stage), None)

    def forget_all_but(self, listed):
        """Forget the errors of domains no longer listed."""
        for key in [k for k in list(self._failing) if k[0] not in listed]:
            self._failing.pop(key, None)

    # -- green side -----------------------------------------------------------

    def drain(self):
        """Every note made since the last call."""
        return native_queue.take_all(self._notes)

    def log(self, metrics=None):
        """Log and count the notes made in native threads.

        An unexpected error is a warning the first time for a domain,
        stage and kind, then debug until the domain is fine again; each
        is counted in domain_errors_total.
        """
        for note in self.drain():
            if note.stage == STAGE_CONNECT:
                LOG.debug('%s', note.text)
                continue
            if not note.error:
                LOG.debug('Domain %s (%s) %s', note.name, note.uuid,
                          note.text)
                continue
            if metrics is not None:
                metrics.domain_error(note.stage)
            level = logging.WARNING if note.first else logging.DEBUG
            if note.stage == STAGE_XML:
                LOG.log(level, 'Domain %s (%s) is not monitored: its XML '
                        'cannot be read: %s', note.name, note.uuid,
                        note.text)
            elif note.stage == STAGE_LIST:
                LOG.log(level, 'Domain %s (%s) is not monitored: listing '
                        'it raised %s: %s', note.name, note.uuid,
                        note.kind, note.text)
            else:
                LOG.log(level, 'Domain %s (%s): its ping raised %s; not '
                        'counted as a miss', note.name, note.uuid,
                        note.text)
