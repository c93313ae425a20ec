"""What the native threads noted is logged by the green side, once per
domain and kind, and always counted."""

import logging

from tests.unit.virt.libvirt_node import WITH_AGENT
from tests.unit.virt.libvirt_node import Counting
from tests.unit.virt.libvirt_node import by_uuid


def test_an_error_is_logged_once_per_domain_and_kind_and_always_counted(
        connected, agent, caplog):
    caplog.set_level(logging.DEBUG, logger='monitor')
    agent(error=RecursionError('deep'))
    info = by_uuid(connected.list_domains())[WITH_AGENT]
    counted = Counting()

    for _ in range(3):
        connected.ping(info, 2)
    connected.log_notes(counted)

    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 'with-agent' in warnings[0] and WITH_AGENT in warnings[0]
    assert 'RecursionError' in warnings[0]
    assert counted.stages == ['ping'] * 3


def test_an_error_after_a_recovery_is_logged_again(connected, agent,
                                                   caplog):
    caplog.set_level(logging.WARNING, logger='monitor')
    info = by_uuid(connected.list_domains())[WITH_AGENT]

    for error in (RecursionError('deep'), None, RecursionError('deep')):
        agent(error=error, reply='{"return": {}}')
        connected.ping(info, 2)
    connected.log_notes()

    assert len(caplog.records) == 2


def test_notes_wait_for_the_green_side_and_are_logged_there(connected,
                                                            agent, caplog):
    caplog.set_level(logging.DEBUG, logger='monitor')
    agent(error=RecursionError('deep'))

    connected.ping(WITH_AGENT, 2)

    assert caplog.records == []
    connected.log_notes()
    assert caplog.records
