"""guest-health-monitor-outbox: what waits for the HA engine, and what it
refused.

    guest-health-monitor-outbox [--config-file F] list
    guest-health-monitor-outbox [--config-file F] dead
    guest-health-monitor-outbox [--config-file F] retry ID

``retry`` makes a dead letter pending again; the running monitor sends it
on its next pass (within about 30 s). The outbox is never created here: a
missing one is reported, so running this as another user cannot leave a
file the daemon cannot write.
"""

from __future__ import annotations

import sys
import time

from oslo_config import cfg

from monitor import config
from monitor import delivery
from monitor import notification as notification_mod
from monitor import outbox as outbox_mod

PROG = 'guest-health-monitor-outbox'


def _add_commands(subparsers):
    subparsers.add_parser('list', help='notifications waiting for delivery')
    subparsers.add_parser('dead', help='notifications the HA engine refused')
    retry = subparsers.add_parser(
        'retry', help='send a refused notification again')
    retry.add_argument('id', help='notification ID, as shown by "dead"')


def _when(epoch_seconds):
    return '-' if epoch_seconds is None else notification_mod.format_time(
        epoch_seconds)


def _table(header, rows):
    widths = [max(len(str(cell)) for cell in column)
              for column in zip(header, *rows)]
    lines = []
    for row in (header, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths)]
        lines.append('  '.join(cells).rstrip())
    return '\n'.join(lines)


def _print_entries(entries, empty, when_column, last_column, when, out):
    if not entries:
        print(empty, file=out)
        return
    rows = [(e.id, e.notification.domain_name, e.notification.instance_uuid,
             e.notification.generated_time, e.attempts, _when(when(e)),
             e.last_error or '')
            for e in entries]
    print(_table(('ID', 'DOMAIN', 'INSTANCE', 'GENERATED', 'ATTEMPTS',
                  when_column, last_column), rows), file=out)


def _print_pending(box, out):
    _print_entries(box.pending(), 'No notification waits for delivery.',
                   'NEXT ATTEMPT', 'LAST ERROR',
                   lambda e: e.next_attempt_at, out)


def _print_dead(box, out):
    _print_entries(box.dead_letters(), 'No dead letters.', 'REFUSED AT',
                   'ENGINE MESSAGE', lambda e: e.finished_at, out)


def _retry(box, id, out):
    entry = box.requeue_dead(id, now=time.time())
    n = entry.notification
    print(f'Requeued {n.id} for domain {n.domain_name} ({n.instance_uuid}); '
          f'the running monitor sends it within {delivery.IDLE_POLL:.0f} s.',
          file=out)


def main(argv=None, out=None, err=None):
    """Run the command; returns the exit status (2: configuration)."""
    out = out or sys.stdout
    err = err or sys.stderr
    conf = config.build_conf()
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='commands', handler=_add_commands))
    try:
        conf(args=argv, project=config.PROJECT, prog=PROG,
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
            _print_pending(box, out)
        elif conf.command.name == 'dead':
            _print_dead(box, out)
        else:
            _retry(box, conf.command.id, out)
    except outbox_mod.OutboxError as e:
        print(f'{PROG}: {e}', file=err)
        return 1
    finally:
        box.close()
    return 0
