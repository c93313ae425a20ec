"""The libvirt edge of the standalone mode: recover a guest, capture its
evidence, read its monitoring metadata.

Every function here blocks on libvirt or the file system and is meant to
run in a native thread (``concurrency.NativeCall``, one per step of a
recovery, so that the caller can give up on a call that never returns):
none logs, none touches anything green, none raises for libvirt errors.
Each returns a value saying what happened, in libvirt's own words, for
the caller to log and report.
"""

from __future__ import annotations

import errno
import os
import stat
import typing

from monitor import concurrency
from monitor.health import recovery_policy as recovery
from monitor.store import evidence as evidence_mod
from monitor.virt import metadata as domain_metadata
from monitor.virt.libvirt_errors import error_text

try:
    import libvirt
except ImportError:  # pragma: no cover - only on hosts without it
    libvirt = None


class ActionResult(typing.NamedTuple):
    ok: bool
    # What was done, or why it failed (libvirt's message and code).
    detail: str


class Capture(typing.NamedTuple):
    """Bytes captured from a guest, or why there are none."""

    data: typing.Optional[bytes]
    media_type: str
    detail: str


class Metadata(typing.NamedTuple):
    """The ``<monitor/>`` element's text (None when the domain has none),
    or the error that kept it from being read."""

    text: typing.Optional[str]
    error: typing.Optional[str]


# Called from native threads: the monkey-patched os.open would tell the
# calling thread's own (new) hub about the descriptor.
_native_os = concurrency.original('os')

# Largest screenshot accepted: a 4K PPM is about 25 MB; anything larger is
# not a console worth keeping.
MAX_SCREENSHOT_BYTES = 32 * 1024 * 1024
# Most of a console log read to find its last lines.
MAX_CONSOLE_BYTES = 256 * 1024
_CHUNK = 256 * 1024


def _code(exc):
    return exc.get_error_code()


# -- recovery -----------------------------------------------------------------

def reset(dom):
    """Hard-reset the guest, as the reset button does; the domain keeps
    running and boots again.

    A guest whose panic libvirt kept (pvpanic with ``on_crash`` preserve)
    is in the crashed state, and libvirt leaves it paused after the reset
    (reason crashed), so it is resumed to boot again. A guest paused for
    any other reason is left as it is: someone else paused it.
    """
    try:
        dom.reset(0)
        state, reason = dom.state()
        if state == libvirt.VIR_DOMAIN_PAUSED and \
                reason == libvirt.VIR_DOMAIN_PAUSED_CRASHED:
            dom.resume()
            return ActionResult(True, 'reset, then resumed (libvirt kept '
                                      'the crashed guest paused)')
    except libvirt.libvirtError as exc:
        return ActionResult(False, 'reset failed: %s' % error_text(exc))
    return ActionResult(True, 'reset')


def restart(dom):
    """Destroy the domain, then start it again from its definition.

    Only for persistent domains: a transient one is gone for good once
    destroyed, which is the opposite of a recovery.
    """
    try:
        persistent = dom.isPersistent()
    except libvirt.libvirtError as exc:
        return ActionResult(False, 'restart failed: %s' % error_text(exc))
    if persistent != 1:
        return ActionResult(False, 'restart refused: the domain is '
                                   'transient and would be lost once '
                                   'destroyed; use reset')
    try:
        dom.destroy()
    except libvirt.libvirtError as exc:
        # Already off (it crashed and libvirt let it go): start it anyway.
        if _code(exc) != libvirt.VIR_ERR_OPERATION_INVALID:
            return ActionResult(False, 'restart failed at destroy: %s'
                                % error_text(exc))
    try:
        dom.create()
    except libvirt.libvirtError as exc:
        return ActionResult(False, 'restart failed at start, the domain is '
                                   'left shut off: %s' % error_text(exc))
    return ActionResult(True, 'destroyed and started again')


def resume(dom):
    """Resume a guest paused on a disk I/O error. A guest that runs
    already, or was paused by someone else meanwhile, is left as it is."""
    try:
        state, reason = dom.state()
        if state != libvirt.VIR_DOMAIN_PAUSED:
            return ActionResult(False, 'resume not needed: the domain is '
                                       'no longer paused')
        if reason != libvirt.VIR_DOMAIN_PAUSED_IOERROR:
            return ActionResult(False, 'resume refused: the domain is now '
                                       'paused for another reason (%d)'
                                % reason)
        dom.resume()
    except libvirt.libvirtError as exc:
        return ActionResult(False, 'resume failed: %s' % error_text(exc))
    return ActionResult(True, 'resumed')


