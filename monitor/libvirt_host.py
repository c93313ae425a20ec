"""The libvirt edge: one long-lived connection, domain listing, guest-ping.

Every method here blocks on libvirt; the scheduler calls them through
native threads. Connection management (open, reconnect) is only ever
driven from the scheduler's green thread, so no lock is needed to swap the
connection; worker threads only read ``self._conn``.
"""

import logging
import time
import typing

from oslo_config import cfg

from monitor import domain_xml
from monitor import ping_outcome
from monitor.ping_outcome import Outcome

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # pragma: no cover - exercised only on hosts without it
    libvirt = None
    libvirt_qemu = None

LOG = logging.getLogger(__name__)

LIBVIRT_OPTS = [
    cfg.StrOpt('connection_uri',
               default='qemu:///system',
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
    cfg.IntOpt('keepalive_count',
               default=5, min=1, max=100,
               help='Number of unanswered keepalive probes after which '
                    'libvirt closes the connection (and the monitor '
                    'reconnects). From 1 to 100. Default 5.'),
    cfg.FloatOpt('reconnect_initial_delay',
                 default=1.0, min=0.1, max=3600.0,
                 help='Seconds to wait before the first reconnection '
                      'attempt after libvirt became unreachable; doubled '
                      'after each failure. From 0.1 to 3600. Default 1.'),
    cfg.FloatOpt('reconnect_max_delay',
                 default=30.0, min=1.0, max=3600.0,
                 help='Upper bound in seconds of the delay between '
                      'reconnection attempts. From 1 to 3600: the host is '
                      'not watched while libvirt is unreachable. '
                      'Default 30.'),
]


def list_opts():
    return [('libvirt', LIBVIRT_OPTS)]


def register_opts(conf):
    conf.register_opts(LIBVIRT_OPTS, group='libvirt')


class LibvirtUnavailable(Exception):
    """libvirt cannot be reached (daemon down, socket missing...)."""


class DomainInfo(typing.NamedTuple):
    uuid: str
    name: str
    running: bool
    paused: bool
    agent: typing.Optional[domain_xml.AgentChannel]
    # Kept by libvirt in the 'crashed' state (a pvpanic device with
    # on_crash=preserve): still pinged, so that its failure is counted.
    crashed: bool = False


# virDomainState values.
_RUNNING = 1
_PAUSED = 3
_CRASHED = 6
_PMSUSPENDED = 7

_PING = '{"execute":"guest-ping"}'


class LibvirtHost:
    """A long-lived read-write libvirt connection with keepalive."""

    def __init__(self, uri, agent_channel_name, agent_channel_path_regex=None,
                 keepalive_interval=5, keepalive_count=5,
                 clock=time.monotonic):
        self.uri = uri
        self.agent_channel_name = agent_channel_name
        self.agent_channel_path_regex = agent_channel_path_regex
        self.keepalive_interval = keepalive_interval
        self.keepalive_count = keepalive_count
        self._clock = clock
        self._conn = None
        # (uuid, domain id) -> AgentChannel|None. A domain's devices only
        # change when it is restarted (new id), so its XML is parsed once
        # per run, not once per sweep.
        self._channels = {}
        # UUIDs whose XML we already complained about, to log once.
        self._bad_xml = set()

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.libvirt.connection_uri,
                   conf.monitor.agent_channel_name,
                   conf.monitor.agent_channel_path_regex,
                   conf.libvirt.keepalive_interval,
                   conf.libvirt.keepalive_count)

    # -- connection -------------------------------------------------------

    @property
    def connection(self):
        return self._conn

    def connect(self, on_close=None):
        """Open the connection; raise LibvirtUnavailable on failure.

        ``on_close(reason)`` is called from libvirt's event thread when
        the connection drops; it must only queue work.
        """
        if libvirt is None:
            raise LibvirtUnavailable('the libvirt Python binding is not '
                                     'installed')
        # libvirt prints every error to stderr by default; ours are
        # classified and logged (once) by the caller instead.
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise LibvirtUnavailable(_error_text(exc)) from None
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
            raise LibvirtUnavailable(_error_text(exc)) from None
        self._conn = conn
        return conn

    def _set_keepalive(self, conn):
        try:
            conn.setKeepAlive(self.keepalive_interval, self.keepalive_count)
        except libvirt.libvirtError as exc:
            # Drivers that run inside this process (test://) have no link
            # to keep alive and refuse keepalive as not supported.
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            LOG.debug('No keepalive on %s: %s', self.uri, _error_text(exc))

    def is_alive(self):
        conn = self._conn
        if conn is None:
            return False
        try:
            return conn.isAlive() == 1
        except libvirt.libvirtError:
            return False

    def close(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)

    # -- domains ------------------------------------------------------------

    def list_domains(self):
        """Active domains (running or paused) with their agent channel.

        Domains that vanish while being listed and domains with XML we
        cannot parse are skipped; a lost connection raises
        LibvirtUnavailable.
        """
        conn = self._require_conn()
        try:
            domains = conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as exc:
            raise LibvirtUnavailable(_error_text(exc)) from None
        result = []
        live_keys = set()
        for dom in domains:
            try:
                info = self._describe(dom, live_keys)
            except libvirt.libvirtError as exc:
                if _is_disconnect(exc):
                    raise LibvirtUnavailable(_error_text(exc)) from None
                # Vanished between listing and inspection: next sweep
                # will not see it.
                LOG.debug('Skipping domain that went away while listing: '
                          '%s', _error_text(exc))
                continue
            if info is not None:
                result.append(info)
        for key in set(self._channels) - live_keys:
            del self._channels[key]
        return result

    def _describe(self, dom, live_keys):
        uuid = dom.UUIDString()
        name = dom.name()
        state, _reason = dom.state()
        key = (uuid, dom.ID())
        live_keys.add(key)
        if key not in self._channels:
            xml = dom.XMLDesc(0)
            try:
                channel = domain_xml.find_agent_channel(
                    xml, self.agent_channel_name,
                    self.agent_channel_path_regex)
            except domain_xml.DomainXMLError as exc:
                if uuid not in self._bad_xml:
                    self._bad_xml.add(uuid)
                    LOG.warning('Domain %s (%s) is not monitored: its XML '
                                'cannot be read: %s', name, uuid, exc)
                live_keys.discard(key)
                return None
            self._channels[key] = channel
        self._bad_xml.discard(uuid)
        return DomainInfo(uuid=uuid, name=name,
                          running=state == _RUNNING,
                          paused=state in (_PAUSED, _PMSUSPENDED),
                          crashed=state == _CRASHED,
                          agent=self._channels[key])

    # -- ping ----------------------------------------------------------------

    def ping(self, uuid, timeout):
        """guest-ping one domain; never raises for libvirt errors."""
        started_at = time.time()
        t0 = self._clock()
        outcome, detail = self._ping(uuid, timeout)
        return ping_outcome.PingResult(outcome, detail, started_at,
                                       self._clock() - t0)

    def _ping(self, uuid, timeout):
        conn = self._conn
        if conn is None:
            return Outcome.DISCONNECTED, 'not connected to libvirt'
        try:
            dom = conn.lookupByUUIDString(uuid)
            reply = libvirt_qemu.qemuAgentCommand(dom, _PING,
                                                  max(1, int(timeout)), 0)
        except libvirt.libvirtError as exc:
            outcome = ping_outcome.classify_error(
                exc.get_error_code(), exc.get_error_domain())
            if outcome is Outcome.MISSED and not self.is_alive():
                # An RPC error on a dead connection is libvirt's fault,
                # not the guest's.
                outcome = Outcome.DISCONNECTED
            elif outcome is Outcome.NOT_RUNNING and _is_crashed(dom):
                # "domain is not running" because the guest panicked and
                # libvirt preserved it: as dead as a silent agent.
                return Outcome.MISSED, 'libvirt reports the guest crashed'
            return outcome, _error_text(exc)
        return ping_outcome.classify_reply(reply)

    def _require_conn(self):
        if self._conn is None:
            raise LibvirtUnavailable('not connected to libvirt')
        return self._conn


def _is_crashed(dom):
    try:
        return dom.state()[0] == _CRASHED
    except libvirt.libvirtError:
        return False


def _ignore_libvirt_error(_ctx, _error):
    pass


def _is_disconnect(exc):
    return ping_outcome.is_disconnect(exc.get_error_code(),
                                      exc.get_error_domain())


def _error_text(exc):
    message = exc.get_error_message() if hasattr(
        exc, 'get_error_message') else None
    return '%s (code %s)' % (message or exc, exc.get_error_code())


def _close_quietly(conn):
    try:
        conn.unregisterCloseCallback()
    except libvirt.libvirtError:
        pass
    try:
        conn.close()
    except libvirt.libvirtError:
        pass
