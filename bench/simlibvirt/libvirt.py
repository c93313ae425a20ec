"""A simulated libvirt Python binding for the scale benchmark.

Put this directory first on PYTHONPATH and ``import libvirt`` (and
``libvirt_qemu``, ``libvirtmod_qemu``) find this module instead of the
real binding, so a monitor runs unchanged against a host of N simulated
running domains. What is simulated, and how, is listed in bench/README.md;
in short:

- N running domains (``GHM_SIM_DOMAINS``), each with a guest agent channel
  in its XML at the path libvirt generates;
- a guest-ping takes 20-50 ms (``GHM_SIM_PING_MS``), slept in the calling
  native thread, as the real binding blocks in C;
- every call that is an RPC in libvirt takes a slot of the connection
  (at most ``GHM_SIM_MAX_CLIENT_REQUESTS``, libvirtd's max_client_requests,
  default 5) and of the daemon (``GHM_SIM_MAX_WORKERS``, max_workers,
  default 20); calls beyond them wait;
- agent commands to one domain are serialised (libvirt's domain job);
- domains listed in the file ``GHM_SIM_HUNG_FILE`` (one UUID a line) have
  a hung agent: the first command after the hang fails after its timeout,
  every later one after libvirt's 5 s guest-sync floor (or the domain's
  agent response timeout, agentSetResponseTimeout, when shorter), with
  error code 86 (VIR_ERR_AGENT_UNRESPONSIVE) from domain 10 (QEMU);
- ``GHM_SIM_COUNT_FILE``, when set, gets "<agent commands> <epoch>" every
  100 agent commands, so a benchmark can see how far a monitor got.

No events are ever delivered; keepalive, close callbacks and event
registration are accepted and do nothing.
"""

import builtins
import os
import random
import warnings

try:
    with warnings.catch_warnings():
        # eventlet announces its deprecation on import.
        warnings.simplefilter('ignore')
        from eventlet import patcher as _patcher
except ImportError:  # pragma: no cover - a Python without eventlet
    _patcher = None


def _original(name):
    # Native primitives even when the monitor has monkey-patched the
    # standard library: the binding blocks the calling native thread.
    if _patcher is not None:
        return _patcher.original(name)
    return __import__(name)


_threading = _original('threading')
_time = _original('time')

# -- constants the monitors use ---------------------------------------------

VIR_ERR_OK = 0
VIR_ERR_INTERNAL_ERROR = 1
VIR_ERR_NO_SUPPORT = 3
VIR_ERR_NO_CONNECT = 5
VIR_ERR_INVALID_CONN = 6
VIR_ERR_INVALID_DOMAIN = 7
VIR_ERR_INVALID_ARG = 8
VIR_ERR_SYSTEM_ERROR = 38
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_OPERATION_TIMEOUT = 68
VIR_ERR_ARGUMENT_UNSUPPORTED = 74
VIR_ERR_AGENT_UNRESPONSIVE = 86
VIR_ERR_AGENT_UNSYNCED = 97

VIR_FROM_NONE = 0
VIR_FROM_RPC = 7
VIR_FROM_QEMU = 10
VIR_FROM_REMOTE = 13

VIR_DOMAIN_NOSTATE = 0
VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_BLOCKED = 2
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTDOWN = 4
VIR_DOMAIN_SHUTOFF = 5
VIR_DOMAIN_CRASHED = 6
VIR_DOMAIN_PMSUSPENDED = 7
VIR_DOMAIN_RUNNING_BOOTED = 1

VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
VIR_CONNECT_LIST_DOMAINS_INACTIVE = 2
VIR_CONNECT_LIST_DOMAINS_PERSISTENT = 4
VIR_CONNECT_LIST_DOMAINS_TRANSIENT = 8
VIR_CONNECT_LIST_DOMAINS_RUNNING = 16
VIR_CONNECT_LIST_DOMAINS_PAUSED = 32
VIR_CONNECT_LIST_DOMAINS_SHUTOFF = 64
VIR_CONNECT_LIST_DOMAINS_OTHER = 128

VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE = 1
VIR_CONNECT_GET_ALL_DOMAINS_STATS_INACTIVE = 2
VIR_CONNECT_GET_ALL_DOMAINS_STATS_RUNNING = 16
VIR_CONNECT_GET_ALL_DOMAINS_STATS_PAUSED = 32
VIR_CONNECT_GET_ALL_DOMAINS_STATS_SHUTOFF = 64
VIR_CONNECT_GET_ALL_DOMAINS_STATS_OTHER = 128
VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT = 536870912
VIR_DOMAIN_STATS_STATE = 1
VIR_DOMAIN_STATS_CPU_TOTAL = 2
VIR_DOMAIN_STATS_BALLOON = 4
VIR_DOMAIN_STATS_VCPU = 8
VIR_DOMAIN_STATS_INTERFACE = 16
VIR_DOMAIN_STATS_BLOCK = 32

VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0
VIR_DOMAIN_EVENT_ID_REBOOT = 1
VIR_DOMAIN_EVENT_ID_WATCHDOG = 3
VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON = 6
VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE = 18
VIR_DOMAIN_EVENT_ID_METADATA_CHANGE = 23
VIR_DOMAIN_METADATA_ELEMENT = 2
VIR_DOMAIN_EVENT_DEFINED = 0
VIR_DOMAIN_EVENT_UNDEFINED = 1
VIR_DOMAIN_EVENT_STARTED = 2
VIR_DOMAIN_EVENT_SUSPENDED = 3
VIR_DOMAIN_EVENT_RESUMED = 4
VIR_DOMAIN_EVENT_STOPPED = 5
VIR_DOMAIN_EVENT_SHUTDOWN = 6
VIR_DOMAIN_EVENT_PMSUSPENDED = 7
VIR_DOMAIN_EVENT_CRASHED = 8

VIR_DOMAIN_XML_SECURE = 1
VIR_DOMAIN_XML_INACTIVE = 2

VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_BLOCK = -2
VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT = -1
VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_NOWAIT = 0

# libvirt's guest-sync floor once an agent has timed out; the domain's
# agent response timeout caps it when shorter.
GUEST_SYNC_FLOOR = 5.0


class libvirtError(Exception):  # noqa: N801 - the binding's name

    def __init__(self, message, code=VIR_ERR_INTERNAL_ERROR,
                 domain=VIR_FROM_NONE):
        super().__init__(message)
        self.err = (code, domain, message, 2, None, None, None, 0, 0)

    def get_error_code(self):
        return self.err[0]

    def get_error_domain(self):
        return self.err[1]

    def get_error_message(self):
        return self.err[2]

    def get_error_level(self):
        return self.err[3]


# -- the simulated host --------------------------------------------------------


def _env_int(name, default):
    return int(os.environ.get(name, default))


def _ping_range():
    low, _, high = os.environ.get('GHM_SIM_PING_MS', '20-50').partition('-')
    return float(low) / 1000.0, float(high or low) / 1000.0


class _Guest:
    __slots__ = ('index', 'uuid', 'name', 'id', 'xml', 'job', 'hung',
                 'timed_out', 'agent_timeout')

    def __init__(self, index):
        self.index = index
        self.uuid = '00000000-0000-4000-8000-%012d' % index
        self.name = 'sim-%05d' % index
        self.id = index + 1
        self.xml = _XML % {'name': self.name, 'uuid': self.uuid,
                           'id': self.id, 'channel': _CHANNEL % (
                               self.id, self.name)}
        # libvirt runs one agent command per domain at a time.
        self.job = _threading.Lock()
        self.hung = False
        self.timed_out = False
        # virDomainAgentSetResponseTimeout's value; a started QEMU
        # domain has BLOCK.
        self.agent_timeout = VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_BLOCK

    def sync_wait(self):
        """How long a guest-sync to a timed-out agent waits."""
        if 0 < self.agent_timeout < GUEST_SYNC_FLOOR:
            return float(self.agent_timeout)
        return GUEST_SYNC_FLOOR


# The path libvirt generates for an agent channel without a source path.
_CHANNEL = ('/var/lib/libvirt/qemu/channel/target/domain-%d-%s/'
            'org.qemu.guest_agent.0')

_XML = """<domain type='qemu' id='%(id)d'>
  <name>%(name)s</name>
  <uuid>%(uuid)s</uuid>
  <memory unit='KiB'>131072</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <channel type='unix'>
      <source mode='bind' path='%(channel)s'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
      <alias name='channel0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
  </devices>
</domain>
"""


