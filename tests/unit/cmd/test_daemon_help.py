"""guest-health-monitor --help names the exit statuses."""

import contextlib
import io

import pytest

from monitor.cmd import daemon as daemon_cmd


@pytest.mark.parametrize('flag', ['--help', '-h'])
def test_help_lists_the_exit_statuses_and_reads_no_file(flag, tmp_path):
    out = io.StringIO()
    missing = str(tmp_path / 'nope.conf')
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stdout(out):
        daemon_cmd.main(['--config-file', missing, flag])

    assert stop.value.code == 0
    text = ' '.join(out.getvalue().split())
    assert text.startswith('usage: guest-health-monitor ')
    for status in ('0 stopped cleanly', '1 could not start',
                   '2 invalid configuration or command line',
                   '3 stopped, leaving behind a libvirt call'):
        assert status in text
