import dataclasses
import pickle

import pytest

from monitor.health import record as domain_record
from monitor.health import states

UUID = '6f1f5a7e-2c8e-4d0a-9a57-0d6a3c1b2e11'


def full_record():
    return domain_record.DomainRecord(
        uuid=UUID, name='instance-00000001', state=states.ERROR, misses=2,
        last_ok=1000.5, discovery_since=900.0, ever_healthy=True,
        paused=False, agent_disconnected_at=1001.0,
        failing_since=1005.0)


def test_a_new_record_is_in_discovery_with_nothing_known():
    record = domain_record.DomainRecord(UUID, 'vm')
    assert record.state == states.DISCOVERY
    assert record.misses == 0
    assert record.last_ok is None
    assert record.discovery_since is None
    assert record.ever_healthy is False
    assert record.paused is False
    assert record.agent_disconnected_at is None
    assert record.failing_since is None


def test_record_pickles_for_pickling_backends():
    record = full_record()
    assert pickle.loads(pickle.dumps(record)) == record


def test_dict_form_holds_only_plain_values():
    data = full_record().to_dict()
    assert data['state'] == 'error'
    for value in data.values():
        assert value is None or type(value) in (str, int, float, bool)


def test_dict_round_trip():
    record = full_record()
    assert domain_record.DomainRecord.from_dict(record.to_dict()) == record


def test_from_dict_ignores_unknown_keys_and_defaults_missing_ones():
    data = {'uuid': UUID, 'name': 'vm', 'state': 'healthy',
            'written_by_a_newer_release': 1}
    record = domain_record.DomainRecord.from_dict(data)
    assert record == domain_record.DomainRecord(UUID, 'vm', state='healthy')


def test_field_names_are_the_documented_ones():
    assert [f.name for f in dataclasses.fields(domain_record.DomainRecord)] \
        == ['uuid', 'name', 'state', 'misses', 'last_ok', 'discovery_since',
            'ever_healthy', 'paused', 'agent_disconnected_at',
            'failing_since']


def test_a_record_holds_no_notification_facts():
    # The outbox owns them: a copy here disagrees with it after a crash.
    names = {f.name for f in dataclasses.fields(domain_record.DomainRecord)}
    assert not names & {'notification_id', 'notified_at', 'reported'}


def test_records_stored_by_an_older_release_still_load():
    data = {'uuid': UUID, 'name': 'vm', 'state': 'error', 'misses': 3,
            'last_ok': 1000.5, 'ever_healthy': True,
            'notification_id': 'n-1', 'notified_at': None}
    record = domain_record.DomainRecord.from_dict(data)
    assert record == domain_record.DomainRecord(
        UUID, 'vm', state='error', misses=3, last_ok=1000.5,
        ever_healthy=True)


def test_replace_makes_what_dataclasses_replace_makes_and_leaves_the_original():
    record = domain_record.DomainRecord(UUID, 'vm', state='healthy',
                                        misses=1, last_ok=5.0)
    changes = {'state': 'error', 'misses': 3, 'failing_since': 9.0}

    new = record.replace(**changes)

    assert new == dataclasses.replace(record, **changes)
    assert type(new) is domain_record.DomainRecord
    assert hash(new) == hash(dataclasses.replace(record, **changes))
    assert (record.state, record.misses, record.failing_since) == (
        'healthy', 1, None)


def test_a_replaced_record_is_frozen_too():
    new = domain_record.DomainRecord(UUID, 'vm').replace(misses=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.misses = 3


def test_replace_refuses_a_name_that_is_no_field():
    with pytest.raises(TypeError, match='no field reported'):
        domain_record.DomainRecord(UUID, 'vm').replace(reported=True)
