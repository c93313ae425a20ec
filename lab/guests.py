"""Small QEMU guests under the host's libvirtd, with a real qemu-ga inside.

Each guest boots the cached lab image (Debian kernel + busybox initramfs,
built by lab/build-guest.sh) by direct kernel boot under TCG. It has two
virtio-serial channels: the guest agent's, whose socket libvirt places
itself, and a control channel whose socket this module binds under
``RUN_DIR``; the guest's init reads fault-injection commands from it
(``CONTROL_COMMANDS``).

Domains are persistent (defined, then started) so a test can destroy a
guest and start it again; every lab domain is named with ``NAME_PREFIX`` so
``cleanup()`` finds what a crashed run left behind.
"""

import base64
import itertools
import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
import uuid as uuid_lib
from concurrent import futures

import libvirt
import libvirt_qemu
from lxml import etree

from lab import LAB_CACHE

LOG = logging.getLogger(__name__)

URI = os.environ.get('LAB_LIBVIRT_URI', 'qemu:///system')
NAME_PREFIX = 'ghm-lab-'
AGENT_CHANNEL = 'org.qemu.guest_agent.0'
CONTROL_CHANNEL = 'org.ghm.lab.control.0'

GUEST_DIR = os.path.join(LAB_CACHE, 'guest')
KERNEL = os.path.join(GUEST_DIR, 'kernel')
INITRD = os.path.join(GUEST_DIR, 'initramfs.gz')
# panic=0: a crashed kernel stays down (no reboot), as a hung production
# guest would; without a pvpanic device (the default) libvirt keeps
# reporting it running.
KERNEL_CMDLINE = 'console=ttyS0 panic=0 quiet'
# Guest(nmi_panic=True): an NMI panics the kernel, which reboots a second
# later, as a guest with a crash kernel writes its vmcore and comes back
# on its own. Without it Linux logs an unknown NMI and carries on.
NMI_PANIC_CMDLINE = 'console=ttyS0 panic=1 unknown_nmi_panic=1 quiet'

RUN_DIR = os.environ.get('LAB_RUN_DIR', '/run/ghm-lab')
CONSOLE_DIR = os.path.join(RUN_DIR, 'console')
LIBVIRT_LOG_DIR = '/var/log/libvirt/qemu'

CONTROL_COMMANDS = frozenset([
    'agent-hang', 'agent-resume', 'agent-kill', 'agent-start',
    'disk-writer', 'watchdog-hang', 'panic', 'reboot', 'poweroff',
    'slow-freeze', 'agent-deny-exec', 'heartbeat-start', 'heartbeat-stop',
    'agent-slow', 'clock-back',
])
# The file the guest's 'heartbeat-start' rewrites with the Unix time.
HEARTBEAT_FILE = '/run/ghm-lab.heartbeat'
# How far the guest's 'clock-back' sets its clock behind.
CLOCK_BACK_SECONDS = 3600
# The optional data disk (Guest(disk=True)): sparse raw file, virtio-blk.
DATA_DISK_MIB = 8
# The optional filesystem disk (Guest(fs_disk=True)): an ext4 image the
# guest's init finds by this serial and mounts on /data, for qemu-ga to
# freeze (a raw file: libvirt can snapshot and back it up).
FS_DISK_SERIAL = 'ghm-lab-fs'
FS_DISK_TARGET = 'vdb'
FS_DISK_MIB = 16
# How long the guest's init may take to answer a control command: it polls
# its port once a second and may be slow while other guests boot.
CONTROL_TIMEOUT = 10.0
PANIC_MARK = 'Kernel panic - not syncing'

PING = json.dumps({'execute': 'guest-ping'})
MEMORY_MIB = 128
BOOT_TIMEOUT = 120.0
POLL_INTERVAL = 0.1

_OWNED_NAME = re.compile(r'^%s(\d+)-\d+$' % re.escape(NAME_PREFIX))
_sequence = itertools.count(1)
_sequence_lock = threading.Lock()


class LabError(Exception):
    """The lab could not bring a guest to the state a test asked for."""


def image_ready():
    return os.path.isfile(KERNEL) and os.path.isfile(INITRD)


