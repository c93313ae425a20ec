"""Counters of failures and recoveries, on the daemon's registry
(``metrics.MonitorMetrics.failures``): failures by reason, recoveries by
action and result, application probe runs by outcome. Every label takes a
declared set of values, shown at 0 from the start."""

import itertools

import prometheus_client

from monitor.health import failure_reasons
from monitor.health import probes
from monitor.health import recovery_policy as recovery

PREFIX = 'guest_health_monitor_'
RECOVERY_ACTIONS = (recovery.RESET, recovery.RESTART, recovery.RESUME,
                    recovery.NMI, recovery.LADDER)
# What a recovery that ran comes to (not the states of a notification
# held for it).
RECOVERY_RESULTS = (recovery.RESULT_DONE, recovery.RESULT_FAILED,
                    recovery.RESULT_BUDGET_EXHAUSTED,
                    recovery.RESULT_BREAKER_OPEN, recovery.RESULT_TIMED_OUT)
PROBE_OUTCOMES = tuple(outcome.value for outcome in probes.Outcome)


class FailureMetrics:

    def __init__(self, registry):
        self.guest_failures = prometheus_client.Counter(
            PREFIX + 'guest_failures_total',
            'Guests found failed, by reason: missed_pings, pvpanic, '
            'watchdog, qemu_ended, probe (an application probe), io_error, '
            'other. Counted once per incident, when it is notified.',
            ['reason'], registry=registry)
        for reason in failure_reasons.REASONS:
            self.guest_failures.labels(reason)
        self.recoveries = prometheus_client.Counter(
            PREFIX + 'recoveries_total',
            'Recoveries by action (reset, restart, resume, nmi, and ladder '
            'for a ladder given up before its first step) and result (done, '
            'failed, budget_exhausted, breaker_open, timed_out); each '
            'step of a recovery ladder is counted.',
            ['action', 'result'], registry=registry)
        for action, result in itertools.product(RECOVERY_ACTIONS,
                                                RECOVERY_RESULTS):
            self.recoveries.labels(action, result)
        self.probe_runs = prometheus_client.Counter(
            PREFIX + 'probe_runs_total',
            'Application probe runs by outcome: passed, failed, '
            'unavailable (the agent refuses the command), unknown.',
            ['probe_outcome'], registry=registry)
        for outcome in PROBE_OUTCOMES:
            self.probe_runs.labels(outcome)

    def guest_failure(self, reason):
        if reason not in failure_reasons.REASONS:
            raise ValueError('%r is not a failure reason' % (reason,))
        self.guest_failures.labels(reason).inc()

    def recovery(self, report):
        """A recovery is over (recovery.RecoveryReport): each step of a
        ladder, or its one action."""
        steps = report.steps or ({'action': report.action,
                                  'result': report.result},)
        for step in steps:
            action, result = step['action'], step['result']
            if action in RECOVERY_ACTIONS and result in RECOVERY_RESULTS:
                self.recoveries.labels(action, result).inc()

    def probe_run(self, outcome):
        if outcome not in PROBE_OUTCOMES:
            raise ValueError('%r is not a probe outcome' % (outcome,))
        self.probe_runs.labels(outcome).inc()
