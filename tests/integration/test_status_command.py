"""guest-health-monitor-status against the real daemon, real guests and the
real masakari-api, with the default in-memory cache backend (its state is
visible only through the daemon)."""

import json
import os
import pathlib
import subprocess
import sys
import time

import jsonschema

from lab import REPO_ROOT

SCHEMA = json.loads((pathlib.Path(REPO_ROOT) / 'docs' / 'schemas'
                     / 'status.schema.json').read_text())


def status_command():
    candidate = os.path.join(os.path.dirname(sys.executable),
                             'guest-health-monitor-status')
    if os.path.exists(candidate):
        return [candidate]
    return [sys.executable, '-m', 'monitor.cmd.status_tool']


def status(daemon, *args):
    env = dict(os.environ)
    env.setdefault('PYTHONPATH', REPO_ROOT)
    return subprocess.run(
        status_command() + ['--config-file', daemon.config_path, *args],
        capture_output=True, text=True, env=env, timeout=30)


def domain(daemon, uuid, listed=True):
    """The status command's entry of ``uuid``; with ``listed`` False,
    None while the daemon has not listed the domain yet (its first round
    may still run when the status server answers)."""
    result = status(daemon, '-f', 'json')
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    # Every document the daemon gives on the way is one its schema allows.
    jsonschema.validate(document, SCHEMA)
    entries = [d for d in document['domains'] if d['uuid'] == uuid]
    if not entries and not listed:
        return None
    [entry] = entries
    return entry


def wait_for_state(daemon, uuid, state, timeout):
    """Poll the status command; return every entry seen until ``state``."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        entry = domain(daemon, uuid, listed=False)
        if entry is not None:
            seen.append(entry)
            if entry['state'] == state:
                return seen
        assert time.monotonic() < deadline, (
            'no %s for %s in %.0f s; states seen: %s\n%s'
            % (state, uuid, timeout, [e['state'] for e in seen],
               daemon.tail()))
        time.sleep(0.3)


def test_status_shows_a_crashed_guest_go_error_then_reported(
        lab_guests, masakari, monitor_daemon):
    victim, bystander = lab_guests(2)
    daemon = monitor_daemon(cache__backend='dogpile.cache.memory',
                            cache__backend_argument=[])
    daemon.wait_for_log(r'Serving status on ', 30)
    wait_for_state(daemon, victim.uuid, 'healthy', 60)
    wait_for_state(daemon, bystander.uuid, 'healthy', 60)

    victim.control('panic')
    on_the_way = wait_for_state(daemon, victim.uuid, 'error', 20)
    reported = wait_for_state(daemon, victim.uuid, 'reported', 30)[-1]

    assert on_the_way[-1]['misses'] >= 1
    assert reported['misses'] >= 3
    assert reported['notification']['status'] == 'delivered'
    assert reported['last_answer'] is not None
    table = status(daemon)
    assert table.returncode == 0, table.stderr
    [line] = [row for row in table.stdout.splitlines()
              if victim.uuid in row]
    assert line.split()[:3] == [victim.name, victim.uuid, 'reported']
    assert domain(daemon, bystander.uuid)['state'] == 'healthy'
    values = status(daemon, 'show', '-f', 'value', '-c', 'uuid', '-c',
                    'state')
    assert f'{victim.uuid} reported' in values.stdout.splitlines()


def test_status_says_the_daemon_is_not_running_once_it_stopped(
        masakari, monitor_daemon):
    daemon = monitor_daemon()
    daemon.wait_for_log(r'Serving status on ', 30)
    assert status(daemon).returncode == 0

    assert daemon.stop() == 0
    result = status(daemon)

    assert result.returncode == 3
    assert result.stderr.startswith('guest-health-monitor is not running')


def test_a_paused_guest_with_a_hung_agent_is_reported_once_after_the_pause(
        lab_guests, masakari, monitor_daemon):
    [guest] = lab_guests(1)
    daemon = monitor_daemon(monitor__discovery_timeout='6')
    daemon.wait_for_log(r'Serving status on ', 30)
    wait_for_state(daemon, guest.uuid, 'healthy', 60)

    paused = status(daemon, 'pause', guest.name, '--for', '15s',
                    '--reason', 'qemu-ga upgrade')
    assert paused.returncode == 0, paused.stderr
    guest.control('agent-hang')
    shown = domain(daemon, guest.uuid)
    daemon.wait_for_log(r'%s\): maintenance ended' % guest.uuid, 30)

    # Nothing was pinged or sent while it was paused.
    log = daemon.log()
    during = log[log.index('%s): maintenance until' % guest.uuid):
                 log.index('%s): maintenance ended' % guest.uuid)]
    assert 'Domain %s (%s) missed a ping' % (guest.name, guest.uuid) \
        not in during
    assert [n for n in masakari.notifications()
            if n['payload']['instance_uuid'] == guest.uuid] == []
    assert shown['maintenance']['reason'] == 'qemu-ga upgrade'
    assert shown['state'] == 'healthy'
    # Back in discovery, its agent must answer within the discovery
    # timeout: it does not, and it is reported, once.
    wait_for_state(daemon, guest.uuid, 'reported', 30)
    time.sleep(4)
    stored = [n for n in masakari.notifications()
              if n['payload']['instance_uuid'] == guest.uuid]
    assert len(stored) == 1, daemon.tail()
    assert domain(daemon, guest.uuid)['maintenance'] is None
