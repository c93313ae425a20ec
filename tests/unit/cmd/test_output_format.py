"""The output convention both command-line tools share."""

import json

import pytest
import yaml

from monitor.cmd import output_format

COLUMNS = (output_format.Column('domain_name', 'DOMAIN'),
           output_format.Column('last_error', 'LAST ERROR'),
           output_format.Column('held', 'HELD'))


def test_no_column_asked_gives_the_default_ones():
    picked = output_format.select(COLUMNS, [], ('held', 'domain_name'))

    assert [c.key for c in picked] == ['held', 'domain_name']


@pytest.mark.parametrize('name', ['last_error', 'LAST_ERROR', 'last error',
                                  'Last-Error', 'LAST ERROR'])
def test_a_column_is_named_by_key_or_header_in_any_case(name):
    [picked] = output_format.select(COLUMNS, [name], ())

    assert picked.key == 'last_error'


def test_a_column_asked_twice_is_shown_once():
    picked = output_format.select(COLUMNS, ['held', 'HELD', 'domain_name'],
                                  ())

    assert [c.key for c in picked] == ['held', 'domain_name']


def test_an_unknown_column_is_refused_naming_the_known_ones():
    with pytest.raises(output_format.UsageError) as refused:
        output_format.select(COLUMNS, ['colour'], ())

    assert str(refused.value) == ("no column 'colour'; the columns are: "
                                  "domain_name, last_error, held")


@pytest.mark.parametrize('value, cell', [
    (None, '-'), (True, 'true'), (False, 'false'), (3, '3'),
    ('web-1', 'web-1'), ({'b': 1, 'a': [2]}, '{"a":[2],"b":1}')])
def test_value_cells(value, cell):
    assert output_format.value_cell(value) == cell


def test_value_lines_escape_what_comes_from_outside():
    rows = [{'domain_name': 'web\x1b[2J', 'last_error': None, 'held': True}]

    text = output_format.values(rows, COLUMNS, repr)

    assert text == "'web\\x1b[2J' '-' 'true'"


def test_yaml_and_json_carry_the_same_document():
    document = [{'id': 'a', 'details': {'misses': 3}, 'last_error': None}]

    assert yaml.safe_load(output_format.dump(document, 'yaml')) == document
    assert json.loads(output_format.dump(document, 'json')) == document


def test_yaml_escapes_control_characters_and_bidi_overrides():
    hostile = 'ok\x1b]0;owned\x07 \u202egnp.exe'

    text = output_format.dump({'last_error': hostile}, 'yaml')

    assert text.isascii() and '\x1b' not in text
    assert yaml.safe_load(text) == {'last_error': hostile}


def test_narrow_keeps_only_the_columns_keys():
    rows = [{'domain_name': 'web-1', 'last_error': 'x', 'held': False}]

    assert output_format.narrow(rows, COLUMNS[:1]) == [
        {'domain_name': 'web-1'}]
