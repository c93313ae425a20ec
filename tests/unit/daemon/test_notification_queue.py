"""Reading the outbox's facts and queueing a notification; a pending
notification holds back its own incident only, so a receiver that is down
never stops self-recovery."""

import logging
import time
import types

import eventlet
import libvirt
import pytest

from monitor.conf import loading
from monitor.daemon import metrics as metrics_mod
from monitor.daemon import notification_queue
from monitor.daemon import service as service_mod
from monitor.health import policy as health_policy
from monitor.health import probes
from monitor.health import record as domain_record
from monitor.health import states
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.virt import events as libvirt_events
from monitor.virt import guest_ping
from tests.unit import http_engine
from tests.unit.virt import libvirt_node

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


def test_an_application_failure_carries_its_details_and_is_counted(
        outbox):
    metrics = metrics_mod.MonitorMetrics()
    queue = notification_queue.NotificationQueue(outbox, 'compute-1',
                                                 metrics)
    record = domain_record.DomainRecord(uuid=UUID, name='vm',
                                        state=states.HEALTHY)

    queue.queue(record, 'application probe db failed', T0, 'none',
                shape=probes.APPLICATION,
                extra_details={'incident': 'application'})

    [entry] = outbox.pending()
    assert entry.notification.details['incident'] == 'application'
    assert entry.notification.event == 'APPLICATION_ERROR'
    assert metrics.registry.get_sample_value(
        metrics_mod.PREFIX + 'guest_failures_total',
        {'reason': 'probe'}) == 1


def delivered(outbox):
    """A queue, and the id of the notification it queued at T0 + 5 and
    the engine took at T0 + 6."""
    queue = notification_queue.NotificationQueue(
        outbox, 'compute-1', metrics_mod.MonitorMetrics())
    queued = queue.queue(failing(), 'why', T0 + 5)
    outbox.mark_delivered(queued, notification_mod.OutcomeKind.ACCEPTED,
                          T0 + 6)
    return queue, queued


def test_the_facts_say_what_the_engine_has(outbox):
    queue, queued = delivered(outbox)

    facts = queue.facts(UUID)[UUID]

    assert facts.pending_id is None
    assert facts.finished_id == queued and not facts.finished_dead
    assert facts.finished_created_at == T0 + 5


def test_a_rounds_facts_are_its_own_to_change(outbox):
    queue, queued = delivered(outbox)
    first = queue.facts()

    first[UUID] = first[UUID]._replace(pending_id='queued-meanwhile')
    first['another-domain'] = health_policy.NOTHING_QUEUED

    assert queue.facts() == {UUID: health_policy.OutboxFacts(
        finished_id=queued, finished_created_at=T0 + 5)}


def test_the_facts_are_built_again_only_when_the_outbox_changed(
        outbox, monkeypatch):
    queue = notification_queue.NotificationQueue(
        outbox, 'compute-1', metrics_mod.MonitorMetrics())
    built = []
    read = outbox.latest_states
    monkeypatch.setattr(outbox, 'latest_states',
                        lambda *args: built.append(len(read(*args)))
                        or read(*args))
    queued = queue.queue(failing(), 'why', T0 + 5)

    for _ in range(3):
        assert queue.facts()[UUID].pending_id == queued
    outbox.mark_delivered(queued, notification_mod.OutcomeKind.ACCEPTED,
                          T0 + 6)
    for _ in range(3):
        assert queue.facts()[UUID].finished_id == queued

    assert built == [1, 1]


