"""A domain's agent response timeout, read from libvirt's status file."""

import pytest

from monitor.virt import agent_timeout


@pytest.fixture
def status_dir(tmp_path):
    (tmp_path / 'vm-1.xml').write_text(
        "<domstatus state='running' reason='booted' pid='42'>\n"
        "  <agentTimeout>-2</agentTimeout>\n"
        "  <domain type='qemu' id='3'><name>vm-1</name></domain>\n"
        "</domstatus>\n")
    return str(tmp_path)


def test_the_timeout_is_read_from_the_status_file(status_dir):
    assert agent_timeout.read('vm-1', status_dir) == (-2, True)


def test_a_missing_file_gives_the_default_as_assumed(status_dir):
    assert agent_timeout.read('vm-2', status_dir) == (
        agent_timeout.DEFAULT, False)


def test_a_file_without_the_element_gives_the_default_as_assumed(tmp_path):
    (tmp_path / 'vm-1.xml').write_text('<domstatus/>')

    assert agent_timeout.read('vm-1', str(tmp_path)) == (
        agent_timeout.DEFAULT, False)


def test_a_name_with_a_slash_is_never_read(status_dir):
    assert agent_timeout.read('../vm-1', status_dir) == (
        agent_timeout.DEFAULT, False)


def test_special_values_are_named():
    assert agent_timeout.describe(-2) == 'block (-2)'
    assert agent_timeout.describe(-1) == 'default (-1)'
    assert agent_timeout.describe(0) == 'no wait (0)'
    assert agent_timeout.describe(5) == '5 s'
