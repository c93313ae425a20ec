"""guest-health-monitor-status: which domains the running daemon watches,
and how they are; and maintenance pauses that end by themselves.

    guest-health-monitor-status [--config-file F] [show] [-f FORMAT] [-c COLUMN]...
    guest-health-monitor-status [...] pause DOMAIN --for 30m [--reason TEXT]
    guest-health-monitor-status [...] pause --all --for 2h [--reason TEXT]
    guest-health-monitor-status [...] resume DOMAIN|--all

``show`` (also without a command) lists the domains. ``-f/--format``
table, json, yaml or value and ``-c/--column`` follow the convention of
output_format.py; ``--json`` is short for ``-f json``. JSON and YAML give
the daemon's document as is (docs/schemas/status.schema.json), ``-c``
keeping those keys of each domain; the columns are COLUMNS' keys.

It asks the daemon over its status socket (``<state_path>/status.sock``),
so it shows the daemon's live view whatever the cache backend. The socket
is the daemon's own (mode 0600): run this as the daemon's user or root.

``pause`` stops pinging, notifying and recovering a domain (a name or a
UUID), or with ``--all`` every domain on the host, for a while: seconds,
or a number with s, m or h, up to 7 days. The daemon keeps the pause
across restarts and lifts it by itself at its end; ``resume`` lifts it at
once (``--all``: every pause). Either way the domain starts over as after
a start: its agent must answer again.

Only ``[DEFAULT] state_path`` is read from the configuration, without the
daemon's start-up checks: those would create the state directory or load
authentication plugins, which a read-only look must not do.

Exit statuses: EXIT_STATUS_HELP, which --help shows.
"""

import errno
import json
import re
import socket
import sys

from oslo_config import cfg

from monitor import masking
from monitor.cmd import output_format
from monitor.cmd import text_table
from monitor.conf import general
from monitor.daemon import status_server
from monitor.errors import DaemonNoAnswer
from monitor.errors import DaemonNotRunning
from monitor.store import maintenance as maintenance_file

PROG = 'guest-health-monitor-status'

EXIT_NO_ANSWER = 1
EXIT_CONFIG_ERROR = 2
EXIT_NOT_RUNNING = 3
EXIT_REFUSED = 4

EXIT_STATUS_HELP = (
    'Exit status: 0 done; 1 the daemon gave no usable answer (permission '
    'denied on its socket, no answer within %.0f s); 2 a broken '
    'configuration file or command line (a bad duration, an unknown '
    'column); 3 the daemon is not running; 4 the daemon refused the '
    'request (an unknown domain).')

# The daemon answers from memory; a slow answer means a stuck daemon.
TIMEOUT = 10.0

_MAX_REPLY = 64 * 1024 * 1024

_DURATION = re.compile(r'(\d+(?:\.\d+)?)([smh]?)')
_UNIT = {'': 1, 's': 1, 'm': 60, 'h': 3600}


def _add_commands(subparsers):
    # Without a command the status is shown, as before pauses existed.
    subparsers.required = False
    show = subparsers.add_parser(
        'show', help='the monitored domains (the default command)')
    output_format.add_arguments(show, COLUMNS)
    pause = subparsers.add_parser(
        'pause', help='stop pinging, notifying and recovering a domain '
                      '(or every domain) for a while')
    pause.add_argument('domain', nargs='?', help='domain name or UUID')
    pause.add_argument('--all', action='store_true',
                       help='every domain on this host')
    pause.add_argument('--for', dest='duration', metavar='DURATION',
                       help='how long: seconds, or e.g. 90s, 30m, 2h '
                            '(at most 7 days)')
    pause.add_argument('--reason', default='',
                       help='why, for the log and the status (at most %d '
                            'characters)' % maintenance_file.MAX_REASON)
    output_format.add_arguments(pause)
    resume = subparsers.add_parser(
        'resume', help='lift a pause now (--all: every pause)')
    resume.add_argument('domain', nargs='?', help='domain name or UUID')
    resume.add_argument('--all', action='store_true',
                        help='every pause on this host')
    output_format.add_arguments(resume)


def parse_duration(text):
    """Seconds from ``text`` (``3600``, ``90s``, ``30m``, ``2h``).

    :raises ValueError: not a duration, or not within 0 s .. 7 days.
    """
    match = _DURATION.fullmatch((text or '').strip().lower())
    if match is None:
        raise ValueError('%r is not a duration: give seconds, or a number '
                         'with s, m or h (90s, 30m, 2h)' % (text,))
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds <= 0:
        raise ValueError('%s: a pause lasts more than 0 s' % text)
    if seconds > maintenance_file.MAX_SECONDS:
        raise ValueError('%s is too long: a pause lasts at most 7 days '
                         '(168h); to stop monitoring a domain for good, '
                         'set enabled="no" in its metadata' % text)
    return seconds


def fetch(path, timeout=TIMEOUT):
    """The daemon's status document.

    :raises DaemonNotRunning: no socket at ``path``, or nothing listens on it.
    :raises DaemonNoAnswer: the daemon could not be asked or did not answer.
    """
    return ask(path, None, timeout)


