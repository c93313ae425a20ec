"""The fault-injection hook (a no-op unless the environment names the step,
then an immediate SIGKILL), and the daemon killed at each step."""

import os
import signal
import subprocess
import sys

import dogpile.cache.region
import pytest

from monitor import crash_points
from monitor.daemon import tracker as domain_tracker
from monitor.health import lifecycle
from monitor.health import mass_failure
from monitor.health import policy as health_policy
from monitor.health import states
from monitor.health.ping_outcome import Outcome
from monitor.health.ping_outcome import PingResult
from monitor.notify import delivery
from monitor.notify import outbox as outbox_mod
from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind
from monitor.store import domain_store
from monitor.virt import domain_xml
from monitor.virt import domains as libvirt_domains

SCRIPT = ('from monitor import crash_points\n'
          'crash_points.reached("after_post")\n'
          'print("survived")\n')


def run(env_value):
    env = dict(os.environ)
    env.pop(crash_points.ENV, None)
    if env_value is not None:
        env[crash_points.ENV] = env_value
    return subprocess.run([sys.executable, '-c', SCRIPT], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('env_value', [None, '', 'after_enqueue'])
def test_a_step_not_named_is_passed(env_value):
    result = run(env_value)
    assert (result.returncode, result.stdout) == (0, 'survived\n')


def test_the_named_step_kills_the_process_at_once():
    result = run('after_post')
    assert result.returncode == -signal.SIGKILL
    assert result.stdout == ''


def test_the_steps_are_the_notification_path():
    assert crash_points.ALL == ('after_enqueue', 'after_post',
                                'after_mark_delivered')


# -- the daemon killed at each step, then started again ---------------------------
#
# The real tracker, policy, breaker, delivery worker and sqlite outbox; the
# engine is a fake that stores what it accepts and, like Masakari, answers
# 409 to the same notification sent again. ``reached`` raises at the named
# step: nothing after it runs, as with SIGKILL. The "restart" builds new
# objects on the same outbox file, with the domain store kept (dbm) or
# lost (memory).

T0 = 1_700_000_000.0
AGENT = domain_xml.AgentChannel('org.qemu.guest_agent.0', '/x', 'connected')
UUIDS = ['00000000-0000-4000-8000-%012d' % n for n in range(1, 4)]
VICTIM = UUIDS[0]


class Crash(BaseException):
    """The process dies here."""


class Engine:
    """Stores what it accepts; the same notification again is a 409."""

    def __init__(self):
        self.stored = []

    def send(self, notification):
        if notification in self.stored:
            return DeliveryOutcome(OutcomeKind.DUPLICATE, 409, 'duplicate')
        self.stored.append(notification)
        return DeliveryOutcome(OutcomeKind.ACCEPTED, 202, '', 'e-1')

    def stored_for(self, uuid):
        return [n for n in self.stored if n.instance_uuid == uuid]


class Daemon:
    """One run of the daemon's notification path, stepped by hand."""

    def __init__(self, path, store, engine, now):
        self.store = store
        self.outbox = outbox_mod.Outbox(path, max_size=100)
        self.tracker = domain_tracker.DomainTracker(
            store, health_policy.HealthPolicy(3, 0, 30),
            mass_failure.MassFailureBreaker(3, 0.5), self.outbox,
            'compute-1', clock=lambda: pytest.fail('wall clock read'))
        self.worker = delivery.DeliveryWorker(self.outbox, engine)
        self.now = now
        self.tracker.adopt_pending(self.outbox.pending(), now=now)
        self.tracker.libvirt_connected(now=now)

    def sweep(self, missed=()):
        self.now += 10
        domains = [libvirt_domains.DomainInfo(u, 'vm-' + u[-1], True, False,
                                           AGENT) for u in UUIDS]
        to_ping = self.tracker.reconcile(domains, now=self.now)
        self.tracker.apply_round(
            {i.uuid: PingResult(Outcome.MISSED if i.uuid in missed
                                else Outcome.OK, 'test', self.now, 0.01)
             for i in to_ping}, now=self.now + 0.05)
        self.worker.run_once(now=self.now + 0.1)

    def restarted_guest(self, uuid):
        self.now += 1
        self.tracker.apply_event(lifecycle.DomainEvent(
            uuid, 'vm', lifecycle.EventKind.LIFECYCLE,
            lifecycle.LifecycleEvent.STARTED, None, self.now), now=self.now)

    def state(self, uuid):
        return self.store.get(uuid).state


def memory_store():
    region = dogpile.cache.region.make_region().configure(
        'dogpile.cache.memory')
    return domain_store.DomainStore(region, namespace='compute-1')


@pytest.mark.parametrize('store_kept', [True, False],
                         ids=['persisted-store', 'memory-store'])
@pytest.mark.parametrize('step', crash_points.ALL)
def test_a_crash_at_each_step_gives_one_notification_per_failure(
        tmp_path, monkeypatch, step, store_kept):
    def reached(name):
        if name == step:
            raise Crash(name)
    monkeypatch.setattr(crash_points, 'reached', reached)
    path = str(tmp_path / 'outbox.sqlite')
    engine = Engine()
    store = memory_store()
    first = Daemon(path, store, engine, T0)
    first.sweep()
    with pytest.raises(Crash):
        for _ in range(3):
            first.sweep(missed={VICTIM})
    monkeypatch.setattr(crash_points, 'reached', lambda name: None)

    # Started again on the same outbox file; the guest is still dead.
    second = Daemon(path, store if store_kept else memory_store(), engine,
                    first.now + 5)
    for _ in range(10):
        second.sweep(missed={VICTIM})

    assert len(engine.stored_for(VICTIM)) == 1
    assert second.outbox.pending() == []
    # With its record, the domain is reported (derived from the outbox);
    # without, it waits in discovery for an agent it never heard.
    assert second.state(VICTIM) == (states.REPORTED if store_kept
                                    else states.DISCOVERY)

    # Recovered by the engine, healthy, then failing again: a new incident.
    second.restarted_guest(VICTIM)
    second.sweep()
    assert second.state(VICTIM) == states.HEALTHY
    for _ in range(6):
        second.sweep(missed={VICTIM})

    assert len(engine.stored_for(VICTIM)) == 2
    assert second.state(VICTIM) == states.REPORTED
    assert engine.stored_for(UUIDS[1]) == engine.stored_for(UUIDS[2]) == []
