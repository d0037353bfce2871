"""Section 4: the datagram format (what the target sends) and receive processing (what it drops)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from protocol import codec
from protocol.codec import Ack, Close, Data, Nack, Ping
from protocol.constants import ErrorCode, PacketType
from protocol.errors import DecodeError
from protocol.params import SessionParams

from .. import wire
from ..client import Client, TestObject
from ..context import Context
from ..model import CaseFailed
from ..peer import Rx
from ..registry import case
from .common import dropped, must_complete, sample_traffic, small_object


def _every(rxs: list[Rx], ok: Callable[[bytes], bool], what: str) -> None:
    for rx in rxs:
        if not ok(rx.data):
            raise CaseFailed(what, f"{rx} ({len(rx.data)} bytes: {rx.data[:24].hex()}...)")


@case(
    "R4.1-1",
    "A datagram MUST consist of exactly the header, Payload Length bytes of payload, and the CRC32C, so that its "
    "length is 18 + Payload Length + 4.",
    slug="sent-length",
)
def sent_length(ctx: Context) -> None:
    """Every datagram of a session with a transfer is exactly 22 + Payload Length bytes."""
    _every(
        sample_traffic(ctx),
        lambda d: len(d) >= 22 and len(d) == 22 + struct.unpack_from(">H", d, 16)[0],
        "datagrams of exactly 18 + Payload Length + 4 bytes",
    )


@case("R4.1-2", "The Magic field MUST be 0x53 0x4E.", slug="sent-magic")
def sent_magic(ctx: Context) -> None:
    """Every datagram of a session with a transfer starts with 0x53 0x4E."""
    _every(sample_traffic(ctx), lambda d: d[:2] == b"SN", "datagrams starting 53 4e")


@case("R4.1-3", "The CRC32C field MUST be computed as follows.", slug="sent-crc32c")
def sent_crc(ctx: Context) -> None:
    """Every datagram of a session with a transfer ends with the right CRC32C."""
    _every(sample_traffic(ctx), lambda d: wire.crc(d[:-4]) == d[-4:], "a CRC32C (Castagnoli) over all bytes before it")


@case(
    "R4.1-4",
    "The value 0 is reserved: an endpoint MUST NOT send a datagram whose Session ID field is 0.",
    slug="sent-session-id-nonzero",
)
def sent_session_id(ctx: Context) -> None:
    """No datagram of a session with a transfer carries Session ID 0."""
    _every(sample_traffic(ctx), lambda d: d[4:12] != bytes(8), "a non-zero Session ID field")


@case(
    "R4.1-5",
    "Once an endpoint knows its peer's max_datagram_size (section 6), it MUST NOT send that peer a datagram longer "
    "than it.",
    slug="sent-within-max-datagram-size",
)
def sent_within_limit(ctx: Context) -> None:
    """The tester advertises max_datagram_size 1200: nothing the target sends is longer."""
    _every(sample_traffic(ctx, SessionParams(max_datagram_size=1200)), lambda d: len(d) <= 1200, "datagrams of at most 1200 bytes")


@case(
    "R4.1-6",
    "Every endpoint MUST be able to receive datagrams of any length up to its own advertised max_datagram_size, "
    "and of at least 1200 bytes",
    slug="receives-max-datagram-size",
)
def receives_largest(ctx: Context) -> None:
    """Chunks as large as the target's max_datagram_size allows: the object completes."""
    s = ctx.session()
    size = s.max_chunk()
    obj = TestObject(ctx.payload(2 * size + 100), chunk_size=size)
    must_complete(s.transfer(obj), f"an object in {size}-byte chunks, datagrams as large as the target accepts")


def _ping(s: Client) -> bytes:
    return wire.raw(PacketType.PING, s.session_id, s.take_pn())


_R4_2_1 = (
    "A receiver MUST drop, without sending anything and without changing the state of any session, every datagram "
    "that fails steps 1 to 6"
)


@case("R4.2-1", _R4_2_1, slug="shorter-than-header")
def shorter_than_header(ctx: Context) -> None:
    """A PING cut to 21 bytes draws nothing."""
    s = ctx.session()
    dropped(s, _ping(s)[:21], "a 21-byte datagram")