def test_what_the_queue_keeps_of_a_notification_ends_with_its_delivery(
        outbox):
    queue = notification_queue.NotificationQueue(
        outbox, 'compute-1', metrics_mod.MonitorMetrics())
    queued = queue.queue(failing(), 'why', T0 + 5)
    queue.facts()
    assert set(queue._queued) == {UUID}

    outbox.mark_delivered(queued, notification_mod.OutcomeKind.ACCEPTED,
                          T0 + 6)
    queue.facts()

    assert queue._queued == {}
    # Requeued by an operator, it is of the incident it was created in.
    outbox.mark_dead(queue.queue(failing(), 'again', T0 + 7), T0 + 8, 'no')
    [dead] = outbox.dead_letters()
    queue.facts()
    outbox.requeue_dead(dead.id, T0 + 9)
    assert queue.facts(record_of=lambda uuid: failing()) == {
        UUID: health_policy.OutboxFacts(pending_id=dead.id, finished_id=queued,
                                        finished_created_at=T0 + 5)}


def test_a_pending_entry_left_out_for_one_caller_is_there_for_the_next(
        outbox):
    queue = notification_queue.NotificationQueue(
        outbox, 'compute-1', metrics_mod.MonitorMetrics())
    queued = queue.queue(failing(), 'why', T0 + 5)
    # The guest answered and failed again: a new incident, not notified.
    later = failing().replace(last_ok=T0 + 20, failing_since=T0 + 30)

    assert queue.facts(record_of=lambda uuid: later) == {
        UUID: health_policy.NOTHING_QUEUED}
    assert queue.facts() == {UUID: health_policy.OutboxFacts(
        pending_id=queued)}
    assert queue.facts(record_of=lambda uuid: failing()) == {
        UUID: health_policy.OutboxFacts(pending_id=queued)}


def test_a_full_outbox_queues_nothing_and_says_so(outbox, caplog):
    wakeup = Wakeup()
    queue = notification_queue.NotificationQueue(
        outbox, 'compute-1', metrics_mod.MonitorMetrics(), wakeup)
    outbox.enqueue(notification_mod.Notification.new(
        'other', 'other-vm', 'compute-1', T0), T0)

    assert queue.queue(failing(), 'why', T0 + 5) is None
    assert wakeup.sets == 0
    assert 'Cannot queue the notification' in caplog.text


# -- a receiver that is down does not stop self-recovery ------------------------
#
# The daemon as the service wires it, on libvirt's test driver with the
# guest agent's command replaced, notifying a webhook receiver on
# 127.0.0.1. The daemon's clock (the tracker's, the recovery step's and
# the pings' start times) runs ahead of the wall clock by what the test
# adds, so that the discovery timeout passes without waiting for it.

DEAD_UUID = 'cccccccc-0000-4000-8000-000000000001'
DEAD_NODE = f"""<node>
  <domain type='test'>
    <name>stays-dead</name>
    <uuid>{DEAD_UUID}</uuid>
    <memory>1024</memory>
    <os><type>hvm</type></os>
    <devices>
      <channel type='unix'>
        <source mode='bind' path='/run/stays-dead.sock'/>
        <target type='virtio' name='org.qemu.guest_agent.0'/>
      </channel>
    </devices>
  </domain>
</node>
"""


class Guest:
    """The agent's command of a guest whose agent answers until it
    dies, and the resets libvirt carried out on it."""

    def __init__(self):
        self.alive = True
        self.resets = []

    def agent_command(self, dom, command, timeout, flags):
        if self.alive:
            return '{"return": {}}'
        raise libvirt_node.libvirt_error(
            libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_FROM_QEMU,
            'Guest agent is not responding: QEMU guest agent is not '
            'connected')


class Receiver:
    """A webhook receiver that answers 503 while down."""

    def __init__(self):
        self.up = False
        # The documents it accepted, in order.
        self.accepted = []
        self.server = http_engine.HTTPServer(self.respond)

    def respond(self, request):
        if not self.up:
            return http_engine.Response(503, b'down for maintenance')
        self.accepted.append(request.json())
        return http_engine.Response(202, b'')


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.close()


