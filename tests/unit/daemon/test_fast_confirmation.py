"""Fast confirmation: a suspect's agent response timeout lowered for its
confirmation, journalled first, and put back when the confirmation ends,
when the daemon stops, or at the next start."""

import json
import logging

import libvirt
import pytest

from monitor.daemon import fast_confirmation as fast_mod
from monitor.health import ping_outcome
from monitor.health.ping_outcome import Outcome
from monitor.store import agent_timeouts
from monitor.virt import domains as libvirt_domains

UUID = '11111111-1111-4111-8111-111111111111'
NAME = 'vm-1'


def status_text(seconds):
    return ('<domstatus state="running">\n  <agentTimeout>%d</agentTimeout>'
            '\n  <domain type="qemu"/>\n</domstatus>\n' % seconds)


class FakeDom:
    """A domain whose agent timeout lives in a status file, as with
    libvirt's QEMU driver; checks that the journal holds the previous
    value before anything is lowered."""

    def __init__(self, status_dir, journal_path, seconds=-2, dom_id=7):
        self.status = status_dir / (NAME + '.xml')
        self.status.write_text(status_text(seconds))
        self.journal_path = journal_path
        self.dom_id = dom_id
        self.sets = []
        self.fail = None
        self.journalled_at_set = []

    def name(self):
        return NAME

    def ID(self):  # noqa: N802 - the binding's name
        return self.dom_id

    def agentSetResponseTimeout(self, seconds, flags):  # noqa: N802
        if self.fail is not None:
            raise self.fail
        self.journalled_at_set.append(
            json.loads(self.journal_path.read_text()) if
            self.journal_path.exists() else {})
        self.sets.append(seconds)
        self.status.write_text(status_text(seconds))
        return 0


class NoDomain(libvirt.libvirtError):
    def __init__(self):
        super().__init__('Domain not found')

    def get_error_code(self):
        return libvirt.VIR_ERR_NO_DOMAIN


class FakeConnection:
    def __init__(self, dom):
        self.dom = dom

    def lookupByUUIDString(self, uuid):  # noqa: N802
        if self.dom is None:
            raise NoDomain()
        return self.dom


class FakeHost:
    def __init__(self, dom, outcomes=()):
        self.outcomes = list(outcomes)
        self.connection = FakeConnection(dom)
        self.pinged = []

    def ping(self, info, timeout):
        self.pinged.append((info.uuid, timeout))
        outcome = self.outcomes.pop(0) if self.outcomes else Outcome.MISSED
        return ping_outcome.PingResult(outcome, '', 0.0, 1.0)


def info(dom):
    return libvirt_domains.DomainInfo(UUID, NAME, True, False, object(),
                                      dom=dom)


@pytest.fixture
def journal_path(tmp_path):
    return tmp_path / 'state' / agent_timeouts.FILE_NAME


@pytest.fixture
def dom(tmp_path, journal_path):
    (tmp_path / 'state').mkdir()
    (tmp_path / 'run').mkdir()
    return FakeDom(tmp_path / 'run', journal_path)


def make(dom, journal_path, outcomes=(), enabled=True, status_dir=None):
    host = FakeHost(dom, outcomes)
    journal = agent_timeouts.AgentTimeoutJournal(str(journal_path))
    return fast_mod.FastConfirmation(
        host, journal, ping_timeout=2, enabled=enabled,
        status_dir=str(status_dir or dom.status.parent)), host


def settled(fast, confirming=()):
    """Settle and wait for the restores it started."""
    fast.settle(set(confirming))
    if fast._restoring is not None:
        assert fast._restoring.wait(5)
    fast.settle(set(confirming))


def test_a_confirmation_ping_lowers_the_timeout_after_journalling_it(
        dom, journal_path):
    fast, host = make(dom, journal_path)

    result = fast.ping(info(dom), 2)

    assert result.outcome is Outcome.MISSED
    assert dom.sets == [2]
    [journalled] = dom.journalled_at_set
    assert journalled[UUID]['previous'] == -2
    assert journalled[UUID]['known'] is True
    assert host.pinged == [(UUID, 2)]


def test_it_is_lowered_once_per_confirmation(dom, journal_path):
    fast, _host = make(dom, journal_path)

    fast.ping(info(dom), 2)
    fast.ping(info(dom), 2)

    assert dom.sets == [2]


def test_an_answer_restores_the_previous_timeout_at_once(
        dom, journal_path, caplog):
    fast, _host = make(dom, journal_path,
                       outcomes=[Outcome.MISSED, Outcome.OK])
    caplog.set_level(logging.INFO)

    fast.ping(info(dom), 2)
    fast.ping(info(dom), 2)
    fast.settle({UUID})

    assert dom.sets == [2, -2]
    assert fast.lowered == {}
    assert json.loads(journal_path.read_text()) == {}
    assert 'Domain vm-1 (%s): agent response timeout restored to block ' \
           '(-2)' % UUID in caplog.text


