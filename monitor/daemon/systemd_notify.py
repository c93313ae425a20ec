"""Telling systemd how the daemon is doing (sd_notify) and feeding its
watchdog.

systemd passes a datagram socket in ``NOTIFY_SOCKET`` to a ``Type=notify``
service; the service sends newline-separated ``KEY=VALUE`` fields to it:
``READY=1`` once it serves, ``STATUS=...`` for ``systemctl status``,
``WATCHDOG=1`` at least every ``WatchdogSec=``, ``RELOADING=1`` and
``STOPPING=1``. Without ``NOTIFY_SOCKET`` (run by hand, under devstack's
``Type=simple`` unit, in tests) every call here does nothing.

Nothing here blocks or raises: the socket is non-blocking, and a message
that cannot be sent is reported by the return value (systemd gone or its
queue full must never stop the monitoring).

The watchdog is fed only while the daemon makes progress: the keeper asks
a liveness callable before each ``WATCHDOG=1``, so a sweep loop that is
stuck stops the beats and systemd restarts the daemon, while a hub that is
frozen altogether cannot run the keeper at all.
"""

import errno
import logging
import os
import socket
import time

LOG = logging.getLogger(__name__)


def _address(value):
    """The socket address for a NOTIFY_SOCKET value, or None."""
    if not value:
        return None
    if value.startswith('@'):
        # A socket in the abstract namespace: a leading NUL, no file.
        return '\0' + value[1:]
    if value.startswith('/'):
        return value
    # systemd also knows vsock: addresses, which a host daemon never gets.
    return None


class SystemdNotifier:
    """Sends sd_notify messages to ``NOTIFY_SOCKET``; a no-op without it."""

    def __init__(self, notify_socket=None):
        self.address = _address(notify_socket)
        self._sock = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)

    @classmethod
    def from_environ(cls, environ=None):
        environ = os.environ if environ is None else environ
        return cls(environ.get('NOTIFY_SOCKET'))

    @property
    def enabled(self):
        return self._sock is not None

    def send(self, *fields):
        """Send ``KEY=VALUE`` fields as one datagram.

        Returns True when systemd got it, False when there is no socket
        or sending failed (never raises, never blocks).
        """
        if self._sock is None:
            return False
        message = '\n'.join(fields).encode('utf-8')
        try:
            self._sock.sendto(message, self.address)
        except OSError as exc:
            # EAGAIN: systemd's queue is full; ENOENT/ECONNREFUSED: it is
            # gone. Either way the next message may get through.
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                LOG.debug('Cannot notify systemd at %s: %s',
                          self.address.replace('\0', '@'), exc)
            return False
        return True

    def ready(self, status=None):
        fields = ['READY=1']
        if status:
            fields.append('STATUS=' + _one_line(status))
        return self.send(*fields)

    def status(self, text):
        return self.send('STATUS=' + _one_line(text))

    def watchdog(self):
        return self.send('WATCHDOG=1')

    def reloading(self, clock_usec=None):
        # systemd (253+) wants the monotonic time with RELOADING=1 to tell
        # this reload from an earlier one.
        if clock_usec is None:
            clock_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send('RELOADING=1', 'MONOTONIC_USEC=%d' % clock_usec)

    def stopping(self):
        return self.send('STOPPING=1')

    def close(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _one_line(text):
    # A newline would start another field of the message.
    return ' '.join(str(text).split())


def watchdog_interval(environ=None, pid=None):
    """Seconds between two WATCHDOG=1, or None when systemd set no
    watchdog for this process.

    Half of ``WATCHDOG_USEC``, as sd_watchdog_enabled(3) advises, so one
    late beat does not get the daemon killed.
    """
    environ = os.environ if environ is None else environ
    pid = os.getpid() if pid is None else pid
    try:
        usec = int(environ.get('WATCHDOG_USEC', ''))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = environ.get('WATCHDOG_PID')
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            return None
    return usec / 2e6


class LoopProgress:
    """Whether a loop has completed an iteration recently.

    The loop calls :meth:`mark` after each iteration; :meth:`alive` is
    the watchdog keeper's liveness callable.
    """

    def __init__(self, stall_after, clock=time.monotonic):
        self.stall_after = stall_after
        self._clock = clock
        # Starting counts as progress: the first sweep may legitimately
        # take up to stall_after.
        self._last = clock()

    def mark(self):
        self._last = self._clock()

    def alive(self):
        return self._clock() - self._last <= self.stall_after


class WatchdogKeeper:
    """Sends WATCHDOG=1 every ``interval`` seconds while ``is_alive()``.

    :meth:`beat` is one step (tests call it directly); :meth:`run` loops
    on a stop event so shutdown is immediate.
    """

    def __init__(self, notifier, interval, is_alive, why_not=None):
        """``why_not()``: what keeps the daemon from being live, for the
        log line, when ``is_alive()`` says it is not."""
        self.notifier = notifier
        self.interval = interval
        self.is_alive = is_alive
        self.why_not = why_not or (lambda: 'the sweep loop has made no '
                                           'progress')
        # True while the watchdog is not fed (the loop is stuck).
        self._starving = False

    @classmethod
    def from_environ(cls, notifier, is_alive, environ=None, why_not=None):
        """A keeper for the watchdog systemd set, or None if it set none."""
        if not notifier.enabled:
            return None
        interval = watchdog_interval(environ)
        if interval is None:
            return None
        return cls(notifier, interval, is_alive, why_not)

    def beat(self):
        """Feed the watchdog if the daemon progresses; True if fed."""
        if not self.is_alive():
            if not self._starving:
                self._starving = True
                LOG.error('The daemon is not live (%s); no longer feeding '
                          'the systemd watchdog, so systemd will restart '
                          'the daemon', self.why_not())
            return False
        if self._starving:
            self._starving = False
            LOG.warning('The daemon is live again; feeding the systemd '
                        'watchdog')
        return self.notifier.watchdog()

    def run(self, stop_event):
        self.beat()
        while not stop_event.wait(self.interval):
            self.beat()


# libvirt's guest-sync wait before each command to an agent that once
# timed out: the longest a healthy ping to a hung guest takes beyond
# ping_timeout.
GUEST_SYNC_FLOOR = 5.0


def sweep_stall_after(interval, ping_timeout, reconnect_max_delay):
    """Seconds without a finished round of the sweep loop after which the
    loop counts as stuck.

    Four times the longest healthy round (interval, or a ping to a hung
    agent: ping_timeout plus libvirt's guest-sync floor), so that rounds
    slowed by many hung agents queued behind ``max_concurrent_pings`` do
    not count as stuck, plus the longest wait between two libvirt connect
    attempts. 98 s at the defaults.
    """
    return (4 * (interval + ping_timeout + GUEST_SYNC_FLOOR)
            + reconnect_max_delay)
