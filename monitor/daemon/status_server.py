"""The status socket: what the running daemon watches, for
``guest-health-monitor-status``.

The daemon listens on a unix stream socket, ``<state_path>/status.sock``,
mode 0600: only its own user (and root) may connect, since the answer
names every guest on the host and a request may pause its monitoring. It
works with every cache backend, the in-memory one included, because the
answer comes from the daemon itself.

One request per connection: the client sends one JSON object on one line
(``{"command": "status"}``, or ``pause`` / ``resume`` with their fields,
see ``maintenance.answer``) and reads one JSON document until the daemon
closes the connection. A client that sends nothing (and does not close
its side) gets the status after ``REQUEST_WAIT`` seconds, as clients of
earlier releases, which sent nothing, expect.

:func:`build_snapshot` is the plain part (records and outbox entries in,
the document out); :class:`StatusServer` is the socket, served from one
green thread.
"""

import contextlib
import errno
import json
import logging
import os
import stat
import time

from monitor import concurrency
from monitor.errors import StatusServerError
from monitor.notify import notification as notification_mod

LOG = logging.getLogger(__name__)

# Sockets that wait in the hub, not in the kernel.
socket = concurrency.green_socket

SOCKET_NAME = 'status.sock'

# Bumped when a field changes meaning or goes away; new fields do not.
FORMAT_VERSION = 1

# Seconds a client gets to take the answer before it is dropped.
CLIENT_TIMEOUT = 5.0
# Seconds to wait for the first byte of a request before answering with
# the status; then CLIENT_TIMEOUT for the rest of the line.
REQUEST_WAIT = 1.0
MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 4

# sun_path is 108 bytes on Linux, the terminating NUL included.
_MAX_PATH = 107


@contextlib.contextmanager
def addressable(path):
    """A name for the unix socket ``path`` that fits in sun_path.

    A longer path (a deep state_path) is reached through the directory's
    descriptor, /proc/self/fd/N/<name>, for as long as the context lasts.
    """
    if len(os.fsencode(path)) <= _MAX_PATH:
        yield path
        return
    directory, name = os.path.split(path)
    fd = os.open(directory or '.', os.O_PATH | os.O_DIRECTORY)
    try:
        yield '/proc/self/fd/%d/%s' % (fd, name)
    finally:
        os.close(fd)


def socket_path(state_path):
    return os.path.join(state_path, SOCKET_NAME)


def _when(epoch_seconds):
    if epoch_seconds is None:
        return None
    return notification_mod.format_time(epoch_seconds)


def _notification_view(entry):
    return {
        'id': entry.id,
        'status': entry.status,
        # Queued for a pending one; accepted or refused for a finished one.
        'at': _when(entry.finished_at if entry.finished_at is not None
                    else entry.created_at),
        'attempts': entry.attempts,
        'last_error': entry.last_error,
    }


def _latest_notifications(entries):
    """instance UUID -> the entry to show: a pending one first, else the
    most recently finished one."""
    latest = {}
    for entry in entries:
        uuid = entry.notification.instance_uuid
        shown = latest.get(uuid)
        if shown is None or _rank(entry) > _rank(shown):
            latest[uuid] = entry
    return latest


def _rank(entry):
    pending = entry.finished_at is None
    return (pending, entry.finished_at or entry.created_at)


def build_snapshot(records, entries, host, now, libvirt_connected=None,
                   maintenance=None, stuck_calls=()):
    """The status document.

    :param records: the monitored domains' records (DomainRecord).
    :param entries: outbox entries to show: the newest pending and the
        newest delivered or dead one of each domain
        (``Outbox.latest_per_domain``), which alone says what became of a
        domain's notifications.
    :param host: this host's name as sent to the HA engine.
    :param now: epoch seconds.
    :param libvirt_connected: whether the daemon is connected to libvirt,
        or None if unknown.
    :param maintenance: the pauses in force (maintenance.Maintenance), or
        None for none.
    :param stuck_calls: the recovery calls given up on that have not
        returned (``StuckCalls.snapshot()``: name, uuid, step, since).
    """
    notifications = _latest_notifications(entries)
    domains = []
    for record in sorted(records, key=lambda r: (r.name, r.uuid)):
        entry = notifications.get(record.uuid)
        shown = None if entry is None else _notification_view(entry)
        pause = None if maintenance is None else maintenance.of(record.uuid)
        domains.append({
            'name': record.name,
            'uuid': record.uuid,
            'state': record.state,
            'paused': bool(record.paused),
            'misses': record.misses,
            'last_answer': _when(record.last_ok),
            'notification': shown,
            'maintenance': None if pause is None else maintenance.view(pause),
        })
    pauses = [] if maintenance is None else sorted(
        (maintenance.view(pause) for pause in maintenance.all()),
        key=lambda view: (not view['all'], view['name'] or '',
                          view['uuid'] or ''))
    return {
        'version': FORMAT_VERSION,
        'host': host,
        'generated_at': _when(now),
        'libvirt_connected': libvirt_connected,
        'domains': domains,
        # Every pause in force, those of domains not running included.
        'maintenance': pauses,
        # Libvirt calls of recoveries still running past their deadline;
        # those domains are not recovered again until they return.
        'recovery_calls_stuck': [dict(call, since=_when(call['since']))
                                 for call in stuck_calls],
    }