def test_a_domain_no_longer_confirmed_gets_its_timeout_back(
        dom, journal_path):
    fast, _host = make(dom, journal_path)
    fast.ping(info(dom), 2)

    settled(fast, confirming={UUID})
    assert dom.sets == [2]

    settled(fast, confirming=())
    assert dom.sets == [2, -2]
    assert fast.lowered == {}


def test_a_restart_restores_what_the_killed_daemon_lowered(
        dom, journal_path):
    killed, _host = make(dom, journal_path)
    killed.ping(info(dom), 2)

    started, _host = make(dom, journal_path)
    assert set(started.lowered) == {UUID}
    settled(started)

    assert dom.sets == [2, -2]
    assert json.loads(journal_path.read_text()) == {}


def test_it_restores_even_when_fast_confirmation_was_turned_off_since(
        dom, journal_path):
    killed, _host = make(dom, journal_path)
    killed.ping(info(dom), 2)

    started, _host = make(dom, journal_path, enabled=False)
    settled(started)

    assert dom.sets == [2, -2]


def test_turned_off_it_never_lowers(dom, journal_path):
    fast, host = make(dom, journal_path, enabled=False)

    fast.ping(info(dom), 2)

    assert dom.sets == []
    assert host.pinged == [(UUID, 2)]
    assert not journal_path.exists()


def test_a_domain_started_again_since_is_left_alone(dom, journal_path):
    killed, _host = make(dom, journal_path)
    killed.ping(info(dom), 2)
    dom.dom_id = 8

    started, _host = make(dom, journal_path)
    settled(started)

    assert dom.sets == [2]
    assert started.lowered == {}


def test_a_timeout_somebody_else_changed_meanwhile_is_left_alone(
        dom, journal_path):
    fast, _host = make(dom, journal_path)
    fast.ping(info(dom), 2)
    dom.status.write_text(status_text(30))

    settled(fast)

    assert dom.sets == [2]
    assert fast.lowered == {}


def test_a_domain_gone_meanwhile_is_forgotten(dom, journal_path):
    killed, _host = make(dom, journal_path)
    killed.ping(info(dom), 2)

    started, host = make(dom, journal_path)
    host.connection.dom = None
    settled(started)

    assert started.lowered == {}


def test_a_timeout_that_cannot_be_read_is_assumed_the_default(
        dom, journal_path, tmp_path):
    fast, _host = make(dom, journal_path, status_dir=tmp_path / 'elsewhere')

    fast.ping(info(dom), 2)
    settled(fast)

    assert dom.sets == [2, -1]
    assert dom.journalled_at_set[0][UUID]['known'] is False


def test_a_timeout_already_as_short_is_left_alone(dom, journal_path):
    dom.status.write_text(status_text(1))
    fast, _host = make(dom, journal_path)

    fast.ping(info(dom), 2)

    assert dom.sets == []
    assert fast.lowered == {}


def test_a_refused_lowering_leaves_nothing_to_restore_and_still_pings(
        dom, journal_path, caplog):
    dom.fail = libvirt.libvirtError('not supported')
    fast, host = make(dom, journal_path)

    result = fast.ping(info(dom), 2)
    fast.settle(set())

    assert result.outcome is Outcome.MISSED
    assert host.pinged == [(UUID, 2)]
    assert fast.lowered == {}
    assert 'cannot lower its agent response timeout' in caplog.text


def test_a_failed_restore_is_tried_again_at_the_next_round(
        dom, journal_path, caplog):
    fast, _host = make(dom, journal_path)
    fast.ping(info(dom), 2)
    dom.fail = libvirt.libvirtError('internal error')

    settled(fast)
    assert set(fast.lowered) == {UUID}
    assert 'tried again later' in caplog.text

    dom.fail = None
    settled(fast)
    assert dom.sets == [2, -2]
    assert fast.lowered == {}


def test_a_stop_restores_every_lowered_timeout(dom, journal_path):
    fast, _host = make(dom, journal_path)
    fast.ping(info(dom), 2)

    fast.restore_all(timeout=2.0)

    assert dom.sets == [2, -2]
    assert fast.lowered == {}


def test_a_stop_that_cannot_restore_says_the_next_start_will(
        dom, journal_path, caplog):
    fast, _host = make(dom, journal_path)
    fast.ping(info(dom), 2)
    dom.fail = libvirt.libvirtError('internal error')

    fast.restore_all(timeout=1.0)

    assert set(fast.lowered) == {UUID}
    assert 'restored at the next start' in caplog.text


class Conf:
    class monitor:  # noqa: N801 - stands in for an option group
        ping_timeout = 2
        fast_confirmation = True
        agent_status_dir = '/run/libvirt/qemu'

    def __init__(self, state_path):
        self.state_path = state_path


def test_status_files_are_read_only_for_a_local_libvirt(tmp_path):
    conf = Conf(str(tmp_path))
    for uri, local in (('qemu:///system', True),
                       ('qemu+ssh://other/system', False)):
        host = FakeHost(None)
        host.uri = uri
        fast = fast_mod.FastConfirmation.from_conf(conf, host)
        assert (fast._status_dir is not None) is local, uri
