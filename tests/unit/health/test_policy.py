import dataclasses

import pytest
from oslo_config import cfg

from monitor.health import lifecycle
from monitor.health import policy as health_policy
from monitor.health import record as domain_record
from monitor.health import states

A = lifecycle.Action
D, H, E, R = states.DISCOVERY, states.HEALTHY, states.ERROR, states.REPORTED
UUID = '6f1f5a7e-2c8e-4d0a-9a57-0d6a3c1b2e11'
T0 = 1_700_000_000.0


def policy(threshold=3, discovery_timeout=0, grace=30):
    return health_policy.HealthPolicy(threshold, discovery_timeout, grace)


def record(**changes):
    return dataclasses.replace(
        domain_record.DomainRecord(UUID, 'instance-00000001',
                                   discovery_since=T0), **changes)


def healthy(**changes):
    base = dict(state=H, ever_healthy=True, last_ok=T0, discovery_since=None)
    base.update(changes)
    return record(**base)


F = health_policy.OutboxFacts


class Guest:
    """Drives one record through the policy the way the daemon does: a
    notification asked for is queued at once in a small outbox (a list of
    [id, created_at, status]) whose facts the policy is shown."""

    def __init__(self, pol, rec=None, now=T0):
        self.policy = pol
        self.record = rec or pol.new_record(UUID, 'instance-00000001', now)
        self.now = now
        self.notified = []
        self.outbox = []

    def facts(self):
        pending = [n for n in self.outbox if n[2] == 'pending']
        finished = [n for n in self.outbox if n[2] != 'pending']
        facts = F()
        if pending:
            facts = facts._replace(pending_id=pending[-1][0])
        if finished:
            facts = facts._replace(
                finished_id=finished[-1][0],
                finished_created_at=finished[-1][1],
                finished_dead=finished[-1][2] == 'dead')
        return facts

    def _apply(self, verdict):
        self.record = verdict.record
        if verdict.notify:
            notification_id = 'n-%d' % (len(self.notified) + 1)
            self.notified.append((self.now, verdict.reason))
            self.outbox.append([notification_id, self.now, 'pending'])
        return verdict

    def ok(self, dt=10):
        self.now += dt
        return self._apply(self.policy.ping_ok(self.record, self.now))

    def miss(self, dt=10):
        self.now += dt
        return self._apply(self.policy.ping_missed(self.record, self.now,
                                                   self.facts()))

    def tick(self, dt=10):
        self.now += dt
        return self._apply(self.policy.tick(self.record, self.now,
                                            self.facts()))

    def event(self, action, dt=1):
        self.now += dt
        verdict = self.policy.apply_lifecycle(self.record, action, self.now)
        self.record = verdict.record
        return verdict

    def accepted(self, dt=1, status='delivered'):
        """The engine takes the oldest pending notification; the daemon
        then looks at the outbox."""
        self.now += dt
        [first, *_] = [n for n in self.outbox if n[2] == 'pending']
        first[2] = status
        return self.look()

    def rejected(self, dt=1):
        return self.accepted(dt, status='dead')

    def look(self):
        return self._apply(self.policy.delivery_seen(
            self.record, self.facts(), self.now))


# -- new records -------------------------------------------------------------

def test_new_record_starts_in_discovery_now():
    rec = policy().new_record(UUID, 'vm', T0)
    assert (rec.uuid, rec.name, rec.state) == (UUID, 'vm', D)
    assert rec.discovery_since == T0
    assert rec.misses == 0 and rec.ever_healthy is False


def test_threshold_must_be_positive():
    with pytest.raises(ValueError):
        health_policy.HealthPolicy(0)


# -- ping results against every state -----------------------------------------

@pytest.mark.parametrize('start', [
    record(),
    healthy(),
    healthy(state=E, misses=2),
    healthy(state=R, misses=7, failing_since=T0 - 50),
])
def test_an_answer_makes_any_state_healthy_and_resets_the_count(start):
    verdict = policy().ping_ok(start, T0 + 1)
    assert (verdict.old_state, verdict.new_state) == (start.state, H)
    assert verdict.notify is False
    assert verdict.record.state == H
    assert verdict.record.misses == 0
    assert verdict.record.last_ok == T0 + 1
    assert verdict.record.ever_healthy is True
    assert verdict.record.discovery_since is None
    assert verdict.record.failing_since is None


