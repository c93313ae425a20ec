"""The recovery budget's memory: it counts on the monotonic clock within a
run whatever the wall clock does, keeps wall times across restarts, and
takes only sane values from its file, without ever stopping the start."""

import json
import logging
import os

import pytest

from monitor.health import recovery_policy as recovery
from monitor.store import recovery_history
from monitor.store.recovery_history import RecoveryHistory

UUID = '6f1f5a7e-2c8e-4d0a-9a57-000000000001'
OTHER = '6f1f5a7e-2c8e-4d0a-9a57-000000000002'
T0 = 1_700_000_000.0
HOUR = 3600


class Clocks:
    """A wall clock that can step and a monotonic one that cannot."""

    def __init__(self, wall=T0, monotonic=500.0):
        self.now = wall
        self.since_boot = monotonic

    def wall(self):
        return self.now

    def monotonic(self):
        return self.since_boot

    def advance(self, seconds):
        self.now += seconds
        self.since_boot += seconds

    def step(self, seconds):
        self.now += seconds


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'recovery.json')


@pytest.fixture
def clocks():
    return Clocks()


def history_at(path, clocks, window=HOUR):
    return RecoveryHistory(path, window, clock=clocks.wall,
                           monotonic=clocks.monotonic)


def recover(policy, history, clocks, uuid=UUID):
    """What the recovery step does: decide on the wall clock's now and
    write the decision down."""
    now = clocks.wall()
    decision = policy.decide(history.get(uuid), now)
    if not decision.budget_exhausted:
        history.put(uuid, decision.history, now)
    return decision


@pytest.mark.parametrize('step', [-2 * HOUR, 2 * HOUR],
                         ids=['backward', 'forward'])
def test_a_wall_clock_step_neither_refills_nor_drains_the_budget(
        path, clocks, step):
    policy = recovery.RecoveryPolicy(recovery.RESET, max_actions=3,
                                     window=HOUR)
    history = history_at(path, clocks)
    for _ in range(3):
        clocks.advance(60)
        assert recover(policy, history, clocks).action == recovery.RESET

    clocks.step(step)
    clocks.advance(60)

    assert recover(policy, history, clocks).budget_exhausted
    # An hour after the first action (on the monotonic clock) its place
    # is free again, not two hours early or late.
    clocks.advance(HOUR - 3 * 60 - 1)
    assert recover(policy, history, clocks).budget_exhausted
    clocks.advance(1)
    assert recover(policy, history, clocks).action == recovery.RESET


def test_the_file_keeps_wall_times_as_the_clock_runs_after_a_step(
        path, clocks, caplog):
    policy = recovery.RecoveryPolicy(recovery.RESET, max_actions=2,
                                     window=HOUR)
    history = history_at(path, clocks)
    recover(policy, history, clocks)
    clocks.advance(60)
    clocks.step(-2 * HOUR)

    recover(policy, history, clocks)

    with open(path) as stream:
        assert json.load(stream) == {UUID: [T0 - 2 * HOUR, T0 - 2 * HOUR
                                            + 60]}
    assert 'The wall clock stepped by -7200 s' in caplog.text
    # Restarted on that clock: the budget is still spent.
    assert recover(policy, history_at(path, clocks), clocks).budget_exhausted


def test_times_after_now_at_start_count_as_taken_now(path, clocks):
    # Written before the clock was stepped back a day while the daemon
    # was down.
    with open(path, 'w') as stream:
        json.dump({UUID: [T0 + 86400, T0 + 86460]}, stream)

    history = history_at(path, clocks)

    assert history.get(UUID) == (T0, T0)
    policy = recovery.RecoveryPolicy(recovery.RESET, max_actions=2,
                                     window=HOUR)
    assert recover(policy, history, clocks).budget_exhausted


def test_a_huge_integer_is_left_out_and_the_rest_kept(path, clocks, caplog):
    with open(path, 'w') as stream:
        stream.write('{"%s": [%s, %r], "%s": [%s]}' % (
            UUID, '9' * 400, T0 - 60, OTHER, '7' * 5000))

    history = history_at(path, clocks)

    assert history.get(UUID) == (T0 - 60,)
    assert history.get(OTHER) == ()
    [warning] = [r.getMessage() for r in caplog.records
                 if r.levelno == logging.WARNING]
    assert 'left out 2 value(s)' in warning
    assert 'an integer of 400 digits' in warning
    assert len(warning) < 400


@pytest.mark.parametrize('value', [
    'NaN', 'Infinity', '-Infinity', '1e400', '-5', 'true', '"1700000000"',
    '4102444801', 'null', '[1700000000]',
])
def test_values_that_are_no_time_are_left_out(path, clocks, caplog, value):
    with open(path, 'w') as stream:
        stream.write('{"%s": [%s, %r]}' % (UUID, value, T0 - 60))

    history = history_at(path, clocks)

    assert history.get(UUID) == (T0 - 60,)
    assert 'left out 1 value(s)' in caplog.text


def test_keys_and_lists_that_are_not_a_budget_are_left_out(path, clocks):
    with open(path, 'w') as stream:
        json.dump({'../../etc/passwd': [T0], UUID: {'at': T0},
                   OTHER: [T0 - 5]}, stream)

    history = history_at(path, clocks)

    assert history.get(UUID) == ()
    assert history.get(OTHER) == (T0 - 5,)
    history.put(OTHER, (T0 - 5, T0), T0)
    with open(path) as stream:
        assert json.load(stream) == {OTHER: [T0 - 5, T0]}


def test_at_most_the_newest_times_any_budget_can_use_are_kept(path, clocks):
    times = [T0 - n for n in range(recovery_history.MAX_TIMES + 5)]
    with open(path, 'w') as stream:
        json.dump({UUID: times}, stream)

    kept = history_at(path, clocks).get(UUID)

    assert len(kept) == recovery_history.MAX_TIMES
    assert kept[-1] == T0


@pytest.mark.parametrize('text', ['[' * 100000, '"%s"' % ('1' * 5000),
                                  '[1, 2]'])
def test_a_file_that_is_no_history_starts_a_full_budget_and_says_so(
        path, clocks, caplog, text):
    with open(path, 'w') as stream:
        stream.write(text)

    history = history_at(path, clocks)

    assert history.get(UUID) == ()
    [error] = [r.getMessage() for r in caplog.records
               if r.levelno == logging.ERROR]
    assert error.startswith('Cannot read the recovery history %s (' % path)
    assert '\n' not in error


def test_a_fifo_in_place_of_the_file_does_not_hang_the_start(path, clocks,
                                                             caplog):
    os.mkfifo(path)

    history = history_at(path, clocks)

    assert history.get(UUID) == ()
    assert 'not a regular file' in caplog.text
