"""libvirt's event loop in a native thread, delivered to green threads.

The native thread only runs ``virEventRunDefaultImpl()``. Callbacks turn
each libvirt event into a small ``lifecycle.DomainEvent`` (or a
``ConnectionClosed``), put it on a native queue and write one byte to a
pipe; a green thread waiting on the pipe drains the queue and hands each
item to the dispatcher. Nothing in the native thread logs or touches the
monitor's state.
"""

import collections
import logging
import os
import time
import typing

from eventlet import hubs
from eventlet import patcher
from eventlet import timeout as eventlet_timeout

from monitor.errors import EventsUnavailable  # noqa: F401 (raised here)
from monitor.health import lifecycle
from monitor.virt import metadata as domain_metadata

try:
    import libvirt
except ImportError:  # pragma: no cover
    libvirt = None

LOG = logging.getLogger(__name__)

_native_threading = patcher.original('threading')
# The daemon monkey-patches os: the green read() and write() wait in the
# hub instead of raising BlockingIOError, so drain() would block for ever
# on an empty pipe and the libvirt thread would block on a full one.
_native_os = patcher.original('os')

_KIND_LIFECYCLE = 'lifecycle'
_KIND_REBOOT = 'reboot'
_KIND_AGENT = 'agent'
_KIND_WATCHDOG = lifecycle.KIND_WATCHDOG
# A domain's metadata changed (virsh metadata ... --live): its own
# monitoring settings may have. Dispatched by the service, which reads
# them again; not a lifecycle matter.
KIND_METADATA = 'metadata'


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
        # A deque, not a queue.SimpleQueue: appends and pops are atomic
        # and take no lock, whereas the monkey-patched queue module would
        # hand the native thread a green lock.
        self._items = collections.deque()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._callback_ids = []

    # -- native thread side ---------------------------------------------------

    def _put(self, item):
        self._items.append(item)
        try:
            _native_os.write(self._write_fd, b'x')
        except BlockingIOError:
            # The pipe is full, so the reader is already due to wake up.
            pass

    def _on_lifecycle(self, _conn, dom, event, detail, _opaque):
        self._put_event(dom, _KIND_LIFECYCLE, event, detail)

    def _on_reboot(self, _conn, dom, _opaque):
        self._put_event(dom, _KIND_REBOOT, 0, 0)

    def _on_agent(self, _conn, dom, state, reason, _opaque):
        self._put_event(dom, _KIND_AGENT, state, reason)

    def _on_watchdog(self, _conn, dom, action, _opaque):
        self._put_event(dom, _KIND_WATCHDOG, action, 0)
    def _on_metadata(self, _conn, dom, mtype, nsuri, _opaque):
        # Only our element: a title, a description or another tool's
        # element (Nova's, say) changes nothing here.
        if mtype != libvirt.VIR_DOMAIN_METADATA_ELEMENT or \
                nsuri != domain_metadata.NAMESPACE:
            return
        self._put_event(dom, KIND_METADATA, mtype, 0)

    def _put_event(self, dom, kind, event, detail):
        try:
            item = lifecycle.DomainEvent(dom.UUIDString(), dom.name(), kind,
                                         event, detail, self._clock())
        except Exception as exc:  # per-event boundary in libvirt's thread
            # An exception escaping a callback would be printed by libvirt
            # from its own thread; the green side logs it instead, and the
            # next listing stands in for the lost event.
            item = EventLost(kind, '%s: %s' % (type(exc).__name__, exc))
        self._put(item)

    def on_connection_closed(self, reason, conn=None):
        self._put(ConnectionClosed(reason, self._clock(), conn))

    # -- registration (called from the scheduler after each connect) --------

    def register(self, conn):
        """Subscribe to lifecycle, reboot, agent, watchdog and metadata
        events on
        ``conn``.

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
        try:
            while _native_os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        items = []
        while True:
            try:
                items.append(self._items.popleft())
            except IndexError:
                return items

    def wait(self, timeout=None):
        """Block the calling green thread until something is queued."""
        if self._items:
            return
        try:
            hubs.trampoline(self._read_fd, read=True, timeout=timeout)
        except (hubs.IOClosed, eventlet_timeout.Timeout):
            pass

    def close(self):
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