def test_an_answer_ends_an_agent_disconnect():
    start = healthy(agent_disconnected_at=T0)
    assert policy().ping_ok(start, T0 + 1).record.agent_disconnected_at \
        is None


def test_the_first_counted_miss_starts_the_incident():
    guest = Guest(policy(threshold=3))
    guest.ok()
    first = guest.miss()
    assert first.record.failing_since == guest.now
    assert guest.miss().record.failing_since == first.record.failing_since


@pytest.mark.parametrize('start,new_state,misses', [
    (record(), D, 0),                             # still booting
    (healthy(), E, 1),
    (healthy(state=E, misses=1), E, 2),
    (healthy(state=R, misses=3, failing_since=T0), R, 3),
])
def test_a_miss_in_each_state(start, new_state, misses):
    verdict = policy(threshold=5).ping_missed(start, T0 + 1)
    assert (verdict.old_state, verdict.new_state) == (start.state, new_state)
    assert verdict.record.state == new_state
    assert verdict.record.misses == misses
    assert verdict.notify is False


def test_policy_never_mutates_its_input():
    start = healthy(state=E, misses=2)
    snapshot = dataclasses.replace(start)
    pol = policy()
    pol.ping_missed(start, T0)
    pol.ping_ok(start, T0)
    pol.tick(start, T0 + 10_000)
    pol.delivery_seen(start, F(finished_id='n-1', finished_created_at=T0),
                      T0)
    for action in A:
        pol.apply_lifecycle(start, action, T0)
    assert start == snapshot


# -- the failure threshold ----------------------------------------------------

@pytest.mark.parametrize('threshold', [1, 2, 3, 5])
def test_the_nth_consecutive_miss_notifies(threshold):
    guest = Guest(policy(threshold=threshold))
    guest.ok()
    verdicts = [guest.miss() for _ in range(threshold + 4)]
    notify_at = [i + 1 for i, v in enumerate(verdicts) if v.notify]
    assert notify_at == [threshold]
    assert verdicts[threshold - 1].record.misses == threshold


def test_threshold_3_notifies_on_the_third_miss_not_the_fifth():
    guest = Guest(policy(threshold=3))
    guest.ok()
    first, second, third = guest.miss(), guest.miss(), guest.miss()
    assert (first.new_state, first.notify) == (E, False)
    assert (second.new_state, second.notify) == (E, False)
    assert (third.new_state, third.notify) == (E, True)
    assert third.reason == '3 consecutive missed pings (failure threshold 3)'


def test_threshold_1_notifies_on_the_first_miss():
    guest = Guest(policy(threshold=1))
    guest.ok()
    verdict = guest.miss()
    assert (verdict.old_state, verdict.new_state, verdict.notify) == \
        (H, E, True)


def test_an_answer_in_between_restarts_the_count():
    guest = Guest(policy(threshold=3))
    guest.ok()
    guest.miss()
    guest.miss()
    guest.ok()
    guest.miss()
    guest.miss()
    assert guest.notified == []
    assert guest.miss().notify is True


def test_one_notification_per_incident_then_reported():
    guest = Guest(policy(threshold=3))
    guest.ok()
    for _ in range(10):
        guest.miss()
    assert len(guest.notified) == 1
    assert guest.record.state == E  # until the engine accepts
    assert guest.look().new_state == E  # queued is not reported
    verdict = guest.accepted()
    assert (verdict.old_state, verdict.new_state) == (E, R)
    for _ in range(10):
        assert guest.miss().notify is False
    assert guest.record.state == R
    assert len(guest.notified) == 1


def test_a_recovered_guest_that_fails_again_is_notified_again():
    guest = Guest(policy(threshold=3))
    guest.ok()
    for _ in range(3):
        guest.miss()
    guest.accepted()
    guest.ok()
    assert guest.record.state == H
    for _ in range(3):
        guest.miss()
    assert len(guest.notified) == 2
    assert guest.outbox[-1][:2] == ['n-2', guest.now]


