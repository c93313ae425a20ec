"""The bulk stats edge: one libvirt call, counters keyed by UUID, and one
domain's trouble kept to that domain."""

import libvirt
import pytest

from monitor.health import guest_activity as ga
from monitor.virt import stats as libvirt_stats

UUID_A = 'aaaaaaaa-0000-4000-8000-000000000001'
UUID_B = 'bbbbbbbb-0000-4000-8000-000000000002'

GROUPS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU
          | libvirt.VIR_DOMAIN_STATS_INTERFACE
          | libvirt.VIR_DOMAIN_STATS_BLOCK)
NOWAIT = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT


def libvirt_error(code, domain=libvirt.VIR_FROM_QEMU, message='boom'):
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None,
               None, -1, -1)
    return exc


class FakeDomain:
    def __init__(self, uuid, name):
        self._uuid = uuid
        self._name = name

    def UUIDString(self):
        return self._uuid

    def name(self):
        return self._name


# What libvirt 9.0 returned for a lab guest with one virtio disk writing.
LAB_STATS = {
    'state.state': 1, 'state.reason': 1, 'vcpu.current': 1,
    'vcpu.maximum': 1, 'vcpu.0.state': 1, 'vcpu.0.time': 3400000000,
    'vcpu.0.wait': 0, 'vcpu.0.delay': 8324850431, 'block.count': 1,
    'block.0.name': 'vda', 'block.0.path': '/run/ghm-lab/x.disk.img',
    'block.0.backingIndex': 1, 'block.0.rd.reqs': 3,
    'block.0.rd.bytes': 12288, 'block.0.rd.times': 441156,
    'block.0.wr.reqs': 6, 'block.0.wr.bytes': 24576,
    'block.0.wr.times': 7957339, 'block.0.fl.reqs': 6,
    'block.0.fl.times': 8535124, 'block.0.allocation': 24576,
    'block.0.capacity': 8388608, 'block.0.physical': 28672,
}

NET_STATS = {
    'state.state': libvirt.VIR_DOMAIN_CRASHED, 'state.reason': 1,
    'vcpu.current': 2, 'vcpu.maximum': 2, 'vcpu.0.time': 10, 'vcpu.1.time': 5,
    'net.count': 1, 'net.0.name': 'vnet7', 'net.0.rx.bytes': 1000,
    'net.0.rx.pkts': 10, 'net.0.rx.errs': 0, 'net.0.rx.drop': 0,
    'net.0.tx.bytes': 2000, 'net.0.tx.pkts': 20, 'net.0.tx.errs': 0,
    'net.0.tx.drop': 0,
}


class FakeConn:
    def __init__(self, stats=None, fail_list=None, fail_one=None):
        # uuid -> (FakeDomain, stats dict)
        self.stats = stats or {}
        self.fail_list = fail_list
        self.fail_one = fail_one or {}
        self.calls = []

    def getAllDomainStats(self, groups, flags):
        self.calls.append(('all', groups, flags))
        if self.fail_list is not None:
            raise self.fail_list
        return list(self.stats.values())

    def domainListGetStats(self, doms, groups, flags):
        self.calls.append(('list', [d.UUIDString() for d in doms], groups,
                           flags))
        if len(doms) > 1 and self.fail_list is not None:
            raise self.fail_list
        result = []
        for dom in doms:
            uuid = dom.UUIDString()
            if uuid in self.fail_one:
                raise self.fail_one[uuid]
            if uuid in self.stats:
                result.append(self.stats[uuid])
        return result


def clock():
    return 42.0


def domains(*pairs):
    return {uuid: (FakeDomain(uuid, name), stats)
            for uuid, name, stats in pairs}


def test_every_active_domain_in_one_call():
    conn = FakeConn(domains((UUID_A, 'vm-a', LAB_STATS),
                            (UUID_B, 'vm-b', NET_STATS)))

    collected = libvirt_stats.collect(conn, clock=clock)

    assert conn.calls == [
        ('all', GROUPS,
         libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | NOWAIT)]
    assert set(collected.counters) == {UUID_A, UUID_B}
    assert collected.errors == {}


def test_lab_stats_become_named_counters():
    conn = FakeConn(domains((UUID_A, 'vm-a', LAB_STATS)))

    counters = libvirt_stats.collect(conn, clock=clock).counters[UUID_A]

    assert counters == ga.DomainCounters(
        uuid=UUID_A, name='vm-a', at=42.0, state=ga.RUNNING,
        vcpu_time_ns=3400000000, vcpu_count=1,
        disks=(ga.DiskCounters('vda', 3, 12288, 6, 24576, 6),), nics=())


def test_interfaces_and_every_vcpu_are_read():
    conn = FakeConn(domains((UUID_B, 'vm-b', NET_STATS)))

    counters = libvirt_stats.collect(conn, clock=clock).counters[UUID_B]

    assert counters.state == ga.CRASHED
    assert (counters.vcpu_time_ns, counters.vcpu_count) == (15, 2)
    assert counters.nics == (ga.NicCounters('vnet7', 1000, 10, 2000, 20),)


