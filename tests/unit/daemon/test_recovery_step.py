"""Self-recovery on a plain libvirt host, driven through the tracker with
the real policy, breaker, store, outbox, evidence store and budget
history, and a fake libvirt domain: the notification is stored (held)
before the guest is touched and released with what was done, the budget
holds across restarts, the breaker holds actions, and a crash between the
action and the release loses nothing."""

import logging
import os
import stat
import time

import libvirt
import pytest

from monitor import concurrency
from monitor.daemon import metrics as metrics_mod
from monitor.daemon import recovery_deadlines
from monitor.daemon import recovery_step
from monitor.daemon import tracker as domain_tracker
from monitor.health import mass_failure
from monitor.health import policy as health_policy
from monitor.health import recovery_policy as recovery
from monitor.health import states
from monitor.notify import delivery
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.store import recovery_history
from monitor.store.evidence import EvidenceStore
from monitor.virt import domains as libvirt_domains
from monitor.virt import metadata as domain_metadata
from tests.unit import exposition
from tests.unit.daemon.test_tracker import AGENT
from tests.unit.daemon.test_tracker import GRACE
from tests.unit.daemon.test_tracker import HOST
from tests.unit.daemon.test_tracker import MISSED
from tests.unit.daemon.test_tracker import Host
from tests.unit.daemon.test_tracker import Wakes
from tests.unit.daemon.test_tracker import make_store
from tests.unit.daemon.test_tracker import name
from tests.unit.daemon.test_tracker import uuid

PREFIX = metrics_mod.PREFIX
D, H, E, R = states.DISCOVERY, states.HEALTHY, states.ERROR, states.REPORTED

DEADLINES = recovery_deadlines.Deadlines(console=5, screenshot=7, action=11,
                                         step=20)
NATIVE_DEADLINES = recovery_deadlines.Deadlines(console=0.5, screenshot=0.5,
                                                action=0.5, step=1.0)


class FakeDomain:
    def __init__(self, n, console_path, fail_reset=False, graphics=False,
                 hang=None):
        self.n = n
        self.console_path = console_path
        self.fail_reset = fail_reset
        self.graphics = graphics
        # A native event the screenshot and the reset block on, if any.
        self.hang = hang
        self.calls = []

    def UUIDString(self):
        return uuid(self.n)

    def XMLDesc(self, flags):
        return ("<domain><devices><serial type='file'><source path='%s'/>"
                "</serial>%s</devices></domain>"
                % (self.console_path,
                   "<graphics type='vnc'/>" if self.graphics else ''))

    def connect(self):
        # The screenshot's first step: a QEMU that does not answer its
        # monitor blocks here.
        self.calls.append('screenshot')
        if self.hang is not None:
            self.hang.wait()
        raise libvirt.libvirtError('no screens to take screenshot')

    def reset(self, flags):
        self.calls.append('reset')
        if self.hang is not None:
            self.hang.wait()
        if self.fail_reset:
            raise libvirt.libvirtError('Requested operation is not valid')
        return 0

    def state(self):
        return [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED]


class FakeConn:
    def __init__(self):
        self.domains = {}

    def lookupByUUIDString(self, value):
        return self.domains[value]


class FakeHost:
    def __init__(self):
        self.connection = FakeConn()


class DirectCall:
    """A native call made on the spot: it has returned before anyone
    waits."""

    def __init__(self, func, *args):
        self.func = func
        self.running_for = 0.0
        self.done = True
        self.closed = False
        self._value = func(*args)

    def wait(self, timeout=None):
        return True

    def result(self):
        return self._value

    def close(self):
        self.closed = True


class StuckCall:
    """A native call that has not returned (until ``returns()``)."""

    def __init__(self, func, *args):
        self.func = func
        self.args = args
        self.running_for = 0.0
        self.done = False
        self.closed = False
        self.waited = []

    def wait(self, timeout=None):
        self.waited.append(timeout)
        self.running_for += timeout or 0.0
        return self.done

    def returns(self):
        self.done = True

    def close(self):
        self.closed = True


