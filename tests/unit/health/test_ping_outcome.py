"""How a guest-ping's answer or libvirt error becomes an outcome."""

import pytest

from monitor.health import ping_outcome as po
from monitor.health.ping_outcome import Outcome


@pytest.mark.parametrize('code, domain, expected', [
    (po.VIR_ERR_AGENT_UNRESPONSIVE, 10, Outcome.MISSED),
    (po.VIR_ERR_OPERATION_TIMEOUT, 10, Outcome.MISSED),
    (po.VIR_ERR_AGENT_UNSYNCED, 10, Outcome.MISSED),
    (po.VIR_ERR_NO_DOMAIN, 10, Outcome.GONE),
    (po.VIR_ERR_INVALID_DOMAIN, 6, Outcome.GONE),
    (po.VIR_ERR_OPERATION_INVALID, 10, Outcome.NOT_RUNNING),
    (po.VIR_ERR_ARGUMENT_UNSUPPORTED, 10, Outcome.NO_AGENT),
    (po.VIR_ERR_NO_SUPPORT, 0, Outcome.NO_AGENT),
    (po.VIR_ERR_SYSTEM_ERROR, po.VIR_FROM_RPC, Outcome.DISCONNECTED),
    (po.VIR_ERR_INTERNAL_ERROR, po.VIR_FROM_REMOTE, Outcome.DISCONNECTED),
    (po.VIR_ERR_INVALID_CONN, 0, Outcome.DISCONNECTED),
    (po.VIR_ERR_NO_CONNECT, 0, Outcome.DISCONNECTED),
])
def test_libvirt_errors_map_to_outcomes(code, domain, expected):
    assert po.classify_error(code, domain) is expected


def test_an_internal_error_of_the_qemu_driver_is_a_miss_not_a_disconnect():
    assert po.classify_error(po.VIR_ERR_INTERNAL_ERROR, 10) is Outcome.MISSED


def test_an_unknown_error_counts_as_a_miss():
    assert po.classify_error(9999, 10) is Outcome.MISSED


def test_only_connection_errors_are_disconnects():
    assert po.is_disconnect(po.VIR_ERR_SYSTEM_ERROR, po.VIR_FROM_REMOTE)
    assert not po.is_disconnect(po.VIR_ERR_SYSTEM_ERROR, 10)
    assert not po.is_disconnect(po.VIR_ERR_AGENT_UNRESPONSIVE, 10)


def test_a_healthy_agent_reply_is_ok():
    assert po.classify_reply('{"return": {}}') == (Outcome.OK, 'ok')


@pytest.mark.parametrize('reply', [
    'garbage', '', None, '[]', '{"error": {"class": "GenericError"}}',
    '{"return"', b'\xff\xfe',
])
def test_a_garbage_reply_is_a_miss_and_never_raises(reply):
    outcome, detail = po.classify_reply(reply)
    assert outcome is Outcome.MISSED
    assert detail


def test_error_codes_match_the_installed_libvirt_binding():
    libvirt = pytest.importorskip('libvirt')
    for name, value in po.LIBVIRT_CONSTANTS.items():
        assert getattr(libvirt, name) == value, name
