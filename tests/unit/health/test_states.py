import pytest
from automaton import exceptions as automaton_exc

from monitor.health import states

D, H, E, R = states.DISCOVERY, states.HEALTHY, states.ERROR, states.REPORTED
OK, MISS, REPORT = (states.GUEST_PINGABLE, states.GUEST_NOT_PINGABLE,
                    states.REPORT)

# The whole table: every state x every event. None = no such transition.
TABLE = {
    (D, OK): H, (D, MISS): D, (D, REPORT): R,
    (H, OK): H, (H, MISS): E, (H, REPORT): None,
    (E, OK): H, (E, MISS): E, (E, REPORT): R,
    (R, OK): H, (R, MISS): R, (R, REPORT): None,
}


def test_table_covers_every_state_and_event():
    assert set(TABLE) == {(s, e) for s in states.ALL_STATES
                          for e in states.ALL_EVENTS}


def test_state_and_event_names_are_the_stored_strings():
    assert states.ALL_STATES == ('discovery', 'healthy', 'error', 'reported')
    assert states.ALL_EVENTS == ('guest_pingable', 'guest_not_pingable',
                                 'report')


@pytest.mark.parametrize('state,event,expected',
                         [(s, e, n) for (s, e), n in TABLE.items()
                          if n is not None])
def test_valid_transition(state, event, expected):
    assert states.next_state(state, event) == expected


@pytest.mark.parametrize('state,event',
                         [(s, e) for (s, e), n in TABLE.items() if n is None])
def test_invalid_transition_names_state_and_event(state, event):
    with pytest.raises(states.InvalidTransition) as excinfo:
        states.next_state(state, event)
    assert excinfo.value.state == state
    assert excinfo.value.event == event
    assert "'%s'" % state in str(excinfo.value)
    assert "'%s'" % event in str(excinfo.value)


def test_unknown_event_is_an_invalid_transition():
    with pytest.raises(states.InvalidTransition):
        states.next_state(H, 'reboot')


def test_unknown_state_is_rejected_by_name():
    with pytest.raises(states.UnknownState, match="'sleeping'"):
        states.next_state('sleeping', OK)
    with pytest.raises(states.UnknownState):
        states.machine_for('sleeping')


def test_errors_are_value_errors():
    assert issubclass(states.InvalidTransition, ValueError)
    assert issubclass(states.UnknownState, ValueError)


def test_machine_starts_in_discovery():
    assert states.MACHINE.default_start_state == D


def test_shared_machine_is_frozen():
    with pytest.raises(automaton_exc.FrozenMachine):
        states.MACHINE.add_state('sleeping')


@pytest.mark.parametrize('state', states.ALL_STATES)
def test_machine_for_starts_at_the_stored_state(state):
    assert states.machine_for(state).current_state == state


def test_copies_share_the_table_but_not_the_current_state():
    first = states.machine_for(H)
    second = states.machine_for(H)
    first.process_event(MISS)
    assert first.current_state == E
    assert second.current_state == H
    assert first.frozen and second.frozen
    assert states.MACHINE.current_state is None


def test_next_state_does_not_disturb_the_shared_machine():
    states.next_state(H, MISS)
    assert states.MACHINE.current_state is None
