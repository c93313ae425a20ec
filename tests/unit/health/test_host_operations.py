"""Host operations: a guest whose agent is held or whose filesystems are
frozen is nobody's miss, until that lasts longer than the frozen grace."""

import pytest
from oslo_config import cfg

from monitor.health import host_operations
from monitor.health.ping_outcome import Outcome
from monitor.health.ping_outcome import PingResult

UUID = 'aaaaaaaa-0000-4000-8000-000000000001'
HELD = ('Timed out during operation: cannot acquire state change lock '
        '(held by agent=remoteDispatchDomainFSFreeze) (code 68)')


def answered(at, frozen=None):
    return PingResult(Outcome.OK, 'ok', at, 0.01, frozen=frozen)


def busy(at, waited=30.0):
    return PingResult(Outcome.BUSY, HELD, at, waited)


def missed(at):
    return PingResult(Outcome.MISSED, 'not responding', at, 1.0)


@pytest.fixture
def operations():
    return host_operations.HostOperations(frozen_grace=60)


def test_a_frozen_guest_within_the_grace_counts_as_answered(operations):
    for at in (0, 30, 59):
        result = operations.judge(UUID, answered(at, frozen=True))
        assert (result.outcome, result.held_for) == (Outcome.OK, None)


def test_a_freeze_past_the_grace_is_a_miss_saying_so(operations):
    operations.judge(UUID, answered(100, frozen=True))

    result = operations.judge(UUID, answered(170, frozen=True))

    assert result.outcome is Outcome.MISSED
    assert result.detail == 'filesystems frozen for 70 s'
    assert result.held_for == pytest.approx(70.01)


def test_a_held_agent_is_not_a_miss_within_the_grace(operations):
    result = operations.judge(UUID, busy(0, waited=30))
    assert result.outcome is Outcome.BUSY


def test_a_held_agent_past_the_grace_is_a_miss_naming_the_holder(
        operations):
    operations.judge(UUID, busy(0))

    result = operations.judge(UUID, busy(31))

    assert result.outcome is Outcome.MISSED
    assert result.detail.startswith(
        'guest agent held by another command (Timed out')
    assert 'remoteDispatchDomainFSFreeze' in result.detail
    assert result.detail.endswith('for 61 s')


def test_a_freeze_counts_from_the_first_ping_held_behind_its_command(
        operations):
    # The freeze hook quiesced for 40 s, then the filesystems stayed
    # frozen: one operation, timed from its start.
    operations.judge(UUID, busy(0))
    operations.judge(UUID, answered(45))

    result = operations.judge(UUID, answered(61, frozen=True))

    assert result.outcome is Outcome.MISSED
    assert result.detail == 'filesystems frozen for 61 s'


def test_a_thaw_ends_the_spell(operations):
    operations.judge(UUID, answered(0, frozen=True))
    operations.judge(UUID, answered(50, frozen=False))

    result = operations.judge(UUID, answered(100, frozen=True))

    assert result.outcome is Outcome.OK
    assert operations.held_since(UUID) == 100


def test_a_real_miss_ends_the_spell_and_stays_a_miss(operations):
    operations.judge(UUID, answered(0, frozen=True))

    result = operations.judge(UUID, missed(100))

    assert result == missed(100)
    assert operations.held_since(UUID) is None


def test_spells_of_domains_no_longer_listed_are_dropped(operations):
    operations.judge(UUID, answered(0, frozen=True))
    operations.judge('other', busy(0))

    operations.keep_only({'other'})

    assert operations.held_since(UUID) is None
    assert operations.held_since('other') == 0


def test_a_round_is_judged_domain_by_domain(operations):
    operations.judge(UUID, answered(0, frozen=True))

    judged = operations.judge_round({UUID: answered(100, frozen=True),
                                     'other': answered(100, frozen=True)})

    assert judged[UUID].outcome is Outcome.MISSED
    assert judged['other'].outcome is Outcome.OK


def test_the_grace_is_an_option_of_five_minutes_by_default():
    conf = cfg.ConfigOpts()
    host_operations.register_opts(conf)
    conf([])
    assert host_operations.HostOperations.from_conf(conf).frozen_grace == 300
    conf.set_override('frozen_grace', 20, group='monitor')
    assert host_operations.HostOperations.from_conf(conf).frozen_grace == 20


def test_each_spell_is_told_once_when_it_begins_and_when_it_ends(
        operations):
    operations.judge(UUID, busy(0))
    operations.judge(UUID, busy(30))
    operations.judge(UUID, answered(45, frozen=True))
    operations.judge(UUID, answered(50, frozen=False))
    operations.judge(UUID, answered(60, frozen=False))

    assert operations.take_changes() == [
        (UUID, 'guest agent held by another command (%s); not counted as '
               'failing for up to 60 s' % HELD),
        (UUID, 'no longer frozen or held')]
    assert operations.take_changes() == []
