"""Section 5: the packet types, and the malformed forms of each that a receiver must drop."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from itertools import pairwise

from protocol import codec
from protocol.codec import Ack, Announce, Complete, Data, Initial, Nack, Ping, Probe, Repair, VersionNegotiation
from protocol.constants import ErrorCode, PacketType
from protocol.params import SessionParams

from .. import wire
from ..client import Client, TestObject
from ..context import Context
from ..model import CaseFailed
from ..peer import Rx
from ..receiving_model import listed
from ..registry import case
from .common import (
    dropped,
    expect_nack_naming,
    gap_reports,
    must_complete,
    session_starts,
    small_object,
    still_handshaking,
)

# -- 5.1 INITIAL ----------------------------------------------------------------------------------


def _answered(c: Client, why: str) -> None:
    rx = c.handshake_reply()
    if not isinstance(rx.packet, codec.Accept | codec.Retry):
        raise CaseFailed(f"ACCEPT or RETRY ({why})", str(rx))


@case("R5.1-2", "A server MUST drop an INITIAL datagram shorter than 1200 bytes", slug="short-initial")
def short_initial(ctx: Context) -> None:
    """A 1199-byte INITIAL draws nothing; the same attempt padded to 1200 bytes is answered."""
    c = ctx.client()
    c.send_raw(wire.initial(c.initial_id, c.take_pn(), size=1199))
    c.silent("an INITIAL of 1199 bytes", ignore=())
    c.send_raw(wire.initial(c.initial_id, c.take_pn(), size=1200))
    _answered(c, "the same INITIAL at 1200 bytes")


@case(
    "R5.1-3",
    "A receiver MUST ignore the content of the padding: whatever follows the parameter list up to the CRC32C.",
    slug="padding-ignored",
)
def padding_ignored(ctx: Context) -> None:
    """An INITIAL padded with 0xa5 bytes instead of zeros is answered."""
    c = ctx.client()
    c.send_raw(wire.initial(c.initial_id, c.take_pn(), pad=0xA5))
    _answered(c, "an INITIAL whose padding is not zero")


@case(
    "R5.1-2",
    "A server MUST drop an INITIAL datagram shorter than 1200 bytes",
    slug="longer-initial-accepted",
)
def longer_initial(ctx: Context) -> None:
    """A 1400-byte INITIAL (longer than the minimum) is answered."""
    c = ctx.client()
    c.send_raw(wire.initial(c.initial_id, c.take_pn(), size=1400))
    _answered(c, "an INITIAL of 1400 bytes")


_R5_1_4 = (
    "An INITIAL is malformed if Token Len or Parameters Length points past the end of the payload, if its parameter "
    "list is malformed (section 6), or if its Session ID field is 0."
)


@case("R5.1-4", _R5_1_4, slug="initial-session-id-0")
def initial_zero_id(ctx: Context) -> None:
    """An INITIAL with Session ID 0 draws nothing."""
    c = ctx.client()
    c.send_raw(wire.initial(0, c.take_pn()))
    c.silent("an INITIAL with Session ID 0", ignore=())


@case("R5.1-4", _R5_1_4, slug="initial-params-overrun")
def initial_params_overrun(ctx: Context) -> None:
    """An INITIAL whose Parameters Length (65535) points past the end draws nothing."""
    c = ctx.client()
    body = b"\x00" + struct.pack(">H", 0xFFFF)
    c.send_raw(wire.raw(PacketType.INITIAL, c.initial_id, c.take_pn(), body + bytes(1178 - len(body))))
    c.silent("an INITIAL whose parameter list runs past its end", ignore=())


# -- 5.3 ACCEPT -----------------------------------------------------------------------------------


@case(
    "5.3 header",
    "Header: the Session ID field echoes the client's initial id. The Packet Number is the server's next packet "
    "number in the session: 0 for the first ACCEPT of a session.",
    slug="accept-echoes-initial-id",
)
def accept_echoes(ctx: Context) -> None:
    """ACCEPT carries the initial id in its header, packet number 0, and a non-zero session id."""
    c = ctx.client()
    c.handshake()
    rx = c.accept_rx
    assert rx is not None and rx.decoded is not None
    if rx.decoded.session_id != c.initial_id or rx.decoded.packet_number != 0:
        raise CaseFailed(f"Session ID field {c.initial_id:016x} and Packet Number 0", str(rx))


# -- 5.5 ANNOUNCE ---------------------------------------------------------------------------------


def _bad_announce(ctx: Context, payload_for: Callable[[codec.Announce], bytes], why: str) -> None:
    """A malformed ANNOUNCE is dropped (no ACK), and a correct one for the same id then works."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    dropped(s, wire.raw(PacketType.ANNOUNCE, s.session_id, s.take_pn(), payload_for(obj.announce())), why)
    must_complete(s.transfer(obj), "a correct ANNOUNCE of the same object after the malformed one")


@case(
    "R5.5-1",
    "A sender MUST set Chunk Count to ceil(Total Length / Chunk Size). An ANNOUNCE whose Chunk Count differs is "
    "malformed.",
    slug="announce-wrong-chunk-count",
)
def announce_wrong_count(ctx: Context) -> None:
    """An ANNOUNCE whose Chunk Count is one too many is dropped."""
    _bad_announce(ctx, lambda a: wire.announce_payload(a, chunk_count=a.chunk_count + 1), "an ANNOUNCE with a wrong Chunk Count")