class _Host:

    def __init__(self):
        self.guests = [_Guest(i) for i in
                       range(_env_int('GHM_SIM_DOMAINS', 100))]
        self.by_uuid = {g.uuid: g for g in self.guests}
        self.by_id = {g.id: g for g in self.guests}
        self.max_client_requests = _env_int('GHM_SIM_MAX_CLIENT_REQUESTS', 5)
        self.workers = _threading.BoundedSemaphore(
            _env_int('GHM_SIM_MAX_WORKERS', 20))
        self.ping_range = _ping_range()
        self.hung_file = os.environ.get('GHM_SIM_HUNG_FILE')
        self.count_file = os.environ.get('GHM_SIM_COUNT_FILE')
        self._hung_checked = 0.0
        self._hung_mtime = None
        self._lock = _threading.Lock()
        self.agent_commands = 0

    def refresh_hung(self):
        """Re-read the hung set when its file changed (at most twice a
        second)."""
        if not self.hung_file:
            return
        now = _time.monotonic()
        if now - self._hung_checked < 0.5:
            return
        with self._lock:
            self._hung_checked = now
            try:
                mtime = os.stat(self.hung_file).st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime == self._hung_mtime:
                return
            self._hung_mtime = mtime
            hung = set()
            if mtime is not None:
                with builtins.open(self.hung_file) as f:
                    hung = {line.strip() for line in f if line.strip()}
            for guest in self.guests:
                if guest.uuid in hung and not guest.hung:
                    guest.hung, guest.timed_out = True, False
                elif guest.uuid not in hung and guest.hung:
                    guest.hung, guest.timed_out = False, False

    def counted(self):
        with self._lock:
            self.agent_commands += 1
            count = self.agent_commands
        if self.count_file and count % 100 == 0:
            with builtins.open(self.count_file, 'w') as f:
                f.write('%d %.3f\n' % (count, _time.time()))


_host = None
_host_lock = _threading.Lock()


def _the_host():
    global _host
    if _host is None:
        with _host_lock:
            if _host is None:
                _host = _Host()
    return _host


