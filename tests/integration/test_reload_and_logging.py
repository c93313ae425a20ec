"""Operating the real daemon as systemd and logrotate do: logging set on
the command line, SIGHUP while guests are monitored, then a crash. Real
libvirtd guests, the real console script, the real masakari-api."""

import re
import signal
import socket
import time

from lab import daemon as lab_daemon


def wait_for_line(daemon, path, pattern, timeout):
    """The first line of ``path`` matching ``pattern``; fails if the
    daemon exits or after ``timeout`` s (a guard, not a timing)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ''
        for line in text.splitlines():
            if regex.search(line):
                return line
        assert daemon.running, 'daemon exited (%s):\n%s' % (
            daemon.proc.returncode, text[-4000:])
        assert time.monotonic() < deadline, \
            'no %r in %s after %.0f s:\n%s' % (pattern, path, timeout,
                                                text[-4000:])
        time.sleep(0.2)


def test_sighup_while_monitoring_then_a_crash_is_notified_once(
        lab_guests, masakari, tmp_path):
    [guest] = lab_guests(1)
    work_dir = str(tmp_path / 'monitor')
    log_file = tmp_path / 'from-the-command-line.log'
    # debug is off in the file: --debug on the command line turns it on.
    options = lab_daemon.lab_options(work_dir, masakari.endpoint,
                                     socket.gethostname(),
                                     DEFAULT__debug='false')
    daemon = lab_daemon.MonitorDaemon(
        work_dir, options, args=['--log-file', str(log_file), '--debug'])
    daemon.start()
    try:
        wait_for_line(daemon, log_file,
                      r'%s\): \w+ -> healthy' % guest.uuid, 60)
        assert re.search(r'^\S+ \S+ \d+ DEBUG ', log_file.read_text(), re.M)

        daemon.proc.send_signal(signal.SIGHUP)
        wait_for_line(daemon, log_file,
                      r'INFO monitor \[-\] Reloaded on SIGHUP: log level '
                      r'DEBUG, 1 log file\(s\) reopened', 15)

        guest.control('panic')
        wait_for_line(daemon, log_file,
                      r'%s\): error -> reported' % guest.uuid, 30)
        deadline = time.monotonic() + 10
        while not masakari.notifications_for(guest.uuid) and \
                time.monotonic() < deadline:
            time.sleep(0.25)
        # Two more sweeps (interval 2 s): nothing notified twice.
        time.sleep(4)
        stored = masakari.notifications_for(guest.uuid)
        assert daemon.running
    finally:
        status = daemon.stop()

    text = log_file.read_text()
    assert len(stored) == 1, text[-4000:]
    assert stored[0]['payload']['event'] == 'QEMU_GUEST_AGENT_ERROR'
    assert status == 0, text[-4000:]
    assert 'Traceback' not in text + daemon.log()
    # With a log file, nothing goes to standard output.
    assert daemon.log() == ''
