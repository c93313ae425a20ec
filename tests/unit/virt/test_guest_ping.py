"""The guest-ping: every outcome typed, one libvirt call, anything raised
for one domain an error of that domain, never an exception. The test
driver cannot run agent commands; replies and agent errors come from a
stand-in for ``libvirt_qemu.qemuAgentCommand``."""

import json
import time

import libvirt
import pytest

from monitor.health.ping_outcome import Outcome
from monitor.virt import guest_ping
from monitor.virt import notes as notes_mod
from tests.unit.virt.libvirt_node import CRASHED
from tests.unit.virt.libvirt_node import PAUSED
from tests.unit.virt.libvirt_node import PLAIN
from tests.unit.virt.libvirt_node import UNEXPECTED
from tests.unit.virt.libvirt_node import UNKNOWN
from tests.unit.virt.libvirt_node import WITH_AGENT
from tests.unit.virt.libvirt_node import by_uuid
from tests.unit.virt.libvirt_node import libvirt_error
from tests.unit.virt.libvirt_node import notes_of


def test_a_driver_that_cannot_run_agent_commands_means_no_agent(connected):
    before = time.time()
    result = connected.ping(WITH_AGENT, 2)

    assert result.outcome is Outcome.NO_AGENT
    assert 'not supported' in result.detail
    assert 'code %d' % libvirt.VIR_ERR_NO_SUPPORT in result.detail
    assert before <= result.started_at <= time.time()
    assert result.duration >= 0


def test_an_answered_ping_is_ok(connected, agent):
    stand_in = agent(reply='{"return": {}}')

    result = connected.ping(WITH_AGENT, 2)

    assert (result.outcome, result.detail) == (Outcome.OK, 'ok')
    assert stand_in.calls == [
        (WITH_AGENT, {'execute': 'guest-ping'}, 2, 0)]


@pytest.mark.parametrize('timeout, sent', [(0.3, 1), (2.7, 2), (5, 5)])
def test_the_timeout_is_whole_seconds_and_at_least_one(connected, agent,
                                                       timeout, sent):
    stand_in = agent(reply='{"return": {}}')
    connected.ping(WITH_AGENT, timeout)
    assert stand_in.calls[0][2] == sent


def test_a_garbage_reply_is_a_miss(connected, agent):
    agent(reply='{"error": {"class": "CommandNotFound"}}')
    result = connected.ping(WITH_AGENT, 2)
    assert result.outcome is Outcome.MISSED
    assert 'CommandNotFound' in result.detail


def test_an_unresponsive_agent_is_a_miss(connected, agent):
    agent(error=libvirt_error(
        libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_FROM_QEMU,
        'Guest agent is not responding: QEMU guest agent is not connected'))

    result = connected.ping(WITH_AGENT, 2)

    assert result.outcome is Outcome.MISSED
    assert 'not responding' in result.detail
    assert 'code %d' % libvirt.VIR_ERR_AGENT_UNRESPONSIVE in result.detail


def test_a_domain_not_running_is_not_a_miss(connected, agent):
    agent(error=libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID,
                              libvirt.VIR_FROM_QEMU,
                              'domain is not running'))
    assert connected.ping(PAUSED, 2).outcome is Outcome.NOT_RUNNING


def test_a_domain_that_no_longer_exists_is_gone(connected, agent):
    stand_in = agent(reply='{"return": {}}')

    result = connected.ping(UNKNOWN, 2)

    assert result.outcome is Outcome.GONE
    assert stand_in.calls == []  # the lookup already failed


def test_a_miss_on_a_connection_that_died_meanwhile_is_a_disconnect(
        connected, agent):
    # The connection dies while the ping waits; libvirt reports the RPC
    # failure with a code that would otherwise be the guest's miss.
    agent(before=lambda: connected.connection.close(),
          error=libvirt_error(libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                              libvirt.VIR_FROM_QEMU, 'no answer'))

    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.DISCONNECTED


def test_a_miss_on_a_live_connection_stays_a_miss(connected, agent):
    agent(error=libvirt_error(9999, libvirt.VIR_FROM_QEMU, 'new error'))
    assert connected.is_alive()
    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.MISSED


def test_an_rpc_failure_is_a_disconnect(connected, agent):
    agent(error=libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR,
                              libvirt.VIR_FROM_RPC,
                              'Cannot recv data: Connection reset by peer'))
    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.DISCONNECTED