@case("R5.5-2", "An ANNOUNCE whose Chunk Size is less than 64 is malformed.", slug="announce-chunk-size-63")
def announce_small_chunks(ctx: Context) -> None:
    """An ANNOUNCE with Chunk Size 63 (and the matching Chunk Count) is dropped."""

    def payload(a: codec.Announce) -> bytes:
        return wire.announce_payload(a, chunk_size=63, chunk_count=-(-a.total_length // 63))

    _bad_announce(ctx, payload, "an ANNOUNCE with Chunk Size 63")


_R5_5_5 = (
    "An ANNOUNCE is malformed if its Content Type contains a byte outside 0x21 to 0x7E, if its Name is not valid "
    "UTF-8, if either string runs past the payload, or if any byte follows the Name."
)


@case("R5.5-5", _R5_5_5, slug="announce-content-type-space")
def announce_ct_space(ctx: Context) -> None:
    """An ANNOUNCE whose Content Type holds a space is dropped."""
    _bad_announce(ctx, lambda a: wire.announce_payload(a, content_type=b"image/ jpeg"), "a Content Type with a space")


@case("R5.5-5", _R5_5_5, slug="announce-name-not-utf8")
def announce_bad_name(ctx: Context) -> None:
    """An ANNOUNCE whose Name is not UTF-8 is dropped."""
    _bad_announce(ctx, lambda a: wire.announce_payload(a, name=b"cat\xff\xfe.jpg"), "a Name that is not UTF-8")


@case("R5.5-5", _R5_5_5, slug="announce-trailing-byte")
def announce_trailing(ctx: Context) -> None:
    """An ANNOUNCE with a byte after the Name is dropped."""
    _bad_announce(ctx, lambda a: wire.announce_payload(a, trailer=b"\x00"), "a byte after the Name")


@case("R5.5-5", _R5_5_5, slug="announce-name-overrun")
def announce_overrun(ctx: Context) -> None:
    """An ANNOUNCE whose Name Len points past the payload is dropped."""
    _bad_announce(ctx, lambda a: wire.announce_payload(a)[:-2], "a Name running past the payload")


@case(
    "R5.5-3",
    "A sender MUST send the reserved flag bits as 0; a receiver MUST ignore them.",
    slug="announce-reserved-flags",
)
def announce_reserved_flags(ctx: Context) -> None:
    """An ANNOUNCE with every reserved flag bit set: the object completes."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    must_complete(s.transfer(obj, announce_payload=wire.announce_payload(obj.announce(), flags=0xFC)), "reserved flags ignored")


@case(
    "R5.5-4",
    "a receiver MUST ignore In Reply To when is_reply is clear.",
    slug="announce-in-reply-to-ignored",
)
def announce_in_reply_to(ctx: Context) -> None:
    """An ANNOUNCE with is_reply clear but In Reply To 12345: the object completes."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    payload = wire.announce_payload(obj.announce(), in_reply_to=12345)
    must_complete(s.transfer(obj, announce_payload=payload), "In Reply To ignored")


@case(
    "R5.5-6",
    "A receiver MUST treat the Name and Content Type as untrusted data (section 14.7).",
    slug="announce-hostile-strings",
)
def announce_hostile_strings(ctx: Context) -> None:
    """An object named like a path out of any directory, with a NUL and control characters, and a Content Type
    of markup: the object completes and the session goes on."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    # Valid by R5.5-5 (U+0000 is allowed), but no file can have this name: a receiver that used it as a
    # path, or passed it to anything that chokes on it, would fail the object or the session.
    obj.name = "../../../../no-such-dir/\x00\r\n\u202e%s%n<b>.bin"
    obj.content_type = '"text/html";charset=x;<script>'
    must_complete(s.transfer(obj), "Name and Content Type are only data")
    s.alive("after an object with hostile metadata")


# -- 5.6 DATA -------------------------------------------------------------------------------------


@case("R5.6-1", "A DATA payload of fewer than 9 bytes is malformed: a chunk holds at least one byte.", slug="data-empty-chunk")
def data_empty(ctx: Context) -> None:
    """A DATA packet with an 8-byte payload (no chunk byte) draws nothing, not even a NACK."""
    s = ctx.session()
    dropped(s, wire.raw(PacketType.DATA, s.session_id, s.take_pn(), bytes(8)), "a DATA packet without a chunk")


_R5_6_2 = (
    "The length of Chunk MUST equal the length the object's ANNOUNCE implies for chunk i: Chunk Size for every chunk "
    "but the last, and Total Length - (Chunk Count - 1) * Chunk Size for the last. A chunk of any other length, or an "
    "index not below Chunk Count, is a protocol violation"
)


@case("R5.6-2", _R5_6_2, slug="last-chunk-full-size")
def last_chunk_full_size(ctx: Context) -> None:
    """The short last chunk sent padded with zeros to the full Chunk Size: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.data(obj, 0)
    s.data(obj, 1)
    # A receiver that only checks a chunk against Chunk Size, or cuts it to Total Length, takes it.
    last = obj.chunk(2)
    s.data(obj, 2, last + bytes(obj.chunk_size - len(last)))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, f"a last chunk of {obj.chunk_size} bytes where the ANNOUNCE implies {len(last)}")


# -- 5.7 NACK -------------------------------------------------------------------------------------


def _nack_head(encoding: int, object_id: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">IBBI", object_id, flags, encoding, 0)


def _bad_nack(ctx: Context, payload: bytes, why: str) -> None:
    # Well-formed, this NACK (about an object the target never announced) would abort the session.
    s = ctx.session()
    dropped(s, wire.raw(PacketType.NACK, s.session_id, s.take_pn(), payload), why)


_R5_7_1 = (
    "In the ranges encoding, every Length MUST be at least 1, the ranges MUST be in ascending order, and every First "
    "MUST be greater than the last index of the range before it (First + Length - 1). A NACK that breaks this, or "
    "whose payload is not exactly 12 + 8 * Range Count bytes, is malformed."
)


@case("R5.7-1", _R5_7_1, slug="nack-descending-ranges")
def nack_descending(ctx: Context) -> None:
    """A NACK whose ranges go down draws nothing."""
    _bad_nack(ctx, _nack_head(0) + struct.pack(">HIIII", 2, 5, 1, 2, 1), "a NACK with descending ranges")


@case("R5.7-1", _R5_7_1, slug="nack-empty-range")
def nack_empty_range(ctx: Context) -> None:
    """A NACK with a range of Length 0 draws nothing."""
    _bad_nack(ctx, _nack_head(0) + struct.pack(">HII", 1, 3, 0), "a NACK with a range of length 0")


@case("R5.7-1", _R5_7_1, slug="nack-count-mismatch")
def nack_count_mismatch(ctx: Context) -> None:
    """A NACK saying 2 ranges but holding 1 draws nothing."""
    _bad_nack(ctx, _nack_head(0) + struct.pack(">HII", 2, 3, 1), "a NACK whose Range Count lies")


@case(
    "R5.7-2",
    "A range or a set bit that names a chunk index above 2^32 - 1 (First + Length > 2^32, or Base + k > 2^32 - 1 for "
    "a set bit k) makes the NACK malformed.",
    slug="nack-beyond-2-32",
)
def nack_too_far(ctx: Context) -> None:
    """A NACK range ending past 2^32 - 1, and a bitmap bit set past it, draw nothing."""
    _bad_nack(ctx, _nack_head(0) + struct.pack(">HII", 1, 0xFFFFFFF0, 0x20), "a NACK range past 2^32 - 1")
    _bad_nack(ctx, _nack_head(1) + struct.pack(">I", 0xFFFFFFFF) + b"\x40", "a NACK bitmap bit past 2^32 - 1")


@case(
    "R5.7-3",
    "A bitmap NACK with no bitmap byte (a payload of 14 bytes or less) is malformed.",
    slug="nack-bitmap-without-bytes",
)
def nack_no_bitmap(ctx: Context) -> None:
    """A bitmap NACK of exactly 14 bytes draws nothing."""
    _bad_nack(ctx, _nack_head(1) + struct.pack(">I", 0), "a bitmap NACK without a bitmap byte")


@case("5.7 encoding", "0 for ranges, 1 for bitmap. Any other value makes the NACK malformed.", slug="nack-unknown-encoding")
def nack_unknown_encoding(ctx: Context) -> None:
    """A NACK of Encoding 2 draws nothing (section 5.7: other values make it malformed)."""
    _bad_nack(ctx, _nack_head(2) + struct.pack(">H", 0), "a NACK of an unknown encoding")


@case(
    "R5.7-3",
    "A receiver MUST accept a bitmap with no bit set (an empty missing list) and bitmaps with clear bits at either end.",
    slug="nack-empty-bitmap-accepted",
)
def nack_empty_bitmap(ctx: Context) -> None:
    """A bitmap NACK with no bit set is a valid NACK: about a never-announced object, it aborts (R9.3-1)."""
    s = ctx.session()
    s.send_raw(wire.raw(PacketType.NACK, s.session_id, s.take_pn(), _nack_head(1) + struct.pack(">I", 0) + b"\x00\x00"))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "the NACK was valid, and names an object the target never announced")


