"""Application probes: how each kind is declared and its limits, how a
run is judged, and when results make an application failure."""

import pytest

from monitor.health import probes
from monitor.health.probes import Change
from monitor.health.probes import Outcome
from monitor.health.probes import ProbeResult
from monitor.health.probes import ProbeState


def exec_probe(**overrides):
    values = {'name': 'db', 'kind': 'exec', 'path': '/usr/bin/check-db'}
    values.update(overrides)
    return values


def heartbeat_probe(**overrides):
    values = {'name': 'app', 'kind': 'heartbeat', 'file': '/run/app.hb'}
    values.update(overrides)
    return values


# -- declaring ----------------------------------------------------------------

def test_an_exec_probe_has_kubevirts_defaults():
    spec, error = probes.probe_from_attributes(exec_probe(), ['--quick'])

    assert error is None
    assert spec.path == '/usr/bin/check-db'
    assert spec.args == ('--quick',)
    assert (spec.period_seconds, spec.timeout_seconds,
            spec.failure_threshold, spec.success_threshold) == (10, 1, 3, 1)


def test_a_heartbeat_probe_allows_30_s_by_default():
    spec, error = probes.probe_from_attributes(heartbeat_probe())

    assert error is None
    assert spec.file == '/run/app.hb'
    assert spec.max_age == 30


def test_every_number_is_read():
    spec, _error = probes.probe_from_attributes(heartbeat_probe(
        max_age='5', period_seconds='4', timeout_seconds='2',
        failure_threshold='2', success_threshold='3'))

    assert (spec.max_age, spec.period_seconds, spec.timeout_seconds,
            spec.failure_threshold, spec.success_threshold) == (5, 4, 2, 2, 3)


@pytest.mark.parametrize('values, args, wanted', [
    (exec_probe(name=''), (), 'needs a name'),
    (exec_probe(name='a b'), (), 'probe name'),
    (exec_probe(name='x' * 33), (), 'at most 32'),
    (exec_probe(kind='tcp'), (), 'kind="tcp" must be one of exec, heartbeat'),
    (exec_probe(path='check-db'), (), 'absolute path'),
    (exec_probe(path='/' + 'x' * 255), (), 'more than 255'),
    (exec_probe(path='/bin/x\ny'), (), 'control characters'),
    (exec_probe(file='/run/x'), (), 'file is not an attribute'),
    (exec_probe(max_age='5'), (), 'max_age is not an attribute'),
    (heartbeat_probe(path='/bin/x'), (), 'path is not an attribute'),
    (heartbeat_probe(), ('x',), 'takes no arguments'),
    (exec_probe(), ['a'] * 33, '33 arguments, more than 32'),
    (exec_probe(), ['a\x07'], 'control characters'),
    (exec_probe(period_seconds='0'), (), 'between 1 and 86400'),
    (exec_probe(timeout_seconds='61'), (), 'between 1 and 60'),
    (exec_probe(failure_threshold='x'), (), 'must be an integer'),
    (exec_probe(timeout_seconds='10'), (), 'shorter than period_seconds'),
    (exec_probe(interval='10'), (), 'unknown probe attribute interval'),
])
def test_a_probe_that_is_not_exactly_right_is_refused(values, args, wanted):
    spec, error = probes.probe_from_attributes(values, args)

    assert spec is None
    assert wanted in error


def test_a_configured_probe_is_key_value_pairs_with_split_arguments():
    spec, error = probes.parse_config_probe(
        'name=db, kind=exec, path=/usr/bin/check-db, args=--quick -v, '
        'period_seconds=5')

    assert error is None
    assert spec.args == ('--quick', '-v')
    assert spec.period_seconds == 5


@pytest.mark.parametrize('text, wanted', [
    ('name=db, kind=exec, path', 'is not key=value'),
    ('name=db, name=x, kind=exec, path=/x', 'name is given twice'),
    ('name=db, kind=exec, path=/x, args=a, args=b', 'args is given twice'),
])
def test_a_configured_probe_that_does_not_parse_is_refused(text, wanted):
    assert wanted in probes.parse_config_probe(text).error


def test_one_domain_has_at_most_8_probes_with_distinct_names():
    spec = probes.probe_from_attributes(exec_probe()).spec

    assert 'given twice' in probes.unique([spec, spec])
    assert 'more than 8' in probes.unique(
        [probes.probe_from_attributes(exec_probe(name='p%d' % i)).spec
         for i in range(9)])
    assert probes.unique([spec]) is None


