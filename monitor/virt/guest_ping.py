"""The guest-ping: one agent command per domain, its outcome typed.

Runs in native threads, many at once: nothing here logs (an unexpected
error becomes a note, ``monitor.virt.notes``). Whatever is raised while
pinging one domain is that domain's problem alone: the ping returns
``Outcome.ERROR`` and never raises.
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


class GuestPing:
    """Pings guests through a connection the caller hands in."""

    def __init__(self, notes, clock=time.monotonic,
                 fault_hook=fault_hook_mod.FaultHook()):
        self._notes = notes
        self._clock = clock
        self._fault_hook = fault_hook

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
        try:
            outcome, detail = self._ping(conn, info, timeout, looked_up)
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
                                       self._clock() - t0)

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
