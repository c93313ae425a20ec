"""The standalone mode's libvirt edge, with fake domains: every libvirt
failure becomes a returned value, restart never loses a transient domain,
captures are bounded, and nothing is logged (these run in native
threads)."""

import logging
import os
import socket

import libvirt
import pytest

from monitor import concurrency
from monitor.health import recovery_policy as recovery
from monitor.store.evidence import EvidenceStore
from monitor.virt import guest_actions as libvirt_actions
from monitor.virt import metadata as domain_metadata

UUID = '6f1f4b4e-95c5-4c6a-9a43-1c1bb8d0a0f1'


def libvirt_error(code, message='failed'):
    error = libvirt.libvirtError(message)
    error.err = (code, libvirt.VIR_FROM_QEMU, message, 2, None, None, None,
                 0, 0)
    return error


class FakeStream:
    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.finished = False
        self.aborted = False

    def recv(self, nbytes):
        return self.chunks.pop(0) if self.chunks else b''

    def finish(self):
        self.finished = True

    def abort(self):
        self.aborted = True


class FakeConn:
    def __init__(self, stream):
        self.stream = stream

    def newStream(self, flags):
        return self.stream


class FakeDomain:
    """Records calls; ``fail`` maps a method name to the error it raises."""

    def __init__(self, xml='<domain><devices/></domain>', persistent=True,
                 fail=None, metadata=None, screen=(b'P6\n',),
                 media_type='image/x-portable-pixmap',
                 state_after_reset=(libvirt.VIR_DOMAIN_RUNNING,
                                    libvirt.VIR_DOMAIN_RUNNING_BOOTED)):
        self.state_after_reset = state_after_reset
        self.xml = xml
        self.persistent = persistent
        self.fail = fail or {}
        self._metadata = metadata
        self.stream = FakeStream(screen)
        self.media_type = media_type
        self.calls = []

    def _call(self, name, *args):
        self.calls.append((name,) + args)
        if name in self.fail:
            raise self.fail[name]

    def UUIDString(self):
        return UUID

    def reset(self, flags):
        self._call('reset', flags)
        return 0

    def state(self):
        self._call('state')
        return list(self.state_after_reset)

    def resume(self):
        self._call('resume')
        return 0

    def isPersistent(self):
        self._call('isPersistent')
        return 1 if self.persistent else 0

    def destroy(self):
        self._call('destroy')
        return 0

    def create(self):
        self._call('create')
        return 0

    def XMLDesc(self, flags):
        self._call('XMLDesc', flags)
        return self.xml

    def connect(self):
        return FakeConn(self.stream)

    def screenshot(self, stream, screen, flags):
        self._call('screenshot', screen)
        return self.media_type

    def metadata(self, kind, uri, flags):
        self._call('metadata', kind, uri, flags)
        if self._metadata is None:
            raise libvirt_error(libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                                'metadata not found')
        return self._metadata


@pytest.fixture(autouse=True)
def nothing_is_logged(caplog):
    caplog.set_level(logging.DEBUG)
    yield
    assert [r for r in caplog.records
            if r.name.startswith('monitor')] == []


def run_bounded(func, *args):
    """Call ``func`` on a native thread and fail the test, rather than
    hang it, when it blocks."""
    call = concurrency.NativeCall(func, *args)
    assert call.wait(10), '%s blocked' % func.__name__
    return call.result()


def names(dom):
    return [call[0] for call in dom.calls]


# -- recovery -----------------------------------------------------------------

def test_reset_resets_the_domain():
    dom = FakeDomain()

    assert libvirt_actions.act(dom, recovery.RESET) == (True, 'reset')
    assert dom.calls == [('reset', 0), ('state',)]


def test_a_reset_crashed_guest_that_libvirt_keeps_paused_is_resumed():
    dom = FakeDomain(state_after_reset=(libvirt.VIR_DOMAIN_PAUSED,
                                        libvirt.VIR_DOMAIN_PAUSED_CRASHED))

    result = libvirt_actions.reset(dom)

    assert result.ok and 'resumed' in result.detail
    assert names(dom) == ['reset', 'state', 'resume']


def test_a_guest_paused_by_someone_else_stays_paused_after_a_reset():
    dom = FakeDomain(state_after_reset=(libvirt.VIR_DOMAIN_PAUSED,
                                        libvirt.VIR_DOMAIN_PAUSED_USER))

    assert libvirt_actions.reset(dom) == (True, 'reset')
    assert names(dom) == ['reset', 'state']


