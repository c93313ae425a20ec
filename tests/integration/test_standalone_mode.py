"""The standalone mode's libvirt edge against real guests: a reset brings a
panicked guest's agent back, a restart does too, metadata set with virsh
is read back, and a failed guest's console and screen are captured."""

import subprocess

import libvirt

from monitor.health import recovery_policy as recovery
from monitor.store.evidence import EvidenceStore
from monitor.virt import guest_actions as libvirt_actions
from monitor.virt import metadata as domain_metadata


def test_a_reset_brings_a_panicked_guests_agent_back(lab_guests):
    [guest] = lab_guests(1)
    guest.control('panic')

    result = libvirt_actions.act(guest.dom, recovery.RESET)

    assert result.ok, result.detail
    guest.wait_agent_reconnected()
    assert guest.wait_pingable() == {'return': {}}


def test_a_restart_brings_a_panicked_persistent_guest_back(lab_guests):
    [guest] = lab_guests(1)
    guest.control('panic')
    first_id = guest.dom.ID()

    result = libvirt_actions.act(guest.dom, recovery.RESTART)

    assert result.ok, result.detail
    assert guest.dom.ID() != first_id
    guest.wait_agent_connected()
    assert guest.wait_pingable() == {'return': {}}


def test_metadata_set_with_virsh_is_read_back(lab_guests):
    [guest] = lab_guests(1)
    assert libvirt_actions.read_settings(guest.dom) == (
        domain_metadata.DEFAULTS, None)

    subprocess.run(
        ['virsh', '-c', 'qemu:///system', 'metadata', guest.name,
         '--uri', domain_metadata.NAMESPACE, '--key', domain_metadata.KEY,
         '--set', '<monitor enabled="no" action="reset"/>', '--live'],
        check=True, capture_output=True)

    settings, error = libvirt_actions.read_settings(guest.dom)
    assert error is None
    assert settings == domain_metadata.DomainSettings(False, None, 'reset')
    # The same element is found in the live domain XML.
    assert domain_metadata.settings_from_domain_xml(
        guest.dom.XMLDesc(0)).settings == settings


def test_invalid_metadata_on_a_real_domain_gives_defaults_and_an_error(
        lab_guests):
    [guest] = lab_guests(1)
    guest.dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                          '<monitor enabled="sometimes"/>',
                          domain_metadata.KEY, domain_metadata.NAMESPACE,
                          libvirt.VIR_DOMAIN_AFFECT_LIVE)

    settings, error = libvirt_actions.read_settings(guest.dom)

    assert settings == domain_metadata.DEFAULTS
    assert 'must be yes or no' in error


def test_a_panicked_guests_console_is_kept_as_evidence(lab_guests,
                                                       tmp_path):
    [guest] = lab_guests(1)
    guest.control('panic')
    store = EvidenceStore(str(tmp_path / 'evidence'))

    refs, problems = libvirt_actions.collect_evidence(guest.dom, store, 50)

    [console] = [ref for ref in refs if ref.kind == 'console']
    with open(console.path, 'rb') as saved:
        assert b'Kernel panic - not syncing' in saved.read()
    # The lab guest has no display unless asked for one.
    assert [ref.kind for ref in refs] == ['console']
    assert problems == []


def test_a_guest_with_a_display_gives_a_screenshot(lab_guests, tmp_path):
    [guest] = lab_guests(1, graphics=True)
    store = EvidenceStore(str(tmp_path / 'evidence'))

    refs, problems = libvirt_actions.collect_evidence(guest.dom, store, 50)

    assert problems == []
    [shot] = [ref for ref in refs if ref.kind == 'screenshot']
    with open(shot.path, 'rb') as saved:
        header = saved.read(4)
    # QEMU 7.2 with libvirt 9 hands out PNG; older pairs PPM.
    magic = {'image/png': b'\x89PNG', 'image/x-portable-pixmap': b'P6'}
    assert header.startswith(magic[shot.media_type])
    assert shot.path.endswith(('.png', '.ppm'))
