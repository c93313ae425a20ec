"""The delivery worker: what it does with each answer of the HA engine, its
retry schedule, what it logs, and its loop."""

import inspect
import logging
import threading
import time

import pytest
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from monitor.notify import delivery
from monitor.notify import drivers as notifier_driver
from monitor.notify import masakari as notifier
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.notify.delivery import DeliveryWorker
from monitor.notify.delivery import RetryPolicy
from monitor.notify.notification import DeliveryOutcome
from monitor.notify.notification import OutcomeKind
from monitor.notify.outbox import Outbox
from tests.unit import http_engine
from tests.unit.http_engine import Response

ACCEPTED = DeliveryOutcome(OutcomeKind.ACCEPTED, 202, '', 'engine-1')
DUPLICATE = DeliveryOutcome(OutcomeKind.DUPLICATE, 409,
                            'Notification received from host compute-1 of '
                            "type 'VM' is duplicate.")
REJECTED = DeliveryOutcome(OutcomeKind.REJECTED, 400,
                           'Host with name compute-1 could not be found.')
BUSY = DeliveryOutcome(OutcomeKind.RETRY, 503, 'HTTP 503: try later')
REFUSED = DeliveryOutcome(OutcomeKind.RETRY, None,
                          'connection failed: Connection refused')


class ScriptedClient:
    """Answers with ``outcomes`` in turn, then repeats the last one; sets
    ``event`` after each send."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.sent = []
        self.event = threading.Event()

    def send(self, notification):
        self.sent.append(notification)
        self.event.set()
        if len(self.outcomes) > 1:
            return self.outcomes.pop(0)
        return self.outcomes[0]


def notification(n=1, at=1700000000.0):
    return notification_mod.Notification.new(
        instance_uuid=f'00000000-0000-4000-8000-{n:012d}',
        domain_name=f'instance-{n:08x}', hostname='compute-1', at=at)


NO_JITTER = RetryPolicy(initial_delay=1.0, max_delay=60.0, factor=2.0,
                        jitter=0.0)


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(str(tmp_path / 'outbox.sqlite'), max_size=100)
    yield box
    box.close()


def worker_with(outbox, client, policy=NO_JITTER):
    return DeliveryWorker(outbox, client, retry_policy=policy)


def test_the_worker_needs_only_the_outbox_and_the_engine_client():
    # What became of a notification is written to the outbox, where the
    # rest of the daemon reads it: no callback into the tracker.
    required = [name for name, p in
                inspect.signature(DeliveryWorker).parameters.items()
                if p.default is inspect.Parameter.empty]
    assert required == ['outbox', 'client']
    assert not [name for name in
                inspect.signature(DeliveryWorker).parameters
                if name.startswith('on_')]


# -- outcomes --------------------------------------------------------------

def test_an_accepted_notification_is_delivered_and_sent_once(outbox):
    n = notification()
    outbox.enqueue(n, 100.0)
    client = ScriptedClient(ACCEPTED)
    worker = worker_with(outbox, client)

    [(entry, outcome)] = worker.run_once(now=100.0)

    assert outcome == ACCEPTED
    assert (entry.status, entry.outcome, entry.attempts) == (
        'delivered', 'ACCEPTED', 1)
    assert outbox.get(n.id) == entry
    assert worker.run_once(now=1000.0) == []
    assert client.sent == [n]


def test_a_duplicate_counts_as_delivered(outbox, caplog):
    n = notification()
    outbox.enqueue(n, 100.0)
    worker = worker_with(outbox, ScriptedClient(DUPLICATE))

    [(entry, _)] = worker.run_once(now=100.0)

    assert (entry.status, entry.outcome) == ('delivered', 'DUPLICATE')
    assert outbox.get(n.id) == entry
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 'is duplicate' in record.getMessage()
    assert n.domain_name in record.getMessage()


def test_a_rejected_notification_becomes_a_logged_dead_letter(outbox,
                                                              caplog):
    n = notification()
    outbox.enqueue(n, 100.0)
    client = ScriptedClient(REJECTED)
    worker = worker_with(outbox, client)

    [(entry, _)] = worker.run_once(now=100.0)

    assert (entry.status, entry.last_error) == ('dead', REJECTED.message)
    assert outbox.dead_letters() == [entry]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    for part in (REJECTED.message, n.domain_name, n.instance_uuid, n.id,
                 'HTTP 400', 'attempt 1'):
        assert part in message
    # Never sent again unless an operator requeues it.
    assert worker.run_once(now=1e9) == []
    assert len(client.sent) == 1


def test_a_retried_notification_stays_pending_with_the_reason(outbox):
    entry = outbox.enqueue(notification(), 100.0)
    worker = worker_with(outbox, ScriptedClient(BUSY))

    [(after, outcome)] = worker.run_once(now=100.0)

    assert outcome == BUSY
    assert (after.status, after.attempts, after.last_error,
            after.next_attempt_at) == ('pending', 1, BUSY.message, 101.0)
    assert outbox.get(entry.id) == after


# -- the retry schedule -------------------------------------------------------

def test_retries_back_off_exponentially_up_to_the_cap(outbox):
    outbox.enqueue(notification(), 1000.0)
    worker = worker_with(outbox, ScriptedClient(REFUSED))
    now = 1000.0
    delays = []

    for _ in range(9):
        [(entry, _)] = worker.run_once(now=now)
        delay = entry.next_attempt_at - now
        delays.append(delay)
        assert worker.run_once(now=now + delay - 0.01) == []
        now += delay

    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_jitter_only_ever_shortens_a_delay():
    def policy(rand):
        return RetryPolicy(initial_delay=1.0, max_delay=60.0, factor=2.0,
                           jitter=0.25, rand=lambda: rand)

    assert policy(0.0).delay(3) == 4.0
    assert policy(1.0).delay(3) == 3.0
    assert policy(0.5).delay(7) == 52.5
    assert policy(0.0).delay(10 ** 6) == 60.0


def test_the_policy_comes_from_the_outbox_group():
    conf = cfg.ConfigOpts()
    delivery.register_opts(conf)
    conf(args=[], default_config_files=[])
    conf.set_override('retry_initial_delay', 0.5, group='outbox')
    conf.set_override('retry_max_delay', 5.0, group='outbox')
    conf.set_override('retry_backoff_factor', 3.0, group='outbox')
    conf.set_override('retry_jitter', 0.0, group='outbox')

    policy = RetryPolicy.from_conf(conf)

    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 5.0]


def test_options_say_their_defaults():
    [(group, opts)] = delivery.list_opts()

    assert group == 'outbox'
    defaults = {o.dest: o.default for o in opts}
    assert defaults == {'retry_initial_delay': 1.0, 'retry_max_delay': 60.0,
                        'retry_backoff_factor': 2.0, 'retry_jitter': 0.2}
    for opt in opts:
        assert f'Default {opt.default:g}' in opt.help


def test_an_entry_postponed_by_a_clock_step_back_is_still_sent(outbox):
    outbox.enqueue(notification(), 10000.0)
    client = ScriptedClient(BUSY, ACCEPTED)
    worker = worker_with(outbox, client)
    worker.run_once(now=10000.0)

    # The wall clock went back an hour; the retry is not an hour away.
    [(entry, _)] = worker.run_once(now=6400.0)

    assert entry.status == 'delivered'


# -- order, exactly-once, restarts ---------------------------------------------

def test_each_due_entry_is_sent_once_per_pass_oldest_first(outbox):
    first, second = notification(1), notification(2)
    outbox.enqueue(first, 100.0)
    outbox.enqueue(second, 101.0)
    client = ScriptedClient(ACCEPTED)
    worker = worker_with(outbox, client)

    results = worker.run_once(now=101.0)

    assert [e.notification for e, _ in results] == [first, second]
    assert client.sent == [first, second]


def test_a_failing_engine_holds_the_whole_queue_until_the_next_attempt(
        outbox):
    first, second, third = notification(1), notification(2), notification(3)
    for n in (first, second, third):
        outbox.enqueue(n, 100.0)
    client = ScriptedClient(BUSY, ACCEPTED)
    worker = worker_with(outbox, client)

    assert [e.notification for e, _ in worker.run_once(now=100.0)] == [first]
    # The engine failed: nobody else is tried before the retry time.
    assert worker.run_once(now=100.5) == []
    assert client.sent == [first]

    delivered = worker.run_once(now=101.0)
    assert sorted(e.notification.id for e, _ in delivered) == sorted(
        n.id for n in (first, second, third))
    assert outbox.pending() == []


def test_each_notification_is_sent_until_delivered_then_never_again(
        outbox):
    first, second = notification(1), notification(2)
    outbox.enqueue(first, 100.0)
    outbox.enqueue(second, 100.0)
    # first: busy (holding second back), then both accepted.
    client = ScriptedClient(BUSY, ACCEPTED, ACCEPTED)
    worker = worker_with(outbox, client)

    for now in (100.0, 101.0, 102.0, 200.0, 1000.0):
        worker.run_once(now=now)

    assert client.sent == [first, first, second]
    assert [outbox.get(n.id).status for n in (first, second)] == [
        'delivered', 'delivered']


def test_pending_entries_are_replayed_unchanged_after_a_restart(tmp_path):
    path = str(tmp_path / 'outbox.sqlite')
    n = notification(at=1700000000.0)
    with http_engine.HTTPServer(http_engine.script(
            Response(503, b'down'), Response(202, {}))) as server:
        client = notifier.MasakariClient(ks_session.Session(),
                                         endpoint=server.url + '/v1')

        before = Outbox(path, max_size=10)
        before.enqueue(n, 100.0)
        [(entry, _)] = worker_with(before, client).run_once(now=100.0)
        assert entry.status == 'pending'
        before.close()  # the daemon stops (or dies) here

        after = Outbox(path, max_size=10)
        [(entry, outcome)] = worker_with(after, client).run_once(now=5000.0)
        after.close()

    assert outcome.kind == OutcomeKind.ACCEPTED
    assert (entry.status, entry.attempts) == ('delivered', 2)
    assert entry.notification == n
    first, second = (r.json() for r in server.requests)
    assert first == second == n.body()
    assert second['notification']['generated_time'] == '2023-11-14T22:13:20Z'


# -- logging --------------------------------------------------------------

def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends(outbox,
                                                                    caplog):
    caplog.set_level(logging.INFO, logger='monitor.notify.delivery')
    first, second = notification(1), notification(2)
    outbox.enqueue(first, 0.0)
    outbox.enqueue(second, 0.0)
    worker = worker_with(outbox, ScriptedClient(*[REFUSED] * 12, ACCEPTED))

    now = 0.0
    while outbox.pending():
        worker.run_once(now=now)
        now += 1.0

    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == 'monitor.notify.delivery']
    assert [level for level, _ in lines] == ['ERROR', 'INFO', 'INFO', 'INFO']
    assert 'HA engine unavailable' in lines[0][1]
    assert 'Connection refused' in lines[0][1]
    assert 'answering again' in lines[1][1]
    assert '12 failed attempt(s)' in lines[1][1]
    assert 'accepted' in lines[2][1] and 'accepted' in lines[3][1]


def test_a_different_failure_during_an_outage_is_logged_once(outbox,
                                                             caplog):
    caplog.set_level(logging.INFO, logger='monitor.notify.delivery')
    outbox.enqueue(notification(), 0.0)
    worker = worker_with(outbox, ScriptedClient(REFUSED, REFUSED, BUSY))

    for now in range(0, 600, 5):
        worker.run_once(now=float(now))

    errors = [r.getMessage() for r in caplog.records
              if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert 'HTTP 503' in errors[1]


def test_each_final_outcome_names_domain_uuid_and_attempt(outbox, caplog):
    caplog.set_level(logging.INFO, logger='monitor.notify.delivery')
    n = notification()
    outbox.enqueue(n, 0.0)
    worker = worker_with(outbox, ScriptedClient(BUSY, BUSY, ACCEPTED))
    for now in (0.0, 10.0, 20.0):
        worker.run_once(now=now)

    message = caplog.records[-1].getMessage()
    for part in (n.domain_name, n.instance_uuid, 'attempt 3', 'engine-1'):
        assert part in message


# -- the loop ---------------------------------------------------------------

class Loop:
    """Runs ``worker.run`` in a thread like the daemon's green thread."""

    def __init__(self, worker):
        self.worker = worker
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=worker.run,
                                       args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_event.set()
        self.worker.wake()
        self.thread.join(timeout=10)
        return not self.thread.is_alive()


