"""Run Masakari's introspective instance monitor, timed, for the benchmarks.

This script runs under the peer's own virtualenv (bench/peer/setup.sh),
not under the monitor's: it imports nothing from this repository.

It starts the peer exactly as its console script
``masakari-introspectiveinstancemonitor`` does, with one addition: each
of its sweeps (``QemuGuestAgent.checkGuests``, called by its fixed-interval
timer) is timed, its guest-pings counted, and logged as

    Peer sweep started at <epoch seconds> took <seconds> s, <n> pinged

The peer logs no sweep duration of its own, and only warns when a sweep
outlasts the interval, so without this line a sweep of healthy guests could
not be measured at all; the ping count shows that it found every guest's
agent channel. The wrappers add a few clock reads, a counter and one log
line per sweep; the sweep and the pings themselves are the peer's,
unchanged.

    python harness.py --config-file peer.conf
"""

import functools
import logging
import sys
import time

from masakarimonitors.cmd import introspectiveinstancemonitor as peer_cmd
from masakarimonitors.introspectiveinstancemonitor import qemu_utils

LOG = logging.getLogger('bench.peer.harness')


# Guest-pings of the sweep in progress; the peer runs one sweep at a time.
_pings = [0]


def timed(check_guests):
    @functools.wraps(check_guests)
    def check_guests_timed(self):
        _pings[0] = 0
        started = time.time()
        clock = time.monotonic()
        try:
            return check_guests(self)
        finally:
            LOG.info('Peer sweep started at %.3f took %.3f s, %d pinged',
                     started, time.monotonic() - clock, _pings[0])
    return check_guests_timed


def counted(guest_ping):
    @functools.wraps(guest_ping)
    def guest_ping_counted(self, *args, **kwargs):
        _pings[0] += 1
        return guest_ping(self, *args, **kwargs)
    return guest_ping_counted


def main():
    agent = qemu_utils.QemuGuestAgent
    agent.checkGuests = timed(agent.checkGuests)
    agent._qemuAgentGuestPing = counted(agent._qemuAgentGuestPing)
    sys.argv[0] = 'masakari-introspectiveinstancemonitor'
    return peer_cmd.main()


if __name__ == '__main__':
    sys.exit(main())