class _Rpc:
    """One call served by libvirtd: a slot of the client connection and
    a worker thread of the daemon, for as long as the call runs."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        if not self.conn._alive:
            raise libvirtError('internal error: client socket is closed',
                               VIR_ERR_INTERNAL_ERROR, VIR_FROM_RPC)
        self.conn._requests.acquire()
        self.conn._host.workers.acquire()
        return self

    def __exit__(self, *exc_info):
        self.conn._host.workers.release()
        self.conn._requests.release()
        return False


# -- the binding's classes ---------------------------------------------------


class virDomain:  # noqa: N801

    def __init__(self, conn, guest):
        self._conn = conn
        self._guest = guest
        # The peer hands this to libvirtmod_qemu, as the real binding's
        # wrapped C pointer.
        self._o = self

    def UUIDString(self):  # noqa: N802
        return self._guest.uuid

    def name(self):
        return self._guest.name

    def ID(self):  # noqa: N802
        return self._guest.id

    def state(self, flags=0):
        with _Rpc(self._conn):
            return [VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_BOOTED]

    def info(self):
        with _Rpc(self._conn):
            return [VIR_DOMAIN_RUNNING, 131072, 131072, 1, 0]

    def isActive(self):  # noqa: N802
        with _Rpc(self._conn):
            return 1

    def XMLDesc(self, flags=0):  # noqa: N802
        with _Rpc(self._conn):
            return self._guest.xml

    def agentSetResponseTimeout(self, timeout, flags=0):  # noqa: N802
        # No domain job: it does not wait for an agent command in flight.
        with _Rpc(self._conn):
            if timeout < VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_BLOCK:
                raise libvirtError('invalid argument: timeout',
                                   VIR_ERR_INVALID_ARG, VIR_FROM_QEMU)
            self._guest.agent_timeout = int(timeout)
            return 0

    def connect(self):
        return self._conn


class virConnect:  # noqa: N801

    def __init__(self, uri, readonly=False):
        self._uri = uri
        self._readonly = readonly
        self._host = _the_host()
        self._requests = _threading.BoundedSemaphore(
            self._host.max_client_requests)
        self._alive = True
        self._callback_ids = 0

    # connection
    def getURI(self):  # noqa: N802
        return self._uri

    def isAlive(self):  # noqa: N802
        return 1 if self._alive else 0

    def setKeepAlive(self, interval, count):  # noqa: N802
        return 0

    def registerCloseCallback(self, callback, opaque):  # noqa: N802
        return 0

    def unregisterCloseCallback(self):  # noqa: N802
        return 0

    def close(self):
        self._alive = False
        return 0

    def domainEventRegisterAny(self, dom, event_id, callback,  # noqa: N802
                               opaque):
        with _Rpc(self):
            self._callback_ids += 1
            return self._callback_ids

    def domainEventDeregisterAny(self, callback_id):  # noqa: N802
        with _Rpc(self):
            return 0

    def getHostname(self):  # noqa: N802
        return 'simulated-host'

    # domains
    def listAllDomains(self, flags=0):  # noqa: N802
        with _Rpc(self):
            if flags & ~(VIR_CONNECT_LIST_DOMAINS_ACTIVE
                         | VIR_CONNECT_LIST_DOMAINS_RUNNING
                         | VIR_CONNECT_LIST_DOMAINS_PERSISTENT
                         | VIR_CONNECT_LIST_DOMAINS_TRANSIENT) and not (
                    flags & (VIR_CONNECT_LIST_DOMAINS_ACTIVE
                             | VIR_CONNECT_LIST_DOMAINS_RUNNING)):
                # Only inactive, paused, shut-off or other asked for:
                # every simulated domain is running.
                return []
            return [virDomain(self, g) for g in self._host.guests]

    def listDomainsID(self):  # noqa: N802
        with _Rpc(self):
            return [g.id for g in self._host.guests]

    def numOfDomains(self):  # noqa: N802
        with _Rpc(self):
            return len(self._host.guests)

    def lookupByID(self, domain_id):  # noqa: N802
        with _Rpc(self):
            guest = self._host.by_id.get(domain_id)
            if guest is None:
                raise _no_domain('id %s' % domain_id)
            return virDomain(self, guest)

    def lookupByUUIDString(self, uuid):  # noqa: N802
        # The monitor's edge passes a UUID string; accept anything that
        # carries one too.
        uuid = getattr(uuid, 'uuid', uuid)
        with _Rpc(self):
            guest = self._host.by_uuid.get(uuid)
            if guest is None:
                raise _no_domain('uuid %s' % uuid)
            return virDomain(self, guest)

    def lookupByName(self, name):  # noqa: N802
        with _Rpc(self):
            for guest in self._host.guests:
                if guest.name == name:
                    return virDomain(self, guest)
            raise _no_domain("name '%s'" % name)

    def getAllDomainStats(self, stats=0, flags=0):  # noqa: N802
        with _Rpc(self):
            if flags and not flags & (
                    VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
                    | VIR_CONNECT_GET_ALL_DOMAINS_STATS_RUNNING):
                return []
            return [(virDomain(self, g), _stats(g, stats))
                    for g in self._host.guests]

    def domainListGetStats(self, doms, stats=0, flags=0):  # noqa: N802
        with _Rpc(self):
            return [(d, _stats(d._guest, stats)) for d in doms]


def _stats(guest, stats):
    record = {'state.state': VIR_DOMAIN_RUNNING,
              'state.reason': VIR_DOMAIN_RUNNING_BOOTED}
    if not stats or stats & VIR_DOMAIN_STATS_CPU_TOTAL:
        record.update({'cpu.time': 10 ** 9, 'cpu.user': 6 * 10 ** 8,
                       'cpu.system': 4 * 10 ** 8})
    if not stats or stats & VIR_DOMAIN_STATS_BLOCK:
        record.update({'block.count': 1, 'block.0.name': 'vda',
                       'block.0.rd.reqs': 0, 'block.0.wr.reqs': 0,
                       'block.0.rd.bytes': 0, 'block.0.wr.bytes': 0,
                       'block.0.fl.reqs': 0})
    if not stats or stats & VIR_DOMAIN_STATS_VCPU:
        record.update({'vcpu.current': 1, 'vcpu.maximum': 1,
                       'vcpu.0.state': 1, 'vcpu.0.time': 10 ** 9})
    if not stats or stats & VIR_DOMAIN_STATS_INTERFACE:
        record.update({'net.count': 1, 'net.0.name': 'vnet0',
                       'net.0.rx.bytes': 0, 'net.0.tx.bytes': 0,
                       'net.0.rx.pkts': 0, 'net.0.tx.pkts': 0})
    return record


def _no_domain(what):
    return libvirtError('Domain not found: no domain with matching %s'
                        % what, VIR_ERR_NO_DOMAIN, VIR_FROM_QEMU)


def agent_command(domain, command, timeout):
    """What virDomainQemuAgentCommand does on the simulated host: return
    the reply or raise libvirtError."""
    conn = domain._conn
    host = conn._host
    host.refresh_hung()
    with _Rpc(conn):
        guest = domain._guest
        with guest.job:
            host.counted()
            if guest.hung:
                if guest.timed_out:
                    _time.sleep(guest.sync_wait())
                else:
                    _time.sleep(max(1, timeout))
                    guest.timed_out = True
                raise libvirtError(
                    'Guest agent is not responding: QEMU guest agent is '
                    'not connected', VIR_ERR_AGENT_UNRESPONSIVE,
                    VIR_FROM_QEMU)
            _time.sleep(random.uniform(*host.ping_range))
            if 'guest-fsfreeze-status' in command:
                return '{"return":"thawed"}'
            return '{"return":{}}'


# -- module functions ----------------------------------------------------------


def open(uri=None):  # noqa: A001 - the binding's name
    return virConnect(uri)


def openReadOnly(uri=None):  # noqa: N802
    return virConnect(uri, readonly=True)


def registerErrorHandler(handler, ctx):  # noqa: N802
    return 0


def virEventRegisterDefaultImpl():  # noqa: N802
    return 0


def virEventRunDefaultImpl():  # noqa: N802
    # Nothing ever happens on the simulated host.
    _time.sleep(1.0)
    return 0


def getVersion():  # noqa: N802
    return 9000000