def connect(uri=URI):
    return libvirt.open(uri)


def next_name():
    """A lab domain name that records the process owning the domain."""
    with _sequence_lock:
        number = next(_sequence)
    return '%s%d-%d' % (NAME_PREFIX, os.getpid(), number)


def own_agent_channel_regex():
    """An agent_channel_path_regex ([monitor]) that matches the agent
    channels of this process's lab domains and no others: libvirt puts the
    socket of a channel with no path of its own in a directory named after
    the domain, ``domain-ID-NAME`` (NAME cut at 20 characters, which a lab
    name never reaches)."""
    return r'/domain-\d+-%s%d-\d+/' % (re.escape(NAME_PREFIX), os.getpid())


def _owner_pid(name):
    match = _OWNED_NAME.match(name)
    return int(match.group(1)) if match else None


def is_removable(name):
    """True for a lab domain of this process or of one that has exited.

    Lab domains of other live processes (a second test run, the demo) are
    theirs to remove.
    """
    if not name.startswith(NAME_PREFIX):
        return False
    pid = _owner_pid(name)
    return pid is None or pid == os.getpid() or \
        not os.path.exists('/proc/%d' % pid)


def control_socket_path(name):
    return os.path.join(RUN_DIR, '%s.control.sock' % name)


def data_disk_path(name):
    return os.path.join(RUN_DIR, '%s.disk.img' % name)


def fs_disk_path(name):
    return os.path.join(RUN_DIR, '%s.fs.img' % name)


def console_log_path(name):
    return os.path.join(CONSOLE_DIR, '%s.log' % name)


def domain_xml(name, uuid, memory_mib=MEMORY_MIB, pvpanic=False,
               disk=False, watchdog=False, graphics=False, fs_disk=False,
               cmdline=KERNEL_CMDLINE):
    """The libvirt domain XML of one lab guest.

    ``pvpanic``: a pvpanic device (``<panic model='isa'/>``), so that a
    guest panic reaches libvirt as a crashed event; the domain is then
    kept in the 'crashed' state (on_crash=preserve), as a failed guest the
    operator can still inspect, instead of vanishing. ``disk``: a small
    virtio-blk data disk (/dev/vda in the guest) for 'disk-writer'.
    ``watchdog``: an i6300esb watchdog whose firing libvirt only reports
    (action none), for 'watchdog-hang'. ``fs_disk``: a virtio-blk disk
    holding an ext4 filesystem the guest mounts on /data.
    ``graphics``: a VGA card and a VNC display on a unix socket libvirt
    places itself (no TCP port), so that screenshots can be taken.
    """
    domain = etree.Element('domain', type='qemu')
    etree.SubElement(domain, 'name').text = name
    etree.SubElement(domain, 'uuid').text = uuid
    etree.SubElement(domain, 'memory', unit='MiB').text = str(memory_mib)
    etree.SubElement(domain, 'vcpu').text = '1'

    os_el = etree.SubElement(domain, 'os')
    etree.SubElement(os_el, 'type', arch='x86_64', machine='pc').text = 'hvm'
    etree.SubElement(os_el, 'kernel').text = KERNEL
    etree.SubElement(os_el, 'initrd').text = INITRD
    etree.SubElement(os_el, 'cmdline').text = cmdline
    features = etree.SubElement(domain, 'features')
    # ACPI lets the guest power itself off (guest-shutdown, 'poweroff').
    etree.SubElement(features, 'acpi')

    etree.SubElement(domain, 'on_poweroff').text = 'destroy'
    etree.SubElement(domain, 'on_reboot').text = 'restart'
    etree.SubElement(domain, 'on_crash').text = (
        'preserve' if pvpanic else 'destroy')

    devices = etree.SubElement(domain, 'devices')
    serial = etree.SubElement(devices, 'serial', type='file')
    etree.SubElement(serial, 'source', path=console_log_path(name),
                     append='off')
    etree.SubElement(serial, 'target', port='0')

    agent = etree.SubElement(devices, 'channel', type='unix')
    etree.SubElement(agent, 'target', type='virtio', name=AGENT_CHANNEL)

    control = etree.SubElement(devices, 'channel', type='unix')
    etree.SubElement(control, 'source', mode='bind',
                     path=control_socket_path(name))
    etree.SubElement(control, 'target', type='virtio', name=CONTROL_CHANNEL)

    if disk:
        data = etree.SubElement(devices, 'disk', type='file', device='disk')
        etree.SubElement(data, 'driver', name='qemu', type='raw')
        etree.SubElement(data, 'source', file=data_disk_path(name))
        etree.SubElement(data, 'target', dev='vda', bus='virtio')
    if fs_disk:
        data = etree.SubElement(devices, 'disk', type='file', device='disk')
        etree.SubElement(data, 'driver', name='qemu', type='raw')
        etree.SubElement(data, 'source', file=fs_disk_path(name))
        etree.SubElement(data, 'target', dev=FS_DISK_TARGET, bus='virtio')
        etree.SubElement(data, 'serial').text = FS_DISK_SERIAL
    if pvpanic:
        etree.SubElement(devices, 'panic', model='isa')
    if watchdog:
        etree.SubElement(devices, 'watchdog', model='i6300esb',
                         action='none')
    if graphics:
        display = etree.SubElement(devices, 'graphics', type='vnc')
        etree.SubElement(display, 'listen', type='socket')
        video = etree.SubElement(devices, 'video')
        etree.SubElement(video, 'model', type='vga')

    etree.SubElement(devices, 'controller', type='usb', model='none')
    etree.SubElement(devices, 'memballoon', model='none')
    return etree.tostring(domain, pretty_print=True, encoding='unicode')