def _canonical_nack(missing: set[int]) -> tuple[int, int]:
    """(Encoding, payload length) R5.7-4 prescribes for a missing list."""
    if not missing:
        return 0, 12
    runs = sum(1 for i in missing if i - 1 not in missing)
    ranges = 2 + 8 * runs
    bitmap = 4 + (max(missing) - min(missing)) // 8 + 1
    return (1, 10 + bitmap) if bitmap < ranges else (0, 10 + ranges)


def _nack_encoding_ok(rx: Rx) -> None:
    packet = rx.packet
    assert isinstance(packet, Nack)
    missing = listed(packet.missing)
    payload = wire.payload_of(rx.data)
    encoding, length = _canonical_nack(missing)
    what = f"{'bitmap' if encoding else 'ranges'} encoding, {length} bytes of payload, for missing {sorted(missing)[:8]}"
    if payload[5] != encoding or len(payload) != length:
        raise CaseFailed(what, f"encoding {payload[5]} in {len(payload)} bytes: {rx}")
    # The length alone fixes merged ranges, not the bitmap's Base: it must be the lowest index.
    if encoding == 1 and struct.unpack_from(">I", payload, 10)[0] != min(missing):
        raise CaseFailed(f"{what}, Base {min(missing)}", f"Base {struct.unpack_from('>I', payload, 10)[0]}: {rx}")


@case(
    "R5.7-4",
    "The sender MUST use the bitmap encoding, with Base = lo and exactly that many bytes, if and only if it is "
    "strictly smaller; otherwise (a tie included), and always for an empty list, it MUST use the ranges encoding "
    "with merged ranges.",
    slug="nack-encoding-choice",
)
def nack_encoding_choice(ctx: Context) -> None:
    """Gaps whose lists favour the bitmap (object 0), tie (object 1: 41 chunks in a row) or are empty (object 2,
    probed): every NACK is encoded as R5.7-4 prescribes."""
    s = ctx.session()
    scattered = TestObject(ctx.payload(24 * 64), object_id=0, chunk_size=64)
    s.send_object(scattered, order=[i for i in range(24) if i not in (3, 5, 9, 17)], probe=False)
    # chunks 1..41 missing: 10 bytes either way (2 + 8 * 1 against 4 + floor(40 / 8) + 1)
    run = TestObject(ctx.payload(50 * 64), object_id=1, chunk_size=64)
    s.send_object(run, order=[0, *range(42, 50)], probe=False)
    # nothing reported below sent_through 2: the answer to the PROBE is an empty NACK (R9.1-7)
    quiet = TestObject(ctx.payload(4 * 64), object_id=2, chunk_size=64)
    s.send_object(quiet, order=[0, 1], probe=False)
    s.probe(quiet, 2)
    waiting = {0, 1, 2}
    deadline = ctx.target.clock() + ctx.timeout
    while waiting:
        rx = s.maybe(lambda d: isinstance(d.packet, Nack), max(deadline - ctx.target.clock(), 0))
        if rx is None:
            raise CaseFailed("NACKs about objects 0, 1 and 2", f"none about object(s) {sorted(waiting)}", absent=True)
        assert isinstance(rx.packet, Nack)
        if rx.packet.missing or rx.packet.object_id == 2:
            waiting.discard(rx.packet.object_id)
    for rx in s.history:
        if isinstance(rx.packet, Nack):
            _nack_encoding_ok(rx)