class Calls:
    """Starts each native call of the step: the functions named in
    ``stuck`` never return, the others return at once."""

    def __init__(self):
        self.stuck = set()
        self.started = []

    def __call__(self, func, *args):
        kind = StuckCall if func.__name__ in self.stuck else DirectCall
        call = kind(func, *args)
        self.started.append(call)
        return call


class Spawned(list):
    """Green threads the step asked for, run when the test says."""

    def __call__(self, func, *args):
        self.append((func, args))

    def run_all(self):
        while self:
            func, args = self.pop(0)
            func(*args)


def settings_listed(n, **settings):
    return libvirt_domains.DomainInfo(
        uuid(n), name(n), True, False, AGENT,
        settings=domain_metadata.DomainSettings(**settings))


class Rig:
    """A tracker with a recovery step on one fake host."""

    def __init__(self, tmp_path, action='reset', max_actions=3,
                 driver='webhook', threshold=3, native=False):
        """``native``: each libvirt call on a native thread of its own
        and each recovery in a green thread, as in the daemon, with
        deadlines of a fraction of a second."""
        self.tmp_path = tmp_path
        self.store = make_store()
        self.outbox = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'),
                                        max_size=100)
        self.wakes = Wakes()
        self.breaker = mass_failure.MassFailureBreaker(3, 0.5)
        self.libvirt = FakeHost()
        self.spawned = Spawned()
        self.calls = Calls()
        self.metrics = metrics_mod.MonitorMetrics()
        self.now = [1_700_000_000.0]
        self.history_path = str(tmp_path / 'recovery.json')
        self.step = recovery_step.RecoveryStep(
            recovery.RecoveryPolicy(action, max_actions, 3600),
            recovery_history.RecoveryHistory(self.history_path, 3600),
            EvidenceStore(str(tmp_path / 'evidence')), self.outbox,
            self.breaker, driver, self.libvirt, console_lines=10,
            start_call=concurrency.NativeCall if native else self.calls,
            spawn=concurrency.spawn if native else self.spawned,
            # The recovery ends a moment after the sweep that queued it.
            clock=lambda: self.host.now + 1, delivery_wakeup=self.wakes,
            deadlines=NATIVE_DEADLINES if native else DEADLINES,
            metrics=self.metrics,
            monotonic=time.monotonic if native else lambda: self.monotonic)
        self.monotonic = 1000.0
        self.tracker = domain_tracker.DomainTracker(
            self.store, health_policy.HealthPolicy(threshold, 0, GRACE, 120),
            self.breaker, self.outbox, HOST, delivery_wakeup=self.wakes,
            clock=lambda: pytest.fail('the tracker read the wall clock'),
            recovery=self.step)
        self.host = Host(self.tracker, self.store, self.outbox)

    def domain(self, n, fail_reset=False, graphics=False, hang=None):
        console = self.tmp_path / ('console-%d.log' % n)
        console.write_bytes(b'booting\nKernel panic - not syncing\n')
        dom = FakeDomain(n, str(console), fail_reset, graphics, hang)
        self.libvirt.connection.domains[uuid(n)] = dom
        return dom

    def fail(self, domains, n, misses=3):
        """``misses`` sweeps in which domain ``n`` misses its ping."""
        for _ in range(misses):
            self.host.sweep(domains, {uuid(n): MISSED})

    def close(self):
        self.outbox.close()


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.DEBUG, logger='monitor')

    def lines(level=logging.INFO):
        return [r.getMessage() for r in caplog.records
                if r.name.startswith('monitor') and r.levelno >= level]
    return lines


def listed(*ns):
    return [settings_listed(n) for n in ns]


