"""The libvirt edge of the standalone mode: recover a guest, capture its
evidence, read its monitoring metadata.

Every function here blocks on libvirt or the file system and is meant to
run in a native thread (concurrency.run_native): none logs, none touches anything
green, none raises for libvirt errors. Each returns a value saying what
happened, in libvirt's own words, for the caller to log and report.
"""

from __future__ import annotations

import os
import typing

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


def act(dom, action):
    """Carry out a recovery action (recovery.RESET or RESTART)."""
    if action == recovery.RESET:
        return reset(dom)
    if action == recovery.RESTART:
        return restart(dom)
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


def tail_lines(path, max_lines, max_bytes=MAX_CONSOLE_BYTES):
    """The last ``max_lines`` lines of a file, reading at most
    ``max_bytes`` from its end. Raises OSError."""
    with open(path, 'rb') as log:
        log.seek(0, os.SEEK_END)
        size = log.tell()
        start = max(0, size - max_bytes)
        log.seek(start)
        data = log.read(max_bytes)
    lines = data.splitlines(keepends=True)
    if start > 0 and lines:
        # The first line read is cut somewhere in the middle.
        lines = lines[1:]
    return b''.join(lines[-max_lines:])


def console_tail(dom, max_lines, max_bytes=MAX_CONSOLE_BYTES):
    """The last lines of the domain's file-backed serial console."""
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


def collect_evidence(dom, store, console_lines):
    """Capture the console tail and a screenshot and store what was got.

    :returns: ([EvidenceRef], [problem text]); nothing is raised, so a
        failed capture never keeps the recovery or the notification from
        going ahead.
    """
    refs = []
    problems = []
    try:
        xml = dom.XMLDesc(0)
        graphics = domain_metadata.has_graphics(xml)
    except libvirt.libvirtError as exc:
        return refs, ['no evidence: %s' % error_text(exc)]
    except ValueError as exc:
        return refs, ['no evidence: %s' % exc]
    captures = [(evidence_mod.CONSOLE, console_tail(dom, console_lines))]
    if graphics:
        captures.append((evidence_mod.SCREENSHOT, screenshot(dom)))
    for kind, capture in captures:
        if capture.data is None:
            problems.append(capture.detail)
            continue
        try:
            refs.append(store.save(dom.UUIDString(), kind, capture.data,
                                   capture.media_type))
        except evidence_mod.EvidenceError as exc:
            problems.append('%s not stored: %s' % (kind, exc))
        except libvirt.libvirtError as exc:
            problems.append('%s not stored: %s' % (kind, error_text(exc)))
    return refs, problems


# -- metadata -----------------------------------------------------------------

def capture_and_act(conn, uuid, action, store, console_lines):
    """Evidence of the domain ``uuid``, then the ``action`` on it (None:
    evidence only).

    Returns (refs, problems, ActionResult or None).
    """
    if conn is None:
        return [], [], ActionResult(False, 'not connected to libvirt')
    try:
        dom = conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        return [], [], ActionResult(
            False, 'domain not found: %s' % (exc.get_error_message() or exc))
    refs, problems = collect_evidence(dom, store, console_lines)
    result = None if action is None else act(dom, action)
    return refs, problems, result


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
