"""Maintenance pauses at run time: an operator's "leave this guest (or
this whole host) alone until then", for an agent upgrade, a backup that
freezes file systems, an OS update.

While a domain is paused (``guest-health-monitor-status pause``), the
tracker neither pings it nor notifies or recovers it, whatever libvirt
reports (see :meth:`Maintenance.holds_back`). A pause ends by itself: the
tracker asks :meth:`Maintenance.expire` at the start of every round, and
the domains it released start over in discovery, as after a start: their
agent must answer again (within the discovery timeout) before anything
counts. ``resume`` ends a pause at once, the same way.

Deadlines are kept on the monotonic clock, so a wall-clock step while the
daemon runs neither shortens nor stretches a pause. The file
(``monitor.store.maintenance``) keeps wall-clock times, the only ones the
next start understands; a pause read back never lasts longer than it was
asked for, even if the wall clock stepped back meanwhile.

:func:`answer` serves the status socket's ``pause`` and ``resume``
requests.
"""

import logging
import time

from monitor.notify import notification as notification_mod
from monitor.store import maintenance as maintenance_file
from monitor.store.maintenance import HOST

LOG = logging.getLogger(__name__)

_UNTIL = 'not pinged, notified or recovered until then'


def _when(epoch_seconds):
    return notification_mod.format_time(epoch_seconds)


def _reason(pause):
    return pause.reason or 'no reason given'


class Maintenance:
    """The pauses in force; ``file`` (a MaintenanceFile) keeps them across
    restarts."""

    def __init__(self, file=None, clock=time.time, monotonic=time.monotonic):
        self.file = file or maintenance_file.MaintenanceFile(None)
        self._clock = clock
        self._monotonic = monotonic
        # key (domain UUID or HOST) -> Pause, and its monotonic deadline.
        self._pauses = {}
        self._deadlines = {}
        now, mono = clock(), monotonic()
        for pause in self.file.load():
            # A wall clock stepped back since the pause began must not
            # stretch it: it lasts at most what was asked for.
            remaining = min(pause.until - now, pause.until - pause.since)
            self._pauses[pause.key] = pause
            self._deadlines[pause.key] = mono + remaining
            if remaining > 0:
                LOG.info('%s: maintenance kept from before the restart, '
                         'until %s (%s); %s', self._subject(pause),
                         _when(now + remaining), _reason(pause), _UNTIL)

    @classmethod
    def from_conf(cls, conf, clock=time.time):
        return cls(maintenance_file.MaintenanceFile.from_conf(conf), clock)

    # -- what the tracker asks ----------------------------------------------

    def covers(self, uuid):
        """True while ``uuid`` (or the whole host) is paused."""
        return HOST in self._pauses or uuid in self._pauses

    def holds_back(self, record, failure):
        """True when ``failure``, one libvirt reported for ``record`` (a
        crash, a QEMU that ended; None: no failure), is not notified
        because of maintenance; says so.

        Maintenance is when an operator expects the guest to misbehave:
        an OS update may panic or reset it, a backup tool may stop it.
        Reporting it would have the HA engine evacuate or restart a guest
        someone is working on, which is what the pause is for. The event
        is still applied (a stopped domain is forgotten, a rebooted one
        re-armed), and a guest that runs when the pause ends must answer
        again before it counts as healthy.
        """
        pause = None if failure is None else self.of(record.uuid)
        if pause is None:
            return False
        LOG.info('Domain %s (%s): %s; not notified: under maintenance '
                 'until %s', record.name, record.uuid, failure,
                 _when(self._until(pause)))
        return True

    def expire(self):
        """End the pauses whose time is up; return them."""
        mono = self._monotonic()
        ended = [self._pauses.pop(key) for key, deadline
                 in list(self._deadlines.items()) if deadline <= mono]
        for pause in ended:
            del self._deadlines[pause.key]
            LOG.info('%s: maintenance ended (it was until %s, %s); waiting '
                     'for the guest agent to answer', self._subject(pause),
                     _when(pause.until), _reason(pause))
        if ended:
            self._save()
        return ended

    def released(self, pauses, records):
        """Of ``records()``, those that the ended ``pauses`` covered and no
        pause still covers; ``records`` is only called when a pause ended
        (a round looks every time, and pauses rarely end)."""
        if not pauses:
            return []
        keys = {pause.key for pause in pauses}
        return [record for record in records()
                if (HOST in keys or record.uuid in keys)
                and not self.covers(record.uuid)]

    # -- what the operator asks -----------------------------------------------

    def pause(self, key, name, seconds, reason=''):
        """Pause ``key`` (a domain UUID, or HOST) for ``seconds``, in
        place of any pause it had; return the Pause.

        :raises ValueError: bad seconds or reason.
        """
        seconds = maintenance_file.check_seconds(seconds)
        reason = maintenance_file.check_reason(reason)
        now = self._clock()
        pause = maintenance_file.Pause(key, name, now, now + seconds,
                                       reason)
        self._pauses[key] = pause
        self._deadlines[key] = self._monotonic() + seconds
        LOG.info('%s: maintenance until %s (%s); %s', self._subject(pause),
                 _when(pause.until), _reason(pause), _UNTIL)
        self._save()
        return pause

    def resume(self, keys):
        """Lift the pauses of ``keys`` at once; return those there were."""
        lifted = [self._pauses.pop(key) for key in keys
                  if key in self._pauses]
        for pause in lifted:
            del self._deadlines[pause.key]
            LOG.info('%s: maintenance lifted by the operator (it was until '
                     '%s, %s); waiting for the guest agent to answer',
                     self._subject(pause), _when(pause.until),
                     _reason(pause))
        if lifted:
            self._save()
        return lifted

    # -- what is shown ------------------------------------------------------

    def all(self):
        return list(self._pauses.values())

    def of(self, uuid):
        """The pause covering ``uuid`` that ends last, or None."""
        covering = [self._pauses[key] for key in (uuid, HOST)
                    if key in self._pauses]
        if not covering:
            return None
        return max(covering, key=self._until)

    def view(self, pause):
        """A pause as the status document shows it."""
        return {
            'all': pause.host_wide,
            'uuid': None if pause.host_wide else pause.key,
            'name': None if pause.host_wide else pause.name,
            'since': _when(pause.since),
            'until': _when(self._until(pause)),
            'reason': pause.reason,
        }

    def _until(self, pause):
        """When ``pause`` ends, on today's wall clock (one that ended:
        when it was to end)."""
        if self._pauses.get(pause.key) != pause:
            return pause.until
        return self._clock() + self._deadlines[pause.key] - self._monotonic()

    @staticmethod
    def _subject(pause):
        if pause.host_wide:
            return 'Every domain on this host'
        return 'Domain %s (%s)' % (pause.name, pause.key)

    def _save(self):
        try:
            self.file.save(self._pauses.values())
        except OSError as exc:
            LOG.error('Cannot write the maintenance pauses %s (%s); they '
                      'hold until the daemon stops', self.file.path, exc)