_R5_7_5 = (
    "A NACK with announce_missing set MUST have an empty missing list when sent; a receiver MUST ignore the missing "
    "list of a NACK with announce_missing set."
)


@case("R5.7-5", _R5_7_5, slug="announce-missing-empty-list")
def announce_missing_empty_list(ctx: Context) -> None:
    """A chunk, then a PROBE, for an object never announced: each NACK with announce_missing has Range Count 0 (a
    12-byte payload)."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.data(obj, 2)  # the receiver saw chunk 2: it could be tempted to list 0 and 1
    s.probe(obj)
    first = s.expect(lambda d: isinstance(d.packet, Nack) and d.packet.announce_missing, "a NACK with announce_missing")
    # the DATA and the PROBE may draw one NACK or two (R9.1-6 limits those answering DATA)
    second = s.maybe(lambda d: isinstance(d.packet, Nack) and d.packet.announce_missing, s.quiet)
    for rx in (first, second):
        if rx is None:
            continue
        payload = wire.payload_of(rx.data)
        if payload[5] != 0 or len(payload) != 12:
            raise CaseFailed("NACK with announce_missing: ranges encoding, Range Count 0", f"payload {payload.hex()}: {rx}")


@case(
    "R5.7-6",
    "A NACK MUST fit in one datagram no longer than the peer's max_datagram_size. A receiver with more missing chunks "
    "to report than fit MUST report the lowest indices first and the rest in later NACKs",
    slug="gap-reports-split",
)
def gap_reports_split(ctx: Context) -> None:
    """With max_datagram_size 1200 advertised, 200 gaps, never probed: the gap reports fit in 1200 bytes, the
    first lists the lowest chunks, and later ones list the rest."""
    s = ctx.session(SessionParams(max_datagram_size=1200))
    missing, reports = gap_reports(ctx, s)
    for rx in reports:
        if len(rx.data) > 1200:
            raise CaseFailed("NACKs of at most 1200 bytes", f"{len(rx.data)} bytes: {rx}")
    first = reports[0].packet
    assert isinstance(first, Nack)
    head = listed(first.missing)
    lowest = {i for i in missing if i <= max(head)}
    if head != lowest:
        raise CaseFailed(
            f"a first NACK listing the lowest missing chunks (all {len(lowest)} up to chunk {max(head)})",
            f"{len(head)} of them: {reports[0]}",
        )


@case(
    "R5.7-7",
    "A sender MUST set Largest PN to the largest packet number it has received from its peer in the session (0 if "
    "none).",
    slug="nack-largest-pn",
)
def nack_largest_pn(ctx: Context) -> None:
    """Chunk 3 sent with a packet number 30 ahead, then a PROBE with a lower one: every NACK about the gap
    (chunk 2) carries the higher number."""
    s = ctx.session()
    obj = small_object(ctx, 6)
    s.send_object(obj, order=[0, 1], probe=False)
    high = s.next_pn + 30
    s.send(Data(obj.object_id, 3, obj.chunk(3)), pn=high)
    nacks = [expect_nack_naming(s, obj.object_id, 2, "a NACK for chunk 2, left out")]
    # Largest, not latest: a PROBE numbered below it changes nothing.
    s.send(Probe(obj.object_id, 4), pn=high - 10)
    nacks.append(s.expect(lambda d: isinstance(d.packet, Nack), "a NACK answering the PROBE"))
    s.next_pn = high + 1
    for rx in nacks:
        assert isinstance(rx.packet, Nack)
        if rx.packet.largest_pn != high:
            raise CaseFailed(f"Largest PN {high}, the highest packet number the tester sent", str(rx))


# -- 5.8 ACK -- 5.13 CLOSE ------------------------------------------------------------------------


@case("R5.8-1", "An ACK payload MUST be exactly 32 bytes; any other length is malformed.", slug="ack-wrong-length")
def ack_wrong_length(ctx: Context) -> None:
    """ACKs of 31 and 33 bytes (claiming packet 2^32 - 1, which would abort the session if read) draw nothing."""
    s = ctx.session()
    body = struct.pack(">IIQIIQ", 0xFFFFFFFF, 0, 0, 0, 64, 1 << 20)
    dropped(s, wire.raw(PacketType.ACK, s.session_id, s.take_pn(), body[:31]), "an ACK of 31 bytes")
    dropped(s, wire.raw(PacketType.ACK, s.session_id, s.take_pn(), body + b"\x00"), "an ACK of 33 bytes")


@case(
    "R5.8-2",
    "The values an endpoint sends in Received Bytes and Received Packets MUST NOT decrease from one ACK to the next "
    "(apart from the wrap of Received Packets modulo 2^32), nor may Object ID Limit and Announce Limit.",
    slug="ack-values-never-decrease",
)
def ack_values_never_decrease(ctx: Context) -> None:
    """Three objects with reordered chunks, a duplicate datagram and PINGs: in the target's ACKs, taken in packet
    number order, no value goes down."""
    s = ctx.session()
    for object_id in range(3):
        obj = small_object(ctx, 4, object_id=object_id)
        must_complete(s.transfer(obj, order=[0, 2, 1, 3]), f"object {object_id}")
    pn = s.take_pn()
    duplicate = codec.encode(Ping(), s.session_id, pn)
    s.send_raw(duplicate, pn=pn)
    s.send_raw(duplicate, pn=pn)
    s.alive()
    acks = sorted(
        (rx.decoded.packet_number, rx.packet)
        for rx in s.history
        if rx.decoded is not None and isinstance(rx.packet, Ack) and s.attributed(rx.decoded)
    )
    if len(acks) < 2:
        raise CaseFailed("several ACKs over three transfers", f"{len(acks)}", absent=True)
    for (_, before), (_, after) in pairwise(acks):
        wrapped = before.received_packets - after.received_packets > 1 << 31
        if (
            after.received_bytes < before.received_bytes
            or (after.received_packets < before.received_packets and not wrapped)
            or after.object_id_limit < before.object_id_limit
            or after.announce_limit < before.announce_limit
        ):
            raise CaseFailed("ACK values that never decrease", f"{before} then {after}")


@case("R5.9-1", "A COMPLETE payload MUST be exactly 4 bytes.", slug="complete-wrong-length")
def complete_wrong_length(ctx: Context) -> None:
    """A 5-byte COMPLETE (for a never-announced object: read, it would abort the session) draws nothing."""
    s = ctx.session()
    dropped(s, wire.raw(PacketType.COMPLETE, s.session_id, s.take_pn(), struct.pack(">IB", 7, 0)), "a COMPLETE of 5 bytes")


@case(
    "R5.9-2",
    "An endpoint MUST NOT send COMPLETE for an object before it has verified the object's digest (section 10.2).",
    slug="digest-off-by-one-bit",
)
def digest_off_by_one_bit(ctx: Context) -> None:
    """An object announced with its SHA-256 but for the last bit, repaired as asked: never COMPLETE."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    digest = hashlib.sha256(obj.data).digest()
    # A receiver that compares only part of the digest, or none of it, would say COMPLETE.
    obj.digest = digest[:-1] + bytes([digest[-1] ^ 1])
    outcome = s.transfer(obj)
    if outcome.kind == "complete":
        raise CaseFailed("no COMPLETE for an object whose SHA-256 differs from the ANNOUNCE's in one bit", str(outcome))


