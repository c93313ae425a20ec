"""A real masakari-api, run standalone on loopback for tests and the demo.

The server comes from the virtualenv lab/masakari-setup.sh builds. It is set
up so that it needs nothing but its own work directory:

- ``auth_strategy = noauth2``: every request gets an admin context, whatever
  its headers say, so no token or project header is needed.
- ``transport_url = fake://``: the cast to masakari-engine after a
  notification is stored goes to an in-memory queue nobody reads, so stored
  notifications keep the status ``new`` for good.
- sqlite for both ``[database]`` and ``[taskflow]``.

Creating a host through the API asks Nova whether the hypervisor exists, so
hosts are written straight into the database instead.
"""

import configparser
import contextlib
import datetime
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid

import requests

from lab import LAB_CACHE

LOG = logging.getLogger(__name__)

VENV = os.path.join(LAB_CACHE, 'masakari-venv')
LISTEN_HOST = '127.0.0.1'
REQUEST_TIMEOUT = 10.0

# The pieces of the virtualenv a server needs; the paste pipeline is shipped
# by the masakari wheel under the prefix, not under /etc.
_NEEDED = ('bin/masakari-api', 'bin/masakari-manage',
           'etc/masakari/api-paste.ini')


class MasakariError(Exception):
    """The lab server could not be set up, started or queried."""


def installed(venv=VENV):
    """True when the masakari virtualenv has everything a server needs."""
    return all(os.path.exists(os.path.join(venv, part)) for part in _NEEDED)


def free_port(host=LISTEN_HOST):
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def vm_notification(hostname, instance_uuid, generated_time,
                    event='QEMU_GUEST_AGENT_ERROR',
                    vir_domain_event='STOPPED_FAILED'):
    """The notification the monitor sends when a guest stops answering."""
    return {
        'type': 'VM',
        'hostname': hostname,
        'generated_time': generated_time,
        'payload': {
            'event': event,
            'instance_uuid': instance_uuid,
            'vir_domain_event': vir_domain_event,
        },
    }


def _db_timestamp():
    # Masakari stores naive UTC datetimes in this form.
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime('%Y-%m-%d %H:%M:%S.%f')