def test_reported_is_derived_from_the_outbox_whenever_the_caller_looks():
    # The engine took the notification but the record was never told (the
    # daemon died in between): whoever looks next sees it reported, and
    # never asks for a second notification.
    guest = Guest(policy(threshold=3))
    guest.ok()
    for _ in range(3):
        guest.miss()
    guest.outbox[0][2] = 'delivered'
    assert guest.record.state == E
    for _ in range(5):
        assert guest.miss().notify is False
    verdict = guest.look()
    assert (verdict.old_state, verdict.new_state) == (E, R)
    assert verdict.reason == 'HA engine accepted notification n-1'
    # Recovered, then failing again: a new incident, notified again.
    guest.ok()
    for _ in range(3):
        guest.miss()
    assert len(guest.notified) == 2


def test_a_delivery_from_an_earlier_incident_does_not_report_this_one():
    guest = Guest(policy(threshold=2))
    guest.ok()
    guest.miss()
    guest.miss()
    guest.accepted()
    guest.ok()
    guest.miss()
    assert guest.look().new_state == E
    assert guest.miss().notify is True


def test_no_second_notification_while_one_is_still_queued():
    # The guest came back before the engine took the first notification and
    # failed again: the queued one is still delivered and covers both.
    guest = Guest(policy(threshold=3))
    guest.ok()
    for _ in range(3):
        guest.miss()
    guest.ok()
    verdicts = [guest.miss() for _ in range(5)]
    assert not any(v.notify for v in verdicts)
    assert 'n-1 already queued' in verdicts[-1].reason
    assert len(guest.notified) == 1
    # The first one delivered, the second failure is still unreported:
    # it gets its own notification.
    assert guest.accepted().new_state == E
    assert guest.miss().notify is True


def test_a_miss_past_the_threshold_asks_again_until_one_is_queued():
    # The caller may hold a notification back (mass-failure breaker) or
    # die before queueing it: the next miss asks again.
    pol = policy(threshold=3)
    rec = healthy(state=E, misses=2)
    third = pol.ping_missed(rec, T0)
    assert third.notify
    fourth = pol.ping_missed(third.record, T0 + 10)
    assert fourth.notify
    queued = F(pending_id='n-1')
    assert not pol.ping_missed(fourth.record, T0 + 20, queued).notify
    delivered = F(finished_id='n-1', finished_created_at=T0 + 10)
    fifth = pol.ping_missed(fourth.record, T0 + 20, delivered)
    assert not fifth.notify
    assert 'n-1 already delivered' in fifth.reason


# -- discovery ----------------------------------------------------------------

def test_discovery_never_notifies_without_a_discovery_timeout():
    guest = Guest(policy(threshold=1, discovery_timeout=0))
    for _ in range(100):
        assert guest.miss(dt=60).notify is False
        assert guest.tick(dt=60).notify is False
    assert guest.record.state == D
    assert guest.record.misses == 0


def test_discovery_timeout_ignores_a_guest_that_never_answered():
    # No agent inside the guest is not a failure.
    guest = Guest(policy(discovery_timeout=60))
    assert guest.tick(dt=3600).notify is False
    assert guest.record.state == D


def test_discovery_timeout_after_a_reboot():
    guest = Guest(policy(discovery_timeout=60))
    guest.ok()
    verdict = guest.event(A.REARM)
    assert (verdict.old_state, verdict.new_state) == (H, D)
    rearmed_at = guest.now
    assert guest.tick(dt=30).notify is False
    assert guest.miss(dt=29).notify is False
    verdict = guest.tick(dt=1)
    assert guest.now - rearmed_at == 60
    assert verdict.notify is True
    assert verdict.reason == \
        'agent did not come back within 60 s after restart'
    assert verdict.new_state == D
    # Queued: no second one, nor once delivered.
    assert guest.tick().notify is False
    assert len(guest.notified) == 1
    assert guest.accepted().new_state == R
    assert guest.tick().notify is False
    assert len(guest.notified) == 1


