"""Section 13: error codes; an endpoint accepts every code it is sent, sends no local one, and aborts on a
violation with the code the table names.

A receiver's side of R13.1-2 is checked in section 5 (R5.10-3, R5.13-2) and section 12 (R12.4-6); a
receiver's side of R13.2-1 by the case of each rule the table lists (sections 5, 8, 9, 11, 12).
"""

from __future__ import annotations

from protocol.codec import Announce, Cancel, Close, Data, Probe
from protocol.constants import ErrorCode
from protocol.params import SessionParams

from .. import wire
from ..context import Context
from ..model import CaseFailed
from ..peer import LOCAL_ONLY_CODES
from ..registry import case
from .common import announced_object, expect_abort, small_object

# ================================================================================================
# Receiver role


@case(
    "R13.1-1",
    "Codes marked local describe failures an endpoint reports to its own application; they MUST NOT be sent on the "
    "wire",
    slug="no-local-code-sent",
)
def no_local_code_sent(ctx: Context) -> None:
    """An INITIAL of version 3, and a session with a half-sent object left to idle out: neither draws a CLOSE or
    CANCEL carrying VERSION_MISMATCH, IDLE_TIMEOUT or HANDSHAKE_TIMEOUT."""
    c = ctx.client()
    c.send_raw(wire.initial(c.initial_id, c.take_pn(), version=3))
    got = c.collect(c.quiet)
    idle = max(0.5, 10 * ctx.target.slack)
    s = ctx.session(SessionParams(idle_timeout_ms=int(idle * 1000)))
    # The object fails at the target when the session idles out: it may say so only locally.
    s.send_object(small_object(ctx, 3), order=[0], probe=False)
    got += s.collect(2.5 * idle)
    s.closed = True  # the session has idled out: nothing to close at the end
    for rx in got:
        if isinstance(rx.packet, Close | Cancel) and rx.packet.error_code in LOCAL_ONLY_CODES:
            raise CaseFailed("no local-only error code on the wire", str(rx))


# ================================================================================================
# Sender role: the target sends an object to the tester

_R13_1_2 = (
    "A receiver MUST accept any error code in CLOSE and CANCEL. An unknown code in CLOSE is an abort; in CANCEL it "
    "fails the object."
)
_OBJECTIONS = frozenset({ErrorCode.PROTOCOL_VIOLATION, ErrorCode.FLOW_CONTROL_ERROR, ErrorCode.INTERNAL_ERROR})
_UNASSIGNED = 0x7777  # R13.1-3: no meaning yet, so no endpoint may refuse it for its value


@case("R13.1-2", _R13_1_2, slug="sender-refused-with-unknown-code", role="sender")
def sender_refused_unknown_code(ctx: Context) -> None:
    """CANCEL (Origin 0) with code 0x7777 of the sender's object: it stops sending it and does not abort."""
    peer = ctx.sender()
    peer.policy.complete = False
    peer.accept()
    peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    peer.send(Cancel(0, 0, _UNASSIGNED, "a code from the future"))
    sent = ctx.target.clock()
    got = peer.collect(3 * peer.quiet)
    late = [
        rx for rx in got
        if rx.at - sent > ctx.target.slack  # not already on its way when the CANCEL left
        and isinstance(rx.packet, Announce | Data | Probe) and rx.packet.object_id == 0
    ]
    if late:
        raise CaseFailed("nothing more about the refused object", str(late[0]))
    # With its only object failed the sender's application may end the session, even by an abort
    # of its own (R12.4-2); what must not come is a CLOSE that blames the CANCEL or a crash.
    aborts = [rx for rx in got if isinstance(rx.packet, Close) and rx.packet.error_code in _OBJECTIONS]
    if aborts:
        raise CaseFailed("no abort over an unassigned error code", str(aborts[0]))


# The tester breaks rules of section 13.2 as the receiver of the sender's object.
_R13_2_1 = (
    "A well-formed packet that breaks one of these rules makes its recipient abort the session with CLOSE and the "
    "code given"
)
#: An object id no sender under test has reached: "never announced" (spec 13.2) whatever it sends.
UNREACHED_ID = 1 << 30


@case("R13.2-1", _R13_2_1, slug="sender-nack-never-announced", role="sender")
def sender_nack_never_announced(ctx: Context) -> None:
    """A NACK about an object id the sender never announced: CLOSE PROTOCOL_VIOLATION."""
    peer, _ = announced_object(ctx)
    peer.nack(UNREACHED_ID, [0])
    expect_abort(peer, ErrorCode.PROTOCOL_VIOLATION, "a NACK for an object never announced (R9.3-1)")


@case("R13.2-1", _R13_2_1, slug="sender-nack-beyond-count", role="sender")
def sender_nack_beyond_count(ctx: Context) -> None:
    """A NACK listing the chunk index Chunk Count of the sender's object: CLOSE PROTOCOL_VIOLATION."""
    peer, announce = announced_object(ctx)
    peer.nack(announce.object_id, [announce.chunk_count])
    expect_abort(peer, ErrorCode.PROTOCOL_VIOLATION, f"chunk {announce.chunk_count} of a {announce.chunk_count}-chunk object (R9.3-1)")