@pytest.fixture
def daemon(tmp_path, receiver, monkeypatch):
    """(service, guest, clock skew) of a monitor that resets a failed
    guest, at most 3 times an hour, and reports a guest whose agent does
    not come back within 5 s of the reset."""
    libvirt_events.start_event_loop()
    node = tmp_path / 'node.xml'
    node.write_text(DEAD_NODE)
    conf_file = tmp_path / 'monitor.conf'
    conf_file.write_text(f"""
[DEFAULT]
host = compute-1
state_path = {tmp_path / 'state'}

[libvirt]
connection_uri = test://{node}

[cache]
backend = dogpile.cache.memory

[monitor]
interval = 1
ping_timeout = 1
failure_threshold = 1
discovery_timeout = 5
corroborate_with_io = false

[recovery]
action = reset
max_actions = 3

[notifier]
driver = webhook

[webhook]
url = {receiver.server.url}/hook
secret = whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=

[outbox]
retry_initial_delay = 0.1
retry_max_delay = 1
""")
    conf = loading.load(['--config-file', str(conf_file)],
                        default_config_files=[])
    skew = [0.0]

    def clock():
        return time.time() + skew[0]

    guest = Guest()
    monkeypatch.setattr(guest_ping.libvirt_qemu, 'qemuAgentCommand',
                        guest.agent_command)
    monkeypatch.setattr(guest_ping, 'time', types.SimpleNamespace(
        time=clock, monotonic=time.monotonic))
    real_reset = libvirt.virDomain.reset

    def reset(dom, flags=0):
        guest.resets.append(dom.UUIDString())
        return real_reset(dom, flags)

    monkeypatch.setattr(libvirt.virDomain, 'reset', reset)
    service = service_mod.MonitorService(conf, clock=clock)
    # The recovery step tells the tracker when it ended on the same clock.
    monkeypatch.setattr(service.recovery, '_clock', clock)
    yield service, guest, skew
    service.close()


def sweep_and_recover(service):
    """One round, then whatever recovery it started, to its end."""
    service.scheduler.sweep()
    deadline = time.monotonic() + 10
    while service.outbox.held():
        assert time.monotonic() < deadline, 'the recovery never ended'
        eventlet.sleep(0.01)
    # The tracker is told right after the release.
    eventlet.sleep(0)


def deliver_all(service):
    deadline = time.monotonic() + 10
    while service.outbox.pending():
        assert time.monotonic() < deadline, 'never all delivered'
        service.delivery.run_once(now=time.time() + 3600)


@pytest.mark.parametrize('receiver_up', [True, False], ids=['up', 'down'])
def test_a_guest_that_stays_dead_is_reset_within_its_budget_whatever_the_receiver(
        daemon, receiver, caplog, receiver_up):
    service, guest, skew = daemon
    caplog.set_level(logging.INFO, logger='monitor')
    receiver.up = receiver_up
    assert service.scheduler.ensure_connected() == 0
    sweep_and_recover(service)
    assert service.store.get(DEAD_UUID).state == states.HEALTHY

    guest.alive = False
    for _ in range(6):
        sweep_and_recover(service)
        service.delivery.run_once()
        # Past the discovery timeout of the guest reset last.
        skew[0] += 6

    assert guest.resets == [DEAD_UUID] * 3
    alarms = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith('ALARM: domain stays-dead')]
    assert len(alarms) == 1 and 'budget exhausted' in alarms[0]
    results = [e.notification.details['recovery']['result']
               for e in service.outbox.pending()]
    if receiver_up:
        assert results == []
    else:
        assert results == ['done', 'done', 'done', 'budget_exhausted']

    receiver.up = True
    deliver_all(service)

    # Each one once, in order.
    assert [p['data']['recovery']['result'] for p in receiver.accepted] == [
        'done', 'done', 'done', 'budget_exhausted']
    assert len({p['id'] for p in receiver.accepted}) == 4
    sweep_and_recover(service)
    assert service.store.get(DEAD_UUID).state == states.REPORTED
    assert guest.resets == [DEAD_UUID] * 3
