"""The maintenance pauses' file: what survives a restart, written whole
and private, and a bad entry refused on its own."""

import json
import logging
import os
import stat

import pytest

from monitor.store import maintenance

UUID_A = '11111111-1111-4111-8111-111111111111'
UUID_B = '22222222-2222-4222-8222-222222222222'
NOW = 1_800_000_000.0


def pause(key=UUID_A, name='web-1', since=NOW, until=NOW + 1800,
          reason='qemu-ga upgrade'):
    return maintenance.Pause(key, name, since, until, reason)


@pytest.fixture
def file(tmp_path):
    return maintenance.MaintenanceFile(str(tmp_path / 'maintenance.json'))


def write_entries(file, entries):
    with open(file.path, 'w') as stream:
        json.dump({'version': 1, 'pauses': entries}, stream)


def test_pauses_written_are_read_back(file):
    pauses = [pause(), pause(maintenance.HOST, '', reason='')]

    file.save(pauses)

    assert sorted(file.load()) == sorted(pauses)


def test_the_file_is_private_and_replaced_whole(file, tmp_path):
    file.save([pause()])
    file.save([pause(UUID_B, 'db-1')])

    assert stat.S_IMODE(os.stat(file.path).st_mode) == 0o600
    assert [p.key for p in file.load()] == [UUID_B]
    assert os.listdir(tmp_path) == ['maintenance.json']


def test_no_file_is_no_pause(file):
    assert file.load() == []


def test_without_a_path_nothing_is_kept(tmp_path):
    memory = maintenance.MaintenanceFile(None)

    memory.save([pause()])

    assert memory.load() == []
    assert os.listdir(tmp_path) == []


def test_a_file_that_is_not_json_is_one_error_and_no_pause(file, caplog):
    with open(file.path, 'w') as stream:
        stream.write('{"version": 1, "pauses": [')

    assert file.load() == []
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert file.path in caplog.text
    assert 'Traceback' not in caplog.text


def test_a_file_without_a_list_of_pauses_is_no_pause(file, caplog):
    with open(file.path, 'w') as stream:
        stream.write('[1, 2]')

    assert file.load() == []
    assert 'no list of pauses' in caplog.text


@pytest.mark.parametrize('bad, why', [
    ('not an object', 'not an object'),
    ({**pause()._asdict(), 'key': 'web-1'}, 'not a domain UUID'),
    ({**pause()._asdict(), 'until': NOW - 1}, 'more than 0 s'),
    ({**pause()._asdict(), 'until': NOW + 8 * 86400}, 'at most'),
    ({**pause()._asdict(), 'since': 'yesterday'}, 'epoch seconds'),
    ({**pause()._asdict(), 'until': None}, 'epoch seconds'),
    ({**pause()._asdict(), 'reason': 'x\nERROR forged line'},
     'control characters'),
    ({**pause()._asdict(), 'reason': 'x' * 201}, 'longer than 200'),
    ({**pause()._asdict(), 'name': 7}, 'the name must be text'),
])
def test_a_bad_entry_is_refused_with_a_warning_and_the_others_hold(
        file, caplog, bad, why):
    good = pause(UUID_B, 'db-1')
    write_entries(file, [bad, good._asdict()])

    assert file.load() == [good]
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 'pause 1 of %s' % file.path in warnings[0]
    assert why in warnings[0]


def test_a_uuid_is_kept_in_lower_case(file):
    write_entries(file, [pause(UUID_A.upper())._asdict()])

    assert [p.key for p in file.load()] == [UUID_A]


@pytest.mark.parametrize('seconds', [0, -5, 7 * 86400 + 1, float('nan'),
                                     float('inf'), True, '60', None])
def test_a_pause_lasts_more_than_nothing_and_at_most_a_week(seconds):
    with pytest.raises(ValueError):
        maintenance.check_seconds(seconds)


def test_a_week_is_the_longest_pause():
    assert maintenance.check_seconds(7 * 86400) == 7 * 86400


@pytest.mark.parametrize('reason', ['a\nb', 'bell\x07', 'esc\x1b[2J',
                                    'c1\x9b', 'x' * 201, b'bytes'])
def test_a_reason_is_one_short_line_of_text(reason):
    with pytest.raises(ValueError):
        maintenance.check_reason(reason)


def test_a_reason_may_be_any_printable_text():
    text = 'Sicherung läuft – fsfreeze (ticket #42)'
    assert maintenance.check_reason(text) == text