@case("R4.2-1", _R4_2_1, slug="bad-magic")
def bad_magic(ctx: Context) -> None:
    """A PING whose magic is 'SM' (CRC32C recomputed) draws nothing."""
    s = ctx.session()
    dropped(s, wire.raw(PacketType.PING, s.session_id, s.take_pn(), magic=b"SM"), "a datagram with a wrong magic")


@case("R4.2-1", _R4_2_1, slug="bad-initial-not-answered")
def bad_initial(ctx: Context) -> None:
    """An INITIAL whose CRC32C fails draws no ACCEPT, RETRY or anything else."""
    c = ctx.client()
    c.send_raw(wire.break_crc(codec.encode(codec.Initial(c.params), c.initial_id, c.take_pn())))
    c.silent("an INITIAL with a bad CRC32C", ignore=())


_R4_2_2 = (
    "A receiver MUST drop a datagram whose length differs from 18 + Payload Length + 4, whether it is shorter "
    "(truncated) or longer (trailing bytes)."
)


@case("R4.2-2", _R4_2_2, slug="truncated")
def truncated(ctx: Context) -> None:
    """A PING whose Payload Length says 1 but which has no payload (CRC32C right) draws nothing."""
    s = ctx.session()
    dropped(s, wire.raw(PacketType.PING, s.session_id, s.take_pn(), length=1), "a truncated datagram")


@case("R4.2-2", _R4_2_2, slug="trailing-bytes")
def trailing(ctx: Context) -> None:
    """A PING with one byte after its (empty) payload, CRC32C over all of it, draws nothing."""
    s = ctx.session()
    body = wire.HEADER.pack(b"SN", 1, PacketType.PING, s.session_id, s.take_pn(), 0) + b"\x00"
    dropped(s, body + wire.crc(body), "a datagram with trailing bytes")


@case("R4.2-2", _R4_2_2, slug="truncated-chunk")
def truncated_chunk(ctx: Context) -> None:
    """A DATA datagram missing its last byte (length field unchanged, CRC32C recomputed) is not stored."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.settle()
    short = codec.encode(Data(0, 1, obj.chunk(1)), s.session_id, s.take_pn())
    # NACKs for the object may come: its sender fell silent after the ANNOUNCE (R9.1-11). The object
    # completing with the right digest shows the truncated chunk was not kept.
    dropped(s, wire.fix_crc(short[:-5] + short[-4:]), "a truncated DATA datagram", ignore=(Ping, Nack))
    must_complete(s.transfer(obj), "the object still completes with the right chunk")


_R4_2_3 = "A receiver MUST drop a datagram whose CRC32C does not verify, and MUST NOT use any of its fields for anything but counting."


@case("R4.2-3", _R4_2_3, slug="bad-crc")
def bad_crc(ctx: Context) -> None:
    """A PING with a wrong CRC32C draws no ACK."""
    s = ctx.session()
    dropped(s, wire.break_crc(_ping(s)), "a PING whose CRC32C fails")


@case("R4.2-3", _R4_2_3, slug="bad-crc-close-ignored")
def bad_crc_close(ctx: Context) -> None:
    """A CLOSE with a wrong CRC32C does not end the session."""
    s = ctx.session()
    close = codec.encode(Close(ErrorCode.APPLICATION_ERROR, "corrupted"), s.session_id, s.take_pn())
    dropped(s, wire.break_crc(close), "a CLOSE whose CRC32C fails")


@case("R4.2-4", "A receiver MUST drop a datagram whose Type field is not defined by section 5.", slug="unknown-types")
def unknown_types(ctx: Context) -> None:
    """PING-shaped datagrams of types 0x00, 0x05, 0x0f, 0x17, 0x1f, 0x22, 0x7f and 0xff draw nothing."""
    s = ctx.session()
    for ptype in (0x00, 0x05, 0x0F, 0x17, 0x1F, 0x22, 0x7F, 0xFF):
        dropped(s, wire.raw(ptype, s.session_id, s.take_pn()), f"a datagram of unknown type 0x{ptype:02x}")


@case(
    "R4.2-5",
    "A receiver MUST drop a datagram of type other than VERSION whose Version field is not 2, and a VERSION packet "
    "whose Version field is not 0.",
    slug="wrong-version-field",
)
def wrong_version(ctx: Context) -> None:
    """PINGs of version 0, 1 (SNIP/1), 3 and 255 draw nothing; the session still works."""
    s = ctx.session()
    for version in (0, 1, 3, 255):
        dropped(s, wire.raw(PacketType.PING, s.session_id, s.take_pn(), version=version), f"a PING of version {version}")


@case(
    "R4.2-6",
    "A receiver MUST drop a datagram whose payload is malformed for its type (section 5).",
    slug="payloads-short-of-fixed-fields",
)
def payloads_short(ctx: Context) -> None:
    """ANNOUNCE, NACK, COMPLETE and CANCEL payloads one byte short of their fixed fields draw nothing."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    fixed = {
        # read anyhow, each would be acted on: an ANNOUNCE starts object 0; the others name object 0,
        # which the target never sent, and would abort the session (R9.3-1, R9.3-7); all draw an ACK
        PacketType.ANNOUNCE: wire.announce_payload(obj.announce(), content_type=b"", name=b"")[:60],
        PacketType.NACK: struct.pack(">IBBIH", 0, 0, 0, 0, 0)[:11],
        PacketType.COMPLETE: struct.pack(">I", 0)[:3],
        PacketType.CANCEL: struct.pack(">IBHB", 0, 0, ErrorCode.REFUSED, 0)[:7],
    }
    for ptype, payload in fixed.items():
        name = PacketType(ptype).name
        dropped(s, wire.raw(ptype, s.session_id, s.take_pn(), payload), f"a {len(payload)}-byte {name}")
    must_complete(s.transfer(obj), "object 0 was not started by the short ANNOUNCE")


