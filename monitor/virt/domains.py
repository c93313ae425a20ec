"""Listing and describing the active domains, with a per-run cache of
their agent channel.

A domain's ``<monitor/>`` settings are not kept here: a listing hands
them over when it has read them (the first listing of a run, every
listing after a new connection or a re-read asked for with
:meth:`DomainListing.reread`), each with the time of its read, and the
daemon keeps the newest (``monitor.daemon.domain_settings``).

Every method here blocks on libvirt and runs in a native thread: nothing
logs; what deserves a log line becomes a note (``monitor.virt.notes``).
Whatever is raised for one domain while listing it is that domain's
problem alone: the listing skips it (and notes why); every other domain
is listed as usual.
"""

import collections
import dataclasses
import time
import typing

from monitor.errors import LibvirtUnavailable
from monitor.virt import domain_xml
from monitor.virt import fault_hook as fault_hook_mod
from monitor.virt import metadata as domain_metadata
from monitor.virt import notes as notes_mod
from monitor.virt.libvirt_errors import error_text
from monitor.virt.libvirt_errors import exception_text
from monitor.virt.libvirt_errors import is_disconnect

try:
    import libvirt
except ImportError:  # pragma: no cover - exercised only on hosts without it
    libvirt = None

# virDomainState values.
RUNNING = 1
PAUSED = 3
CRASHED = 6
PMSUSPENDED = 7
# virDomainPausedReason: paused by the disk error policy.
PAUSED_IOERROR = 5
# virDomainDiskErrorCode, as libvirt's diskErrors() names them.
_DISK_ERRORS = {1: 'I/O error', 2: 'no space left'}

_KIND_VANISHED = 'vanished'


class SettingsRead(typing.NamedTuple):
    """A domain's settings as one read of its XML found them."""
    settings: domain_metadata.DomainSettings
    # Why a <monitor/> element present was ignored; None: read or absent.
    error: typing.Optional[str]
    # time.monotonic() when the XML was asked for.
    read_at: float


# What a listing that did not read a domain's XML says of its settings.
_NOT_READ = SettingsRead(None, None, None)


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
    # present was ignored (None when it was read or absent). None when
    # this listing did not read the XML (read once per run, and again
    # after a new connection or a reread()): the last read still holds.
    settings: typing.Optional[domain_metadata.DomainSettings] = None
    settings_error: typing.Optional[str] = None
    # time.monotonic() when the XML the settings come from was asked
    # for: of two reads of one domain, the later-asked one is the newer.
    settings_read_at: typing.Optional[float] = dataclasses.field(
        default=None, compare=False)
    # Paused on a disk I/O error: libvirt's disk errors ('vda: no space'),
    # '' when it names none; None when not paused on an I/O error.
    io_error: typing.Optional[str] = None
    # The libvirt domain object from the listing, reused by the ping so
    # that a ping costs one libvirt call, not a lookup and a call. Not
    # part of the value: two listings of one domain compare equal.
    dom: typing.Any = dataclasses.field(default=None, compare=False,
                                        repr=False)


