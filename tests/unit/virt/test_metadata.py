"""A domain's own monitoring settings from its libvirt metadata, and where
its evidence is, read from its XML."""

import pytest

from monitor.virt import metadata as domain_metadata
from monitor.virt.metadata import DEFAULTS
from monitor.virt.metadata import DomainSettings

NS = domain_metadata.NAMESPACE


def element(attributes='', prefix='ghm'):
    return '<%s:monitor xmlns:%s="%s" %s/>' % (prefix, prefix, NS, attributes)


# -- the <monitor/> element as libvirt returns it -------------------------------

def test_no_metadata_means_the_defaults_without_error():
    assert domain_metadata.parse_settings(None) == (DEFAULTS, None)
    assert domain_metadata.parse_settings('') == (DEFAULTS, None)
    assert DEFAULTS == DomainSettings(True, None, None)


def test_a_domain_can_opt_out():
    parsed = domain_metadata.parse_settings(element('enabled="no"'))

    assert parsed == (DomainSettings(enabled=False), None)


def test_every_attribute_is_read():
    parsed = domain_metadata.parse_settings(element(
        'enabled="yes" failure_threshold="5" action="restart"'))

    assert parsed == (DomainSettings(True, 5, 'restart'), None)


@pytest.mark.parametrize('text', [
    # As virsh --key ghm stores it, with or without the namespace, and with
    # the default namespace.
    element('enabled="no"'),
    '<monitor enabled="no"/>',
    '<monitor xmlns="%s" enabled="no"/>' % NS,
    '<?xml version="1.0" encoding="UTF-8"?>\n<monitor enabled="NO"/>',
])
def test_the_element_is_read_whatever_its_prefix(text):
    assert domain_metadata.parse_settings(text) == (
        DomainSettings(enabled=False), None)


@pytest.mark.parametrize('attributes,error', [
    ('enabled="maybe"', 'enabled="maybe": must be yes or no'),
    ('enabled="no" failure_threshold="0"',
     'failure_threshold="0": must be between 1 and 10000'),
    ('failure_threshold="three"', 'failure_threshold="three": must be an '
                                  'integer'),
    ('failure_threshold="2.5"', 'must be an integer'),
    ('action="reboot"', 'action="reboot": must be one of none, reset, '
                        'restart'),
    ('enable="no"', 'unknown attribute enable="no"'),
])
def test_an_invalid_element_gives_the_defaults_and_says_why(attributes,
                                                             error):
    settings, message = domain_metadata.parse_settings(element(attributes))

    assert settings == DEFAULTS
    assert error in message


@pytest.mark.parametrize('text,error', [
    ('<monitor enabled="no"', 'not XML'),
    ('<watch enabled="no"/>', 'expected <monitor>'),
    ('<!DOCTYPE m [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
     '<monitor enabled="&e;"/>', ''),
    ('<monitor enabled="no" %s/>' % ('x="y" ' * 1000), 'characters long'),
])
def test_garbage_gives_the_defaults_and_an_error(text, error):
    settings, message = domain_metadata.parse_settings(text)

    assert settings == DEFAULTS
    assert message and error in message


def test_a_doctype_is_refused_so_no_entity_is_ever_expanded():
    text = ('<!DOCTYPE m [<!ENTITY e "no">]><monitor enabled="&e;"/>')

    settings, message = domain_metadata.parse_settings(text)

    assert settings == DEFAULTS
    assert 'DOCTYPE' in message


# -- the whole domain XML -------------------------------------------------------

DOMAIN = """<domain type='qemu'>
  <name>appliance-1</name>
  <uuid>6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1</uuid>
  <metadata>
    <other:thing xmlns:other="urn:example:other" enabled="no"/>
    %(metadata)s
  </metadata>
  <devices>
    %(devices)s
  </devices>
</domain>"""


def domain(metadata='', devices=''):
    return DOMAIN % {'metadata': metadata, 'devices': devices}


def test_settings_are_found_in_the_domain_xml():
    xml = domain(element('enabled="no" action="reset"'))

    assert domain_metadata.settings_from_domain_xml(xml) == (
        DomainSettings(False, None, 'reset'), None)


def test_other_namespaces_are_not_ours():
    assert domain_metadata.settings_from_domain_xml(domain()) == (
        DEFAULTS, None)
    assert domain_metadata.settings_from_domain_xml(
        domain('<monitor enabled="no"/>')) == (DEFAULTS, None)


# -- what comes from outside stays in its place -----------------------------------

def test_an_attribute_of_another_namespace_is_ignored():
    text = element('xmlns:x="urn:example:other" enabled="yes" '
                   'x:enabled="no" x:action="restart"')

    assert domain_metadata.parse_settings(text) == (DEFAULTS, None)
    assert domain_metadata.settings_from_domain_xml(domain(text)) == (
        DEFAULTS, None)


def test_an_attribute_in_the_elements_own_namespace_is_read():
    assert domain_metadata.parse_settings(element('ghm:enabled="no"')) == (
        DomainSettings(enabled=False), None)


def test_an_attribute_given_twice_is_refused():
    settings, error = domain_metadata.parse_settings(
        element('enabled="yes" ghm:enabled="no"'))

    assert settings == DEFAULTS
    assert error == 'enabled is given twice'


