"""Section 11: flow control and the receiver's limits, and the error codes they produce."""

from __future__ import annotations

from protocol.codec import Ack, Announce, Cancel, Data, Ping, Probe
from protocol.constants import ErrorCode
from protocol.params import SessionParams

from ..client import TestObject
from ..context import Context
from ..model import CaseFailed
from ..peer import Rx
from ..registry import case
from .common import (
    WINDOW_LIMIT,
    announce_sized,
    big_announce,
    must_complete,
    over_max_object_size,
    silent_receiver,
    small_object,
    until_window_full,
    window_filled,
)

_HEAVY = 64 << 20  # announcing more would make a live target set aside this much memory

@case(
    "R11.3-1",
    "An endpoint MUST NOT lower either limit.",
    slug="limits-never-lowered",
)
def limits_never_lowered(ctx: Context) -> None:
    """Four objects completed in turn: no ACK of the session lowers object_id_limit or announce_limit."""
    s = ctx.session()
    params = s.target_params
    for object_id in range(4):
        must_complete(s.transfer(small_object(ctx, 2, object_id=object_id)), f"object {object_id}")
    s.settle()
    # In the order the target numbered them: an ACK overtaken on the path is older, not lower.
    acks = sorted((
        (rx.decoded.packet_number, rx.packet)
        for rx in s.history
        if rx.decoded is not None and isinstance(rx.packet, Ack) and s.attributed(rx.decoded)
    ), key=lambda numbered: numbered[0])
    if len(acks) < 2:
        raise CaseFailed("ACKs during four transfers", f"{len(acks)} ACK", absent=True)
    # The limits start at the advertised parameters (section 11.3): nothing below them either.
    ids, announced = params.max_concurrent_objects, params.max_buffered_bytes
    for pn, ack in acks:
        if ack.object_id_limit < ids or ack.announce_limit < announced:
            raise CaseFailed(
                f"limits of at least object_id_limit={ids}, announce_limit={announced}",
                f"packet {pn}: object_id_limit={ack.object_id_limit}, announce_limit={ack.announce_limit}",
            )
        ids, announced = ack.object_id_limit, ack.announce_limit


@case(
    "R11.3-3",
    "An ANNOUNCE with an object id not below the object_id_limit the receiver has advertised is a flow-control "
    "violation (FLOW_CONTROL_ERROR).",
    slug="object-id-beyond-limit",
)
def id_beyond_limit(ctx: Context) -> None:
    """ANNOUNCE of object id max_concurrent_objects (the first id not allowed): CLOSE FLOW_CONTROL_ERROR."""
    s = ctx.session()
    limit = s.target_params.max_concurrent_objects
    obj = small_object(ctx, 2, object_id=limit)
    s.announce(obj)
    s.expect_close(ErrorCode.FLOW_CONTROL_ERROR, f"object id {limit} is not below the advertised limit")


@case(
    "R11.3-4",
    "An ANNOUNCE that brings the sum of Total Length over all objects the peer has announced in the session above the "
    "announce_limit the receiver has advertised is a flow-control violation (FLOW_CONTROL_ERROR).",
    slug="announced-bytes-beyond-limit",
)
def bytes_beyond_limit(ctx: Context) -> None:
    """Objects of max_object_size announced until their total passes max_buffered_bytes: CLOSE FLOW_CONTROL_ERROR."""
    s = ctx.session()
    params = s.target_params
    need = params.max_buffered_bytes // params.max_object_size + 1
    if need > params.max_concurrent_objects:
        ctx.unsupported("the object id limit is reached before the byte limit")
    if params.max_buffered_bytes > _HEAVY and not (ctx.target.virtual or ctx.options.slow):
        ctx.unsupported(f"the target would set aside {params.max_buffered_bytes} bytes; run with --slow to allow it")
    for object_id in range(need - 1):
        s.send(announce_sized(object_id, params.max_object_size))
    s.settle()
    s.send(announce_sized(need - 1, params.max_object_size))
    s.expect_close(ErrorCode.FLOW_CONTROL_ERROR, "announced bytes above max_buffered_bytes")


