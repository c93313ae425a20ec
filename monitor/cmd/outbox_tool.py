"""guest-health-monitor-outbox: what waits for the HA engine, and what it
refused.

    guest-health-monitor-outbox [--config-file F] list [-f FORMAT] [-c COLUMN]...
    guest-health-monitor-outbox [--config-file F] dead [-f FORMAT] [-c COLUMN]...
    guest-health-monitor-outbox [--config-file F] retry ID [-f FORMAT]

``retry`` makes a dead letter pending again; the running monitor sends it
on its next pass (within about 30 s). The outbox is never created here: a
missing one is reported, so running this as another user cannot leave a
file the daemon cannot write.

``-f/--format`` table, json, yaml or value and ``-c/--column`` (a key of
``JSON_KEYS``) follow the convention of output_format.py; ``--json`` is
short for ``-f json``. JSON (docs/schemas/outbox.schema.json) is an
array with one object per notification, oldest first (``retry``: the
requeued one alone), with the keys of ``JSON_KEYS``: times as ISO 8601 UTC strings or
null (``next_attempt_at`` is null unless the notification is pending and
not held). ``held`` is true while the monitor recovers the guest itself
(the notification goes out once the reset or restart is done);
``details`` are the incident facts it carries (reason, misses, recovery,
evidence), or null. Keys are only ever added, never renamed or removed.

Exit statuses: EXIT_STATUS_HELP, which --help shows.
"""

from __future__ import annotations

import sys
import time

from oslo_config import cfg

from monitor import masking
from monitor.cmd import output_format
from monitor.cmd import text_table
from monitor.conf import general
from monitor.conf import loading
from monitor.notify import delivery
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod

PROG = 'guest-health-monitor-outbox'

EXIT_ERROR = 1
EXIT_CONFIG_ERROR = 2

EXIT_STATUS_HELP = (
    'Exit status: 0 done; 1 the outbox cannot be read or changed (missing, '
    'damaged, locked for too long by another process) or retry names no '
    'dead letter; 2 a broken configuration file or command line (an '
    'unknown column).')


JSON_KEYS = ('id', 'status', 'domain_name', 'instance_uuid', 'hostname',
             'event', 'vir_domain_event', 'generated_time', 'created_at',
             'attempts', 'last_attempt_at', 'next_attempt_at', 'last_error',
             'outcome', 'finished_at', 'held', 'details')


def _add_commands(subparsers):
    for name, summary in (('list', 'notifications waiting for delivery'),
                          ('dead', 'notifications the HA engine refused')):
        command = subparsers.add_parser(name, help=summary)
        output_format.add_arguments(command, COLUMNS)
    retry = subparsers.add_parser(
        'retry', help='send a refused notification again')
    retry.add_argument('id', help='notification ID, as shown by "dead"')
    output_format.add_arguments(retry)


def _when_cell(key):
    def cell(row):
        if row['held']:
            return 'held: recovery under way'
        return row[key] or '-'
    return cell


_HEADERS = {'id': 'ID', 'domain_name': 'DOMAIN', 'instance_uuid': 'INSTANCE',
            'generated_time': 'GENERATED', 'attempts': 'ATTEMPTS',
            'next_attempt_at': 'NEXT ATTEMPT', 'finished_at': 'FINISHED AT',
            'last_error': 'LAST ERROR'}
_TABLE_CELLS = {'next_attempt_at': _when_cell('next_attempt_at'),
                'finished_at': _when_cell('finished_at'),
                'last_error': lambda row: row['last_error'] or ''}
COLUMNS = tuple(output_format.Column(key, _HEADERS.get(
    key, key.upper().replace('_', ' ')), _TABLE_CELLS.get(key))
    for key in JSON_KEYS)

# What each listing shows in a table, and how it says it is empty.
_LISTINGS = {
    'list': (('id', 'domain_name', 'instance_uuid', 'generated_time',
              'attempts', 'next_attempt_at', 'last_error'),
             'No notification waits for delivery.', {}),
    'dead': (('id', 'domain_name', 'instance_uuid', 'generated_time',
              'attempts', 'finished_at', 'last_error'),
             'No dead letters.',
             {'finished_at': 'REFUSED AT', 'last_error': 'ENGINE MESSAGE'}),
}


