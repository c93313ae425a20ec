import re

import pytest

from monitor.virt import domain_xml

AGENT = 'org.qemu.guest_agent.0'
UUID = '6f1f5a7e-2c8e-4d0a-9a57-0d6a3c1b2e11'
NOVA_PATH = ('/var/lib/libvirt/qemu/org.qemu.guest_agent.0.'
             'instance-00000001.sock')
LIBVIRT_PATH = ('/var/lib/libvirt/qemu/channel/target/domain-3-guest1/'
                'org.qemu.guest_agent.0')
NOVA_REGEX = (r'^/var/lib/libvirt/qemu/org\.qemu\.guest_agent\.0\.'
              r'instance-.+\.sock$')


def domain(devices, name='instance-00000001', uuid=UUID, declaration=''):
    return """%s<domain type='qemu' id='3'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='KiB'>131072</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'><target port='0'/></serial>
    %s
  </devices>
</domain>
""" % (declaration, name, uuid, devices)


def unix_channel(path, target_name=AGENT, state='connected'):
    state_attr = " state='%s'" % state if state else ''
    source = "<source mode='bind' path='%s'/>" % path if path else ''
    return """<channel type='unix'>
      %s
      <target type='virtio' name='%s'%s/>
      <alias name='channel0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>""" % (source, target_name, state_attr)


SPICE_VDAGENT = """<channel type='spicevmc'>
      <target type='virtio' name='com.redhat.spice.0' state='disconnected'/>
      <address type='virtio-serial' controller='0' bus='0' port='2'/>
    </channel>"""

GUEST_CONTROL = unix_channel('/run/lab/guest1.ctl', 'org.example.control.0',
                             state=None)

GUESTFWD = """<channel type='tcp'>
      <source mode='connect' host='127.0.0.1' port='4600'/>
      <target type='guestfwd' address='10.0.2.1' port='4600'/>
    </channel>"""


def find(xml, path_regex=None):
    return domain_xml.find_agent_channel(xml, AGENT, path_regex)


def test_nova_style_path():
    assert find(domain(unix_channel(NOVA_PATH))) == \
        domain_xml.AgentChannel(AGENT, NOVA_PATH, 'connected')


def test_libvirt_generated_path():
    assert find(domain(unix_channel(LIBVIRT_PATH, state='disconnected'))) \
        == domain_xml.AgentChannel(AGENT, LIBVIRT_PATH, 'disconnected')


def test_agent_among_other_channels():
    xml = domain(SPICE_VDAGENT + GUESTFWD + GUEST_CONTROL
                 + unix_channel(LIBVIRT_PATH))
    assert find(xml) == domain_xml.AgentChannel(AGENT, LIBVIRT_PATH,
                                                'connected')


def test_other_virtio_channels_are_not_the_agent():
    assert find(domain(SPICE_VDAGENT + GUEST_CONTROL)) is None


def test_no_channel_at_all():
    assert find(domain('')) is None


def test_matched_by_target_name_not_by_path():
    # A channel whose path looks like the agent's but whose target is not.
    decoy = unix_channel(NOVA_PATH, target_name='org.example.other.0')
    assert find(domain(decoy)) is None


def test_the_channel_name_is_configurable():
    xml = domain(GUEST_CONTROL)
    channel = domain_xml.find_agent_channel(xml, 'org.example.control.0')
    assert channel == domain_xml.AgentChannel(
        'org.example.control.0', '/run/lab/guest1.ctl', None)


def test_inactive_definition_without_source_path_or_state():
    channel = find(domain(unix_channel(None, state=None)))
    assert channel == domain_xml.AgentChannel(AGENT, None, None)


def test_path_regex_keeps_matching_channels():
    xml = domain(unix_channel(NOVA_PATH))
    assert find(xml, NOVA_REGEX).path == NOVA_PATH
    assert find(xml, re.compile(NOVA_REGEX)).path == NOVA_PATH


def test_path_regex_drops_other_paths():
    assert find(domain(unix_channel(LIBVIRT_PATH)), NOVA_REGEX) is None


def test_path_regex_drops_a_channel_without_path():
    assert find(domain(unix_channel(None)), NOVA_REGEX) is None


def test_path_regex_is_searched_not_anchored():
    xml = domain(unix_channel(LIBVIRT_PATH))
    assert find(xml, '/channel/target/').path == LIBVIRT_PATH


def test_bytes_and_encoding_declaration_are_accepted():
    xml = domain(unix_channel(NOVA_PATH),
                 declaration="<?xml version='1.0' encoding='UTF-8'?>\n")
    assert find(xml).path == NOVA_PATH
    assert find(xml.encode('utf-8')).path == NOVA_PATH


@pytest.mark.parametrize('text,message', [
    ('<domain><devices>', 'malformed domain XML'),
    ('', 'malformed domain XML'),
    ('not xml at all', 'malformed domain XML'),
    ('<network><name>default</name></network>', 'root element is <network>'),
])
def test_unreadable_xml_raises_a_clear_error(text, message):
    with pytest.raises(domain_xml.DomainXMLError, match=message):
        find(text)


def test_domain_xml_error_is_a_value_error():
    assert issubclass(domain_xml.DomainXMLError, ValueError)


def test_external_entities_are_not_read(tmp_path):
    secret = tmp_path / 'secret'
    secret.write_text('not-for-the-monitor')
    xml = ("<!DOCTYPE domain [<!ENTITY p SYSTEM 'file://%s'>]>" % secret
           + domain('', name='&p;'))
    with pytest.raises(domain_xml.DomainXMLError, match='no name'):
        domain_xml.domain_uuid_and_name(xml)


def test_domain_uuid_and_name():
    xml = domain('', name='guest1')
    assert domain_xml.domain_uuid_and_name(xml) == (UUID, 'guest1')


def test_domain_uuid_and_name_missing():
    xml = "<domain type='qemu'><name>guest1</name></domain>"
    with pytest.raises(domain_xml.DomainXMLError, match='no uuid'):
        domain_xml.domain_uuid_and_name(xml)


def test_options():
    [(group, opts)] = domain_xml.list_opts()
    assert group == 'monitor'
    by_name = {opt.name: opt for opt in opts}
    assert by_name['agent_channel_name'].default == AGENT
    assert by_name['agent_channel_path_regex'].default is None
