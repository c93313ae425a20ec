"""The service wiring: libvirt events and connection drops reach the right
component. The service is built from a real configuration on libvirt's
daemon-less test driver and is never start()ed; its steps are driven
directly."""

import logging

import eventlet
import libvirt
import pytest

from monitor.conf import loading
from monitor.daemon import service as service_mod
from monitor.health import lifecycle
from monitor.health import record as domain_record
from monitor.health import states
from monitor.health.ping_outcome import Outcome
from monitor.health.ping_outcome import PingResult
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod
from monitor.virt import events as libvirt_events
from monitor.virt import metadata as domain_metadata

AGENT_UUID = 'bbbbbbbb-0000-4000-8000-000000000001'
PLAIN_UUID = 'bbbbbbbb-0000-4000-8000-000000000002'
# A Standard Webhooks signing secret, the form [webhook] secret takes.
WEBHOOK_SECRET = 'whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='

NODE = f"""<node>
  <domain type='test'>
    <name>with-agent</name>
    <uuid>{AGENT_UUID}</uuid>
    <memory>1024</memory>
    <os><type>hvm</type></os>
    <devices>
      <channel type='unix'>
        <source mode='bind' path='/run/with-agent.sock'/>
        <target type='virtio' name='org.qemu.guest_agent.0'/>
      </channel>
    </devices>
  </domain>
  <domain type='test'>
    <name>plain</name>
    <uuid>{PLAIN_UUID}</uuid>
    <memory>1024</memory>
    <os><type>hvm</type></os>
  </domain>
</node>
"""


@pytest.fixture(scope='module', autouse=True)
def event_loop():
    libvirt_events.start_event_loop()


@pytest.fixture
def service(tmp_path):
    node = tmp_path / 'node.xml'
    node.write_text(NODE)
    conf_file = tmp_path / 'monitor.conf'
    conf_file.write_text(f"""
[DEFAULT]
host = compute-1
state_path = {tmp_path / 'state'}

[libvirt]
connection_uri = test://{node}

[cache]
backend = dogpile.cache.memory

[notifier]
endpoint = http://127.0.0.1:9/v1
auth_type = none
""")
    conf = loading.load(['--config-file', str(conf_file)],
                       default_config_files=[])
    service = service_mod.MonitorService(conf)
    yield service
    service.close()


def connect(service):
    assert service.scheduler.ensure_connected() == 0
    assert service.scheduler.connected


def watch_agent_domain(service):
    service.tracker.reconcile(service.host.list_domains())
    assert service.store.get(AGENT_UUID).state == states.DISCOVERY


def domain_event(kind, code=None, detail=None):
    return lifecycle.DomainEvent(AGENT_UUID, 'with-agent', kind, code,
                                 detail, 0.0)


def test_a_closed_connection_goes_to_the_scheduler(service, caplog):
    connect(service)

    service.dispatch(libvirt_events.ConnectionClosed(
        libvirt.VIR_CONNECT_CLOSE_REASON_EOF, 0.0))

    assert not service.scheduler.connected
    assert service.host.connection is None
    assert any('Lost the libvirt connection' in r.getMessage()
               and 'reason %d' % libvirt.VIR_CONNECT_CLOSE_REASON_EOF
               in r.getMessage() for r in caplog.records)
    # The next step of the loop reconnects.
    connect(service)


def test_the_close_of_a_replaced_connection_is_ignored(service):
    connect(service)
    old = object()

    service.dispatch(libvirt_events.ConnectionClosed(
        libvirt.VIR_CONNECT_CLOSE_REASON_EOF, 0.0, old))

    assert service.scheduler.connected
    service.dispatch(libvirt_events.ConnectionClosed(
        libvirt.VIR_CONNECT_CLOSE_REASON_EOF, 0.0, service.host.connection))
    assert not service.scheduler.connected


def test_domain_events_go_to_the_tracker(service):
    connect(service)
    watch_agent_domain(service)

    service.dispatch(domain_event(lifecycle.EventKind.LIFECYCLE,
                                  lifecycle.LifecycleEvent.SUSPENDED))
    assert service.store.get(AGENT_UUID).paused

    service.dispatch(domain_event(lifecycle.EventKind.LIFECYCLE,
                                  lifecycle.LifecycleEvent.STOPPED))
    assert service.store.get(AGENT_UUID) is None
    assert service.scheduler.connected


def test_connecting_gives_answering_domains_the_disconnect_grace(service):
    service.store.put(domain_record.DomainRecord(
        AGENT_UUID, 'with-agent', state=states.HEALTHY, ever_healthy=True))

    connect(service)

    assert service.store.get(AGENT_UUID).agent_disconnected_at is not None


def test_refused_event_subscriptions_do_not_stop_monitoring(
        service, monkeypatch, caplog):
    def refuse(conn, dom, event_id, callback, opaque):
        raise libvirt.libvirtError('Cannot write data: Broken pipe')

    monkeypatch.setattr(libvirt.virConnect, 'domainEventRegisterAny',
                        refuse)
    service.store.put(domain_record.DomainRecord(
        AGENT_UUID, 'with-agent', state=states.HEALTHY, ever_healthy=True))

    connect(service)

    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and 'Broken pipe' in warnings[0]
    assert service.store.get(AGENT_UUID).agent_disconnected_at is not None
    assert service.scheduler.sweep() is not None