def agent_channel_state(xml):
    """'connected', 'disconnected' or None (no agent channel or no state)."""
    root = etree.fromstring(xml)
    for target in root.iterfind('devices/channel/target'):
        if target.get('name') == AGENT_CHANNEL:
            return target.get('state')
    return None


def _ignore_codes(call, *codes):
    try:
        call()
    except libvirt.libvirtError as error:
        if error.get_error_code() not in codes:
            raise


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def remove_domain(dom):
    """Destroy (when running) and undefine one domain; gone is fine."""
    name = dom.name()
    _ignore_codes(dom.destroy, libvirt.VIR_ERR_OPERATION_INVALID,
                  libvirt.VIR_ERR_NO_DOMAIN)
    _ignore_codes(dom.undefine, libvirt.VIR_ERR_NO_DOMAIN)
    _remove(control_socket_path(name))
    _remove(data_disk_path(name))
    # The filesystem disk, and the overlays and backups made of it.
    for path in _run_files(RUN_DIR, '.img'):
        if os.path.basename(path).startswith(name + '.'):
            _remove(path)


def lab_domains(conn):
    """Every lab domain on the host, whoever started it."""
    return [dom for dom in conn.listAllDomains(0)
            if dom.name().startswith(NAME_PREFIX)]


def lab_qemu_pids(owner=None):
    """Process ids of QEMU processes running a lab guest (of ``owner``'s
    domains only, when given a process id)."""
    prefix = NAME_PREFIX if owner is None else '%s%d-' % (NAME_PREFIX, owner)
    marker = ('guest=%s' % prefix).encode()
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as cmdline:
                argv = cmdline.read().split(b'\0')
        except OSError:
            continue
        if argv and argv[0].startswith(b'/usr/bin/qemu-system') and \
                any(arg.startswith(marker) for arg in argv):
            pids.append(int(entry))
    return pids


def cleanup(conn):
    """Destroy and undefine the lab domains of this process and those left
    by processes that have exited; return their names.

    Domains are removed concurrently: destroying a guest whose agent or
    kernel is stuck still takes a moment each.
    """
    started = time.monotonic()
    domains = [dom for dom in lab_domains(conn) if is_removable(dom.name())]
    if domains:
        with futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(remove_domain, domains))
    for suffix in ('.sock', '.img'):
        for path in _run_files(RUN_DIR, suffix):
            _remove(path)
    names = sorted(dom.name() for dom in domains)
    if names:
        LOG.info('removed lab domains %s in %.1f s', ', '.join(names),
                 time.monotonic() - started)
    return names


