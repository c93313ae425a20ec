"""The libvirt edge: one long-lived connection, domain listing, guest-ping.

Every method here except :meth:`LibvirtHost.log_notes` blocks on libvirt;
the scheduler calls them through native threads. Connection management
(open, reconnect) is only ever driven from the scheduler's green thread, so
no lock is needed to swap the connection; worker threads only read
``self._conn``.

Under eventlet the logging module's locks are green: a native thread that
logs can take a lock a green thread holds and wedge the hub. So nothing
here that runs in a native thread logs, counts a metric or touches an
eventlet object. What deserves a log line (a domain that vanished while
listed, XML we cannot read, an unexpected error for one domain) becomes a
:class:`DomainNote` appended to a deque (atomic, lock-free); the green side
calls :meth:`LibvirtHost.log_notes` to log and count them.

Whatever is raised for one domain, while listing it or pinging it, is that
domain's problem alone: the listing skips it and the ping returns
``Outcome.ERROR``; every other domain is listed and pinged as usual.
"""

import collections
import dataclasses
import logging
import os
import time
import typing

from oslo_config import cfg

from monitor.errors import LibvirtUnavailable  # noqa: F401 (raised here)
from monitor.health import ping_outcome
from monitor.health.ping_outcome import Outcome
from monitor.virt import domain_xml
from monitor.virt import metadata as domain_metadata

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


@dataclasses.dataclass(frozen=True)
class DomainInfo:
    uuid: str
    name: str
    running: bool
    paused: bool
    agent: typing.Optional[domain_xml.AgentChannel]
    # Kept by libvirt in the 'crashed' state (a pvpanic device with
    # on_crash=preserve): still pinged, so that its failure is counted.
    crashed: bool = False
    # The domain's own monitoring settings, from the <monitor/> element
    # of its metadata (defaults when it has none), and why an element
    # present was ignored (None when it was read or absent).
    settings: domain_metadata.DomainSettings = domain_metadata.DEFAULTS
    settings_error: typing.Optional[str] = None
    # The libvirt domain object from the listing, reused by ping() so
    # that a ping costs one libvirt call, not a lookup and a call. Not
    # part of the value: two listings of one domain compare equal.
    dom: typing.Any = dataclasses.field(default=None, compare=False,
                                        repr=False)


class DomainNote(typing.NamedTuple):
    """Something about one domain (or the connection) worth a log line,
    produced in a native thread and logged by the green side."""

    # Where it happened: one of STAGES, or 'connect'.
    stage: str
    uuid: typing.Optional[str]
    name: typing.Optional[str]
    # What happened: an exception type name, or one of the _KIND_ names.
    kind: str
    text: str
    # An unexpected error (logged as a warning, counted in
    # domain_errors_total) rather than an expected condition (debug).
    error: bool = True
    # The first note of this kind for this domain since it was last
    # fine at this stage: the warning is logged once, repeats at debug.
    first: bool = True


# Stages of domain_errors_total{stage}.
STAGE_LIST = 'list'
STAGE_XML = 'xml'
STAGE_PING = 'ping'
STAGES = (STAGE_LIST, STAGE_XML, STAGE_PING)

_KIND_VANISHED = 'vanished'
_KIND_NO_KEEPALIVE = 'no_keepalive'

# At most this many notes wait for the green side; a daemon whose green
# side stalls must not grow without bound (the oldest notes go first).
_MAX_NOTES = 10000