def act(dom, action):
    """Carry out a recovery action (recovery.RESET, RESTART or
    RESUME)."""
    if action == recovery.RESET:
        return reset(dom)
    if action == recovery.RESTART:
        return restart(dom)
    if action == recovery.RESUME:
        return resume(dom)
    raise ValueError('not a recovery action: %r' % (action,))


# -- evidence -----------------------------------------------------------------

def screenshot(dom, max_bytes=MAX_SCREENSHOT_BYTES):
    """The guest's screen (screen 0) as libvirt hands it out: PNG from
    QEMU 7.2 with libvirt 9, PPM from older pairs."""
    stream = None
    try:
        stream = dom.connect().newStream(0)
        media_type = dom.screenshot(stream, 0, 0)
        chunks = []
        size = 0
        while True:
            chunk = stream.recv(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                stream.abort()
                stream = None
                return Capture(None, media_type or '',
                               'screenshot larger than %d bytes, dropped'
                               % max_bytes)
            chunks.append(chunk)
        stream.finish()
        stream = None
    except libvirt.libvirtError as exc:
        return Capture(None, '', 'no screenshot: %s' % error_text(exc))
    finally:
        if stream is not None:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
    return Capture(b''.join(chunks), media_type or 'application/octet-stream',
                   'screenshot')


class NotRegularFile(OSError):
    """A console path that is not a regular file: never read (a FIFO
    would block the reader until a writer comes, a device may never
    end)."""


_CONSOLE_FLAGS = (os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY
                  | os.O_CLOEXEC)
_FILE_KINDS = ((stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket'),
               (stat.S_ISCHR, 'a character device'),
               (stat.S_ISBLK, 'a block device'), (stat.S_ISDIR, 'a directory'))


def tail_lines(path, max_lines, max_bytes=MAX_CONSOLE_BYTES):
    """The last ``max_lines`` lines of a regular file, reading at most
    ``max_bytes`` from its end. Raises OSError (NotRegularFile for
    anything but a regular file).

    Opened non-blocking and without following a symbolic link, then
    checked on the descriptor itself: a FIFO, a socket or a device put
    where the console log should be is refused at once instead of
    blocking the native thread for ever.
    """
    try:
        fd = _native_os.open(path, _CONSOLE_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(exc.errno, 'a symbolic link, not '
                                 'followed') from None
        if exc.errno == errno.ENXIO:  # a unix socket cannot be opened
            raise NotRegularFile(exc.errno, 'not a regular file; not '
                                 'read') from None
        raise
    try:
        mode = _native_os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((text + ', ' for test, text in _FILE_KINDS
                         if test(mode)), '')
            raise NotRegularFile(errno.EINVAL, '%snot a regular file; not '
                                 'read' % kind)
        size = _native_os.lseek(fd, 0, os.SEEK_END)
        start = max(0, size - max_bytes)
        data = _read_at(fd, start, max_bytes)
    finally:
        _native_os.close(fd)
    lines = data.splitlines(keepends=True)
    if start > 0 and lines:
        # The first line read is cut somewhere in the middle.
        lines = lines[1:]
    return b''.join(lines[-max_lines:])


def _read_at(fd, offset, size):
    chunks = []
    while size > 0:
        chunk = _native_os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        size -= len(chunk)
    return b''.join(chunks)


def console_tail(dom, max_lines, max_bytes=MAX_CONSOLE_BYTES, xml=None):
    """The last lines of the domain's file-backed serial console
    (``xml``: its definition, when already read)."""
    if xml is None:
        try:
            xml = dom.XMLDesc(0)
        except libvirt.libvirtError as exc:
            return Capture(None, '', 'no console: %s' % error_text(exc))
    try:
        paths = domain_metadata.console_log_paths(xml)
    except ValueError as exc:
        return Capture(None, '', 'no console: %s' % exc)
    if not paths:
        return Capture(None, '', 'no console: the domain has no '
                                 'file-backed serial console')
    problems = []
    for path in paths:
        try:
            return Capture(tail_lines(path, max_lines, max_bytes),
                           'text/plain', 'console %s' % path)
        except OSError as exc:
            problems.append('%s: %s' % (path, exc.strerror or exc))
    return Capture(None, '', 'no console: %s' % '; '.join(problems))


class Found(typing.NamedTuple):
    """A domain to recover and what its definition says about evidence,
    or why it cannot be recovered (``dom`` None)."""

    dom: typing.Any
    xml: typing.Optional[str]
    graphics: bool
    problem: typing.Optional[str]


def find(conn, uuid):
    """The domain ``uuid`` and its definition (:class:`Found`)."""
    if conn is None:
        return Found(None, None, False, 'not connected to libvirt')
    try:
        dom = conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        return Found(None, None, False, 'domain not found: %s'
                     % (exc.get_error_message() or exc))
    try:
        xml = dom.XMLDesc(0)
        graphics = domain_metadata.has_graphics(xml)
    except libvirt.libvirtError as exc:
        return Found(dom, None, False, 'no evidence: %s' % error_text(exc))
    except ValueError as exc:
        return Found(dom, None, False, 'no evidence: %s' % exc)
    return Found(dom, xml, graphics, None)


def _kept(dom, store, kind, capture):
    """([EvidenceRef], [problem]) of storing one capture."""
    if capture.data is None:
        return [], [capture.detail]
    try:
        return [store.save(dom.UUIDString(), kind, capture.data,
                           capture.media_type)], []
    except evidence_mod.EvidenceError as exc:
        return [], ['%s not stored: %s' % (kind, exc)]
    except libvirt.libvirtError as exc:
        return [], ['%s not stored: %s' % (kind, error_text(exc))]


def capture_console(dom, xml, store, console_lines):
    """The console tail, stored: ([EvidenceRef], [problem text])."""
    return _kept(dom, store, evidence_mod.CONSOLE,
                 console_tail(dom, console_lines, xml=xml))


def capture_screenshot(dom, store):
    """A screenshot, stored: ([EvidenceRef], [problem text])."""
    return _kept(dom, store, evidence_mod.SCREENSHOT, screenshot(dom))


def console_evidence(conn, uuid, store, console_lines):
    """Look the domain ``uuid`` up, read its definition and keep its
    console tail: (Found, [EvidenceRef], [problem text])."""
    found = find(conn, uuid)
    if found.dom is None:
        return found, [], []
    if found.xml is None:
        return found, [], [found.problem]
    refs, problems = capture_console(found.dom, found.xml, store,
                                     console_lines)
    return found, refs, problems


def collect_evidence(dom, store, console_lines):
    """Capture the console tail and a screenshot and store what was got.

    :returns: ([EvidenceRef], [problem text]); nothing is raised, so a
        failed capture never keeps the recovery or the notification from
        going ahead.
    """
    try:
        xml = dom.XMLDesc(0)
        graphics = domain_metadata.has_graphics(xml)
    except libvirt.libvirtError as exc:
        return [], ['no evidence: %s' % error_text(exc)]
    except ValueError as exc:
        return [], ['no evidence: %s' % exc]
    refs, problems = capture_console(dom, xml, store, console_lines)
    if graphics:
        more_refs, more_problems = capture_screenshot(dom, store)
        refs += more_refs
        problems += more_problems
    return refs, problems


# -- metadata -----------------------------------------------------------------

def read_metadata(dom):
    """The domain's ``<monitor/>`` element in the live definition."""
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                            domain_metadata.NAMESPACE, 0)
    except libvirt.libvirtError as exc:
        if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return Metadata(None, None)
        return Metadata(None, 'metadata not readable: %s' % error_text(exc))
    return Metadata(text, None)


def read_settings(dom):
    """The domain's own settings: (DomainSettings, error or None).

    Defaults when it has no element, and defaults plus the error when the
    element is invalid or cannot be read.
    """
    metadata = read_metadata(dom)
    if metadata.error is not None:
        return domain_metadata.Parsed(domain_metadata.DEFAULTS,
                                      metadata.error)
    return domain_metadata.parse_settings(metadata.text)
