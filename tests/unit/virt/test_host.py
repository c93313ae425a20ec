"""The libvirt edge against libvirt's own daemon-less test driver.

Each test opens ``test:///<file>`` on a node description of its own, so it
gets a private hypervisor. The test driver cannot run guest-agent commands;
replies and agent errors come from a stand-in for
``libvirt_qemu.qemuAgentCommand``.
"""

import json
import logging
import time

import libvirt
import pytest

from monitor.health.ping_outcome import Outcome
from monitor.virt import domain_xml
from monitor.virt import host as libvirt_host
from monitor.virt import metadata as domain_metadata

AGENT = 'org.qemu.guest_agent.0'

PLAIN = 'aaaaaaaa-0000-4000-8000-000000000001'
WITH_AGENT = 'aaaaaaaa-0000-4000-8000-000000000002'
PAUSED = 'aaaaaaaa-0000-4000-8000-000000000003'
SHUT_OFF = 'aaaaaaaa-0000-4000-8000-000000000004'
UNKNOWN = 'aaaaaaaa-0000-4000-8000-0000000000ff'


def domain(name, uuid, runstate=1, devices=''):
    return f"""
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>{name}</name>
    <uuid>{uuid}</uuid>
    <memory>1024</memory>
    <os><type>hvm</type></os>
    <devices>{devices}</devices>
    <test:runstate>{runstate}</test:runstate>
  </domain>"""


def agent_channel(path='/var/lib/libvirt/qemu/channel/target/ga.sock',
                  name=AGENT):
    return f"""
      <channel type='unix'>
        <source mode='bind' path='{path}'/>
        <target type='virtio' name='{name}'/>
      </channel>"""


NODE = '<node>%s\n</node>\n' % ''.join([
    domain('plain', PLAIN),
    domain('with-agent', WITH_AGENT, devices=agent_channel()),
    domain('paused', PAUSED, runstate=3, devices=agent_channel(
        '/run/paused.sock')),
    domain('shut-off', SHUT_OFF, runstate=5, devices=agent_channel()),
])


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


def libvirt_error(code, domain, message):
    """A libvirtError as the binding raises it for (code, domain)."""
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None,
               None, -1, -1)
    return exc


def by_uuid(infos):
    return {info.uuid: info for info in infos}


# -- connection ---------------------------------------------------------------

def test_connect_opens_a_live_connection_even_without_keepalive(host):
    # The test driver runs in-process and refuses keepalive as not
    # supported; that must not make it unreachable.
    assert host.keepalive_interval > 0
    conn = host.connect(on_close=lambda reason, conn: None)

    assert host.connection is conn
    assert host.is_alive()

    host.close()
    assert host.connection is None
    assert not host.is_alive()
    host.close()  # closing twice is harmless


def test_an_unreachable_libvirt_is_reported_without_noise(capfd):
    host = libvirt_host.LibvirtHost(
        'qemu+unix:///system?socket=/nonexistent/libvirt-sock', AGENT)

    with pytest.raises(libvirt_host.LibvirtUnavailable) as err:
        host.connect()

    assert '/nonexistent/libvirt-sock' in str(err.value)
    assert host.connection is None
    assert not host.is_alive()
    # libvirt's default handler would print the error on stderr as well.
    assert capfd.readouterr().err == ''


def test_a_lost_connection_is_not_alive(connected):
    connected.connection.close()
    assert not connected.is_alive()


# -- listing -------------------------------------------------------------------

def test_list_domains_describes_active_domains_and_their_agent(connected):
    infos = by_uuid(connected.list_domains())

    assert set(infos) == {PLAIN, WITH_AGENT, PAUSED}  # not the shut-off one
    assert infos[PLAIN] == libvirt_host.DomainInfo(
        uuid=PLAIN, name='plain', running=True, paused=False, agent=None)
    assert infos[WITH_AGENT] == libvirt_host.DomainInfo(
        uuid=WITH_AGENT, name='with-agent', running=True, paused=False,
        agent=domain_xml.AgentChannel(
            AGENT, '/var/lib/libvirt/qemu/channel/target/ga.sock', None))
    assert infos[PAUSED].running is False
    assert infos[PAUSED].paused is True
    assert infos[PAUSED].agent.path == '/run/paused.sock'


def test_the_agent_channel_is_matched_by_its_configured_name(uri):
    host = libvirt_host.LibvirtHost(uri, 'org.example.other_agent.0')
    host.connect()
    try:
        assert all(info.agent is None for info in host.list_domains())
    finally:
        host.close()


