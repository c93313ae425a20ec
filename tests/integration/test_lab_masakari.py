"""The lab's masakari-api behaves as the HA engine contract says.

These run against the real masakari-api 22.0.0 from the lab virtualenv.
"""

import datetime
import socket
import uuid

import pytest

from lab.masakari import vm_notification

pytestmark = pytest.mark.integration

HOSTNAME = socket.gethostname()


def _moment(offset_seconds=0):
    # A fixed generated_time with microseconds, so the tests do not depend
    # on the clock and the duplicate window is exact.
    return (datetime.datetime(2030, 1, 2, 3, 4, 5, 678901,
                              tzinfo=datetime.UTC)
            + datetime.timedelta(seconds=offset_seconds))


def _as_stored(moment):
    # Masakari keeps generated_time as naive UTC with microseconds.
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%f')


def test_vm_notification_is_accepted_and_stored_as_new(masakari):
    instance_uuid = str(uuid.uuid4())
    moment = _moment()
    assert masakari.notifications() == []

    response = masakari.post_notification(
        vm_notification(HOSTNAME, instance_uuid, moment.isoformat()))

    assert response.status_code == 202
    [stored] = masakari.notifications()
    assert stored['notification_uuid'] == (
        response.json()['notification']['notification_uuid'])
    assert stored['type'] == 'VM'
    assert stored['payload'] == {
        'event': 'QEMU_GUEST_AGENT_ERROR',
        'instance_uuid': instance_uuid,
        'vir_domain_event': 'STOPPED_FAILED',
    }
    assert stored['generated_time'] == _as_stored(moment)
    # No engine reads the fake transport, so nothing ever processes it.
    assert stored['status'] == 'new'


def test_generated_time_with_an_offset_is_stored_in_utc(masakari):
    local = datetime.datetime(2030, 1, 2, 5, 4, 5, 678901,
                              tzinfo=datetime.timezone(
                                  datetime.timedelta(hours=2)))

    response = masakari.post_notification(
        vm_notification(HOSTNAME, str(uuid.uuid4()), local.isoformat()))

    assert response.status_code == 202
    [stored] = masakari.notifications()
    assert stored['generated_time'] == _as_stored(_moment())


def test_same_notification_again_is_a_duplicate(masakari):
    notification = vm_notification(HOSTNAME, str(uuid.uuid4()),
                                   _moment().isoformat())

    first = masakari.post_notification(notification)
    again = masakari.post_notification(notification)

    assert first.status_code == 202
    assert again.status_code == 409
    assert 'duplicate' in again.json()['conflictingRequest']['message']
    assert len(masakari.notifications()) == 1


def test_same_payload_within_180_seconds_is_a_duplicate(masakari):
    instance_uuid = str(uuid.uuid4())

    first = masakari.post_notification(vm_notification(
        HOSTNAME, instance_uuid, _moment().isoformat()))
    later = masakari.post_notification(vm_notification(
        HOSTNAME, instance_uuid, _moment(179).isoformat()))

    assert first.status_code == 202
    assert later.status_code == 409


def test_same_payload_after_180_seconds_is_a_new_notification(masakari):
    instance_uuid = str(uuid.uuid4())

    first = masakari.post_notification(vm_notification(
        HOSTNAME, instance_uuid, _moment().isoformat()))
    later = masakari.post_notification(vm_notification(
        HOSTNAME, instance_uuid, _moment(181).isoformat()))

    assert first.status_code == 202
    assert later.status_code == 202
    assert len(masakari.notifications()) == 2


def test_another_guest_on_the_same_host_is_not_a_duplicate(masakari):
    moment = _moment().isoformat()

    first = masakari.post_notification(
        vm_notification(HOSTNAME, str(uuid.uuid4()), moment))
    other = masakari.post_notification(
        vm_notification(HOSTNAME, str(uuid.uuid4()), moment))

    assert (first.status_code, other.status_code) == (202, 202)


def test_unknown_hostname_is_a_bad_request(masakari):
    response = masakari.post_notification(vm_notification(
        'no-such-host', str(uuid.uuid4()), _moment().isoformat()))

    assert response.status_code == 400
    assert 'no-such-host' in response.json()['badRequest']['message']
    assert masakari.notifications() == []


def test_payload_values_must_be_strings(masakari):
    notification = vm_notification(HOSTNAME, str(uuid.uuid4()),
                                   _moment().isoformat())
    notification['payload']['attempt'] = 1

    response = masakari.post_notification(notification)

    assert response.status_code == 400
    assert masakari.notifications() == []


def test_host_on_maintenance_gets_a_conflict(masakari):
    masakari.set_maintenance(HOSTNAME)

    response = masakari.post_notification(vm_notification(
        HOSTNAME, str(uuid.uuid4()), _moment().isoformat()))

    assert response.status_code == 409
    assert 'maintenance' in response.json()['conflictingRequest']['message']
    assert masakari.notifications() == []


def test_stopped_server_refuses_connections_until_started_again(masakari):
    endpoint = masakari.endpoint
    notification = vm_notification(HOSTNAME, str(uuid.uuid4()),
                                   _moment().isoformat())
    assert masakari.post_notification(notification).status_code == 202

    masakari.stop()

    assert not masakari.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', masakari.port), timeout=5)

    masakari.start()

    assert masakari.endpoint == endpoint
    [stored] = masakari.notifications()
    assert stored['payload'] == notification['payload']
    assert masakari.post_notification(notification).status_code == 409


def test_restart_keeps_the_port_and_the_notifications(masakari):
    port = masakari.port
    response = masakari.post_notification(vm_notification(
        HOSTNAME, str(uuid.uuid4()), _moment().isoformat()))

    masakari.restart()

    assert masakari.port == port
    assert [item['notification_uuid'] for item in masakari.notifications()] \
        == [response.json()['notification']['notification_uuid']]
