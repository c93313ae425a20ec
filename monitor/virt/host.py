"""The libvirt edge's host object: owns the one long-lived connection.

:class:`LibvirtHost` opens the connection (keepalive, close callback,
domain events subscribed on every new connection), rebuilds it with a
capped exponential backoff when it is lost, empties the per-domain cache
on every reconnect (so what changed while libvirt was out of sight, a
domain's ``<monitor/>`` settings included, is read again), and is the
one front the daemon lists, pings and reads settings through.

Two sides, as everywhere in the daemon:

* :meth:`LibvirtHost.ensure_connected`, :meth:`LibvirtHost.connection_lost`,
  :meth:`LibvirtHost.connection_closed` and :meth:`LibvirtHost.log_notes`
  run in the scheduler's or the dispatcher's green thread, and send
  their blocking libvirt calls to native threads (``execute``,
  ``concurrency.run_native`` by default). Only they change the
  connection, so no lock is needed to swap it.
* every other method blocks on libvirt and is called in a native thread;
  none logs (``monitor.virt.notes``). Worker threads only read the
  connection.
"""

import logging
import os
import time

from oslo_config import cfg

from monitor import concurrency
from monitor.errors import EventsUnavailable
from monitor.errors import LibvirtUnavailable
from monitor.virt import domains
from monitor.virt import fault_hook
from monitor.virt import guest_ping
from monitor.virt import notes as notes_mod
from monitor.virt.libvirt_errors import error_text

try:
    import libvirt
except ImportError:  # pragma: no cover - exercised only on hosts without it
    libvirt = None

LOG = logging.getLogger(__name__)

LIBVIRT_OPTS = [
    cfg.StrOpt('connection_uri', default='qemu:///system',
               help='libvirt URI of the hypervisor to monitor. The monitor '
                    'needs a read-write connection because guest-agent '
                    'commands are not allowed on read-only ones.\n\n'
                    'Possible values: any libvirt URI with the QEMU driver, '
                    'e.g. qemu:///system or qemu+tls://host/system.'),
    cfg.IntOpt('keepalive_interval',
               default=5, min=0, max=3600,
               help='Seconds between libvirt keepalive probes on the '
                    'connection; 0 disables keepalive. At most 3600: '
                    'libvirt takes a C int and a dead connection should be '
                    'noticed within the hour. Default 5.\n\n'
                    'Related options: keepalive_count.'),
    cfg.IntOpt('keepalive_count', default=5, min=1, max=100,
               help='Number of unanswered keepalive probes after which '
                    'libvirt closes the connection (and the monitor '
                    'reconnects). From 1 to 100. Default 5.'),
    # The backoff of ensure_connected(): each failed try doubles the wait,
    # up to the maximum.
    cfg.FloatOpt('reconnect_initial_delay',
                 help='Seconds to wait before the first reconnection '
                      'attempt after libvirt became unreachable; doubled '
                      'after each failure. From 0.1 to 3600. Default 1.',
                 default=1.0, min=0.1, max=3600.0),
    cfg.FloatOpt('reconnect_max_delay',
                 help='Upper bound in seconds of the delay between '
                      'reconnection attempts. From 1 to 3600: the host is '
                      'not watched while libvirt is unreachable. '
                      'Default 30.',
                 default=30.0, min=1.0, max=3600.0),
]


def list_opts():
    return [('libvirt', LIBVIRT_OPTS)]


def register_opts(conf):
    conf.register_opts(LIBVIRT_OPTS, group='libvirt')


_KIND_NO_KEEPALIVE = 'no_keepalive'


