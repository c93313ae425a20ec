"""Listing and describing the active domains: one libvirt call, each XML
read once per run, one domain's trouble its own, its settings read.

Each test opens ``test:///<file>`` on a node description of its own, so it
gets a private hypervisor (tests/unit/virt/libvirt_node.py).
"""

import logging

import libvirt
import pytest

from monitor.virt import domain_xml
from monitor.virt import domains
from monitor.virt import host as libvirt_host
from monitor.virt import metadata as domain_metadata
from tests.unit.virt.libvirt_node import AGENT
from tests.unit.virt.libvirt_node import CRASHED
from tests.unit.virt.libvirt_node import PAUSED
from tests.unit.virt.libvirt_node import PLAIN
from tests.unit.virt.libvirt_node import UNEXPECTED
from tests.unit.virt.libvirt_node import UNKNOWN
from tests.unit.virt.libvirt_node import WITH_AGENT
from tests.unit.virt.libvirt_node import agent_channel
from tests.unit.virt.libvirt_node import by_uuid
from tests.unit.virt.libvirt_node import domain
from tests.unit.virt.libvirt_node import libvirt_error
from tests.unit.virt.libvirt_node import notes_of
from tests.unit.virt.libvirt_node import raising_for
from tests.unit.virt.libvirt_node import set_monitor_element


def test_list_domains_describes_active_domains_and_their_agent(connected):
    infos = by_uuid(connected.list_domains())

    assert set(infos) == {PLAIN, WITH_AGENT, PAUSED}  # not the shut-off one
    assert infos[PLAIN] == domains.DomainInfo(
        uuid=PLAIN, name='plain', running=True, paused=False, agent=None,
        settings=domain_metadata.DEFAULTS)
    assert infos[WITH_AGENT] == domains.DomainInfo(
        uuid=WITH_AGENT, name='with-agent', running=True, paused=False,
        agent=domain_xml.AgentChannel(
            AGENT, '/var/lib/libvirt/qemu/channel/target/ga.sock', None),
        settings=domain_metadata.DEFAULTS)
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


def test_the_listing_lets_go_of_each_of_libvirts_records_once_taken(
        connected, monkeypatch):
    real = libvirt.virConnect.getAllDomainStats
    handed = []
    order = []
    left_when_described = []
    describe = connected._listing._describe

    def keep(self, stats=0, flags=0):
        handed.append(real(self, stats, flags))
        order.extend(dom.UUIDString() for dom, _record in handed[-1])
        return handed[-1]

    def count_left(*args):
        left_when_described.append(len(handed[-1]))
        return describe(*args)

    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats', keep)
    monkeypatch.setattr(connected._listing, '_describe', count_left)

    infos = connected.list_domains()

    # In libvirt's order, each record gone before the next is described.
    assert [i.uuid for i in infos] == order
    assert left_when_described == [2, 1, 0]
    assert handed == [[]]


def test_listing_without_a_connection_is_unavailable(host):
    with pytest.raises(libvirt_host.LibvirtUnavailable):
        host.list_domains()


def test_listing_on_a_lost_connection_is_unavailable(connected):
    connected.connection.close()
    with pytest.raises(libvirt_host.LibvirtUnavailable):
        connected.list_domains()


def test_a_domain_libvirt_keeps_crashed_is_listed_as_crashed(crashed_host):
    [info] = crashed_host.list_domains()
    assert (info.uuid, info.running, info.paused, info.crashed) == (
        CRASHED, False, False, True)


def test_one_call_lists_every_active_domain_with_its_state(connected, calls):
    connected.list_domains()
    calls.clear()

    infos = by_uuid(connected.list_domains())

    assert calls == {'getAllDomainStats': 1}
    assert infos[PAUSED].paused and infos[WITH_AGENT].running


def test_the_domain_object_is_not_part_of_the_listed_value(connected):
    info = by_uuid(connected.list_domains())[PLAIN]
    assert info.dom is not None
    assert info == domains.DomainInfo(PLAIN, 'plain', True, False, None,
                                      settings=domain_metadata.DEFAULTS)
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
    real = domains.domain_xml.find_agent_channel

    def find(xml, *args):
        if 'with-agent' in xml:
            raise exc
        return real(xml, *args)

    monkeypatch.setattr(domains.domain_xml, 'find_agent_channel', find)

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