def test_the_path_filter_leaves_other_channels_unmonitored(uri):
    host = libvirt_host.LibvirtHost(uri, AGENT,
                                    agent_channel_path_regex=r'^/run/')
    host.connect()
    try:
        infos = by_uuid(host.list_domains())
    finally:
        host.close()
    assert infos[WITH_AGENT].agent is None
    assert infos[PAUSED].agent.path == '/run/paused.sock'


def test_a_paused_domain_resumed_is_running_again(connected):
    connected.connection.lookupByUUIDString(PAUSED).resume()
    info = by_uuid(connected.list_domains())[PAUSED]
    assert (info.running, info.paused) == (True, False)


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


def test_the_xml_is_read_once_per_run_of_a_domain(connected, xml_reads):
    connected.list_domains()
    connected.list_domains()
    assert sorted(xml_reads) == sorted([PLAIN, WITH_AGENT, PAUSED])


def test_a_restarted_domain_is_read_again_and_new_devices_seen(connected,
                                                               xml_reads):
    conn = connected.connection
    assert by_uuid(connected.list_domains())[PLAIN].agent is None

    dom = conn.lookupByUUIDString(PLAIN)
    dom.destroy()
    # Redefined with an agent channel while shut off, then started: a new
    # run with a new domain id.
    conn.defineXML(domain('plain', PLAIN, devices=agent_channel()))
    dom.create()
    xml_reads.clear()

    info = by_uuid(connected.list_domains())[PLAIN]

    assert xml_reads == [PLAIN]
    assert info.agent is not None and info.agent.name == AGENT


def test_a_domain_that_stopped_is_no_longer_listed(connected):
    connected.list_domains()
    connected.connection.lookupByUUIDString(WITH_AGENT).destroy()
    assert WITH_AGENT not in by_uuid(connected.list_domains())


def test_unreadable_xml_skips_the_domain_and_is_logged_once(
        connected, monkeypatch, caplog):
    real = libvirt.virDomain.XMLDesc
    broken = {WITH_AGENT}

    def xml_desc(dom, flags=0):
        if dom.UUIDString() in broken:
            return '<domain><name>with-agent'
        return real(dom, flags)

    monkeypatch.setattr(libvirt.virDomain, 'XMLDesc', xml_desc)
    caplog.set_level(logging.INFO, logger='monitor')

    first = by_uuid(connected.list_domains())
    second = by_uuid(connected.list_domains())
    connected.log_notes()

    assert set(first) == set(second) == {PLAIN, PAUSED}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 'with-agent' in warnings[0].getMessage()
    assert WITH_AGENT in warnings[0].getMessage()

    broken.clear()
    assert by_uuid(connected.list_domains())[WITH_AGENT].agent is not None


def test_a_domain_vanishing_while_listed_is_skipped(connected, monkeypatch):
    conn = connected.connection
    transient = conn.createXML(
        domain('transient', 'aaaaaaaa-0000-4000-8000-000000000005',
               devices=agent_channel()), 0)
    real = libvirt.virConnect.getAllDomainStats

    def list_then_vanish(self, stats=0, flags=0):
        domains = real(self, stats, flags)
        transient.destroy()  # a transient domain is gone for good
        return domains

    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats',
                        list_then_vanish)

    assert set(by_uuid(connected.list_domains())) == {
        PLAIN, WITH_AGENT, PAUSED}
    [note] = [n for n in connected.drain_notes() if n.stage != 'connect']
    assert (note.uuid, note.kind, note.error) == (
        'aaaaaaaa-0000-4000-8000-000000000005', 'vanished', False)


def test_listing_without_a_connection_is_unavailable(host):
    with pytest.raises(libvirt_host.LibvirtUnavailable):
        host.list_domains()


def test_listing_on_a_lost_connection_is_unavailable(connected):
    connected.connection.close()
    with pytest.raises(libvirt_host.LibvirtUnavailable):
        connected.list_domains()


# -- ping -------------------------------------------------------------------------

def test_a_driver_that_cannot_run_agent_commands_means_no_agent(connected):
    before = time.time()
    result = connected.ping(WITH_AGENT, 2)

    assert result.outcome is Outcome.NO_AGENT
    assert 'not supported' in result.detail
    assert 'code %d' % libvirt.VIR_ERR_NO_SUPPORT in result.detail
    assert before <= result.started_at <= time.time()
    assert result.duration >= 0