_R5_10_1 = (
    "A CANCEL is malformed if its payload is shorter than 8 bytes, if Origin is greater than 1, or if the payload is "
    "not exactly 8 + Reason Len bytes."
)


def _cancel_then_transfer(ctx: Context, payload: bytes, why: str) -> None:
    s = ctx.session()
    dropped(s, wire.raw(PacketType.CANCEL, s.session_id, s.take_pn(), payload), why)
    must_complete(s.transfer(small_object(ctx, 2)), "object 0 was not cancelled by the malformed CANCEL")


@case("R5.10-1", _R5_10_1, slug="cancel-origin-2")
def cancel_origin_2(ctx: Context) -> None:
    """A CANCEL of object 0 with Origin 2 is dropped: object 0 then completes."""
    _cancel_then_transfer(ctx, struct.pack(">IBHB", 0, 2, ErrorCode.CANCELLED, 0), "a CANCEL with Origin 2")


@case("R5.10-1", _R5_10_1, slug="cancel-reason-overrun")
def cancel_reason_overrun(ctx: Context) -> None:
    """A CANCEL of object 0 whose Reason Len points past its end is dropped: object 0 then completes."""
    _cancel_then_transfer(ctx, struct.pack(">IBHB", 0, 1, ErrorCode.CANCELLED, 9) + b"abc", "a CANCEL whose reason runs past its end")