@case(
    "R4.2-7",
    "A receiver MUST drop, and MUST NOT answer, a datagram that is not a handshake packet and whose Session ID field "
    "matches none of its sessions.",
    slug="unknown-session",
)
def unknown_session(ctx: Context) -> None:
    """PINGs with a session id the target never gave, from a session's socket and a fresh one, draw nothing."""
    s = ctx.session()
    dropped(s, wire.raw(PacketType.PING, ctx.new_id(), s.take_pn()), "a PING for an unknown session")
    stranger = ctx.client()
    stranger.send_raw(wire.raw(PacketType.PING, ctx.new_id(), 3))
    stranger.silent("a PING for an unknown session from an unknown address", ignore=())


_STEP_7 = "A server drops RETRY, ACCEPT and VERSION; a client drops INITIAL."


@case("4.2 step 7", _STEP_7, slug="retry-at-server")
def retry_at_server(ctx: Context) -> None:
    """A RETRY carrying the session's id, sent to the target (a server), draws nothing."""
    s = ctx.session()
    dropped(s, codec.encode(codec.Retry(bytes(20)), s.session_id, 0), "a RETRY sent to a server")


@case("4.2 step 7", _STEP_7, slug="accept-at-server")
def accept_at_server(ctx: Context) -> None:
    """An ACCEPT carrying the session's id, sent to the target (a server), draws nothing (not even an ACK)."""
    s = ctx.session()
    dropped(s, codec.encode(codec.Accept(ctx.new_id()), s.session_id, s.take_pn()), "an ACCEPT sent to a server")


@case(
    "R4.2-8",
    "A receiver MUST drop a datagram that carries a session's id but comes from an address other than that session's "
    "peer address.",
    slug="address-mismatch",
)
def address_mismatch(ctx: Context) -> None:
    """A PING and a CLOSE with the session's id from another socket: no answer, and the session lives on."""
    s = ctx.session()
    other = ctx.client()
    other.send_raw(wire.raw(PacketType.PING, s.session_id, s.next_pn + 5))
    other.silent("a PING with a session's id from another address", ignore=())
    s.silent("the PING came from another address")
    other.send_raw(codec.encode(Close(ErrorCode.APPLICATION_ERROR, "spoofed"), s.session_id, s.next_pn + 6))
    other.silent("a CLOSE with a session's id from another address", ignore=())
    s.alive("a CLOSE from another address must not end the session")