# -- the status socket's requests ---------------------------------------------


def answer(tracker, request):
    """The answer to a ``pause`` or ``resume`` request from the status
    socket (a dict): ``{'paused': [...]}``, ``{'resumed': [...]}``, or
    ``{'refused': why}``.

    ``domain`` is a name or a UUID of a domain the tracker monitors (or
    one paused already); ``all`` means the whole host.
    """
    maintenance = tracker.maintenance
    command = request.get('command')
    if command not in ('pause', 'resume'):
        return {'refused': 'unknown command %r' % (command,)}
    if bool(request.get('all')) == (request.get('domain') is not None):
        return {'refused': 'name one domain, or all'}
    if request.get('all'):
        key, name = HOST, ''
    else:
        found = _find(request['domain'], tracker)
        if found is None:
            return {'refused': 'no domain named or with UUID %r is '
                               'monitored on this host'
                               % (request['domain'],)}
        key, name = found
    if command == 'pause':
        try:
            pause = maintenance.pause(key, name, request.get('seconds'),
                                      request.get('reason') or '')
        except ValueError as exc:
            return {'refused': str(exc)}
        return {'paused': [maintenance.view(pause)]}
    if key == HOST:
        # Everything back to monitoring: the host's pause and every
        # domain's.
        keys = [pause.key for pause in maintenance.all()]
    elif maintenance.covers(key) and key not in {
            pause.key for pause in maintenance.all()}:
        # Only the host's pause holds it; lifting that is --all's.
        return {'refused': 'domain %s (%s) is paused with every domain on '
                           'this host; "resume --all" lifts that'
                           % (name, key)}
    else:
        keys = [key]
    lifted = maintenance.resume(keys)
    tracker.maintenance_over(lifted)
    still = None if key == HOST else maintenance.of(key)
    return {'resumed': [maintenance.view(pause) for pause in lifted],
            'still_paused': None if still is None else maintenance.view(still)}


def _find(text, tracker):
    """(UUID, name) of the domain ``text`` (a UUID or a name) names: a
    monitored one first, else one paused while it is not running."""
    if not isinstance(text, str):
        return None
    monitored = [(record.uuid, record.name)
                 for record in tracker.store.all()]
    paused = [(pause.key, pause.name) for pause in tracker.maintenance.all()
              if not pause.host_wide]
    for known in (monitored, paused):
        for uuid, name in known:
            if uuid == text.lower():
                return uuid, name
        named = [(uuid, name) for uuid, name in known if name == text]
        if len(named) == 1:
            return named[0]
    return None