class StatusServer:
    """Answers each connection on ``path``: a status request (or none)
    with ``snapshot()``, any other with ``requests(request)``, as JSON.
    Without ``requests`` only the status is served."""

    def __init__(self, path, snapshot, poll=1.0, requests=None):
        self.path = path
        self.snapshot = snapshot
        self.requests = requests
        self.poll = poll
        # The listening socket and its inode, once bound.
        self._sock = self._inode = None
        self._pool = concurrency.GreenPool(MAX_CLIENTS)

    @classmethod
    def from_conf(cls, conf, snapshot, requests=None):
        return cls(socket_path(conf.state_path), snapshot,
                   requests=requests)

    def listen(self):
        """Bind the socket now, so that a problem stops the daemon at
        start with the path in the error.

        A socket left by a daemon that died is removed; one that another
        daemon still serves is not touched (two daemons on one state_path
        would share an outbox).
        """
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The umask closes the window between bind and chmod; green
        # threads do not switch in between, and native threads create
        # no files.
        old_umask = os.umask(0o177)
        try:
            with addressable(self.path) as address:
                sock.bind(address)
            os.chmod(self.path, 0o600)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise StatusServerError('cannot serve status on %s: %s'
                                    % (self.path, exc.strerror or exc))
        finally:
            os.umask(old_umask)
        self._inode = os.stat(self.path).st_ino
        self._sock = sock

    def _remove_stale(self):
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StatusServerError('cannot serve status on %s: %s'
                                    % (self.path, exc.strerror or exc))
        if not stat.S_ISSOCK(mode):
            raise StatusServerError(
                'cannot serve status on %s: it exists and is not a socket'
                % self.path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            with addressable(self.path) as address:
                probe.connect(address)
        except OSError as exc:
            if exc.errno != errno.ECONNREFUSED:
                raise StatusServerError('cannot serve status on %s: %s'
                                        % (self.path, exc.strerror or exc))
        else:
            raise StatusServerError(
                'cannot serve status on %s: another guest-health-monitor '
                'serves it (same state_path)' % self.path)
        finally:
            probe.close()
        LOG.info('Removing the status socket %s left by a daemon that '
                 'stopped', self.path)
        os.unlink(self.path)

    def serve(self, stop_event):
        """Answer connections until ``stop_event`` is set, then close.

        Waits at most ``poll`` seconds at a time, so it ends soon after
        the event without being killed (stop may run in a signal handler,
        where killing a green thread is not safe).
        """
        if self._sock is None:
            self.listen()
        LOG.info('Serving status on %s', self.path)
        self._sock.settimeout(self.poll)
        try:
            while not stop_event.is_set():
                try:
                    conn, _ = self._sock.accept()
                except socket.timeout:
                    continue
                except OSError as exc:
                    if self._sock is None:
                        break
                    LOG.warning('Status socket %s: %s', self.path, exc)
                    concurrency.sleep(self.poll)
                    continue
                self._pool.spawn_n(self.handle, conn)
        finally:
            self.close()

    def handle(self, conn):
        """Read one request on ``conn``, send its answer and close it."""
        try:
            request = _read_request(conn)
            conn.settimeout(CLIENT_TIMEOUT)
            document = self._answer(request)
            payload = json.dumps(document, sort_keys=True) + '\n'
            conn.sendall(payload.encode('utf-8'))
        except OSError as exc:
            LOG.debug('Status client went away: %s', exc)
        finally:
            conn.close()

    def _answer(self, request):
        if isinstance(request, str):
            return {'version': FORMAT_VERSION, 'error': request}
        status = request.get('command', 'status') == 'status'
        if not status and self.requests is None:
            return {'version': FORMAT_VERSION,
                    'error': 'this daemon serves only its status'}
        try:
            if status:
                return self.snapshot()
            return dict(self.requests(request), version=FORMAT_VERSION)
        except Exception:  # loop boundary: one bad answer, not a crash
            if status:
                LOG.exception('Cannot build the status snapshot')
                what = 'build its status'
            else:
                LOG.exception('Cannot answer a %s request on the status '
                              'socket', request.get('command'))
                what = 'answer'
            return {'version': FORMAT_VERSION,
                    'error': 'the daemon could not %s; see its log' % what}

    def close(self):
        """Stop listening and remove the socket if it is still ours."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        sock.close()
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass


def _read_request(conn):
    """The client's request: a dict (``{}`` when it sent nothing), or the
    text of what is wrong with it."""
    conn.settimeout(REQUEST_WAIT)
    deadline = None
    data = b''
    while b'\n' not in data:
        try:
            chunk = conn.recv(4096)
        except socket.timeout:
            if not data:
                return {}
            return 'the request did not end within %.0f s' % CLIENT_TIMEOUT
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            return 'the request is too large'
        # The whole line within CLIENT_TIMEOUT of its first byte, however
        # slowly it trickles in.
        if deadline is None:
            deadline = time.monotonic() + CLIENT_TIMEOUT
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return 'the request did not end within %.0f s' % CLIENT_TIMEOUT
        conn.settimeout(remaining)
    line = data.split(b'\n', 1)[0].strip()
    if not line:
        return {}
    try:
        request = json.loads(line.decode('utf-8'))
    except ValueError:
        return 'the request is not JSON'
    if not isinstance(request, dict):
        return 'the request is not a JSON object'
    return request
