"""Maintenance pauses: a paused guest is neither pinged nor notified, the
pause survives a restart and ends by itself (or on resume), and the guest
then starts over in discovery. Driven through the real tracker, policy,
store and outbox, one sweep at a time, on a fake clock."""

import logging

import pytest

from monitor.daemon import maintenance as maintenance_mod
from monitor.daemon import metrics as metrics_mod
from monitor.daemon import tracker as domain_tracker
from monitor.health import mass_failure
from monitor.health import policy as health_policy
from monitor.health import states
from monitor.health.lifecycle import CrashedDetail
from monitor.health.lifecycle import LifecycleEvent
from monitor.health.ping_outcome import Outcome
from monitor.health.ping_outcome import PingResult
from monitor.notify import outbox as outbox_mod
from monitor.store import maintenance as maintenance_file
from tests.unit import exposition
from tests.unit.daemon.test_tracker import GRACE
from tests.unit.daemon.test_tracker import HOST
from tests.unit.daemon.test_tracker import Host
from tests.unit.daemon.test_tracker import Wakes
from tests.unit.daemon.test_tracker import healthy
from tests.unit.daemon.test_tracker import lifecycle_event
from tests.unit.daemon.test_tracker import listed
from tests.unit.daemon.test_tracker import make_store
from tests.unit.daemon.test_tracker import name
from tests.unit.daemon.test_tracker import uuid

D, H = states.DISCOVERY, states.HEALTHY
MISSED = Outcome.MISSED
DISCOVERY_TIMEOUT = 30
ALL = maintenance_file.HOST


class Daemon:
    """A daemon's tracker and maintenance on ``store``, ``outbox`` and the
    pauses' file at ``path``, on the fake clocks of ``host``: wall time is
    ``host.now``, monotonic time ``host.now + host.mono_offset`` (a wall
    clock step changes only the offset)."""

    def __init__(self, host, store, outbox, path):
        self.maintenance = maintenance_mod.Maintenance(
            maintenance_file.MaintenanceFile(path),
            clock=lambda: host.now,
            monotonic=lambda: host.now + host.mono_offset)
        self.tracker = domain_tracker.DomainTracker(
            store,
            health_policy.HealthPolicy(3, DISCOVERY_TIMEOUT, GRACE, 120),
            mass_failure.MassFailureBreaker(3, 0.5),
            outbox, HOST, delivery_wakeup=Wakes(), clock=lambda: host.now,
            maintenance=self.maintenance)

    def ask(self, **request):
        return maintenance_mod.answer(self.tracker, request)


@pytest.fixture
def store():
    return make_store()


@pytest.fixture
def outbox(tmp_path):
    box = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'), max_size=100)
    yield box
    box.close()


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'maintenance.json')


@pytest.fixture
def host(store, outbox):
    # The Host of the tracker's tests; its tracker is the daemon's.
    host = Host(None, store, outbox)
    host.mono_offset = -900_000.0
    return host


@pytest.fixture
def daemon(host, store, outbox, path):
    daemon = Daemon(host, store, outbox, path)
    host.tracker = daemon.tracker
    return daemon


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.INFO, logger='monitor')

    def lines(text=''):
        return [r.getMessage() for r in caplog.records
                if r.name == 'monitor.daemon.maintenance'
                and text in r.getMessage()]
    return lines


def sweep_for(host, seconds, domains, **kwargs):
    """Sweeps every 10 s for ``seconds``; the UUIDs pinged in each."""
    pinged = []
    for _ in range(int(seconds // 10)):
        pinged.append(host.sweep(domains, **kwargs))
    return pinged


# -- the pause ---------------------------------------------------------------


def test_a_hung_guest_is_left_alone_for_the_pause_then_reported_once(
        host, daemon, log):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=60,
               reason='qemu-ga upgrade')

    # The upgrade hangs the agent: 60 s of sweeps ping nothing.
    during = sweep_for(host, 50, [listed(1)], default=MISSED)

    assert during == [[]] * 5
    assert host.outbox.pending() == []
    assert host.state(1) == H
    # The pause ends; the guest starts over in discovery, is pinged, and
    # its agent must answer within the discovery timeout.
    assert host.sweep([listed(1)], default=MISSED) == [uuid(1)]
    assert host.state(1) == D
    sweep_for(host, 20, [listed(1)], default=MISSED)
    assert host.outbox.pending() == []
    sweep_for(host, 10 + 60, [listed(1)], default=MISSED)
    assert host.pending() == [(uuid(1), name(1), HOST)]
    assert len(log('maintenance ended')) == 1


def test_a_guest_that_answers_after_the_pause_is_healthy_again(
        host, daemon):
    healthy(host, 1)
    daemon.ask(command='pause', domain=uuid(1), seconds=30)

    sweep_for(host, 30, [listed(1)], default=MISSED)

    assert host.state(1) == D
    host.sweep([listed(1)])
    assert host.state(1) == H
    assert host.outbox.pending() == []


def test_a_ping_in_flight_when_the_pause_begins_counts_for_nothing(
        host, daemon):
    healthy(host, 1)
    host.now += 10
    to_ping = daemon.tracker.reconcile([listed(1)], now=host.now)
    assert [info.uuid for info in to_ping] == [uuid(1)]

    daemon.ask(command='pause', domain=name(1), seconds=600)
    outcome = daemon.tracker.apply_round(
        {uuid(1): PingResult(MISSED, 'timeout', host.now, 2.0)},
        now=host.now + 2)

    assert host.record(1).misses == 0
    # The scheduler is told nothing to confirm for it.
    assert outcome.thresholds == {}


def test_a_crash_during_the_pause_is_logged_not_notified(host, daemon, log):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=600)

    host.event(lifecycle_event(1, LifecycleEvent.CRASHED,
                               CrashedDetail.PANICKED))

    assert host.outbox.pending() == []
    assert len(log('not notified: under maintenance')) == 1
    assert uuid(1) in log('not notified')[0]
    assert name(1) in log('not notified')[0]


