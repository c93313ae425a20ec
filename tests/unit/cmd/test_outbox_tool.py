"""guest-health-monitor-outbox: operators see what waits for the HA engine
and what it refused, and requeue refused notifications."""

import contextlib
import dataclasses
import io
import json
import os
import pathlib
import time

import jsonschema
import pytest
import yaml

from monitor.cmd import outbox_tool as outbox_cli
from monitor.notify import notification as notification_mod
from monitor.notify.outbox import Outbox


@pytest.fixture
def state(tmp_path):
    return tmp_path / 'state'


@pytest.fixture
def config_file(tmp_path, state):
    path = tmp_path / 'guest-health-monitor.conf'
    path.write_text(f'[DEFAULT]\nstate_path = {state}\n')
    return str(path)


def notification(n):
    return notification_mod.Notification.new(
        instance_uuid=f'00000000-0000-4000-8000-{n:012d}',
        domain_name=f'instance-{n:08x}', hostname='compute-1',
        at=1700000000.0)


@pytest.fixture
def outbox(state):
    box = Outbox(str(state / 'outbox.sqlite'), max_size=10)
    yield box
    box.close()


def run(config_file, *args):
    out, err = io.StringIO(), io.StringIO()
    status = outbox_cli.main(['--config-file', config_file, *args],
                             out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_list_shows_each_pending_notification(config_file, outbox):
    waiting = outbox.enqueue(notification(1), 1700000000.0)
    outbox.record_attempt_failed(waiting.id, 1700000000.0, 1700000004.0,
                                 'connection failed: Connection refused')
    delivered = outbox.enqueue(notification(2), 1700000000.0)
    outbox.mark_delivered(delivered.id, 'ACCEPTED', 1700000001.0)

    status, out, _ = run(config_file, 'list')

    assert status == 0
    header, line = out.splitlines()
    assert header.split()[:4] == ['ID', 'DOMAIN', 'INSTANCE', 'GENERATED']
    for part in (waiting.id, 'instance-00000001',
                 '00000000-0000-4000-8000-000000000001',
                 '2023-11-14T22:13:20Z', '2023-11-14T22:13:24Z',
                 'Connection refused'):
        assert part in line
    assert delivered.id not in out


def test_dead_shows_the_engine_message(config_file, outbox):
    entry = outbox.enqueue(notification(1), 1700000000.0)
    outbox.mark_dead(entry.id, 1700000001.0,
                     'Host with name compute-1 could not be found.')

    status, out, _ = run(config_file, 'dead')

    assert status == 0
    [line] = out.splitlines()[1:]
    assert entry.id in line
    assert line.endswith('Host with name compute-1 could not be found.')


def test_empty_lists_say_so(config_file, outbox):
    assert run(config_file, 'list')[1] == (
        'No notification waits for delivery.\n')
    assert run(config_file, 'dead')[1] == 'No dead letters.\n'


def test_retry_makes_a_dead_letter_pending_again(config_file, outbox):
    entry = outbox.enqueue(notification(1), 1700000000.0)
    outbox.mark_dead(entry.id, 1700000001.0, 'Host not found')

    status, out, _ = run(config_file, 'retry', entry.id)

    assert status == 0
    assert f'Requeued {entry.id}' in out
    assert outbox.get(entry.id).status == 'pending'
    assert [e.id for e in outbox.due(time.time())] == [entry.id]


def test_retry_of_an_unknown_or_pending_id_fails(config_file, outbox):
    entry = outbox.enqueue(notification(1), 1700000000.0)

    assert run(config_file, 'retry', 'no-such-id')[0] == 1
    status, _, err = run(config_file, 'retry', entry.id)

    assert status == 1
    assert 'is pending, not dead' in err


def test_a_missing_outbox_is_reported_and_not_created(config_file, state):
    status, out, err = run(config_file, 'list')

    assert (status, out) == (1, '')
    assert 'no outbox at' in err
    assert not os.path.exists(state)


def test_a_missing_config_file_is_a_configuration_error(tmp_path):
    status, _, err = run(str(tmp_path / 'nope.conf'), 'list')

    assert status == 2
    assert 'nope.conf' in err


def test_list_json_gives_every_field_under_stable_keys(config_file, outbox):
    waiting = outbox.enqueue(notification(1), 1700000000.0)
    outbox.record_attempt_failed(waiting.id, 1700000000.0, 1700000004.0,
                                 'connection failed: Connection refused')
    delivered = outbox.enqueue(notification(2), 1700000000.0)
    outbox.mark_delivered(delivered.id, 'ACCEPTED', 1700000001.0)

    status, out, _ = run(config_file, 'list', '-f', 'json')

    assert status == 0
    assert json.loads(out) == [{
        'id': waiting.id,
        'status': 'pending',
        'domain_name': 'instance-00000001',
        'instance_uuid': '00000000-0000-4000-8000-000000000001',
        'hostname': 'compute-1',
        'event': 'QEMU_GUEST_AGENT_ERROR',
        'vir_domain_event': 'STOPPED_FAILED',
        'generated_time': '2023-11-14T22:13:20Z',
        'created_at': '2023-11-14T22:13:20Z',
        'attempts': 1,
        'last_attempt_at': '2023-11-14T22:13:20Z',
        'next_attempt_at': '2023-11-14T22:13:24Z',
        'last_error': 'connection failed: Connection refused',
        'outcome': None,
        'finished_at': None,
        'held': False,
        'details': None,
    }]


def test_a_held_notification_says_so_with_its_details(config_file, outbox):
    details = {'reason': 'guest kernel panicked', 'consecutive_misses': 3,
               'recovery': {'action': 'reset', 'result': 'in_progress',
                            'detail': ''}, 'evidence': []}
    n = dataclasses.replace(notification(1), details=details)
    entry = outbox.enqueue(n, 1700000000.0, held=True)

    status, out, _ = run(config_file, 'list')
    assert status == 0
    assert entry.id in out and 'held: recovery under way' in out

    status, out, _ = run(config_file, 'list', '-f', 'json')
    [listed] = json.loads(out)
    assert listed['held'] is True
    assert listed['next_attempt_at'] is None
    assert listed['details'] == details


def test_dead_json_gives_the_engine_message_and_when(config_file, outbox):
    entry = outbox.enqueue(notification(1), 1700000000.0)
    outbox.mark_dead(entry.id, 1700000001.0,
                     'Host with name compute-1 could not be found.')

    status, out, _ = run(config_file, 'dead', '-f', 'json')

    assert status == 0
    [dead] = json.loads(out)
    assert list(dead) == list(outbox_cli.JSON_KEYS)
    assert (dead['id'], dead['status'], dead['outcome'], dead['attempts'],
            dead['finished_at'], dead['next_attempt_at'],
            dead['last_error']) == (
        entry.id, 'dead', 'REJECTED', 1, '2023-11-14T22:13:21Z', None,
        'Host with name compute-1 could not be found.')


def test_empty_json_lists_are_empty_arrays(config_file, outbox):
    assert json.loads(run(config_file, 'list', '-f', 'json')[1]) == []
    assert json.loads(run(config_file, 'dead', '-f', 'json')[1]) == []


def test_a_damaged_outbox_is_reported_without_a_traceback(config_file,
                                                          state, outbox):
    outbox.enqueue(notification(1), 1700000000.0)
    outbox.close()
    path = str(state / 'outbox.sqlite')
    with open(path, 'r+b') as f:
        f.seek(4096)  # page 2: the notifications table
        f.write(b'\xa5' * 4096)

    status, out, err = run(config_file, 'list')

    assert (status, out) == (1, '')
    assert f'the outbox {path} is corrupt' in err
    assert 'aside' in err


# -- text from outside ----------------------------------------------------------

# What a receiver may answer: a line break that would start a forged row,
# and terminal controls (clear screen, set the window title, ring).
HOSTILE = 'busy\nabc123  forged-row\x1b[2J\x1b]0;owned\x07\r'


def no_control_characters(text):
    return not any(ord(c) < 0x20 and c != '\n' or 0x7f <= ord(c) < 0xa0
                   for c in text)


@pytest.mark.parametrize('command', ['list', 'dead'])
def test_control_characters_in_an_error_are_shown_never_sent_to_the_terminal(
        config_file, outbox, command):
    entry = outbox.enqueue(notification(1), 1700000000.0)
    if command == 'list':
        outbox.record_attempt_failed(entry.id, 1700000000.0, 1700000004.0,
                                     'HTTP 503: ' + HOSTILE)
    else:
        outbox.mark_dead(entry.id, 1700000001.0, HOSTILE)

    status, out, _ = run(config_file, command)

    assert status == 0
    assert no_control_characters(out)
    [line] = out.splitlines()[1:]
    assert line.endswith('busy\\nabc123  forged-row\\x1b[2J\\x1b]0;owned'
                         '\\x07\\r')


def test_json_output_escapes_control_characters_too(config_file, outbox):
    entry = outbox.enqueue(notification(1), 1700000000.0)
    outbox.record_attempt_failed(entry.id, 1700000000.0, 1700000004.0,
                                 HOSTILE)

    status, out, _ = run(config_file, 'list', '-f', 'json')

    assert status == 0
    assert no_control_characters(out)
    assert json.loads(out)[0]['last_error'] == HOSTILE


# -- output formats, columns and the JSON Schema ---------------------------------

SCHEMA = (pathlib.Path(__file__).resolve().parents[3] / 'docs' / 'schemas'
          / 'outbox.schema.json')


def validator():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
def entries(outbox):
    """One notification in each shape the outbox holds: pending after a
    failed attempt, held with its details, delivered, dead."""
    waiting = outbox.enqueue(notification(1), 1700000000.0)
    outbox.record_attempt_failed(waiting.id, 1700000000.0, 1700000004.0,
                                 'connection failed: Connection refused')
    details = {'reason': 'guest kernel panicked', 'consecutive_misses': 3,
               'recovery': {'action': 'reset', 'result': 'in_progress',
                            'detail': ''}, 'evidence': []}
    held = outbox.enqueue(dataclasses.replace(notification(2),
                                              details=details),
                          1700000001.0, held=True)
    delivered = outbox.enqueue(notification(3), 1700000002.0)
    outbox.mark_delivered(delivered.id, 'ACCEPTED', 1700000003.0)
    dead = outbox.enqueue(notification(4), 1700000002.0)
    outbox.mark_dead(dead.id, 1700000005.0, 'Host not found')
    return {'waiting': waiting, 'held': held, 'dead': dead}


@pytest.mark.parametrize('args', [
    ('list', '-f', 'json'), ('list', '--format', 'json'),
    ('list', '--json'), ('-f', 'json', 'list'), ('--json', 'list')])
def test_json_is_accepted_before_or_after_the_command(config_file, entries,
                                                      args):
    status, out, _ = run(config_file, *args)

    assert status == 0
    assert [e['id'] for e in json.loads(out)] == [
        entries['waiting'].id, entries['held'].id]


def test_every_json_output_of_a_real_outbox_matches_its_schema(
        config_file, entries):
    check = validator()
    listed = json.loads(run(config_file, 'list', '-f', 'json')[1])
    dead = json.loads(run(config_file, 'dead', '-f', 'json')[1])
    status, out, _ = run(config_file, 'retry', entries['dead'].id, '-f',
                         'json')
    requeued = json.loads(out)

    for document in (listed, dead, requeued, []):
        check.validate(document)
    assert [e['status'] for e in listed + dead + requeued] == [
        'pending', 'pending', 'dead', 'pending']
    assert listed[1]['held'] is True and listed[1]['details']
    assert status == 0 and requeued[0]['id'] == entries['dead'].id


def test_the_schema_refuses_an_entry_without_a_key(config_file, entries):
    [dead] = json.loads(run(config_file, 'dead', '-f', 'json')[1])
    del dead['instance_uuid']

    with pytest.raises(jsonschema.ValidationError):
        validator().validate([dead])


def test_yaml_is_the_same_document(config_file, entries):
    as_json = json.loads(run(config_file, 'dead', '-f', 'json')[1])

    status, out, _ = run(config_file, 'dead', '-f', 'yaml')

    assert status == 0
    assert yaml.safe_load(out) == as_json


def test_value_prints_the_asked_columns_one_notification_a_line(
        config_file, entries):
    status, out, _ = run(config_file, 'list', '-f', 'value', '-c', 'id',
                         '-c', 'held', '-c', 'ATTEMPTS')

    assert status == 0
    assert out == (f"{entries['waiting'].id} false 1\n"
                   f"{entries['held'].id} true 0\n")


def test_columns_are_named_by_key_or_by_header(config_file, entries):
    _, by_header, _ = run(config_file, 'dead', '-c', 'DOMAIN', '-c',
                          'engine message')
    _, by_key, _ = run(config_file, 'dead', '-c', 'domain_name', '-c',
                       'last_error')

    assert by_header == by_key
    assert [line.split(None, 1) for line in by_key.splitlines()] == [
        ['DOMAIN', 'ENGINE MESSAGE'], ['instance-00000004', 'Host not found']]


def test_json_columns_keep_those_keys(config_file, entries):
    status, out, _ = run(config_file, 'dead', '-f', 'json', '-c', 'id',
                         '-c', 'outcome')

    assert json.loads(out) == [{'id': entries['dead'].id,
                                'outcome': 'REJECTED'}]


def test_an_unknown_column_exits_2_before_reading_the_outbox(config_file,
                                                             state):
    status, out, err = run(config_file, 'list', '-c', 'colour')

    assert (status, out) == (2, '')
    assert "no column 'colour'" in err and 'instance_uuid' in err
    assert not os.path.exists(state)


def test_columns_do_not_apply_to_retry(config_file, entries):
    status, _, err = run(config_file, '-c', 'id', 'retry',
                         entries['dead'].id)

    assert status == 2 and 'not to retry' in err


def test_retry_value_prints_the_id(config_file, entries):
    assert run(config_file, 'retry', entries['dead'].id, '-f', 'value') == (
        0, entries['dead'].id + '\n', '')


def test_help_lists_the_exit_statuses(config_file):
    out = io.StringIO()
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stdout(out):
        outbox_cli.main(['--help'])

    assert stop.value.code == 0
    text = ' '.join(out.getvalue().split())
    for code in ('0 done', '1 the outbox cannot be read or changed',
                 '2 a broken configuration file or command line'):
        assert code in text
