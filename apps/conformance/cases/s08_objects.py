"""Section 8: chunks, object ids, announcing, and packet numbers."""

from __future__ import annotations

from itertools import pairwise

from protocol import codec
from protocol.codec import Accept, Announce, Complete, Data, Initial, Retry, VersionNegotiation
from protocol.constants import DATA_PREFIX_LEN, MIN_CHUNK_SIZE, MIN_MAX_DATAGRAM, OVERHEAD, ErrorCode
from protocol.params import SessionParams

from .. import wire
from ..client import TestObject
from ..context import Context
from ..model import CaseFailed
from ..peer import Rx
from ..registry import case
from .common import announce_sized, expect_nack_naming, must_complete, over_max_object_size, small_object

UNKNOWN_VERSION = 3

# ================================================================================================
# Receiver role


@case(
    "R8.1-3",
    "An object receiver MUST treat as a protocol violation (PROTOCOL_VIOLATION) an ANNOUNCE whose Chunk Size exceeds "
    "its own max_datagram_size minus 30.",
    slug="chunk-size-too-large",
)
def chunk_size_too_large(ctx: Context) -> None:
    """An ANNOUNCE with chunks one byte larger than the target's datagrams allow: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    size = s.target_params.max_datagram_size - 30 + 1
    s.announce(TestObject(ctx.payload(size + 10), chunk_size=size))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, f"chunk size {size} exceeds max_datagram_size - 30")


_R8_1_4 = (
    "An object receiver MUST treat as a protocol violation (PROTOCOL_VIOLATION) a DATA packet for an announced object "
    "whose Chunk Index is not below the object's Chunk Count, or whose chunk length is not the length chunk i must "
    "have."
)


@case("R8.1-4", _R8_1_4, slug="chunk-index-beyond-count")
def chunk_index_beyond(ctx: Context) -> None:
    """Chunk 3 of a 3-chunk object: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.send(Data(0, 3, obj.chunk(0)))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "chunk index 3 of a 3-chunk object")


@case("R8.1-4", _R8_1_4, slug="chunk-wrong-length")
def chunk_wrong_length(ctx: Context) -> None:
    """Chunk 0 one byte short: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.send(Data(0, 0, obj.chunk(0)[:-1]))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "a chunk one byte shorter than the chunk size")


@case("R8.1-6", "An object receiver MUST ignore (and count) a chunk it already holds.", slug="chunk-held-ignored")
def chunk_held(ctx: Context) -> None:
    """Chunk 0 twice, the second copy with other bytes: the first stays, and the object completes."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.data(obj, 0)
    s.data(obj, 0, bytes(b ^ 0xFF for b in obj.chunk(0)))
    must_complete(s.transfer(obj, order=[1, 2], send=True), "the second copy of chunk 0 ignored")


@case(
    "R8.2-4",
    "then processes any chunks of that object it buffered before the ANNOUNCE arrived (section 9.1) as if they "
    "arrived now.",
    slug="data-before-announce",
)
def data_before_announce(ctx: Context) -> None:
    """Chunks first, the ANNOUNCE last: the object completes (from the buffer or by NACKed repairs)."""
    s = ctx.session()
    obj = small_object(ctx, 4)
    for index in range(obj.count):
        s.data(obj, index)
    must_complete(s.transfer(obj, order=[]), "an object whose ANNOUNCE came after its chunks")


_R8_2_5 = (
    "An ANNOUNCE for an object the receiver is receiving, identical in every field (reserved flag bits, and "
    "In Reply To when is_reply is clear (R5.5-4), excepted) to the first, is a duplicate: it MUST be ignored. "
    "One that differs in any field is a protocol violation (PROTOCOL_VIOLATION)."
)


@case("R8.2-5", _R8_2_5, slug="duplicate-announce")
def duplicate_announce(ctx: Context) -> None:
    """The ANNOUNCE twice: ignored, the object completes."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    must_complete(s.transfer(obj), "a duplicate ANNOUNCE ignored")


@case("R8.2-5", _R8_2_5, slug="conflicting-announce")
def conflicting_announce(ctx: Context) -> None:
    """A second ANNOUNCE of the same object with another name: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.data(obj, 0)
    obj.name = "another-name.bin"
    s.announce(obj)
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "an ANNOUNCE that differs from the first")


