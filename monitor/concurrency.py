"""The daemon's one concurrency seam: green threads and the native-thread
bridge, behind names of the daemon's own.

The daemon runs on eventlet: one OS thread runs every green thread (the
sweep, the event dispatcher, the delivery worker, the servers), and the
calls that block in C (libvirt) run on native threads. Every other module
asks this one for what it needs, so eventlet is imported in one place and
a native-threads backend (where OpenStack's services are heading) would
replace this module, not forty call sites.

Rules the rest of the daemon relies on:

* :func:`run_native` runs a blocking call on a native thread and waits for
  it in the calling green thread; the native thread never logs and never
  touches a green object (the logging module's locks are green once the
  daemon has monkey-patched).
* :func:`original` gives the standard library's own modules (threads,
  queues, os) for code that must run in or talk to native threads.
* :func:`deadline` bounds a block of green code: when it expires the block
  is abandoned and the ``with`` statement ends quietly.
* :class:`NativeCall` runs one blocking call on a native thread of its
  own, for calls that may never return (a screenshot of a wedged QEMU):
  the caller waits as long as it chooses, then gives up and can still ask
  whether the call has returned. A stuck call occupies its own thread
  only, never one of :func:`run_native`'s fixed pool.
* :func:`native_calls_running` tells how many native calls of either kind
  are under way, so that a stopping daemon knows whether it abandons any.
"""

import contextlib
import os
import sys
import time

import eventlet
from eventlet import event as _event
from eventlet import greenio as _greenio
from eventlet import hubs as _hubs
from eventlet import patcher as _patcher
from eventlet import semaphore as _semaphore
from eventlet import tpool as _tpool
from eventlet.green import socket as green_socket  # noqa: F401 (re-exported)

# eventlet's timeout is a BaseException: no "except Exception" in a
# library can swallow it.
Timeout = eventlet.Timeout
Event = _event.Event
Semaphore = _semaphore.Semaphore
GreenPool = eventlet.GreenPool


def monkey_patch():
    """Make the standard library's sockets, threads and sleeps green.

    Called once, first thing in the daemon's process.
    """
    eventlet.monkey_patch()


def is_green(module_name):
    """Whether ``module_name`` (e.g. 'socket') was made green."""
    return _patcher.is_monkey_patched(module_name)


def original(module_name):
    """The standard library module as it was before monkey-patching."""
    return _patcher.original(module_name)


def spawn(func, *args, **kwargs):
    """Run ``func`` in a new green thread; returns a handle to ``wait()``
    for its result or ``kill()``."""
    return eventlet.spawn(func, *args, **kwargs)


def spawn_n(func, *args, **kwargs):
    """Run ``func`` in a new green thread nobody waits for."""
    eventlet.spawn_n(func, *args, **kwargs)


def sleep(seconds=0):
    """Yield to the other green threads for ``seconds``."""
    eventlet.sleep(seconds)


@contextlib.contextmanager
def deadline(seconds):
    """Abandon the block after ``seconds``; the ``with`` ends quietly.

    ``seconds`` None: no bound.
    """
    with eventlet.Timeout(seconds, False):
        yield


# One token per native call under way. Added and removed by the native
# thread itself (set.add and set.discard are atomic), so a green waiter
# that is killed or gives up does not make a running call look finished.
_running = set()

_native_os = _patcher.original('os')
_native_threading = _patcher.original('threading')
_native_time = _patcher.original('time')


def _tracked(func, args, kwargs):
    token = object()
    _running.add(token)
    try:
        return func(*args, **kwargs)
    finally:
        _running.discard(token)


def run_native(func, *args, **kwargs):
    """Run the blocking ``func`` on a native thread; wait for it here."""
    return _tpool.execute(_tracked, func, args, kwargs)


def native_calls_running():
    """Native calls (:func:`run_native` and :class:`NativeCall`) that have
    not returned yet, whether or not anybody still waits for them."""
    return len(_running)


def wait_native_calls(timeout, leave=0):
    """Wait in the calling green thread until at most ``leave`` native
    calls run, or ``timeout`` seconds passed; whether they did."""
    deadline = time.monotonic() + max(0.0, timeout)
    while len(_running) > leave and time.monotonic() < deadline:
        eventlet.sleep(0.05)
    return len(_running) <= leave