def test_the_shared_wakeup_sends_at_once_and_stop_returns_at_once(outbox):
    # An idle worker sleeps delivery.IDLE_POLL (30 s); both waits below
    # are far shorter, so they only succeed if the wake-up does its job.
    # The enqueuer (the tracker) holds the same event, not the worker.
    wakeup = threading.Event()
    client = ScriptedClient(ACCEPTED)
    worker = DeliveryWorker(outbox, client, wakeup=wakeup)
    first, second = notification(1), notification(2)
    outbox.enqueue(first, time.time())
    loop = Loop(worker)
    assert client.event.wait(10)
    client.event.clear()

    outbox.enqueue(second, time.time())
    wakeup.set()

    assert client.event.wait(10)
    assert client.sent == [first, second]
    assert loop.stop()


def deliver_through_a_first_failure(outbox, error, retry_policy):
    """Run the worker's loop with a client whose first send raises
    ``error`` until the notification is delivered."""
    class FailingOnce(ScriptedClient):
        def send(self, notification):
            if not self.sent:
                self.sent.append(notification)
                raise error
            return super().send(notification)
    n = notification()
    worker = DeliveryWorker(outbox, FailingOnce(ACCEPTED),
                            retry_policy=retry_policy)
    outbox.enqueue(n, time.time())

    loop = Loop(worker)

    deadline = time.monotonic() + 10
    while outbox.get(n.id).status != 'delivered':
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert loop.stop()