class LibvirtHost:
    """A long-lived read-write libvirt connection with keepalive, rebuilt
    when lost."""

    def __init__(self, uri, agent_channel_name, agent_channel_path_regex=None,
                 keepalive_interval=5, keepalive_count=5,
                 clock=time.monotonic, faulty_domain=None, events=None,
                 metrics=None, on_connected=None,
                 reconnect_initial_delay=1.0, reconnect_max_delay=30.0,
                 execute=concurrency.run_native):
        """``events``: the EventBridge subscribed on every new connection
        (None: none); ``metrics`` counts reconnects and domain errors;
        ``on_connected()`` is called in the green thread after every
        (re)connect."""
        self.uri = uri
        self.keepalive_interval = keepalive_interval
        self.keepalive_count = keepalive_count
        self.reconnect_initial_delay = reconnect_initial_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.events = events
        self.metrics = metrics
        self._on_connected = on_connected or (lambda: None)
        self._clock = clock
        self._execute = execute
        self._conn = None
        self.fault_hook = fault_hook.parse(faulty_domain)
        self._notes = notes_mod.Notes()
        self._listing = domains.DomainListing(
            self._notes, agent_channel_name, agent_channel_path_regex,
            self.fault_hook)
        self._guest_ping = guest_ping.GuestPing(self._notes, clock,
                                                self.fault_hook)
        # Whether the connection is up as far as the green side knows;
        # set by ensure_connected(), cleared by connection_lost().
        self.connected = False
        self._outage_since = None
        self._reconnect_delay = reconnect_initial_delay
        # A connection after the first one is a reconnect, for the metrics
        # (the log says "Reconnected" after a failed first attempt too).
        self._ever_connected = False

    @classmethod
    def from_conf(cls, conf, events=None, metrics=None, on_connected=None):
        return cls(conf.libvirt.connection_uri,
                   conf.monitor.agent_channel_name,
                   conf.monitor.agent_channel_path_regex,
                   conf.libvirt.keepalive_interval,
                   conf.libvirt.keepalive_count,
                   faulty_domain=os.environ.get(
                       fault_hook.FAULTY_DOMAIN_ENV) or None,
                   events=events, metrics=metrics, on_connected=on_connected,
                   reconnect_initial_delay=conf.libvirt.
                   reconnect_initial_delay,
                   reconnect_max_delay=conf.libvirt.reconnect_max_delay)

    # -- connection lifecycle (green thread) ---------------------------------

    def ensure_connected(self):
        """Connect if needed; return the seconds to wait before the next
        try (0 when connected).

        Every new connection gets the domain events subscribed and the
        per-domain cache emptied. Failed tries wait twice as long as the
        last one, at most ``reconnect_max_delay``.
        """
        if self.connected:
            return 0
        on_close = None if self.events is None else \
            self.events.on_connection_closed
        try:
            conn = self._execute(self.connect, on_close)
        except LibvirtUnavailable as exc:
            if self._outage_since is None:
                self._outage_since = self._clock()
                LOG.error('Cannot connect to libvirt at %s: %s; retrying '
                          'with backoff up to %.0f s', self.uri, exc,
                          self.reconnect_max_delay)
            delay = self._reconnect_delay
            self._reconnect_delay = min(self._reconnect_delay * 2,
                                        self.reconnect_max_delay)
            return delay
        self._listing.invalidate()
        self._subscribe(conn)
        try:
            self._on_connected()
        except Exception:
            # Not connected until it is done: the next round tries again,
            # on a new connection.
            self._execute(self.close)
            raise
        self.connected = True
        if self._ever_connected and self.metrics is not None:
            self.metrics.libvirt_reconnected()
        self._ever_connected = True
        self._reconnect_delay = self.reconnect_initial_delay
        if self._outage_since is None:
            LOG.info('Connected to libvirt at %s', self.uri)
        else:
            LOG.info('Reconnected to libvirt at %s after %.1f s',
                     self.uri, self._clock() - self._outage_since)
        self._outage_since = None
        return 0

    def _subscribe(self, conn):
        if self.events is None:
            return
        try:
            self._execute(self.events.register, conn)
        except EventsUnavailable as exc:
            # Typically libvirtd went away right after we connected: the
            # next sweep finds out and reconnects, subscribing again.
            # Until then the listings stand in for the events.
            LOG.warning('%s; relying on domain listings until the next '
                        'reconnect', exc)

    def connection_lost(self, why):
        """libvirt dropped us (close callback or a disconnect error)."""
        if self.connected:
            self.connected = False
            self._outage_since = self._clock()
            self._reconnect_delay = self.reconnect_initial_delay
            LOG.warning('Lost the libvirt connection to %s (%s); '
                        'reconnecting', self.uri, why)
            self._execute(self.close)

    def connection_closed(self, reason, conn=None):
        """libvirt's close callback fired for ``conn`` (queued by the
        event bridge)."""
        if conn is not None and conn is not self._conn:
            LOG.debug('Ignoring the close of a connection already replaced')
            return
        self.connection_lost('libvirt closed the connection, reason %d'
                             % reason)

    def log_notes(self, metrics=None):
        """Log and count what the native threads noted."""
        self._notes.log(metrics if metrics is not None else self.metrics)

    def drain_notes(self):
        """Every note made since the last call (green side)."""
        return self._notes.drain()

    # -- connection (native thread) -------------------------------------------

    @property
    def connection(self):
        return self._conn

    def connect(self, on_close=None):
        """Open the connection; raise LibvirtUnavailable on failure.

        ``on_close(reason, conn)`` is called from libvirt's event thread
        when the connection drops; it must only queue work.
        """
        if libvirt is None:
            raise LibvirtUnavailable('the libvirt Python binding is not '
                                     'installed')
        _silence_libvirt_stderr()
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise LibvirtUnavailable(error_text(exc)) from None
        if conn is None:  # very old bindings return None instead of raising
            raise LibvirtUnavailable('cannot open %s' % self.uri)
        try:
            if self.keepalive_interval > 0:
                self._set_keepalive(conn)
            if on_close is not None:
                conn.registerCloseCallback(
                    lambda _conn, reason, _opaque: on_close(reason, conn),
                    None)
        except libvirt.libvirtError as exc:
            _close_quietly(conn)
            raise LibvirtUnavailable(error_text(exc)) from None
        self._conn = conn
        return conn

    def _set_keepalive(self, conn):
        for attempt in (1, 2):
            try:
                conn.setKeepAlive(self.keepalive_interval,
                                  self.keepalive_count)
                return
            except libvirt.libvirtError as exc:
                code = exc.get_error_code()
                # The binding reads libvirt's thread-local last error
                # after the failed call returns. A garbage collection in
                # between that frees a libvirt object resets it (every
                # libvirt call does), leaving an error with no code: ask
                # once more for the real one.
                if code is None and attempt == 1:
                    continue
                # Drivers that run inside this process (test://) have no
                # link to keep alive and refuse keepalive as not
                # supported.
                if code != libvirt.VIR_ERR_NO_SUPPORT:
                    raise
                self._notes.add(notes_mod.STAGE_CONNECT, None, None,
                                _KIND_NO_KEEPALIVE,
                                'no keepalive on %s: %s'
                                % (self.uri, error_text(exc)), error=False)
                return

    def is_alive(self):
        return guest_ping.is_alive(self._conn)

    def close(self):
        """Unsubscribe the events and close the connection; harmless
        when there is none."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self.events is not None:
            self.events.deregister(conn)
        _close_quietly(conn)

    # -- domains (native thread) ----------------------------------------------

    def list_domains(self):
        """The active domains (``domains.DomainInfo``); a lost connection
        raises LibvirtUnavailable."""
        if self._conn is None:
            raise LibvirtUnavailable('not connected to libvirt')
        return self._listing.list_domains(self._conn)

    def refresh_settings(self, uuid):
        """A running domain's settings read again (its metadata changed):
        domains.SettingsRead, or None when it is gone or not connected."""
        return self._listing.refresh_settings(self._conn, uuid)

    def reread_settings(self, uuid=None):
        """Have the next listing read ``uuid``'s settings (every domain's:
        None) again, as after a reconnect. Any thread; never blocks."""
        self._listing.reread(uuid)

    def is_defined(self, uuid):
        """Whether libvirt still has domain ``uuid`` (running or not):
        True, False once it says there is no such domain, None when that
        cannot be told (not connected, another error)."""
        conn = self._conn
        if conn is None:
            return None
        try:
            conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            return None
        return True

    def ping(self, info, timeout):
        """guest-ping one domain (a DomainInfo, or a UUID); never
        raises."""
        return self._guest_ping.ping(self._conn, info, timeout)


_stderr_silenced = False


def _silence_libvirt_stderr():
    """libvirt prints every error to stderr by default; ours are
    classified and noted by the caller instead. The handler is a plain
    function with no state: libvirt may call it from any thread."""
    global _stderr_silenced
    if not _stderr_silenced:
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        _stderr_silenced = True


def _ignore_libvirt_error(_ctx, _error):
    pass


def _close_quietly(conn):
    try:
        conn.unregisterCloseCallback()
    except libvirt.libvirtError:
        pass
    try:
        conn.close()
    except libvirt.libvirtError:
        pass