@pytest.mark.parametrize('value', [
    'no&#10;2026-01-01 00:00:00.000 1 ERROR monitor [-] forged',
    'yes&#13;', '&#9;no', 'no&#x85;', 'no&#x2028;',
], ids=['line-feed', 'carriage-return', 'tab', 'next-line', 'separator'])
def test_a_value_with_control_characters_is_refused_and_quoted_escaped(
        value):
    settings, error = domain_metadata.parse_settings(
        element('enabled="%s"' % value))

    assert settings == DEFAULTS
    assert error.endswith(': holds control characters')
    assert error.startswith('enabled="')
    assert error.isprintable()


def test_a_long_value_is_refused_with_a_short_error():
    xml = domain(element('action="%s"' % ('r' * 100000)))

    settings, error = domain_metadata.settings_from_domain_xml(xml)

    assert settings == DEFAULTS
    assert error.endswith(': 100000 characters long, more than %d'
                          % domain_metadata.MAX_VALUE_CHARS)
    assert len(error) < 200


def test_an_unknown_attribute_is_quoted_escaped_and_short():
    settings, error = domain_metadata.settings_from_domain_xml(domain(
        element('%s="%s"' % ('n' * 5000, 'v&#10;' * 5000))))

    assert settings == DEFAULTS
    assert error.startswith('unknown attribute nnnn')
    assert error.isprintable()
    assert len(error) < 300


def test_a_broken_domain_xml_is_an_error():
    with pytest.raises(ValueError):
        domain_metadata.settings_from_domain_xml('<domain>')
    with pytest.raises(ValueError):
        domain_metadata.console_log_paths('<network/>')


SERIAL_FILE = """
    <serial type='file'>
      <source path='/var/log/guests/a.log' append='off'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='/var/log/guests/a.log' append='off'/>
      <target type='serial' port='0'/>
    </console>"""

SERIAL_PTY_LOGGED = """
    <serial type='pty'>
      <log file='/var/log/libvirt/qemu/a-serial0.log' append='on'/>
      <target port='0'/>
    </serial>"""


def test_a_file_backed_serial_console_is_listed_once():
    assert domain_metadata.console_log_paths(domain(devices=SERIAL_FILE)) == [
        '/var/log/guests/a.log']


def test_a_logged_pty_console_is_listed():
    assert domain_metadata.console_log_paths(
        domain(devices=SERIAL_PTY_LOGGED)) == [
        '/var/log/libvirt/qemu/a-serial0.log']


def test_an_unlogged_pty_console_has_no_file():
    devices = "<serial type='pty'><target port='0'/></serial>"

    assert domain_metadata.console_log_paths(domain(devices=devices)) == []


@pytest.mark.parametrize('devices,expected', [
    ('', False),
    ("<graphics type='vnc' port='-1'/>", True),
    ("<video><model type='vga'/></video>", True),
    ("<video><model type='none'/></video>", False),
])
def test_graphics_are_seen(devices, expected):
    assert domain_metadata.has_graphics(domain(devices=devices)) is expected


# -- application probes ---------------------------------------------------------

PROBES = ('<ghm:monitor xmlns:ghm="%s" application_action="reset">'
          '<ghm:probe name="db" kind="exec" path="/usr/bin/check-db" '
          'failure_threshold="2"><ghm:arg>--quick</ghm:arg>'
          '<ghm:arg>-v</ghm:arg></ghm:probe>'
          '<ghm:probe name="app" kind="heartbeat" file="/run/app.hb" '
          'max_age="20"/></ghm:monitor>' % NS)


def test_a_domain_declares_its_probes_and_their_action():
    settings, error = domain_metadata.parse_settings(PROBES)

    assert error is None
    assert settings.application_action == 'reset'
    db, app = settings.probes
    assert (db.name, db.kind, db.path, db.args, db.failure_threshold) == (
        'db', 'exec', '/usr/bin/check-db', ('--quick', '-v'), 2)
    assert (app.name, app.kind, app.file, app.max_age) == (
        'app', 'heartbeat', '/run/app.hb', 20)


def test_without_probes_the_configured_ones_apply():
    assert domain_metadata.parse_settings(element()).settings.probes is None


def test_probes_are_read_without_a_prefix_too():
    settings, error = domain_metadata.parse_settings(
        '<monitor><probe name="a" kind="exec" path="/bin/true"/></monitor>')

    assert error is None
    assert settings.probes[0].path == '/bin/true'


@pytest.mark.parametrize('children, wanted', [
    ('<probe name="a" kind="exec" path="true"/>', 'absolute path'),
    ('<probe name="a" kind="exec" path="/x"/>' * 2, 'a is given twice'),
    (''.join('<probe name="p%d" kind="exec" path="/x"/>' % i
             for i in range(9)), 'more than 8 probes'),
    ('<check name="a"/>', 'unknown element <check>'),
    ('<probe name="a" kind="exec" path="/x"><flag/></probe>',
     'unknown element <flag> in <probe>'),
])
def test_a_wrong_probe_gives_the_defaults_and_says_why(children, wanted):
    parsed = domain_metadata.parse_settings('<monitor>%s</monitor>'
                                            % children)

    assert parsed.settings == DEFAULTS
    assert wanted in parsed.error


def test_a_wrong_application_action_is_refused():
    parsed = domain_metadata.parse_settings(element(
        'application_action="nmi"'))

    assert 'must be one of none, reset, restart' in parsed.error
