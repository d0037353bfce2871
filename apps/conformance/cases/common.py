"""Building blocks the case modules share."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import pairwise

from protocol.codec import Announce, Close, Data, Decoded, Initial, Nack, Ping, Repair
from protocol.params import SessionParams

from ..client import Client, Outcome, TestObject
from ..context import Context
from ..model import CaseFailed
from ..peer import Rx
from ..receiving_model import listed
from ..server import SenderPeer
from ..wire import error_name


def dropped(s: Client, datagram: bytes, why: str, *, ignore: tuple[type, ...] = (Ping,)) -> None:
    """Send a datagram the target must drop: it draws nothing (but ``ignore``d packets) and the
    session still works."""
    s.send_raw(datagram)
    s.silent(f"{why}: it must be dropped without an answer", ignore=ignore)
    s.alive("a dropped datagram must leave the session as it was")


def must_complete(outcome: Outcome, why: str) -> None:
    """The transfer ended in COMPLETE; otherwise the case fails saying ``why`` it should have."""
    if outcome.kind != "complete":
        raise CaseFailed(f"COMPLETE ({why})", str(outcome), absent=outcome.kind == "timeout")


def small_object(ctx: Context, chunks: int = 3, *, object_id: int = 0, chunk_size: int = 1024) -> TestObject:
    """An object of ``chunks`` chunks, the last one short."""
    size = (chunks - 1) * chunk_size + chunk_size // 2 if chunks else 0
    return TestObject(ctx.payload(size), object_id=object_id, chunk_size=chunk_size)


def sample_traffic(ctx: Context, params: SessionParams | None = None) -> list[Rx]:
    """A session with a bit of everything a receiver sends: ACCEPT, ACKs, a NACK and COMPLETE."""
    s = ctx.session(params)
    obj = small_object(ctx, 4)
    s.send_object(obj, order=[0, 1, 3], probe=False)
    expect_nack_naming(s, obj.object_id, 2, "a NACK for the chunk left out")
    must_complete(s.transfer(obj, send=False), "after the gap is repaired")
    s.alive()
    return list(s.history)


def expect_nack_naming(s: Client, object_id: int, index: int, what: str, timeout: float | None = None) -> Rx:
    """The first NACK about ``object_id`` that lists chunk ``index``."""

    def names(d: Decoded) -> bool:
        packet = d.packet
        return isinstance(packet, Nack) and packet.object_id == object_id and index in listed(packet.missing)

    return s.expect(names, what, timeout)


def still_handshaking(peer: SenderPeer, why: str, timeout: float | None = None) -> Rx:
    """The client sends its INITIAL again (it did not take what it got as an answer)."""
    last = max(rx.decoded.packet_number for rx in peer.initials if rx.decoded is not None)
    rx = peer.expect(
        lambda d: isinstance(d.packet, Initial) and d.session_id == peer.initial_id and d.packet_number > last,
        f"the INITIAL retransmitted ({why})",
        timeout,
    )
    peer.initials.append(rx)
    return rx


def session_starts(peer: SenderPeer, why: str) -> None:
    """ACCEPT, and the sender's session goes on (some session packet arrives)."""
    peer.accept()
    peer.expect_session(f"the session proceeding after ACCEPT ({why})", lambda p: True)



def announced_object(ctx: Context) -> tuple[SenderPeer, Announce]:
    """Sender role: ACCEPT, and the ANNOUNCE of the sender's object; the tester holds back COMPLETE."""
    peer = ctx.sender()
    peer.policy.complete = False
    peer.accept()
    rx = peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    assert isinstance(rx.packet, Announce)
    return peer, rx.packet


def expect_abort(peer: SenderPeer, code: int, why: str) -> Rx:
    """The sender under test aborts its session with CLOSE ``code``; the case fails saying ``why`` it should."""
    what = f"CLOSE {error_name(code)} ({why})"
    rx = peer.expect_session(what, lambda p: isinstance(p, Close))
    assert isinstance(rx.packet, Close)
    if rx.packet.error_code != code:
        raise CaseFailed(what, str(rx))
    return rx


