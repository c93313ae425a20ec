"""guest-health-monitor-outbox: what waits for the HA engine, and what it
refused.

    guest-health-monitor-outbox [--config-file F] list [--json]
    guest-health-monitor-outbox [--config-file F] dead [--json]
    guest-health-monitor-outbox [--config-file F] retry ID

``retry`` makes a dead letter pending again; the running monitor sends it
on its next pass (within about 30 s). The outbox is never created here: a
missing one is reported, so running this as another user cannot leave a
file the daemon cannot write.

``--json`` prints a JSON array with one object per notification, oldest
first, with the keys of ``JSON_KEYS``: times as ISO 8601 UTC strings or
null (``next_attempt_at`` is null unless the notification is pending and
not held). ``held`` is true while the monitor recovers the guest itself
(the notification goes out once the reset or restart is done);
``details`` are the incident facts it carries (reason, misses, recovery,
evidence), or null. Keys are only ever added, never renamed or removed.
"""

from __future__ import annotations

import json
import sys
import time

from oslo_config import cfg

from monitor import masking
from monitor.cmd import text_table
from monitor.conf import general
from monitor.conf import loading
from monitor.notify import delivery
from monitor.notify import notification as notification_mod
from monitor.notify import outbox as outbox_mod

PROG = 'guest-health-monitor-outbox'


JSON_KEYS = ('id', 'status', 'domain_name', 'instance_uuid', 'hostname',
             'event', 'vir_domain_event', 'generated_time', 'created_at',
             'attempts', 'last_attempt_at', 'next_attempt_at', 'last_error',
             'outcome', 'finished_at', 'held', 'details')


def _add_commands(subparsers):
    for name, summary in (('list', 'notifications waiting for delivery'),
                          ('dead', 'notifications the HA engine refused')):
        command = subparsers.add_parser(name, help=summary)
        command.add_argument('--json', action='store_true',
                             help='print a JSON array instead of a table')
    retry = subparsers.add_parser(
        'retry', help='send a refused notification again')
    retry.add_argument('id', help='notification ID, as shown by "dead"')


def _when(epoch_seconds):
    return '-' if epoch_seconds is None else notification_mod.format_time(
        epoch_seconds)


def _print_entries(entries, empty, when_column, last_column, when, out):
    if not entries:
        print(empty, file=out)
        return
    # The receiver wrote the last error and a guest's owner the domain
    # name: a terminal shows their control characters as escapes, never
    # obeys them.
    rows = [tuple(masking.escape(cell) for cell in (
                e.id, e.notification.domain_name,
                e.notification.instance_uuid, e.notification.generated_time,
                e.attempts,
                'held: recovery under way' if e.held else _when(when(e)),
                e.last_error or ''))
            for e in entries]
    print(text_table.format_table(('ID', 'DOMAIN', 'INSTANCE', 'GENERATED', 'ATTEMPTS',
                  when_column, last_column), rows), file=out)


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


def _print_json(entries, out):
    print(json.dumps([_json_entry(e) for e in entries], indent=2), file=out)


def _print_pending(box, out, as_json=False):
    if as_json:
        return _print_json(box.pending(), out)
    _print_entries(box.pending(), 'No notification waits for delivery.',
                   'NEXT ATTEMPT', 'LAST ERROR',
                   lambda e: e.next_attempt_at, out)


def _print_dead(box, out, as_json=False):
    if as_json:
        return _print_json(box.dead_letters(), out)
    _print_entries(box.dead_letters(), 'No dead letters.', 'REFUSED AT',
                   'ENGINE MESSAGE', lambda e: e.finished_at, out)


def _retry(box, id, out):
    entry = box.requeue_dead(id, now=time.time())
    n = entry.notification
    print(masking.escape(
        f'Requeued {n.id} for domain {n.domain_name} ({n.instance_uuid}); '
        f'the running monitor sends it within {delivery.IDLE_POLL:.0f} s.'),
        file=out)


def main(argv=None, out=None, err=None):
    """Run the command; returns the exit status (2: configuration)."""
    out = out or sys.stdout
    err = err or sys.stderr
    conf = loading.build_conf()
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='commands', handler=_add_commands))
    try:
        conf(args=argv, project=general.PROJECT, prog=PROG,
             default_config_files=None)
    except cfg.Error as e:
        print(f'{PROG}: {e}', file=err)
        return 2
    try:
        box = outbox_mod.Outbox.from_conf(conf, create=False)
    except outbox_mod.OutboxError as e:
        print(f'{PROG}: {e}', file=err)
        return 1
    try:
        if conf.command.name == 'list':
            _print_pending(box, out, conf.command.json)
        elif conf.command.name == 'dead':
            _print_dead(box, out, conf.command.json)
        else:
            _retry(box, conf.command.id, out)
    except outbox_mod.OutboxError as e:
        print(f'{PROG}: {e}', file=err)
        return 1
    finally:
        box.close()
    return 0
