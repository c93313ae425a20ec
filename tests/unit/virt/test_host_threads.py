"""The libvirt edge under eventlet: native threads never log.

Every LibvirtHost call runs in a native thread (eventlet.tpool). After
monkey-patching, the logging module's locks are green: a native thread
that logs while a green thread holds the handler's lock waits on a hub
that nobody runs, and the daemon stops watching for good.
"""

import logging
import os
import subprocess
import sys

import libvirt
import pytest
from eventlet import patcher
from eventlet import tpool

from monitor.virt import guest_ping
from monitor.virt import host as libvirt_host
from tests.unit.virt import libvirt_node as th

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

_native_threading = patcher.original('threading')

RUNS = 200
# Seconds a run may take before it counts as hung: a run takes a few
# milliseconds, so this only ever trips on a real hang.
WATCHDOG = 10


def test_two_hundred_monkey_patched_runs_with_debug_logging_never_hang():
    proc = subprocess.run(
        [sys.executable, '-W', 'ignore', '-m',
         'tests.unit.native_thread_probe', str(RUNS), str(WATCHDOG)],
        cwd=REPO, capture_output=True, text=True, timeout=120)

    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout == 'completed %d runs\n' % RUNS


class ThreadRecorder(logging.Handler):
    """Records the native thread each log record was emitted from."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.threads = []

    def emit(self, record):
        self.threads.append((_native_threading.get_ident(),
                             record.getMessage()))


@pytest.fixture
def recorder():
    handler = ThreadRecorder()
    logger = logging.getLogger('monitor')
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_no_log_record_comes_from_a_native_thread(uri, monkeypatch,
                                                  recorder):
    # Every path with something to say: keepalive refused (test://),
    # unreadable XML, a domain vanishing while listed, a ping raising.
    real_xml = libvirt.virDomain.XMLDesc
    real_state = libvirt.virDomain.state
    real_stats = libvirt.virConnect.getAllDomainStats

    def xml_desc(dom, flags=0):
        if dom.UUIDString() == th.PLAIN:
            return '<domain><name>plain'
        return real_xml(dom, flags)

    def stats_without_state(self, stats=0, flags=0):
        return [(dom, {}) for dom, _ in real_stats(self, stats, flags)]

    def state(dom):
        if dom.UUIDString() == th.PAUSED:
            raise th.libvirt_error(libvirt.VIR_ERR_NO_DOMAIN,
                                   libvirt.VIR_FROM_QEMU, 'no domain')
        return real_state(dom)

    def agent_command(dom, command, timeout, flags):
        raise RecursionError('maximum recursion depth exceeded')

    monkeypatch.setattr(libvirt.virDomain, 'XMLDesc', xml_desc)
    monkeypatch.setattr(libvirt.virDomain, 'state', state)
    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats',
                        stats_without_state)
    monkeypatch.setattr(guest_ping.libvirt_qemu, 'qemuAgentCommand',
                        agent_command)
    host = libvirt_host.LibvirtHost(uri, th.AGENT)

    tpool.execute(host.connect)
    infos = tpool.execute(host.list_domains)
    results = [tpool.execute(host.ping, info, 1) for info in infos]
    tpool.execute(host.close)
    host.log_notes()

    main = _native_threading.get_ident()
    assert [r.outcome.value for r in results] == ['error']
    messages = [message for _thread, message in recorder.threads]
    assert any('cannot be read' in m for m in messages)
    assert any('went away' in m for m in messages)
    assert any('RecursionError' in m for m in messages)
    assert {thread for thread, _ in recorder.threads} == {main}


@pytest.fixture
def uri(tmp_path):
    node = tmp_path / 'node.xml'
    node.write_text(th.NODE)
    return 'test://%s' % node
