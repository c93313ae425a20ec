"""Corroboration: a guest whose agent is silent but whose I/O goes on is
spared the report; without evidence it is reported as before."""

from monitor.daemon import corroboration
from monitor.daemon import metrics as metrics_mod
from monitor.health import guest_activity
from monitor.health import policy as health_policy
from monitor.health import record as domain_record
from monitor.health import states

UUID = '6f1f5a7e-2c8e-4d0a-9a57-000000000001'


def verdict():
    record = domain_record.DomainRecord(uuid=UUID, name='vm',
                                        state=states.ERROR, misses=3)
    return health_policy.Verdict(record, states.ERROR, states.ERROR, True,
                                 '3 consecutive missed pings')


def test_with_corroboration_off_the_verdict_stands():
    off = guest_activity.SilentPeriods(enabled=False)
    assert corroboration.corroborate(
        off, metrics_mod.MonitorMetrics(), verdict(), None) == verdict()


def test_without_counters_the_guest_is_reported_saying_why():
    periods = guest_activity.SilentPeriods(enabled=True)
    periods.missed(UUID, None)

    judged = corroboration.corroborate(
        periods, metrics_mod.MonitorMetrics(), verdict(), None)

    assert judged.notify is True
    assert judged.reason.startswith('3 consecutive missed pings; ')