def test_a_discovery_timeout_delivered_before_the_record_knew_is_reported():
    # The daemon died after queueing: the record never learnt when the
    # incident began. The restart's notification is its own anyway.
    pol = policy(discovery_timeout=60)
    rec = healthy(state=D, discovery_since=T0)
    delivered = F(finished_id='n-1', finished_created_at=T0 + 60)
    assert pol.tick(rec, T0 + 120, delivered).notify is False
    assert pol.delivery_seen(rec, delivered, T0 + 120).new_state == R
    before = F(finished_id='n-0', finished_created_at=T0 - 1)
    assert pol.tick(rec, T0 + 120, before).notify is True


def test_an_agent_back_in_time_cancels_the_discovery_timeout():
    guest = Guest(policy(discovery_timeout=60))
    guest.ok()
    guest.event(A.REARM)
    guest.ok(dt=50)
    assert guest.tick(dt=3600).notify is False
    assert guest.record.state == H


def test_no_discovery_timeout_while_parked():
    guest = Guest(policy(discovery_timeout=60))
    guest.ok()
    guest.event(A.REARM)
    guest.event(A.PARK)
    assert guest.tick(dt=3600).notify is False


def test_tick_does_nothing_outside_discovery():
    pol = policy(discovery_timeout=1)
    for rec in (healthy(), healthy(state=E, misses=1),
                healthy(state=R, failing_since=T0)):
        verdict = pol.tick(rec, T0 + 3600)
        assert verdict.notify is False
        assert verdict.record == rec


# -- agent disconnect grace ---------------------------------------------------

def test_misses_within_the_grace_after_an_agent_disconnect_do_not_count():
    guest = Guest(policy(threshold=1, grace=30))
    guest.ok()
    guest.event(A.AGENT_DISCONNECTED, dt=0)
    verdict = guest.miss(dt=10)
    assert (verdict.new_state, verdict.notify) == (H, False)
    assert verdict.record.misses == 0
    assert 'grace' in verdict.reason
    assert guest.miss(dt=19).notify is False
    # 30 s after the disconnect the grace is over.
    verdict = guest.miss(dt=1)
    assert (verdict.new_state, verdict.notify) == (E, True)


def test_agent_reconnect_ends_the_grace():
    guest = Guest(policy(threshold=1, grace=30))
    guest.ok()
    guest.event(A.AGENT_DISCONNECTED, dt=0)
    guest.event(A.AGENT_CONNECTED, dt=1)
    assert guest.record.agent_disconnected_at is None
    assert guest.miss(dt=1).notify is True


def test_zero_grace_counts_every_miss():
    guest = Guest(policy(threshold=1, grace=0))
    guest.ok()
    guest.event(A.AGENT_DISCONNECTED, dt=0)
    assert guest.miss(dt=0).notify is True


# -- lifecycle actions --------------------------------------------------------

def test_forget_returns_none():
    assert policy().apply_lifecycle(healthy(), A.FORGET, T0) is None


def test_rearm_starts_over_in_discovery_keeping_what_must_survive():
    start = healthy(state=E, misses=2, paused=True,
                    agent_disconnected_at=T0 - 1, failing_since=T0 - 20)
    verdict = policy().apply_lifecycle(start, A.REARM, T0 + 5)
    assert (verdict.old_state, verdict.new_state) == (E, D)
    assert verdict.notify is False
    assert verdict.record == domain_record.DomainRecord(
        UUID, 'instance-00000001', state=D, misses=0, last_ok=T0,
        discovery_since=T0 + 5, ever_healthy=True, paused=False,
        agent_disconnected_at=None, failing_since=None)


def test_rearm_of_a_never_healthy_guest_stays_never_healthy():
    verdict = policy().apply_lifecycle(record(), A.REARM, T0 + 5)
    assert verdict.record.ever_healthy is False


def test_rearm_from_reported_allows_a_new_report():
    guest = Guest(policy(threshold=2))
    guest.ok()
    guest.miss()
    guest.miss()
    guest.accepted()
    guest.event(A.REARM)
    guest.ok()
    guest.miss()
    guest.miss()
    assert len(guest.notified) == 2


