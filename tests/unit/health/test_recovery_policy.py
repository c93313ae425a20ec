"""The recovery policy: which action a failure gets, the per-domain budget
over a sliding window, and what the notification says about it."""

import json

import pytest
from oslo_config import cfg

from monitor.errors import ConfigError
from monitor.health import recovery_policy as recovery
from monitor.health.recovery_policy import RecoveryPolicy

HOUR = 3600


def test_nothing_is_done_without_a_configured_action():
    decision = RecoveryPolicy().decide((), now=1000.0)

    assert decision.action == recovery.NONE
    assert not decision.budget_exhausted
    # Not acting costs nothing.
    assert decision.history == ()


def test_the_configured_action_is_taken_and_counted():
    decision = RecoveryPolicy(recovery.RESET).decide((), now=1000.0)

    assert decision.action == recovery.RESET
    assert decision.history == (1000.0,)


def test_with_a_budget_of_two_the_third_failure_gets_no_action():
    policy = RecoveryPolicy(recovery.RESET, max_actions=2, window=HOUR)
    history = ()
    actions = []
    for now in (1000.0, 1100.0, 1200.0):
        decision = policy.decide(history, now)
        history = decision.history
        actions.append(decision.action)

    assert actions == [recovery.RESET, recovery.RESET, recovery.NONE]
    assert decision.budget_exhausted
    assert decision.wanted == recovery.RESET
    assert 'budget exhausted' in decision.reason
    # An exhausted budget is not charged again.
    assert decision.history == (1000.0, 1100.0)


def test_the_budget_comes_back_when_the_oldest_action_leaves_the_window():
    policy = RecoveryPolicy(recovery.RESET, max_actions=2, window=HOUR)
    history = (1000.0, 1100.0)

    still_within = policy.decide(history, now=1000.0 + HOUR - 1)
    exactly_expired = policy.decide(history, now=1000.0 + HOUR)

    assert still_within.budget_exhausted
    assert still_within.available_at == 1000.0 + HOUR
    assert exactly_expired.action == recovery.RESET
    assert exactly_expired.history == (1100.0, 1000.0 + HOUR)


def test_old_actions_are_dropped_from_the_history():
    policy = RecoveryPolicy(recovery.RESTART, max_actions=3, window=100)

    decision = policy.decide([5.0, 50.0, 900.0], now=950.0)

    assert decision.history == (900.0, 950.0)


def test_actions_stamped_after_now_still_count_against_the_budget():
    # The clock stepped back an hour after three actions: they count as
    # taken now, not as never taken.
    policy = RecoveryPolicy(recovery.RESET, max_actions=3, window=HOUR)
    later = 10_000.0 + HOUR

    decision = policy.decide((later, later + 60, later + 120), now=10_000.0)

    assert decision.budget_exhausted
    assert decision.history == (10_000.0,) * 3
    assert policy.decide(decision.history, now=10_000.0 + HOUR).action == \
        recovery.RESET


def test_the_history_is_a_plain_value_that_survives_serialization():
    policy = RecoveryPolicy(recovery.RESET, max_actions=2, window=HOUR)
    history = policy.decide((), now=1000.0).history
    history = policy.decide(history, now=1001.0).history

    restored = json.loads(json.dumps(history))

    assert policy.decide(restored, now=1002.0).budget_exhausted


def test_a_domain_override_replaces_the_configured_action():
    policy = RecoveryPolicy(recovery.RESET)

    assert policy.decide((), 1.0, override=recovery.NONE).action == \
        recovery.NONE
    assert policy.decide((), 1.0, override=recovery.RESTART).action == \
        recovery.RESTART


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError):
        RecoveryPolicy('reboot')
    with pytest.raises(ValueError):
        RecoveryPolicy().decide((), 1.0, override='reboot')


# -- reports ------------------------------------------------------------------

def test_reports_say_what_became_of_the_recovery():
    policy = RecoveryPolicy(recovery.RESET, max_actions=1, window=HOUR)
    acted = policy.decide((), 10.0)
    exhausted = policy.decide(acted.history, 20.0)

    assert recovery.report(acted, True, 'reset') == recovery.RecoveryReport(
        'reset', 'done', 'reset')
    assert recovery.report(acted, False, 'no').result == 'failed'
    assert recovery.report(exhausted).result == 'budget_exhausted'
    assert recovery.report(exhausted).action == 'reset'
    assert recovery.report(
        RecoveryPolicy().decide((), 1.0)).result == 'not_requested'


