"""The end of a reported failure: queued once, and only for a failure the
receiver has."""

import threading

import pytest
from oslo_config import cfg

from monitor.daemon import resolutions
from monitor.health import lifecycle
from monitor.health import states
from monitor.health.record import DomainRecord
from monitor.notify import drivers
from monitor.notify import notification as notification_mod
from monitor.notify.outbox import Outbox

UUID = '3f1c9e0a-1b2c-4d5e-8f90-123456789abc'
T0 = 1700000000.0


class Store:
    def __init__(self):
        self.records = {}

    def get(self, uuid):
        return self.records.get(uuid)


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(str(tmp_path / 'state' / 'outbox.sqlite'), max_size=100)
    yield box
    box.close()


@pytest.fixture
def store():
    return Store()


@pytest.fixture
def watcher(store, outbox):
    return resolutions.Resolutions(store, outbox, threading.Event())


def failure(at=T0, details=None):
    return notification_mod.Notification.new(
        UUID, 'vm-1', 'compute-1', at,
        details=details or {'reason': 'guest kernel panicked'})


def delivered(outbox, n, at):
    outbox.enqueue(n, at)
    outbox.mark_delivered(n.id, 'ACCEPTED', at + 1)


def record(last_ok=None, state=states.HEALTHY):
    return DomainRecord(uuid=UUID, name='vm-1', state=state, last_ok=last_ok)


def undefined_event():
    return lifecycle.DomainEvent(
        uuid=UUID, name='vm-1', kind=lifecycle.EventKind.LIFECYCLE,
        event=lifecycle.LifecycleEvent.UNDEFINED, detail=None, at=T0 + 50)


def resolved_entries(outbox):
    return [e for e in outbox.pending()
            if e.notification.kind == notification_mod.RESOLVED]


def test_a_delivered_failure_ends_when_the_guest_answers_again(
        watcher, store, outbox):
    n = failure()
    delivered(outbox, n, T0)
    store.records[UUID] = record(last_ok=T0 - 100, state=states.REPORTED)
    assert watcher.check(T0 + 10) == []

    store.records[UUID] = record(last_ok=T0 + 20)
    [queued] = watcher.check(T0 + 21)

    assert queued.kind == notification_mod.RESOLVED
    assert queued.details['resolves'] == n.id
    assert queued.details['reason'] == resolutions.ANSWERED
    assert queued.instance_uuid == UUID
    assert [e.id for e in resolved_entries(outbox)] == [queued.id]


def test_at_most_one_end_per_failure_even_after_a_restart(store, outbox):
    n = failure()
    delivered(outbox, n, T0)
    store.records[UUID] = record(last_ok=T0 + 20)
    first = resolutions.Resolutions(store, outbox)
    assert len(first.check(T0 + 21)) == 1
    assert first.check(T0 + 22) == []

    # A new daemon knows nothing of it but the outbox.
    assert resolutions.Resolutions(store, outbox).check(T0 + 30) == []
    assert len(resolved_entries(outbox)) == 1


def test_a_failure_never_delivered_is_never_ended(watcher, store, outbox):
    pending = failure()
    outbox.enqueue(pending, T0)
    store.records[UUID] = record(last_ok=T0 + 20)

    assert watcher.check(T0 + 21) == []

    outbox.mark_dead(pending.id, T0 + 22, 'rejected')
    assert watcher.check(T0 + 23) == []
    assert resolved_entries(outbox) == []


def test_a_pending_failure_is_ended_once_delivered(watcher, store, outbox):
    n = failure()
    outbox.enqueue(n, T0)
    store.records[UUID] = record(last_ok=T0 + 20)
    assert watcher.check(T0 + 21) == []

    outbox.mark_delivered(n.id, 'ACCEPTED', T0 + 25)

    assert len(watcher.check(T0 + 26)) == 1


def test_a_stopped_domain_is_not_over_an_undefined_one_is(
        watcher, store, outbox):
    delivered(outbox, failure(), T0)
    # Stopped: its record is forgotten.
    assert watcher.check(T0 + 10) == []

    watcher.saw(undefined_event())
    [queued] = watcher.check(T0 + 60)

    assert queued.details['reason'] == resolutions.UNDEFINED


class Libvirt:
    """What libvirt answers to "is this domain still defined?": True,
    False, or None (it cannot tell: not connected, or no answer in
    time); the questions are kept."""

    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def __call__(self, uuid):
        self.asked.append(uuid)
        return self.answer


OTHER = '9a0e7c6d-2b1a-4c3d-8e5f-abcdefabcdef'


def test_a_domain_undefined_while_the_daemon_did_not_see_it_is_over(
        store, outbox):
    # Undefined while the daemon was stopped: no event will ever come.
    libvirt = Libvirt(False)
    watcher = resolutions.Resolutions(store, outbox, defined=libvirt)
    delivered(outbox, failure(), T0)

    [queued] = watcher.check(T0 + 60)

    assert queued.details['reason'] == resolutions.UNDEFINED
    assert libvirt.asked == [UUID]
    assert watcher.check(T0 + 70) == []


def test_a_stopped_domain_is_asked_about_once_per_connection(store, outbox):
    libvirt = Libvirt(True)
    watcher = resolutions.Resolutions(store, outbox, defined=libvirt)
    delivered(outbox, failure(), T0)

    assert watcher.check(T0 + 10) == []
    assert watcher.check(T0 + 20) == []
    assert libvirt.asked == [UUID]

    # Undefined while libvirt could not be seen: asked again after it.
    libvirt.answer = False
    watcher.connected()
    [queued] = watcher.check(T0 + 30)

    assert queued.details['reason'] == resolutions.UNDEFINED