def test_the_notification_is_held_until_the_reset_has_been_done(rig):
    dom = rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)

    rig.fail(domains, 1)

    # Queued (pending: nothing else is queued for it) but not sent, and
    # the sweep did not wait for libvirt.
    [entry] = rig.outbox.pending()
    assert entry.held and rig.outbox.due(1e12) == []
    assert dom.calls == []
    assert entry.notification.details['recovery']['result'] == \
        recovery.RESULT_IN_PROGRESS

    rig.spawned.run_all()

    assert dom.calls == ['reset']
    [due] = rig.outbox.due(1e12)
    details = due.notification.details
    # Why the guest was found failed survives the release.
    assert details['reason'].startswith('3 consecutive missed pings')
    assert details['consecutive_misses'] == 3
    assert details['recovery'] == {'action': 'reset', 'result': 'done',
                                   'detail': 'reset'}
    [console] = details['evidence']
    assert console['kind'] == 'console'
    with open(console['path'], 'rb') as saved:
        assert b'Kernel panic' in saved.read()
    assert rig.wakes


def test_after_the_reset_the_domain_starts_over_in_discovery(rig):
    rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    rig.fail(domains, 1)
    rig.spawned.run_all()

    assert rig.host.state(1) == D
    # Delivered meanwhile: the domain is not reported, it was recovered.
    entry = rig.outbox.pending()[0]
    rig.outbox.mark_delivered(entry.id, 'ACCEPTED', rig.host.now)
    rig.host.sweep(domains, {uuid(1): MISSED})
    assert rig.host.state(1) == D
    rig.host.sweep(domains)
    assert rig.host.state(1) == H


def test_a_failed_reset_is_reported_and_the_domain_not_rearmed(rig, log):
    rig.domain(1, fail_reset=True)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    rig.fail(domains, 1)
    rig.spawned.run_all()

    [due] = rig.outbox.due(1e12)
    assert due.notification.details['recovery']['result'] == 'failed'
    assert 'not valid' in due.notification.details['recovery']['detail']
    assert rig.host.state(1) == E
    assert any('could not be recovered' in line
               for line in log(logging.ERROR))


def recover_once(rig, domains, n=1):
    rig.fail(domains, n)
    rig.spawned.run_all()
    rig.host.sweep(domains)  # answering again after the reset
    assert rig.host.state(n) == H
    entry = rig.outbox.pending()[-1]
    rig.outbox.mark_delivered(entry.id, 'ACCEPTED', rig.host.now)
    return entry


def test_past_the_budget_there_is_no_reset_an_alarm_and_it_says_so(
        tmp_path, log):
    rig = Rig(tmp_path, max_actions=2)
    dom = rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    recover_once(rig, domains)
    recover_once(rig, domains)

    rig.fail(domains, 1)
    rig.spawned.run_all()

    assert dom.calls == ['reset', 'reset']
    [due] = rig.outbox.due(1e12)
    recovery_details = due.notification.details['recovery']
    assert recovery_details['result'] == recovery.RESULT_BUDGET_EXHAUSTED
    assert recovery_details['action'] == 'reset'
    alarms = [line for line in log(logging.ERROR) if 'ALARM' in line]
    assert len(alarms) == 1 and uuid(1) in alarms[0]
    # Evidence is still kept for the person who now has to look.
    assert due.notification.details['evidence']
    # Not recovered: it stays failed and is reported once delivered.
    assert rig.host.state(1) == E
    rig.close()


def test_the_budget_survives_a_restart_of_the_daemon(tmp_path):
    rig = Rig(tmp_path, max_actions=1)
    rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    recover_once(rig, domains)
    rig.close()

    again = Rig(tmp_path, max_actions=1)
    dom = again.domain(1)
    again.host.now = rig.host.now
    again.host.sweep(domains)
    again.fail(domains, 1)
    again.spawned.run_all()

    assert dom.calls == []
    [due] = again.outbox.due(1e12)
    assert due.notification.details['recovery']['result'] == \
        recovery.RESULT_BUDGET_EXHAUSTED
    again.close()