def test_park_stops_pinging_and_counting_but_keeps_the_state():
    pol = policy(threshold=3)
    start = healthy(state=E, misses=2)
    verdict = pol.apply_lifecycle(start, A.PARK, T0)
    assert (verdict.old_state, verdict.new_state) == (E, E)
    assert verdict.record.paused is True
    assert verdict.record.misses == 0
    assert pol.should_ping(verdict.record, T0) is False
    late = pol.ping_missed(verdict.record, T0 + 10)
    assert late.notify is False
    assert late.record == verdict.record


def test_a_parked_guest_is_pinged_again_after_a_rearm():
    pol = policy()
    parked = pol.apply_lifecycle(healthy(), A.PARK, T0).record
    rearmed = pol.apply_lifecycle(parked, A.REARM, T0 + 1).record
    assert pol.should_ping(rearmed, T0 + 1) is True


@pytest.mark.parametrize('rec', [record(), healthy(),
                                 healthy(state=E, misses=1)])
def test_should_ping_unless_parked(rec):
    assert policy().should_ping(rec, T0) is True


def test_agent_events_only_touch_the_disconnect_time():
    pol = policy()
    start = healthy(state=E, misses=1)
    down = pol.apply_lifecycle(start, A.AGENT_DISCONNECTED, T0 + 3)
    assert down.record == dataclasses.replace(start,
                                              agent_disconnected_at=T0 + 3)
    up = pol.apply_lifecycle(down.record, A.AGENT_CONNECTED, T0 + 4)
    assert up.record == start
    assert down.new_state == up.new_state == E


def test_ignore_changes_nothing():
    start = healthy()
    verdict = policy().apply_lifecycle(start, A.IGNORE, T0)
    assert verdict.record == start
    assert (verdict.old_state, verdict.new_state, verdict.notify) == \
        (H, H, False)


# -- notifications ------------------------------------------------------------

@pytest.mark.parametrize('state', [E, D])
def test_a_delivered_notification_of_the_incident_reports_the_domain(state):
    start = healthy(state=state, misses=3, failing_since=T0,
                    discovery_since=T0 if state == D else None)
    facts = F(finished_id='n-1', finished_created_at=T0 + 20)
    verdict = policy().delivery_seen(start, facts, T0 + 22)
    assert (verdict.old_state, verdict.new_state) == (state, R)
    assert verdict.record == dataclasses.replace(start, state=R)
    assert verdict.notify is False


@pytest.mark.parametrize('facts', [
    F(),
    F(pending_id='n-2'),
    F(finished_id='n-1', finished_created_at=T0 - 1),  # earlier incident
])
def test_nothing_delivered_for_the_incident_reports_nothing(facts):
    start = healthy(state=E, misses=3, failing_since=T0)
    verdict = policy().delivery_seen(start, facts, T0 + 30)
    assert verdict.record == start
    assert verdict.new_state == E


def test_a_delivery_seen_after_the_guest_came_back_keeps_it_healthy():
    start = healthy()
    verdict = policy().delivery_seen(
        start, F(finished_id='n-1', finished_created_at=T0 + 1), T0 + 2)
    assert (verdict.old_state, verdict.new_state) == (H, H)
    assert verdict.record == start


def test_a_rejected_notification_closes_the_incident_without_a_flood():
    guest = Guest(policy(threshold=3))
    guest.ok()
    for _ in range(3):
        guest.miss()
    dropped = guest.rejected()
    assert (dropped.old_state, dropped.new_state) == (E, R)
    assert dropped.reason == ('HA engine rejected notification n-1; kept '
                              'as a dead letter')
    assert guest.miss().notify is False
    assert guest.ok().record.state == H
    guest.miss()
    guest.miss()
    assert guest.miss().notify is True


# -- configuration ------------------------------------------------------------

def test_from_conf_uses_the_monitor_options():
    conf = cfg.ConfigOpts()
    health_policy.register_opts(conf)
    conf([], default_config_files=[])
    pol = health_policy.HealthPolicy.from_conf(conf)
    assert (pol.failure_threshold, pol.discovery_timeout,
            pol.agent_disconnect_grace, pol.hard_reboot_window) == (
                3, 0, 30, 120)
    conf.set_override('failure_threshold', 5, group='monitor')
    assert health_policy.HealthPolicy.from_conf(conf).failure_threshold == 5