class AgentStandIn:
    """Replaces libvirt_qemu.qemuAgentCommand: answers or raises."""

    def __init__(self, reply=None, error=None, before=None):
        self.reply = reply
        self.error = error
        self.before = before
        self.calls = []

    def __call__(self, dom, command, timeout, flags):
        self.calls.append((dom.UUIDString(), json.loads(command), timeout,
                           flags))
        if self.before is not None:
            self.before()
        if self.error is not None:
            raise self.error
        return self.reply


@pytest.fixture
def agent(monkeypatch):
    def install(**kwargs):
        stand_in = AgentStandIn(**kwargs)
        monkeypatch.setattr(libvirt_host.libvirt_qemu, 'qemuAgentCommand',
                            stand_in)
        return stand_in
    return install


def test_an_answered_ping_is_ok(connected, agent):
    stand_in = agent(reply='{"return": {}}')

    result = connected.ping(WITH_AGENT, 2)

    assert (result.outcome, result.detail) == (Outcome.OK, 'ok')
    assert stand_in.calls == [
        (WITH_AGENT, {'execute': 'guest-ping'}, 2, 0)]


@pytest.mark.parametrize('timeout, sent', [(0.3, 1), (2.7, 2), (5, 5)])
def test_the_timeout_is_whole_seconds_and_at_least_one(connected, agent,
                                                       timeout, sent):
    stand_in = agent(reply='{"return": {}}')
    connected.ping(WITH_AGENT, timeout)
    assert stand_in.calls[0][2] == sent


def test_a_garbage_reply_is_a_miss(connected, agent):
    agent(reply='{"error": {"class": "CommandNotFound"}}')
    result = connected.ping(WITH_AGENT, 2)
    assert result.outcome is Outcome.MISSED
    assert 'CommandNotFound' in result.detail


def test_an_unresponsive_agent_is_a_miss(connected, agent):
    agent(error=libvirt_error(
        libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_FROM_QEMU,
        'Guest agent is not responding: QEMU guest agent is not connected'))

    result = connected.ping(WITH_AGENT, 2)

    assert result.outcome is Outcome.MISSED
    assert 'not responding' in result.detail
    assert 'code %d' % libvirt.VIR_ERR_AGENT_UNRESPONSIVE in result.detail


def test_a_domain_not_running_is_not_a_miss(connected, agent):
    agent(error=libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID,
                              libvirt.VIR_FROM_QEMU,
                              'domain is not running'))
    assert connected.ping(PAUSED, 2).outcome is Outcome.NOT_RUNNING


def test_a_domain_that_no_longer_exists_is_gone(connected, agent):
    stand_in = agent(reply='{"return": {}}')

    result = connected.ping(UNKNOWN, 2)

    assert result.outcome is Outcome.GONE
    assert stand_in.calls == []  # the lookup already failed


def test_a_miss_on_a_connection_that_died_meanwhile_is_a_disconnect(
        connected, agent):
    # The connection dies while the ping waits; libvirt reports the RPC
    # failure with a code that would otherwise be the guest's miss.
    agent(before=lambda: connected.connection.close(),
          error=libvirt_error(libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                              libvirt.VIR_FROM_QEMU, 'no answer'))

    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.DISCONNECTED


def test_a_miss_on_a_live_connection_stays_a_miss(connected, agent):
    agent(error=libvirt_error(9999, libvirt.VIR_FROM_QEMU, 'new error'))
    assert connected.is_alive()
    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.MISSED


def test_an_rpc_failure_is_a_disconnect(connected, agent):
    agent(error=libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR,
                              libvirt.VIR_FROM_RPC,
                              'Cannot recv data: Connection reset by peer'))
    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.DISCONNECTED


def test_ping_without_a_connection_is_a_disconnect(host):
    result = host.ping(WITH_AGENT, 2)
    assert result.outcome is Outcome.DISCONNECTED



CRASHED = 'aaaaaaaa-0000-4000-8000-000000000006'


@pytest.fixture
def crashed_host(tmp_path):
    node = tmp_path / 'crashed.xml'
    node.write_text('<node>%s\n</node>\n' % domain(
        'crashed', CRASHED, runstate=6, devices=agent_channel()))
    host = libvirt_host.LibvirtHost('test://%s' % node, AGENT)
    host.connect()
    yield host
    host.close()


def test_a_domain_libvirt_keeps_crashed_is_listed_as_crashed(crashed_host):
    [info] = crashed_host.list_domains()
    assert (info.uuid, info.running, info.paused, info.crashed) == (
        CRASHED, False, False, True)