def test_real_libvirt_events_flow_through_the_dispatch_loop(service):
    connect(service)
    watch_agent_domain(service)
    loop = eventlet.spawn(service._dispatch_loop)

    service.host.connection.lookupByUUIDString(AGENT_UUID).suspend()
    with eventlet.Timeout(10):
        while not service.store.get(AGENT_UUID).paused:
            eventlet.sleep(0.01)

    service.host.connection.lookupByUUIDString(AGENT_UUID).destroy()
    with eventlet.Timeout(10):
        while service.store.get(AGENT_UUID) is not None:
            eventlet.sleep(0.01)

    service.stop()
    with eventlet.Timeout(10):
        loop.wait()


def test_a_driver_without_agent_commands_monitors_nothing_quietly(service,
                                                                  caplog):
    caplog.set_level(logging.INFO, logger='monitor')
    connect(service)

    for _ in range(3):
        stats = service.scheduler.sweep()

    assert stats.listed == 2
    assert stats.pinged == 0
    assert service.store.all() == []
    about = [r.getMessage() for r in caplog.records
             if r.name.startswith('monitor.daemon.')]
    assert len([line for line in about if PLAIN_UUID in line]) == 1
    assert len([line for line in about if AGENT_UUID in line
                and 'not monitored' in line]) == 1


def test_a_queued_notification_wakes_the_delivery_worker(service):
    # Wired at construction through one shared event: nothing is patched
    # in afterwards, and the worker knows nothing of the tracker.
    service.store.put(domain_record.DomainRecord(
        AGENT_UUID, 'with-agent', state=states.HEALTHY, ever_healthy=True,
        last_ok=1.0))
    wakeup = service.delivery._wake_event
    assert not wakeup.is_set()

    for n in range(3):
        service.tracker.apply_round(
            {AGENT_UUID: PingResult(Outcome.MISSED, 'test', 10.0 + n, 1.0)},
            now=11.0 + n)

    assert [e.notification.instance_uuid
            for e in service.outbox.pending()] == [AGENT_UUID]
    assert wakeup.is_set()


def test_a_silent_agent_is_corroborated_with_io_by_default(service):
    assert service.tracker.silent_periods.enabled
    assert service.conf.monitor.io_noise_disk_requests == \
        service.tracker.silent_periods.floors.disk_requests
    assert service.scheduler.counter_snapshots.timeout == \
        service.conf.monitor.ping_timeout


def build_service(tmp_path, **sections):
    node = tmp_path / 'node.xml'
    node.write_text(NODE)
    text = f"""
[DEFAULT]
host = compute-1
state_path = {tmp_path / 'state'}

[libvirt]
connection_uri = test://{node}
"""
    for section, values in sections.items():
        text += '\n[%s]\n' % section
        text += ''.join('%s = %s\n' % item for item in values.items())
    conf_file = tmp_path / 'monitor.conf'
    conf_file.write_text(text)
    conf = loading.load(['--config-file', str(conf_file)],
                       default_config_files=[])
    return service_mod.MonitorService(conf)


@pytest.mark.parametrize('driver, client_type', [
    ('webhook', 'WebhookClient'), ('none', 'NoNotifier')])
def test_the_notifier_driver_chooses_the_delivery_client(tmp_path, driver,
                                                         client_type):
    service = build_service(
        tmp_path, notifier={'driver': driver},
        webhook={'url': 'http://127.0.0.1:9/hook', 'secret': WEBHOOK_SECRET})
    try:
        assert type(service.client).__name__ == client_type
        # One delivery worker for every driver.
        assert service.delivery._client is service.client
    finally:
        service.close()


def test_a_metadata_change_applies_without_waiting_for_a_listing(service):
    connect(service)
    watch_agent_domain(service)
    service.host.connection.lookupByUUIDString(AGENT_UUID).setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, '<monitor enabled="no"/>',
        domain_metadata.KEY, domain_metadata.NAMESPACE,
        libvirt.VIR_DOMAIN_AFFECT_LIVE)

    service.dispatch(libvirt_events.MetadataChanged(AGENT_UUID, 'with-agent',
                                                    0.0))

    assert service.store.get(AGENT_UUID) is None
    assert not service.tracker.settings.of(AGENT_UUID).enabled
    # The next listing agrees: the domain stays unmonitored.
    assert service.tracker.reconcile(service.host.list_domains()) == []


def set_threshold(service, threshold):
    service.host.connection.lookupByUUIDString(AGENT_UUID).setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        '<monitor failure_threshold="%d"/>' % threshold,
        domain_metadata.KEY, domain_metadata.NAMESPACE,
        libvirt.VIR_DOMAIN_AFFECT_LIVE)