def test_the_history_file_is_private(rig):
    rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    recover_once(rig, domains)

    assert stat.S_IMODE(os.stat(rig.history_path).st_mode) == 0o600


def test_the_breaker_suppresses_actions_as_it_suppresses_notifications(rig):
    doms = [rig.domain(n) for n in (1, 2, 3)]
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)

    for _ in range(4):
        rig.host.sweep(domains, default=MISSED)
    rig.spawned.run_all()

    assert rig.host.suppressed
    assert rig.outbox.pending() == []
    assert [dom.calls for dom in doms] == [[], [], []]


def test_a_recovery_started_while_the_breaker_is_tripped_touches_nothing(
        rig):
    dom = rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    rig.fail(domains, 1)
    # Tripped between the queueing and the recovery's turn.
    rig.breaker.tripped = True

    rig.spawned.run_all()

    assert dom.calls == []
    [due] = rig.outbox.due(1e12)
    assert due.notification.details['recovery']['result'] == \
        recovery.RESULT_BREAKER_OPEN


def test_the_domains_metadata_action_overrides_the_configured_one(
        tmp_path):
    rig = Rig(tmp_path, action='none')
    dom = rig.domain(1)
    other = rig.domain(2)
    domains = [settings_listed(1, action='reset'), settings_listed(2),
               settings_listed(3)]
    rig.host.sweep(domains)

    rig.fail(domains, 1)
    rig.fail(domains, 2)
    rig.spawned.run_all()

    assert dom.calls == ['reset'] and other.calls == []
    results = {e.notification.instance_uuid:
               e.notification.details['recovery']['result']
               for e in rig.outbox.pending()}
    assert results == {uuid(1): 'done', uuid(2): 'not_requested'}
    rig.close()


def test_with_the_masakari_driver_a_metadata_action_is_ignored_and_said(
        tmp_path, log):
    rig = Rig(tmp_path, action='none', driver='masakari')
    dom = rig.domain(1)
    domains = [settings_listed(1, action='reset'), settings_listed(2),
               settings_listed(3)]
    rig.host.sweep(domains)

    rig.fail(domains, 1)
    rig.spawned.run_all()

    assert dom.calls == []
    [entry] = rig.outbox.pending()
    assert not entry.held
    assert [line for line in log(logging.WARNING)
            if 'metadata asks for action reset, ignored' in line]
    rig.close()


def test_the_domains_own_failure_threshold_is_used(rig):
    rig.domain(1)
    domains = [settings_listed(1, failure_threshold=5), settings_listed(2),
               settings_listed(3)]
    rig.host.sweep(domains)

    rig.fail(domains, 1, misses=4)
    assert rig.outbox.pending() == []
    rig.fail(domains, 1, misses=1)

    [entry] = rig.outbox.pending()
    assert entry.notification.details['consecutive_misses'] == 5


def test_an_opted_out_domain_is_not_pinged_and_said_once(rig, log):
    rig.domain(1)
    domains = [settings_listed(1, enabled=False), settings_listed(2)]

    for _ in range(3):
        pinged = rig.host.sweep(domains, {uuid(1): MISSED})

    assert pinged == [uuid(2)]
    assert rig.host.record(1) is None
    said = [line for line in log() if 'enabled="no"' in line]
    assert len(said) == 1 and uuid(1) in said[0]


def test_opting_out_while_monitored_drops_the_domain_at_once(rig, log):
    domains = listed(1, 2)
    rig.host.sweep(domains)
    assert rig.host.state(1) == H

    rig.tracker.settings.changed(uuid(1), name(1),
                                 domain_metadata.DomainSettings(False))

    assert rig.host.record(1) is None
    assert any('now enabled=no' in line for line in log())
    # The listing, refreshed by the host, agrees; opting in again takes
    # it back in discovery.
    rig.host.sweep([settings_listed(1, enabled=False), settings_listed(2)])
    assert rig.host.record(1) is None
    rig.tracker.settings.changed(uuid(1), name(1), domain_metadata.DEFAULTS)
    rig.host.sweep(domains, default=MISSED)
    assert rig.host.state(1) == D