def clear_logs():
    """Remove the console logs, and libvirt's per-domain logs, of lab
    domains that ``cleanup()`` may remove. They are kept past teardown so a
    failed boot or fault can be read afterwards."""
    for directory in (CONSOLE_DIR, LIBVIRT_LOG_DIR):
        for path in _run_files(directory, '.log'):
            _remove(path)


def _run_files(directory, suffix):
    if not os.path.isdir(directory):
        return []
    return [os.path.join(directory, entry) for entry in os.listdir(directory)
            if entry.endswith(suffix) and entry.startswith(NAME_PREFIX) and
            is_removable(entry.split('.', 1)[0])]


def _make_fs_image(path):
    with open(path, 'wb') as image:
        image.truncate(FS_DISK_MIB << 20)
    subprocess.run(['/sbin/mkfs.ext4', '-q', '-F', '-L', 'data', path],
                   check=True, capture_output=True, timeout=60)


def _ensure_run_dirs():
    os.makedirs(CONSOLE_DIR, exist_ok=True)


# Tries of virDomainCreate when the host answers EAGAIN.
START_ATTEMPTS = 3


class Guest:
    """One lab domain: its libvirt handle, agent access and fault controls."""

    def __init__(self, conn, name=None, uuid=None, memory_mib=MEMORY_MIB,
                 pvpanic=False, disk=False, watchdog=False,
                 graphics=False, fs_disk=False, nmi_panic=False):
        self.conn = conn
        self.nmi_panic = nmi_panic
        self.graphics = graphics
        self.name = name or next_name()
        self.uuid = uuid or str(uuid_lib.uuid4())
        self.memory_mib = memory_mib
        self.pvpanic = pvpanic
        self.disk = disk
        self.watchdog = watchdog
        self.fs_disk = fs_disk
        self.dom = None
        self.started_at = None
        self.boot_seconds = None

    def __repr__(self):
        return '<Guest %s %s>' % (self.name, self.uuid)

    @property
    def console_log(self):
        return console_log_path(self.name)

    @property
    def control_socket(self):
        return control_socket_path(self.name)

    def define(self):
        _ensure_run_dirs()
        if self.disk:
            with open(data_disk_path(self.name), 'wb') as image:
                image.truncate(DATA_DISK_MIB << 20)
        if self.fs_disk:
            _make_fs_image(fs_disk_path(self.name))
        self.dom = self.conn.defineXML(
            domain_xml(self.name, self.uuid, self.memory_mib,
                       pvpanic=self.pvpanic, disk=self.disk,
                       watchdog=self.watchdog, graphics=self.graphics,
                       fs_disk=self.fs_disk,
                       cmdline=(NMI_PANIC_CMDLINE if self.nmi_panic
                                else KERNEL_CMDLINE)))
        return self

    def start(self):
        if self.dom is None:
            self.define()
        for attempt in range(START_ATTEMPTS):
            try:
                self.dom.create()
                break
            except libvirt.libvirtError as exc:
                # Seen when several guests start at once: the kernel
                # refuses a device cgroup BPF program for a moment (EAGAIN).
                # The host, not the guest, is busy; try again shortly.
                if 'temporarily unavailable' not in str(exc) or \
                        attempt == START_ATTEMPTS - 1:
                    raise
                time.sleep(1.0)
        self.started_at = time.monotonic()
        self.boot_seconds = None
        return self

    def state(self):
        """libvirt's (state, reason) pair, e.g. (VIR_DOMAIN_RUNNING, 1)."""
        state, reason = self.dom.state()
        return (state, reason)

    def is_running(self):
        return self.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    def wait_state(self, wanted, timeout):
        """Wait until libvirt reports state ``wanted`` (VIR_DOMAIN_*)."""
        deadline = time.monotonic() + timeout
        while True:
            state, reason = self.state()
            if state == wanted:
                return state, reason
            if time.monotonic() >= deadline:
                raise LabError('%s (%s): domain state %d, not %d, after '
                               '%.0f s' % (self.name, self.uuid, state,
                                           wanted, timeout))
            time.sleep(POLL_INTERVAL)

    def agent_state(self):
        return agent_channel_state(self.dom.XMLDesc(0))

    def wait_agent_state(self, wanted, timeout):
        deadline = time.monotonic() + timeout
        while True:
            state = self.agent_state()
            if state == wanted:
                return
            if time.monotonic() >= deadline:
                raise LabError('%s (%s): agent channel still %s after %.0f s '
                               '(console: %s)' % (self.name, self.uuid, state,
                                                  timeout, self.console_log))
            time.sleep(POLL_INTERVAL)

    def wait_agent_connected(self, timeout=BOOT_TIMEOUT):
        """Wait for qemu-ga to open its port; return seconds since start()."""
        self.wait_agent_state('connected', timeout)
        if self.started_at is not None and self.boot_seconds is None:
            self.boot_seconds = time.monotonic() - self.started_at
            LOG.info('guest %s (%s) agent connected %.1f s after start',
                     self.name, self.uuid, self.boot_seconds)
        return self.boot_seconds

    def wait_agent_disconnected(self, timeout=30.0):
        self.wait_agent_state('disconnected', timeout)

    def ping(self, timeout=2):
        """guest-ping through libvirt; raises libvirt.libvirtError."""
        reply = libvirt_qemu.qemuAgentCommand(self.dom, PING, timeout, 0)
        return json.loads(reply)

    def wait_pingable(self, timeout=30.0, ping_timeout=2):
        """Ping until the agent answers; for an agent that just connected."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ping(ping_timeout)
            except libvirt.libvirtError as error:
                if time.monotonic() >= deadline:
                    raise LabError('%s (%s): agent does not answer after '
                                   '%.0f s: %s' % (self.name, self.uuid,
                                                   timeout, error))
            time.sleep(POLL_INTERVAL)

    def control(self, command, timeout=CONTROL_TIMEOUT):
        """Have the guest's init carry out one fault-injection command.

        Returns once the guest has answered that it did (for 'panic', once
        the panic shows on the console); raises LabError when it refuses
        or does not answer, e.g. because it is paused or has crashed.
        """
        if command not in CONTROL_COMMANDS:
            raise ValueError('unknown control command %r' % command)
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.control_socket)
            sock.sendall(command.encode('ascii') + b'\n')
            answer = self._control_answer(sock, command, deadline)
        if answer != 'done':
            stale = ''
            if 'unknown control command: %s' % command in \
                    self.console_text():
                stale = ('; the guest image predates this command in '
                         'lab/guest/init: make guest-image builds it anew')
            raise LabError('%s (%s): guest could not carry out %s%s '
                           '(console: %s)' % (self.name, self.uuid, command,
                                              stale, self.console_log))
        if command == 'panic':
            self._wait_console(PANIC_MARK, deadline)
        LOG.info('guest %s (%s): control command %s done', self.name,
                 self.uuid, command)

    def _control_answer(self, sock, command, deadline):
        buffered = b''
        while True:
            while b'\n' in buffered:
                line, buffered = buffered.split(b'\n', 1)
                answer, _, about = line.decode('ascii', 'replace').partition(' ')
                if about == command and answer in ('done', 'failed'):
                    return answer
            remaining = deadline - time.monotonic()
            chunk = b''
            if remaining > 0:
                sock.settimeout(remaining)
                try:
                    chunk = sock.recv(4096)
                except socket.timeout:
                    pass
            if not chunk:
                raise LabError('%s (%s): no answer to control command %s '
                               '(console: %s)' % (self.name, self.uuid,
                                                  command, self.console_log))
            buffered += chunk

    def _wait_console(self, text, deadline):
        while text not in self.console_text():
            if time.monotonic() >= deadline:
                raise LabError('%s (%s): %r not on the console %s'
                               % (self.name, self.uuid, text,
                                  self.console_log))
            time.sleep(POLL_INTERVAL)

    def guest_exec(self, argv, timeout=10.0):
        """Run ``argv`` in the guest through qemu-ga's guest-exec and
        wait for it; returns (exit code, stdout text). Raises LabError
        when it has not ended within ``timeout`` seconds."""
        started = self._agent('guest-exec', {
            'path': argv[0], 'arg': list(argv[1:]),
            'capture-output': True})
        pid = started['pid']
        deadline = time.monotonic() + timeout
        while True:
            status = self._agent('guest-exec-status', {'pid': pid})
            if status.get('exited'):
                out = base64.b64decode(status.get('out-data', ''))
                return status.get('exitcode'), out.decode('utf-8', 'replace')
            if time.monotonic() >= deadline:
                raise LabError('%s (%s): %s still running after %.0f s'
                               % (self.name, self.uuid, argv, timeout))
            time.sleep(POLL_INTERVAL)

    def processes(self, pattern):
        """Command lines of the guest's processes that hold ``pattern``,
        read from /proc in the guest (the reading shell left out)."""
        script = ('for d in /proc/[0-9]*; do [ "${d#/proc/}" = "$$" ] && '
                  'continue; tr "\\000" " " < "$d/cmdline" 2>/dev/null; '
                  'echo; done')
        _code, out = self.guest_exec(['/bin/sh', '-c', script])
        return [line.strip() for line in out.split('\n')
                if pattern in line]

    def _agent(self, command, arguments, timeout=5):
        reply = libvirt_qemu.qemuAgentCommand(
            self.dom, json.dumps({'execute': command,
                                  'arguments': arguments}), timeout, 0)
        return json.loads(reply)['return']

    def inject_nmi(self):
        """An NMI on every vCPU, as virsh inject-nmi."""
        self.dom.injectNMI(0)

    def pause(self):
        self.dom.suspend()

    def resume(self):
        self.dom.resume()

    def wait_agent_reconnected(self, timeout=BOOT_TIMEOUT):
        """After a reboot or reset: the agent channel closes, then qemu-ga
        of the next boot opens it again. Returns the seconds it took."""
        self.wait_agent_disconnected(min(timeout, 30.0))
        return self.wait_agent_connected(timeout)

    def reboot(self):
        """Guest-initiated reboot through the agent, as Nova's soft reboot.

        The domain keeps running; the channel still reads 'connected' for a
        moment, so wait with wait_agent_reconnected()."""
        self.dom.reboot(libvirt.VIR_DOMAIN_REBOOT_GUEST_AGENT)
        self.started_at = time.monotonic()
        self.boot_seconds = None

    def reset(self):
        """Hard reset (the reset button); the guest boots again."""
        self.dom.reset(0)
        self.started_at = time.monotonic()
        self.boot_seconds = None

    def shutdown(self):
        """Guest-initiated power off through the agent."""
        self.dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)

    def destroy(self):
        self.dom.destroy()

    def undefine(self):
        self.dom.undefine()

    def remove(self):
        remove_domain(self.dom)

    def console_text(self):
        try:
            with open(self.console_log, errors='replace') as log:
                return log.read()
        except FileNotFoundError:
            return ''


class Lab:
    """Starts lab guests on one libvirt connection and removes them all."""

    def __init__(self, conn=None, uri=URI):
        self.conn = conn if conn is not None else connect(uri)
        self.guests = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.teardown()

    def new_guest(self, **kwargs):
        guest = Guest(self.conn, **kwargs).define()
        self.guests.append(guest)
        return guest

    def start_guests(self, count, timeout=BOOT_TIMEOUT, **kwargs):
        """Define and start ``count`` guests at once; return them once
        every agent is connected and has answered a ping."""
        started = time.monotonic()
        guests = [self.new_guest(**kwargs) for _ in range(count)]
        # Concurrent boots share the host's cores, so all start together
        # and each wait counts from the same moment.
        with futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(Guest.start, guests))
        deadline = started + timeout
        for guest in guests:
            guest.wait_agent_connected(max(deadline - time.monotonic(), 0))
        for guest in guests:
            guest.wait_pingable(max(deadline - time.monotonic(), 1.0))
        LOG.info('%d lab guest(s) booted with agents answering in %.1f s '
                 '(slowest agent connect %.1f s)', count,
                 time.monotonic() - started,
                 max(guest.boot_seconds for guest in guests))
        return guests

    def teardown(self):
        """Remove this process's lab domains, and any left by processes that
        have exited, with their sockets."""
        cleanup(self.conn)
        self.guests = []

    def close(self):
        self.conn.close()