def test_a_crashed_domain_is_a_miss_not_a_stopped_one(crashed_host, agent):
    agent(error=libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID,
                              libvirt.VIR_FROM_QEMU,
                              'domain is not running'))
    result = crashed_host.ping(CRASHED, 2)
    assert result.outcome is Outcome.MISSED
    assert 'crashed' in result.detail


# -- one libvirt call for the listing, none for a ping's lookup ------------------


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


def test_one_call_lists_every_active_domain_with_its_state(connected, calls):
    connected.list_domains()
    calls.clear()

    infos = by_uuid(connected.list_domains())

    assert calls == {'getAllDomainStats': 1}
    assert infos[PAUSED].paused and infos[WITH_AGENT].running


def test_a_ping_reuses_the_domain_object_of_the_listing(connected, agent,
                                                        calls):
    stand_in = agent(reply='{"return": {}}')
    info = by_uuid(connected.list_domains())[WITH_AGENT]
    calls.clear()

    result = connected.ping(info, 2)

    assert result.outcome is Outcome.OK
    assert calls == {}
    assert stand_in.calls[0][0] == WITH_AGENT


def test_the_domain_object_is_not_part_of_the_listed_value(connected):
    info = by_uuid(connected.list_domains())[PLAIN]
    assert info.dom is not None
    assert info == libvirt_host.DomainInfo(PLAIN, 'plain', True, False, None)
    assert 'dom' not in repr(info)


def test_a_driver_without_bulk_stats_is_listed_domain_by_domain(
        connected, monkeypatch):
    def no_bulk_stats(self, stats=0, flags=0):
        raise libvirt_error(libvirt.VIR_ERR_NO_SUPPORT, 0, 'not supported')

    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats',
                        no_bulk_stats)

    infos = by_uuid(connected.list_domains())
    assert set(infos) == {PLAIN, WITH_AGENT, PAUSED}
    assert infos[PAUSED].paused


# -- one domain's trouble is that domain's alone ----------------------------------

UNEXPECTED = [
    UnicodeDecodeError('utf-8', b'\xff', 0, 1, 'invalid start byte'),
    RecursionError('maximum recursion depth exceeded'),
    OverflowError('int too large to convert'),
    ValueError('Exceeds the limit (4300 digits) for integer string'),
    KeyError('state.state'),
    UnboundLocalError("local variable 'dom' referenced before assignment"),
]


def raising_for(monkeypatch, cls, method, uuid, exc):
    """Make ``cls.method`` raise ``exc`` for the domain ``uuid`` only."""
    real = getattr(cls, method)
    real_uuid = libvirt.virDomain.UUIDString

    def maybe_raise(dom, *args, **kwargs):
        if real_uuid(dom) == uuid:
            raise exc
        return real(dom, *args, **kwargs)

    monkeypatch.setattr(cls, method, maybe_raise)


def notes_of(host):
    return [n for n in host.drain_notes() if n.stage != 'connect']


@pytest.mark.parametrize('exc', UNEXPECTED, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize('method', ['UUIDString', 'name', 'ID', 'XMLDesc'])
def test_anything_raised_describing_one_domain_skips_that_domain_only(
        connected, monkeypatch, method, exc):
    raising_for(monkeypatch, libvirt.virDomain, method, WITH_AGENT, exc)

    infos = by_uuid(connected.list_domains())

    assert set(infos) == {PLAIN, PAUSED}
    [note] = notes_of(connected)
    assert (note.stage, note.kind, note.error) == (
        'list', type(exc).__name__, True)


@pytest.mark.parametrize('exc', UNEXPECTED, ids=lambda e: type(e).__name__)
def test_anything_raised_asking_one_domain_for_its_state_skips_it(
        connected, monkeypatch, exc):
    # A bulk-stats record without a state makes the listing ask the
    # domain itself.
    real = libvirt.virConnect.getAllDomainStats

    def without_state(self, stats=0, flags=0):
        return [(dom, {} if dom.UUIDString() == WITH_AGENT else record)
                for dom, record in real(self, stats, flags)]

    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats',
                        without_state)
    raising_for(monkeypatch, libvirt.virDomain, 'state', WITH_AGENT, exc)

    assert set(by_uuid(connected.list_domains())) == {PLAIN, PAUSED}
    assert [n.kind for n in notes_of(connected)] == [type(exc).__name__]