def test_a_change_made_while_libvirt_was_down_applies_once_it_is_back(
        service, tmp_path):
    connect(service)
    watch_agent_domain(service)
    assert service.tracker.settings.threshold_of(AGENT_UUID) == 3
    service.host.connection_lost('EOF')
    # Changed while nobody could see it: the test driver reads its node
    # file again on the next connection.
    (tmp_path / 'node.xml').write_text(NODE.replace(
        '<memory>1024</memory>',
        '<memory>1024</memory><metadata><ghm:monitor xmlns:ghm="%s" '
        'failure_threshold="7"/></metadata>' % domain_metadata.NAMESPACE,
        1))

    connect(service)
    service.tracker.reconcile(service.host.list_domains())

    assert service.tracker.settings.threshold_of(AGENT_UUID) == 7


def test_the_listing_after_a_lost_metadata_event_reads_the_settings(service):
    connect(service)
    watch_agent_domain(service)
    set_threshold(service, 7)

    service.dispatch(libvirt_events.EventLost('metadata', 'RuntimeError: x'))
    service.tracker.reconcile(service.host.list_domains())

    assert service.tracker.settings.threshold_of(AGENT_UUID) == 7


def test_a_listing_read_before_a_change_does_not_undo_it(service):
    connect(service)
    listed_before = service.host.list_domains()
    set_threshold(service, 7)
    service.dispatch(libvirt_events.MetadataChanged(AGENT_UUID, 'with-agent',
                                                    0.0))

    service.tracker.reconcile(listed_before)

    assert service.tracker.settings.threshold_of(AGENT_UUID) == 7
    # Nor does a later listing: the change is the newest read.
    service.tracker.reconcile(service.host.list_domains())
    assert service.tracker.settings.threshold_of(AGENT_UUID) == 7


def test_a_notification_held_by_a_stopped_daemon_is_released_at_start(
        tmp_path):
    n = notification_mod.Notification.new(
        AGENT_UUID, 'with-agent', 'compute-1', 1700000000.0,
        details={'consecutive_misses': 3,
                 'recovery': {'action': 'reset', 'result': 'in_progress',
                              'detail': ''}, 'evidence': []})
    box = outbox_mod.Outbox(str(tmp_path / 'state' / 'outbox.sqlite'), 10)
    box.enqueue(n, 1700000000.0, held=True)
    box.close()

    service = build_service(tmp_path, notifier={'driver': 'none'})
    try:
        entry = service.outbox.get(n.id)
    finally:
        service.close()
    assert not entry.held
    assert entry.notification.details['recovery']['result'] == 'interrupted'
    assert entry.status in (outbox_mod.PENDING, outbox_mod.DELIVERED)


def test_a_recovery_past_its_bound_stops_the_watchdog_and_says_why(
        service, monkeypatch, caplog):
    from monitor.daemon import systemd_notify

    class Notifier:
        enabled = True
        beats = 0

        def watchdog(self):
            self.beats += 1
            return True

    keeper = systemd_notify.WatchdogKeeper(
        Notifier(), 30.0, service.loop_alive,
        why_not=service.why_not_alive)
    assert service.loop_alive() and keeper.beat()
    late = ('the recovery of domain vm (u) has held its slot for 181 s, '
            'past its bound of 180 s')
    monkeypatch.setattr(service.recovery, 'overdue_reason', lambda: late)

    assert not service.loop_alive()
    assert not keeper.beat()
    [said] = [r.getMessage() for r in caplog.records
              if r.levelno == logging.ERROR]
    assert late in said and 'systemd will restart' in said


GONE_UUID = 'bbbbbbbb-0000-4000-8000-00000000ffff'


def delivered_failure(service, uuid, name, at=1000.0):
    failure = notification_mod.Notification.new(
        uuid, name, 'compute-1', at,
        details={'reason': 'guest kernel panicked'})
    service.outbox.enqueue(failure, at)
    service.outbox.mark_delivered(failure.id, 'ACCEPTED', at + 1)


def test_a_failed_domain_undefined_unseen_is_over_once_libvirt_says_so(
        tmp_path, monkeypatch):
    # Undefined while the daemon was stopped, or libvirtd down: no event
    # tells it; libvirt is asked, once per connection.
    service = build_service(
        tmp_path, notifier={'driver': 'webhook'},
        webhook={'url': 'http://127.0.0.1:9/hook', 'secret': WEBHOOK_SECRET})
    try:
        delivered_failure(service, GONE_UUID, 'deleted')
        delivered_failure(service, PLAIN_UUID, 'plain')
        # Not connected: nobody can tell yet.
        assert service.resolutions.check(2000.0) == []

        connect(service)
        [gone] = service.resolutions.check(2010.0)
        assert gone.instance_uuid == GONE_UUID
        assert gone.details['reason'] == 'domain undefined'

        # Undefined while libvirt could not be seen: a reconnect asks
        # again.
        monkeypatch.setattr(service.host, 'is_defined',
                            lambda uuid: False)
        assert service.resolutions.check(2020.0) == []
        service.host.connection_lost('libvirtd restarted')
        connect(service)
        [plain] = service.resolutions.check(2030.0)
        assert plain.instance_uuid == PLAIN_UUID
    finally:
        service.close()