@case(
    "R8.2-5",
    "An ANNOUNCE for an object the receiver has finished is answered with the object's final word (section 9.1).",
    slug="announce-after-finish",
)
def announce_after_finish(ctx: Context) -> None:
    """The ANNOUNCE of a completed object again: COMPLETE again."""
    s = ctx.session()
    obj = small_object(ctx, 2)
    must_complete(s.transfer(obj), "the object")
    s.ctx.target.sleep(s.quiet)  # past the rate limit of repeated final words
    s.drain()
    s.announce(obj)
    s.expect(lambda d: isinstance(d.packet, Complete) and d.packet.object_id == 0, "COMPLETE, the object's final word")


@case(
    "R8.2-6",
    "Objects are independent: an object receiver MUST deliver each object to its application as soon as it is "
    "complete and verified, whatever the state of other objects.",
    slug="objects-independent",
)
def objects_independent(ctx: Context) -> None:
    """Object 0 left incomplete, object 1 sent whole: COMPLETE for object 1."""
    s = ctx.session()
    first = small_object(ctx, 3)
    s.send_object(first, order=[0], probe=False)
    must_complete(s.transfer(small_object(ctx, 2, object_id=1)), "object 1 while object 0 is unfinished")


@case(
    "R8.2-7",
    "a receiver MUST NOT treat an In Reply To that names no object it sent as a protocol violation.",
    slug="reply-to-unknown-object",
)
def reply_to_unknown(ctx: Context) -> None:
    """An object announced as the reply to object 999 (never sent): it completes."""
    s = ctx.session()
    obj = small_object(ctx, 2)
    obj.in_reply_to = 999
    must_complete(s.transfer(obj), "a reply to an object the target never sent")


_R8_2_11 = (
    "A receiver checks a well-formed ANNOUNCE in this order and acts on the first rule that applies: (1) the id is "
    "finished: the final word (R9.1-9); (2) the id is being received: a duplicate or PROTOCOL_VIOLATION (R8.2-5); "
    "(3) the id is not below the advertised object_id_limit: FLOW_CONTROL_ERROR (R11.3-3); (4) Chunk Size is above "
    "its max_datagram_size - 30: PROTOCOL_VIOLATION (R8.1-3); (5) Total Length is above its max_object_size: CANCEL "
    "with Origin 0 and OBJECT_TOO_LARGE (R11.3-5)"
)


@case("R8.2-11", _R8_2_11, slug="announce-id-limit-before-size")
def announce_id_limit_first(ctx: Context) -> None:
    """An id beyond object_id_limit that is also too large: rule 3 first, CLOSE FLOW_CONTROL_ERROR (not a CANCEL)."""
    s = ctx.session()
    params = s.target_params
    s.send(announce_sized(params.max_concurrent_objects, over_max_object_size(ctx, params.max_object_size)))
    s.expect_close(ErrorCode.FLOW_CONTROL_ERROR, "the id is beyond the limit, whatever its size")


