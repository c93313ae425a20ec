"""The daemon's private state directory: used by one daemon, readable by none
other.

Two daemons on one state_path would both ping every guest and both notify
every failure (with the memory backend nothing even tells them apart), and
they would write the same dbm file and outbox. :func:`lock` takes an
exclusive ``flock`` on a file in the directory and keeps it for the life of
the process: the kernel drops it when the process exits, however it exits
(SIGKILL included), so a crashed daemon never leaves a stale lock behind.
The file holds the PID of the holder so that the refused daemon can name it.

The state (health records, the outbox) says which guests failed and when;
:func:`restrict_modes` makes the directory 0700 and what the daemon keeps in
it 0600, whatever umask older versions or other tools ran with.
"""

import errno
import fcntl
import os
import stat

from monitor.errors import StateDirInUse

LOCK_FILE = 'guest-health-monitor.lock'


class StateLock:
    """An exclusive lock on a state directory; see :func:`lock`."""

    def __init__(self, fd, path):
        self.fd = fd
        self.path = path

    def release(self):
        if self.fd is None:
            return
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def lock_path(state_path):
    return os.path.join(state_path, LOCK_FILE)


def _holder(fd):
    try:
        text = os.pread(fd, 32, 0).decode('ascii', 'replace').strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock(state_path):
    """Take the state directory for this process; return the StateLock.

    The descriptor stays open until :meth:`StateLock.release` or the end of
    the process; nothing closes it on garbage collection.

    :raises StateDirInUse: another process holds it.
    :raises OSError: the lock file cannot be created or locked.
    """
    path = lock_path(state_path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise StateDirInUse(state_path, _holder(fd)) from None
        # The file is never removed: unlinking a lock file lets a third
        # process lock a new file while the second still waits on the old.
        os.ftruncate(fd, 0)
        os.pwrite(fd, b'%d\n' % os.getpid(), 0)
    except BaseException:
        os.close(fd)
        raise
    return StateLock(fd, path)


def restrict_modes(state_path, extra_paths=()):
    """The directory and the directories in it 0700, the files in it 0600;
    the same for ``extra_paths`` (state kept outside it, e.g. a dbm file
    given by path). Entries below the first level are left alone.

    Symbolic links are not followed.
    """
    os.chmod(state_path, 0o700)
    paths = [os.path.join(state_path, name) for name in os.listdir(state_path)]
    for path in paths + list(extra_paths):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode):
            wanted = 0o600
        elif stat.S_ISDIR(mode):
            wanted = 0o700
        else:
            continue
        if stat.S_IMODE(mode) != wanted:
            os.chmod(path, wanted)


def write_private(path, data):
    """Replace the file ``path`` with ``data`` (bytes), mode 0600, so that
    a crash at any point leaves either the old file or the new one whole:
    a temporary file beside it, fsynced, renamed over it, and the
    directory fsynced. A symbolic link at the temporary path is refused.
    Raises OSError."""
    temporary = path + '.tmp'
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                 | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
