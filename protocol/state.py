"""The session state machine as a table (spec Appendix B).

Every (state, input) pair not in the table is not allowed: packets are then dropped and counted,
local calls raise LocalProtocolError. tests/protocol/test_state.py walks every pair.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    CLIENT_INITIAL = "client_initial"  # INITIAL sent, waiting for ACCEPT
    SERVER_UNVALIDATED = "server_unvalidated"  # ACCEPT sent, nothing of the session back yet (a token validates early)
    ESTABLISHED = "established"
    CLOSING = "closing"  # we sent CLOSE; answer stragglers with CLOSE until the timer ends
    DRAINING = "draining"  # the peer sent CLOSE; stay silent until the timer ends
    CLOSED = "closed"


class Input(Enum):
    RECV_ACCEPT = "recv_accept"
    RECV_RETRY = "recv_retry"
    RECV_SESSION_PACKET = "recv_session_packet"  # any packet carrying the assigned session id
    RECV_CLOSE = "recv_close"
    LOCAL_SEND = "local_send"  # the application queues an object
    LOCAL_CLOSE = "local_close"
    PEER_VIOLATION = "peer_violation"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    CLOSE_TIMER = "close_timer"


S, In = State, Input

TRANSITIONS: dict[tuple[State, Input], State] = {
    (S.CLIENT_INITIAL, In.RECV_ACCEPT): S.ESTABLISHED,
    (S.CLIENT_INITIAL, In.RECV_RETRY): S.CLIENT_INITIAL,
    (S.CLIENT_INITIAL, In.RECV_CLOSE): S.CLOSED,
    (S.CLIENT_INITIAL, In.LOCAL_SEND): S.CLIENT_INITIAL,  # queued until the handshake completes
    (S.CLIENT_INITIAL, In.LOCAL_CLOSE): S.CLOSED,
    (S.CLIENT_INITIAL, In.HANDSHAKE_TIMEOUT): S.CLOSED,
    (S.SERVER_UNVALIDATED, In.RECV_SESSION_PACKET): S.ESTABLISHED,
    (S.SERVER_UNVALIDATED, In.RECV_CLOSE): S.DRAINING,
    (S.SERVER_UNVALIDATED, In.LOCAL_CLOSE): S.CLOSING,
    (S.SERVER_UNVALIDATED, In.HANDSHAKE_TIMEOUT): S.CLOSED,
    (S.SERVER_UNVALIDATED, In.LOCAL_SEND): S.SERVER_UNVALIDATED,
    (S.ESTABLISHED, In.RECV_ACCEPT): S.ESTABLISHED,  # a duplicate ACCEPT: ignored
    (S.ESTABLISHED, In.RECV_SESSION_PACKET): S.ESTABLISHED,
    (S.ESTABLISHED, In.RECV_CLOSE): S.DRAINING,
    (S.ESTABLISHED, In.LOCAL_SEND): S.ESTABLISHED,
    (S.ESTABLISHED, In.LOCAL_CLOSE): S.CLOSING,
    (S.ESTABLISHED, In.PEER_VIOLATION): S.CLOSING,
    (S.ESTABLISHED, In.IDLE_TIMEOUT): S.CLOSED,
    (S.CLOSING, In.RECV_SESSION_PACKET): S.CLOSING,  # answered with CLOSE, rate-limited
    (S.CLOSING, In.RECV_CLOSE): S.DRAINING,
    (S.CLOSING, In.CLOSE_TIMER): S.CLOSED,
    (S.CLOSING, In.IDLE_TIMEOUT): S.CLOSED,
    (S.DRAINING, In.RECV_SESSION_PACKET): S.DRAINING,  # silently dropped
    (S.DRAINING, In.RECV_CLOSE): S.DRAINING,
    (S.DRAINING, In.CLOSE_TIMER): S.CLOSED,
    (S.DRAINING, In.IDLE_TIMEOUT): S.CLOSED,
}
# A violation found while the server still waits for validation aborts the same way.
TRANSITIONS[(S.SERVER_UNVALIDATED, In.PEER_VIOLATION)] = S.CLOSING


def next_state(state: State, event: Input) -> State | None:
    """The state after ``event``, or None when the event is not allowed in ``state``."""
    return TRANSITIONS.get((state, event))


# States in which the session exchanges objects.
OPEN_STATES = frozenset({State.SERVER_UNVALIDATED, State.ESTABLISHED})
