"""The probes' agent calls: guest-exec with at most one command in flight,
a bounded heartbeat read that always closes its handle, and an agent that
refuses the commands making the probe unavailable, not failed. Replies
come from a stand-in for ``libvirt_qemu.qemuAgentCommand``."""

import base64
import json

import libvirt
import pytest

from monitor.health import probes
from monitor.health.probes import Outcome
from monitor.virt import guest_probes
from tests.unit.virt.libvirt_node import libvirt_error

EXEC = probes.probe_from_attributes(
    {'name': 'db', 'kind': 'exec', 'path': '/bin/check'}, ['-q']).spec
HEARTBEAT = probes.probe_from_attributes(
    {'name': 'hb', 'kind': 'heartbeat', 'file': '/run/hb',
     'max_age': '30'}).spec
DISABLED = libvirt_error(
    libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU,
    "internal error: unable to execute QEMU agent command 'guest-exec': "
    "Command guest-exec has been disabled")
NO_FILE = libvirt_error(
    libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU,
    "internal error: unable to execute QEMU agent command 'guest-file-open'"
    ": failed to open file '/run/hb' (mode: 'r'): No such file or directory")
SILENT = libvirt_error(libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                       libvirt.VIR_FROM_QEMU, 'agent is not responding')


class Agent:
    """Answers each command from ``replies[execute]``: a list taken in
    order (the last one repeats), each a return value or an exception."""

    def __init__(self, **replies):
        self.replies = {key.replace('_', '-'): list(value)
                        for key, value in replies.items()}
        self.calls = []

    def __call__(self, dom, request, timeout, flags):
        command = json.loads(request)
        self.calls.append((command['execute'], command.get('arguments'),
                           timeout))
        queue = self.replies[command['execute']]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        return json.dumps({'return': reply})

    def executed(self):
        return [call[0] for call in self.calls]


class Conn:
    def lookupByUUIDString(self, uuid):
        return object()


@pytest.fixture
def agent(monkeypatch):
    def install(**replies):
        stand_in = Agent(**replies)
        monkeypatch.setattr(guest_probes.libvirt_qemu, 'qemuAgentCommand',
                            stand_in)
        monkeypatch.setattr(guest_probes, 'STATUS_POLL', 0)
        return stand_in
    return install


def b64(data):
    return base64.b64encode(data).decode()


def test_a_command_is_started_with_its_arguments_and_output_captured(agent):
    stand_in = agent(guest_exec=[{'pid': 7}], guest_exec_status=[
        {'exited': True, 'exitcode': 0, 'out-data': b64(b'fine')}])

    result = guest_probes.run(Conn(), 'u', EXEC)

    assert result.outcome is Outcome.PASSED
    assert result.output == 'fine'
    assert stand_in.calls[0] == ('guest-exec', {
        'path': '/bin/check', 'arg': ['-q'], 'capture-output': True}, 1)


def test_a_command_that_exits_1_fails_with_its_output(agent):
    agent(guest_exec=[{'pid': 7}], guest_exec_status=[
        {'exited': True, 'exitcode': 1, 'out-data': b64(b'down'),
         'err-data': b64(b'!')}])

    result = guest_probes.run(Conn(), 'u', EXEC)

    assert result.outcome is Outcome.FAILED
    assert result.exit_code == 1
    assert result.output == 'down!'


def test_a_command_still_running_at_its_timeout_stays_in_flight(agent):
    agent(guest_exec=[{'pid': 7}], guest_exec_status=[{'exited': False}])

    result = guest_probes.run(Conn(), 'u', EXEC)

    assert result.outcome is Outcome.FAILED
    assert result.in_flight == 7


def test_no_second_command_starts_while_the_first_runs(agent):
    stand_in = agent(guest_exec=[{'pid': 8}],
                     guest_exec_status=[{'exited': False}])

    result = guest_probes.run(Conn(), 'u', EXEC, in_flight=7)

    assert stand_in.executed() == ['guest-exec-status']
    assert result.outcome is Outcome.FAILED
    assert result.in_flight == 7


def test_a_new_command_starts_once_the_first_has_ended(agent):
    stand_in = agent(guest_exec=[{'pid': 8}], guest_exec_status=[
        {'exited': True, 'exitcode': 1},
        {'exited': True, 'exitcode': 0}])

    result = guest_probes.run(Conn(), 'u', EXEC, in_flight=7)

    assert stand_in.executed() == ['guest-exec-status', 'guest-exec',
                                   'guest-exec-status']
    assert stand_in.calls[2][1] == {'pid': 8}
    assert result.outcome is Outcome.PASSED
    assert result.in_flight is None


def test_an_agent_that_refuses_guest_exec_makes_the_probe_unavailable(agent):
    agent(guest_exec=[DISABLED])

    result = guest_probes.run(Conn(), 'u', EXEC)

    assert result.outcome is Outcome.UNAVAILABLE
    assert 'has been disabled' in result.detail


