"""The notification value: what the engine's body holds, and the incident
facts that travel with it but never reach the engine."""

from monitor.health import instant_failures
from monitor.notify import notification as notification_mod

DETAILS = {'consecutive_misses': 3,
           'recovery': {'action': 'reset', 'result': 'done', 'detail': ''},
           'evidence': []}


def test_the_engine_body_never_carries_the_details():
    plain = notification_mod.Notification.new(
        '6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1', 'vm-1', 'compute-1',
        1700000000.0)
    detailed = notification_mod.Notification(
        **dict(plain.to_dict(), details=DETAILS))

    assert detailed.body() == plain.body()
    assert set(detailed.body()['notification']['payload']) == {
        'event', 'instance_uuid', 'vir_domain_event'}


def test_a_notification_with_details_round_trips_as_a_dict():
    n = notification_mod.Notification.new(
        '6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1', 'vm-1', 'compute-1',
        1700000000.0, details=DETAILS)

    assert notification_mod.Notification.from_dict(n.to_dict()) == n
    # Still a value: usable in sets and as a key.
    assert len({n, n}) == 1


def test_a_qemu_that_ended_has_masakari_instancemonitors_payload():
    """masakari-api's duplicate check compares payloads whole: ours must be
    exactly what masakari-instancemonitor 22.0.0 sends (its callback's
    'payload': event, instance_uuid, vir_domain_event)."""
    n = notification_mod.Notification.new(
        '6f1f5a7e-2c8e-4d0a-9a57-000000000001', 'instance-1', 'compute-1',
        1_700_000_000.0, *instant_failures.QEMU_ENDED)

    assert n.body() == {'notification': {
        'type': 'VM',
        'hostname': 'compute-1',
        'generated_time': '2023-11-14T22:13:20Z',
        'payload': {
            'event': 'LIFECYCLE',
            'instance_uuid': '6f1f5a7e-2c8e-4d0a-9a57-000000000001',
            'vir_domain_event': 'STOPPED_FAILED',
        },
    }}


def test_a_notification_is_a_failure_unless_it_says_otherwise():
    n = notification_mod.Notification.new('u', 'vm', 'h', 1700000000.0)
    values = n.to_dict()
    del values['kind']  # written before kinds existed

    assert n.kind == notification_mod.FAILURE
    assert notification_mod.Notification.from_dict(values) == n


def test_the_end_of_a_failure_has_one_id_whoever_makes_it():
    failure = notification_mod.Notification.new('u', 'vm', 'h', 1700000000.0)

    first = notification_mod.Notification.resolving(failure, 1700000060.0)
    again = notification_mod.Notification.resolving(failure, 1700000099.0)

    assert first.kind == notification_mod.RESOLVED
    assert first.id == again.id != failure.id
    assert (first.instance_uuid, first.domain_name, first.hostname) == (
        'u', 'vm', 'h')
    assert first.generated_time == '2023-11-14T22:14:20Z'
