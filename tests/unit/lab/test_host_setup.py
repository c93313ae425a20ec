"""lab/host-setup.sh, sourced for its functions: a daemon it starts holds
none of the descriptors of whoever ran it, so a lock the caller held
(`flock LOCKFILE make test`) is free once the caller is done.

The daemon is a stand-in that forks into the background as libvirtd -d
does; the lab's own libvirtd and virtlogd are left alone.
"""

import fcntl
import os
import pathlib
import signal
import subprocess

SCRIPT = pathlib.Path(__file__).resolve().parents[3] / 'lab' / 'host-setup.sh'

# Started as "$SBIN_DIR/NAME -d"; its background child outlives it, as a
# daemon does, with stdin, stdout and stderr on /dev/null (as libvirtd -d
# leaves them) and every other descriptor as it was given, and leaves its
# pid next to the script.
STAND_IN = """#!/bin/sh
sleep 60 </dev/null >/dev/null 2>&1 &
echo $! > "$0.pid"
"""


def start_daemon(tmp_path, name, held_fd, script=SCRIPT):
    stand_in = tmp_path / name
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    subprocess.run(['bash', '-c', 'source "$1" && start_daemon "$2"',
                    'host-setup', str(script), name],
                   env=dict(os.environ, SBIN_DIR=str(tmp_path)),
                   pass_fds=(held_fd,), check=True, capture_output=True,
                   timeout=30)
    return int((tmp_path / (name + '.pid')).read_text())


def open_targets(pid):
    fd_dir = '/proc/%d/fd' % pid
    targets = []
    for fd in os.listdir(fd_dir):
        try:
            targets.append(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            pass  # closed meanwhile
    return targets


def test_a_started_daemon_holds_no_descriptor_of_its_caller(tmp_path):
    lock_path = tmp_path / 'lab.lock'
    held = os.open(lock_path, os.O_WRONLY | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    pid = start_daemon(tmp_path, 'ghm-stand-in-%d' % os.getpid(), held)
    try:
        assert str(lock_path) not in open_targets(pid)
        os.close(held)
        # The next lab user gets the lock at once.
        again = os.open(lock_path, os.O_WRONLY)
        try:
            fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(again)
    finally:
        os.kill(pid, signal.SIGKILL)
