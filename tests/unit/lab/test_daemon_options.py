"""The lab daemon's settings: in parallel test processes on one libvirtd,
each daemon watches its own process's guests alone."""

import os

from lab import daemon as lab_daemon
from lab import guests
from monitor.virt import domain_xml

# A running lab domain as libvirt shows it: the agent channel's socket in
# the directory libvirt names after the domain (domain-ID-NAME).
LIVE_XML = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>3b1c6a4e-5f7d-4c2b-9a8e-1d2f3a4b5c6d</uuid>
  <devices>
    <channel type='unix'>
      <source mode='bind' path='{channels}/domain-{id}-{name}/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
    </channel>
  </devices>
</domain>"""
CHANNELS = '/var/lib/libvirt/qemu/channel/target'


def options(monkeypatch, worker):
    if worker is None:
        monkeypatch.delenv('PYTEST_XDIST_WORKER', raising=False)
    else:
        monkeypatch.setenv('PYTEST_XDIST_WORKER', worker)
    return lab_daemon.lab_options('/nonexistent', 'http://127.0.0.1:1',
                                  'lab-host')


def watched(options, name, domain_id=7):
    regex = options['monitor'].get('agent_channel_path_regex')
    xml = LIVE_XML.format(channels=CHANNELS, name=name, id=domain_id)
    return domain_xml.find_agent_channel(
        xml, 'org.qemu.guest_agent.0', regex) is not None


def test_in_a_parallel_test_process_the_daemon_watches_its_own_guests(
        monkeypatch):
    settings = options(monkeypatch, 'gw1')

    assert watched(settings, guests.next_name())
    assert watched(settings, guests.next_name(), domain_id=1234)


def test_in_a_parallel_test_process_another_process_guests_are_not_watched(
        monkeypatch):
    settings = options(monkeypatch, 'gw0')
    other = '%s%d-1' % (guests.NAME_PREFIX, os.getpid() + 1)
    # A pid whose digits start with ours must not match either.
    longer = '%s%d1-1' % (guests.NAME_PREFIX, os.getpid())

    assert not watched(settings, other)
    assert not watched(settings, longer)
    assert not watched(settings, 'instance-0000002a')


def test_in_one_test_process_the_daemon_keeps_its_default_of_no_filter(
        monkeypatch):
    settings = options(monkeypatch, None)

    assert 'agent_channel_path_regex' not in settings['monitor']
    assert watched(settings, 'instance-0000002a')


def test_a_test_may_still_set_its_own_filter(monkeypatch):
    monkeypatch.setenv('PYTEST_XDIST_WORKER', 'gw0')
    settings = lab_daemon.lab_options(
        '/nonexistent', 'http://127.0.0.1:1', 'lab-host',
        monitor__agent_channel_path_regex='^/srv/')

    assert settings['monitor']['agent_channel_path_regex'] == '^/srv/'
