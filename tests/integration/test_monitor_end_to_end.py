"""The daemon end to end: real libvirtd guests, the real console script,
the real masakari-api. Timings: interval 2 s, ping timeout 1 s,
threshold 3 (lab_options)."""

import re
import socket
import time
import urllib.request

from tests.unit import exposition

P = 'guest_health_monitor_'

HEALTHY = r'%s\): \w+ -> healthy'


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def scrape(port):
    url = 'http://127.0.0.1:%d/metrics' % port
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers['Content-Type'].startswith(
            'text/plain; version=0.0.4')
        return exposition.parse(response.read().decode('utf-8'))


def wait_healthy(daemon, guests, timeout=60):
    for guest in guests:
        daemon.wait_for_log(HEALTHY % guest.uuid, timeout)


def wait_notifications(masakari, uuid, count, timeout):
    deadline = time.monotonic() + timeout
    while True:
        stored = [n for n in masakari.notifications()
                  if n['payload']['instance_uuid'] == uuid]
        if len(stored) >= count or time.monotonic() > deadline:
            return stored
        time.sleep(0.25)


def test_a_crashed_guest_is_notified_once_and_again_after_a_restart(
        lab_guests, masakari, monitor_daemon):
    guests = lab_guests(3)
    victim, others = guests[0], guests[1:]
    port = free_port()
    daemon = monitor_daemon(metrics__listen_port=str(port))
    wait_healthy(daemon, guests)

    crashed_at = time.monotonic()
    victim.control('panic')
    stored = wait_notifications(masakari, victim.uuid, 1, timeout=25)
    detected = time.monotonic() - crashed_at
    print('crash to accepted notification: %.1f s' % detected)
    assert len(stored) == 1, 'no notification within 25 s:\n' + daemon.tail()
    [notification] = stored
    assert notification['type'] == 'VM'
    assert notification['payload'] == {
        'event': 'QEMU_GUEST_AGENT_ERROR', 'instance_uuid': victim.uuid,
        'vir_domain_event': 'STOPPED_FAILED'}
    daemon.wait_for_log(r'%s\): error -> reported' % victim.uuid, 10)

    # What an operator's scraper sees.
    with urllib.request.urlopen('http://127.0.0.1:%d/healthz' % port,
                                timeout=5) as response:
        assert response.status == 200
    m = scrape(port)
    assert m.value(P + 'libvirt_connected') == 1
    assert m.value(P + 'sweeps_total') > 0
    assert m.value(P + 'pings_total', outcome='missed') >= 3
    assert m.value(P + 'notifications_queued_total') == 1
    assert m.value(P + 'notifications_delivered_total', result='accepted') == 1
    assert m.value(P + 'state_transitions_total',
                   **{'from': 'error', 'to': 'reported'}) == 1
    assert m.value(P + 'domains', state='reported') == 1
    assert m.value(P + 'domains', state='healthy') == 2
    assert m.value(P + 'outbox_pending') == 0
    assert m.value(P + 'outbox_dead_letters') == 0

    # The engine has recovered it (here: forgotten the notification, so
    # its 180 s duplicate window does not hide a second one). Destroy and
    # start: the domain is monitored afresh and a second crash is
    # notified again.
    masakari.forget_notifications()
    victim.destroy()
    victim.start()
    victim.wait_agent_connected()
    daemon.wait_for_log(HEALTHY % victim.uuid, 60, count=2)
    victim.control('panic')
    stored = wait_notifications(masakari, victim.uuid, 1, timeout=25)
    assert len(stored) == 1, 'second crash not notified:\n' + daemon.tail()

    # Nothing for the healthy guests over a full minute of monitoring.
    remaining = crashed_at + 60 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    notified = {n['payload']['instance_uuid'] for n in masakari.notifications()}
    assert notified == {victim.uuid}
    for guest in others:
        assert not re.search(r'%s\): healthy -> error' % guest.uuid,
                             daemon.log())
    assert daemon.stop() == 0


def test_two_agents_hung_at_once_are_both_notified(
        lab_guests, masakari, monitor_daemon):
    guests = lab_guests(3)
    daemon = monitor_daemon()
    wait_healthy(daemon, guests)
    hung = guests[:2]
    for guest in hung:
        guest.control('agent-hang')
    for guest in hung:
        stored = wait_notifications(masakari, guest.uuid, 1, timeout=30)
        assert len(stored) == 1, daemon.tail()
    sweeps = [float(m) for m in re.findall(
        r'Sweep: \d+ domains listed, 3 pinged, 2 missed in ([\d.]+) s',
        daemon.log())]
    print('sweep durations with 2 hung agents: %s' % sweeps)
    assert sweeps, 'no sweep saw both hung agents'
    notified = {n['payload']['instance_uuid'] for n in masakari.notifications()}
    assert notified == {g.uuid for g in hung}
    for guest in hung:
        guest.control('agent-resume')
        daemon.wait_for_log(r'%s\): reported -> healthy' % guest.uuid, 30)
    assert daemon.stop() == 0