# Test hook: the named domain's libvirt answers raise an unexpected
# exception, at the stage given after a colon ('ping', the default, or
# 'list'). Read once at construction. The integration tests use it to
# show that one hostile domain cannot blind the monitor to the others;
# it has no use in production.
FAULTY_DOMAIN_ENV = 'GUEST_HEALTH_MONITOR_FAULTY_DOMAIN'

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
                 clock=time.monotonic, faulty_domain=None):
        self.uri = uri
        self.agent_channel_name = agent_channel_name
        self.agent_channel_path_regex = agent_channel_path_regex
        self.keepalive_interval = keepalive_interval
        self.keepalive_count = keepalive_count
        self._clock = clock
        self._conn = None
        # (uuid, domain id) -> (AgentChannel|None, domain_metadata.Parsed).
        # A domain's devices only change when it is restarted (new id),
        # so its XML is parsed once per run, not once per sweep; its
        # metadata may change while it runs, and refresh_settings() reads
        # it again when libvirt says so.
        self._channels = {}
        # (uuid, stage) -> kind of the error last noted, so that a domain
        # failing the same way every sweep is logged once. Single dict
        # operations are atomic under the GIL: no lock is needed between
        # the native threads of a listing and of pings.
        self._failing = {}
        self._notes = collections.deque(maxlen=_MAX_NOTES)
        self._faulty_name, self._faulty_stage = _parse_fault_hook(
            faulty_domain)

    @classmethod
    def from_conf(cls, conf):
        return cls(conf.libvirt.connection_uri,
                   conf.monitor.agent_channel_name,
                   conf.monitor.agent_channel_path_regex,
                   conf.libvirt.keepalive_interval,
                   conf.libvirt.keepalive_count,
                   faulty_domain=os.environ.get(FAULTY_DOMAIN_ENV) or None)

    # -- connection -------------------------------------------------------

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
            self._note('connect', None, None, _KIND_NO_KEEPALIVE,
                       'no keepalive on %s: %s' % (self.uri,
                                                   _error_text(exc)),
                       error=False)

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

        One libvirt call lists every active domain with its state;
        each domain's XML is read once per run of it. Domains that vanish
        while being listed, domains with XML we cannot parse and domains
        for which anything else is raised are skipped (and noted); a
        lost connection raises LibvirtUnavailable.
        """
        conn = self._require_conn()
        try:
            listing = self._list_with_states(conn)
        except libvirt.libvirtError as exc:
            raise LibvirtUnavailable(_error_text(exc)) from None
        result = []
        live_keys = set()
        listed = set()
        for dom, state in listing:
            uuid = name = None
            try:
                uuid = dom.UUIDString()
                listed.add(uuid)
                name = dom.name()
                info = self._describe(dom, uuid, name, state, live_keys)
            except libvirt.libvirtError as exc:
                if _is_disconnect(exc):
                    raise LibvirtUnavailable(_error_text(exc)) from None
                # Vanished between listing and inspection: the next
                # listing will not have it.
                self._note(STAGE_LIST, uuid, name, _KIND_VANISHED,
                           'went away while being listed: %s'
                           % _error_text(exc), error=False)
                continue
            except _XMLUnreadable as exc:
                self._note(STAGE_XML, uuid, name, exc.kind, exc.text)
                continue
            except Exception as exc:  # per-domain boundary: skip this one
                # A domain that cannot even tell its UUID is noted under
                # None, kept while listings keep meeting such a domain.
                listed.add(uuid)
                self._note(STAGE_LIST, uuid, name, type(exc).__name__,
                           _exception_text(exc))
                continue
            if info is not None:
                self._fine(uuid, STAGE_LIST, STAGE_XML)
                result.append(info)
        for key in set(self._channels) - live_keys:
            del self._channels[key]
        self._forget_failures(listed)
        return result

    def _list_with_states(self, conn):
        """[(virDomain, state)] of the active domains, in one call."""
        try:
            stats = conn.getAllDomainStats(
                libvirt.VIR_DOMAIN_STATS_STATE,
                libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            # A driver without bulk stats: ask each domain (N calls).
            return [(dom, None) for dom in conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
        return [(dom, record.get('state.state')) for dom, record in stats]

    def _describe(self, dom, uuid, name, state, live_keys):
        if state is None:
            state, _reason = dom.state()
        if self._faulty_stage == STAGE_LIST and name == self._faulty_name:
            raise _hook_fault()
        key = (uuid, dom.ID())
        if key not in self._channels:
            xml = dom.XMLDesc(0)
            self._channels[key] = (self._read_channel(xml),
                                   _read_settings(xml))
        live_keys.add(key)
        channel, parsed = self._channels[key]
        return DomainInfo(uuid=uuid, name=name,
                          running=state == _RUNNING,
                          paused=state in (_PAUSED, _PMSUSPENDED),
                          crashed=state == _CRASHED,
                          agent=channel, settings=parsed.settings,
                          settings_error=parsed.error, dom=dom)

    def refresh_settings(self, uuid):
        """Read a running domain's settings again (its metadata changed);
        returns domain_metadata.Parsed, or None when the domain is gone or
        not connected. Native thread; never raises for libvirt errors."""
        conn = self._conn
        if conn is None:
            return None
        try:
            dom = conn.lookupByUUIDString(uuid)
            key = (uuid, dom.ID())
            xml = dom.XMLDesc(0)
        except libvirt.libvirtError:
            return None
        parsed = _read_settings(xml)
        held = self._channels.get(key)
        if held is not None:
            self._channels[key] = (held[0], parsed)
        return parsed

    def _read_channel(self, xml):
        try:
            return domain_xml.find_agent_channel(
                xml, self.agent_channel_name, self.agent_channel_path_regex)
        except domain_xml.DomainXMLError as exc:
            raise _XMLUnreadable('DomainXMLError', str(exc)) from None
        except Exception as exc:  # lxml or the regex, on hostile XML
            raise _XMLUnreadable(type(exc).__name__,
                                 _exception_text(exc)) from None

    # -- ping ----------------------------------------------------------------

    def ping(self, info, timeout):
        """guest-ping one domain; never raises.

        :param info: the DomainInfo from the listing, whose domain object
            is reused; a bare UUID string is looked up first.
        """
        started_at = time.time()
        t0 = self._clock()
        uuid = getattr(info, 'uuid', info)
        looked_up = []
        try:
            outcome, detail = self._ping(info, timeout, looked_up)
        except Exception as exc:  # per-domain boundary: this domain only
            # Not the guest's miss: a reply we failed to handle or a
            # binding that raised says nothing about the guest, and
            # counting it would report healthy guests.
            kind = type(exc).__name__
            detail = '%s: %s' % (kind, _exception_text(exc))
            name = getattr(info, 'name', None)
            if name is None and looked_up:
                name = _name_of(looked_up[0])
            self._note(STAGE_PING, uuid, name, kind, detail)
            return ping_outcome.PingResult(Outcome.ERROR, detail, started_at,
                                           self._clock() - t0, kind)
        self._fine(uuid, STAGE_PING)
        return ping_outcome.PingResult(outcome, detail, started_at,
                                       self._clock() - t0)

    def _ping(self, info, timeout, looked_up):
        conn = self._conn
        if conn is None:
            return Outcome.DISCONNECTED, 'not connected to libvirt'
        dom = None
        try:
            dom = getattr(info, 'dom', None)
            if dom is None:
                dom = conn.lookupByUUIDString(getattr(info, 'uuid', info))
                looked_up.append(dom)
            if (self._faulty_stage == STAGE_PING
                    and dom.name() == self._faulty_name):
                raise _hook_fault()
            reply = libvirt_qemu.qemuAgentCommand(dom, _PING,
                                                  max(1, int(timeout)), 0)
        except libvirt.libvirtError as exc:
            outcome = ping_outcome.classify_error(
                exc.get_error_code(), exc.get_error_domain())
            if outcome is Outcome.MISSED and not self.is_alive():
                # An RPC error on a dead connection is libvirt's fault,
                # not the guest's.
                outcome = Outcome.DISCONNECTED
            elif (outcome is Outcome.NOT_RUNNING and dom is not None
                  and _is_crashed(dom)):
                # "domain is not running" because the guest panicked and
                # libvirt preserved it: as dead as a silent agent.
                return Outcome.MISSED, 'libvirt reports the guest crashed'
            return outcome, _error_text(exc)
        return ping_outcome.classify_reply(reply)

    def _require_conn(self):
        if self._conn is None:
            raise LibvirtUnavailable('not connected to libvirt')
        return self._conn

    # -- notes: made in native threads, logged by the green side ----------

    def _note(self, stage, uuid, name, kind, text, error=True):
        key = (uuid, stage)
        first = self._failing.get(key) != kind
        if error:
            self._failing[key] = kind
        self._notes.append(DomainNote(stage, uuid, name, kind, text, error,
                                      first))

    def _fine(self, uuid, *stages):
        """``uuid`` went through these stages without an error: its next
        error there is news again."""
        for stage in stages:
            self._failing.pop((uuid, stage), None)

    def _forget_failures(self, listed):
        for key in [k for k in list(self._failing) if k[0] not in listed]:
            self._failing.pop(key, None)

    def drain_notes(self):
        """Every note made since the last call (green side)."""
        notes = []
        while True:
            try:
                notes.append(self._notes.popleft())
            except IndexError:
                return notes

    def log_notes(self, metrics=None):
        """Log and count the notes made in native threads.

        Called from a green thread only. An unexpected error is a warning
        the first time for a domain, stage and kind, then debug until the
        domain is fine again; each is counted in domain_errors_total.
        """
        for note in self.drain_notes():
            if note.stage == 'connect':
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


def _read_settings(xml):
    try:
        return domain_metadata.settings_from_domain_xml(xml)
    except ValueError as exc:
        return domain_metadata.Parsed(domain_metadata.DEFAULTS, str(exc))


class _XMLUnreadable(Exception):
    def __init__(self, kind, text):
        super().__init__(text)
        self.kind = kind
        self.text = text


def _parse_fault_hook(value):
    if not value:
        return None, None
    name, _sep, stage = value.partition(':')
    stage = stage or STAGE_PING
    if stage not in (STAGE_LIST, STAGE_PING):
        raise ValueError('%s: unknown stage %r (list or ping)'
                         % (FAULTY_DOMAIN_ENV, stage))
    return name, stage


def _hook_fault():
    return UnicodeDecodeError('utf-8', b'\xff', 0, 1,
                              'injected by %s' % FAULTY_DOMAIN_ENV)


def _exception_text(exc):
    # Bounded: an exception carrying a whole reply or XML would flood
    # the log.
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + '...'


def _name_of(dom):
    try:
        return dom.name()
    except Exception:  # only for a log line about an error already caught
        return None


def _is_crashed(dom):
    try:
        return dom.state()[0] == _CRASHED
    except libvirt.libvirtError:
        return False


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
