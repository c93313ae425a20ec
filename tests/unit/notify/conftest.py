"""Fixtures shared by the notifier tests."""

import pytest

from tests.unit import http_engine


@pytest.fixture
def engine():
    servers = []

    def start(responder):
        server = http_engine.HTTPServer(responder)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()
