"""Self-recovery on a plain libvirt host, driven through the tracker with
the real policy, breaker, store, outbox, evidence store and budget
history, and a fake libvirt domain: the notification is stored (held)
before the guest is touched and released with what was done, the budget
holds across restarts, the breaker holds actions, and a crash between the
action and the release loses nothing."""

import logging
import os
import stat

import libvirt
import pytest

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
from tests.unit.daemon.test_tracker import AGENT
from tests.unit.daemon.test_tracker import GRACE
from tests.unit.daemon.test_tracker import HOST
from tests.unit.daemon.test_tracker import MISSED
from tests.unit.daemon.test_tracker import Host
from tests.unit.daemon.test_tracker import Wakes
from tests.unit.daemon.test_tracker import make_store
from tests.unit.daemon.test_tracker import name
from tests.unit.daemon.test_tracker import uuid

D, H, E, R = states.DISCOVERY, states.HEALTHY, states.ERROR, states.REPORTED


class FakeDomain:
    def __init__(self, n, console_path, fail_reset=False):
        self.n = n
        self.console_path = console_path
        self.fail_reset = fail_reset
        self.calls = []

    def UUIDString(self):
        return uuid(self.n)

    def XMLDesc(self, flags):
        return ("<domain><devices><serial type='file'><source path='%s'/>"
                "</serial></devices></domain>" % self.console_path)

    def reset(self, flags):
        self.calls.append('reset')
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
                 driver='webhook', threshold=3):
        self.tmp_path = tmp_path
        self.store = make_store()
        self.outbox = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'),
                                        max_size=100)
        self.wakes = Wakes()
        self.breaker = mass_failure.MassFailureBreaker(3, 0.5)
        self.libvirt = FakeHost()
        self.spawned = Spawned()
        self.now = [1_700_000_000.0]
        self.history_path = str(tmp_path / 'recovery.json')
        self.step = recovery_step.RecoveryStep(
            recovery.RecoveryPolicy(action, max_actions, 3600),
            recovery_history.RecoveryHistory(self.history_path, 3600),
            EvidenceStore(str(tmp_path / 'evidence')), self.outbox,
            self.breaker, driver, self.libvirt, console_lines=10,
            execute=lambda func, *args: func(*args), spawn=self.spawned,
            # The recovery ends a moment after the sweep that queued it.
            clock=lambda: self.host.now + 1, delivery_wakeup=self.wakes)
        self.tracker = domain_tracker.DomainTracker(
            self.store, health_policy.HealthPolicy(threshold, 0, GRACE, 120),
            self.breaker, self.outbox, HOST, delivery_wakeup=self.wakes,
            clock=lambda: pytest.fail('the tracker read the wall clock'),
            recovery=self.step)
        self.host = Host(self.tracker, self.store, self.outbox)

    def domain(self, n, fail_reset=False):
        console = self.tmp_path / ('console-%d.log' % n)
        console.write_bytes(b'booting\nKernel panic - not syncing\n')
        dom = FakeDomain(n, str(console), fail_reset)
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