def test_a_subset_is_asked_for_in_one_call():
    conn = FakeConn(domains((UUID_A, 'vm-a', LAB_STATS),
                            (UUID_B, 'vm-b', NET_STATS)))
    dom_a, _ = conn.stats[UUID_A]

    collected = libvirt_stats.collect(conn, [dom_a], clock=clock)

    assert conn.calls == [('list', [UUID_A], GROUPS, NOWAIT)]
    assert set(collected.counters) == {UUID_A}


def test_no_domains_need_no_call():
    conn = FakeConn()

    assert libvirt_stats.collect(conn, [], clock=clock) == (
        libvirt_stats.Collected({}, {}))
    assert conn.calls == []


def test_a_refused_list_is_asked_domain_by_domain():
    conn = FakeConn(
        domains((UUID_A, 'vm-a', LAB_STATS), (UUID_B, 'vm-b', NET_STATS)),
        fail_list=libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED),
        fail_one={UUID_B: libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED,
                                        message='cannot query vm-b')})
    doms = [conn.stats[UUID_A][0], conn.stats[UUID_B][0]]

    collected = libvirt_stats.collect(conn, doms, clock=clock)

    assert set(collected.counters) == {UUID_A}
    assert collected.errors == {UUID_B: 'cannot query vm-b (code %d)'
                                % libvirt.VIR_ERR_OPERATION_FAILED}


def test_a_domain_gone_meanwhile_is_simply_absent():
    conn = FakeConn(
        domains((UUID_A, 'vm-a', LAB_STATS), (UUID_B, 'vm-b', NET_STATS)),
        fail_list=libvirt_error(libvirt.VIR_ERR_NO_DOMAIN),
        fail_one={UUID_B: libvirt_error(libvirt.VIR_ERR_NO_DOMAIN)})
    doms = [conn.stats[UUID_A][0], conn.stats[UUID_B][0]]

    collected = libvirt_stats.collect(conn, doms, clock=clock)

    assert set(collected.counters) == {UUID_A}
    assert collected.errors == {}


def test_garbage_for_one_domain_spares_the_others():
    bad = dict(LAB_STATS, **{'block.0.wr.reqs': 'many'})
    conn = FakeConn(domains((UUID_A, 'vm-a', bad),
                            (UUID_B, 'vm-b', NET_STATS)))

    collected = libvirt_stats.collect(conn, clock=clock)

    assert set(collected.counters) == {UUID_B}
    assert collected.errors[UUID_A].startswith('unreadable domain stats: ')
    assert 'block.0.wr.reqs' in collected.errors[UUID_A]


def test_devices_without_counters_are_left_out():
    # NOWAIT: a domain busy with another job gets no block counters.
    partial = {'state.state': 1, 'block.count': 1, 'block.0.name': 'vda',
               'net.count': 1, 'net.0.name': 'vnet0'}
    conn = FakeConn(domains((UUID_A, 'vm-a', partial)))

    counters = libvirt_stats.collect(conn, clock=clock).counters[UUID_A]

    assert (counters.disks, counters.nics) == ((), ())
    assert (counters.vcpu_time_ns, counters.vcpu_count) == (None, 0)


def test_unknown_states_are_other():
    stats = {'state.state': libvirt.VIR_DOMAIN_SHUTDOWN}
    conn = FakeConn(domains((UUID_A, 'vm-a', stats)))

    assert libvirt_stats.collect(conn, clock=clock).counters[
        UUID_A].state == ga.OTHER


@pytest.mark.parametrize('code,domain', [
    (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_FROM_REMOTE),
    (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC),
])
def test_a_lost_connection_raises(code, domain):
    conn = FakeConn(domains((UUID_A, 'vm-a', LAB_STATS)),
                    fail_list=libvirt_error(code, domain, 'gone'))

    with pytest.raises(libvirt_stats.StatsUnavailable, match='gone'):
        libvirt_stats.collect(conn, clock=clock)
    with pytest.raises(libvirt_stats.StatsUnavailable, match='gone'):
        libvirt_stats.collect(conn, [conn.stats[UUID_A][0]] * 2,
                              clock=clock)


def test_a_lost_connection_while_asking_one_by_one_raises():
    conn = FakeConn(
        domains((UUID_A, 'vm-a', LAB_STATS), (UUID_B, 'vm-b', NET_STATS)),
        fail_list=libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED),
        fail_one={UUID_A: libvirt_error(libvirt.VIR_ERR_NO_CONNECT,
                                        libvirt.VIR_FROM_REMOTE)})
    doms = [conn.stats[UUID_A][0], conn.stats[UUID_B][0]]

    with pytest.raises(libvirt_stats.StatsUnavailable):
        libvirt_stats.collect(conn, doms, clock=clock)


def test_the_real_binding_answers_the_call():
    # libvirt's test driver implements bulk stats (state only).
    conn = libvirt.open('test:///default')
    try:
        everyone = libvirt_stats.collect(conn)
        subset = libvirt_stats.collect(conn, conn.listAllDomains())
    finally:
        conn.close()

    assert everyone.errors == subset.errors == {}
    assert set(everyone.counters) == set(subset.counters)
    [counters] = everyone.counters.values()
    assert counters.state == ga.RUNNING


def test_the_edge_never_logs():
    # It runs in native threads, where a green logging lock can deadlock.
    with open(libvirt_stats.__file__) as source:
        text = source.read()
    assert 'logging' not in text and 'LOG' not in text