def test_a_monitored_domain_is_never_asked_about(store, outbox):
    libvirt = Libvirt(False)
    watcher = resolutions.Resolutions(store, outbox, defined=libvirt)
    delivered(outbox, failure(), T0)
    store.records[UUID] = record(last_ok=T0 - 100, state=states.REPORTED)

    assert watcher.check(T0 + 10) == []
    assert libvirt.asked == []


def test_when_libvirt_cannot_tell_the_pass_stops_asking_and_the_next_asks(
        store, outbox):
    # A libvirt that does not answer in time holds one question per pass,
    # not one per stopped domain.
    libvirt = Libvirt(None)
    watcher = resolutions.Resolutions(store, outbox, defined=libvirt)
    delivered(outbox, failure(), T0)
    other = notification_mod.Notification.new(
        OTHER, 'vm-2', 'compute-1', T0,
        details={'reason': 'guest kernel panicked'})
    delivered(outbox, other, T0)

    assert watcher.check(T0 + 10) == []
    assert len(libvirt.asked) == 1

    libvirt.answer = False
    assert {q.instance_uuid for q in watcher.check(T0 + 20)} == {UUID, OTHER}


def test_an_application_failure_of_a_domain_undefined_unseen_is_over(
        store, outbox):
    watcher = resolutions.Resolutions(store, outbox, defined=Libvirt(False))
    delivered(outbox, failure(details={'reason': 'probe', 'incident':
                                       'application'}), T0)

    [queued] = watcher.check(T0 + 60)

    assert queued.details['reason'] == resolutions.UNDEFINED
    assert queued.details['incident'] == 'application'


def test_an_application_failure_is_not_ended_by_a_ping(
        watcher, store, outbox):
    delivered(outbox, failure(details={'reason': 'probe', 'incident':
                                       'application'}), T0)
    store.records[UUID] = record(last_ok=T0 + 20)

    assert watcher.check(T0 + 21) == []


def test_an_application_failure_ends_when_its_probe_passes_again(
        watcher, store, outbox):
    app = failure(details={'reason': 'probe', 'incident': 'application'})
    delivered(outbox, app, T0)
    store.records[UUID] = record(last_ok=T0 + 20)

    watcher.application_passed(UUID, T0 + 30)
    [queued] = watcher.check(T0 + 31)

    assert queued.details['resolves'] == app.id
    assert queued.details['reason'] == resolutions.APPLICATION_PASSED
    assert watcher.check(T0 + 40) == []


def test_a_probe_that_passed_before_the_failure_does_not_end_it(
        watcher, store, outbox):
    app = failure(details={'reason': 'probe', 'incident': 'application'})
    watcher.application_passed(UUID, T0 - 5)
    delivered(outbox, app, T0)
    store.records[UUID] = record(last_ok=T0 + 20)

    assert watcher.check(T0 + 21) == []


def test_a_pass_told_while_the_failure_is_pending_ends_it_once_delivered(
        watcher, store, outbox):
    app = failure(details={'reason': 'probe', 'incident': 'application'})
    outbox.enqueue(app, T0)
    store.records[UUID] = record(last_ok=T0 + 20)
    watcher.application_passed(UUID, T0 + 30)
    assert watcher.check(T0 + 31) == []

    outbox.mark_delivered(app.id, 'ACCEPTED', T0 + 40)
    [queued] = watcher.check(T0 + 41)

    assert queued.details['resolves'] == app.id


def test_the_end_is_invisible_to_the_health_policy(watcher, store, outbox):
    # The policy reads the newest failures only: an end queued after a
    # new incident began must not pass for that incident's notification.
    n = failure()
    delivered(outbox, n, T0)
    store.records[UUID] = record(last_ok=T0 + 20)
    watcher.check(T0 + 21)

    latest = outbox.latest_per_domain(UUID)

    assert [e.id for e in latest] == [n.id]


def test_the_end_wakes_the_delivery(store, outbox):
    wakeup = threading.Event()
    delivered(outbox, failure(), T0)
    store.records[UUID] = record(last_ok=T0 + 20)

    resolutions.Resolutions(store, outbox, wakeup).check(T0 + 21)

    assert wakeup.is_set()


@pytest.mark.parametrize('last_ok, undefined, why', [
    (None, False, None),
    (T0 - 1, False, None),
    (T0, False, None),
    (T0 + 1, False, resolutions.ANSWERED),
])
def test_why_over(last_ok, undefined, why):
    assert resolutions.why_over(record(last_ok=last_ok), T0,
                                undefined) == why


def test_why_over_without_a_record():
    assert resolutions.why_over(None, T0, False) is None
    assert resolutions.why_over(None, T0, True) == resolutions.UNDEFINED


@pytest.mark.parametrize('driver, told', [('alertmanager', True),
                                          ('masakari', False),
                                          ('webhook', True),
                                          ('none', False)])
def test_only_the_drivers_told_of_ends_get_them(store, outbox, driver, told):
    conf = cfg.ConfigOpts()
    drivers.register_opts(conf)
    conf.register_opt(cfg.IntOpt('interval', default=2), group='monitor')
    conf([])
    conf.set_override('driver', driver, 'notifier')

    built = resolutions.Resolutions.from_conf(conf, store, outbox)

    assert (built is not None) == told