class MasakariServer:
    """One masakari-api process with its config, sqlite files and log.

    ``work_dir`` holds masakari.conf, masakari.db, taskflow.db and
    masakari-api.log; without one a temporary directory is made and removed
    again by close(). The port stays the same across stop() and start(), so
    an endpoint handed to a client stays valid over a simulated outage.
    """

    def __init__(self, work_dir=None, venv=VENV, port=None,
                 start_timeout=30.0, stop_timeout=10.0):
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix='masakari-')
        self.venv = venv
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.config_file = os.path.join(self.work_dir, 'masakari.conf')
        self.db_file = os.path.join(self.work_dir, 'masakari.db')
        self.log_file = os.path.join(self.work_dir, 'masakari-api.log')
        self._process = None
        self._db_ready = False

    @property
    def url(self):
        return f'http://{LISTEN_HOST}:{self.port}'

    @property
    def endpoint(self):
        """The versioned API root clients put in front of /notifications."""
        return self.url + '/v1'

    @property
    def running(self):
        return self._process is not None and self._process.poll() is None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- lifecycle --------------------------------------------------------

    def start(self):
        """Start masakari-api and wait until it answers; no-op if running."""
        if self.running:
            return
        if not installed(self.venv):
            raise MasakariError(f'masakari is not installed in {self.venv}'
                                ' (run lab/masakari-setup.sh)')
        if not self._db_ready:
            self._write_config()
            self._db_sync()
            self._db_ready = True
        started = time.monotonic()
        # A session of its own lets stop() signal the API worker processes
        # the launcher forks, not just the launcher. The child keeps its own
        # copy of the log descriptor.
        with open(self.log_file, 'ab') as log:
            self._process = subprocess.Popen(
                [self._bin('masakari-api'), '--config-file',
                 self.config_file],
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.work_dir,
                start_new_session=True)
        try:
            self._wait_until_up()
        except MasakariError:
            self.stop()
            raise
        LOG.info('masakari-api up at %s in %.1f s (pid %d)', self.endpoint,
                 time.monotonic() - started, self._process.pid)

    def stop(self):
        """Stop the server for real: afterwards its port refuses connections.

        The database is kept, so start() brings back the same state.
        """
        process = self._process
        if process is None:
            return
        pgid = process.pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            LOG.warning('masakari-api (pid %d) ignored SIGTERM for %.0f s, '
                        'killing it', pgid, self.stop_timeout)
            _signal_group(pgid, signal.SIGKILL)
            process.wait()
        # The launcher normally reaps its workers before it exits; make sure
        # none outlives it when it did not.
        if not _wait_group_gone(pgid, self.stop_timeout):
            _signal_group(pgid, signal.SIGKILL)
            _wait_group_gone(pgid, self.stop_timeout)
        self._process = None
        LOG.info('masakari-api on port %d stopped', self.port)

    def restart(self):
        """Stop and start again on the same port with the same database."""
        self.stop()
        self.start()

    def close(self):
        """Stop the server; remove the work directory if it was made here."""
        self.stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- data -------------------------------------------------------------

    def create_segment(self, name, recovery_method='auto',
                       service_type='COMPUTE'):
        """Create a failover segment through the API; returns its dict."""
        response = self._request('POST', '/segments', json={'segment': {
            'name': name,
            'recovery_method': recovery_method,
            'service_type': service_type,
        }})
        _expect(response, 201)
        return response.json()['segment']

    def add_host(self, segment, hostname, on_maintenance=False):
        """Put a compute host into ``segment`` (a create_segment() dict).

        The row carries every column the notification path reads: name,
        uuid, segment, on_maintenance and the soft-delete marker.
        """
        host = {
            'uuid': str(uuid.uuid4()),
            'name': hostname,
            'type': 'COMPUTE',
            'control_attributes': 'SSH',
            'reserved': False,
            'on_maintenance': on_maintenance,
            'failover_segment_id': segment['uuid'],
        }
        with self._db() as conn:
            conn.execute(
                'INSERT INTO hosts (created_at, deleted, uuid, name, type,'
                ' control_attributes, reserved, on_maintenance,'
                ' failover_segment_id) VALUES (:created_at, 0, :uuid, :name,'
                ' :type, :control_attributes, :reserved, :on_maintenance,'
                ' :failover_segment_id)',
                dict(host, created_at=_db_timestamp()))
        return host

    def set_maintenance(self, hostname, on_maintenance=True):
        """Put a host on maintenance (the API then answers 409) or back."""
        with self._db() as conn:
            updated = conn.execute(
                'UPDATE hosts SET on_maintenance = ? WHERE name = ?'
                ' AND deleted = 0', (on_maintenance, hostname)).rowcount
        if not updated:
            raise MasakariError(f'no host named {hostname}')

    def forget_notifications(self):
        """Drop stored notifications only, as if the engine had finished
        those recoveries: the 180 s duplicate window no longer applies."""
        with self._db() as conn:
            conn.execute('DELETE FROM notifications')

    def clear(self):
        """Forget every notification, host and segment (keep the schema)."""
        with self._db() as conn:
            conn.execute('DELETE FROM vmoves')
            conn.execute('DELETE FROM notifications')
            conn.execute('DELETE FROM hosts')
            conn.execute('DELETE FROM failover_segments')

    def post_notification(self, notification):
        """POST one notification body (see vm_notification()) as is.

        Returns the response whatever its status, for tests to judge.
        """
        return self._request('POST', '/notifications',
                             json={'notification': notification})

    def notifications(self):
        """Every stored notification as the API shows it, oldest first."""
        response = self._request('GET', '/notifications')
        _expect(response, 200)
        return sorted(response.json()['notifications'],
                      key=lambda item: item['id'])

    def notifications_for(self, instance_uuid):
        """The stored notifications about one instance, oldest first."""
        return [n for n in self.notifications()
                if n['payload']['instance_uuid'] == instance_uuid]

    def wait_notifications_for(self, instance_uuid, timeout, poll=0.5):
        """The instance's stored notifications once there is one, or the
        empty list after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            stored = self.notifications_for(instance_uuid)
            if stored or time.monotonic() > deadline:
                return stored
            time.sleep(poll)

    # -- internals --------------------------------------------------------

    def _bin(self, name):
        return os.path.join(self.venv, 'bin', name)

    def _write_config(self):
        config = configparser.ConfigParser(interpolation=None)
        config['DEFAULT'] = {
            'auth_strategy': 'noauth2',
            'transport_url': 'fake://',
            # The API sleeps up to this many seconds before storing a
            # notification unless a coordination backend is set.
            'notification_delay_max': '0',
            # Only GET /notifications/<id> at microversion 1.1+ calls the
            # engine; with nobody reading the fake transport that call
            # would hang for the default 60 s.
            'rpc_response_timeout': '5',
            'masakari_api_listen': LISTEN_HOST,
            'masakari_api_listen_port': str(self.port),
            'masakari_api_workers': '1',
            # One log: oslo.log and the eventlet warnings both go to the
            # process's stderr, which start() sends to masakari-api.log.
            'use_stderr': 'true',
        }
        config['database'] = {
            'connection': 'sqlite:///' + self.db_file,
        }
        config['taskflow'] = {
            'connection': 'sqlite:///' + os.path.join(self.work_dir,
                                                      'taskflow.db'),
        }
        config['wsgi'] = {
            'api_paste_config': os.path.join(self.venv, 'etc', 'masakari',
                                             'api-paste.ini'),
        }
        with open(self.config_file, 'w') as config_out:
            config.write(config_out)

    def _db_sync(self):
        result = subprocess.run(
            [self._bin('masakari-manage'), '--config-file', self.config_file,
             'db', 'sync'],
            check=False, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, cwd=self.work_dir, timeout=120)
        if result.returncode != 0:
            raise MasakariError(
                f'masakari-manage db sync failed ({result.returncode}):\n'
                + _tail(result.stdout + result.stderr))

    def _wait_until_up(self):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise MasakariError(
                    f'masakari-api exited with {self._process.returncode}:\n'
                    + self._log_tail())
            try:
                if requests.get(self.url + '/', timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise MasakariError(
            f'masakari-api did not answer on {self.url} within'
            f' {self.start_timeout:.0f} s:\n' + self._log_tail())

    def _log_tail(self):
        with open(self.log_file, errors='replace') as log:
            return _tail(log.read())

    def _request(self, method, path, **kwargs):
        # A fresh connection per call: a pooled one would be stale after a
        # restart.
        try:
            return requests.request(method, self.endpoint + path,
                                    timeout=REQUEST_TIMEOUT, **kwargs)
        except requests.ConnectionError as exc:
            raise MasakariError(
                f'masakari-api at {self.endpoint} unreachable: {exc}') from exc

    @contextlib.contextmanager
    def _db(self):
        conn = sqlite3.connect(self.db_file, timeout=10)
        try:
            with conn:
                yield conn
        finally:
            conn.close()


def _expect(response, status):
    if response.status_code != status:
        raise MasakariError(
            f'{response.request.method} {response.url} answered'
            f' {response.status_code}, expected {status}: {response.text}')


def _signal_group(pgid, signum):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _wait_group_gone(pgid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _tail(text, lines=30):
    return '\n'.join(text.splitlines()[-lines:])
