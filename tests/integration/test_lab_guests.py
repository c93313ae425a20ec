"""The lab's guests fail the way production guests do, as seen from the host.

Each guest is a real QEMU domain under libvirtd running qemu-ga; faults are
injected from inside the guest through its control channel, and every
observation goes through libvirt, as the monitor's do.

Tests that bring their guests back to answering share them
(``shared_guests``); those that leave a guest crashed or off, below them,
start their own (``lab_guests``).
"""

import os

import libvirt
import libvirt_qemu
import pytest

from lab import guests
from monitor.health import ping_outcome

pytestmark = pytest.mark.integration

PONG = {'return': {}}
PING_TIMEOUT = 2


def ping_error_code(guest):
    with pytest.raises(libvirt.libvirtError) as failure:
        guest.ping(PING_TIMEOUT)
    return failure.value.get_error_code()


def test_every_started_guest_answers_guest_ping(shared_guests):
    started = shared_guests(3)

    assert len({guest.uuid for guest in started}) == 3
    for guest in started:
        assert guest.name.startswith(guests.NAME_PREFIX)
        assert guest.dom.UUIDString() == guest.uuid
        assert guest.agent_state() == 'connected'
        assert guest.ping(PING_TIMEOUT) == PONG


def test_a_healthy_agents_replies_are_text_the_monitor_knows_undecoded(
        shared_guests):
    # The monitor looks a healthy reply up as text before decoding any
    # (once per ping): libvirt's own wording must be among those it knows.
    guest, = shared_guests(1)

    ping = libvirt_qemu.qemuAgentCommand(
        guest.dom, '{"execute":"guest-ping"}', PING_TIMEOUT, 0)
    freeze = libvirt_qemu.qemuAgentCommand(
        guest.dom, '{"execute":"guest-fsfreeze-status"}', PING_TIMEOUT, 0)

    assert ping in ping_outcome.HEALTHY_REPLIES
    assert ping_outcome.FREEZE_REPLIES.get(freeze) == 'thawed'


def test_hung_agent_is_unresponsive_while_other_guests_answer(shared_guests):
    hung, *others = shared_guests(3)

    hung.control('agent-hang')

    assert ping_error_code(hung) == libvirt.VIR_ERR_AGENT_UNRESPONSIVE
    # A stopped qemu-ga keeps its port open: only a ping tells it is gone.
    assert hung.agent_state() == 'connected'
    for guest in others:
        assert guest.ping(PING_TIMEOUT) == PONG

    hung.control('agent-resume')

    assert hung.wait_pingable(timeout=15) == PONG


def test_killed_agent_disconnects_and_answers_once_started_again(shared_guests):
    guest, = shared_guests(1)

    guest.control('agent-kill')
    guest.wait_agent_disconnected(timeout=10)

    assert ping_error_code(guest) == libvirt.VIR_ERR_AGENT_UNRESPONSIVE
    with pytest.raises(guests.LabError, match='could not carry out'):
        guest.control('agent-hang')

    guest.control('agent-start')
    guest.wait_agent_connected(timeout=10)

    assert guest.wait_pingable(timeout=10) == PONG


def test_paused_guest_refuses_agent_commands_until_resumed(shared_guests):
    guest, = shared_guests(1)

    guest.pause()

    assert guest.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert ping_error_code(guest) == libvirt.VIR_ERR_OPERATION_INVALID

    guest.resume()

    assert guest.ping(PING_TIMEOUT) == PONG


@pytest.mark.parametrize('how', ['agent', 'inside', 'reset'])
def test_agent_comes_back_after_a_reboot_in_the_same_domain(shared_guests, how):
    guest, = shared_guests(1)
    domain_id = guest.dom.ID()

    if how == 'agent':
        guest.reboot()
    elif how == 'inside':
        guest.control('reboot')
    else:
        guest.reset()
    guest.wait_agent_reconnected(timeout=60)

    assert guest.wait_pingable(timeout=15) == PONG
    assert guest.is_running()
    # Same QEMU process: libvirt saw a guest reboot, not a new start.
    assert guest.dom.ID() == domain_id


def test_agent_comes_back_after_destroy_and_start(shared_guests):
    guest, = shared_guests(1)

    guest.destroy()

    assert guest.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF

    guest.start()
    guest.wait_agent_connected(timeout=60)

    assert guest.wait_pingable(timeout=15) == PONG


def test_panicked_guest_is_running_to_libvirt_but_does_not_answer(lab_guests):
    crashed, healthy = lab_guests(2)

    crashed.control('panic')

    assert ping_error_code(crashed) == libvirt.VIR_ERR_AGENT_UNRESPONSIVE
    assert crashed.state() == (libvirt.VIR_DOMAIN_RUNNING,
                               libvirt.VIR_DOMAIN_RUNNING_BOOTED)
    assert 'Kernel panic' in crashed.console_text()
    assert healthy.ping(PING_TIMEOUT) == PONG


def test_shutdown_through_the_agent_powers_the_guest_off(lab_guests):
    guest, = lab_guests(1)

    guest.shutdown()
    guest.wait_state(libvirt.VIR_DOMAIN_SHUTOFF, timeout=30)

    assert guest.state() == (libvirt.VIR_DOMAIN_SHUTOFF,
                             libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN)


def test_teardown_leaves_no_domain_process_or_socket_of_its_own(libvirt_lab):
    libvirt_lab.new_guest().start()

    libvirt_lab.teardown()

    own_prefix = '%s%d-' % (guests.NAME_PREFIX, os.getpid())
    assert [dom.name() for dom in guests.lab_domains(libvirt_lab.conn)
            if dom.name().startswith(own_prefix)] == []
    assert guests.lab_qemu_pids(owner=os.getpid()) == []
    assert [name for name in os.listdir(guests.RUN_DIR)
            if name.startswith(own_prefix)] == []
