"""A program that drives LibvirtHost the way the daemon does, many times.

Run as ``python -m tests.unit.native_thread_probe RUNS WATCHDOG`` by
test_libvirt_host_threads.py. Like the daemon, it sets up debug logging,
monkey-patches with eventlet and runs every LibvirtHost call through
eventlet.tpool, while green threads log without pause. libvirt's binding
is replaced by a fake whose calls block briefly in the native thread and
take every path that has something to say: keepalive refused, a domain
vanishing while listed, unreadable XML, an error raised while pinging.

A native thread that takes a logging lock (green after monkey-patching)
while a green thread holds it waits on a hub that nobody runs: the run
never ends. A native watchdog notices and exits with status 3; a clean
pass prints "completed N runs" and exits 0.
"""

import logging
import os
import sys
import types

LOG = logging.getLogger('monitor.probe')


def fake_libvirt(native_time):
    """Modules standing in for libvirt and libvirt_qemu."""
    lv = types.ModuleType('libvirt')
    lv.VIR_ERR_INTERNAL_ERROR = 1
    lv.VIR_ERR_NO_SUPPORT = 3
    lv.VIR_ERR_NO_CONNECT = 5
    lv.VIR_ERR_INVALID_CONN = 6
    lv.VIR_ERR_INVALID_DOMAIN = 7
    lv.VIR_ERR_SYSTEM_ERROR = 38
    lv.VIR_ERR_NO_DOMAIN = 42
    lv.VIR_ERR_OPERATION_INVALID = 55
    lv.VIR_ERR_ARGUMENT_UNSUPPORTED = 74
    lv.VIR_FROM_RPC = 7
    lv.VIR_FROM_REMOTE = 13
    lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
    lv.VIR_DOMAIN_STATS_STATE = 1
    lv.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE = 1

    class libvirtError(Exception):
        def __init__(self, message, code):
            super().__init__(message)
            self.code = code

        def get_error_code(self):
            return self.code

        def get_error_domain(self):
            return 10

        def get_error_message(self):
            return str(self)

    lv.libvirtError = libvirtError

    def blocking(seconds=0.0005):
        # What a libvirt RPC does: the calling native thread waits.
        native_time.sleep(seconds)

    def xml(name, uuid, agent=True):
        channel = ("<channel type='unix'><target type='virtio' "
                   "name='org.qemu.guest_agent.0'/></channel>"
                   if agent else '')
        return ('<domain><name>%s</name><uuid>%s</uuid><devices>%s'
                '</devices></domain>' % (name, uuid, channel))

    class Domain:
        def __init__(self, n, kind):
            self._uuid = '00000000-0000-4000-8000-%012d' % n
            self._name = 'vm-%d' % n
            self.kind = kind

        def UUIDString(self):
            return self._uuid

        def name(self):
            return self._name

        def ID(self):
            return 1

        def state(self):
            blocking()
            if self.kind == 'vanishing':
                raise libvirtError('Domain not found', lv.VIR_ERR_NO_DOMAIN)
            return 1, 1

        def XMLDesc(self, flags=0):
            blocking()
            if self.kind == 'vanishing':
                raise libvirtError('Domain not found', lv.VIR_ERR_NO_DOMAIN)
            if self.kind == 'bad-xml':
                return '<domain><name>broken'
            return xml(self._name, self._uuid)

    domains = [Domain(0, 'vanishing'), Domain(1, 'bad-xml'),
               Domain(2, 'raising')] + [Domain(n, 'fine')
                                         for n in range(3, 8)]

    class Connection:
        def setKeepAlive(self, interval, count):
            blocking()
            raise libvirtError('keepalive not supported', lv.VIR_ERR_NO_SUPPORT)

        def registerCloseCallback(self, callback, opaque):
            pass

        def unregisterCloseCallback(self):
            pass

        def close(self):
            blocking()

        def isAlive(self):
            return 1

        def listAllDomains(self, flags=0):
            blocking()
            return list(domains)

        def getAllDomainStats(self, stats=0, flags=0):
            blocking()
            return [(dom, {'state.state': 1}) for dom in domains]

        def lookupByUUIDString(self, uuid):
            blocking()
            for dom in domains:
                if dom.UUIDString() == uuid:
                    return dom
            raise libvirtError('Domain not found', lv.VIR_ERR_NO_DOMAIN)

    lv.open = lambda uri: Connection()
    lv.registerErrorHandler = lambda handler, ctx: None

    qemu = types.ModuleType('libvirt_qemu')

    def agent_command(dom, command, timeout, flags):
        blocking(0.001)
        if dom.kind == 'raising':
            return '[' * 100000  # nesting no JSON parser can follow
        return '{"return": {}}'

    qemu.qemuAgentCommand = agent_command
    return lv, qemu


def main(runs, watchdog):
    # As the daemon does: logging first, then monkey-patching, which turns
    # the logging module's existing locks into green ones.
    logging.basicConfig(level=logging.DEBUG, stream=open(os.devnull, 'w'),
                        format='%(asctime)s %(threadName)s %(message)s')
    import eventlet
    eventlet.monkey_patch()
    from eventlet import patcher
    from eventlet import tpool
    native_threading = patcher.original('threading')
    native_time = patcher.original('time')

    sys.modules['libvirt'], sys.modules['libvirt_qemu'] = fake_libvirt(
        native_time)
    from monitor.virt import host as libvirt_host

    done = [0]
    stopping = [False]

    def watch():
        last, since = -1, native_time.monotonic()
        while True:
            native_time.sleep(0.05)
            if done[0] != last:
                last, since = done[0], native_time.monotonic()
            elif native_time.monotonic() - since > watchdog:
                sys.stdout.write('hung in run %d of %d\n' % (done[0] + 1,
                                                            runs))
                sys.stdout.flush()
                os._exit(3)

    native_threading.Thread(target=watch, daemon=True).start()

    def chatter(n):
        while not stopping[0]:
            LOG.debug('green thread %d is busy', n)
            eventlet.sleep(0)

    talkers = [eventlet.spawn(chatter, n) for n in range(4)]
    pool = eventlet.GreenPool(5)
    for _run in range(runs):
        host = libvirt_host.LibvirtHost('fake:///', 'org.qemu.guest_agent.0')
        tpool.execute(host.connect)
        for _ in range(2):
            infos = tpool.execute(host.list_domains)
            for _result in pool.imap(
                    lambda info: tpool.execute(host.ping, info, 1), infos):
                pass
        if hasattr(host, 'log_notes'):
            host.log_notes()
        tpool.execute(host.close)
        done[0] += 1
    stopping[0] = True
    for talker in talkers:
        talker.wait()
    sys.stdout.write('completed %d runs\n' % runs)
    sys.stdout.flush()
    # tpool's native threads would keep the interpreter waiting.
    os._exit(0)


if __name__ == '__main__':
    main(int(sys.argv[1]), float(sys.argv[2]))
