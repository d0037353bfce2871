"""Section 11: flow control and the receiver's limits, and the error codes they produce."""

from __future__ import annotations

from protocol.codec import Ack, Announce, Cancel, Data, Nack, Ping, Probe, Repair
from protocol.constants import DATA_PREFIX_LEN, OVERHEAD, ErrorCode
from protocol.params import SessionParams

from ..client import TestObject
from ..context import Context
from ..model import CaseFailed
from ..peer import Rx
from ..receiving_model import missing_ranges
from ..registry import case
from ..server import SenderPeer
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


@case("R11.3-8", "A sender waiting for credit MAY send PING to obtain a current ACK.", slug="ping-for-credit")
def ping_for_credit(ctx: Context) -> None:
    """Object 0 completes and the ACKs that follow are taken for lost; a PING draws an ACK carrying limits no lower
    than any sent before, and the id max_concurrent_objects, allowed by it, completes."""
    s = ctx.session()
    limit = s.target_params.max_concurrent_objects
    must_complete(s.transfer(small_object(ctx, 2)), "object 0")
    s.collect(s.quiet)  # the ACKs that raise the credit (R9.2-5): never read, as if lost on the way
    s.drain()
    sent = [rx.packet for rx in s.history if isinstance(rx.packet, Ack) and rx.decoded is not None and s.attributed(rx.decoded)]
    ids = max([limit, *(a.object_id_limit for a in sent)])
    announced = max([s.target_params.max_buffered_bytes, *(a.announce_limit for a in sent)])
    pn = s.ping()
    rx = s.expect_ack(pn, "an ACK in answer to the PING (R9.2-2)")
    ack = rx.packet
    assert isinstance(ack, Ack)
    if ack.object_id_limit < ids or ack.announce_limit < announced:
        raise CaseFailed(
            f"the current limits, at least object_id_limit={ids}, announce_limit={announced} (sent before)",
            f"object_id_limit={ack.object_id_limit}, announce_limit={ack.announce_limit}",
        )
    if ack.object_id_limit <= limit:
        ctx.unsupported(f"object_id_limit stayed {limit} once object 0 finished: no credit to wait for (R11.3-2)")
    must_complete(s.transfer(TestObject(ctx.payload(10), object_id=limit)), f"object {limit}, within the credit the PING's ACK showed")


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
        raise CaseFailed("the ACK at once, whatever the window", f"after {late * 1000:.1f} ms: {rx}", late=True)


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


@case(
    "R11.1-5",
    "It MUST NOT treat a NACK or a loss report as permission to exceed R11.1-1 or R11.1-2.",
    slug="loss-report-opens-no-window",
    role="sender",
    needs=("big-object",),
)
def loss_report_opens_no_window(ctx: Context) -> None:
    """Nothing acknowledged: the window fills; a NACK reporting every datagram received frees it, and it fills again;
    then a NACK with the same Largest PN lists 8 chunks of the first flight lost: no DATA or REPAIR comes (nothing
    more was reported delivered) until an ACK frees the window."""
    peer = ctx.sender()
    silent_receiver(peer)
    peer.accept()
    first = window_filled(peer)
    reported = peer.rx_largest_pn
    peer.nack(0, [])
    if not until_window_full(peer, fresh=True):
        raise CaseFailed("DATA once a NACK reported every datagram received", "none", absent=True)
    incoming = peer.obj(0)
    if len(incoming.first_seen) >= incoming.count:
        ctx.unsupported("the second flight carried the object's last chunk: its window need not be full")
    lost = sorted(rx.packet.chunk_index for rx in first if isinstance(rx.packet, Data))[:8]
    peer.send(Nack(0, missing_ranges(lost), False, reported))
    late = [rx for rx in peer.collect(3 * peer.quiet) if isinstance(rx.packet, Data | Repair)]
    if late:
        raise CaseFailed(
            "no DATA nor REPAIR while the window stays full: the NACK reports chunks lost, no datagram delivered "
            "that the one before had not",
            f"{len(late)} datagrams, the first {late[0]}",
        )
    # The window freed, the chunks reported lost go first (R9.3-5): the NACK was heard, and held back.
    peer.ack()
    rx = peer.expect_session("DATA once an ACK frees the window", lambda p: isinstance(p, Data | Repair))
    if not (isinstance(rx.packet, Data) and rx.packet.chunk_index in lost):
        ctx.note(f"the first datagram once the window was freed is {rx}, not a chunk the NACK listed")