def test_a_report_of_an_action_needs_its_result():
    acted = RecoveryPolicy(recovery.RESET).decide((), 10.0)
    with pytest.raises(ValueError):
        recovery.report(acted)


def test_notification_details_are_plain_json():
    report = recovery.RecoveryReport('reset', 'done', 'reset')

    details = recovery.notification_details(
        4, report, [{'kind': 'console', 'path': '/x'}],
        reason='guest kernel panic (pvpanic)')

    assert json.loads(json.dumps(details)) == {
        'reason': 'guest kernel panic (pvpanic)',
        'consecutive_misses': 4,
        'recovery': {'action': 'reset', 'result': 'done', 'detail': 'reset'},
        'evidence': [{'kind': 'console', 'path': '/x'}],
    }


# -- which action a domain gets ---------------------------------------------------

def test_with_the_masakari_driver_no_domain_is_recovered_by_the_monitor():
    action, note = recovery.effective_action(recovery.NONE, recovery.RESET,
                                             'masakari')

    assert action == recovery.NONE
    assert 'ignored' in note


def test_without_an_engine_the_domain_metadata_wins():
    assert recovery.effective_action(recovery.RESET, None, 'webhook') == \
        (recovery.RESET, '')
    assert recovery.effective_action(recovery.RESET, recovery.NONE,
                                     'webhook') == (recovery.NONE, '')
    assert recovery.effective_action(recovery.NONE, recovery.RESTART,
                                     'none') == (recovery.RESTART, '')


# -- options ------------------------------------------------------------------

def test_options_default_to_no_action_three_per_hour():
    conf = cfg.ConfigOpts()
    recovery.register_opts(conf)
    conf([], default_config_files=[])

    policy = RecoveryPolicy.from_conf(conf)

    assert (policy.action, policy.max_actions, policy.window) == (
        'none', 3, 3600)


def test_an_unknown_action_in_the_config_is_refused(tmp_path):
    path = tmp_path / 'monitor.conf'
    path.write_text('[recovery]\naction = reboot\n')
    conf = cfg.ConfigOpts()
    recovery.register_opts(conf)
    conf(['--config-file', str(path)], default_config_files=[])

    with pytest.raises(ValueError):
        conf.recovery.action


def test_resume_is_decided_within_the_same_budget():
    policy = recovery.RecoveryPolicy(recovery.NONE, max_actions=2,
                                     window=3600)
    first = policy.decide((), 100.0, override=recovery.RESUME)
    second = policy.decide(first.history, 200.0, override=recovery.RESTART)
    third = policy.decide(second.history, 300.0, override=recovery.RESUME)

    assert (first.action, second.action) == (recovery.RESUME,
                                             recovery.RESTART)
    assert third.budget_exhausted and third.action == recovery.NONE


def test_resume_is_no_action_for_a_guest_that_stopped_answering():
    assert recovery.RESUME not in recovery.ACTIONS


# -- the ladder -----------------------------------------------------------------

def ladder_conf(ladder, driver='webhook'):
    conf = cfg.ConfigOpts()
    recovery.register_opts(conf)
    conf.register_opts([cfg.StrOpt('driver')], group='notifier')
    conf([])
    conf.set_override('ladder', ladder, group='recovery')
    conf.set_override('driver', driver, group='notifier')
    return conf


def test_a_ladder_is_refused_with_the_ha_engine_or_a_step_twice():
    recovery.check_conf(ladder_conf(['nmi', 'reset']))
    recovery.check_conf(ladder_conf(None, driver='masakari'))
    with pytest.raises(ConfigError, match='HA engine'):
        recovery.check_conf(ladder_conf(['nmi'], driver='masakari'))
    with pytest.raises(ConfigError, match='names a step twice'):
        recovery.check_conf(ladder_conf(['reset', 'reset']))


def test_the_ladder_applies_unless_the_domain_names_its_own_action():
    ladder = ('nmi', 'reset')

    assert recovery.ladder_of('reset', None, 'webhook', ladder) == ladder
    assert recovery.ladder_of('reset', 'restart', 'webhook', ladder) == \
        ('restart',)
    assert recovery.ladder_of('reset', None, 'webhook', ()) == ('reset',)
    assert recovery.ladder_of('reset', None, 'masakari', ladder) == ()
