"""guest-health-monitor-status: which domains the running daemon watches,
and how they are; and maintenance pauses that end by themselves.

    guest-health-monitor-status [--config-file F] [--json]
    guest-health-monitor-status [...] pause DOMAIN --for 30m [--reason TEXT]
    guest-health-monitor-status [...] pause --all --for 2h [--reason TEXT]
    guest-health-monitor-status [...] resume DOMAIN|--all

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

Exit status: 0 done, 1 no usable answer, 2 configuration or command line
(a bad duration), 3 the daemon is not running, 4 the daemon refused the
request (an unknown domain).
"""

import errno
import json
import re
import socket
import sys

from oslo_config import cfg

from monitor import masking
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

# The daemon answers from memory; a slow answer means a stuck daemon.
TIMEOUT = 10.0

_MAX_REPLY = 64 * 1024 * 1024

_DURATION = re.compile(r'(\d+(?:\.\d+)?)([smh]?)')
_UNIT = {'': 1, 's': 1, 'm': 60, 'h': 3600}


def _add_commands(subparsers):
    # Without a command the status is shown, as before pauses existed.
    subparsers.required = False
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
    resume = subparsers.add_parser(
        'resume', help='lift a pause now (--all: every pause)')
    resume.add_argument('domain', nargs='?', help='domain name or UUID')
    resume.add_argument('--all', action='store_true',
                        help='every pause on this host')


CLI_OPTS = [
    cfg.BoolOpt('json', default=False,
                help='Print the daemon\'s answer as JSON instead of a '
                     'table.'),
    cfg.SubCommandOpt('command', title='commands', handler=_add_commands),
]


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


def format_table(document):
    domains = document.get('domains', [])
    lines = []
    if not domains:
        lines.append('No domain is monitored on %s.'
                     % document.get('host', 'this host'))
    else:
        rows = [(d['name'], d['uuid'], _state_cell(d),
                 d['misses'], d['last_answer'] or '-',
                 _notification_cell(d.get('notification')))
                for d in domains]
        lines.append(text_table.format_table(('NAME', 'UUID', 'STATE', 'MISSES',
                             'LAST ANSWER', 'NOTIFICATION'), rows))
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


def main(argv=None, out=None, err=None):
    """Run the command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    conf = cfg.ConfigOpts()
    general.register_opts(conf)
    conf.register_cli_opts(CLI_OPTS)
    try:
        conf(args=argv, project=general.PROJECT, prog=PROG,
             default_config_files=None)
        path = status_server.socket_path(conf.state_path)
    except cfg.Error as exc:
        print('%s: %s' % (PROG, exc), file=err)
        return EXIT_CONFIG_ERROR
    command = conf.command
    request = None
    if command.name is not None:
        try:
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
    if conf.json:
        print(json.dumps(document, indent=2, sort_keys=True), file=out)
    elif command.name is None:
        # Domain names and errors come from outside: shown, never obeyed.
        print(masking.escape(format_table(document), keep_newlines=True),
              file=out)
    else:
        print(masking.escape(format_answer(document), keep_newlines=True),
              file=out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
