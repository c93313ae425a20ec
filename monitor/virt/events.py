"""libvirt's event loop in a native thread, delivered to green threads,
and the one table from libvirt's event numbers to the monitor's names.

The native thread only runs ``virEventRunDefaultImpl()``. Callbacks turn
each libvirt event into a small ``lifecycle.DomainEvent`` (libvirt's
numbers translated by :func:`domain_event`), a :class:`MetadataChanged`
or a :class:`ConnectionClosed` and puts it on a
``native_queue.NativeQueue``; a green thread waiting on it takes the items
and hands each to the dispatcher. Nothing in the native thread logs or
touches the monitor's state.
"""

import time
import typing

from monitor import concurrency
from monitor.errors import EventsUnavailable
from monitor.health import lifecycle
from monitor.health.lifecycle import AgentReason
from monitor.health.lifecycle import AgentState
from monitor.health.lifecycle import CrashedDetail
from monitor.health.lifecycle import EventKind
from monitor.health.lifecycle import IOErrorAction
from monitor.health.lifecycle import IOErrorInfo
from monitor.health.lifecycle import LifecycleEvent
from monitor.health.lifecycle import StoppedDetail
from monitor.health.lifecycle import SuspendedDetail
from monitor.health.lifecycle import WatchdogAction
from monitor.virt import metadata as domain_metadata
from monitor.virt import native_queue

try:
    import libvirt
except ImportError:  # pragma: no cover
    libvirt = None

_native_threading = concurrency.original('threading')

# The callback of a metadata change, which is no lifecycle matter.
_KIND_METADATA = 'metadata'


def _by_name(prefix, ours):
    """{libvirt's number: our member} for the libvirt constants named
    ``prefix`` + a member's name: our names are libvirt's, less the
    prefix.

    A member whose constant the binding does not define (an older
    libvirt-python, which predates that detail) is left out: libvirt then
    never sends that number, and one it sends all the same is translated
    as unknown, like any number newer than the daemon.
    """
    table = {}
    for member in ours:
        number = getattr(libvirt, prefix + member.name, None)
        if number is not None:
            table[number] = member
    return table


def _translation_table():
    """{kind: {libvirt event number: (ours, {libvirt detail: ours})}}."""
    reasons = _by_name('VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_REASON_',
                       AgentReason)
    details = {
        LifecycleEvent.STOPPED: _by_name('VIR_DOMAIN_EVENT_STOPPED_',
                                         StoppedDetail),
        LifecycleEvent.CRASHED: _by_name('VIR_DOMAIN_EVENT_CRASHED_',
                                         CrashedDetail),
        LifecycleEvent.SUSPENDED: _by_name('VIR_DOMAIN_EVENT_SUSPENDED_',
                                           SuspendedDetail),
        AgentState.CONNECTED: reasons,
        AgentState.DISCONNECTED: reasons,
    }
    events = {
        EventKind.LIFECYCLE: _by_name('VIR_DOMAIN_EVENT_', LifecycleEvent),
        EventKind.AGENT: _by_name(
            'VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_', AgentState),
        EventKind.WATCHDOG: _by_name('VIR_DOMAIN_EVENT_WATCHDOG_',
                                     WatchdogAction),
        EventKind.IO_ERROR: _by_name('VIR_DOMAIN_EVENT_IO_ERROR_',
                                     IOErrorAction),
    }
    return {kind: {number: (member, details.get(member, {}))
                   for number, member in numbers.items()}
            for kind, numbers in events.items()}


_TRANSLATION = _translation_table() if libvirt is not None else {}


def domain_event(uuid, name, kind, event, detail, at):
    """The ``lifecycle.DomainEvent`` for libvirt's ``event`` and
    ``detail`` numbers of a ``kind`` of event (both 0 for a reboot), or
    None for an event number this monitor does not know (a newer libvirt):
    such an event calls for nothing. A detail it does not know becomes
    None. An I/O error's ``detail`` is already a ``lifecycle.IOErrorInfo``
    and is kept as it is."""
    if kind is EventKind.REBOOT:
        return lifecycle.DomainEvent(uuid, name, kind, None, None, at)
    known = _TRANSLATION.get(kind, {}).get(event)
    if known is None:
        return None
    ours, details = known
    if kind is EventKind.IO_ERROR:
        return lifecycle.DomainEvent(uuid, name, kind, ours, detail, at)
    return lifecycle.DomainEvent(uuid, name, kind, ours, details.get(detail),
                                 at)


class MetadataChanged(typing.NamedTuple):
    """The monitor's own metadata element of a domain changed (virsh
    metadata ... --live): its monitoring settings may have, and are read
    again."""
    uuid: str
    name: str
    at: float