# -- judging one run --------------------------------------------------------------

HEARTBEAT = probes.probe_from_attributes(heartbeat_probe(max_age='30')).spec
EXEC = probes.probe_from_attributes(exec_probe()).spec


def test_a_fresh_heartbeat_passes():
    assert probes.heartbeat_result(HEARTBEAT, b'1000\n', 1010).outcome is \
        Outcome.PASSED


def test_a_heartbeat_older_than_max_age_fails():
    result = probes.heartbeat_result(HEARTBEAT, b'1000\n', 1031)

    assert result.outcome is Outcome.FAILED
    assert '31 s old, more than max_age 30 s' in result.detail


@pytest.mark.parametrize('content', [b'', b'soon', b'-5', b'nan'])
def test_a_heartbeat_file_without_a_time_fails(content):
    result = probes.heartbeat_result(HEARTBEAT, content, 1000)

    assert result.outcome is Outcome.FAILED
    assert 'holds no Unix time' in result.detail


def test_an_exec_run_passes_on_exit_code_0_only():
    assert probes.exec_result(EXEC, True, 0, b'ok', 7).outcome is \
        Outcome.PASSED
    failed = probes.exec_result(EXEC, True, 1, b'db down', 7)
    assert failed.outcome is Outcome.FAILED
    assert failed.exit_code == 1
    assert failed.output == 'db down'
    assert probes.exec_result(EXEC, True, None, b'', 7,
                              signal=9).outcome is Outcome.FAILED


def test_an_exec_run_keeps_at_most_4_kib_of_output():
    result = probes.exec_result(EXEC, True, 1, b'x' * 10000, 7)

    assert len(result.output) == probes.MAX_OUTPUT_BYTES


def test_a_command_still_running_fails_and_stays_in_flight():
    result = probes.exec_result(EXEC, False, None, b'', 42)

    assert result.outcome is Outcome.FAILED
    assert result.in_flight == 42
    assert 'no other run starts' in result.detail


# -- thresholds -------------------------------------------------------------------

PASSED = ProbeResult(Outcome.PASSED, 'exited 0')
FAILED = ProbeResult(Outcome.FAILED, 'exited 1', exit_code=1)
UNAVAILABLE = ProbeResult(Outcome.UNAVAILABLE, 'disabled')


def run(spec, results, state=None):
    state = state or ProbeState()
    changes = []
    for result in results:
        state, change = probes.judge(spec, state, result)
        changes.append(change)
    return state, changes


def test_the_application_fails_on_the_threshold_failure_once():
    state, changes = run(EXEC, [FAILED] * 5)

    assert changes == [Change.NONE, Change.NONE, Change.FAILED, Change.NONE,
                       Change.NONE]
    assert state.status == probes.FAILING


def test_a_pass_between_failures_starts_the_count_again():
    _state, changes = run(EXEC, [FAILED, FAILED, PASSED, FAILED, FAILED])

    assert Change.FAILED not in changes


def test_a_failing_application_passes_after_success_threshold_passes():
    spec = probes.probe_from_attributes(exec_probe(
        success_threshold='2')).spec
    state, changes = run(spec, [FAILED] * 3 + [PASSED, PASSED])

    assert changes[-2:] == [Change.NONE, Change.RECOVERED]
    assert state.status == probes.PASSING


def test_an_unavailable_probe_is_said_once_and_never_fails():
    state, changes = run(EXEC, [UNAVAILABLE] * 4)

    assert changes == [Change.UNAVAILABLE] + [Change.NONE] * 3
    assert state.status == probes.UNAVAILABLE
    assert state.failures == 0


def test_a_probe_available_again_counts_afresh():
    state, changes = run(EXEC, [FAILED, FAILED, UNAVAILABLE, FAILED])

    assert changes[-1] is Change.AVAILABLE
    assert state.failures == 1


def test_an_unknown_result_counts_for_nothing():
    state, changes = run(EXEC, [FAILED, ProbeResult(Outcome.UNKNOWN, 'x'),
                                FAILED])

    assert state.failures == 2
    assert Change.FAILED not in changes


def test_an_application_failure_is_told_apart_by_its_details():
    state, _changes = run(EXEC, [FAILED] * 3)

    details = probes.failure_details(EXEC, state)

    assert details['incident'] == 'application'
    assert details['probe']['name'] == 'db'
    assert details['probe']['exit_code'] == 1
    assert 'failed 3 time(s) in a row: exited 1' in probes.failure_reason(
        EXEC, state)
