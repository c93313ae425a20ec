"""The guest-ping: one agent command per domain, its outcome typed.

Runs in native threads, many at once: nothing here logs (an unexpected
error becomes a note, ``monitor.virt.notes``). Whatever is raised while
pinging one domain is that domain's problem alone: the ping returns
``Outcome.ERROR`` and never raises.

qemu-ga answers guest-ping while the guest's filesystems are frozen (it
refuses most other commands then), so an answered ping does not tell a
frozen guest. After an answered ping the guest's freeze status is asked
too (guest-fsfreeze-status, one of the commands a frozen agent still
answers): every ``FREEZE_CHECK_INTERVAL`` seconds per domain, and at every
ping while it was last seen frozen. An agent that cannot tell (command
disabled, Windows without VSS, no answer) leaves it unknown: the ping was
answered all the same.
"""

import time

from monitor.health import ping_outcome
from monitor.health.ping_outcome import Outcome
from monitor.virt import domains
from monitor.virt import fault_hook as fault_hook_mod
from monitor.virt import libvirt_errors
from monitor.virt import notes as notes_mod
from monitor.virt.libvirt_errors import error_text
from monitor.virt.libvirt_errors import exception_text

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # pragma: no cover - exercised only on hosts without it
    libvirt = None
    libvirt_qemu = None

_PING = '{"execute":"guest-ping"}'
_FREEZE_STATUS = '{"execute":"guest-fsfreeze-status"}'
# Seconds between two freeze-status checks of a domain that was not frozen:
# a small share of the frozen grace, at the cost of one agent call per
# domain per 30 s (about one per three pings at Masakari's 10 s interval).
FREEZE_CHECK_INTERVAL = 30.0
# Domains remembered for the check; beyond this, those not pinged for a
# while are dropped (they were undefined or migrated away), in one pass at
# most every FREEZE_CHECK_INTERVAL: a pass per ping would cost a scan of
# every domain per ping on a host with more domains than this.
_FREEZE_MEMORY = 8192


class GuestPing:
    """Pings guests through a connection the caller hands in."""

    def __init__(self, notes, clock=time.monotonic,
                 fault_hook=fault_hook_mod.FaultHook()):
        self._notes = notes
        self._clock = clock
        self._fault_hook = fault_hook
        # uuid -> (clock seconds of the last freeze check, or of the first
        # ping; frozen then). Native threads share it: only single dict
        # operations, atomic under the GIL.
        self._freeze_seen = {}
        self._pruned_at = None

    def ping(self, conn, info, timeout):
        """guest-ping one domain; never raises.

        :param conn: the connection, None when there is none.
        :param info: the DomainInfo from the listing, whose domain object
            is reused; a bare UUID string is looked up first.
        """
        started_at = time.time()
        t0 = self._clock()
        uuid = getattr(info, 'uuid', info)
        looked_up = []
        frozen = None
        try:
            outcome, detail = self._ping(conn, info, timeout, looked_up)
            if outcome is Outcome.OK:
                frozen = self._frozen(getattr(info, 'dom', None) or
                                      (looked_up or [None])[0], uuid, timeout)
        except Exception as exc:  # per-domain boundary: this domain only
            # Not the guest's miss: a reply we failed to handle or a
            # binding that raised says nothing about the guest, and
            # counting it would report healthy guests.
            kind = type(exc).__name__
            detail = '%s: %s' % (kind, exception_text(exc))
            name = getattr(info, 'name', None)
            if name is None and looked_up:
                name = _name_of(looked_up[0])
            self._notes.add(notes_mod.STAGE_PING, uuid, name, kind, detail)
            return ping_outcome.PingResult(Outcome.ERROR, detail, started_at,
                                           self._clock() - t0, kind)
        self._notes.fine(uuid, notes_mod.STAGE_PING)
        return ping_outcome.PingResult(outcome, detail, started_at,
                                       self._clock() - t0, frozen=frozen)

    def _frozen(self, dom, uuid, timeout):
        """Whether the guest's filesystems are frozen, when it is time to
        ask; None when not asked or the agent cannot tell."""
        now = self._clock()
        seen = self._freeze_seen.get(uuid)
        if seen is None:
            self._remember(uuid, (now, False))
            return None
        checked_at, was_frozen = seen
        if dom is None or not (was_frozen or
                               now - checked_at >= FREEZE_CHECK_INTERVAL):
            return None
        frozen = freeze_status(dom, timeout)
        self._remember(uuid, (now, bool(frozen)))
        return frozen

    def _remember(self, uuid, seen):
        now = self._clock()
        if len(self._freeze_seen) >= _FREEZE_MEMORY and (
                self._pruned_at is None
                or now - self._pruned_at >= FREEZE_CHECK_INTERVAL):
            self._pruned_at = now
            oldest = now - 10 * FREEZE_CHECK_INTERVAL
            for key, (checked_at, _frozen) in list(
                    self._freeze_seen.items()):
                if checked_at < oldest:
                    self._freeze_seen.pop(key, None)
        self._freeze_seen[uuid] = seen

    def _ping(self, conn, info, timeout, looked_up):
        if conn is None:
            return Outcome.DISCONNECTED, 'not connected to libvirt'
        dom = None
        try:
            dom = getattr(info, 'dom', None)
            if dom is None:
                dom = conn.lookupByUUIDString(getattr(info, 'uuid', info))
                looked_up.append(dom)
            if (self._fault_hook.stage == notes_mod.STAGE_PING
                    and dom.name() == self._fault_hook.name):
                raise self._fault_hook.fault()
            reply = libvirt_qemu.qemuAgentCommand(dom, _PING,
                                                  max(1, int(timeout)), 0)
        except libvirt.libvirtError as exc:
            outcome = libvirt_errors.classify_error(
                exc.get_error_code(), exc.get_error_domain())
            if outcome is Outcome.MISSED and not is_alive(conn):
                # An RPC error on a dead connection is libvirt's fault,
                # not the guest's.
                outcome = Outcome.DISCONNECTED
            elif (outcome is Outcome.NOT_RUNNING and dom is not None
                  and _is_crashed(dom)):
                # "domain is not running" because the guest panicked and
                # libvirt preserved it: as dead as a silent agent.
                return Outcome.MISSED, 'libvirt reports the guest crashed'
            return outcome, error_text(exc)
        return ping_outcome.classify_reply(reply)


def is_alive(conn):
    """Whether ``conn`` (None: no connection) still answers."""
    if conn is None:
        return False
    try:
        return conn.isAlive() == 1
    except libvirt.libvirtError:
        return False


def _name_of(dom):
    try:
        return dom.name()
    except Exception:  # only for a log line about an error already caught
        return None


def _is_crashed(dom):
    try:
        return dom.state()[0] == domains.CRASHED
    except libvirt.libvirtError:
        return False


def freeze_status(dom, timeout):
    """True when qemu-ga says the guest's filesystems are frozen, False
    when thawed, None when it cannot tell."""
    try:
        reply = libvirt_qemu.qemuAgentCommand(dom, _FREEZE_STATUS,
                                              max(1, int(timeout)), 0)
    except libvirt.libvirtError:
        return None
    status = ping_outcome.freeze_status_of(reply)
    return None if status is None else status == 'frozen'