@case("R8.2-11", _R8_2_11, slug="announce-chunk-size-before-size")
def announce_chunk_size_first(ctx: Context) -> None:
    """Chunks too large for the target's datagrams, in an object also too large: rule 4 first, CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    params = s.target_params
    chunk_size = params.max_datagram_size - 30 + 1
    s.send(announce_sized(0, over_max_object_size(ctx, params.max_object_size, chunk_size), chunk_size))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, f"chunk size {chunk_size} exceeds max_datagram_size - 30, whatever the size")


_R8_3_2 = "An endpoint MUST NOT send two different datagrams with the same packet number in a session."


def _one_datagram_per_number(rxs: list[Rx], who: str) -> None:
    """No packet number on two different datagrams (the same datagram again, a repeated CLOSE, is allowed).
    RETRY and VERSION are stateless, numbered 0 outside every session (R7.3-6): a target that sends RETRY
    first numbers its ACCEPT 0 as well."""
    seen: dict[int, Rx] = {}
    for rx in rxs:
        if rx.decoded is None or isinstance(rx.packet, Retry | VersionNegotiation):
            continue
        earlier = seen.setdefault(rx.decoded.packet_number, rx)
        if earlier.data != rx.data:
            raise CaseFailed(f"one datagram per packet number from {who}", f"{earlier}, then {rx}")


@case("R8.3-2", _R8_3_2, slug="server-packet-numbers-unique")
def server_packet_numbers_unique(ctx: Context) -> None:
    """The INITIAL again after ACCEPT, then an object with a gap (NACKs, a repair): every packet number of the
    target's session is on one datagram only, the repeated ACCEPT's included."""
    c = ctx.client()
    c.handshake()
    c.send_initial()
    c.expect(lambda d: isinstance(d.packet, Accept), "ACCEPT again for the repeated INITIAL (R7.3-1)")
    c.validate()
    c.settle()
    obj = small_object(ctx, 4)
    c.send_object(obj, order=[0, 1, 3], probe=False)
    expect_nack_naming(c, obj.object_id, 2, "a NACK for the chunk left out")
    must_complete(c.transfer(obj, send=False), "after the gap is repaired")
    c.alive()
    # the ACCEPTs carry the initial id but are the session's packets 0 and on (R8.3-1); nothing stateless came
    _one_datagram_per_number(c.history, "the target in one session")


@case(
    "R8.3-4",
    "Stateless responses (RETRY, VERSION, and the SERVER_BUSY CLOSE) carry packet number 0 and are outside every "
    "numbering (R7.3-6).",
    slug="version-outside-session-numbering",
)
def version_outside_numbering(ctx: Context) -> None:
    """From the socket of a live session, an INITIAL of version 3 numbered 9: its VERSION answer is packet 0, not a
    number of the session or the INITIAL's."""
    s = ctx.session()
    s.alive()
    datagram = wire.initial(ctx.new_id(), 9, version=UNKNOWN_VERSION)
    s.send_raw(datagram)
    rx = s.maybe(lambda d: isinstance(d.packet, VersionNegotiation), s.quiet)
    if rx is None:
        ctx.unsupported("the target answers an INITIAL of an unknown version with silence, which R3-3 allows")
    assert rx.decoded is not None
    if rx.decoded.packet_number != 0:
        raise CaseFailed("VERSION with Packet Number 0, outside the session's numbering", str(rx))


@case(
    "R8.3-4",
    "Stateless responses (RETRY, VERSION, and the SERVER_BUSY CLOSE) carry packet number 0 and are outside every "
    "numbering (R7.3-6).",
    slug="accept-after-retry-is-packet-0",
    needs=("retry",),
)
def accept_after_retry(ctx: Context) -> None:
    """RETRY (packet 0), then the INITIAL with its token: the ACCEPT is packet 0 too, the RETRY having used no
    number of the session."""
    c = ctx.client()
    c.send_initial()
    rx = c.handshake_reply()
    if not isinstance(rx.packet, Retry):
        ctx.unsupported("the target does not demand address validation (it answered INITIAL without a RETRY)")
    assert rx.decoded is not None
    if rx.decoded.packet_number != 0:
        raise CaseFailed("RETRY with Packet Number 0", str(rx))
    c.send_initial(token=rx.packet.token)
    answer = c.handshake_reply()
    if not isinstance(answer.packet, Accept) or answer.decoded is None:
        raise CaseFailed("ACCEPT for the INITIAL carrying the RETRY's token", str(answer))
    c.session_id = answer.packet.session_id
    c.validate()
    if answer.decoded.packet_number != 0:
        raise CaseFailed("ACCEPT as packet number 0 of the session, the RETRY outside its numbering", str(answer))


# ================================================================================================
# Sender role


