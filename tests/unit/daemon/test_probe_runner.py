"""The probe runner: only live guests are probed, one call per domain at
a time, a failing application is one incident with its own details and
action, and an unavailable probe is said once and never reported."""

import logging

import pytest
from dogpile.cache import region as dogpile_region
from oslo_config import cfg

from monitor.daemon import domain_settings
from monitor.daemon import maintenance as maintenance_mod
from monitor.daemon import probe_runner
from monitor.errors import ConfigError
from monitor.health import probes
from monitor.health import record as domain_record
from monitor.health import states
from monitor.health.probes import Outcome
from monitor.health.probes import ProbeResult
from monitor.store import domain_store
from monitor.virt import metadata as domain_metadata

UUID = '6f1f5a7e-2c8e-4d0a-9a57-000000000001'
EXEC = probes.parse_config_probe(
    'name=db, kind=exec, path=/bin/check, failure_threshold=2').spec
FAILED = ProbeResult(Outcome.FAILED, '/bin/check exited 1', 'down', 1)
PASSED = ProbeResult(Outcome.PASSED, '/bin/check exited 0', '', 0)
UNAVAILABLE = ProbeResult(Outcome.UNAVAILABLE, 'guest-exec has been '
                                               'disabled')


class Queue:
    def __init__(self):
        self.queued = []

    def queue(self, record, reason, now, action, on_recovered, shape,
              extra_details=None):
        self.queued.append((record.uuid, reason, action, shape,
                            extra_details))
        return 'n-%d' % len(self.queued)


class FullQueue(Queue):
    """The notification queue while the outbox is full: nothing is taken
    (the queue says so loudly and returns None) until ``room`` is set."""

    def __init__(self):
        super().__init__()
        self.room = False
        self.refused = 0

    def queue(self, record, reason, now, action, on_recovered, shape,
              extra_details=None):
        if not self.room:
            self.refused += 1
            return None
        return super().queue(record, reason, now, action, on_recovered,
                             shape, extra_details)


class Tracker:
    def __init__(self):
        region = dogpile_region.make_region().configure(
            'dogpile.cache.memory')
        self.store = domain_store.DomainStore(region, namespace='compute-1')
        self.settings = domain_settings.DomainSettings(self.store, 3)
        self.maintenance = maintenance_mod.Maintenance()
        self.notifications = Queue()

    def recovery_ended(self, uuid, report, now=None):
        pass


class Counts:
    def __init__(self):
        self.guest_failures = []
        self.runs = []

    def guest_failure(self, reason):
        self.guest_failures.append(reason)

    def probe_run(self, outcome):
        self.runs.append(outcome)


class Metrics:
    def __init__(self):
        self.failures = Counts()


class Call:
    """A native call that has returned at once."""

    started = []

    def __init__(self, func, *args):
        Call.started.append(args)
        self.value = self.results.pop(0)

    def wait(self, timeout):
        return True

    def result(self):
        return self.value

    def close(self):
        pass


def healthy(tracker, state=states.HEALTHY, **fields):
    record = domain_record.DomainRecord(uuid=UUID, name='vm', state=state,
                                        **fields)
    tracker.store.put(record)
    return record


def make(results=(), driver='log', notify_engine=False, action='none',
         configured=(EXEC,)):
    tracker = Tracker()
    Call.results = list(results)
    Call.started = []
    clock = [1000.0]
    runner = probe_runner.ProbeRunner(
        tracker, host=type('Host', (), {'connection': 'conn'})(),
        configured=configured, action=action, driver=driver,
        notify_engine=notify_engine, start_call=Call,
        spawn=lambda func, *args: func(*args), metrics=Metrics(),
        monotonic=lambda: clock[0])
    return runner, tracker, clock


def test_a_failing_probe_is_one_application_failure_with_its_details():
    runner, tracker, clock = make([FAILED] * 4)
    healthy(tracker)

    for _ in range(4):
        runner.step()
        clock[0] += EXEC.period_seconds

    [(uuid, reason, action, shape, extra)] = tracker.notifications.queued
    assert uuid == UUID
    assert 'application probe db' in reason
    assert action == 'none'
    assert shape == probes.APPLICATION
    assert extra['incident'] == 'application'
    assert extra['probe']['output'] == 'down'
    # Counted by the queue, which the test's stands in for.
    assert runner.metrics.failures.runs == ['failed'] * 4


def test_a_failed_probe_that_passes_again_ends_the_application_failure():
    runner, tracker, clock = make([FAILED] * 2 + [PASSED] * 2)
    told = []
    runner.on_passed_again = lambda uuid, at: told.append(uuid)
    healthy(tracker)

    for _ in range(4):
        runner.step()
        clock[0] += EXEC.period_seconds

    assert len(tracker.notifications.queued) == 1
    assert told == [UUID]


def test_an_application_failure_the_full_outbox_refused_is_queued_later():
    # A failure is never lost: the next failed run asks again, as the
    # next missed ping does for a silent guest.
    runner, tracker, clock = make([FAILED] * 5)
    tracker.notifications = FullQueue()
    healthy(tracker)

    for run in range(5):
        tracker.notifications.room = run == 3
        runner.step()
        clock[0] += EXEC.period_seconds

    assert tracker.notifications.refused == 2
    [(uuid, reason, _, _, extra)] = tracker.notifications.queued
    assert uuid == UUID
    assert extra['probe']['failures'] == 4
    assert 'failed 4 time(s) in a row' in reason