def test_an_invalid_element_is_logged_once_and_the_defaults_apply(rig, log):
    bad = libvirt_domains.DomainInfo(uuid(1), name(1), True, False, AGENT,
                                  settings_error='unknown attribute x="1"')
    for _ in range(3):
        rig.host.sweep([bad, settings_listed(2)])

    warned = [line for line in log(logging.WARNING)
              if 'unknown attribute' in line]
    assert len(warned) == 1
    assert rig.host.state(1) == H


# -- the crash window ------------------------------------------------------

class RecordingClient:
    def __init__(self):
        self.sent = []

    def send(self, notification):
        self.sent.append(notification)
        return notification_mod.DeliveryOutcome(
            notification_mod.OutcomeKind.ACCEPTED, 202, '')


def test_a_crash_between_queueing_and_release_loses_nothing(tmp_path):
    rig = Rig(tmp_path)
    rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    rig.fail(domains, 1)
    # The daemon dies here: the recovery never ran (or ran halfway).
    rig.spawned.clear()
    rig.close()

    box = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'), max_size=100)
    client = RecordingClient()
    worker = delivery.DeliveryWorker(box, client)
    assert worker.run_once(now=rig.host.now + 1) == []  # still held

    assert recovery_step.release_interrupted(box, rig.host.now + 2) == 1
    worker.run_once(now=rig.host.now + 3)
    worker.run_once(now=rig.host.now + 4)

    [sent] = client.sent
    assert sent.instance_uuid == uuid(1)
    assert sent.details['recovery'] == {
        'action': 'reset', 'result': recovery.RESULT_INTERRUPTED,
        'detail': recovery_step.INTERRUPTED_DETAIL}
    assert sent.details['consecutive_misses'] == 3
    assert box.pending() == []
    # A second start finds nothing held.
    assert recovery_step.release_interrupted(box, rig.host.now + 5) == 0
    box.close()


def test_no_second_notification_while_one_is_held(rig):
    rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)

    rig.fail(domains, 1, misses=6)

    assert len(rig.outbox.pending()) == 1
    assert len(rig.spawned) == 1


# -- the budget's file ------------------------------------------------------

def test_the_history_keeps_only_what_still_counts(tmp_path):
    path = str(tmp_path / 'recovery.json')
    history = recovery_history.RecoveryHistory(path, window=100)
    history.put(uuid(1), (10.0,), now=10.0)
    history.put(uuid(2), (50.0, 60.0), now=60.0)

    history.put(uuid(2), (50.0, 60.0, 130.0), now=130.0)

    again = recovery_history.RecoveryHistory(path, window=100)
    assert again.get(uuid(1)) == ()
    assert again.get(uuid(2)) == (50.0, 60.0, 130.0)


def test_an_unreadable_history_starts_with_a_full_budget_and_says_so(
        tmp_path, log):
    path = tmp_path / 'recovery.json'
    path.write_text('{not json')

    history = recovery_history.RecoveryHistory(str(path), window=100)

    assert history.get(uuid(1)) == ()
    assert any('Cannot read the recovery history' in line
               for line in log(logging.ERROR))


# -- deadlines -------------------------------------------------------------

def result_of(entry):
    return entry.notification.details['recovery']


def scrape(rig):
    rig.metrics.watch(stuck_calls=rig.step.stuck)
    return exposition.parse(rig.metrics.render())