def test_a_failed_resume_after_a_reset_says_why():
    dom = FakeDomain(
        state_after_reset=(libvirt.VIR_DOMAIN_PAUSED,
                           libvirt.VIR_DOMAIN_PAUSED_CRASHED),
        fail={'resume': libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED,
                                      'resume failed')})

    result = libvirt_actions.reset(dom)

    assert not result.ok and 'resume failed' in result.detail


def test_a_failed_reset_says_why():
    dom = FakeDomain(fail={'reset': libvirt_error(
        libvirt.VIR_ERR_OPERATION_INVALID, 'domain is not running')})

    result = libvirt_actions.reset(dom)

    assert not result.ok
    assert 'domain is not running (code 55)' in result.detail


def test_restart_destroys_then_starts_a_persistent_domain():
    dom = FakeDomain()

    result = libvirt_actions.act(dom, recovery.RESTART)

    assert result.ok
    assert names(dom) == ['isPersistent', 'destroy', 'create']


def test_restart_never_destroys_a_transient_domain():
    dom = FakeDomain(persistent=False)

    result = libvirt_actions.restart(dom)

    assert not result.ok
    assert 'transient' in result.detail
    assert 'destroy' not in names(dom)


def test_restart_starts_a_domain_that_is_already_off():
    dom = FakeDomain(fail={'destroy': libvirt_error(
        libvirt.VIR_ERR_OPERATION_INVALID, 'domain is not running')})

    assert libvirt_actions.restart(dom).ok
    assert names(dom)[-1] == 'create'


def test_restart_stops_when_destroy_fails_otherwise():
    dom = FakeDomain(fail={'destroy': libvirt_error(
        libvirt.VIR_ERR_SYSTEM_ERROR, 'Failed to terminate process')})

    result = libvirt_actions.restart(dom)

    assert not result.ok
    assert 'destroy' in result.detail
    assert 'create' not in names(dom)


def test_a_restart_that_cannot_start_says_the_domain_is_left_off():
    dom = FakeDomain(fail={'create': libvirt_error(
        libvirt.VIR_ERR_INTERNAL_ERROR, 'qemu unexpectedly closed')})

    result = libvirt_actions.restart(dom)

    assert not result.ok
    assert 'left shut off' in result.detail


IO_PAUSED = (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR)


def test_a_guest_paused_on_an_io_error_is_resumed():
    dom = FakeDomain(state_after_reset=IO_PAUSED)

    result = libvirt_actions.act(dom, recovery.RESUME)

    assert result == libvirt_actions.ActionResult(True, 'resumed')
    assert names(dom) == ['state', 'resume']


@pytest.mark.parametrize('state,says', [
    ((libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_UNPAUSED),
     'no longer paused'),
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER),
     'paused for another reason'),
])
def test_a_guest_no_longer_paused_on_an_io_error_is_left_alone(state, says):
    dom = FakeDomain(state_after_reset=state)

    result = libvirt_actions.resume(dom)

    assert not result.ok and says in result.detail
    assert names(dom) == ['state']


def test_a_failed_resume_says_why():
    dom = FakeDomain(state_after_reset=IO_PAUSED,
                     fail={'resume': libvirt_error(
                         libvirt.VIR_ERR_OPERATION_FAILED, 'no space')})

    result = libvirt_actions.resume(dom)

    assert not result.ok and 'resume failed' in result.detail


def test_only_recovery_actions_are_carried_out():
    with pytest.raises(ValueError):
        libvirt_actions.act(FakeDomain(), recovery.NONE)


class LookupConn:
    """A connection that finds ``dom`` by its UUID, or raises."""

    def __init__(self, dom=None):
        self.dom = dom

    def lookupByUUIDString(self, uuid):
        if self.dom is None:
            raise libvirt_error(libvirt.VIR_ERR_NO_DOMAIN, 'no domain')
        return self.dom


def test_console_evidence_finds_the_domain_and_keeps_its_console(tmp_path):
    log = tmp_path / 'console.log'
    log.write_bytes(b'Kernel panic - not syncing\n')
    xml = serial_file_xml(log).replace(
        '</devices>', "<graphics type='vnc'/></devices>")
    dom = FakeDomain(xml)
    store = EvidenceStore(str(tmp_path / 'evidence'))

    found, refs, problems = libvirt_actions.console_evidence(
        LookupConn(dom), UUID, store, 10)

    assert found.dom is dom and found.graphics and found.problem is None
    assert [ref.kind for ref in refs] == ['console'] and problems == []
    # One read of the definition serves the console and the screen test,
    # and nothing else is done to the guest.
    assert names(dom) == ['XMLDesc']