@pytest.mark.parametrize('exc', UNEXPECTED, ids=lambda e: type(e).__name__)
def test_anything_raised_reading_one_domain_xml_skips_it(connected,
                                                         monkeypatch, exc):
    real = libvirt_host.domain_xml.find_agent_channel

    def find(xml, *args):
        if 'with-agent' in xml:
            raise exc
        return real(xml, *args)

    monkeypatch.setattr(libvirt_host.domain_xml, 'find_agent_channel', find)

    assert set(by_uuid(connected.list_domains())) == {PLAIN, PAUSED}
    [note] = notes_of(connected)
    assert (note.stage, note.kind) == ('xml', type(exc).__name__)


@pytest.mark.parametrize('xml', [
    '<domain>' + '<a>' * 100000 + '</a>' * 100000 + '</domain>',
    b'<domain><name>\xff\xfe</name></domain>',
    '<domain><name>x</name><devices><channel type="unix"><target '
    'type="virtio" name="org.qemu.guest_agent.0"/>',
], ids=['deeply-nested', 'not-utf-8', 'truncated'])
def test_hostile_domain_xml_skips_that_domain_only(connected, monkeypatch,
                                                   xml):
    real = libvirt.virDomain.XMLDesc
    monkeypatch.setattr(
        libvirt.virDomain, 'XMLDesc',
        lambda dom, flags=0: xml if dom.UUIDString() == WITH_AGENT
        else real(dom, flags))

    assert set(by_uuid(connected.list_domains())) == {PLAIN, PAUSED}
    assert [n.stage for n in notes_of(connected)] == ['xml']


@pytest.mark.parametrize('exc', UNEXPECTED, ids=lambda e: type(e).__name__)
def test_anything_raised_by_the_agent_command_is_an_error_not_a_miss(
        connected, agent, exc):
    agent(error=exc)
    info = by_uuid(connected.list_domains())[WITH_AGENT]

    result = connected.ping(info, 2)

    assert result.outcome is Outcome.ERROR
    assert result.error_kind == type(exc).__name__
    [note] = notes_of(connected)
    assert (note.stage, note.uuid, note.name, note.kind) == (
        'ping', WITH_AGENT, 'with-agent', type(exc).__name__)


@pytest.mark.parametrize('exc', UNEXPECTED, ids=lambda e: type(e).__name__)
def test_anything_raised_looking_a_domain_up_is_an_error(connected, agent,
                                                         monkeypatch, exc):
    agent(reply='{"return": {}}')

    def lookup(self, uuid):
        raise exc

    monkeypatch.setattr(libvirt.virConnect, 'lookupByUUIDString', lookup)

    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.ERROR


def test_anything_raised_classifying_a_reply_is_an_error(connected, agent,
                                                          monkeypatch):
    agent(reply='{"return": {}}')

    def classify(reply):
        raise OverflowError('cannot classify')

    monkeypatch.setattr(libvirt_host.ping_outcome, 'classify_reply',
                        classify)

    result = connected.ping(WITH_AGENT, 2)
    assert (result.outcome, result.error_kind) == (Outcome.ERROR,
                                                    'OverflowError')


@pytest.mark.parametrize('reply', [
    '[' * 100000 + ']' * 100000,
    '{"return": %s}' % ('9' * 100000),
    '{"return": {}, "x": "%s"}' % ('a' * 1000000),
], ids=['deeply-nested', 'huge-number', 'huge'])
def test_a_hostile_agent_reply_is_a_miss_and_never_raises(connected, agent,
                                                          reply):
    agent(reply=reply)
    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.MISSED


def test_one_domain_raising_leaves_the_others_pinged(connected, monkeypatch):
    replies = {WITH_AGENT: RecursionError('deep'), PLAIN: '{"return": {}}',
               PAUSED: '{"return": {}}'}

    def command(dom, command, timeout, flags):
        reply = replies[dom.UUIDString()]
        if isinstance(reply, Exception):
            raise reply
        return reply

    monkeypatch.setattr(libvirt_host.libvirt_qemu, 'qemuAgentCommand',
                        command)

    outcomes = {info.uuid: connected.ping(info, 2).outcome
                for info in connected.list_domains()}

    assert outcomes == {WITH_AGENT: Outcome.ERROR, PLAIN: Outcome.OK,
                        PAUSED: Outcome.OK}


# -- logged by the green side, once per domain and kind ------------------------------


class Counting:
    def __init__(self):
        self.stages = []

    def domain_error(self, stage):
        self.stages.append(stage)


