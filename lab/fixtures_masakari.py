"""pytest fixtures for the real masakari-api (a plugin: see tests/conftest.py).

One server runs for the whole session (starting one costs about a second);
each test gets it running and wiped back to one segment holding one host
named after this machine, which is the name the monitor reports by default.
"""

import socket

import pytest

import lab
from lab import masakari as lab_masakari

SEGMENT_NAME = 'lab-segment'


@pytest.fixture(scope='session')
def masakari_server(tmp_path_factory):
    """The session's masakari-api; use ``masakari`` for a clean one."""
    lab.require(lab_masakari.installed(),
                f'masakari-api not installed in {lab_masakari.VENV}')
    server = lab_masakari.MasakariServer(
        str(tmp_path_factory.mktemp('masakari')))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def masakari(masakari_server):
    """A running masakari-api knowing exactly one host: this machine.

    A test may stop the server; the next test gets it started again.
    """
    masakari_server.start()
    masakari_server.clear()
    segment = masakari_server.create_segment(SEGMENT_NAME)
    masakari_server.add_host(segment, socket.gethostname())
    return masakari_server
