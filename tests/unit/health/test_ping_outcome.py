"""How a guest-ping's answer or libvirt error becomes an outcome."""

import pytest

from monitor.health import ping_outcome as po
from monitor.health.ping_outcome import Outcome


@pytest.mark.parametrize('reply', [
    '{"return":{}}', '{"return": {}}', ' {"return" : {} }\n',
    '{"return": {}, "id": "ghm-1"}',
])
def test_a_healthy_agent_reply_is_ok(reply):
    assert po.classify_reply(reply) == (Outcome.OK, 'ok')


@pytest.mark.parametrize('reply, status', [
    ('{"return":{}}', None), ('{"return": {}}', None),
    ('{"return":"thawed"}', 'thawed'), ('{"return": "frozen"}', 'frozen'),
])
def test_the_replies_libvirt_prints_for_a_healthy_agent_are_not_decoded(
        monkeypatch, reply, status):
    # Every ping's reply: known text is looked up, not run through the
    # JSON decoder.
    def no_decoding(_text):
        raise AssertionError('decoded')
    monkeypatch.setattr(po.json, 'loads', no_decoding)
    if status is None:
        assert po.classify_reply(reply) == (Outcome.OK, 'ok')
    else:
        assert po.freeze_status_of(reply) == status


@pytest.mark.parametrize('reply', [[], {}, ['{"return":{}}'], 42])
def test_a_reply_that_is_no_text_is_a_miss_and_never_raises(reply):
    assert po.classify_reply(reply)[0] is Outcome.MISSED
    assert po.freeze_status_of(reply) is None


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
