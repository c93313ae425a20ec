"""The recovery ladder, driven through the tracker and the recovery step
with a fake libvirt domain: an NMI that brings the guest back ends the
ladder, one that does not is followed by the next step after nmi_grace,
every step is in the notification, one ladder is one action of the
budget, and a ladder whose every step failed raises one alarm."""

import json
import logging

import libvirt
import pytest

from monitor.daemon import recovery_ladder
from monitor.health import recovery_policy as recovery
from monitor.virt import guest_nmi
from tests.unit.daemon.test_recovery_step import FakeDomain
from tests.unit.daemon.test_recovery_step import Rig
from tests.unit.daemon.test_recovery_step import listed
from tests.unit.daemon.test_tracker import uuid

GRACE = 10


class NmiDomain(FakeDomain):
    """Comes back ``answers_after`` seconds after an NMI (None: never)."""

    def __init__(self, rig, n, answers_after=None, fail_nmi=False):
        console = rig.tmp_path / ('console-%d.log' % n)
        console.write_bytes(b'booting\n')
        super().__init__(n, str(console))
        self.rig = rig
        self.answers_after = answers_after
        self.fail_nmi = fail_nmi
        self.nmi_at = None
        rig.libvirt.connection.domains[uuid(n)] = self

    def injectNMI(self, flags):
        self.calls.append('nmi')
        if self.fail_nmi:
            raise libvirt.libvirtError('NMI not supported')
        self.nmi_at = self.rig.monotonic

    def answers(self):
        return (self.nmi_at is not None and self.answers_after is not None
                and self.rig.monotonic - self.nmi_at >= self.answers_after)


@pytest.fixture
def rig(tmp_path, monkeypatch):
    rig = Rig(tmp_path, max_actions=2)

    def sleep(seconds):
        rig.monotonic += seconds

    rig.step.ladder = recovery_ladder.Ladder(
        rig.step, (recovery.NMI, recovery.RESET), GRACE, sleep=sleep)

    def agent(dom, request, timeout, flags):
        assert json.loads(request) == {'execute': 'guest-ping'}
        if not dom.answers():
            raise libvirt.libvirtError('agent is not responding')
        return '{"return": {}}'

    monkeypatch.setattr(guest_nmi.libvirt_qemu, 'qemuAgentCommand', agent)
    yield rig
    rig.close()


def recover(rig, n=1):
    domains = listed(n, 2, 3)
    rig.host.sweep(domains)
    rig.fail(domains, n)
    rig.spawned.run_all()
    [due] = rig.outbox.due(1e12)
    return due.notification.details['recovery']


def steps(report):
    return [(step['action'], step['result']) for step in report['steps']]


def test_an_nmi_that_brings_the_guest_back_ends_the_ladder(rig):
    dom = NmiDomain(rig, 1, answers_after=4)

    report = recover(rig)

    assert dom.calls == ['nmi']
    assert steps(report) == [('nmi', 'done')]
    assert (report['action'], report['result']) == ('nmi', 'done')


def test_a_guest_still_silent_after_nmi_grace_gets_the_next_step(rig):
    dom = NmiDomain(rig, 1, answers_after=None)

    report = recover(rig)

    assert dom.calls == ['nmi', 'reset']
    assert steps(report) == [('nmi', 'failed'), ('reset', 'done')]
    assert 'nmi_grace %d s' % GRACE in report['steps'][0]['detail']
    assert all(step['at'].endswith('Z') for step in report['steps'])


def test_a_failed_injection_goes_to_the_next_step_at_once(rig):
    dom = NmiDomain(rig, 1, fail_nmi=True)
    before = rig.monotonic

    report = recover(rig)

    assert dom.calls == ['nmi', 'reset']
    assert 'NMI not supported' in report['steps'][0]['detail']
    assert rig.monotonic == before


def test_every_step_failing_is_one_alarm_and_a_failed_recovery(rig, caplog):
    caplog.set_level(logging.INFO, logger='monitor')
    dom = NmiDomain(rig, 1)
    dom.fail_reset = True

    report = recover(rig)

    assert steps(report) == [('nmi', 'failed'), ('reset', 'failed')]
    assert report['result'] == recovery.RESULT_FAILED
    alarms = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith('ALARM')]
    assert len(alarms) == 1
    assert 'recovery ladder (nmi, reset)' in alarms[0]


def test_the_budget_counts_ladders_not_steps(rig):
    NmiDomain(rig, 1)

    recover(rig)

    assert len(rig.step.history.get(uuid(1))) == 1


def test_a_domain_with_its_own_action_gets_that_one_step(rig):
    assert rig.step.action_for(uuid(1), 'vm', None) == recovery.LADDER
    assert rig.step.action_for(uuid(1), 'vm', 'restart') == 'restart'
    assert rig.step.action_for(uuid(1), 'vm', 'none') == 'none'


def test_a_ladder_may_hold_its_slot_for_its_steps_and_graces(rig):
    assert rig.step.ladder.bound() == 2 * rig.step.deadlines.step + GRACE


def test_a_one_step_recovery_has_no_steps_in_its_report():
    report = recovery.RecoveryReport('reset', 'done', 'reset')

    assert report.to_dict() == {'action': 'reset', 'result': 'done',
                                'detail': 'reset'}
    assert recovery.RecoveryReport.from_dict(report.to_dict()) == report
