"""guest-health-monitor-status: which domains the running daemon watches,
and how they are.

    guest-health-monitor-status [--config-file F] [--json]

It asks the daemon over its status socket (``<state_path>/status.sock``),
so it shows the daemon's live view whatever the cache backend. The socket
is the daemon's own (mode 0600): run this as the daemon's user or root.

Only ``[DEFAULT] state_path`` is read from the configuration, without the
daemon's start-up checks: those would create the state directory or load
authentication plugins, which a read-only look must not do.

Exit status: 0 shown, 1 no usable answer, 2 configuration, 3 the daemon
is not running.
"""

import errno
import json
import socket
import sys

from oslo_config import cfg

from monitor.cmd import text_table
from monitor.conf import general
from monitor.daemon import status_server
from monitor.errors import DaemonNoAnswer
from monitor.errors import DaemonNotRunning

PROG = 'guest-health-monitor-status'

EXIT_NO_ANSWER = 1
EXIT_CONFIG_ERROR = 2
EXIT_NOT_RUNNING = 3

# The daemon answers from memory; a slow answer means a stuck daemon.
TIMEOUT = 10.0

_MAX_REPLY = 64 * 1024 * 1024

CLI_OPTS = [
    cfg.BoolOpt('json', default=False,
                help='Print the daemon\'s answer as JSON instead of a '
                     'table.'),
]


def fetch(path, timeout=TIMEOUT):
    """The daemon's status document.

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


def format_table(document):
    domains = document.get('domains', [])
    lines = []
    if not domains:
        lines.append('No domain is monitored on %s.'
                     % document.get('host', 'this host'))
    else:
        rows = [(d['name'], d['uuid'],
                 d['state'] + (' (paused)' if d.get('paused') else ''),
                 d['misses'], d['last_answer'] or '-',
                 _notification_cell(d.get('notification')))
                for d in domains]
        lines.append(text_table.format_table(('NAME', 'UUID', 'STATE', 'MISSES',
                             'LAST ANSWER', 'NOTIFICATION'), rows))
    if document.get('libvirt_connected') is False:
        lines.append('libvirt is not connected; the daemon keeps trying. '
                     'States are as of the last sweep.')
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
    try:
        document = fetch(path)
    except DaemonNotRunning as exc:
        print('guest-health-monitor is not running (%s)' % exc, file=err)
        return EXIT_NOT_RUNNING
    except DaemonNoAnswer as exc:
        print('%s: %s' % (PROG, exc), file=err)
        return EXIT_NO_ANSWER
    if conf.json:
        print(json.dumps(document, indent=2, sort_keys=True), file=out)
    else:
        print(format_table(document), file=out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