def test_a_screenshot_that_never_returns_releases_the_notification(rig, log):
    rig.calls.stuck = {'capture_screenshot'}
    dom = rig.domain(1, graphics=True)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)

    rig.fail(domains, 1)
    rig.spawned.run_all()

    [due] = rig.outbox.due(1e12)
    assert result_of(due) == {
        'action': 'reset', 'result': recovery.RESULT_TIMED_OUT,
        'detail': 'screenshot: the screenshot capture did not return within '
                  '7 s ([evidence] screenshot_timeout) and is still stuck '
                  'in libvirt; the reset was not attempted'}
    # What was captured before it is kept; the guest is not touched again.
    assert [ref['kind'] for ref in due.notification.details['evidence']] \
        == ['console']
    assert dom.calls == []
    [screenshot] = [call for call in rig.calls.started
                    if call.func.__name__ == 'capture_screenshot']
    assert screenshot.waited == [7] and not screenshot.closed
    assert rig.step.stuck.get(uuid(1)).step == 'screenshot'
    assert rig.host.state(1) == E  # not recovered: reported once delivered
    parsed = scrape(rig)
    assert parsed.value(PREFIX + 'recovery_timeouts_total',
                        step='screenshot') == 1
    assert parsed.value(PREFIX + 'recovery_calls_stuck') == 1
    [said] = [line for line in log(logging.ERROR) if 'did not return' in line]
    assert uuid(1) in said and 'screenshot_timeout' in said


def test_a_reset_that_never_returns_says_whether_it_reached_is_unknown(rig):
    rig.calls.stuck = {'act'}
    rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)

    rig.fail(domains, 1)
    rig.spawned.run_all()

    [due] = rig.outbox.due(1e12)
    assert result_of(due)['result'] == recovery.RESULT_TIMED_OUT
    assert result_of(due)['detail'] == (
        'action: the reset did not return within 11 s ([recovery] '
        'action_timeout) and is still stuck in libvirt; whether it reached '
        'the guest is unknown')
    # It was decided, so it counts against the budget.
    assert len(rig.step.history.get(uuid(1))) == 1


class SlowCalls(Calls):
    """Each call returns, after ``took[func name]`` seconds of the rig's
    monotonic clock."""

    def __init__(self, rig, took):
        super().__init__()
        self.rig = rig
        self.took = took

    def __call__(self, func, *args):
        self.rig.monotonic += self.took.get(func.__name__, 0.0)
        return super().__call__(func, *args)


def test_the_whole_step_has_a_bound_of_its_own(tmp_path):
    rig = Rig(tmp_path)
    rig.step._start_call = SlowCalls(rig, {'console_evidence': 15.0})
    rig.step._start_call.stuck = {'capture_screenshot'}
    rig.domain(1, graphics=True)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)

    rig.fail(domains, 1)
    rig.spawned.run_all()

    [screenshot] = [call for call in rig.step._start_call.started
                    if call.func.__name__ == 'capture_screenshot']
    # 20 s for the step, 15 s of them taken by the console.
    assert screenshot.waited == [5.0]
    [due] = rig.outbox.due(1e12)
    assert result_of(due)['detail'].startswith(
        'screenshot: the screenshot capture did not return within 20 s '
        '([recovery] step_timeout)')
    rig.close()


def test_while_a_call_is_stuck_the_domain_is_notified_but_never_touched(
        rig, log):
    rig.calls.stuck = {'act'}
    dom = rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    rig.fail(domains, 1)
    rig.spawned.run_all()
    [first] = rig.outbox.due(1e12)
    rig.outbox.mark_delivered(first.id, 'ACCEPTED', rig.host.now)
    rig.host.sweep(domains)  # it answers again, then fails again
    started = len(rig.calls.started)

    rig.fail(domains, 1)
    rig.spawned.run_all()

    [second] = rig.outbox.due(1e12)
    assert result_of(second)['result'] == recovery.RESULT_TIMED_OUT
    assert result_of(second)['detail'].startswith(
        'not attempted: the action started ')
    assert result_of(second)['detail'].endswith(
        'by an earlier recovery of this domain is still stuck in libvirt')
    assert len(rig.calls.started) == started  # no second call
    assert dom.calls == []

    # Once it returns the domain is recovered again, and that is said.
    rig.calls.started[-1].returns()
    rig.calls.stuck = set()
    rig.outbox.mark_delivered(second.id, 'ACCEPTED', rig.host.now)
    rig.host.sweep(domains)
    rig.fail(domains, 1)
    rig.spawned.run_all()

    [third] = rig.outbox.due(1e12)
    assert result_of(third)['result'] == recovery.RESULT_DONE
    assert dom.calls == ['reset']
    assert rig.step.stuck.get(uuid(1)) is None
    assert any('returned after' in line and uuid(1) in line
               for line in log(logging.WARNING))


