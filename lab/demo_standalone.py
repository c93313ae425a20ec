"""The standalone demo: the monitor as the whole HA story of a plain
libvirt host, without Masakari.

Boots two small guests, starts a local webhook receiver that verifies and
prints every report it gets (a CloudEvent signed per Standard Webhooks),
and runs the real daemon with ``[notifier] driver =
webhook`` and ``[recovery] action = reset``. After about 20 s of healthy
monitoring it crashes one guest's kernel and shows: the failure detected,
the evidence kept (console tail), the reset, the signed webhook, and the
guest's agent answering again. Everything is torn down when done or on
Ctrl-C.

    make demo-standalone      (or: .venv/bin/python -m lab.demo_standalone)
"""

import argparse
import os
import re
import socket
import sys
import tempfile
import threading
import time

from lab import daemon as lab_daemon
from lab import guests as lab_guests
from lab import webhook_receiver
from lab.demo import follow
from lab.demo import say


def wait_for_line(daemon, pattern, timeout, count=1):
    try:
        return daemon.wait_for_log(pattern, timeout, count)[-1]
    except AssertionError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--guests', type=int, default=2)
    parser.add_argument('--crash-after', type=float, default=20.0,
                        help='seconds of healthy monitoring before the crash')
    args = parser.parse_args(argv)

    work_dir = tempfile.mkdtemp(prefix='ghm-demo-standalone-')
    monitor_dir = os.path.join(work_dir, 'monitor')
    secret = webhook_receiver.make_secret()
    stop_follow = threading.Event()
    receiver = None
    lab = None
    daemon = None
    status = 1
    try:
        say('starting a webhook receiver on 127.0.0.1 (it verifies each '
            'Standard Webhooks signature with the shared whsec_ secret, '
            'then parses the CloudEvent)')
        receiver = webhook_receiver.WebhookReceiver(
            secret, on_delivery=webhook_receiver.print_delivery).start()
        print('    %s' % receiver.url)

        say('booting %d guests with qemu-guest-agent' % args.guests)
        lab = lab_guests.Lab()
        lab.teardown()
        guests = lab.start_guests(args.guests)
        for guest in guests:
            print('    %s %s' % (guest.name, guest.uuid))

        say('running guest-health-monitor: driver webhook, recovery reset '
            '(interval 2 s, ping timeout 1 s, threshold 3)')
        options = lab_daemon.lab_options(
            monitor_dir, 'http://127.0.0.1:9/v1', socket.gethostname(),
            DEFAULT__debug='false', notifier__driver='webhook',
            webhook__url=receiver.url, webhook__secret=secret,
            recovery__action='reset', recovery__max_actions='3')
        daemon = lab_daemon.MonitorDaemon(monitor_dir, options)
        print('    config %s' % daemon.config_path)
        threading.Thread(target=follow, args=(daemon.log_path, stop_follow),
                         daemon=True).start()
        daemon.start()
        time.sleep(args.crash_after)

        victim = guests[0]
        say('crashing the kernel of %s (%s)' % (victim.name, victim.uuid))
        crashed_at = time.monotonic()
        victim.control('panic')
        deliveries = receiver.wait_for(1, 60)
        if not deliveries:
            say('no webhook within 60 s')
            return status
        first = deliveries[0]
        if first.event is None:
            say('the webhook was refused: %s' % first.refusal)
            return status
        body = first.data()
        say('webhook received %.1f s after the crash: %s, recovery %s %s, '
            'signature valid' % (time.monotonic() - crashed_at,
                                 first.event.get_type(),
                                 body['recovery']['action'],
                                 body['recovery']['result']))
        for ref in body['evidence']:
            print('    evidence: %s %s (%d bytes)' % (ref['kind'],
                                                      ref['path'],
                                                      ref['size']))
            if ref['kind'] == 'console':
                with open(ref['path'], errors='replace') as saved:
                    tail = saved.read().strip().splitlines()[-3:]
                for line in tail:
                    print('      | %s' % line)
        # The second time it turns healthy: after the reset.
        line = wait_for_line(
            daemon, r'Domain %s \(%s\): discovery -> healthy'
            % (re.escape(victim.name), victim.uuid), 120, count=2)
        if line is None:
            say('the guest did not answer again within 120 s of the reset')
            return status
        say('%s answers again %.1f s after the crash: healthy'
            % (victim.name, time.monotonic() - crashed_at))
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
        if receiver is not None:
            receiver.stop()
        print('    done; logs and evidence kept in %s' % work_dir)
    return status


if __name__ == '__main__':
    sys.exit(main())