class ConnectionClosed(typing.NamedTuple):
    reason: int
    at: float
    # The connection that closed: a close queued before a reconnect must
    # not tear down the new connection.
    conn: object = None


class EventLost(typing.NamedTuple):
    """A libvirt event that could not be read in the native thread."""
    kind: str
    text: str


_loop_started = False


def start_event_loop():
    """Register libvirt's default event implementation and run it.

    Must happen before the first connection is opened (keepalive and
    domain events need it). Safe to call more than once.
    """
    global _loop_started
    if _loop_started:
        return
    libvirt.virEventRegisterDefaultImpl()
    thread = _native_threading.Thread(target=_run_event_loop,
                                      name='libvirt-events', daemon=True)
    thread.start()
    _loop_started = True


def _run_event_loop():
    while True:
        libvirt.virEventRunDefaultImpl()


class EventBridge:
    """Carries events from libvirt's native thread to one green thread."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._queue = native_queue.NativeQueue()
        self._callback_ids = []

    # -- native thread side ---------------------------------------------------

    def _put(self, item):
        self._queue.put(item)

    def _on_lifecycle(self, _conn, dom, event, detail, _opaque):
        self._put_event(dom, EventKind.LIFECYCLE, event, detail)

    def _on_reboot(self, _conn, dom, _opaque):
        self._put_event(dom, EventKind.REBOOT, 0, 0)

    def _on_agent(self, _conn, dom, state, reason, _opaque):
        self._put_event(dom, EventKind.AGENT, state, reason)

    def _on_watchdog(self, _conn, dom, action, _opaque):
        self._put_event(dom, EventKind.WATCHDOG, action, 0)

    def _on_io_error(self, _conn, dom, source, device, action, reason,
                     _opaque):
        self._put_event(dom, EventKind.IO_ERROR, action,
                        IOErrorInfo(str(device or ''), str(source or ''),
                                    str(reason or '')))

    def _on_metadata(self, _conn, dom, mtype, nsuri, _opaque):
        # Only our element: a title, a description or another tool's
        # element (Nova's, say) changes nothing here.
        if mtype != libvirt.VIR_DOMAIN_METADATA_ELEMENT or \
                nsuri != domain_metadata.NAMESPACE:
            return
        self._put_event(dom, _KIND_METADATA, mtype, 0)

    def _put_event(self, dom, kind, event, detail):
        try:
            uuid, name = dom.UUIDString(), dom.name()
            if kind == _KIND_METADATA:
                item = MetadataChanged(uuid, name, self._clock())
            else:
                item = domain_event(uuid, name, kind, event, detail,
                                    self._clock())
        except Exception as exc:  # per-event boundary in libvirt's thread
            # An exception escaping a callback would be printed by libvirt
            # from its own thread; the green side logs it instead, and the
            # next listing stands in for the lost event.
            item = EventLost(getattr(kind, 'value', kind),
                             '%s: %s' % (type(exc).__name__, exc))
        if item is not None:  # None: an event unknown to this monitor
            self._put(item)

    def on_connection_closed(self, reason, conn=None):
        self._put(ConnectionClosed(reason, self._clock(), conn))

    # -- registration (by the host object, on each new connection) ----------

    def register(self, conn):
        """Subscribe to lifecycle, reboot, agent, watchdog, I/O error
        (with its reason) and metadata events on ``conn``.

        :raises EventsUnavailable: libvirt refused a subscription (the
            connection died meanwhile); none is left registered.
        """
        self._callback_ids = []
        for event_id, callback in (
                (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle),
                (libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, self._on_reboot),
                (libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
                 self._on_agent),
                (libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG, self._on_watchdog),
                (libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON,
                 self._on_io_error),
                (libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                 self._on_metadata)):
            try:
                self._callback_ids.append(conn.domainEventRegisterAny(
                    None, event_id, callback, None))
            except libvirt.libvirtError as exc:
                self.deregister(conn)
                raise EventsUnavailable(
                    'cannot subscribe to libvirt domain events (id %d): %s'
                    % (event_id, exc)) from None

    def deregister(self, conn):
        ids, self._callback_ids = self._callback_ids, []
        for callback_id in ids:
            try:
                conn.domainEventDeregisterAny(callback_id)
            except libvirt.libvirtError:
                # The connection is already gone; so are its callbacks.
                pass

    # -- green thread side ----------------------------------------------------

    def drain(self):
        """Return every queued item without waiting."""
        return self._queue.take_all()

    def wait(self, timeout=None):
        """Block the calling green thread until something is queued."""
        self._queue.wait(timeout)

    def close(self):
        self._queue.close()