def test_ping_without_a_connection_is_a_disconnect(host):
    result = host.ping(WITH_AGENT, 2)
    assert result.outcome is Outcome.DISCONNECTED


def test_a_crashed_domain_is_a_miss_not_a_stopped_one(crashed_host, agent):
    agent(error=libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID,
                              libvirt.VIR_FROM_QEMU,
                              'domain is not running'))
    result = crashed_host.ping(CRASHED, 2)
    assert result.outcome is Outcome.MISSED
    assert 'crashed' in result.detail


def test_a_ping_reuses_the_domain_object_of_the_listing(connected, agent,
                                                        calls):
    stand_in = agent(reply='{"return": {}}')
    info = by_uuid(connected.list_domains())[WITH_AGENT]
    calls.clear()

    result = connected.ping(info, 2)

    assert result.outcome is Outcome.OK
    assert calls == {}
    assert stand_in.calls[0][0] == WITH_AGENT


@pytest.mark.parametrize('exc', UNEXPECTED, ids=lambda e: type(e).__name__)
def test_anything_raised_by_the_agent_command_is_an_error_not_a_miss(
        connected, agent, exc):
    agent(error=exc)
    info = by_uuid(connected.list_domains())[WITH_AGENT]

    result = connected.ping(info, 2)

    assert result.outcome is Outcome.ERROR
    assert result.error_kind == type(exc).__name__
    [note] = notes_of(connected)
    assert (note.stage, note.uuid, note.name, note.kind) == (
        'ping', WITH_AGENT, 'with-agent', type(exc).__name__)


@pytest.mark.parametrize('exc', UNEXPECTED, ids=lambda e: type(e).__name__)
def test_anything_raised_looking_a_domain_up_is_an_error(connected, agent,
                                                         monkeypatch, exc):
    agent(reply='{"return": {}}')

    def lookup(self, uuid):
        raise exc

    monkeypatch.setattr(libvirt.virConnect, 'lookupByUUIDString', lookup)

    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.ERROR


def test_anything_raised_classifying_a_reply_is_an_error(connected, agent,
                                                          monkeypatch):
    agent(reply='{"return": {}}')

    def classify(reply):
        raise OverflowError('cannot classify')

    monkeypatch.setattr(guest_ping.ping_outcome, 'classify_reply',
                        classify)

    result = connected.ping(WITH_AGENT, 2)
    assert (result.outcome, result.error_kind) == (Outcome.ERROR,
                                                    'OverflowError')


@pytest.mark.parametrize('reply', [
    '[' * 100000 + ']' * 100000,
    '{"return": %s}' % ('9' * 100000),
    '{"return": {}, "x": "%s"}' % ('a' * 1000000),
], ids=['deeply-nested', 'huge-number', 'huge'])
def test_a_hostile_agent_reply_is_a_miss_and_never_raises(connected, agent,
                                                          reply):
    agent(reply=reply)
    assert connected.ping(WITH_AGENT, 2).outcome is Outcome.MISSED


def test_one_domain_raising_leaves_the_others_pinged(connected, monkeypatch):
    replies = {WITH_AGENT: RecursionError('deep'), PLAIN: '{"return": {}}',
               PAUSED: '{"return": {}}'}

    def command(dom, command, timeout, flags):
        reply = replies[dom.UUIDString()]
        if isinstance(reply, Exception):
            raise reply
        return reply

    monkeypatch.setattr(guest_ping.libvirt_qemu, 'qemuAgentCommand',
                        command)

    outcomes = {info.uuid: connected.ping(info, 2).outcome
                for info in connected.list_domains()}

    assert outcomes == {WITH_AGENT: Outcome.ERROR, PLAIN: Outcome.OK,
                        PAUSED: Outcome.OK}


def test_an_error_pinging_by_uuid_still_names_the_domain(connected, agent):
    agent(error=RecursionError('deep'))

    connected.ping(WITH_AGENT, 2)

    [note] = notes_of(connected)
    assert (note.uuid, note.name) == (WITH_AGENT, 'with-agent')


class FrozenAgent:
    """qemu-ga with frozen filesystems: answers guest-ping, and
    guest-fsfreeze-status with ``status`` (a reply, or an exception)."""

    def __init__(self, status='{"return": "frozen"}'):
        self.status = status
        self.commands = []

    def __call__(self, dom, command, timeout, flags):
        name = json.loads(command)['execute']
        self.commands.append(name)
        if name == 'guest-ping':
            return '{"return": {}}'
        if isinstance(self.status, Exception):
            raise self.status
        return self.status