def _cancel_in_flight(ctx: Context, code: int, reason: bytes, why: str) -> None:
    """Object 0 half sent, then a CANCEL (Origin 1) of it: the rest never draws COMPLETE (R12.3-5)."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.send_object(obj, order=[0], probe=False)
    s.send_raw(wire.raw(PacketType.CANCEL, s.session_id, s.take_pn(), struct.pack(">IBHB", 0, 1, code, len(reason)) + reason))
    s.settle()
    for index in (1, 2):
        s.data(obj, index)
    s.probe(obj)
    rx = s.maybe(lambda d: isinstance(d.packet, Complete), s.quiet)
    if rx is not None:
        raise CaseFailed(f"no COMPLETE: the object was cancelled ({why})", str(rx))


@case(
    "R5.10-2",
    "A receiver MUST NOT treat invalid UTF-8 in Reason as malformed",
    slug="cancel-reason-not-utf8",
)
def cancel_bad_utf8(ctx: Context) -> None:
    """A CANCEL whose Reason is not UTF-8 still cancels the object."""
    _cancel_in_flight(ctx, ErrorCode.CANCELLED, b"\xff\xfe bad", "a Reason that is not UTF-8")


@case("R5.10-3", "A receiver MUST accept any Error Code, including values not in section 13.", slug="cancel-unknown-code")
def cancel_unknown_code(ctx: Context) -> None:
    """A CANCEL with the unassigned code 0x7777 still cancels the object."""
    _cancel_in_flight(ctx, 0x7777, b"", "an unassigned error code")


@case("R5.11-1", "A PROBE payload MUST be exactly 8 bytes.", slug="probe-wrong-length")
def probe_wrong_length(ctx: Context) -> None:
    """PROBEs of 7 and 9 bytes (read, they would draw a NACK) draw nothing."""
    s = ctx.session()
    body = struct.pack(">II", 0, 1)
    dropped(s, wire.raw(PacketType.PROBE, s.session_id, s.take_pn(), body[:7]), "a PROBE of 7 bytes")
    dropped(s, wire.raw(PacketType.PROBE, s.session_id, s.take_pn(), body + b"\x00"), "a PROBE of 9 bytes")


@case(
    "R5.12-1",
    "A PING payload MUST be empty (Payload Length 0); any payload makes it malformed.",
    slug="ping-with-payload",
)
def ping_with_payload(ctx: Context) -> None:
    """A PING with a one-byte payload draws no ACK."""
    s = ctx.session()
    dropped(s, wire.raw(PacketType.PING, s.session_id, s.take_pn(), b"\x00"), "a PING with a payload")


_R5_13_1 = "A CLOSE is malformed if its payload is shorter than 3 bytes or is not exactly 3 + Reason Len bytes."


@case("R5.13-1", _R5_13_1, slug="close-too-short")
def close_short(ctx: Context) -> None:
    """A 2-byte CLOSE does not end the session."""
    s = ctx.session()
    dropped(s, wire.raw(PacketType.CLOSE, s.session_id, s.take_pn(), struct.pack(">H", ErrorCode.APPLICATION_ERROR)), "a 2-byte CLOSE")


@case("R5.13-1", _R5_13_1, slug="close-reason-overrun")
def close_overrun(ctx: Context) -> None:
    """A CLOSE whose Reason Len points past its end does not end the session."""
    s = ctx.session()
    payload = struct.pack(">HB", ErrorCode.APPLICATION_ERROR, 10) + b"bye"
    dropped(s, wire.raw(PacketType.CLOSE, s.session_id, s.take_pn(), payload), "a CLOSE whose reason runs past its end")


@case("R5.13-2", "R5.10-2 and R5.10-3 apply to CLOSE as well.", slug="close-reason-not-utf8")
def close_bad_utf8(ctx: Context) -> None:
    """A CLOSE whose Reason is not UTF-8 still closes: the session then answers nothing (draining)."""
    s = ctx.session()
    reason = b"\xff\xfe"
    s.send_raw(wire.raw(PacketType.CLOSE, s.session_id, s.take_pn(), struct.pack(">HB", ErrorCode.APPLICATION_ERROR, 2) + reason))
    s.closed = True
    s.drain()
    s.ping()
    s.silent("the session was closed: a draining endpoint sends nothing (R12.4-4)", ignore=())


# ================================================================================================
# Sender role: what the target sends as a client, and the malformed answers it must ignore


@case(
    "R5.1-1",
    "A client MUST pad every INITIAL datagram to at least 1200 bytes. It SHOULD pad to exactly 1200 bytes unless its "
    "token and parameters need more room. Padding bytes MUST be zero when sent.",
    slug="initial-padded-with-zeros",
    role="sender",
)
def initial_padding(ctx: Context) -> None:
    """The INITIALs are at least 1200 bytes and padded with zero bytes."""
    peer = ctx.sender()
    still_handshaking(peer, "to look at a retransmission too")
    for rx in peer.initials:
        payload = wire.payload_of(rx.data)
        token_len = payload[0]
        params_len = int.from_bytes(payload[1 + token_len : 3 + token_len], "big")
        padding = payload[3 + token_len + params_len :]
        if len(rx.data) < 1200 or any(padding):
            raise CaseFailed("INITIALs of at least 1200 bytes with zero padding", f"{len(rx.data)} bytes, padding {padding[:16].hex()}")


@case(
    "R5.1-1",
    "It SHOULD pad to exactly 1200 bytes unless its token and parameters need more room.",
    slug="initial-exactly-1200",
    role="sender",
    level="SHOULD",
)
def initial_exactly_1200(ctx: Context) -> None:
    """The first INITIAL (no token) is exactly 1200 bytes."""
    peer = ctx.sender()
    if len(peer.first.data) != 1200:
        raise CaseFailed("a 1200-byte INITIAL", f"{len(peer.first.data)} bytes")


@case("R5.3-1", "An ACCEPT is malformed if its Session ID field (in the payload) is 0", slug="malformed-accept-ignored", role="sender")
def malformed_accept(ctx: Context) -> None:
    """An ACCEPT assigning session id 0 is dropped: the client keeps trying, then takes a valid ACCEPT."""
    peer = ctx.sender()
    peer.send_raw(wire.raw(PacketType.ACCEPT, peer.initial_id, 0, bytes(8) + b"\x00\x00"))
    still_handshaking(peer, "the ACCEPT assigned session id 0")
    session_starts(peer, "a valid ACCEPT after the malformed one")


@case(
    "R5.2-1",
    "A RETRY is malformed if Token Len is 0 or if the payload is not exactly 1 + Token Len bytes.",
    slug="malformed-retry-ignored",
    role="sender",
)
def malformed_retry(ctx: Context) -> None:
    """RETRYs with Token Len 0 and with a short Token Len are dropped: no INITIAL carries a token."""
    peer = ctx.sender()
    junk = ctx.payload(20)
    peer.send_raw(wire.raw(PacketType.RETRY, peer.initial_id, 0, b"\x00" + junk))
    peer.send_raw(wire.raw(PacketType.RETRY, peer.initial_id, 0, b"\x05" + junk))
    rx = still_handshaking(peer, "the RETRYs were malformed")
    if isinstance(rx.packet, Initial) and rx.packet.token:
        raise CaseFailed("INITIALs without a token", str(rx))


@case(
    "R5.4-1",
    "A VERSION packet is malformed if its payload is empty or if its header's Version field is not 0.",
    slug="malformed-version-ignored",
    role="sender",
)
def malformed_version(ctx: Context) -> None:
    """VERSIONs with Version field 1, or with no versions listed, are dropped: the handshake goes on."""
    peer = ctx.sender()
    peer.send_raw(wire.raw(PacketType.VERSION, peer.initial_id, 0, bytes([7]), version=1))
    peer.send_raw(wire.raw(PacketType.VERSION, peer.initial_id, 0, b"", version=0))
    still_handshaking(peer, "the VERSION packets were malformed")
    session_starts(peer, "a valid ACCEPT after them")


@case(
    "R5.4-2",
    "A client MUST ignore entries of the list that name versions it does not know, including 0.",
    slug="version-unknown-entries-ignored",
    role="sender",
)
def version_unknown_entries(ctx: Context) -> None:
    """A VERSION listing only 0 and 250: with those entries ignored, no version is left, so the client gives up
    the attempt (R3-11) rather than drop the packet or try a version it does not know."""
    peer = ctx.sender()
    peer.stateless(VersionNegotiation((0, 250)))
    sent = ctx.target.clock()
    peer.closed = True  # the attempt is over: no refusal at the end
    for rx in peer.collect(max(ctx.timeout / 2, 3 * peer.quiet)):
        if rx.at - sent <= ctx.target.slack:
            continue  # already on its way when the VERSION arrived
        if len(rx.data) > 2 and rx.data[2] in (0, 250):
            raise CaseFailed("no datagram in version 0 or 250", f"version {rx.data[2]}: {rx}")
        if rx.decoded is not None and rx.decoded.session_id == peer.initial_id:
            raise CaseFailed("nothing more for an attempt whose server lists no version the client knows", str(rx))


@case(
    "R5.6-2",
    "The length of Chunk MUST equal the length the object's ANNOUNCE implies for chunk i: Chunk Size for every chunk "
    "but the last, and Total Length - (Chunk Count - 1) * Chunk Size for the last.",
    slug="sender-chunk-lengths",
    role="sender",
)
def sender_chunk_lengths(ctx: Context) -> None:
    """Every DATA the sender sends has an index below Chunk Count and the length its ANNOUNCE implies."""
    peer = ctx.sender()
    peer.accept()
    incoming = peer.await_whole()
    announce = incoming.announce
    assert announce is not None
    for rx in peer.session_packets():
        packet = rx.packet
        if not isinstance(packet, Data) or packet.object_id != announce.object_id:
            continue
        index = packet.chunk_index
        last = announce.total_length - (announce.chunk_count - 1) * announce.chunk_size
        want = announce.chunk_size if index < announce.chunk_count - 1 else last
        if index >= announce.chunk_count or len(packet.chunk) != want:
            raise CaseFailed(f"chunk {index} of {announce.chunk_count}: {want} bytes", str(rx))


@case("R5.7-5", _R5_7_5, slug="announce-missing-list-ignored", role="sender")
def announce_missing_list_ignored(ctx: Context) -> None:
    """Once every chunk has arrived, a NACK with announce_missing that also lists every chunk: the ANNOUNCE comes
    again (R9.3-3), and no chunk does."""
    peer = ctx.sender()
    peer.policy.complete = False  # the object stays unfinished at the sender
    peer.accept()
    incoming = peer.await_whole()
    peer.pump(None, 2 * peer.quiet)  # past the wait of R9.3-4: listed, a chunk would be resent at once
    mark = len(peer.history)
    peer.send(Nack(0, ((0, incoming.count),), announce_missing=True, largest_pn=max(peer.rx_largest_pn, 0)))
    peer.expect_session("the ANNOUNCE again, for the NACK with announce_missing (R9.3-3)", lambda p: isinstance(p, Announce))
    peer.pump(None, 3 * peer.quiet)
    resent = [rx for rx in peer.history[mark:] if isinstance(rx.packet, Data)]
    if resent:
        raise CaseFailed("no chunk resent: the missing list of a NACK with announce_missing is ignored", str(resent[0]))


# ================================================================================================
# 5.14 REPAIR


_MASK64 = (1 << 64) - 1


def _chosen(seed: int, count: int) -> list[int]:
    """The positions in a REPAIR window that its Seed chooses (section 5.14's SplitMix64, written out again
    here so that the tester does not take the reference's word for it)."""
    chosen: list[int] = []
    state, word = seed, 0
    for i in range(count):
        if i % 64 == 0:
            state = (state + 0x9E3779B97F4A7C15) & _MASK64
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
            word = z ^ (z >> 31)
        if word >> (i % 64) & 1:
            chosen.append(i)
    return chosen


_R5_14_1 = (
    "A REPAIR payload of fewer than 15 bytes, or with Count 0 or above 4096, or whose window runs past chunk index "
    "2^32 - 1, is malformed."
)


@case("R5.14-1", _R5_14_1, slug="malformed-repairs-dropped")
def malformed_repairs(ctx: Context) -> None:
    """REPAIRs for an announced object with no Repair Data, Count 0, Count 4097, and a window past 2^32 - 1: each
    draws nothing, and the object then completes."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.settle()
    data = bytes(obj.chunk_size)

    def repair(first: int, count: int, body: bytes) -> bytes:
        # seed 1 chooses the window's first chunk (and more): read anyhow, each breaks R5.14-2 and would abort
        return wire.raw(PacketType.REPAIR, s.session_id, s.take_pn(), struct.pack(">IIIH", 0, first, 1, count) + body)

    # NACKs for the object may come: its sender fell silent after the ANNOUNCE (R9.1-11).
    quiet_ok = (Ping, Nack)
    dropped(s, repair(0, 1, b""), "a 14-byte REPAIR (no Repair Data)", ignore=quiet_ok)
    dropped(s, repair(0, 0, data), "a REPAIR with Count 0", ignore=quiet_ok)
    dropped(s, repair(0, 4097, data), "a REPAIR with Count 4097", ignore=quiet_ok)
    dropped(s, repair(0xFFFFFFFF, 2, data), "a REPAIR whose window runs past chunk 2^32 - 1", ignore=quiet_ok)
    must_complete(s.transfer(obj, send=False), "the object, none of the REPAIRs used")


@case(
    "R5.14-2",
    "A REPAIR whose window runs past the object's Chunk Count, or whose Repair Data is not Chunk Size bytes long, is "
    "a protocol violation (PROTOCOL_VIOLATION)",
    slug="repair-window-past-count",
)
def repair_window_past_count(ctx: Context) -> None:
    """A REPAIR over chunks 2 and 3 of a 3-chunk object: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.send(Repair(obj.object_id, 2, 1, 2, bytes(obj.chunk_size)))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "a REPAIR window (chunks 2..3) past a 3-chunk object")


