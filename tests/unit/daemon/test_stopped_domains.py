"""Records of stopped domains, kept for the hard reboot window."""

from dogpile.cache import region as dogpile_region

from monitor.daemon import metrics as metrics_mod
from monitor.daemon import stopped_domains
from monitor.health import policy as health_policy
from monitor.health import record as domain_record
from monitor.health import states
from monitor.store import domain_store

UUID = '6f1f5a7e-2c8e-4d0a-9a57-000000000001'
T0 = 1_700_000_000.0


def make(window=120):
    region = dogpile_region.make_region().configure('dogpile.cache.memory')
    store = domain_store.DomainStore(region, namespace='compute-1')
    policy = health_policy.HealthPolicy(3, 0, 30, window)
    return (stopped_domains.StoppedDomains(
        policy, store, metrics_mod.MonitorMetrics()), store)


def record():
    return domain_record.DomainRecord(uuid=UUID, name='vm',
                                      state=states.HEALTHY, last_ok=T0,
                                      ever_healthy=True)


def test_a_domain_back_within_the_window_keeps_its_history_in_discovery():
    stopped, store = make()
    stopped.keep(record(), T0)

    restored = stopped.restore(UUID, T0 + 60, 'started')

    assert restored.state == states.DISCOVERY and restored.ever_healthy
    assert store.get(UUID) == restored
    assert stopped.restore(UUID, T0 + 61, 'started') is None, 'taken once'


def test_a_domain_back_after_the_window_starts_afresh():
    stopped, store = make()
    stopped.keep(record(), T0)
    stopped.expire(T0 + 121)
    assert stopped.restore(UUID, T0 + 121, 'started') is None
    assert store.get(UUID) is None


def test_a_zero_window_keeps_nothing():
    stopped, _store = make(window=0)
    stopped.keep(record(), T0)
    assert stopped.restore(UUID, T0, 'started') is None