def test_console_evidence_of_an_unreadable_definition_says_why(tmp_path):
    dom = FakeDomain(fail={'XMLDesc': libvirt_error(
        libvirt.VIR_ERR_OPERATION_FAILED, 'cannot read')})

    found, refs, problems = libvirt_actions.console_evidence(
        LookupConn(dom), UUID, EvidenceStore(str(tmp_path / 'e')), 10)

    # The domain is there: the action can still be tried.
    assert found.dom is dom and refs == []
    assert len(problems) == 1 and 'cannot read' in problems[0]


@pytest.mark.parametrize('conn,detail', [
    (None, 'not connected to libvirt'),
    (LookupConn(), 'domain not found: no domain'),
])
def test_console_evidence_without_the_domain_says_why(tmp_path, conn, detail):
    store = EvidenceStore(str(tmp_path / 'evidence'))

    found, refs, problems = libvirt_actions.console_evidence(conn, UUID,
                                                             store, 10)

    assert (found.dom, found.problem, refs, problems) == (None, detail, [],
                                                          [])


# -- screenshot ------------------------------------------------------------------

def test_a_screenshot_is_read_from_the_stream():
    dom = FakeDomain(screen=[b'P6\n2 1\n255\n', b'\0' * 6])

    capture = libvirt_actions.screenshot(dom)

    assert capture.data == b'P6\n2 1\n255\n' + b'\0' * 6
    assert capture.media_type == 'image/x-portable-pixmap'
    assert dom.stream.finished


def test_a_screenshot_past_the_limit_is_dropped_and_the_stream_aborted():
    dom = FakeDomain(screen=[b'x' * 600, b'x' * 600])

    capture = libvirt_actions.screenshot(dom, max_bytes=1000)

    assert capture.data is None
    assert 'larger than 1000 bytes' in capture.detail
    assert dom.stream.aborted


def test_a_domain_without_a_screen_gives_no_screenshot():
    dom = FakeDomain(fail={'screenshot': libvirt_error(
        libvirt.VIR_ERR_OPERATION_INVALID, 'no screens to take screenshot')})

    capture = libvirt_actions.screenshot(dom)

    assert capture.data is None
    assert 'no screens' in capture.detail
    assert dom.stream.aborted


# -- console ------------------------------------------------------------------------

def serial_file_xml(path):
    return ("<domain><devices><serial type='file'><source path='%s'/>"
            "<target port='0'/></serial></devices></domain>" % path)


def test_the_last_console_lines_are_captured(tmp_path):
    log = tmp_path / 'console.log'
    log.write_bytes(b''.join(b'line %d\n' % n for n in range(1000)))

    capture = libvirt_actions.console_tail(
        FakeDomain(serial_file_xml(log)), max_lines=3)

    assert capture.data == b'line 997\nline 998\nline 999\n'
    assert capture.media_type == 'text/plain'


def test_only_the_end_of_a_huge_console_is_read(tmp_path):
    log = tmp_path / 'console.log'
    log.write_bytes(b'a' * 100 + b'\n' + b'b' * 10 + b'\nlast\n')

    data = libvirt_actions.tail_lines(str(log), max_lines=100, max_bytes=10)

    # The cut first line is dropped, never passed on half.
    assert data == b'last\n'


def test_a_console_that_is_a_fifo_is_refused_at_once(tmp_path):
    # Nobody writes to it: a blocking open would wait for ever.
    fifo = tmp_path / 'console.fifo'
    os.mkfifo(fifo)

    capture = run_bounded(libvirt_actions.console_tail,
                          FakeDomain(serial_file_xml(fifo)), 10)

    assert capture.data is None
    assert capture.detail == ('no console: %s: a FIFO, not a regular file; '
                              'not read' % fifo)


def test_a_console_that_is_a_fifo_with_a_writer_is_refused_too(tmp_path):
    fifo = tmp_path / 'console.fifo'
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # holds it open, writes nothing
    try:
        capture = run_bounded(libvirt_actions.console_tail,
                              FakeDomain(serial_file_xml(fifo)), 10)
    finally:
        os.close(writer)

    assert capture.data is None
    assert 'a FIFO, not a regular file' in capture.detail


@pytest.mark.parametrize('make, said', [
    (lambda path: os.symlink('/dev/zero', path),
     'a symbolic link, not followed'),
    (lambda path: os.mkdir(path), 'a directory, not a regular file'),
    (lambda path: socket.socket(socket.AF_UNIX).bind(str(path)),
     'not a regular file'),
])
def test_a_console_that_is_not_a_regular_file_is_never_read(tmp_path, make,
                                                             said):
    path = tmp_path / 'console.log'
    make(path)

    capture = run_bounded(libvirt_actions.console_tail,
                          FakeDomain(serial_file_xml(path)), 10)

    assert capture.data is None
    assert said in capture.detail