def test_a_probe_waits_for_its_period():
    runner, tracker, clock = make([PASSED] * 3)
    healthy(tracker)

    runner.step()
    clock[0] += EXEC.period_seconds - 1
    runner.step()

    assert len(Call.started) == 1


@pytest.mark.parametrize('fields', [
    {'state': states.DISCOVERY}, {'state': states.ERROR},
    {'state': states.REPORTED}, {'paused': True},
])
def test_only_a_guest_whose_ping_says_alive_is_probed(fields):
    runner, tracker, _clock = make([FAILED])
    healthy(tracker, **fields)

    runner.step()

    assert Call.started == []


def test_no_probe_is_run_without_probes_declared_or_configured():
    runner, tracker, _clock = make([FAILED], configured=())
    healthy(tracker)

    runner.step()

    assert Call.started == []


def test_a_domains_own_probes_replace_the_configured_ones():
    own = probes.parse_config_probe('name=own, kind=heartbeat, '
                                    'file=/run/hb').spec
    runner, tracker, _clock = make([PASSED])
    healthy(tracker)
    tracker.settings.note(UUID, 'vm', domain_metadata.DomainSettings(
        probes=(own,)), None)

    runner.step()

    assert Call.started[0][2] is own


def test_a_command_in_flight_is_handed_to_the_next_run():
    running = ProbeResult(Outcome.FAILED, 'still running', in_flight=42)
    runner, tracker, clock = make([running, running])
    healthy(tracker)

    runner.step()
    clock[0] += EXEC.period_seconds
    runner.step()

    assert [args[3] for args in Call.started] == [None, 42]


def test_an_unavailable_probe_is_said_once_and_never_reported(caplog):
    caplog.set_level(logging.INFO, logger='monitor')
    runner, tracker, clock = make([UNAVAILABLE] * 5)
    healthy(tracker)

    for _ in range(5):
        runner.step()
        clock[0] += EXEC.period_seconds

    assert tracker.notifications.queued == []
    assert sum('unavailable' in r.getMessage() for r in caplog.records) == 1


def test_the_domains_own_application_action_applies():
    runner, tracker, _clock = make(action='reset')
    record = healthy(tracker)
    tracker.settings.note(UUID, 'vm', domain_metadata.DomainSettings(
        application_action='restart'), None)

    for _ in range(2):
        runner.apply(UUID, EXEC, FAILED)

    assert tracker.notifications.queued[0][2] == 'restart'
    assert record.uuid == UUID


def test_with_the_ha_engine_nothing_is_sent_unless_the_operator_opts_in():
    runner, tracker, _clock = make(driver='masakari')
    healthy(tracker)
    for _ in range(2):
        runner.apply(UUID, EXEC, FAILED)
    assert tracker.notifications.queued == []
    assert runner.metrics.failures.guest_failures == ['probe']

    runner, tracker, _clock = make(driver='masakari', notify_engine=True)
    healthy(tracker)
    for _ in range(2):
        runner.apply(UUID, EXEC, FAILED)
    assert tracker.notifications.queued[0][3] == probes.ENGINE_SHAPE


def test_a_reboot_starts_the_standings_afresh():
    runner, tracker, _clock = make([PASSED])
    healthy(tracker, discovery_since=1.0)
    runner.step()
    runner.apply(UUID, EXEC, FAILED)
    healthy(tracker, discovery_since=2.0)

    runner.step()

    assert (UUID, 'db') not in runner.states


def conf_with(**probes_opts):
    conf = cfg.ConfigOpts()
    probe_runner.register_opts(conf)
    conf.register_opts([cfg.StrOpt('driver', default='log')],
                       group='notifier')
    conf([])
    for name, value in probes_opts.items():
        conf.set_override(name, value, group='probes')
    return conf


def test_configured_probes_are_checked_at_start():
    with pytest.raises(ConfigError, match='absolute path'):
        probe_runner.check_conf(conf_with(
            probe=['name=db, kind=exec, path=check']))
    assert probe_runner.configured_probes(conf_with(
        probe=['name=db, kind=exec, path=/bin/check'])) == (
            probes.parse_config_probe(
                'name=db, kind=exec, path=/bin/check').spec,)


def test_an_application_action_is_refused_with_the_ha_engine():
    conf = conf_with(action='reset')
    conf.set_override('driver', 'masakari', group='notifier')

    with pytest.raises(ConfigError, match='HA engine'):
        probe_runner.check_conf(conf)


def test_without_configured_probes_only_domains_declaring_some_are_read():
    runner, tracker, _clock = make([PASSED], configured=())
    healthy(tracker)
    tracker.store.all = lambda: pytest.fail('every record was read')

    runner.step()

    assert Call.started == []


HEARTBEAT = probes.parse_config_probe(
    'name=app, kind=heartbeat, file=/run/app.hb, timeout_seconds=9').spec


@pytest.mark.parametrize('spec, calls', [(EXEC, 3), (HEARTBEAT, 4)])
def test_a_run_is_given_up_on_only_after_each_of_its_calls_could_time_out(
        spec, calls):
    # Each agent call may wait its timeout and libvirt's 5 s floor once
    # the agent has timed out; a run still inside that is not stuck.
    assert probe_runner.call_bound(spec) >= calls * (
        spec.timeout_seconds + 5)