@case(
    "R11.3-5",
    "the receiver MUST NOT set aside memory for it, MUST send CANCEL with Origin 0 and OBJECT_TOO_LARGE, and counts "
    "the id finished.",
    slug="object-too-large",
)
def too_large(ctx: Context) -> None:
    """ANNOUNCE one byte over max_object_size: CANCEL (Origin 0, OBJECT_TOO_LARGE), and the session lives on."""
    s = ctx.session()
    s.send(announce_sized(0, over_max_object_size(ctx, s.target_params.max_object_size)))
    rx = s.expect(lambda d: isinstance(d.packet, Cancel) and d.packet.object_id == 0, "CANCEL OBJECT_TOO_LARGE")
    assert isinstance(rx.packet, Cancel)
    if rx.packet.origin != 0 or rx.packet.error_code != ErrorCode.OBJECT_TOO_LARGE:
        raise CaseFailed("CANCEL (Origin 0, OBJECT_TOO_LARGE)", str(rx))
    s.alive("an object too large is refused, the session is not aborted")


_R11_3_7 = (
    "A DATA or PROBE for an object id that is not announced and not below the object_id_limit the receiver has "
    "advertised, and a CANCEL with Origin 1 for such an id, are flow-control violations (FLOW_CONTROL_ERROR)"
)


@case("R11.3-7", _R11_3_7, slug="data-beyond-limit")
def data_beyond_limit(ctx: Context) -> None:
    """DATA for object id max_concurrent_objects (never announced): CLOSE FLOW_CONTROL_ERROR."""
    s = ctx.session()
    s.send(Data(s.target_params.max_concurrent_objects, 0, b"x" * 100))
    s.expect_close(ErrorCode.FLOW_CONTROL_ERROR, "DATA for an id the target never allowed")


@case("R11.3-7", _R11_3_7, slug="probe-beyond-limit")
def probe_beyond_limit(ctx: Context) -> None:
    """PROBE for object id max_concurrent_objects (never announced): CLOSE FLOW_CONTROL_ERROR."""
    s = ctx.session()
    s.send(Probe(s.target_params.max_concurrent_objects, 1))
    s.expect_close(ErrorCode.FLOW_CONTROL_ERROR, "PROBE for an id the target never allowed")


@case("R11.3-7", _R11_3_7, slug="cancel-beyond-limit")
def cancel_beyond_limit(ctx: Context) -> None:
    """CANCEL (Origin 1) for object id max_concurrent_objects: CLOSE FLOW_CONTROL_ERROR."""
    s = ctx.session()
    s.send(Cancel(s.target_params.max_concurrent_objects, 1, ErrorCode.CANCELLED))
    s.expect_close(ErrorCode.FLOW_CONTROL_ERROR, "CANCEL for an id the target never allowed")


@case(
    "R11.3-2",
    "An endpoint raises its limits as objects finish.",
    slug="credit-raised",
    level="SHOULD",
)
def credit_raised(ctx: Context) -> None:
    """Object 0 completes: an ACK soon raises object_id_limit (R9.2-5), and the next id past the old limit works."""
    s = ctx.session()
    limit = s.target_params.max_concurrent_objects
    must_complete(s.transfer(small_object(ctx, 2)), "object 0")
    rx = s.expect(
        lambda d: isinstance(d.packet, Ack) and d.packet.object_id_limit > limit,
        f"an ACK raising object_id_limit above {limit}",
        s.target_params.max_ack_delay_ms / 1000 + s.quiet,
    )
    assert isinstance(rx.packet, Ack)
    # The id the old limit refused: now within credit (the tester skips ids between, which only a
    # sender's own bookkeeping forbids, R8.2-1; the receiver judges the id against its limit).
    must_complete(s.transfer(TestObject(ctx.payload(10), object_id=limit)), f"object {limit}, allowed by the raised limit")


# ================================================================================================
# Sender role: the target sends an object to the tester


