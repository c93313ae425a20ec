"""pytest fixtures for real libvirt guests (see lab.guests).

``libvirt_lab`` (session) checks that libvirtd answers and the guest image
is built, and removes lab domains a crashed run left behind. ``lab_guests``
(per test) starts guests with their agents answering and removes every lab
domain after the test, passed or failed. ``shared_guests`` (per module)
hands the tests of one module the same running guests, for tests that
leave a guest as they found it. Tests that use any of them are marked
``integration``.
"""

import logging

import libvirt
import pytest

import lab
from lab import guests

LOG = logging.getLogger(__name__)

FIXTURES = ('libvirt_lab', 'lab_guests', 'shared_guests')


def pytest_collection_modifyitems(items):
    for item in items:
        if any(name in getattr(item, 'fixturenames', ()) for name in FIXTURES):
            item.add_marker(pytest.mark.integration)


def _connect():
    try:
        return guests.connect(), None
    except libvirt.libvirtError as error:
        return None, error.get_error_message()


@pytest.fixture(scope='session')
def libvirt_lab():
    """A Lab on qemu:///system with no lab domains left from earlier runs."""
    lab.require(guests.image_ready(),
                'guest image missing in %s' % guests.GUEST_DIR)
    conn, reason = _connect()
    lab.require(conn is not None,
                'libvirtd does not answer on %s: %s' % (guests.URI, reason))
    guest_lab = guests.Lab(conn)
    leftovers = guests.cleanup(conn)
    if leftovers:
        LOG.warning('removed lab domains left by an earlier run: %s',
                    ', '.join(leftovers))
    guests.clear_logs()
    yield guest_lab
    guest_lab.teardown()
    guest_lab.close()


@pytest.fixture
def lab_guests(libvirt_lab):
    """Factory: ``lab_guests(count)`` starts ``count`` guests at once and
    returns them (lab.guests.Guest) once each agent answers guest-ping.

    Every lab domain is destroyed and undefined after the test.
    """
    def start(count=1, **kwargs):
        return libvirt_lab.start_guests(count, **kwargs)

    yield start
    libvirt_lab.teardown()


def _answers(guest):
    try:
        return guest.is_running() and guest.ping(2) == {'return': {}}
    except (libvirt.libvirtError, guests.LabError, ValueError):
        return False


@pytest.fixture(scope='module')
def shared_guests(libvirt_lab):
    """Factory: ``shared_guests(count)`` returns ``count`` running guests
    whose agents answer, the same ones for every test of the module.

    Booting is most of a lab test's time. A test that hangs, kills, pauses
    or reboots a guest and brings it back can share it; one that leaves it
    crashed or off must use ``lab_guests``. Before each hand-out every
    shared guest must still answer a ping; one that does not (a test
    failed half way, or ``lab_guests`` removed it) is replaced by a fresh
    one. The guests are removed at the end of the module.
    """
    pool = []

    def take(count=1):
        kept = []
        for guest in pool:
            if _answers(guest):
                kept.append(guest)
            else:
                LOG.info('shared guest %s (%s) does not answer: replaced',
                         guest.name, guest.uuid)
                guest.remove()
        pool[:] = kept
        if len(pool) < count:
            pool.extend(libvirt_lab.start_guests(count - len(pool)))
        return pool[:count]

    yield take
    for guest in pool:
        guest.remove()
