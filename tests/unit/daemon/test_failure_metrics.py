"""Failures by reason, recoveries by action and result (each ladder step
counted), probe runs by outcome: declared series only."""

import prometheus_client
import pytest

from monitor.daemon import failure_metrics
from monitor.health import recovery_policy as recovery

P = failure_metrics.PREFIX


@pytest.fixture
def counts():
    registry = prometheus_client.CollectorRegistry()
    return failure_metrics.FailureMetrics(registry), registry


def test_failures_are_counted_by_reason(counts):
    m, registry = counts

    m.guest_failure('probe')

    assert registry.get_sample_value(P + 'guest_failures_total',
                                     {'reason': 'probe'}) == 1
    assert registry.get_sample_value(P + 'guest_failures_total',
                                     {'reason': 'pvpanic'}) == 0
    with pytest.raises(ValueError):
        m.guest_failure('vm-42')


def test_each_step_of_a_ladder_is_a_recovery(counts):
    m, registry = counts

    m.recovery(recovery.RecoveryReport('reset', 'done', '', (
        {'action': 'nmi', 'result': 'failed'},
        {'action': 'reset', 'result': 'done'})))
    m.recovery(recovery.RecoveryReport('reset', 'budget_exhausted'))

    def value(action, result):
        return registry.get_sample_value(
            P + 'recoveries_total', {'action': action, 'result': result})
    assert value('nmi', 'failed') == 1
    assert value('reset', 'done') == 1
    assert value('reset', 'budget_exhausted') == 1


def test_probe_runs_are_counted_by_outcome(counts):
    m, registry = counts

    m.probe_run('unavailable')

    assert registry.get_sample_value(
        P + 'probe_runs_total', {'probe_outcome': 'unavailable'}) == 1