class DomainListing:
    """Lists the active domains of a connection; reads each domain's XML
    once per run of it."""

    def __init__(self, notes, agent_channel_name,
                 agent_channel_path_regex=None,
                 fault_hook=fault_hook_mod.FaultHook()):
        self._notes = notes
        self.agent_channel_name = agent_channel_name
        self.agent_channel_path_regex = agent_channel_path_regex
        self._fault_hook = fault_hook
        # (uuid, domain id) -> AgentChannel|None. A domain's devices
        # only change when it is restarted (new id), so its XML is read
        # once per run, not once per sweep. Emptied on every new
        # connection: what changed while libvirt was out of sight is read
        # again, the settings with it.
        self._read = {}
        # UUIDs whose XML the next listing reads again (None: every
        # domain's), from any thread: deque appends and pops are atomic.
        self._rereads = collections.deque()

    def invalidate(self):
        """Forget what was read: the next listing reads every XML."""
        self._read = {}

    def reread(self, uuid=None):
        """Have the next listing read ``uuid``'s XML (settings included)
        again; None: every domain's. Any thread; never blocks."""
        self._rereads.append(uuid)

    def _take_rereads(self):
        while self._rereads:
            uuid = self._rereads.popleft()
            if uuid is None:
                self._read = {}
            else:
                for key in [key for key in self._read if key[0] == uuid]:
                    del self._read[key]

    def list_domains(self, conn):
        """Active domains (running or paused) with their agent channel.

        One libvirt call lists every active domain with its state.
        Domains that vanish while being listed, domains with XML we cannot
        parse and domains for which anything else is raised are skipped
        (and noted); a lost connection raises LibvirtUnavailable.
        """
        self._take_rereads()
        try:
            listing = _list_with_states(conn)
        except libvirt.libvirtError as exc:
            raise LibvirtUnavailable(error_text(exc)) from None
        result = []
        live_keys = set()
        listed = set()
        for dom, state, reason in listing:
            uuid = name = None
            try:
                uuid = dom.UUIDString()
                listed.add(uuid)
                name = dom.name()
                info = self._describe(dom, uuid, name, (state, reason),
                                      live_keys)
            except libvirt.libvirtError as exc:
                if is_disconnect(exc):
                    raise LibvirtUnavailable(error_text(exc)) from None
                # Vanished between listing and inspection: the next
                # listing will not have it.
                self._notes.add(notes_mod.STAGE_LIST, uuid, name,
                                _KIND_VANISHED,
                                'went away while being listed: %s'
                                % error_text(exc), error=False)
                continue
            except _XMLUnreadable as exc:
                self._notes.add(notes_mod.STAGE_XML, uuid, name, exc.kind,
                                exc.text)
                continue
            except Exception as exc:  # per-domain boundary: skip this one
                # A domain that cannot even tell its UUID is noted under
                # None, kept while listings keep meeting such a domain.
                listed.add(uuid)
                self._notes.add(notes_mod.STAGE_LIST, uuid, name,
                                type(exc).__name__, exception_text(exc))
                continue
            if info is not None:
                self._notes.fine(uuid, notes_mod.STAGE_LIST,
                                 notes_mod.STAGE_XML)
                result.append(info)
        for key in set(self._read) - live_keys:
            del self._read[key]
        self._notes.forget_all_but(listed)
        return result

    def _describe(self, dom, uuid, name, state_reason, live_keys):
        state, reason = state_reason
        if state is None:
            state, reason = dom.state()
        if self._fault_hook.hits(notes_mod.STAGE_LIST, name):
            raise self._fault_hook.fault()
        key = (uuid, dom.ID())
        read = _NOT_READ
        if key not in self._read:
            read_at = time.monotonic()
            xml = dom.XMLDesc(0)
            self._read[key] = self._read_channel(xml)
            read = SettingsRead(*_read_settings(xml), read_at)
        live_keys.add(key)
        return DomainInfo(uuid=uuid, name=name,
                          running=state == RUNNING,
                          paused=state in (PAUSED, PMSUSPENDED),
                          crashed=state == CRASHED,
                          agent=self._read[key],
                          settings=read.settings, settings_error=read.error,
                          settings_read_at=read.read_at, dom=dom,
                          io_error=_io_error(dom, state, reason))

    def refresh_settings(self, conn, uuid):
        """Read a running domain's settings again (its metadata changed);
        returns a SettingsRead, or None when the domain is gone or not
        connected. Never raises for libvirt errors: a domain that could
        not be read, yet is not gone, is read by the next listing."""
        if conn is None:
            return None
        read_at = time.monotonic()
        try:
            xml = conn.lookupByUUIDString(uuid).XMLDesc(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                self.reread(uuid)
            return None
        return SettingsRead(*_read_settings(xml), read_at)

    def _read_channel(self, xml):
        try:
            return domain_xml.find_agent_channel(
                xml, self.agent_channel_name, self.agent_channel_path_regex)
        except domain_xml.DomainXMLError as exc:
            raise _XMLUnreadable('DomainXMLError', str(exc)) from None
        except Exception as exc:  # lxml or the regex, on hostile XML
            raise _XMLUnreadable(type(exc).__name__,
                                 exception_text(exc)) from None


def _io_error(dom, state, reason):
    """DomainInfo.io_error: one more libvirt call, only for a domain
    paused on an I/O error."""
    if state != PAUSED or reason != PAUSED_IOERROR:
        return None
    try:
        errors = dom.diskErrors(0)
    except libvirt.libvirtError as exc:
        if is_disconnect(exc):
            raise
        # Which disk is a detail: the pause is reported all the same.
        return ''
    return ', '.join('%s: %s' % (disk, _DISK_ERRORS.get(code, code))
                     for disk, code in sorted(errors.items()))


def _list_with_states(conn):
    """[(virDomain, state, reason)] of the active domains, in one call
    (reason None when the driver lists without bulk stats)."""
    try:
        stats = conn.getAllDomainStats(
            libvirt.VIR_DOMAIN_STATS_STATE,
            libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        # A driver without bulk stats: ask each domain (N calls).
        return [(dom, None, None) for dom in conn.listAllDomains(
            libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
    return _taken(stats)


def _taken(stats):
    """(virDomain, state, reason) of each of the binding's (virDomain,
    record) pairs, in order, each pair dropped from ``stats`` once taken.
    At 5,000 domains the pairs are about 1.5 MB; kept until the last
    domain was described, they sat beside the whole new listing and
    raised the daemon's high-water mark (and so its RSS) for good."""
    stats.reverse()
    while stats:
        dom, record = stats.pop()
        yield dom, record.get('state.state'), record.get('state.reason')


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