def test_an_agent_that_does_not_answer_says_nothing_of_the_application(
        agent):
    agent(guest_exec=[SILENT])

    assert guest_probes.run(Conn(), 'u', EXEC).outcome is Outcome.UNKNOWN


def nanoseconds(seconds):
    return int(seconds * 10**9)


def heartbeat_agent(agent, beat, guest_time):
    """An agent whose heartbeat file holds ``beat`` and whose
    guest-get-time answers ``guest_time`` (a reply or an exception)."""
    return agent(guest_file_open=[1000],
                 guest_file_read=[{'buf-b64': b64(b'%d\n' % beat),
                                   'eof': True}],
                 guest_get_time=[guest_time], guest_file_close=[{}])


def test_a_heartbeat_is_read_bounded_and_its_handle_closed(agent):
    stand_in = heartbeat_agent(agent, 1000, nanoseconds(1010))

    result = guest_probes.run(Conn(), 'u', HEARTBEAT, clock=lambda: 1010)

    assert result.outcome is Outcome.PASSED
    assert stand_in.calls[1][1] == {'handle': 1000, 'count': 64}
    assert stand_in.executed() == ['guest-file-open', 'guest-file-read',
                                   'guest-get-time', 'guest-file-close']
    # A command without arguments is sent without any.
    assert stand_in.calls[2][1] is None


def test_a_heartbeat_that_stopped_fails(agent):
    heartbeat_agent(agent, 1000, nanoseconds(1100))

    result = guest_probes.run(Conn(), 'u', HEARTBEAT, clock=lambda: 1100)

    assert result.outcome is Outcome.FAILED


def test_a_live_heartbeat_in_a_guest_whose_clock_is_behind_passes(agent):
    # Written 5 s ago by the guest's clock, an hour behind the host's.
    heartbeat_agent(agent, 1000, nanoseconds(1005))

    result = guest_probes.run(Conn(), 'u', HEARTBEAT,
                              clock=lambda: 1005 + 3600)

    assert result.outcome is Outcome.PASSED
    assert result.detail == 'heartbeat in /run/hb is 5 s old'


def test_a_stopped_heartbeat_in_a_guest_whose_clock_is_ahead_fails(agent):
    # Written 100 s ago by the guest's clock, an hour ahead of the host's:
    # by the host's clock it would be written in the future.
    heartbeat_agent(agent, 1000 + 3600, nanoseconds(1100 + 3600))

    result = guest_probes.run(Conn(), 'u', HEARTBEAT, clock=lambda: 1100)

    assert result.outcome is Outcome.FAILED
    assert 'is 100 s old, more than max_age 30 s' in result.detail


@pytest.mark.parametrize('guest_time', [
    libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU,
                  "internal error: unable to execute QEMU agent command "
                  "'guest-get-time': Command guest-get-time has been "
                  "disabled"),
    'soon', -1, True, 1.5e18, None, [1], {'seconds': 1}])
def test_without_the_guests_time_the_hosts_clock_judges_and_is_named(
        agent, guest_time):
    heartbeat_agent(agent, 1000, guest_time)

    result = guest_probes.run(Conn(), 'u', HEARTBEAT, clock=lambda: 1100)

    assert result.outcome is Outcome.FAILED
    assert result.detail == ("heartbeat in /run/hb is 100 s old by the "
                             "host's clock, more than max_age 30 s")


def test_an_agent_silent_at_the_guests_time_says_nothing_and_closes(agent):
    stand_in = heartbeat_agent(agent, 1000, SILENT)

    result = guest_probes.run(Conn(), 'u', HEARTBEAT, clock=lambda: 1100)

    assert result.outcome is Outcome.UNKNOWN
    assert stand_in.executed()[-1] == 'guest-file-close'


def test_a_missing_heartbeat_file_fails(agent):
    agent(guest_file_open=[NO_FILE])

    result = guest_probes.run(Conn(), 'u', HEARTBEAT)

    assert result.outcome is Outcome.FAILED
    assert 'No such file' in result.detail


def test_the_handle_is_closed_when_the_read_fails(agent):
    stand_in = agent(guest_file_open=[1000], guest_file_read=[SILENT],
                     guest_file_close=[{}])

    guest_probes.run(Conn(), 'u', HEARTBEAT)

    assert stand_in.executed()[-1] == 'guest-file-close'


def test_no_connection_says_nothing_of_the_application():
    assert guest_probes.run(None, 'u', EXEC, in_flight=3) == \
        probes.ProbeResult(Outcome.UNKNOWN, 'not connected to libvirt',
                           in_flight=3)


@pytest.mark.parametrize('message, refused', [
    ('Command guest-exec has been disabled', True),
    ('The command guest-exec has not been found', True),
    ('failed to open file', False),
])
def test_what_counts_as_a_refused_command(message, refused):
    assert guest_probes.refused(message) is refused