def test_the_discovery_timeout_waits_for_the_end_of_the_pause(
        host, daemon):
    healthy(host, 1)
    host.sweep([listed(1)])
    # Rebooted for an OS update during the pause: back in discovery, and
    # its agent stays silent for longer than the discovery timeout.
    daemon.ask(command='pause', domain=name(1), seconds=120)
    host.event(lifecycle_event(1, LifecycleEvent.STARTED))

    sweep_for(host, 110, [listed(1)], default=MISSED)

    assert host.state(1) == D
    assert host.outbox.pending() == []


def test_pause_all_leaves_every_domain_alone_until_it_ends(host, daemon):
    healthy(host, 1, 2, 3)
    daemon.ask(command='pause', domain=name(3), seconds=120,
               reason='backup')
    daemon.ask(command='pause', all=True, seconds=60, reason='host update')
    domains = [listed(1), listed(2), listed(3)]

    during = sweep_for(host, 50, domains, default=MISSED)

    assert during == [[]] * 5
    # Its own, longer pause outlasts the host's.
    assert host.sweep(domains, default=MISSED) == [uuid(1), uuid(2)]
    assert [host.state(n) for n in (1, 2, 3)] == [D, D, H]
    assert host.outbox.pending() == []
    sweep_for(host, 60, domains, default=MISSED)
    assert host.state(3) == D


# -- restart -------------------------------------------------------------------


def test_a_restart_during_the_pause_keeps_it_until_its_end(
        host, daemon, store, outbox, path, log):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=60, reason='backup')
    sweep_for(host, 20, [listed(1)], default=MISSED)

    # The daemon restarts; monotonic time starts elsewhere.
    host.mono_offset = 12_345.0
    host.now += 5
    restarted = Daemon(host, store, outbox, path)
    host.tracker = restarted.tracker

    assert len(log('kept from before the restart')) == 1
    assert sweep_for(host, 30, [listed(1)], default=MISSED) == [[]] * 3
    # 20 + 5 + 30 s so far; it ends at 60 s.
    assert host.sweep([listed(1)], default=MISSED) == [uuid(1)]
    assert host.state(1) == D


def test_a_pause_ended_while_the_daemon_was_stopped_ends_at_start(
        host, daemon, store, outbox, path, log):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=60)

    host.now += 3600
    restarted = Daemon(host, store, outbox, path)
    host.tracker = restarted.tracker

    assert host.sweep([listed(1)]) == [uuid(1)]
    assert len(log('maintenance ended')) == 1
    assert restarted.maintenance.all() == []


def test_a_wall_clock_step_forward_does_not_end_a_pause_early(
        host, daemon):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=600)

    host.now += 3600  # the wall clock jumps an hour
    host.mono_offset -= 3600  # monotonic time does not

    assert host.sweep([listed(1)], dt=10) == []


def test_a_wall_clock_stepped_back_does_not_stretch_a_pause_at_restart(
        host, daemon, store, outbox, path):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=60)

    host.now -= 86400  # the wall clock steps back a day while stopped
    restarted = Daemon(host, store, outbox, path)
    host.tracker = restarted.tracker

    assert sweep_for(host, 50, [listed(1)]) == [[]] * 5
    assert host.sweep([listed(1)]) == [uuid(1)]


# -- resume and refusals ---------------------------------------------------------


def test_resume_lifts_the_pause_at_once(host, daemon, log):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=3600)

    answer = daemon.ask(command='resume', domain=name(1))

    assert [view['uuid'] for view in answer['resumed']] == [uuid(1)]
    assert answer['still_paused'] is None
    assert host.state(1) == D
    assert host.sweep([listed(1)], dt=1) == [uuid(1)]
    assert len(log('lifted by the operator')) == 1


def test_resume_all_lifts_every_pause(host, daemon):
    healthy(host, 1, 2)
    daemon.ask(command='pause', domain=name(1), seconds=3600)
    daemon.ask(command='pause', all=True, seconds=3600)

    answer = daemon.ask(command='resume', all=True)

    assert len(answer['resumed']) == 2
    assert daemon.maintenance.all() == []
    assert host.sweep([listed(1), listed(2)], dt=1) == [uuid(1), uuid(2)]


