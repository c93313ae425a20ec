"""pytest fixtures that run the real monitor daemon (a plugin: see
tests/conftest.py)."""

import socket

import pytest

from lab import daemon as lab_daemon


@pytest.fixture
def monitor_daemon(tmp_path, masakari):
    """Factory: ``monitor_daemon(**overrides)`` starts a daemon pointed at
    the test's masakari-api; overrides are ``section__option=value``.
    Every daemon started is stopped at teardown."""
    started = []

    def start(work_dir=None, **overrides):
        work_dir = work_dir or str(tmp_path / ('monitor-%d' % len(started)))
        options = lab_daemon.lab_options(work_dir, masakari.endpoint,
                                         socket.gethostname(), **overrides)
        daemon = lab_daemon.MonitorDaemon(work_dir, options).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