def announce_sized(object_id: int, size: int, chunk_size: int = 1024) -> Announce:
    """An ANNOUNCE of ``size`` bytes that the tester never sends the chunks of (limits are checked
    on the ANNOUNCE alone)."""
    count = -(-size // chunk_size)
    return Announce(object_id, size, chunk_size, count, hashlib.sha256(b"").digest(), "application/octet-stream", "big")


def over_max_object_size(ctx: Context, limit: int, chunk_size: int = 1024) -> int:
    """A Total Length one byte over ``limit`` that the wire can carry in chunks of ``chunk_size``."""
    if limit >= (1 << 64) - 1 or -(-(limit + 1) // chunk_size) > 0xFFFFFFFF:
        ctx.unsupported("the target's max_object_size cannot be exceeded")
    return limit + 1


def many_gaps(ctx: Context, s: Client, *, probe: bool, gaps: int = 200) -> tuple[TestObject, set[int], dict[int, int]]:
    """An object of 64-byte chunks with every 64th sent (the last too), then a PROBE if ``probe``: the
    object, its ``gaps`` x 63 missing chunks, and the packet number each chunk sent went in. 200 gaps
    take more than 1600 bytes of NACK in either encoding: more than one datagram of 1472."""
    count = gaps * 64 + 1
    if count * 64 > s.target_params.max_object_size:
        ctx.unsupported(f"the target's max_object_size is under {count * 64} bytes")
    obj = TestObject(ctx.payload(count * 64), chunk_size=64)
    sent = list(range(0, count, 64))
    pns = s.send_object(obj, order=sent, probe=probe)
    return obj, set(range(count)) - set(sent), pns


def about_silence(rx: Rx, pns: dict[int, int]) -> bool:
    """Whether a NACK lists a chunk above every chunk the target had received when it wrote it (by its
    Largest PN): a report about a silent sender (R9.1-11), not about gaps. A tester slowed down for
    longer than a PTO between two chunks (a loaded machine) draws one, ahead of the gap reports."""
    packet = rx.packet
    assert isinstance(packet, Nack)
    if not packet.missing:
        return False
    received = [index for index, pn in pns.items() if pn <= packet.largest_pn]
    return not received or max(listed(packet.missing)) > max(received)


def nacks_listing(s: Client, obj: TestObject, want: set[int]) -> list[Rx]:
    """The NACKs about ``obj`` that together list ``want``, in arrival order; an empty one (the
    immediate answer to a PROBE, R9.1-7) is left out."""
    got: list[Rx] = []
    seen: set[int] = set()
    while not want <= seen:
        rx = s.maybe(lambda d: isinstance(d.packet, Nack) and d.packet.object_id == obj.object_id, s.ctx.timeout)
        if rx is None:
            raise CaseFailed("NACKs listing every missing chunk", f"{len(want - seen)} chunks never listed", absent=True)
        assert isinstance(rx.packet, Nack)
        if rx.packet.missing:
            got.append(rx)
        seen |= listed(rx.packet.missing)
    return got


def gap_reports(ctx: Context, s: Client) -> tuple[set[int], list[Rx]]:
    """200 gaps, never repaired nor probed: the missing chunks, and the gap reports (NACKs) that list them
    (reports about a silent sender left out)."""
    obj, missing, pns = many_gaps(ctx, s, probe=False)
    return missing, [rx for rx in nacks_listing(s, obj, missing) if not about_silence(rx, pns)]


#: A congestion window of this many datagrams before any ACK would be legal (R11.1-4 asks for at most
#: 128, a SHOULD) but absurd: a sender that sends this many DATA datagrams to a silent receiver is taken to have no
#: window at all. The cases that watch the window need an object of at least this many chunks.
WINDOW_LIMIT = 1024


def silent_receiver(peer: SenderPeer) -> None:
    """The tester receives but says nothing: no ACK, no answer to PROBEs, no COMPLETE."""
    peer.policy.ack = False
    peer.policy.answer_probes = False
    peer.policy.complete = False


def big_announce(peer: SenderPeer) -> Announce:
    """The ANNOUNCE of the sender's object, which must be big enough to overflow a congestion window."""
    rx = peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    announce = rx.packet
    assert isinstance(announce, Announce)
    if announce.chunk_count < WINDOW_LIMIT:
        peer.ctx.unsupported(
            f"the sender's object has {announce.chunk_count} chunks ({announce.total_length} bytes): too few to see its "
            f"congestion window fill (send one of at least {WINDOW_LIMIT} chunks)"
        )
    return announce


def until_window_full(peer: SenderPeer, *, fresh: bool = False) -> list[Rx]:
    """Be the receiver (as its policy says) until no DATA or REPAIR has come for a quiet spell (the sender's
    window is full, if nothing answers it), or until WINDOW_LIMIT of them have: the DATA and REPAIR that came,
    since the session began, or with ``fresh`` from now on (the next flight, which may be empty)."""
    ctx = peer.ctx
    clock = ctx.target.clock
    sent = [] if fresh else [rx for rx in peer.session_packets() if isinstance(rx.packet, Data | Repair)]
    quiet_until = clock() + peer.quiet
    deadline = clock() + ctx.timeout
    while len(sent) < WINDOW_LIMIT:
        now = clock()
        if now >= quiet_until:
            break
        if now >= deadline:
            ctx.unsupported(
                f"the sender was still sending DATA after {ctx.timeout:.3g} s ({len(sent)} datagrams, none "
                "acknowledged): too slow to see its window fill"
            )
        rx = peer.inbox.pop(0) if peer.inbox else peer.pull(min(quiet_until, deadline) - now)
        if rx is None:
            continue
        peer.handle(rx)
        if rx.decoded is not None and peer.in_session(rx.decoded) and isinstance(rx.packet, Data | Repair):
            sent.append(rx)
            quiet_until = clock() + peer.quiet
    if not sent and not fresh:
        raise CaseFailed("the object's first chunks", f"no DATA within {peer.quiet:.3g} s of the ANNOUNCE", absent=True)
    return sent


def window_filled(peer: SenderPeer) -> list[Rx]:
    """Its ANNOUNCE, then every DATA until the sender's congestion window is full (the tester acknowledges
    nothing); the case cannot judge a sender whose window never fills."""
    big_announce(peer)
    sent = until_window_full(peer)
    if len(sent) >= WINDOW_LIMIT:
        peer.ctx.unsupported(f"the sender sent {len(sent)} DATA datagrams without an ACK: its window never filled (R11.1-2)")
    return sent


def unpredictable(ids: Sequence[int], what: str) -> None:
    """Ids the target chose (session ids, initial ids): distinct and non-zero, and neither a counter's
    (a constant step apart) nor a clock's (all sharing their top 16 bits), R14.2-1. Six random ids are
    a constant step apart with odds of 2^-256, and share their top 16 bits with odds of 2^-80."""
    shown = " ".join(f"{i:016x}" for i in ids)
    if len(set(ids)) != len(ids) or 0 in ids:
        raise CaseFailed(f"{len(ids)} distinct non-zero {what}", shown)
    steps = {(b - a) % (1 << 64) for a, b in pairwise(ids)}
    if len(steps) == 1:
        raise CaseFailed(f"unpredictable {what} (not from a counter, R14.2-1)", f"{what} a constant {steps.pop()} apart")
    if len({i >> 48 for i in ids}) == 1:
        raise CaseFailed(f"unpredictable {what} (not from a clock, R14.2-1)", f"{shown}: all begin {ids[0] >> 48:04x}")