def test_the_next_console_is_read_when_one_is_refused(tmp_path):
    fifo = tmp_path / 'console.fifo'
    os.mkfifo(fifo)
    log = tmp_path / 'serial1.log'
    log.write_bytes(b'login:\n')
    xml = ("<domain><devices><serial type='pty'><log file='%s'/></serial>"
           "<serial type='file'><source path='%s'/></serial></devices>"
           "</domain>" % (fifo, log))

    capture = run_bounded(libvirt_actions.console_tail, FakeDomain(xml), 10)

    assert capture.data == b'login:\n'


def test_a_domain_without_a_file_console_gives_no_console():
    capture = libvirt_actions.console_tail(FakeDomain(), max_lines=10)

    assert capture.data is None
    assert 'no file-backed serial console' in capture.detail


def test_an_unreadable_console_file_says_so(tmp_path):
    capture = libvirt_actions.console_tail(
        FakeDomain(serial_file_xml(tmp_path / 'missing.log')), max_lines=10)

    assert capture.data is None
    assert 'missing.log' in capture.detail


# -- collecting evidence ----------------------------------------------------------

def test_evidence_is_captured_and_stored(tmp_path):
    log = tmp_path / 'console.log'
    log.write_bytes(b'Kernel panic - not syncing\n')
    xml = serial_file_xml(log).replace(
        '</devices>', "<graphics type='vnc'/></devices>")
    store = EvidenceStore(str(tmp_path / 'evidence'))

    refs, problems = libvirt_actions.collect_evidence(
        FakeDomain(xml, screen=[b'P6\n1 1\n255\n\0\0\0']), store, 10)

    assert problems == []
    assert [ref.kind for ref in refs] == ['console', 'screenshot']
    with open(refs[0].path, 'rb') as saved:
        assert saved.read() == b'Kernel panic - not syncing\n'
    assert refs[1].path.endswith('.ppm')


def test_a_failed_capture_is_reported_and_the_rest_still_kept(tmp_path):
    log = tmp_path / 'console.log'
    log.write_bytes(b'oops\n')
    xml = serial_file_xml(log).replace(
        '</devices>', "<graphics type='vnc'/></devices>")
    dom = FakeDomain(xml, fail={'screenshot': libvirt_error(
        libvirt.VIR_ERR_OPERATION_FAILED, 'screendump failed')})

    refs, problems = libvirt_actions.collect_evidence(
        dom, EvidenceStore(str(tmp_path / 'evidence')), 10)

    assert [ref.kind for ref in refs] == ['console']
    assert len(problems) == 1 and 'screendump failed' in problems[0]


def test_no_screenshot_is_tried_without_graphics(tmp_path):
    dom = FakeDomain()

    refs, problems = libvirt_actions.collect_evidence(
        dom, EvidenceStore(str(tmp_path / 'evidence')), 10)

    assert refs == []
    assert 'screenshot' not in names(dom)
    assert problems == ['no console: the domain has no file-backed serial '
                        'console']


def test_a_vanished_domain_gives_no_evidence_and_no_exception(tmp_path):
    dom = FakeDomain(fail={'XMLDesc': libvirt_error(
        libvirt.VIR_ERR_NO_DOMAIN, 'Domain not found')})

    refs, problems = libvirt_actions.collect_evidence(
        dom, EvidenceStore(str(tmp_path / 'evidence')), 10)

    assert refs == []
    assert 'Domain not found' in problems[0]


# -- metadata -----------------------------------------------------------------------

def test_metadata_is_read_from_our_namespace():
    dom = FakeDomain(metadata='<monitor enabled="no"/>')

    settings, error = libvirt_actions.read_settings(dom)

    assert dom.calls == [('metadata', libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                          domain_metadata.NAMESPACE, 0)]
    assert settings.enabled is False
    assert error is None


def test_no_metadata_means_no_settings_and_no_error():
    assert libvirt_actions.read_metadata(FakeDomain()) == (None, None)
    assert libvirt_actions.read_settings(FakeDomain()) == (
        domain_metadata.DEFAULTS, None)


def test_unreadable_metadata_gives_the_defaults_and_the_error():
    dom = FakeDomain(fail={'metadata': libvirt_error(
        libvirt.VIR_ERR_NO_DOMAIN, 'Domain not found')})

    settings, error = libvirt_actions.read_settings(dom)

    assert settings == domain_metadata.DEFAULTS
    assert 'Domain not found' in error


def test_invalid_metadata_gives_the_defaults_and_the_error():
    dom = FakeDomain(metadata='<monitor enabled="sometimes"/>')

    settings, error = libvirt_actions.read_settings(dom)

    assert settings == domain_metadata.DEFAULTS
    assert 'must be yes or no' in error
