"""What every benchmark stands on: a masakari-api with this host in a
segment, a libvirt connection for lab guests, a work directory, and the
monitors started on them, all torn down in one place.
"""

import logging
import os
import socket
import tempfile

from bench import monitors
from bench.figures import say
from lab import guests as lab_guests
from lab import masakari as lab_masakari

LOG = logging.getLogger(__name__)

KINDS = {'ours': monitors.OurMonitor, 'peer': monitors.PeerMonitor}


class Testbed:

    def __init__(self, settings=monitors.Settings(), work_dir=None,
                 confirm_interval=None):
        self.settings = settings
        # Ours' [monitor] confirm_interval; None leaves its default.
        self.confirm_interval = confirm_interval
        self.work_dir = work_dir or tempfile.mkdtemp(prefix='ghm-bench-')
        self.hostname = socket.gethostname()
        server_dir = os.path.join(self.work_dir, 'masakari')
        os.makedirs(server_dir, exist_ok=True)
        self.server = lab_masakari.MasakariServer(server_dir)
        self.lab = None
        self._monitors = []
        self._runs = 0

    def __enter__(self):
        try:
            self.server.start()
            segment = self.server.create_segment('bench-segment')
            self.server.add_host(segment, self.hostname)
            self.lab = lab_guests.Lab()
            # A run that died may have left guests; the monitors watch
            # every domain on the host, so none may be left over.
            self.lab.teardown()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()

    def start_guests(self, count):
        return self.lab.start_guests(count)

    def remove_guests(self):
        self.lab.teardown()

    def start_monitor(self, kind, settings=None):
        """Start a monitor of ``kind`` ('ours' or 'peer') in a fresh work
        directory, with ``settings`` (default: the bed's); it is stopped by
        stop_monitors() or close()."""
        self._runs += 1
        work_dir = os.path.join(self.work_dir, '%02d-%s' % (self._runs, kind))
        extra = ({'confirm_interval': self.confirm_interval}
                 if kind == 'ours' else {})
        monitor = KINDS[kind](work_dir, self.server.endpoint, self.hostname,
                              settings or self.settings, **extra)
        self._monitors.append(monitor)
        return monitor.start()

    def stop_monitors(self):
        while self._monitors:
            self._monitors.pop().stop()

    def stored(self, uuid):
        """Whether the engine has stored a notification for ``uuid``."""
        return any(item['payload']['instance_uuid'] == uuid
                   for item in self.server.notifications())

    def close(self):
        try:
            self.stop_monitors()
        finally:
            try:
                if self.lab is not None:
                    self.lab.teardown()
                    self.lab.close()
            finally:
                self.server.close()


def each_monitor(kinds, measure):
    """{kind: measure(kind)} for the monitors that could be measured; a
    monitor that died or stalled is reported and left out."""
    results = {}
    for kind in kinds:
        try:
            results[kind] = measure(kind)
        except (monitors.MonitorGone, TimeoutError) as exc:
            say('%s: NOT MEASURED: %s' % (kind, exc))
    return results
