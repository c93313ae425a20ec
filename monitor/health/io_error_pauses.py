"""Guests paused on a disk I/O error: when the pause becomes a failure.

A disk whose ``error_policy`` (or ``rerror_policy``) is ``stop`` or
``enospace`` makes QEMU pause the whole guest on a failed write or read;
libvirt says so with a suspended event (detail I/O error) and keeps the
domain paused with reason I/O error. Such a guest serves nobody, yet its
agent's silence is no miss (a paused guest is not pinged). A storage blip
the operator resumes the guest after is no failure either, so the pause
is reported only once it has lasted ``[monitor] io_error_grace`` seconds,
once per pause. A pause by a client (``virsh suspend``, Nova's pause) is
never reported.

Plain code, times passed in: the tracker tells :class:`IOErrorPauses`
what it saw (:meth:`~IOErrorPauses.saw` for events,
:meth:`~IOErrorPauses.listed` for the listing) and asks which pauses are
:meth:`~IOErrorPauses.due`. Which disk failed, and how, comes from
libvirt's io-error-reason event, which precedes the pause, or from the
listing (the domain's disk errors) when the pause predates the monitor.
"""

import typing

from oslo_config import cfg

from monitor.health import recovery_policy as recovery
from monitor.health.lifecycle import EventKind
from monitor.health.lifecycle import IOErrorAction
from monitor.health.lifecycle import LifecycleEvent
from monitor.health.lifecycle import SuspendedDetail

MONITOR_OPTS = [
    cfg.IntOpt(
        'io_error_grace',
        default=60, min=0, max=86400,
        help="""
Seconds a guest may stay paused on a disk I/O error (a disk with
error_policy='stop' or 'enospace' that failed) before it is reported as
failed; 0 reports it at once. A guest resumed within the grace (the storage
came back, an operator resumed it) is not reported. Each pause is reported
once, and recovered according to [recovery] io_error_action. A guest paused
by a client (virsh suspend, Nova's pause) is never reported. From 0 to
86400. Default 60.
"""),
]

RECOVERY_OPTS = [
    cfg.StrOpt(
        'io_error_action',
        default=recovery.NONE,
        choices=[
            (recovery.NONE, 'only notify; the guest stays paused'),
            (recovery.RESUME, 'resume the guest: worth it when the storage '
                              'fails for moments (a full thin pool that is '
                              'extended, a network disk that comes back)'),
            (recovery.RESTART, 'destroy, then start the domain again; '
                               'persistent domains only'),
        ],
        help="""
What the monitor itself does to a guest reported for a pause on a disk I/O
error that outlasted [monitor] io_error_grace, after capturing evidence and
before notifying. Counted against the same per-domain budget as [recovery]
action ([recovery] max_actions in [recovery] window). A guest resumed on a
disk that still fails pauses again at its next write and is reported again
after the grace, until the budget is spent. Default none.

Ignored with [notifier] driver = masakari: the HA engine recovers the VM.
"""),
]


def list_opts():
    return [('monitor', MONITOR_OPTS), (recovery.GROUP, RECOVERY_OPTS)]


def register_opts(conf):
    conf.register_opts(MONITOR_OPTS, group='monitor')
    conf.register_opts(RECOVERY_OPTS, group=recovery.GROUP)


class Pause(typing.NamedTuple):
    uuid: str
    name: str
    # Epoch seconds: the pause event, or the listing that first showed it.
    since: float
    # Which disk failed and how (lifecycle.IOErrorInfo.describe(), or the
    # listing's disk errors); None when libvirt did not say.
    disk: typing.Optional[str]
    reported: bool = False

    def reason(self, now):
        """The failure, as the notification and the log say it."""
        return ('guest paused on a disk I/O error for %d s (%s)'
                % (max(0, now - self.since),
                   self.disk or 'libvirt did not say which disk'))


class IOErrorPauses:
    """The domains paused on an I/O error, and when each is due."""

    def __init__(self, grace=60, action=recovery.NONE):
        self.grace = grace
        # [recovery] io_error_action: the recovery of a reported pause.
        self.action = action
        self._pauses = {}
        # uuid -> the last disk error libvirt reported, for the pause that
        # follows it.
        self._errors = {}

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.monitor.io_error_grace,
                   conf[recovery.GROUP].io_error_action)

    def saw(self, event):
        """Take in a domain event; returns the :class:`Pause` it started,
        else None."""
        if event.kind is EventKind.IO_ERROR:
            if event.event is IOErrorAction.PAUSE and event.detail:
                self._errors[event.uuid] = event.detail.describe()
            return None
        if event.kind is not EventKind.LIFECYCLE:
            return None
        if event.event is LifecycleEvent.SUSPENDED:
            if event.detail is SuspendedDetail.IOERROR:
                return self.paused(event.uuid, event.name, event.at)
            return None
        if event.event in (LifecycleEvent.RESUMED, LifecycleEvent.STARTED,
                           LifecycleEvent.STOPPED,
                           LifecycleEvent.UNDEFINED):
            self.ended(event.uuid)
        return None

    def listed(self, uuid, name, now, io_error):
        """The listing's view of a domain: ``io_error`` is None unless
        it is paused on an I/O error, else its disk errors ('' when
        libvirt named none). Catches a pause whose event was missed."""
        if io_error is None:
            # Paused by a client now, or running again: the pause is over
            # (a pause whose event is still queued is started by it).
            self._pauses.pop(uuid, None)
            return None
        if uuid in self._pauses:
            return None
        return self.paused(uuid, name, now, io_error or None)

    def paused(self, uuid, name, at, disk=None):
        """A pause on an I/O error began at ``at``; returns the new
        :class:`Pause`, or None when the domain's pause was known."""
        if uuid in self._pauses:
            return None
        pause = Pause(uuid, name, at, disk or self._errors.get(uuid))
        self._pauses[uuid] = pause
        return pause

    def ended(self, uuid):
        """The domain runs again or is gone."""
        self._pauses.pop(uuid, None)
        self._errors.pop(uuid, None)

    def keep_only(self, uuids):
        for uuid in set(self._pauses) - set(uuids):
            del self._pauses[uuid]
        for uuid in set(self._errors) - set(uuids):
            del self._errors[uuid]

    def due(self, now):
        """The pauses that outlasted the grace and were not reported yet;
        each is returned once (marked reported)."""
        found = []
        for uuid, pause in list(self._pauses.items()):
            if pause.reported or now - pause.since < self.grace:
                continue
            self._pauses[uuid] = pause._replace(reported=True)
            found.append(pause)
        return found

    def __contains__(self, uuid):
        return uuid in self._pauses
