"""The test hook that makes one named domain's libvirt answers raise."""

import pytest

from monitor.health.ping_outcome import Outcome
from monitor.virt import fault_hook
from monitor.virt import host as libvirt_host
from tests.unit.virt.libvirt_node import AGENT
from tests.unit.virt.libvirt_node import PAUSED
from tests.unit.virt.libvirt_node import PLAIN
from tests.unit.virt.libvirt_node import by_uuid


def test_the_fault_hook_makes_one_named_domain_raise_when_pinged(uri, agent):
    agent(reply='{"return": {}}')
    host = libvirt_host.LibvirtHost(uri, AGENT, faulty_domain='with-agent')
    host.connect()
    try:
        outcomes = {info.name: host.ping(info, 2).outcome
                    for info in host.list_domains()}
    finally:
        host.close()
    assert outcomes == {'with-agent': Outcome.ERROR, 'plain': Outcome.OK,
                        'paused': Outcome.OK}


def test_the_fault_hook_can_make_the_listing_raise(uri):
    host = libvirt_host.LibvirtHost(uri, AGENT,
                                    faulty_domain='with-agent:list')
    host.connect()
    try:
        assert set(by_uuid(host.list_domains())) == {PLAIN, PAUSED}
    finally:
        host.close()


def test_the_fault_hook_is_read_from_the_environment(monkeypatch, tmp_path):
    from tests.unit.daemon import test_metrics_server as test_metrics_server
    monkeypatch.setenv(fault_hook.FAULTY_DOMAIN_ENV, 'vm-1:list')
    conf = test_metrics_server.conf_with(tmp_path)

    host = libvirt_host.LibvirtHost.from_conf(conf)

    assert host.fault_hook == fault_hook.FaultHook('vm-1', 'list')


def test_a_fault_hook_with_an_unknown_stage_is_refused(uri):
    with pytest.raises(ValueError, match='list or ping'):
        libvirt_host.LibvirtHost(uri, AGENT, faulty_domain='vm-1:xml')