def ask(path, request, timeout=TIMEOUT):
    """The daemon's answer to ``request`` (a dict; None: the status).

    The status is asked for by sending nothing, which daemons of every
    release understand: one that reads no request and closes with a
    request unread would reset the connection, and its answer with it.

    :raises DaemonNotRunning: no socket at ``path``, or nothing listens on it.
    :raises DaemonNoAnswer: the daemon could not be asked or did not answer.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with status_server.addressable(path) as address:
                sock.connect(address)
        except FileNotFoundError:
            raise DaemonNotRunning('no status socket at %s' % path)
        except ConnectionRefusedError:
            raise DaemonNotRunning('nothing listens on %s' % path)
        except PermissionError:
            raise DaemonNoAnswer('permission denied on %s: run this as the '
                           "daemon's user or root" % path)
        except socket.timeout:
            raise DaemonNoAnswer('the daemon did not accept a connection on %s '
                           'within %.0f s' % (path, timeout))
        except OSError as exc:
            if exc.errno == errno.ENOTDIR:
                raise DaemonNotRunning('no status socket at %s' % path)
            raise DaemonNoAnswer('cannot connect to %s: %s'
                           % (path, exc.strerror or exc))
        try:
            if request is not None:
                sock.sendall(json.dumps(request).encode('utf-8') + b'\n')
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a daemon that reads no request has answered already
        except socket.timeout:
            raise DaemonNoAnswer('the daemon did not take the request on %s '
                                 'within %.0f s' % (path, timeout))
        chunks = []
        size = 0
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise DaemonNoAnswer('the daemon did not answer on %s within '
                               '%.0f s' % (path, timeout))
            except OSError as exc:
                raise DaemonNoAnswer('reading from %s: %s'
                               % (path, exc.strerror or exc))
            if not chunk:
                break
            size += len(chunk)
            if size > _MAX_REPLY:
                raise DaemonNoAnswer('the answer on %s is too large' % path)
            chunks.append(chunk)
    finally:
        sock.close()
    try:
        document = json.loads(b''.join(chunks).decode('utf-8'))
    except ValueError:
        raise DaemonNoAnswer('the answer on %s is not JSON' % path)
    if not isinstance(document, dict):
        raise DaemonNoAnswer('the answer on %s is not a status document' % path)
    if 'error' in document:
        raise DaemonNoAnswer('the daemon says: %s' % document['error'])
    return document


def _notification_cell(shown):
    if not shown:
        return '-'
    parts = [shown['status']]
    if shown.get('id'):
        parts.append(shown['id'])
    if shown.get('at'):
        parts.append(shown['at'])
    if shown['status'] == 'pending' and shown.get('attempts'):
        parts.append('(%d attempts)' % shown['attempts'])
    return ' '.join(parts)


def _state_cell(domain):
    cell = domain['state']
    if domain.get('paused'):
        cell += ' (paused)'
    if domain.get('maintenance'):
        cell += ' (maintenance)'
    return cell


def _subject(view):
    if view['all']:
        return 'every domain on this host'
    return '%s (%s)' % (view['name'], view['uuid'])


# The keys of each domain in the document, as columns. The table shows
# a domain's pause and maintenance in STATE; value output gives each key
# as it is.
COLUMNS = (
    output_format.Column('name', 'NAME'),
    output_format.Column('uuid', 'UUID'),
    output_format.Column('state', 'STATE', _state_cell),
    output_format.Column('paused', 'PAUSED'),
    output_format.Column('misses', 'MISSES'),
    output_format.Column('last_answer', 'LAST ANSWER'),
    output_format.Column('notification', 'NOTIFICATION',
                         lambda d: _notification_cell(d.get('notification'))),
    output_format.Column('maintenance', 'MAINTENANCE'),
)
TABLE_COLUMNS = ('name', 'uuid', 'state', 'misses', 'last_answer',
                 'notification')

CLI_OPTS = output_format.cli_opts(COLUMNS) + [
    cfg.SubCommandOpt('command', title='commands', handler=_add_commands),
]


def format_table(document, columns=None):
    """The status for people: ``columns`` (Column; default: the usual
    ones) of each domain, then the pauses and a libvirt outage."""
    if columns is None:
        columns = output_format.select(COLUMNS, (), TABLE_COLUMNS)
    domains = document.get('domains', [])
    lines = []
    if not domains:
        lines.append('No domain is monitored on %s.'
                     % document.get('host', 'this host'))
    else:
        rows = [[c.table_cell(d) for c in columns] for d in domains]
        lines.append(text_table.format_table([c.header for c in columns],
                                             rows))
    pauses = document.get('maintenance') or []
    if pauses:
        lines.append('')
        lines.append('Maintenance (not pinged, notified or recovered until '
                     'the end):')
        rows = [('every domain' if p['all'] else p['name'], p['uuid'] or '-',
                 p['since'], p['until'], p['reason'] or '-') for p in pauses]
        lines.append(text_table.format_table(
            ('DOMAIN', 'UUID', 'SINCE', 'UNTIL', 'REASON'), rows))
    if document.get('libvirt_connected') is False:
        lines.append('libvirt is not connected; the daemon keeps trying. '
                     'States are as of the last sweep.')
    return '\n'.join(lines)


def _request(command):
    """The request for ``command`` (pause or resume), or ValueError
    saying what is wrong with the command line."""
    if bool(command.all) == (command.domain is not None):
        raise ValueError('%s: name one domain (its name or UUID), or --all'
                         % command.name)
    request = {'command': command.name, 'all': bool(command.all),
               'domain': command.domain}
    if command.name == 'pause':
        if command.duration is None:
            raise ValueError('pause: --for DURATION is required (e.g. 30m)')
        request['seconds'] = parse_duration(command.duration)
        request['reason'] = maintenance_file.check_reason(command.reason)
    return request


def format_answer(answer):
    """What a pause or resume did, in words."""
    lines = []
    for view in answer.get('paused', []):
        lines.append('Paused %s until %s: not pinged, notified or recovered '
                     'until then.' % (_subject(view), view['until']))
    if 'resumed' in answer:
        for view in answer['resumed']:
            lines.append('Resumed %s: its guest agent must answer again.'
                         % _subject(view))
        if not answer['resumed']:
            lines.append('Nothing was paused.')
        still = answer.get('still_paused')
        if still:
            lines.append('Still paused with %s until %s.'
                         % (_subject(still), still['until']))
    return '\n'.join(lines)


def _answer_rows(answer):
    """What a pause or resume did, one row per subject, for value output."""
    rows = []
    for action in ('paused', 'resumed'):
        for view in answer.get(action, []):
            rows.append({'action': action,
                         'name': 'all' if view['all'] else view['name'],
                         'uuid': view['uuid'], 'until': view.get('until')})
    return rows


ANSWER_COLUMNS = tuple(output_format.Column(key, key.upper())
                       for key in ('action', 'name', 'uuid', 'until'))


def render(document, fmt, asked, showing):
    """The output for ``document`` (the status when ``showing``, else a
    pause or resume answer) in ``fmt``.

    :raises output_format.UsageError: a column the status does not have.
    """
    if not showing:
        if fmt == output_format.TABLE:
            text = format_answer(document)
        elif fmt == 'value':
            text = output_format.values(_answer_rows(document),
                                        ANSWER_COLUMNS, masking.escape)
        else:
            return output_format.dump(document, fmt)
        return masking.escape(text, keep_newlines=True)
    columns = output_format.select(COLUMNS, asked, TABLE_COLUMNS)
    if fmt == 'value':
        return output_format.values(document.get('domains', []), columns,
                                    masking.escape)
    if fmt == output_format.TABLE:
        # Domain names and errors come from outside: shown, never obeyed.
        return masking.escape(format_table(document, columns),
                              keep_newlines=True)
    if asked:
        document = dict(document, domains=output_format.narrow(
            document.get('domains', []), columns))
    return output_format.dump(document, fmt)


def main(argv=None, out=None, err=None):
    """Run the command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    conf = cfg.ConfigOpts()
    general.register_opts(conf)
    conf.register_cli_opts(CLI_OPTS)
    try:
        conf(args=argv, project=general.PROJECT, prog=PROG,
             default_config_files=None,
             epilog=EXIT_STATUS_HELP % TIMEOUT)
        path = status_server.socket_path(conf.state_path)
    except cfg.Error as exc:
        print('%s: %s' % (PROG, exc), file=err)
        return EXIT_CONFIG_ERROR
    command = conf.command
    fmt, asked = output_format.chosen(conf)
    showing = command.name in (None, 'show')
    request = None
    try:
        if asked and not showing:
            raise ValueError('-c/--column applies to show, not to %s'
                             % command.name)
        # Unknown columns are named before the daemon is asked.
        output_format.select(COLUMNS, asked, TABLE_COLUMNS)
        if not showing:
            request = _request(command)
    except ValueError as exc:
        print('%s: %s' % (PROG, exc), file=err)
        return EXIT_CONFIG_ERROR
    try:
        document = ask(path, request)
    except DaemonNotRunning as exc:
        print('guest-health-monitor is not running (%s)' % exc, file=err)
        return EXIT_NOT_RUNNING
    except DaemonNoAnswer as exc:
        print('%s: %s' % (PROG, exc), file=err)
        return EXIT_NO_ANSWER
    if 'refused' in document:
        print('%s: refused: %s' % (PROG, document['refused']), file=err)
        return EXIT_REFUSED
    if request is not None and not {'paused', 'resumed'} & set(document):
        print('%s: the daemon did not take the %s request: a release '
              'without maintenance pauses? Restart it after an upgrade.'
              % (PROG, request['command']), file=err)
        return EXIT_NO_ANSWER
    text = render(document, fmt, asked, showing)
    if text:
        print(text, file=out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
