"""The demo: the monitor against the local lab, start to finish.

Brings up a local masakari-api and three small guests, runs the real
daemon with its log on this terminal, crashes one guest's kernel after
about 30 s, prints the notification the engine stored, and tears
everything down when done or on Ctrl-C.

    make demo            (or: .venv/bin/python -m lab.demo)
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time

from lab import daemon as lab_daemon
from lab import guests as lab_guests
from lab import masakari as lab_masakari


def say(text):
    sys.stdout.write('\n==> %s\n' % text)
    sys.stdout.flush()


def follow(path, stop):
    """Copy the daemon's log to this terminal as it grows."""
    while not os.path.exists(path) and not stop.is_set():
        time.sleep(0.1)
    with open(path, errors='replace') as log:
        while not stop.is_set():
            line = log.readline()
            if line:
                sys.stdout.write('    | ' + line)
                sys.stdout.flush()
            else:
                time.sleep(0.1)


def wait_for_notification(server, uuid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in server.notifications():
            if item['payload']['instance_uuid'] == uuid:
                return item
        time.sleep(0.5)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--guests', type=int, default=3)
    parser.add_argument('--crash-after', type=float, default=30.0,
                        help='seconds of healthy monitoring before the crash')
    args = parser.parse_args(argv)

    hostname = socket.gethostname()
    work_dir = tempfile.mkdtemp(prefix='ghm-demo-')
    stop_follow = threading.Event()
    os.makedirs(os.path.join(work_dir, 'masakari'))
    server = lab_masakari.MasakariServer(os.path.join(work_dir, 'masakari'))
    lab = None
    daemon = None
    status = 1
    try:
        say('starting masakari-api on 127.0.0.1 (sqlite, noauth2)')
        server.start()
        segment = server.create_segment('demo-segment')
        server.add_host(segment, hostname)
        print('    endpoint %s, host %s in segment %s'
              % (server.endpoint, hostname, segment['name']))

        say('booting %d guests with qemu-guest-agent' % args.guests)
        lab = lab_guests.Lab()
        lab.teardown()
        started = time.monotonic()
        guests = lab.start_guests(args.guests)
        for guest in guests:
            print('    %s %s' % (guest.name, guest.uuid))
        print('    agents answering after %.1f s'
              % (time.monotonic() - started))

        say('running guest-health-monitor (interval 2 s, ping timeout 1 s, '
            'threshold 3)')
        options = lab_daemon.lab_options(
            os.path.join(work_dir, 'monitor'), server.endpoint, hostname,
            DEFAULT__debug='false')
        daemon = lab_daemon.MonitorDaemon(os.path.join(work_dir, 'monitor'),
                                          options)
        print('    config %s' % daemon.config_path)
        threading.Thread(target=follow, args=(daemon.log_path, stop_follow),
                         daemon=True).start()
        daemon.start()
        time.sleep(args.crash_after)

        victim = guests[0]
        say('crashing the kernel of %s (%s)' % (victim.name, victim.uuid))
        crashed_at = time.monotonic()
        victim.control('panic')
        item = wait_for_notification(server, victim.uuid, 60)
        if item is None:
            say('no notification reached the engine within 60 s')
        else:
            time.sleep(1)
            say('the engine stored this notification %.1f s after the crash'
                % (time.monotonic() - crashed_at))
            print(json.dumps(item, indent=2, sort_keys=True))
            status = 0
        time.sleep(2)
    except KeyboardInterrupt:
        say('interrupted')
        status = 130
    finally:
        say('tearing down')
        if daemon is not None:
            daemon.stop()
        stop_follow.set()
        if lab is not None:
            lab.teardown()
            lab.close()
        server.close()
        print('    done; logs kept in %s' % work_dir)
    return status


if __name__ == '__main__':
    sys.exit(main())