@case(
    "R8.1-1",
    "It MUST be at least 64 and at most the peer's max_datagram_size minus 30",
    slug="chunk-size-fits-peer",
    role="sender",
)
def chunk_size_fits_peer(ctx: Context) -> None:
    """The tester advertises max_datagram_size 1200: the ANNOUNCE's Chunk Size is 64 to 1170 (and no datagram
    exceeds 1200 bytes, R4.1-5)."""
    peer = ctx.sender(SessionParams(max_datagram_size=MIN_MAX_DATAGRAM))
    peer.accept()
    incoming = peer.receive_object()
    assert incoming.announce is not None
    size = incoming.announce.chunk_size
    most = MIN_MAX_DATAGRAM - OVERHEAD - DATA_PREFIX_LEN
    if not MIN_CHUNK_SIZE <= size <= most:
        raise CaseFailed(f"Chunk Size {MIN_CHUNK_SIZE} to {most} for a peer taking {MIN_MAX_DATAGRAM}-byte datagrams", f"Chunk Size {size}")


@case(
    "R8.2-1",
    "In each direction of a session, object ids start at 0 and increase by 1 for each object.",
    slug="first-object-id-0",
    role="sender",
)
def first_object_id(ctx: Context) -> None:
    """The first ANNOUNCE of a session is for object 0."""
    peer = ctx.sender()
    peer.accept()
    rx = peer.expect_session("an ANNOUNCE", lambda p: isinstance(p, Announce))
    if not isinstance(rx.packet, Announce) or rx.packet.object_id != 0:
        raise CaseFailed("ANNOUNCE of object 0", str(rx))


@case(
    "R8.2-2",
    "An object sender MUST send an object's ANNOUNCE before the object's first DATA",
    slug="announce-before-data",
    role="sender",
)
def announce_before_data(ctx: Context) -> None:
    """Nothing of an object arrives before its ANNOUNCE."""
    peer = ctx.sender()
    peer.accept()
    peer.receive_object()
    announced: set[int] = set()
    for rx in peer.session_packets():
        packet = rx.packet
        if isinstance(packet, Announce):
            announced.add(packet.object_id)
        elif isinstance(packet, Data) and packet.object_id not in announced:
            raise CaseFailed(f"the ANNOUNCE of object {packet.object_id} before its DATA", str(rx))


@case(
    "R8.2-8",
    "An object sender MUST send each object's chunks for the first time in ascending order of index.",
    slug="chunks-ascending",
    role="sender",
)
def chunks_ascending(ctx: Context) -> None:
    """First transmissions of the chunks arrive in ascending order (on a path that does not reorder)."""
    peer = ctx.sender()
    peer.accept()
    incoming = peer.receive_object()
    if incoming.order != sorted(incoming.order):
        raise CaseFailed("chunks first sent in ascending order", f"order {incoming.order[:20]}")


@case(
    "R8.2-9",
    "An object that has been given an id but fails before its ANNOUNCE is sent (for example because it is larger than "
    "the peer's max_object_size, or the application abandons it) MUST still be ended at the peer by a CANCEL with "
    "Origin 1 for its id",
    slug="too-large-cancelled-not-announced",
    role="sender",
)
def too_large_for_tester(ctx: Context) -> None:
    """The tester accepts objects of at most 1 byte: no ANNOUNCE of a larger one, a CANCEL (Origin 1) instead."""
    from protocol.params import SessionParams

    peer = ctx.sender()
    peer.accept(params=SessionParams(max_object_size=1, max_buffered_bytes=1))
    rx = peer.expect_session("ANNOUNCE or CANCEL of object 0", lambda p: isinstance(p, Announce | codec.Cancel))
    packet = rx.packet
    if isinstance(packet, Announce):
        if packet.total_length <= 1:
            ctx.unsupported("the sender's object is 1 byte or less: it fits")
        raise CaseFailed("no ANNOUNCE of an object over max_object_size (R8.2-2)", str(rx))
    if not isinstance(packet, codec.Cancel) or packet.origin != 1 or packet.object_id != 0:
        raise CaseFailed("CANCEL with Origin 1 for object 0", str(rx))