def test_the_loop_survives_an_unexpected_error(outbox, caplog):
    deliver_through_a_first_failure(outbox, RuntimeError('surprise'),
                                    RetryPolicy(max_delay=0.05))

    [record] = [r for r in caplog.records if r.exc_info]
    assert 'Delivery pass failed' in record.getMessage()


def test_an_outbox_locked_elsewhere_postpones_the_pass_without_a_trace(
        outbox, caplog):
    deliver_through_a_first_failure(outbox,
                                    outbox_mod.OutboxBusy(outbox.path, 30),
                                    RetryPolicy(initial_delay=0.05))

    assert not [r for r in caplog.records if r.exc_info]
    assert any('postponed' in r.getMessage() and 'locked' in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


def test_a_pass_ends_early_when_the_daemon_stops(outbox):
    stop_event = threading.Event()

    class StoppingClient(ScriptedClient):
        def send(self, notification):
            stop_event.set()  # SIGTERM arrives during the first request
            return super().send(notification)
    outbox.enqueue(notification(1), 0.0)
    outbox.enqueue(notification(2), 0.0)
    client = StoppingClient(BUSY)
    worker = worker_with(outbox, client)

    worker.run(stop_event)

    assert len(client.sent) == 1
    assert [e.attempts for e in outbox.pending()] == [1, 0]


def test_the_log_names_the_webhook_receiver_with_the_webhook_driver(
        outbox, caplog):
    conf = cfg.ConfigOpts()
    notifier_driver.register_opts(conf)
    delivery.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('driver', 'webhook', group='notifier')
    caplog.set_level(logging.INFO, logger='monitor.notify.delivery')
    outbox.enqueue(notification(1), 0.0)
    worker = delivery.DeliveryWorker.from_conf(
        conf, outbox, ScriptedClient(REFUSED, ACCEPTED))

    worker.run_once(now=0.0)
    worker.run_once(now=10.0)

    lines = [r.getMessage() for r in caplog.records
             if r.name == 'monitor.notify.delivery']
    assert lines[0].startswith('Webhook receiver unavailable')
    assert lines[-1].startswith('Webhook receiver accepted')
    assert not [line for line in lines if 'HA engine' in line]