def test_an_error_is_logged_once_per_domain_and_kind_and_always_counted(
        connected, agent, caplog):
    caplog.set_level(logging.DEBUG, logger='monitor')
    agent(error=RecursionError('deep'))
    info = by_uuid(connected.list_domains())[WITH_AGENT]
    counted = Counting()

    for _ in range(3):
        connected.ping(info, 2)
    connected.log_notes(counted)

    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 'with-agent' in warnings[0] and WITH_AGENT in warnings[0]
    assert 'RecursionError' in warnings[0]
    assert counted.stages == ['ping'] * 3


def test_an_error_after_a_recovery_is_logged_again(connected, agent,
                                                   caplog):
    caplog.set_level(logging.WARNING, logger='monitor')
    info = by_uuid(connected.list_domains())[WITH_AGENT]

    for error in (RecursionError('deep'), None, RecursionError('deep')):
        agent(error=error, reply='{"return": {}}')
        connected.ping(info, 2)
    connected.log_notes()

    assert len(caplog.records) == 2


def test_notes_wait_for_the_green_side_and_are_logged_there(connected,
                                                            agent, caplog):
    caplog.set_level(logging.DEBUG, logger='monitor')
    agent(error=RecursionError('deep'))

    connected.ping(WITH_AGENT, 2)

    assert caplog.records == []
    connected.log_notes()
    assert caplog.records


# -- the test hook: one domain whose libvirt answers raise -------------------------


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
    monkeypatch.setenv(libvirt_host.FAULTY_DOMAIN_ENV, 'vm-1:list')
    conf = test_metrics_server.conf_with(tmp_path)

    host = libvirt_host.LibvirtHost.from_conf(conf)

    assert (host._faulty_name, host._faulty_stage) == ('vm-1', 'list')


def test_a_fault_hook_with_an_unknown_stage_is_refused(uri):
    with pytest.raises(ValueError, match='list or ping'):
        libvirt_host.LibvirtHost(uri, AGENT, faulty_domain='vm-1:xml')


def test_an_error_pinging_by_uuid_still_names_the_domain(connected, agent):
    agent(error=RecursionError('deep'))

    connected.ping(WITH_AGENT, 2)

    [note] = notes_of(connected)
    assert (note.uuid, note.name) == (WITH_AGENT, 'with-agent')


def test_a_domain_that_cannot_tell_its_uuid_is_warned_about_once(
        connected, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger='monitor')
    raising_for(monkeypatch, libvirt.virDomain, 'UUIDString', WITH_AGENT,
                UnicodeDecodeError('utf-8', b'\xff', 0, 1, 'bad uuid'))

    for _ in range(3):
        connected.list_domains()
    connected.log_notes()

    assert len(caplog.records) == 1


# -- the domain's own settings (metadata) ---------------------------------------

def set_monitor_element(host, uuid, text):
    host.connection.lookupByUUIDString(uuid).setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, text, domain_metadata.KEY,
        domain_metadata.NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def test_a_listing_gives_each_domain_its_settings(connected):
    set_monitor_element(connected, WITH_AGENT,
                        '<monitor enabled="no" failure_threshold="5"/>')

    listed = by_uuid(connected.list_domains())

    assert listed[WITH_AGENT].settings == domain_metadata.DomainSettings(
        False, 5, None)
    assert listed[WITH_AGENT].settings_error is None
    assert listed[PAUSED].settings == domain_metadata.DEFAULTS


def test_an_invalid_element_gives_the_defaults_and_says_why(connected):
    set_monitor_element(connected, WITH_AGENT, '<monitor enable="no"/>')

    info = by_uuid(connected.list_domains())[WITH_AGENT]

    assert info.settings == domain_metadata.DEFAULTS
    assert 'unknown attribute enable="no"' in info.settings_error


def test_a_metadata_change_is_seen_after_refresh_settings(connected):
    assert by_uuid(connected.list_domains())[WITH_AGENT].settings.enabled
    set_monitor_element(connected, WITH_AGENT, '<monitor action="reset"/>')

    # The XML is read once per run of a domain: a change needs a refresh.
    parsed = connected.refresh_settings(WITH_AGENT)

    assert parsed == (domain_metadata.DomainSettings(True, None, 'reset'),
                      None)
    assert by_uuid(connected.list_domains())[WITH_AGENT].settings.action \
        == 'reset'
    assert connected.refresh_settings(UNKNOWN) is None