@case(
    "R8.2-10",
    "An object sender SHOULD send an object's ANNOUNCE more than once when the object has DATA to follow it",
    slug="announce-sent-again",
    role="sender",
    level="SHOULD",
)
def announce_sent_again(ctx: Context) -> None:
    """COMPLETE held back once the object is whole: its ANNOUNCE came twice or more, each copy the same (R8.2-5)."""
    peer = ctx.sender()
    # Held back: an echo due after a burst of chunks may trail it, and on a short path a COMPLETE
    # would overtake it; the SHOULD is about an object still in progress.
    peer.policy.complete = False
    peer.accept()
    incoming = peer.await_whole()
    if incoming.count == 0:
        ctx.unsupported("the sender's object is empty: no DATA follows its ANNOUNCE")
    peer.pump(lambda: len(incoming.announces) >= 2, peer.quiet)
    first = incoming.announces[0]
    if len(incoming.announces) < 2:
        raise CaseFailed(f"the ANNOUNCE more than once for an object of {incoming.count} chunks", "one copy")
    for other in incoming.announces[1:]:
        if other != first:
            raise CaseFailed(f"copies of the ANNOUNCE identical to the first, {wire.describe_packet(first)}", wire.describe_packet(other))
    incoming.completed = True
    peer.send(codec.Complete(0))


@case(
    "R8.3-1",
    "A server's session starts with its first ACCEPT as number 0.",
    slug="accept-first-when-pushing",
    needs=("push",),
)
def accept_first_when_pushing(ctx: Context) -> None:
    """A server with an object for every new session: its ACCEPT still comes first, as packet 0."""
    c = ctx.client()
    c.send_initial()
    got = c.collect(c.quiet)
    if len(got) <= 1:
        ctx.unsupported("the target sends nothing but ACCEPT before the client is validated")
    first = got[0]
    if not isinstance(first.packet, Accept) or first.decoded is None or first.decoded.packet_number != 0:
        raise CaseFailed("ACCEPT, packet number 0, before anything else of the session", f"first {first}")


@case(
    "R8.3-1",
    "Each endpoint numbers the datagrams it sends in a session with a u32 packet number, starting at 0 and increasing "
    "by 1 with every datagram, whatever its type, retransmissions included",
    slug="packet-numbers-consecutive",
    role="sender",
)
def packet_numbers(ctx: Context) -> None:
    """Packet numbers go up by exactly 1 from each datagram to the next (on a path that loses nothing)."""
    peer = ctx.sender()
    peer.accept()
    peer.receive_object()
    numbers = [rx.decoded.packet_number for rx in peer.history if rx.decoded is not None and not isinstance(rx.packet, Initial)]
    numbers.sort()
    gaps = [(a, b) for a, b in pairwise(numbers) if b != a + 1]
    if gaps:
        raise CaseFailed("packet numbers increasing by 1", f"{gaps[0][0]} followed by {gaps[0][1]}")


@case("R8.3-2", _R8_3_2, slug="client-packet-numbers-unique", role="sender")
def client_packet_numbers_unique(ctx: Context) -> None:
    """Chunks 1 and 2 pretended lost once, so they go again: no packet number of the client's, INITIALs included,
    is on two different datagrams."""
    peer = ctx.sender()
    peer.policy.drop = lambda packet, copy: packet.chunk_index in (1, 2) and copy == 1
    peer.accept()
    incoming = peer.receive_object()
    if not incoming.dropped:
        ctx.unsupported("the sender's object has a single chunk: nothing was sent again")
    _one_datagram_per_number([rx for rx in peer.history if rx.src == peer.first.src], "the client in one session")


@case(
    "R8.1-5",
    "An object sender MUST send the same bytes for a chunk every time it sends that chunk.",
    slug="retransmission-same-bytes",
    role="sender",
)
def retransmission_same_bytes(ctx: Context) -> None:
    """Chunk 1 pretended lost once: its retransmission carries the same bytes (checked on every copy)."""
    peer = ctx.sender()
    peer.policy.drop = lambda packet, copy: packet.chunk_index == 1 and copy == 1
    peer.accept()
    incoming = peer.receive_object()
    if incoming.dropped[1] == 0:
        ctx.unsupported("the sender's object has a single chunk")
    if incoming.mismatched:
        raise CaseFailed("the same bytes in every copy of a chunk", f"chunk {incoming.mismatched[0]} changed")