def columns_of(name):
    """The Columns of listing ``name``, under its own headers."""
    headers = _LISTINGS[name][2]
    return tuple(output_format.Column(c.key, headers[c.key], c.table_cell)
                 if c.key in headers else c for c in COLUMNS)


def _table(rows, columns, empty):
    if not rows:
        return empty
    # The receiver wrote the last error and a guest's owner the domain
    # name: a terminal shows their control characters as escapes, never
    # obeys them.
    cells = [[masking.escape(c.table_cell(row)) for c in columns]
             for row in rows]
    return text_table.format_table([c.header for c in columns], cells)


def render(name, entries, fmt, asked):
    """The output of listing ``name`` (list or dead) of ``entries``.

    :raises output_format.UsageError: a column the outbox does not have.
    """
    default, empty, _headers = _LISTINGS[name]
    columns = output_format.select(columns_of(name), asked, default)
    rows = [_json_entry(e) for e in entries]
    if fmt == output_format.TABLE:
        return _table(rows, columns, empty)
    if fmt == 'value':
        return output_format.values(rows, columns, masking.escape)
    if asked:
        rows = output_format.narrow(rows, columns)
    return output_format.dump(rows, fmt)


def _json_entry(entry):
    n = entry.notification
    values = {
        'id': n.id, 'status': entry.status, 'domain_name': n.domain_name,
        'instance_uuid': n.instance_uuid, 'hostname': n.hostname,
        'event': n.event, 'vir_domain_event': n.vir_domain_event,
        'generated_time': n.generated_time,
        'created_at': _iso(entry.created_at),
        'attempts': entry.attempts,
        'last_attempt_at': _iso(entry.last_attempt_at),
        'next_attempt_at': (_iso(entry.next_attempt_at)
                            if entry.status == outbox_mod.PENDING
                            and not entry.held else None),
        'last_error': entry.last_error, 'outcome': entry.outcome,
        'finished_at': _iso(entry.finished_at),
        'held': bool(entry.held), 'details': n.details}
    return {key: values[key] for key in JSON_KEYS}


def _iso(epoch_seconds):
    return None if epoch_seconds is None else notification_mod.format_time(
        epoch_seconds)


def _retry(box, id, fmt):
    entry = box.requeue_dead(id, now=time.time())
    if fmt == 'value':
        return masking.escape(entry.id)
    if fmt != output_format.TABLE:
        return output_format.dump([_json_entry(entry)], fmt)
    n = entry.notification
    return masking.escape(
        f'Requeued {n.id} for domain {n.domain_name} ({n.instance_uuid}); '
        f'the running monitor sends it within {delivery.IDLE_POLL:.0f} s.')


def main(argv=None, out=None, err=None):
    """Run the command; returns the exit status (EXIT_STATUS_HELP)."""
    out = out or sys.stdout
    err = err or sys.stderr
    conf = loading.build_conf()
    conf.register_cli_opts(output_format.cli_opts(COLUMNS) + [cfg.SubCommandOpt(
        'command', title='commands', handler=_add_commands)])
    try:
        conf(args=argv, project=general.PROJECT, prog=PROG,
             default_config_files=None, epilog=EXIT_STATUS_HELP)
        fmt, asked = output_format.chosen(conf)
        name = conf.command.name
        if asked and name == 'retry':
            raise output_format.UsageError(
                '-c/--column applies to list and dead, not to retry')
        if name in _LISTINGS:
            # Unknown columns are named before the outbox is opened.
            output_format.select(columns_of(name), asked, ())
    except (cfg.Error, output_format.UsageError) as e:
        print(f'{PROG}: {e}', file=err)
        return EXIT_CONFIG_ERROR
    try:
        box = outbox_mod.Outbox.from_conf(conf, create=False)
    except outbox_mod.OutboxError as e:
        print(f'{PROG}: {e}', file=err)
        return EXIT_ERROR
    try:
        if name == 'list':
            text = render(name, box.pending(), fmt, asked)
        elif name == 'dead':
            text = render(name, box.dead_letters(), fmt, asked)
        else:
            text = _retry(box, conf.command.id, fmt)
    except outbox_mod.OutboxError as e:
        print(f'{PROG}: {e}', file=err)
        return EXIT_ERROR
    finally:
        box.close()
    if text:
        print(text, file=out)
    return 0
