"""What a compute host does to running guests is not a guest failure.

Backups, snapshots and dumps hold a guest's agent, freeze its filesystems
or stop it for a while; the real daemon (interval 2 s, ping timeout 1 s,
threshold 3) must stay quiet through all of them on the real lab, and
still report the same guests' panics right after, once each. A freeze
nobody thaws is a failure: reported after ``frozen_grace``, saying so.

The filesystem guest has an ext4 data disk mounted on /data, which
qemu-ga freezes; its freeze hook can be made to hold a freeze 40 s
('slow-freeze'), longer than libvirt's 30 s wait for the agent job, as a
database's quiesce script would.
"""

import json
import os
import threading
import time

import libvirt
import libvirt_qemu

from lab import guests as lab_guests_mod
from tests.integration.test_no_false_alarms import HEALTHY
from tests.integration.test_no_false_alarms import wait_healthy

FREEZE_SECONDS = 60
SUSPEND_SECONDS = 30
GUEST_INFO = json.dumps({'execute': 'guest-info'})
# Crash to notification when pings must find it: about 13 s (see
# docs/how-it-decides.md); generous.
PANIC_REPORTED_WITHIN = 30


def run_path(guest, what):
    return os.path.join(lab_guests_mod.RUN_DIR,
                        '%s.%s.img' % (guest.name, what))


def quiesced_snapshot(guest):
    """snapshot-create-as --disk-only --quiesce --no-metadata of the
    filesystem disk, to a qcow2 overlay."""
    xml = ("<domainsnapshot><disks><disk name='%s' snapshot='external'>"
           "<driver type='qcow2'/><source file='%s'/></disk></disks>"
           "</domainsnapshot>" % (lab_guests_mod.FS_DISK_TARGET,
                                  run_path(guest, 'overlay')))
    guest.dom.snapshotCreateXML(
        xml, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
        | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA)


def push_backup(guest, timeout=60):
    """backup-begin in push mode to a qcow2 file; wait for its job."""
    xml = ("<domainbackup mode='push'><disks><disk name='%s' type='file'>"
           "<target file='%s'/><driver type='qcow2'/></disk></disks>"
           "</domainbackup>" % (lab_guests_mod.FS_DISK_TARGET,
                                run_path(guest, 'backup')))
    guest.dom.backupBegin(xml, None, 0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if guest.dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE:
                return
        except libvirt.libvirtError:
            pass  # "backup job data missing" while the job starts
        assert time.monotonic() < deadline, 'backup still running'
        time.sleep(0.5)


class Neighbour(threading.Thread):
    """Another libvirt client sending guest-info to a guest non-stop."""

    def __init__(self, guest):
        super().__init__(daemon=True)
        self.guest = guest
        self.stopped = threading.Event()
        self.answered = 0

    def run(self):
        while not self.stopped.is_set():
            try:
                libvirt_qemu.qemuAgentCommand(self.guest.dom, GUEST_INFO,
                                              5, 0)
                self.answered += 1
            except libvirt.libvirtError:
                self.stopped.wait(0.2)  # paused, saved: keep at it

    def stop(self):
        self.stopped.set()
        self.join(30)


def in_thread(func, *args):
    worker = threading.Thread(target=func, args=args, daemon=True)
    worker.start()
    return worker


def test_host_operations_are_not_failures_and_a_panic_after_them_is(
        lab_guests, masakari, monitor_daemon):
    [frozen] = lab_guests(1, fs_disk=True)
    [operated] = lab_guests(1)
    daemon = monitor_daemon()
    wait_healthy(daemon, [frozen, operated])

    # The filesystem guest: a freeze whose hook holds the agent job 40 s
    # (pings wait behind it, then libvirt gives up on them), the
    # filesystems frozen until 60 s after it began, then a quiesced
    # snapshot and a push backup.
    neighbour = Neighbour(operated)
    neighbour.start()
    frozen.control('slow-freeze')
    frozen_at = time.monotonic()
    freezing = in_thread(frozen.dom.fsFreeze, None, 0)

    # Meanwhile the other guest: a live memory dump, a suspend, a save
    # and restore, with another client asking its agent all along.
    operated.dom.coreDumpWithFormat(
        run_path(operated, 'dump'),
        libvirt.VIR_DOMAIN_CORE_DUMP_FORMAT_RAW, libvirt.VIR_DUMP_LIVE)
    operated.pause()
    time.sleep(SUSPEND_SECONDS)
    operated.resume()
    operated.dom.save(run_path(operated, 'save'))
    answered_before = len(daemon.wait_for_log(HEALTHY % operated.uuid, 0))
    operated.conn.restore(run_path(operated, 'save'))

    freezing.join(60)
    assert not freezing.is_alive(), 'the freeze did not return'
    assert frozen.ping(2) == {'return': {}}  # answered while frozen
    time.sleep(max(0, frozen_at + FREEZE_SECONDS - time.monotonic()))
    assert frozen.dom.fsThaw(None, 0) == 1
    quiesced_snapshot(frozen)
    push_backup(frozen)
    neighbour.stop()
    assert neighbour.answered > 0

    # The restored guest answers again.
    wait_healthy(daemon, [operated], count=answered_before + 1, timeout=60)
    time.sleep(8)  # longer than threshold x interval: late misses show
    assert masakari.notifications() == [], daemon.tail()
    assert 'failed (' not in daemon.log()

    for guest in (frozen, operated):
        guest.control('panic')
    for guest in (frozen, operated):
        stored = masakari.wait_notifications_for(
            guest.uuid, PANIC_REPORTED_WITHIN, poll=0.5)
        assert len(stored) == 1, daemon.tail()
    time.sleep(4)
    assert sorted(n['payload']['instance_uuid']
                  for n in masakari.notifications()) == sorted(
        [frozen.uuid, operated.uuid])
    assert daemon.stop() == 0


FROZEN_GRACE = 10


def test_a_freeze_left_in_place_is_reported_after_its_grace(
        lab_guests, masakari, monitor_daemon):
    [guest] = lab_guests(1, fs_disk=True)
    daemon = monitor_daemon(monitor__frozen_grace=str(FROZEN_GRACE))
    wait_healthy(daemon, [guest])
    frozen_at = time.monotonic()
    assert guest.dom.fsFreeze(None, 0) == 1
    # The freeze status is asked every 30 s; then the grace and the
    # threshold's pings.
    stored = masakari.wait_notifications_for(guest.uuid, 30 + FROZEN_GRACE
                                             + 20, poll=0.5)
    assert len(stored) == 1, daemon.tail()
    assert time.monotonic() - frozen_at >= FROZEN_GRACE
    daemon.wait_for_log(r'%s\) failed \(filesystems frozen for \d+ s'
                        % guest.uuid, 10)
    time.sleep(4)
    assert len(masakari.notifications_for(guest.uuid)) == 1
    assert daemon.stop() == 0