def test_a_domain_paused_with_the_host_is_resumed_with_the_host(
        host, daemon):
    healthy(host, 1)
    daemon.ask(command='pause', all=True, seconds=3600)

    answer = daemon.ask(command='resume', domain=name(1))

    assert 'resume --all' in answer['refused']
    assert daemon.maintenance.covers(uuid(1))


def test_resuming_a_domain_under_both_pauses_says_what_still_holds(
        host, daemon):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=600)
    daemon.ask(command='pause', all=True, seconds=3600)

    answer = daemon.ask(command='resume', domain=name(1))

    assert answer['still_paused']['all'] is True
    assert daemon.maintenance.covers(uuid(1))


def test_resuming_a_domain_not_paused_is_no_error(host, daemon):
    healthy(host, 1)

    assert daemon.ask(command='resume', domain=name(1)) == {
        'resumed': [], 'still_paused': None}
    assert host.state(1) == H


def test_a_domain_is_named_by_name_or_uuid_in_any_case(host, daemon):
    healthy(host, 1)

    answer = daemon.ask(command='pause', domain=uuid(1).upper(), seconds=60)

    assert answer['paused'][0]['name'] == name(1)
    assert answer['paused'][0]['uuid'] == uuid(1)


def test_a_paused_domain_that_stopped_can_still_be_resumed_by_name(
        host, daemon, store):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=600)
    store.delete(uuid(1))

    answer = daemon.ask(command='resume', domain=name(1))

    assert [view['uuid'] for view in answer['resumed']] == [uuid(1)]


@pytest.mark.parametrize('request_, refused', [
    ({'command': 'pause', 'domain': 'no-such-vm', 'seconds': 60},
     "no domain named or with UUID 'no-such-vm' is monitored"),
    ({'command': 'resume', 'domain': 'no-such-vm'},
     "no domain named or with UUID 'no-such-vm' is monitored"),
    ({'command': 'pause', 'seconds': 60}, 'name one domain, or all'),
    ({'command': 'pause', 'domain': 'instance-00000001', 'all': True,
      'seconds': 60}, 'name one domain, or all'),
    ({'command': 'pause', 'domain': 'instance-00000001', 'seconds': 0},
     'more than 0 s'),
    ({'command': 'pause', 'domain': 'instance-00000001',
      'seconds': 8 * 86400}, 'at most 604800 s'),
    ({'command': 'pause', 'domain': 'instance-00000001', 'seconds': '1h'},
     'number of seconds'),
    ({'command': 'pause', 'domain': 'instance-00000001', 'seconds': 60,
      'reason': 'a\x1b[31mred'}, 'control characters'),
    ({'command': 'reboot', 'domain': 'instance-00000001'},
     "unknown command 'reboot'"),
])
def test_a_bad_request_is_refused_and_pauses_nothing(host, daemon, request_,
                                                     refused):
    healthy(host, 1)

    answer = maintenance_mod.answer(daemon.tracker, request_)

    assert refused in answer['refused']
    assert daemon.maintenance.all() == []


# -- what is said and shown ---------------------------------------------------------


def test_one_line_when_a_pause_starts_with_name_uuid_reason_and_end(
        host, daemon, log):
    healthy(host, 1)

    daemon.ask(command='pause', domain=name(1), seconds=60,
               reason='fsfreeze backup')

    lines = log()
    assert len(lines) == 1
    assert name(1) in lines[0] and uuid(1) in lines[0]
    assert 'fsfreeze backup' in lines[0]
    assert 'until' in lines[0]


def test_a_view_shows_when_the_pause_ends_on_todays_wall_clock(
        host, daemon):
    healthy(host, 1)
    daemon.ask(command='pause', domain=name(1), seconds=600, reason='r')
    host.now += 3600
    host.mono_offset -= 3600  # a wall clock step: 600 s are still left

    view = daemon.maintenance.view(daemon.maintenance.of(uuid(1)))

    assert view['until'] == maintenance_mod._when(host.now + 600)
    assert view['reason'] == 'r'
    assert (view['all'], view['uuid'], view['name']) == (
        False, uuid(1), name(1))


def test_metrics_count_the_paused_domains_and_the_host_pause(
        host, daemon, store):
    healthy(host, 1, 2)
    metrics = metrics_mod.MonitorMetrics()
    metrics.watch(store=store, maintenance=daemon.maintenance)
    prefix = metrics_mod.PREFIX

    def scrape():
        parsed = exposition.parse(metrics.render())
        return (parsed.value(prefix + 'maintenance_domains'),
                parsed.value(prefix + 'maintenance_host'))

    assert scrape() == (0, 0)
    daemon.ask(command='pause', domain=name(1), seconds=60)
    assert scrape() == (1, 0)
    daemon.ask(command='pause', all=True, seconds=60)
    assert scrape() == (2, 1)
