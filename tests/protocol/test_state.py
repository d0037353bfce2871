"""The session state machine table (spec Appendix B), walked over every (state, input) pair."""

from __future__ import annotations

import itertools

import pytest

from protocol.state import OPEN_STATES, TRANSITIONS, Input, State, next_state

# What the spec allows; anything else must be refused (None).
EXPECTED = {
    (State.CLIENT_INITIAL, Input.RECV_ACCEPT): State.ESTABLISHED,
    (State.CLIENT_INITIAL, Input.RECV_RETRY): State.CLIENT_INITIAL,
    (State.CLIENT_INITIAL, Input.RECV_CLOSE): State.CLOSED,
    (State.CLIENT_INITIAL, Input.LOCAL_SEND): State.CLIENT_INITIAL,
    (State.CLIENT_INITIAL, Input.LOCAL_CLOSE): State.CLOSED,
    (State.CLIENT_INITIAL, Input.HANDSHAKE_TIMEOUT): State.CLOSED,
    (State.SERVER_UNVALIDATED, Input.RECV_SESSION_PACKET): State.ESTABLISHED,
    (State.SERVER_UNVALIDATED, Input.RECV_CLOSE): State.DRAINING,
    (State.SERVER_UNVALIDATED, Input.LOCAL_CLOSE): State.CLOSING,
    (State.SERVER_UNVALIDATED, Input.HANDSHAKE_TIMEOUT): State.CLOSED,
    (State.SERVER_UNVALIDATED, Input.LOCAL_SEND): State.SERVER_UNVALIDATED,
    (State.SERVER_UNVALIDATED, Input.PEER_VIOLATION): State.CLOSING,
    (State.ESTABLISHED, Input.RECV_ACCEPT): State.ESTABLISHED,
    (State.ESTABLISHED, Input.RECV_SESSION_PACKET): State.ESTABLISHED,
    (State.ESTABLISHED, Input.RECV_CLOSE): State.DRAINING,
    (State.ESTABLISHED, Input.LOCAL_SEND): State.ESTABLISHED,
    (State.ESTABLISHED, Input.LOCAL_CLOSE): State.CLOSING,
    (State.ESTABLISHED, Input.PEER_VIOLATION): State.CLOSING,
    (State.ESTABLISHED, Input.IDLE_TIMEOUT): State.CLOSED,
    (State.CLOSING, Input.RECV_SESSION_PACKET): State.CLOSING,
    (State.CLOSING, Input.RECV_CLOSE): State.DRAINING,
    (State.CLOSING, Input.CLOSE_TIMER): State.CLOSED,
    (State.CLOSING, Input.IDLE_TIMEOUT): State.CLOSED,
    (State.DRAINING, Input.RECV_SESSION_PACKET): State.DRAINING,
    (State.DRAINING, Input.RECV_CLOSE): State.DRAINING,
    (State.DRAINING, Input.CLOSE_TIMER): State.CLOSED,
    (State.DRAINING, Input.IDLE_TIMEOUT): State.CLOSED,
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Input)))
def test_every_state_input_pair(state: State, event: Input) -> None:
    assert next_state(state, event) == EXPECTED.get((state, event))


def test_closed_is_terminal() -> None:
    assert all(next_state(State.CLOSED, e) is None for e in Input)


def test_objects_flow_only_in_open_states() -> None:
    for state in State:
        allowed = next_state(state, Input.LOCAL_SEND) is not None
        assert allowed == (state in OPEN_STATES or state is State.CLIENT_INITIAL)


def test_table_has_no_extra_entries() -> None:
    assert TRANSITIONS == EXPECTED