class NativeCall:
    """``func(*args)`` running on a native daemon thread of its own.

    The green side waits with :meth:`wait`, as long as it chooses; a call
    given up on keeps its thread until it returns (:attr:`done` says when)
    and never keeps the process from exiting. ``func`` must neither log
    nor touch anything green, as with :func:`run_native`.
    """

    def __init__(self, func, *args, name='native-call', tracked=True):
        """``tracked`` False: not counted by :func:`native_calls_running`
        (a call whose abandonment costs nothing, as a close the process's
        exit does anyway)."""
        self.started_at = time.monotonic()
        self._tracked = tracked
        self._func = func
        self._args = args
        self._value = self._error = None
        self.ended_at = None
        self.done = False
        # The native thread writes one byte once the call has returned;
        # the green side waits for it in the hub.
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        _native_threading.Thread(target=self._run, name=name,
                                 daemon=True).start()

    def _run(self):
        try:
            if self._tracked:
                self._value = _tracked(self._func, self._args, {})
            else:
                self._value = self._func(*self._args)
        except BaseException as exc:  # handed to the green side as is
            self._error = exc
        self.ended_at = time.monotonic()
        self.done = True
        try:
            _native_os.write(self._write_fd, b'x')
        finally:
            _native_os.close(self._write_fd)

    def wait(self, timeout=None):
        """Block the calling green thread until the call has returned or
        ``timeout`` seconds (None: no bound) have passed; returns
        :attr:`done`. One green thread at a time may wait."""
        if timeout is not None:
            until = time.monotonic() + max(0.0, timeout)
        while not self.done:
            left = None if timeout is None else until - time.monotonic()
            if left is not None and left <= 0:
                break
            # The fd stays open until this object is closed: once done it
            # reads end-of-file at once, so a later wait never sleeps.
            wait_readable(self._read_fd, left)
        return self.done

    def result(self):
        """The call's return value, or its exception raised here; only
        once :attr:`done`."""
        if not self.done:
            raise RuntimeError('the native call has not returned')
        if self._error is not None:
            raise self._error
        return self._value

    @property
    def running_for(self):
        """Seconds the call has run (until it returned, once it has)."""
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return end - self.started_at

    def close(self):
        """Release the call's pipe; only once :attr:`done`."""
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None

    def __del__(self):
        if getattr(self, 'done', False):
            self.close()


def exit_after(seconds, status, message):
    """Arm a native timer that ends the process with ``status`` after
    ``seconds``, whatever the green threads and the other native threads
    are doing; ``message`` goes to standard error first (written straight
    to the file descriptor: no lock, no logging). For a stop that must
    end within a bound."""

    def fire():
        _native_time.sleep(seconds)
        try:
            _native_os.write(2, ('guest-health-monitor: %s\n'
                                 % message).encode('utf-8', 'replace'))
        finally:
            _native_os._exit(status)

    _native_threading.Thread(target=fire, name='exit-timer',
                             daemon=True).start()


def exit_now(status):
    """End the process with ``status`` at once, without the interpreter's
    exit handlers: eventlet's would join native threads that may never
    return. Flush what must not be lost before."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    _native_os._exit(status)


def set_native_threads(count):
    """How many native threads :func:`run_native` may use at once."""
    _tpool.set_num_threads(count)


def wait_readable(fd, timeout=None):
    """Block the calling green thread until ``fd`` is readable, closed,
    or ``timeout`` seconds passed; returns whether it became readable."""
    try:
        _hubs.trampoline(fd, read=True, timeout=timeout)
    except (_hubs.IOClosed, eventlet.Timeout):
        return False
    return True


def listen(address, family, reuse_port=False):
    """A green listening TCP socket on ``address`` (host, port)."""
    return eventlet.listen(address, family=family, reuse_port=reuse_port)


def shutdown_safe(sock):
    """Shut a green socket down, whatever state it is in."""
    _greenio.shutdown_safe(sock)


def serve_wsgi(listener, app, log, pool_size, read_timeout):
    """Serve the WSGI ``app`` on ``listener`` in a new green thread; the
    returned handle's ``kill()`` stops it."""
    # Imported when first used: importing eventlet.wsgi re-imports the
    # standard library's http.server with green sockets and leaves that
    # copy as ``http.server``, which would turn every plain-thread HTTP
    # server of a process that merely imports this module (a tool, a test
    # receiver) green.
    from eventlet import wsgi as _wsgi

    return eventlet.spawn(
        _wsgi.server, listener, app, log=log, log_output=True, debug=False,
        custom_pool=eventlet.GreenPool(pool_size), keepalive=read_timeout,
        socket_timeout=read_timeout)
