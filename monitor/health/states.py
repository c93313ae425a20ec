"""The per-domain health state machine.

One machine is built and frozen at import time. Callers never keep a machine
around: they store the state *name* in the domain record and ask for the next
state with :func:`next_state`, or get a private copy initialized at a stored
state with :func:`machine_for`. Copies are shallow, so they share the frozen
transition table and only carry their own current state.

Re-arming a domain after a restart is not a transition: the health policy
makes a fresh record in ``discovery`` instead.
"""

from automaton import machines

from monitor.errors import InvalidTransition
from monitor.errors import UnknownState

DISCOVERY = 'discovery'
HEALTHY = 'healthy'
ERROR = 'error'
REPORTED = 'reported'

ALL_STATES = (DISCOVERY, HEALTHY, ERROR, REPORTED)

GUEST_PINGABLE = 'guest_pingable'
GUEST_NOT_PINGABLE = 'guest_not_pingable'
REPORT = 'report'

ALL_EVENTS = (GUEST_PINGABLE, GUEST_NOT_PINGABLE, REPORT)

# (state, event) -> next state. Pairs not listed are invalid.
TRANSITIONS = {
    # A guest still booting is not a failure: discovery waits for the first
    # answer. REPORT leaves discovery only when a restarted guest's agent
    # did not come back within the discovery timeout.
    (DISCOVERY, GUEST_PINGABLE): HEALTHY,
    (DISCOVERY, GUEST_NOT_PINGABLE): DISCOVERY,
    (DISCOVERY, REPORT): REPORTED,
    (HEALTHY, GUEST_PINGABLE): HEALTHY,
    (HEALTHY, GUEST_NOT_PINGABLE): ERROR,
    (ERROR, GUEST_PINGABLE): HEALTHY,
    (ERROR, GUEST_NOT_PINGABLE): ERROR,
    (ERROR, REPORT): REPORTED,
    # The engine has been told; only an answer from the guest (or a restart,
    # which re-arms outside the machine) ends this state.
    (REPORTED, GUEST_PINGABLE): HEALTHY,
    (REPORTED, GUEST_NOT_PINGABLE): REPORTED,
}


def _build():
    machine = machines.FiniteMachine()
    for state in ALL_STATES:
        machine.add_state(state)
    for (start, event), end in TRANSITIONS.items():
        machine.add_transition(start, end, event)
    machine.default_start_state = DISCOVERY
    machine.freeze()
    return machine


MACHINE = _build()


def machine_for(state_name):
    """Return a private copy of the machine, initialized at ``state_name``.

    :raises UnknownState: when ``state_name`` is not a known state.
    """
    if state_name not in MACHINE:
        raise UnknownState(state_name, ALL_STATES)
    machine = MACHINE.copy(shallow=True)
    machine.initialize(state_name)
    return machine


def next_state(state, event):
    """Return the state the machine moves to from ``state`` on ``event``.

    Read from the table the frozen machine is built from, which holds
    nothing else: a round asks for thousands of transitions, and a copy of
    the machine per question cost more than the rest of an answered ping.

    :raises UnknownState: when ``state`` is not a known state.
    :raises InvalidTransition: when the machine has no such transition.
    """
    if state not in MACHINE:
        raise UnknownState(state, ALL_STATES)
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise InvalidTransition(state, event) from None