@case(
    "R5.14-2",
    "A REPAIR whose window runs past the object's Chunk Count, or whose Repair Data is not Chunk Size bytes long, is "
    "a protocol violation (PROTOCOL_VIOLATION)",
    slug="repair-data-wrong-length",
)
def repair_data_wrong_length(ctx: Context) -> None:
    """Repair Data one byte shorter than the chunk size: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.send(Repair(obj.object_id, 0, 1, 3, bytes(obj.chunk_size - 1)))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "Repair Data one byte shorter than the chunk size")


_R5_14_3 = (
    "A sender MUST NOT send a REPAIR whose Seed chooses no chunk of its window, nor one that would exceed the peer's "
    "max_datagram_size (an object whose Chunk Size leaves no room for the 14 bytes of REPAIR fields gets no REPAIR). "
    "A receiver ignores a REPAIR whose Seed chooses no chunk."
)


@case("R5.14-3", _R5_14_3, slug="repair-choosing-nothing-ignored")
def repair_choosing_nothing(ctx: Context) -> None:
    """Chunks 0 and 2 of 3, then a REPAIR over chunk 1 whose Seed chooses nothing but whose Repair Data is chunk 1:
    no COMPLETE until chunk 1 itself is sent."""
    s = ctx.session()
    if s.target_params.repair_decoder != 1:
        ctx.unsupported("the target advertises repair_decoder = 0")
    obj = small_object(ctx, 3)
    s.send_object(obj, order=[0, 2], probe=False)
    seed = next(seed for seed in range(1, 1 << 16) if not _chosen(seed, 1))
    # A receiver that took the REPAIR to be chunk 1 would have the whole object, and say so.
    s.send(Repair(obj.object_id, 1, seed, 1, obj.chunk(1)))
    rx = s.expect(
        lambda d: isinstance(d.packet, Complete | Nack | codec.Cancel | codec.Close) and getattr(d.packet, "object_id", 0) == 0,
        "a NACK for chunk 1",
    )
    if isinstance(rx.packet, Nack) and 1 not in listed(rx.packet.missing):
        rx = expect_nack_naming(s, obj.object_id, 1, "a NACK for chunk 1")
    if not isinstance(rx.packet, Nack):
        raise CaseFailed("a NACK for chunk 1: the REPAIR chose no chunk, so it says nothing", str(rx))
    must_complete(s.transfer(obj, send=False), "the object once chunk 1 is sent")


@case("R5.14-3", _R5_14_3, slug="sender-repairs-choose-and-fit", role="sender")
def sender_repairs_choose_and_fit(ctx: Context) -> None:
    """The tester decodes REPAIR and accepts 1200-byte datagrams: every REPAIR chooses a chunk and fits."""
    peer = ctx.sender(SessionParams(repair_decoder=1, max_datagram_size=1200))
    peer.policy.complete = False  # REPAIRs follow the last chunk: a COMPLETE could stop them first
    peer.accept()
    peer.await_whole()
    peer.pump(None, peer.quiet)
    repairs = [rx for rx in peer.session_packets() if isinstance(rx.packet, Repair)]
    for rx in repairs:
        packet = rx.packet
        assert isinstance(packet, Repair)
        if not _chosen(packet.seed, packet.count):
            raise CaseFailed("a Seed that chooses at least one chunk of the window", str(rx))
        if len(rx.data) > 1200:
            raise CaseFailed("REPAIR datagrams of at most 1200 bytes", f"{len(rx.data)} bytes: {rx}")
    if not repairs:
        ctx.unsupported("the sender sent no REPAIR (it need not)")


@case(
    "R5.14-4",
    "A sender MUST NOT send a REPAIR whose window includes a chunk it has not yet sent at least once",
    slug="repair-covers-sent-chunks",
    role="sender",
)
def repair_covers_sent_chunks(ctx: Context) -> None:
    """The tester decodes REPAIR; every REPAIR's window holds only chunks whose first copy came before it."""
    peer = ctx.sender(SessionParams(repair_decoder=1))
    peer.policy.complete = False  # REPAIRs follow the last chunk: a COMPLETE could stop them first
    peer.accept()
    peer.await_whole()
    peer.pump(None, peer.quiet)
    sent: dict[int, set[int]] = {}
    repairs = 0
    for rx in peer.session_packets():
        packet = rx.packet
        if isinstance(packet, Data):
            sent.setdefault(packet.object_id, set()).add(packet.chunk_index)
        elif isinstance(packet, Repair):
            repairs += 1
            window = range(packet.first_index, packet.first_index + packet.count)
            unsent = [i for i in window if i not in sent.get(packet.object_id, set())]
            if unsent:
                raise CaseFailed(f"a REPAIR window of chunks already sent ({rx})", f"chunk {unsent[0]} not sent before it")
    if not repairs:
        ctx.unsupported("the sender sent no REPAIR (it need not)")
