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
"""

import contextlib

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


def run_native(func, *args, **kwargs):
    """Run the blocking ``func`` on a native thread; wait for it here."""
    return _tpool.execute(func, *args, **kwargs)


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