def test_a_domain_that_cannot_tell_its_uuid_is_warned_about_once(
        connected, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger='monitor')
    raising_for(monkeypatch, libvirt.virDomain, 'UUIDString', WITH_AGENT,
                UnicodeDecodeError('utf-8', b'\xff', 0, 1, 'bad uuid'))

    for _ in range(3):
        connected.list_domains()
    connected.log_notes()

    assert len(caplog.records) == 1


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
    first = by_uuid(connected.list_domains())[WITH_AGENT]
    set_monitor_element(connected, WITH_AGENT, '<monitor action="reset"/>')

    read = connected.refresh_settings(WITH_AGENT)

    assert read.settings == domain_metadata.DomainSettings(True, None,
                                                           'reset')
    assert read.error is None
    assert read.read_at > first.settings_read_at
    assert connected.refresh_settings(UNKNOWN) is None


def test_settings_are_handed_over_only_by_a_listing_that_read_them(
        connected, xml_reads):
    # The XML is read once per run of a domain; the daemon keeps what
    # was read, and a listing that read nothing says nothing.
    assert by_uuid(connected.list_domains())[WITH_AGENT].settings \
        == domain_metadata.DEFAULTS
    again = by_uuid(connected.list_domains())[WITH_AGENT]
    assert again.settings is None and again.settings_read_at is None
    assert len(xml_reads) == 3


def test_a_reread_has_the_next_listing_read_the_xml_again(connected,
                                                          xml_reads):
    connected.list_domains()
    set_monitor_element(connected, WITH_AGENT, '<monitor action="reset"/>')

    connected.reread_settings(WITH_AGENT)
    infos = by_uuid(connected.list_domains())
    assert infos[WITH_AGENT].settings.action == 'reset'
    assert infos[PLAIN].settings is None
    connected.reread_settings()
    assert all(info.settings is not None
               for info in connected.list_domains())
    assert sorted(xml_reads) == sorted([PLAIN, PAUSED] * 2
                                       + [WITH_AGENT] * 3)


def test_a_refresh_that_fails_leaves_the_domain_to_the_next_listing(
        connected, monkeypatch):
    connected.list_domains()
    set_monitor_element(connected, WITH_AGENT, '<monitor action="reset"/>')
    raising_for(monkeypatch, libvirt.virDomain, 'XMLDesc', WITH_AGENT,
                libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR,
                              libvirt.VIR_FROM_QEMU, 'internal error'))

    assert connected.refresh_settings(WITH_AGENT) is None
    monkeypatch.undo()

    assert by_uuid(connected.list_domains())[WITH_AGENT].settings.action \
        == 'reset'



def test_a_domain_paused_on_an_io_error_is_listed_with_its_disk_errors(
        connected, monkeypatch):
    real = libvirt.virConnect.getAllDomainStats

    def io_paused(self, stats=0, flags=0):
        return [(dom, dict(record, **{
                    'state.reason': libvirt.VIR_DOMAIN_PAUSED_IOERROR})
                 if dom.UUIDString() == PAUSED else record)
                for dom, record in real(self, stats, flags)]

    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats', io_paused)
    monkeypatch.setattr(libvirt.virDomain, 'diskErrors', lambda dom, flags: {
        'vdb': libvirt.VIR_DOMAIN_DISK_ERROR_NO_SPACE,
        'vda': libvirt.VIR_DOMAIN_DISK_ERROR_UNSPEC})

    infos = by_uuid(connected.list_domains())

    assert infos[PAUSED].io_error == 'vda: I/O error, vdb: no space left'
    assert infos[WITH_AGENT].io_error is None


def test_a_domain_paused_by_a_client_has_no_io_error(connected):
    assert by_uuid(connected.list_domains())[PAUSED].io_error is None


def test_disk_errors_libvirt_cannot_give_leave_the_pause_listed(
        connected, monkeypatch):
    real = libvirt.virConnect.getAllDomainStats

    def io_paused(self, stats=0, flags=0):
        return [(dom, dict(record, **{
                    'state.reason': libvirt.VIR_DOMAIN_PAUSED_IOERROR}))
                for dom, record in real(self, stats, flags)]

    def refused(dom, flags):
        raise libvirt_error(libvirt.VIR_ERR_NO_SUPPORT,
                            libvirt.VIR_FROM_QEMU, 'not supported')

    monkeypatch.setattr(libvirt.virConnect, 'getAllDomainStats', io_paused)
    monkeypatch.setattr(libvirt.virDomain, 'diskErrors', refused)

    assert by_uuid(connected.list_domains())[PAUSED].io_error == ''