def test_option_bounds():
    [(group, opts)] = health_policy.list_opts()
    assert group == 'monitor'
    by_name = {opt.name: opt for opt in opts}
    assert by_name['failure_threshold'].type.min == 1
    assert by_name['discovery_timeout'].type.min == 0
    assert by_name['agent_disconnect_grace'].type.min == 0
    assert (by_name['hard_reboot_window'].type.min,
            by_name['hard_reboot_window'].type.max) == (0, 3600)
    assert 'Default 120' in by_name['hard_reboot_window'].help


# -- failures libvirt reports at once -----------------------------------------

def test_an_instant_failure_makes_a_healthy_domain_fail_as_on_the_threshold():
    verdict = policy().instant_failure(healthy(), 50.0, 'guest panicked')

    assert verdict.notify
    assert (verdict.old_state, verdict.new_state) == (states.HEALTHY,
                                                      states.ERROR)
    assert verdict.record.misses == 3
    assert verdict.record.failing_since == 50.0
    assert verdict.reason == 'guest panicked'


def test_an_instant_failure_keeps_an_earlier_start_of_the_incident():
    failing = healthy(state=states.ERROR, misses=1, failing_since=40.0)
    verdict = policy().instant_failure(failing, 50.0, 'guest panicked')
    assert verdict.new_state == states.ERROR
    assert verdict.record.failing_since == 40.0
    assert verdict.record.misses == 3


def test_an_instant_failure_leaves_a_booting_domain_in_discovery():
    booting = record(discovery_since=10.0)
    verdict = policy().instant_failure(booting, 50.0, 'guest panicked')
    assert verdict.new_state == states.DISCOVERY
    assert verdict.record.failing_since == 50.0


def test_misses_after_an_instant_failure_ask_for_nothing_more():
    p = policy()
    failed = p.instant_failure(healthy(), 50.0, 'guest panicked').record
    delivered = F(finished_id='n-1', finished_created_at=50.5)

    assert p.notified_already(failed, F(pending_id='n-1')) == (
        'notification n-1 already queued')
    assert p.notified_already(failed, delivered) == (
        'notification n-1 already delivered')
    assert not p.ping_missed(failed, 60.0, delivered).notify
    assert p.delivery_seen(failed, delivered, 60.0).new_state == \
        states.REPORTED


def test_a_notification_of_an_earlier_incident_does_not_count():
    earlier = F(finished_id='n-0', finished_created_at=10.0)
    assert policy().notified_already(healthy(), earlier) is None


@pytest.mark.parametrize('state', states.ALL_STATES)
def test_a_settled_record_is_one_no_delivery_or_timer_can_change(state):
    # The tracker skips settled records in its look at every record each
    # round: it must never skip one a delivery or a timer would move.
    pol = policy(discovery_timeout=60)
    everything = [
        F(),
        F(pending_id='n-2'),
        F(finished_id='n-1', finished_created_at=T0 + 1),
        F(finished_id='n-1', finished_created_at=T0 + 1, finished_dead=True),
        F(pending_id='n-2', finished_id='n-1', finished_created_at=T0 + 1)]
    shapes = [record(state=state, ever_healthy=ever, paused=paused,
                     failing_since=since, discovery_since=T0)
              for ever in (False, True) for paused in (False, True)
              for since in (None, T0)]
    moved = False
    for rec in shapes:
        for facts in everything:
            for now in (T0 + 1, T0 + 3600):
                verdicts = [pol.delivery_seen(rec, facts, now),
                            pol.tick(rec, now, facts)]
                moved |= any(v.notify or v.record != rec for v in verdicts)
                if pol.settled(rec):
                    assert all(not v.notify and v.record == rec
                               for v in verdicts), (rec, facts, now)

    assert pol.settled(record(state=state)) == (state in (H, R))
    # Only the states that are not settled have anything to move.
    assert moved == (state in (D, E))