def _unreported(peer: SenderPeer, reported: int) -> list[Rx]:
    """The sender's datagrams in flight, as the tester counts them (spec 11.1): those with a packet number
    above ``reported``, but those carrying an ACK, oldest first."""
    out = [
        rx for rx in peer.session_packets()
        if rx.decoded is not None and rx.decoded.packet_number > reported and not isinstance(rx.packet, Ack)
    ]
    return sorted(out, key=lambda rx: rx.decoded.packet_number if rx.decoded is not None else 0)


@case(
    "R11.1-6",
    "REPAIR (section 9.6) is chunk-sized: it is paced and bounded by the congestion window exactly as DATA is "
    "(R11.1-1, R11.1-2).",
    slug="window-bounds-repair",
    role="sender",
    needs=("big-object",),
)
def window_bounds_repair(ctx: Context) -> None:
    """With repair_decoder = 1 and nothing acknowledged, NACKs reporting every datagram received take the sender
    through its object a window at a time; then NACKs report just what the chunks not yet sent need: the REPAIRs
    the tail calls for wait for room, each step bringing no more than it reported plus one datagram."""
    peer = ctx.sender(SessionParams(repair_decoder=1))
    silent_receiver(peer)
    peer.accept()
    first = window_filled(peer)
    incoming = peer.obj(0)
    announce = incoming.announce
    assert announce is not None
    largest = max(len(rx.data) for rx in first)
    window = sum(len(rx.data) for rx in first)

    def unsent_bytes() -> int:
        # A DATA datagram is its chunk and 30 bytes (spec 8.1).
        return sum(
            OVERHEAD + DATA_PREFIX_LEN + min(announce.chunk_size, announce.total_length - i * announce.chunk_size)
            for i in range(announce.chunk_count) if i not in incoming.first_seen
        )

    reported = -1
    while unsent_bytes() > window:  # a whole window more does not reach the last chunk
        reported = peer.rx_largest_pn
        peer.nack(0, [])
        flight = sum(len(rx.data) for rx in until_window_full(peer, fresh=True))
        if not flight:
            raise CaseFailed("DATA once a NACK reported every datagram received", "none", absent=True)
        if flight > window + 2 * largest:
            ctx.unsupported(
                f"the window grew from {window} to {flight} bytes on NACKs alone: what a NACK reports does not bound "
                "what follows it"
            )
    repairs = steps = 0
    while (need := unsent_bytes()) > 0:
        steps += 1
        if steps > WINDOW_LIMIT:
            raise CaseFailed("the object's last chunk, NACKs reporting room for it", f"{need} bytes of chunks still unsent", absent=True)
        freed = 0
        for rx in _unreported(peer, reported):
            if freed >= need:
                break
            freed += len(rx.data)
            assert rx.decoded is not None
            reported = rx.decoded.packet_number
        peer.send(Nack(0, (), False, reported))
        step = until_window_full(peer, fresh=True)
        repairs += sum(isinstance(rx.packet, Repair) for rx in step)
        sent = sum(len(rx.data) for rx in step)
        if sent > freed + largest:
            raise CaseFailed(
                f"at most {freed + largest} bytes of DATA and REPAIR after a NACK that reported {freed} more bytes "
                "delivered, the window full before it (REPAIR counts against the window as DATA does)",
                f"{len(step)} datagrams, {sent} bytes, {sum(isinstance(rx.packet, Repair) for rx in step)} of them REPAIR",
            )
        if not step and not _unreported(peer, reported):
            raise CaseFailed("the chunks not yet sent, once NACKs reported every datagram received", "nothing", absent=True)
    if repairs:
        ctx.note(f"{repairs} REPAIR(s) behind the last chunk, within the room NACKs reported")
        return
    # Every chunk out and the window full: the tail's REPAIRs, if the sender sends any, wait for an ACK.
    peer.ack()
    if not peer.pump(lambda: any(isinstance(rx.packet, Repair) for rx in peer.session_packets()), peer.quiet):
        ctx.unsupported("the sender sent no REPAIR to a peer with repair_decoder = 1 (forward repair is optional)")
    ctx.note("the tail's REPAIRs all waited for the ACK that freed the window")
