"""One output convention for the operators' command-line tools.

Both tools take ``-f/--format table|json|yaml|value`` and, for a listing,
``-c/--column COLUMN`` (repeatable), as OpenStack's clients do; before
the command (where the tool's own options go) or after it, the command's
copy winning. ``--json`` is short for ``-f json`` in both places.

- ``table``: for people; columns aligned under a header, and the tool's
  notes (maintenance pauses, a libvirt outage) after it.
- ``json``: the tool's document (its keys are only ever added, see
  docs/schemas/); ``-c`` keeps those keys of each listed object.
- ``yaml``: the same document as YAML.
- ``value``: one line per listed object, its cells separated by one
  space, no header: for ``while read`` loops and ``cut``. A missing
  value is ``-``; a nested object is compact JSON.

A column is named by its JSON key (``domain_name``) or by its table
header (``DOMAIN``, ``"LAST ANSWER"``), in any case.

Control characters from outside (domain names, the engine's messages)
are shown as escapes in table and value output; JSON and YAML escape
them by themselves (YAML here writes ASCII only).
"""

import json

import yaml
from oslo_config import cfg

FORMATS = ('table', 'json', 'yaml', 'value')
TABLE = 'table'


class UsageError(ValueError):
    """A format or column the command line names that does not apply."""


def _columns_help(columns):
    return ('show only this column (repeatable): %s'
            % ', '.join(c.key for c in columns))


def cli_opts(columns):
    """The options before the command, for ``conf.register_cli_opts``;
    ``columns`` (Column) are named in the help."""
    return [
        cfg.StrOpt('format', short='f', choices=FORMATS,
                   help='Output format (default table). Also accepted '
                        'after the command.'),
        cfg.MultiStrOpt('column', short='c', metavar='COLUMN', default=[],
                        help='S' + _columns_help(columns)[1:] +
                        '. Also accepted after the command.'),
        cfg.BoolOpt('json', default=False,
                    help='Short for --format json.'),
    ]


def add_arguments(parser, columns=()):
    """The same options after a command (its argparse sub-parser);
    ``-c`` when the command lists ``columns`` (Column)."""
    parser.add_argument('-f', '--format', dest='output_format',
                        choices=FORMATS,
                        help='output format (default table)')
    parser.add_argument('--json', dest='output_format',
                        action='store_const', const='json',
                        help='short for --format json')
    if columns:
        parser.add_argument('-c', '--column', dest='output_columns',
                            action='append', metavar='COLUMN',
                            help=_columns_help(columns))


def chosen(conf):
    """(format, columns) from ``conf``: the command's options, else the
    ones before it."""
    command = conf.command
    fmt = columns = None
    if command.name is not None:
        # Attributes of a sub-parser that was not used are missing.
        fmt = getattr(command, 'output_format', None)
        columns = getattr(command, 'output_columns', None)
    if fmt is None:
        fmt = conf.format or ('json' if conf.json else TABLE)
    return fmt, list(columns or conf.column or [])


class Column:
    """One column: its JSON ``key``, table ``header`` and how a row's
    value reads in a table (``table_cell(row)``; default: as in value
    output)."""

    def __init__(self, key, header, table_cell=None):
        self.key = key
        self.header = header
        # A key missing from an older daemon's document shows as -.
        self.table_cell = table_cell or (
            lambda row: value_cell(row.get(key)))


def value_cell(value):
    """A JSON value as one word-ish cell."""
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(',', ':'), sort_keys=True)
    return str(value)


def _name(text):
    return text.strip().lower().replace(' ', '_').replace('-', '_')


def select(columns, asked, default):
    """The Columns ``asked`` for (keys or headers), or the ``default``
    keys' when none is asked for.

    :raises UsageError: a column that the listing does not have.
    """
    by_name = {}
    for column in columns:
        by_name[_name(column.key)] = column
        by_name.setdefault(_name(column.header), column)
    if not asked:
        return [by_name[key] for key in default]
    picked = []
    for name in asked:
        column = by_name.get(_name(name))
        if column is None:
            raise UsageError('no column %r; the columns are: %s' % (
                name, ', '.join(c.key for c in columns)))
        if column not in picked:
            picked.append(column)
    return picked


def narrow(rows, columns):
    """``rows`` (JSON objects) with only the keys of ``columns``."""
    return [{c.key: row.get(c.key) for c in columns} for row in rows]


def dump(document, fmt):
    """``document`` as JSON or YAML text."""
    if fmt == 'json':
        return json.dumps(document, indent=2)
    if fmt == 'yaml':
        # ASCII only, so that YAML escapes every control character and
        # bidirectional override, as JSON does.
        return yaml.safe_dump(document, sort_keys=False,
                              default_flow_style=False,
                              allow_unicode=False).rstrip('\n')
    raise ValueError('%r is not a document format' % (fmt,))


def values(rows, columns, escape):
    """Value output: one line per row, cells one space apart."""
    return '\n'.join(' '.join(escape(value_cell(row.get(c.key)))
                              for c in columns)
                     for row in rows)
