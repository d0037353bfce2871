"""Section 13: error codes; an endpoint accepts every code it is sent.

A receiver's side of R13.1-2 is checked in section 5 (R5.10-3, R5.13-2) and section 12 (R12.4-6).
"""

from __future__ import annotations

from protocol.codec import Announce, Cancel, Close, Data, Probe
from protocol.constants import ErrorCode

from ..context import Context
from ..model import CaseFailed
from ..registry import case

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
