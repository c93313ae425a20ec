"""The JSON Schema of the webhook event's data
(docs/schemas/webhook-event-data.schema.json) against the bodies the
client really produces, and the example of docs/webhook.md against both
the schema and the CloudEvents SDK."""

import dataclasses
import json
import os
import re

import jsonschema
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from monitor.health import recovery_policy as recovery
from monitor.notify import notification as notification_mod
from monitor.notify import webhook
from monitor.store import evidence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SCHEMA_PATH = os.path.join(ROOT, 'docs', 'schemas',
                           'webhook-event-data.schema.json')
DOC_PATH = os.path.join(ROOT, 'docs', 'webhook.md')

REFS = [
    evidence.EvidenceRef(
        evidence.CONSOLE,
        '/var/lib/guest-health-monitor/evidence/'
        '20261206T101500Z-000001-6f1f4b4e-console.log',
        4096, 'ab' * 32, 'text/plain'),
    evidence.EvidenceRef(
        evidence.SCREENSHOT,
        '/var/lib/guest-health-monitor/evidence/'
        '20261206T101500Z-000002-6f1f4b4e-screenshot.png',
        20480, 'cd' * 32, 'image/png'),
]


@pytest.fixture(scope='module')
def validator():
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.FormatChecker())


def failure(details):
    return notification_mod.Notification.new(
        instance_uuid='6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1',
        domain_name='appliance-1', hostname='hv-1', at=1700000000.0,
        details=details)


def sent_data(notification):
    """The event data as it goes on the wire."""
    return json.loads(webhook.encode(webhook.cloud_event(notification)))[
        'data']


SENT_RESULTS = [r for r in recovery.RESULTS
                if r != recovery.RESULT_IN_PROGRESS]


@pytest.mark.parametrize('result', SENT_RESULTS)
@pytest.mark.parametrize('refs', [[], REFS], ids=['no-evidence', 'evidence'])
def test_every_body_the_client_sends_is_valid(validator, result, refs):
    details = recovery.notification_details(
        3, recovery.RecoveryReport(recovery.RESET, result, 'reset'), refs,
        reason='3 consecutive missed pings (failure threshold 3)')

    validator.validate(sent_data(failure(details)))


def test_a_body_without_incident_facts_is_valid(validator):
    validator.validate(sent_data(failure(None)))


def test_the_end_of_a_failure_is_valid(validator):
    failed = failure(None)
    ended = notification_mod.Notification.resolving(
        failed, 1700000100.0,
        details={'resolves': failed.id, 'reason': 'guest agent answered again',
                 'failure': '3 consecutive missed pings'})

    validator.validate(sent_data(ended))


def test_a_qemu_ended_body_is_valid(validator):
    n = dataclasses.replace(
        failure(None), event=notification_mod.LIFECYCLE,
        vir_domain_event=notification_mod.STOPPED_FAILED)

    validator.validate(sent_data(n))


def test_the_schema_names_every_field_the_client_sends(validator):
    assert set(sent_data(failure(None))) == \
        set(validator.schema['properties']) == \
        set(validator.schema['required'])


def test_the_schema_knows_every_recovery_action_and_result(validator):
    recovery_object = validator.schema['properties']['recovery']['oneOf'][1]
    properties = recovery_object['properties']

    assert set(properties['result']['enum']) == set(SENT_RESULTS)
    assert set(properties['action']['enum']) == \
        set(recovery.ACTIONS) | {recovery.RESUME, recovery.LADDER}
    assert set(properties['steps']['items']['properties']['action'][
        'enum']) == set(recovery.LADDER_STEPS)


def test_a_body_with_a_wrong_field_is_invalid(validator):
    data = sent_data(failure(None))
    data['consecutive_misses'] = 'three'

    with pytest.raises(jsonschema.ValidationError):
        validator.validate(data)


def doc_example():
    with open(DOC_PATH) as f:
        text = f.read()
    return re.search(r'```json\n(.*?)```', text, re.S).group(1)


def test_the_documented_example_is_a_valid_event(validator):
    text = doc_example()

    event = JSONFormat().read(CloudEvent, text.encode())

    assert event.get_type() in webhook.TYPES
    assert event.get_source().startswith(webhook.SOURCE_PREFIX)
    validator.validate(event.get_data())
    assert set(json.loads(text)) == set(webhook.cloud_event(failure(None)))