@pytest.fixture
def hang():
    """A native event stuck libvirt calls wait on; set at the end so that
    no thread outlives the test."""
    event = concurrency.original('threading').Event()
    yield event
    event.set()


def wait_until(condition, guard=10.0):
    deadline = time.monotonic() + guard
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        concurrency.sleep(0.01)


def test_stuck_calls_free_their_slots_for_the_next_failures(tmp_path, hang):
    # Two recoveries stuck at once (MAX_CONCURRENT is 2), on native
    # threads that never return: a third and a fourth failure are still
    # recovered, with no stuck thread in the pool the listings use.
    rig = Rig(tmp_path, native=True)
    assert recovery_step.MAX_CONCURRENT == 2
    stuck = [rig.domain(1, graphics=True, hang=hang),
             rig.domain(2, hang=hang)]
    fine = [rig.domain(3), rig.domain(4)]
    domains = listed(1, 2, 3, 4, 5, 6, 7, 8)
    rig.host.sweep(domains)

    for n in (1, 2, 3):
        rig.fail(domains, n)
    wait_until(lambda: len(rig.outbox.due(1e12)) == 3)
    rig.fail(domains, 4)
    wait_until(lambda: len(rig.outbox.due(1e12)) == 4)

    results = {e.notification.instance_uuid: result_of(e)['result']
               for e in rig.outbox.due(1e12)}
    assert results == {uuid(1): 'timed_out', uuid(2): 'timed_out',
                       uuid(3): 'done', uuid(4): 'done'}
    assert [dom.calls for dom in stuck] == [['screenshot'], ['reset']]
    assert [dom.calls for dom in fine] == [['reset'], ['reset']]
    assert len(rig.step.stuck) == 2
    assert rig.step.overdue() == []
    rig.close()


def test_a_recovery_holding_its_slot_past_the_bounds_is_not_live(rig):
    class Wedged(StuckCall):
        """A wait that does not keep its timeout: the bound failed."""

        def wait(self, timeout=None):
            concurrency.sleep(60)

    rig.step._start_call = Wedged
    rig.step._spawn = concurrency.spawn
    rig.domain(1)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    rig.fail(domains, 1)
    concurrency.sleep(0)

    rig.monotonic += DEADLINES.step + recovery_deadlines.SLOT_MARGIN
    assert rig.step.overdue_reason() is None  # on the bound: still live
    rig.monotonic += 1

    assert rig.step.overdue_reason() == (
        'the recovery of domain %s (%s) has held its slot for 51 s, past '
        'its bound of 50 s' % (name(1), uuid(1)))
    rig.step.stop()


def test_a_stop_leaves_the_recoveries_under_way_held_for_the_next_start(
        tmp_path, hang, log):
    rig = Rig(tmp_path, native=True)
    rig.step.deadlines = recovery_deadlines.Deadlines(60, 60, 60, 120)
    rig.domain(1, hang=hang)
    domains = listed(1, 2, 3)
    rig.host.sweep(domains)
    rig.fail(domains, 1)
    wait_until(lambda: rig.step._holding)

    rig.step.stop()
    concurrency.sleep(0.1)

    [entry] = rig.outbox.pending()
    assert entry.held and rig.step._holding == {}
    assert any('stays held' in line and uuid(1) in line
               and 'sends it as interrupted' in line
               for line in log(logging.WARNING))
    assert recovery_step.release_interrupted(rig.outbox, rig.host.now) == 1
    assert result_of(rig.outbox.pending()[0])['result'] == 'interrupted'
    rig.close()
