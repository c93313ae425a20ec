"""A lab guest whose data disk runs out of space on demand.

The guest's data disk (``Guest(disk=True)``, /dev/vda in the guest) is a
sparse raw file on a small tmpfs of its own, with libvirt's
``error_policy='stop'``: once :meth:`FailingDisk.fill` has taken the free
space, the guest's next write to a block not yet written (its
``disk-writer`` writes a new 4 KiB block every half second) fails with
ENOSPC and QEMU pauses the guest, which libvirt reports as a pause on an
I/O error. :meth:`FailingDisk.free` gives the space back, so that a resumed
guest carries on.
"""

import contextlib
import os
import subprocess

from lxml import etree

from lab import guests

# The tmpfs: the disk's few written blocks and the filler fit in it.
TMPFS_MIB = 4
DISK_MIB = 64
# Left free by fill(): a few of the writer's blocks, then the pause.
LEFT_FREE_KIB = 32


class FailingDisk:

    def __init__(self, directory):
        self.directory = directory
        self.image = os.path.join(directory, 'data.img')
        self.filler = os.path.join(directory, 'filler')

    def fill(self):
        """Take all but LEFT_FREE_KIB of the tmpfs."""
        stat = os.statvfs(self.directory)
        free = stat.f_bavail * stat.f_frsize - LEFT_FREE_KIB * 1024
        with open(self.filler, 'wb') as filler:
            while free > 0:
                chunk = min(free, 1 << 20)
                filler.write(b'\0' * chunk)
                free -= chunk

    def free(self):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.filler)

    def start_guest(self, lab):
        """Define and start a lab guest with this disk; return it once its
        agent answers."""
        with open(self.image, 'wb') as image:
            image.truncate(DISK_MIB << 20)
        os.chmod(self.image, 0o666)
        guest = lab.new_guest(disk=True)
        xml = _with_failing_disk(guest.dom.XMLDesc(0), self.image)
        guest.dom = lab.conn.defineXML(xml)
        guest.start()
        guest.wait_agent_connected()
        guest.wait_pingable()
        return guest


def _with_failing_disk(xml, image):
    """The domain XML with the data disk on ``image``, stopping the guest
    on an I/O error."""
    domain = etree.fromstring(xml)
    for disk in domain.iterfind('devices/disk'):
        if disk.find('target').get('dev') == 'vda':
            disk.find('source').set('file', image)
            disk.find('driver').set('error_policy', 'stop')
    return etree.tostring(domain, encoding='unicode')


@contextlib.contextmanager
def mounted(name):
    """A FailingDisk on a tmpfs of TMPFS_MIB under the lab's run
    directory, unmounted afterwards (remove the guest first)."""
    directory = os.path.join(guests.RUN_DIR, 'failing-disk-%s' % name)
    os.makedirs(directory, exist_ok=True)
    subprocess.run(['mount', '-t', 'tmpfs', '-o',
                    'size=%dm,mode=0777' % TMPFS_MIB, 'tmpfs', directory],
                   check=True, capture_output=True)
    try:
        yield FailingDisk(directory)
    finally:
        subprocess.run(['umount', '-l', directory], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(directory)