def _unanswered_flight(ctx: Context) -> tuple[Announce, list[Rx]]:
    """The sender's ANNOUNCE and the DATA and REPAIR it sends before its window is full, the tester
    acknowledging and answering nothing. repair_decoder = 1: REPAIR is bounded by the window exactly
    as DATA is (R11.1-6), and counts with it."""
    peer = ctx.sender(SessionParams(repair_decoder=1))
    silent_receiver(peer)
    peer.accept()
    announce = big_announce(peer)
    return announce, until_window_full(peer)


@case(
    "R11.1-2",
    "An endpoint MUST NOT send a DATA datagram while its bytes in flight are at or above its congestion window.",
    slug="window-bounds-data",
    role="sender",
    needs=("big-object",),
)
def window_bounds_data(ctx: Context) -> None:
    """The tester acknowledges nothing and answers nothing: DATA (or REPAIR) of an object of 1024 chunks or more
    stops long before its end."""
    announce, sent = _unanswered_flight(ctx)
    if len(sent) >= WINDOW_LIMIT:
        raise CaseFailed(
            f"DATA to stop once bytes in flight reach the congestion window, with no ACK nor NACK ever sent (R11.1-4 "
            f"asks for an initial window of at most 128 datagrams; one of {WINDOW_LIMIT} or more before any ACK is "
            "legal but absurd)",
            f"{len(sent)} DATA/REPAIR datagrams of the {announce.chunk_count}-chunk object, none acknowledged",
        )
    ctx.note(f"DATA stopped after {len(sent)} datagrams ({sum(len(rx.data) for rx in sent)} bytes), none acknowledged")


@case(
    "R11.1-3",
    "Packets other than DATA and REPAIR (ANNOUNCE, NACK, ACK, COMPLETE, CANCEL, PROBE, PING, CLOSE) are small and "
    "are not held back by the congestion window",
    slug="ack-with-window-full",
    role="sender",
    needs=("big-object",),
)
def ack_with_window_full(ctx: Context) -> None:
    """The tester acknowledges nothing until the sender's window is full, then sends a PING: the ACK it draws
    (R9.2-2) comes at once, though nothing has left the window."""
    peer = ctx.sender()
    silent_receiver(peer)
    peer.accept()
    window_filled(peer)
    pn = peer.send(Ping())
    pinged = ctx.target.clock()
    rx = peer.expect_session(
        "an ACK for the tester's PING while the window is full",
        lambda p: isinstance(p, Ack) and p.largest_pn >= pn,
        timeout=peer.quiet,
    )
    if (late := rx.at - pinged) > ctx.target.slack + 0.002:
        raise CaseFailed("the ACK at once, whatever the window", f"after {late * 1000:.1f} ms: {rx}")


# The recommended ceiling of R11.1-4, in datagrams of the largest size the sender uses.
INITIAL_WINDOW_CEILING = 128


@case(
    "R11.1-4",
    "The initial congestion window SHOULD be at most 128 datagrams of the largest size the endpoint sends",
    slug="initial-window",
    role="sender",
    level="SHOULD",
    needs=("big-object",),
)
def initial_window(ctx: Context) -> None:
    """The tester acknowledges nothing: the DATA and REPAIR of the first flight fit in 128 datagrams of the largest
    size the sender used, counted in bytes (its ANNOUNCE counts in flight as well, R11.1-3)."""
    _, sent = _unanswered_flight(ctx)
    if not sent:
        raise CaseFailed("a first flight of DATA", "no DATA nor REPAIR", absent=True)
    largest = max(len(rx.data) for rx in sent)
    flight = sum(len(rx.data) for rx in sent)
    if flight > INITIAL_WINDOW_CEILING * largest:
        raise CaseFailed(
            f"a first flight of at most {INITIAL_WINDOW_CEILING} datagrams of {largest} bytes "
            f"({INITIAL_WINDOW_CEILING * largest} bytes) before any ACK",
            f"{len(sent)} DATA/REPAIR datagrams, {flight} bytes",
        )
    ctx.note(f"first flight: {len(sent)} DATA/REPAIR datagrams, {flight} bytes, none acknowledged")