@case(
    "R4.2-9",
    "a VERSION answer MUST NOT be sent for a datagram that failed step 1, 2 or 3",
    slug="no-version-answer-to-truncated",
)
def no_version_for_truncated(ctx: Context) -> None:
    """A 1200-byte INITIAL of version 2 whose length field lies draws no VERSION."""
    c = ctx.client()
    datagram = wire.initial(c.initial_id, 0, version=2)
    c.send_raw(wire.patch(datagram, wire.OFFSET_LENGTH, struct.pack(">H", 1000)))
    c.silent("an INITIAL that fails the length check", ignore=())


@case(
    "R4.2-10",
    "Malformed input MUST NOT make an endpoint fail, stop processing other datagrams, or allocate memory beyond the "
    "limits of section 11.3.",
    slug="junk-flood",
)
def junk_flood(ctx: Context) -> None:
    """300 seeded junk datagrams, then the session still works and an object still completes."""
    s = ctx.session()
    rng = ctx.rng
    templates = [
        wire.raw(PacketType.PING, s.session_id, 1),
        codec.encode(Data(0, 0, b"x" * 64), s.session_id, 2),
        codec.encode(Ack(0, 0, 0, 0, 64, 1 << 20), s.session_id, 3),
        codec.encode(small_object(ctx, 2).announce(), s.session_id, 4),
    ]
    sent = 0
    while sent < 300:
        kind = rng.randrange(3)
        if kind == 0:
            junk = rng.randbytes(rng.randrange(0, 1500))
        elif kind == 1:
            flipped = bytearray(rng.choice(templates))
            for _ in range(rng.randrange(1, 8)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            junk = bytes(flipped)
        else:
            junk = wire.raw(rng.choice(list(PacketType)), s.session_id, 9, rng.randbytes(rng.randrange(0, 80)))
        try:
            codec.decode(junk)
            continue  # it happens to be valid: it could legitimately change the session, so skip it
        except DecodeError:
            pass
        s.send_raw(junk)
        sent += 1
        if sent % 50 == 0:
            s.alive(f"after {sent} malformed datagrams")  # also paces the flood below socket buffers
    s.alive("after 300 malformed datagrams")
    must_complete(s.transfer(small_object(ctx, 5)), "an object sent after the junk")


_R4_2_11 = (
    "A receiver MUST NOT drop a datagram merely because its packet number is lower than one it has already received, "
    "or equal to it"
)


def _ack_bytes(rx: Rx) -> int:
    packet = rx.packet
    assert isinstance(packet, Ack)
    return packet.received_bytes


def _ack_count(rx: Rx) -> int:
    packet = rx.packet
    assert isinstance(packet, Ack)
    return packet.received_packets


@case("R4.2-11", _R4_2_11, slug="lower-packet-number")
def lower_packet_number(ctx: Context) -> None:
    """A PING numbered 20 above the last, then one numbered below it: both draw their own ACK."""
    s = ctx.session()
    high = s.next_pn + 20
    s.send(codec.Ping(), pn=high)
    first = s.expect_ack(high, "an ACK for the PING with the higher number")
    s.send(codec.Ping(), pn=high - 10)
    second = s.expect(lambda d: isinstance(d.packet, Ack), "an ACK for the PING with a lower packet number")
    if _ack_count(second) != _ack_count(first) + 1:
        raise CaseFailed("received_packets one higher in the second ACK", f"{_ack_count(first)} then {_ack_count(second)}")
    s.next_pn = high + 1


@case("R4.2-11", _R4_2_11, slug="duplicate-datagram")
def duplicate_datagram(ctx: Context) -> None:
    """The very same PING datagram twice: two ACKs, received_bytes counting the duplicate too."""
    s = ctx.session()
    pn = s.take_pn()
    datagram = wire.raw(PacketType.PING, s.session_id, pn)
    s.send_raw(datagram)
    first = s.expect_ack(pn, "an ACK for the PING")
    s.send_raw(datagram)
    second = s.expect(lambda d: isinstance(d.packet, Ack), "an ACK for the duplicate PING")
    # received_packets counts a packet number once (R9.2-4, a SHOULD); received_bytes counts every copy
    if _ack_bytes(second) != _ack_bytes(first) + len(datagram):
        raise CaseFailed(
            f"received_bytes {len(datagram)} higher after the duplicate", f"{_ack_bytes(first)} then {_ack_bytes(second)}"
        )
