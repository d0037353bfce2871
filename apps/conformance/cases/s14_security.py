"""Section 14: security considerations and limits, as far as the wire shows them.

The rest of section 14 is advice to deployments (R14.1-1), the quality of a random number
generator (R14.6-1: R14.2-1 catches its crudest failures) and what a receiver does with a Name on
its own disk (R14.7-1).
"""

from __future__ import annotations

from protocol.codec import Cancel, Close
from protocol.constants import ErrorCode

from ..client import Client
from ..context import Context
from ..model import CaseFailed
from ..registry import case
from .common import announce_sized, must_complete, small_object, unpredictable

#: Bytes announced across sessions before the case gives up looking for the server's bound: a live
#: server sets aside what is announced (R8.2-4), so more waits for --slow.
ANNOUNCED_AT_MOST = 64 << 20
ANNOUNCED_AT_MOST_SLOW = 64 << 30


@case(
    "R14.2-1",
    "Implementations MUST NOT derive session ids or initial ids from counters, clocks or addresses",
    slug="session-ids-not-derived",
)
def session_ids_not_derived(ctx: Context) -> None:
    """Six sessions, one after another from one socket: six distinct session ids, neither a counter's nor a clock's
    (ids taken from the address would repeat)."""
    channel = ctx.channel()
    ids: list[int] = []
    for _ in range(6):
        c = ctx.client(channel=channel)
        ids.append(c.handshake().session_id)
        c.validate()
    unpredictable(ids, "session ids")


def _refusal(s: Client) -> Cancel | None:
    """What the target said to the ANNOUNCEs sent so far: None, or its refusal of one (the case fails on
    any other end of an object or of the session)."""
    s.ping_until_ack("an ACK in answer to PING: every ANNOUNCE before it was read")
    rx = s.maybe(lambda d: isinstance(d.packet, Cancel | Close) and s.attributed(d), s.quiet)
    if rx is None:
        return None
    packet = rx.packet
    if not isinstance(packet, Cancel) or packet.origin != 0 or packet.error_code != ErrorCode.REFUSED:
        raise CaseFailed(
            "nothing, or the refusal of one object (CANCEL with Origin 0 and REFUSED) that leaves the session be",
            str(rx),
        )
    return packet


_R14_4_1 = (
    "A server SHOULD bound the bytes of all objects it holds across its sessions, those being received and those "
    "received that its application has not yet let go of, and refuse an ANNOUNCE that would take it past the bound "
    "with CANCEL (Origin 0, REFUSED), which leaves the session and the sender's other objects be."
)


@case("R14.4-1", _R14_4_1, slug="memory-bound-across-sessions", level="SHOULD")
def memory_bound_across_sessions(ctx: Context) -> None:
    """Session after session, each with a 3-chunk object sent but its last chunk, then objects of max_object_size
    announced up to the session's credit and never sent: once the server refuses one (CANCEL with Origin 0 and
    REFUSED), that session still works and its small object completes."""
    most = ANNOUNCED_AT_MOST_SLOW if ctx.options.slow else ANNOUNCED_AT_MOST
    announced = sessions = 0
    while announced < most:
        s = ctx.client()
        try:
            s.establish()
        except CaseFailed:
            if any(isinstance(rx.packet, Close) and rx.packet.error_code == ErrorCode.SERVER_BUSY for rx in s.history):
                ctx.unsupported(f"the server took no more than {sessions} sessions, {announced} bytes announced")
            raise
        sessions += 1
        params = s.target_params
        small = small_object(ctx, 3)
        s.send_object(small, order=[0, 1], probe=False)
        announced += len(small.data)
        credit = params.max_buffered_bytes - len(small.data)
        object_id = 1
        while credit >= params.max_object_size and object_id < params.max_concurrent_objects and announced < most:
            s.send(announce_sized(object_id, params.max_object_size))
            credit -= params.max_object_size
            announced += params.max_object_size
            object_id += 1
        refused = _refusal(s)
        if refused is None:
            continue
        s.alive("a refused object leaves its session be")
        if refused.object_id != small.object_id:
            s.data(small, 2)
            must_complete(s.transfer(small, send=False), "the session's other object, sent whole after the refusal")
        ctx.note(f"refused after {announced} bytes announced in {sessions} sessions")
        return
    ctx.unsupported(
        f"no refusal after {announced} bytes announced in {sessions} sessions: the server's bound, if it has one, "
        "lies beyond (run with --slow to announce more)"
    )