@pytest.fixture
def freeze_pinger(monkeypatch, connected):
    """Factory: a GuestPing on a clock the test moves, its agent a
    FrozenAgent; returns (ping, agent, clock)."""
    def make(status='{"return": "frozen"}'):
        stand_in = FrozenAgent(status)
        monkeypatch.setattr(guest_ping.libvirt_qemu, 'qemuAgentCommand',
                            stand_in)
        clock = [1000.0]
        pinger = guest_ping.GuestPing(notes_mod.Notes(),
                                      clock=lambda: clock[0])

        def ping():
            return pinger.ping(connected.connection, WITH_AGENT, 1)
        return ping, stand_in, clock
    return make


def test_the_first_ping_of_a_domain_does_not_ask_its_freeze_status(
        freeze_pinger):
    ping, stand_in, _clock = freeze_pinger()

    result = ping()

    assert (result.outcome, result.frozen) == (Outcome.OK, None)
    assert stand_in.commands == ['guest-ping']


def test_the_freeze_status_is_asked_once_per_check_interval(freeze_pinger):
    ping, stand_in, clock = freeze_pinger('{"return": "thawed"}')
    ping()
    clock[0] += guest_ping.FREEZE_CHECK_INTERVAL - 1
    assert ping().frozen is None
    clock[0] += 1

    assert ping().frozen is False
    assert ping().frozen is None  # checked just now
    assert stand_in.commands == ['guest-ping'] * 3 + [
        'guest-fsfreeze-status', 'guest-ping']


def test_a_frozen_guest_answers_its_ping_and_is_checked_at_every_ping(
        freeze_pinger):
    ping, stand_in, clock = freeze_pinger()
    ping()
    clock[0] += guest_ping.FREEZE_CHECK_INTERVAL

    first, second = ping(), ping()

    assert (first.outcome, first.frozen) == (Outcome.OK, True)
    assert (second.outcome, second.frozen) == (Outcome.OK, True)
    assert stand_in.commands.count('guest-fsfreeze-status') == 2


@pytest.mark.parametrize('status', [
    libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU,
                  "unable to execute QEMU agent command "
                  "'guest-fsfreeze-status': Command guest-fsfreeze-status "
                  "has been disabled"),
    '{"error": {"class": "CommandNotFound"}}',
    '{"return": "error"}',
], ids=['disabled', 'not-found', 'odd-status'])
def test_an_agent_that_cannot_tell_its_freeze_status_is_still_answered(
        freeze_pinger, status):
    ping, _stand_in, clock = freeze_pinger(status)
    ping()
    clock[0] += guest_ping.FREEZE_CHECK_INTERVAL

    result = ping()

    assert (result.outcome, result.frozen) == (Outcome.OK, None)


def test_a_ping_libvirt_held_behind_another_agent_command_is_busy(
        connected, agent):
    agent(error=libvirt_error(
        libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_FROM_NONE,
        'Timed out during operation: cannot acquire state change lock '
        '(held by agent=remoteDispatchDomainFSFreeze)'))

    result = connected.ping(WITH_AGENT, 1)

    assert result.outcome is Outcome.BUSY
    assert 'held by agent=remoteDispatchDomainFSFreeze' in result.detail


def test_domains_long_unpinged_are_forgotten_in_one_pass_per_interval(
        monkeypatch):
    monkeypatch.setattr(guest_ping, '_FREEZE_MEMORY', 3)
    clock = [1000.0]
    pinger = guest_ping.GuestPing(notes_mod.Notes(), clock=lambda: clock[0])
    scans = []
    seen = pinger._freeze_seen

    class CountingDict(dict):
        def items(self):
            scans.append(clock[0])
            return super().items()

    pinger._freeze_seen = CountingDict(seen)
    for uuid in ('old-1', 'old-2', 'old-3'):
        pinger._remember(uuid, (clock[0], False))
    clock[0] += 10 * guest_ping.FREEZE_CHECK_INTERVAL + 1

    pinger._remember('new-1', (clock[0], False))
    for n in range(50):  # a host with more domains than the bound
        pinger._remember('new-%d' % (n + 2), (clock[0], False))

    assert not {'old-1', 'old-2', 'old-3'} & set(pinger._freeze_seen)
    assert len(scans) == 1
