"""The libvirt edge of application probes: guest-exec, the guest-file
commands and guest-get-time through the domain's agent, each with a
timeout.

Runs on a native thread (``concurrency.NativeCall``, bounded by the
caller): nothing here logs, touches anything green or raises for a libvirt
error. Each run returns a ``probes.ProbeResult``.

An agent that refuses a command (qemu-ga started with ``--block-rpcs`` or
an allow list: "Command guest-exec has been disabled"; an agent too old
to know it: "has not been found", error class CommandNotFound) makes the
result ``unavailable``, never a failure. libvirt reports both as an
internal error (code 1) in its own words around the agent's, so the
agent's words are what tells them apart.
"""

from __future__ import annotations

import base64
import json
import time

from monitor import concurrency
from monitor.health import probes
from monitor.health.probes import Outcome
from monitor.health.probes import ProbeResult
from monitor.virt.libvirt_errors import error_text

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # pragma: no cover - only on hosts without it
    libvirt = None
    libvirt_qemu = None

# Native threads: the monkey-patched sleep would need a hub.
_native_time = concurrency.original('time')

# What qemu-ga says of a command it will not run.
_REFUSED = ('has been disabled', 'has not been found', 'CommandNotFound')
# Seconds between two guest-exec-status calls while waiting for a command.
STATUS_POLL = 0.1


def refused(message):
    """Whether an agent error's text says the command is not available
    (disabled by an allow or deny list, or unknown to the agent)."""
    return any(text in (message or '') for text in _REFUSED)


class AgentError(Exception):
    """An agent command failed; ``unavailable`` when the agent refuses
    it."""

    def __init__(self, detail, unavailable=False, unknown=False):
        super().__init__(detail)
        self.detail = detail
        self.unavailable = unavailable
        # Nothing learnt of the application: the agent did not answer (the
        # ping judges that) or the domain is gone.
        self.unknown = unknown


def _command(dom, execute, arguments, timeout):
    """One agent command's ``return`` value; raises AgentError."""
    command = {'execute': execute}
    if arguments is not None:
        command['arguments'] = arguments
    request = json.dumps(command)
    try:
        reply = libvirt_qemu.qemuAgentCommand(dom, request,
                                              max(1, int(timeout)), 0)
    except libvirt.libvirtError as exc:
        message = exc.get_error_message() or str(exc)
        if refused(message):
            raise AgentError('the guest agent refuses %s: %s'
                             % (execute, message), unavailable=True) \
                from None
        # Agent-level errors (a file that is not there, a command that
        # cannot be started) are the application's failure; the agent
        # not answering, or libvirt without the domain, are not.
        unknown = exc.get_error_code() != libvirt.VIR_ERR_INTERNAL_ERROR
        raise AgentError('%s failed: %s' % (execute, error_text(exc)),
                         unknown=unknown) from None
    try:
        return json.loads(reply)['return']
    except (ValueError, KeyError, TypeError):
        raise AgentError('%s: unexpected reply from the agent' % execute,
                         unknown=True) from None


def run(conn, uuid, spec, in_flight=None, clock=time.time):
    """Run probe ``spec`` on domain ``uuid`` once; never raises for libvirt
    errors. ``in_flight``: the guest-exec pid of this probe's command still
    running since an earlier run."""
    if conn is None:
        return ProbeResult(Outcome.UNKNOWN, 'not connected to libvirt',
                           in_flight=in_flight)
    try:
        dom = conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        return ProbeResult(Outcome.UNKNOWN, 'domain not found: %s'
                           % error_text(exc), in_flight=in_flight)
    try:
        if spec.kind == probes.EXEC:
            return run_exec(dom, spec, in_flight)
        return read_heartbeat(dom, spec, clock)
    except AgentError as exc:
        if exc.unavailable:
            return ProbeResult(Outcome.UNAVAILABLE, exc.detail)
        outcome = Outcome.UNKNOWN if exc.unknown else Outcome.FAILED
        return ProbeResult(outcome, exc.detail, in_flight=in_flight)


def _status(dom, pid, timeout):
    return _command(dom, 'guest-exec-status', {'pid': pid}, timeout)


def _output(status):
    data = b''
    for key in ('out-data', 'err-data'):
        encoded = status.get(key)
        if encoded:
            try:
                data += base64.b64decode(encoded)
            except (ValueError, TypeError):
                data += b'(undecodable %s)' % key.encode()
        if len(data) >= probes.MAX_OUTPUT_BYTES:
            break
    return data[:probes.MAX_OUTPUT_BYTES]


def _ended(spec, status, pid):
    return probes.exec_result(spec, True, status.get('exitcode'),
                              _output(status), pid, status.get('signal'))


def run_exec(dom, spec, in_flight=None):
    """guest-exec with output captured, then guest-exec-status until the
    command ends or ``timeout_seconds`` pass. A command of an earlier run
    still running is asked about instead, and nothing new is started
    until it has ended."""
    timeout = spec.timeout_seconds
    if in_flight is not None:
        status = _status(dom, in_flight, timeout)
        if not status.get('exited'):
            return probes.exec_result(spec, False, None, b'', in_flight)
        # It ended since: its late result says nothing about now; this
        # run starts afresh.
    started = _command(dom, 'guest-exec', {
        'path': spec.path, 'arg': list(spec.args),
        'capture-output': True}, timeout)
    pid = started['pid'] if isinstance(started, dict) else None
    if not isinstance(pid, int):
        raise AgentError('guest-exec: the agent returned no pid',
                         unknown=True)
    deadline = _native_time.monotonic() + timeout
    while True:
        status = _status(dom, pid, timeout)
        if status.get('exited'):
            return _ended(spec, status, pid)
        if _native_time.monotonic() >= deadline:
            return probes.exec_result(spec, False, None, b'', pid)
        _native_time.sleep(STATUS_POLL)


def _guest_time(dom, timeout):
    """The guest's own clock (guest-get-time) in Unix seconds; None when
    the agent refuses the command or answers something else than a time
    (the guest writes the reply)."""
    try:
        nanoseconds = _command(dom, 'guest-get-time', None, timeout)
    except AgentError as exc:
        if exc.unavailable:
            return None
        raise
    if type(nanoseconds) is not int or nanoseconds < 0:
        return None
    return nanoseconds / 1e9


def read_heartbeat(dom, spec, clock=time.time):
    """Read at most MAX_HEARTBEAT_BYTES of the heartbeat file and judge
    its age by the guest's own clock, read right after it (the host's
    when the agent will not tell); the handle is always closed.

    The application wrote the file by the guest's clock: judged by the
    host's, a guest clock behind would fail a live application, and one
    ahead would keep a dead one passing."""
    timeout = spec.timeout_seconds
    handle = _command(dom, 'guest-file-open', {'path': spec.file,
                                               'mode': 'r'}, timeout)
    try:
        read = _command(dom, 'guest-file-read', {
            'handle': handle, 'count': probes.MAX_HEARTBEAT_BYTES}, timeout)
        guest_now = _guest_time(dom, timeout)
    finally:
        try:
            _command(dom, 'guest-file-close', {'handle': handle}, timeout)
        except AgentError:
            pass  # the result is known; qemu-ga drops handles on restart
    try:
        content = base64.b64decode(read.get('buf-b64', ''))
    except (ValueError, TypeError, AttributeError):
        raise AgentError('guest-file-read: undecodable reply') from None
    return probes.heartbeat_result(
        spec, content[:probes.MAX_HEARTBEAT_BYTES],
        clock() if guest_now is None else guest_now,
        host_clock=guest_now is None)

