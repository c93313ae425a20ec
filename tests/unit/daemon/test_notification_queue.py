"""Reading the outbox's facts and queueing a notification."""

import pytest

from monitor.daemon import metrics as metrics_mod
from monitor.daemon import notification_queue
from monitor.health import policy as health_policy
from monitor.health import record as domain_record
from monitor.health import states
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod

UUID = '6f1f5a7e-2c8e-4d0a-9a57-000000000001'
T0 = 1_700_000_000.0


class Wakeup:
    def __init__(self):
        self.sets = 0

    def set(self):
        self.sets += 1


@pytest.fixture
def outbox(tmp_path):
    box = outbox_mod.Outbox(str(tmp_path / 'outbox.sqlite'), max_size=1)
    yield box
    box.close()


def failing():
    return domain_record.DomainRecord(uuid=UUID, name='vm',
                                      state=states.ERROR, misses=3,
                                      failing_since=T0)


def test_a_queued_notification_is_pending_and_wakes_the_delivery(outbox):
    wakeup = Wakeup()
    queue = notification_queue.NotificationQueue(
        outbox, 'compute-1', metrics_mod.MonitorMetrics(), wakeup)
    assert queue.facts() == {}

    queued = queue.queue(failing(), '3 consecutive missed pings', T0 + 5)

    [entry] = outbox.pending()
    assert entry.id == queued and not entry.held
    assert entry.notification.details['reason'] == \
        '3 consecutive missed pings'
    assert wakeup.sets == 1
    assert queue.facts() == {UUID: health_policy.OutboxFacts(
        pending_id=queued)}


def test_the_facts_say_what_the_engine_has(outbox):
    queue = notification_queue.NotificationQueue(
        outbox, 'compute-1', metrics_mod.MonitorMetrics())
    queued = queue.queue(failing(), 'why', T0 + 5)
    outbox.mark_delivered(queued, notification_mod.OutcomeKind.ACCEPTED,
                          T0 + 6)

    facts = queue.facts(UUID)[UUID]

    assert facts.pending_id is None
    assert facts.finished_id == queued and not facts.finished_dead
    assert facts.finished_created_at == T0 + 5


def test_a_full_outbox_queues_nothing_and_says_so(outbox, caplog):
    wakeup = Wakeup()
    queue = notification_queue.NotificationQueue(
        outbox, 'compute-1', metrics_mod.MonitorMetrics(), wakeup)
    outbox.enqueue(notification_mod.Notification.new(
        'other', 'other-vm', 'compute-1', T0), T0)

    assert queue.queue(failing(), 'why', T0 + 5) is None
    assert wakeup.sets == 0
    assert 'Cannot queue the notification' in caplog.text
