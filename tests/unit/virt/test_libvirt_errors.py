"""libvirt errors in the operator's words, and which mean a lost
connection."""

import libvirt
import pytest

from monitor.health.ping_outcome import Outcome
from monitor.virt import libvirt_errors


def libvirt_error(code, domain, message):
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None,
               None, -1, -1)
    return exc


def test_a_libvirt_error_says_its_message_and_code():
    exc = libvirt_error(libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_FROM_QEMU,
                        'Domain not found')

    assert libvirt_errors.error_text(exc) == 'Domain not found (code %d)' % (
        libvirt.VIR_ERR_NO_DOMAIN)


def test_any_exception_text_is_bounded():
    text = libvirt_errors.exception_text(ValueError('x' * 1000))

    assert text == 'x' * 200 + '...'
    assert libvirt_errors.exception_text(KeyError()) == 'KeyError'


def test_a_lost_connection_error_is_a_disconnect():
    assert libvirt_errors.is_disconnect(libvirt_error(
        libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_FROM_NONE, 'gone'))
    assert not libvirt_errors.is_disconnect(libvirt_error(
        libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_FROM_QEMU, 'no domain'))


@pytest.mark.parametrize('code, domain, expected', [
    (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, 10, Outcome.MISSED),
    (libvirt.VIR_ERR_AGENT_UNSYNCED, 10, Outcome.MISSED),
    (libvirt.VIR_ERR_NO_DOMAIN, 10, Outcome.GONE),
    (libvirt.VIR_ERR_INVALID_DOMAIN, 6, Outcome.GONE),
    (libvirt.VIR_ERR_OPERATION_INVALID, 10, Outcome.NOT_RUNNING),
    (libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, 10, Outcome.NO_AGENT),
    (libvirt.VIR_ERR_NO_SUPPORT, 0, Outcome.NO_AGENT),
    (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC, Outcome.DISCONNECTED),
    (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_REMOTE, Outcome.DISCONNECTED),
    (libvirt.VIR_ERR_INVALID_CONN, 0, Outcome.DISCONNECTED),
    (libvirt.VIR_ERR_NO_CONNECT, 0, Outcome.DISCONNECTED),
])
def test_libvirt_errors_map_to_outcomes(code, domain, expected):
    assert libvirt_errors.classify_error(code, domain) is expected


def test_a_ping_libvirt_could_not_start_behind_another_agent_command_is_busy():
    # As libvirt 9.0 raised it after holding a guest-ping 30 s behind a
    # freeze whose hook was still quiescing.
    exc = libvirt_error(libvirt.VIR_ERR_OPERATION_TIMEOUT,
                        libvirt.VIR_FROM_NONE,
                        'Timed out during operation: cannot acquire state '
                        'change lock (held by agent=remoteDispatchDomainFSFreeze)')

    assert libvirt_errors.classify_error(
        exc.get_error_code(), exc.get_error_domain()) is Outcome.BUSY


def test_an_internal_error_of_the_qemu_driver_is_a_miss_not_a_disconnect():
    assert libvirt_errors.classify_error(libvirt.VIR_ERR_INTERNAL_ERROR, 10) is Outcome.MISSED


def test_an_unknown_error_counts_as_a_miss():
    assert libvirt_errors.classify_error(9999, 10) is Outcome.MISSED


def test_only_connection_errors_are_disconnects():
    assert libvirt_errors.is_disconnect_code(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_REMOTE)
    assert not libvirt_errors.is_disconnect_code(libvirt.VIR_ERR_SYSTEM_ERROR, 10)
    assert not libvirt_errors.is_disconnect_code(libvirt.VIR_ERR_AGENT_UNRESPONSIVE, 10)
