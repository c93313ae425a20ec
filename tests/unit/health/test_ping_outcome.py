"""How a guest-ping's answer or libvirt error becomes an outcome."""

import pytest

from monitor.health import ping_outcome as po
from monitor.health.ping_outcome import Outcome


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


def test_the_outcomes_know_no_libvirt_numbers():
    # libvirt's errors are mapped at the edge (monitor.virt.libvirt_errors).
    with open(po.__file__) as source:
        text = source.read()
    assert 'import libvirt' not in text
    assert 'VIR_' not in text


@pytest.mark.parametrize('reply, status', [
    ('{"return": "frozen"}', 'frozen'),
    ('{"return": "thawed"}', 'thawed'),
    ('{"return": "error"}', None),
    ('{"error": {"class": "CommandNotFound"}}', None),
    ('not json', None),
    (None, None),
    ('{"return": "%s"}' % ('x' * 5000), None),
])
def test_a_freeze_status_reply_says_frozen_or_thawed_or_nothing(reply,
                                                                status):
    assert po.freeze_status_of(reply) == status
