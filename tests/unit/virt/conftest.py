"""Fixtures of the libvirt edge's tests: a test-driver host per test,
connected or not, and stand-ins and counters for libvirt calls."""

import libvirt
import pytest

from monitor.virt import guest_ping
from monitor.virt import host as libvirt_host
from tests.unit.virt.libvirt_node import AGENT
from tests.unit.virt.libvirt_node import CRASHED
from tests.unit.virt.libvirt_node import NODE
from tests.unit.virt.libvirt_node import AgentStandIn
from tests.unit.virt.libvirt_node import agent_channel
from tests.unit.virt.libvirt_node import domain


@pytest.fixture
def uri(tmp_path):
    node = tmp_path / 'node.xml'
    node.write_text(NODE)
    return 'test://%s' % node


@pytest.fixture
def host(uri):
    host = libvirt_host.LibvirtHost(uri, AGENT)
    yield host
    host.close()


@pytest.fixture
def connected(host):
    host.connect()
    return host


@pytest.fixture
def xml_reads(monkeypatch):
    """Count XMLDesc calls per domain UUID."""
    reads = []
    real = libvirt.virDomain.XMLDesc

    def counting(dom, flags=0):
        reads.append(dom.UUIDString())
        return real(dom, flags)

    monkeypatch.setattr(libvirt.virDomain, 'XMLDesc', counting)
    return reads


@pytest.fixture
def agent(monkeypatch):
    def install(**kwargs):
        stand_in = AgentStandIn(**kwargs)
        monkeypatch.setattr(guest_ping.libvirt_qemu, 'qemuAgentCommand',
                            stand_in)
        return stand_in
    return install


@pytest.fixture
def crashed_host(tmp_path):
    node = tmp_path / 'crashed.xml'
    node.write_text('<node>%s\n</node>\n' % domain(
        'crashed', CRASHED, runstate=6, devices=agent_channel()))
    host = libvirt_host.LibvirtHost('test://%s' % node, AGENT)
    host.connect()
    yield host
    host.close()


@pytest.fixture
def calls(monkeypatch):
    """Count calls of some libvirt methods, by name."""
    counts = {}

    def count(cls, name):
        real = getattr(cls, name)

        def counting(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return real(*args, **kwargs)
        monkeypatch.setattr(cls, name, counting)

    for name in ('state', 'XMLDesc'):
        count(libvirt.virDomain, name)
    for name in ('getAllDomainStats', 'listAllDomains', 'lookupByUUIDString'):
        count(libvirt.virConnect, name)
    return counts
