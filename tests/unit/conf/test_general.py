"""The general options (host, state_path), the names the configuration is
found by, and the state files kept outside state_path."""

import socket

from monitor.conf import general
from tests.unit.conf.load_helpers import load


def test_host_defaults_to_the_hostname(write_conf):
    path = write_conf(DEFAULT={'host': None})
    assert load(path).host == socket.gethostname()


def test_the_project_and_program_names():
    assert general.PROJECT == 'guest-health-monitor'
    assert general.PROG == 'guest-health-monitor'


def test_a_state_file_outside_the_state_path_is_state(write_conf, tmp_path):
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    for name in ('domains.sqlite-wal', 'other.txt'):
        (elsewhere / name).write_text('')
    conf = load(write_conf(cache={
        'backend': 'guest_health_monitor.sqlite',
        'backend_argument': 'filename:%s' % (elsewhere / 'domains.sqlite')}))
    assert general.state_files(conf) == [str(elsewhere / 'domains.sqlite-wal')]


def test_no_state_files_outside_the_state_path_by_default(write_conf):
    conf = load(write_conf(cache={'backend': 'guest_health_monitor.sqlite'}))
    assert general.state_files(conf) == []
