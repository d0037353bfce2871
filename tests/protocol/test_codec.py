"""Codec edge cases (spec sections 4 to 6): what decodes, what is malformed, and why.

Datagrams that the encoder refuses to produce are built by ``raw()``, which frames any payload with
a correct header and CRC32C, so that each test reaches the check it is about.
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
import time
from pathlib import Path

import pytest

from protocol.codec import (
    Accept,
    Ack,
    Announce,
    Cancel,
    Close,
    Complete,
    Data,
    Initial,
    Nack,
    Packet,
    Ping,
    Probe,
    Retry,
    VersionNegotiation,
    crc32c,
    decode,
    encode,
    encode_data,
    nack_sizes,
    normalize_missing,
    peek_header,
)
from protocol.constants import (
    CRC_LEN,
    DEFAULT_CHUNK_SIZE,
    HEADER_LEN,
    MIN_INITIAL_DATAGRAM,
    VERSION,
    ErrorCode,
    PacketType,
    ParamId,
)
from protocol.errors import DecodeError
from protocol.params import SessionParams, decode_params, encode_params

SID = 0x0123456789ABCDEF
SPEC = (Path(__file__).resolve().parents[2] / "protocol" / "spec.md").read_text(encoding="utf-8")
DIGEST = hashlib.sha256(b"x").digest()


def raw(ptype: int, payload: bytes, *, sid: int = SID, pn: int = 7, version: int = VERSION) -> bytes:
    """A datagram with any payload, correctly framed and checksummed (spec 4.1)."""
    body = struct.pack(">2sBBQIH", b"SN", version, ptype, sid, pn, len(payload)) + payload
    return body + struct.pack(">I", crc32c(body))


def reason_of(data: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        decode(data)
    return info.value.reason


def roundtrip(packet: Packet, sid: int = SID, pn: int = 7) -> Packet:
    decoded = decode(encode(packet, sid, pn))
    assert (decoded.session_id, decoded.packet_number) == (sid, pn)
    return decoded.packet


def tlv(pid: int, value: bytes) -> bytes:
    return struct.pack(">HH", pid, len(value)) + value


def initial_payload(params: bytes, token: bytes = b"") -> bytes:
    body = bytes([len(token)]) + token + struct.pack(">H", len(params)) + params
    return body + bytes(MIN_INITIAL_DATAGRAM - HEADER_LEN - CRC_LEN - len(body))


def nack_payload(object_id: int, flags: int, encoding: int, body: bytes, largest_pn: int = 0) -> bytes:
    return struct.pack(">IBBI", object_id, flags, encoding, largest_pn) + body


def ranges_body(*pairs: tuple[int, int]) -> bytes:
    return struct.pack(">H", len(pairs)) + b"".join(struct.pack(">II", f, n) for f, n in pairs)


def announce_payload(
    *,
    object_id: int = 3,
    total: int = 100,
    chunk_size: int = 64,
    count: int = 2,
    flags: int = 0,
    in_reply_to: int = 0,
    deadline: int = 0,
    content_type: bytes = b"image/png",
    name: bytes = b"a.png",
) -> bytes:
    return (
        struct.pack(">IQHIBII32s", object_id, total, chunk_size, count, flags, in_reply_to, deadline, DIGEST)
        + bytes([len(content_type)])
        + content_type
        + bytes([len(name)])
        + name
    )


# ---------------------------------------------------------------------------------------------
# CRC32C and framing (spec 4.1, 4.2 steps 1-3)


def test_crc32c_check_value() -> None:
    """spec R4.1-3: CRC32C (Castagnoli) of "123456789" is 0xE3069283."""
    assert crc32c(b"123456789") == 0xE3069283


def test_crc32c_of_nothing_is_zero() -> None:
    assert crc32c(b"") == 0


def test_crc_trailer_is_big_endian_over_header_and_payload() -> None:
    datagram = encode(Ping(), SID, 1)
    assert int.from_bytes(datagram[-4:], "big") == crc32c(datagram[:-4])
    assert len(datagram) == HEADER_LEN + 0 + CRC_LEN


def test_header_layout() -> None:
    datagram = encode(Complete(0x0A0B0C0D), 0x1112131415161718, 0x21222324)
    assert datagram[:2] == b"SN"
    assert datagram[2] == VERSION
    assert datagram[3] == PacketType.COMPLETE
    assert datagram[4:12] == bytes.fromhex("1112131415161718")
    assert datagram[12:16] == bytes.fromhex("21222324")
    assert datagram[16:18] == b"\x00\x04"
    assert datagram[18:22] == bytes.fromhex("0a0b0c0d")


@pytest.mark.parametrize("size", [0, 1, 2, 17, 18, 21])
def test_shorter_than_minimum_is_truncated(size: int) -> None:
    assert reason_of(encode(Ping(), SID, 0)[:size]) == "truncated"


def test_bad_magic() -> None:
    data = bytearray(encode(Ping(), SID, 0))
    data[0] = ord("X")
    assert reason_of(bytes(data)) == "bad_magic"
    assert reason_of(b"\x00" * 40) == "bad_magic"


def test_length_field_longer_than_datagram_is_truncated() -> None:
    data = raw(PacketType.COMPLETE, b"\x00\x00\x00\x01")
    assert reason_of(data[:-1]) == "truncated"


def test_length_field_shorter_than_datagram_is_trailing_bytes() -> None:
    assert reason_of(raw(PacketType.PING, b"") + b"\x00") == "trailing_bytes"


def test_checksum_mismatch() -> None:
    data = bytearray(encode(Probe(1, 2), SID, 0))
    data[-1] ^= 0x01
    assert reason_of(bytes(data)) == "checksum"
    data[-1] ^= 0x01
    data[20] ^= 0x40
    assert reason_of(bytes(data)) == "checksum"


# ---------------------------------------------------------------------------------------------
# Type and version (spec 3, 4.2 steps 4-5)


@pytest.mark.parametrize("ptype", [0x00, 0x05, 0x0F, 0x18, 0x1F, 0x22, 0x80, 0xFF])
def test_unknown_type(ptype: int) -> None:
    assert reason_of(raw(ptype, b"")) == "unknown_type"


def test_unknown_type_is_reported_before_unknown_version() -> None:
    assert reason_of(raw(0x99, b"", version=7)) == "unknown_type"


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_non_version_packet_needs_version_2(version: int) -> None:
    assert reason_of(raw(PacketType.PING, b"", version=version)) == "unknown_version"


def test_version_packet_is_sent_with_version_0() -> None:
    datagram = encode(VersionNegotiation((1,)), SID, 0)
    assert datagram[2] == 0
    decoded = decode(datagram)
    assert decoded.version == 0
    assert decoded.packet == VersionNegotiation((1,))


def test_version_packet_with_version_1_is_malformed() -> None:
    assert reason_of(raw(PacketType.VERSION, b"\x01", version=1)) == "malformed"


def test_version_packet_lists_versions_including_unknown_ones() -> None:
    assert roundtrip(VersionNegotiation((3, 1, 2))) == VersionNegotiation((3, 1, 2))
    assert decode(raw(PacketType.VERSION, b"\x00\x09", version=0)).packet == VersionNegotiation((0, 9))


def test_empty_version_list_is_malformed() -> None:
    assert reason_of(raw(PacketType.VERSION, b"", version=0)) == "truncated"
    with pytest.raises(ValueError):
        encode(VersionNegotiation(()), SID, 0)


def test_unknown_version_initial_is_recognisable_for_version_negotiation() -> None:
    """spec 3: the server needs type and session id of an INITIAL it cannot parse."""
    data = raw(PacketType.INITIAL, initial_payload(b""), version=3)
    assert len(data) == MIN_INITIAL_DATAGRAM
    assert reason_of(data) == "unknown_version"
    assert peek_header(data) == (3, PacketType.INITIAL, SID)


def test_peek_header_rejects_non_snip() -> None:
    assert peek_header(b"SN") is None
    assert peek_header(b"XX" + bytes(30)) is None


# ---------------------------------------------------------------------------------------------
# INITIAL (spec 5.1) and parameters (spec 6)


def test_initial_is_padded_to_1200_bytes() -> None:
    for token in (b"", b"t" * 20, b"t" * 255):
        datagram = encode(Initial(SessionParams(max_datagram_size=1400), token), SID, 0)
        assert len(datagram) == MIN_INITIAL_DATAGRAM
        assert decode(datagram).packet == Initial(SessionParams(max_datagram_size=1400), token)


def test_short_initial_is_dropped() -> None:
    payload = initial_payload(b"")[:-1]
    assert len(raw(PacketType.INITIAL, payload)) == MIN_INITIAL_DATAGRAM - 1
    assert reason_of(raw(PacketType.INITIAL, payload)) == "short_initial"
    assert reason_of(raw(PacketType.INITIAL, b"\x00\x00\x00")) == "short_initial"


def test_padding_content_is_ignored_and_longer_initials_accepted() -> None:
    body = initial_payload(b"")
    junk = body[:3] + bytes(range(256)) * 4 + body[3 + 1024 :]
    assert decode(raw(PacketType.INITIAL, junk)).packet == Initial()
    assert decode(raw(PacketType.INITIAL, body + bytes(300))).packet == Initial()


def test_initial_with_session_id_0_is_malformed() -> None:
    assert reason_of(raw(PacketType.INITIAL, initial_payload(b""), sid=0)) == "malformed"


def test_initial_token_or_params_past_the_payload() -> None:
    payload = bytearray(initial_payload(b""))
    payload[0] = 255  # token runs to byte 256, then the params length sits in padding: fine
    assert decode(raw(PacketType.INITIAL, bytes(payload))).packet == Initial(token=bytes(255))
    payload = bytearray(initial_payload(b""))
    payload[1:3] = struct.pack(">H", 2000)  # params length past the end
    assert reason_of(raw(PacketType.INITIAL, bytes(payload))) == "truncated"


def test_token_longer_than_255_is_refused_by_the_encoder() -> None:
    with pytest.raises(ValueError):
        encode(Initial(token=bytes(256)), SID, 0)


def test_params_encoder_omits_defaults_and_sorts_by_id() -> None:
    assert encode_params(SessionParams()) == b""
    params = SessionParams(max_ack_delay_ms=25, max_datagram_size=1300)
    assert encode_params(params) == tlv(ParamId.MAX_DATAGRAM_SIZE, b"\x05\x14") + tlv(ParamId.MAX_ACK_DELAY_MS, b"\x00\x19")


def test_params_decode_in_any_order() -> None:
    listed = tlv(6, b"\x00\x19") + tlv(1, b"\x05\x14")
    assert decode_params(listed) == SessionParams(max_ack_delay_ms=25, max_datagram_size=1300)


@pytest.mark.parametrize("pid", [0x0000, 0x0008, 0x1234, 0xFFFF])
@pytest.mark.parametrize("value", [b"", b"\x01", bytes(9)])
def test_unknown_params_are_skipped(pid: int, value: bytes) -> None:
    listed = tlv(pid, value) + tlv(ParamId.IDLE_TIMEOUT_MS, struct.pack(">I", 5000))
    assert decode_params(listed) == SessionParams(idle_timeout_ms=5000)


@pytest.mark.parametrize(
    "listed",
    [
        tlv(1, b"\x05\x14") + tlv(1, b"\x05\x14"),  # duplicate known id
        tlv(0x0100, b"") + tlv(0x0100, b"x"),  # duplicate unknown id
        tlv(1, b"\x00\x00\x05\x14"),  # wrong width
        tlv(2, bytes(4)),
        tlv(6, b"\x0a"),
        b"\x00\x01\x00",  # truncated entry header
        b"\x00\x01\x00\x02\x05",  # value runs past the list
    ],
)
def test_malformed_param_lists(listed: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_params(listed)
    assert info.value.reason == "malformed"
    datagram = raw(PacketType.INITIAL, initial_payload(listed))
    assert reason_of(datagram) == "malformed"


@pytest.mark.parametrize(
    ("pid", "value", "ok"),
    [
        (ParamId.MAX_DATAGRAM_SIZE, 1199, False),
        (ParamId.MAX_DATAGRAM_SIZE, 1200, True),
        (ParamId.MAX_DATAGRAM_SIZE, 65535, True),
        (ParamId.MAX_CONCURRENT_OBJECTS, 0, False),
        (ParamId.MAX_CONCURRENT_OBJECTS, 1, True),
        (ParamId.IDLE_TIMEOUT_MS, 0, False),
        (ParamId.IDLE_TIMEOUT_MS, 1, True),
        (ParamId.MAX_ACK_DELAY_MS, 0, False),
        (ParamId.MAX_ACK_DELAY_MS, 1, True),
        (ParamId.MAX_ACK_DELAY_MS, 1000, True),
        (ParamId.MAX_ACK_DELAY_MS, 1001, False),
        (ParamId.MAX_OBJECT_SIZE, 256 << 20, True),  # equal to the default max_buffered_bytes
        (ParamId.MAX_OBJECT_SIZE, (256 << 20) + 1, False),  # above the default max_buffered_bytes
        (ParamId.MAX_BUFFERED_BYTES, (64 << 20) - 1, False),  # below the default max_object_size
        (ParamId.MAX_OBJECT_SIZE, 0, True),
    ],
)
def test_param_value_ranges(pid: ParamId, value: int, ok: bool) -> None:
    width = {1: 2, 2: 8, 3: 4, 4: 8, 5: 4, 6: 2}[pid]
    listed = tlv(pid, value.to_bytes(width, "big"))
    if ok:
        decode_params(listed)
    else:
        with pytest.raises(DecodeError):
            decode_params(listed)


def test_buffered_bytes_is_compared_with_the_effective_object_size() -> None:
    listed = tlv(2, (1 << 30).to_bytes(8, "big")) + tlv(4, (1 << 30).to_bytes(8, "big"))
    assert decode_params(listed) == SessionParams(max_object_size=1 << 30, max_buffered_bytes=1 << 30)


# ---------------------------------------------------------------------------------------------
# RETRY, ACCEPT (spec 5.2, 5.3)


def test_retry_with_empty_token_is_malformed() -> None:
    assert reason_of(raw(PacketType.RETRY, b"\x00\x00")) == "malformed"
    assert reason_of(raw(PacketType.RETRY, b"\x00")) in ("malformed", "truncated")
    with pytest.raises(ValueError):
        encode(Retry(b""), SID, 0)
    with pytest.raises(ValueError):
        encode(Retry(bytes(256)), SID, 0)


def test_retry_token_length_must_match() -> None:
    assert reason_of(raw(PacketType.RETRY, b"\x03ab")) == "truncated"
    assert reason_of(raw(PacketType.RETRY, b"\x01ab")) == "trailing_bytes"
    assert roundtrip(Retry(bytes(range(255)))) == Retry(bytes(range(255)))


def test_accept_with_session_id_0_is_malformed() -> None:
    assert reason_of(raw(PacketType.ACCEPT, bytes(8) + b"\x00\x00")) == "malformed"
    with pytest.raises(ValueError):
        encode(Accept(0), SID, 0)


def test_accept_layout_and_trailing_bytes() -> None:
    packet = Accept(0xFEDCBA9876543210, SessionParams(max_concurrent_objects=5))
    assert roundtrip(packet) == packet
    payload = struct.pack(">QH", 0xFEDCBA9876543210, 0)
    assert decode(raw(PacketType.ACCEPT, payload)).packet == Accept(0xFEDCBA9876543210)
    assert reason_of(raw(PacketType.ACCEPT, payload + b"\x00")) == "trailing_bytes"
    assert reason_of(raw(PacketType.ACCEPT, payload[:9])) == "truncated"
    bad_params = struct.pack(">QH", 1, 6) + tlv(1, b"\x00\x01")  # max_datagram_size 1
    assert reason_of(raw(PacketType.ACCEPT, bad_params)) == "malformed"


# ---------------------------------------------------------------------------------------------
# ANNOUNCE (spec 5.5)


def test_announce_decodes() -> None:
    packet = decode(raw(PacketType.ANNOUNCE, announce_payload())).packet
    assert packet == Announce(3, 100, 64, 2, DIGEST, "image/png", "a.png")


@pytest.mark.parametrize(("total", "chunk_size", "count"), [(100, 64, 1), (100, 64, 3), (0, 1024, 1), (1, 1024, 0)])
def test_announce_chunk_count_mismatch(total: int, chunk_size: int, count: int) -> None:
    payload = announce_payload(total=total, chunk_size=chunk_size, count=count)
    assert reason_of(raw(PacketType.ANNOUNCE, payload)) == "malformed"
    with pytest.raises(ValueError):
        encode(Announce(0, total, chunk_size, count, DIGEST), SID, 0)


@pytest.mark.parametrize(("total", "chunk_size", "count"), [(0, 1024, 0), (1, 64, 1), (128, 64, 2), (129, 64, 3)])
def test_announce_chunk_count_rule(total: int, chunk_size: int, count: int) -> None:
    packet = Announce(0, total, chunk_size, count, DIGEST)
    assert roundtrip(packet) == packet


def test_announce_largest_chunk_count() -> None:
    packet = Announce(0, 0xFFFFFFFF * 64, 64, 0xFFFFFFFF, DIGEST)
    assert roundtrip(packet) == packet
    # one byte more would need 2^32 chunks, which the 32-bit field cannot say
    payload = announce_payload(total=0xFFFFFFFF * 64 + 1, chunk_size=64, count=0)
    assert reason_of(raw(PacketType.ANNOUNCE, payload)) == "malformed"


def test_announce_chunk_size_below_64() -> None:
    assert reason_of(raw(PacketType.ANNOUNCE, announce_payload(chunk_size=63, total=63, count=1))) == "malformed"
    with pytest.raises(ValueError):
        encode(Announce(0, 63, 63, 1, DIGEST), SID, 0)


@pytest.mark.parametrize("content_type", [b"image/ png", b"image/png\x7f", b"image/\xe9", b"a\tb", b"\x00"])
def test_announce_content_type_must_be_printable_ascii_without_spaces(content_type: bytes) -> None:
    assert reason_of(raw(PacketType.ANNOUNCE, announce_payload(content_type=content_type))) == "malformed"


def test_announce_content_type_may_be_empty_and_name_any_utf8() -> None:
    payload = announce_payload(content_type=b"", name="chat 🐱 noir.jpg".encode())
    packet = decode(raw(PacketType.ANNOUNCE, payload)).packet
    assert isinstance(packet, Announce)
    assert (packet.content_type, packet.name) == ("", "chat 🐱 noir.jpg")


def test_announce_name_must_be_utf8() -> None:
    assert reason_of(raw(PacketType.ANNOUNCE, announce_payload(name=b"\xff\xfe"))) == "malformed"


def test_announce_nothing_after_the_name() -> None:
    assert reason_of(raw(PacketType.ANNOUNCE, announce_payload() + b"\x00")) == "trailing_bytes"
    assert reason_of(raw(PacketType.ANNOUNCE, announce_payload()[:-1])) == "truncated"
    assert reason_of(raw(PacketType.ANNOUNCE, announce_payload()[:58])) == "truncated"


def test_announce_reserved_flags_are_ignored() -> None:
    plain = decode(raw(PacketType.ANNOUNCE, announce_payload(flags=0x00))).packet
    assert decode(raw(PacketType.ANNOUNCE, announce_payload(flags=0xFC))).packet == plain
    want = decode(raw(PacketType.ANNOUNCE, announce_payload(flags=0xFD))).packet
    assert isinstance(want, Announce) and want.want_reply and want.in_reply_to is None


def test_announce_in_reply_to_only_counts_with_is_reply() -> None:
    ignored = decode(raw(PacketType.ANNOUNCE, announce_payload(flags=0, in_reply_to=9))).packet
    assert isinstance(ignored, Announce) and ignored.in_reply_to is None
    reply = decode(raw(PacketType.ANNOUNCE, announce_payload(flags=0x02, in_reply_to=0))).packet
    assert isinstance(reply, Announce) and reply.in_reply_to == 0
    encoded = encode(Announce(1, 0, 64, 0, DIGEST, in_reply_to=None), SID, 0)
    assert encoded[18 + 18] == 0 and encoded[18 + 19 : 18 + 23] == bytes(4)


def test_announce_digest_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        encode(Announce(0, 0, 64, 0, DIGEST[:31]), SID, 0)


def test_announce_encoder_refuses_bad_content_type() -> None:
    with pytest.raises(ValueError):
        encode(Announce(0, 0, 64, 0, DIGEST, content_type="text/plain; charset=utf-8"), SID, 0)


# ---------------------------------------------------------------------------------------------
# DATA (spec 5.6)


def test_data_needs_at_least_one_byte() -> None:
    assert reason_of(raw(PacketType.DATA, bytes(8))) == "truncated"
    with pytest.raises(ValueError):
        encode(Data(0, 0, b""), SID, 0)


def test_data_fast_path_matches_the_general_encoder() -> None:
    for chunk in (b"x", bytes(range(256)) * 4):
        assert encode_data(SID, 99, 4, 5, chunk) == encode(Data(4, 5, chunk), SID, 99)


def test_data_payload_limit() -> None:
    assert roundtrip(Data(1, 2, bytes(65535 - 8))) == Data(1, 2, bytes(65535 - 8))
    with pytest.raises(ValueError):
        encode(Data(1, 2, bytes(65536 - 8)), SID, 0)


# ---------------------------------------------------------------------------------------------
# NACK (spec 5.7)


@pytest.mark.parametrize(
    "pairs",
    [
        ((5, 3), (6, 1)),  # overlapping
        ((5, 3), (7, 2)),  # overlapping by one
        ((10, 1), (2, 1)),  # unsorted
        ((4, 1), (4, 1)),  # repeated
        ((4, 0),),  # zero length
        ((0xFFFFFFFF, 2),),  # past 2^32 - 1
    ],
)
def test_nack_ranges_must_be_ascending_disjoint_non_empty(pairs: tuple[tuple[int, int], ...]) -> None:
    assert reason_of(raw(PacketType.NACK, nack_payload(1, 0, 0, ranges_body(*pairs)))) == "malformed"
    with pytest.raises(ValueError):
        encode(Nack(1, pairs), SID, 0)


def test_nack_adjacent_ranges_are_accepted_and_merged_by_the_encoder() -> None:
    packet = decode(raw(PacketType.NACK, nack_payload(1, 0, 0, ranges_body((0, 2), (2, 3))))).packet
    assert isinstance(packet, Nack) and packet.missing == ((0, 2), (2, 3))
    assert encode(Nack(1, ((0, 2), (2, 3), (9, 1))), SID, 0) == encode(Nack(1, ((0, 5), (9, 1))), SID, 0)


def test_normalize_missing() -> None:
    assert normalize_missing(()) == ()
    assert normalize_missing(((1, 1), (3, 1))) == ((1, 1), (3, 1))
    assert normalize_missing(((1, 1), (2, 1), (3, 1), (7, 2), (9, 1))) == ((1, 3), (7, 3))
    assert normalize_missing(((0xFFFFFFFE, 1), (0xFFFFFFFF, 1))) == ((0xFFFFFFFE, 2),)


def test_nack_range_count_must_match_the_payload() -> None:
    body = ranges_body((1, 1), (5, 1))
    assert reason_of(raw(PacketType.NACK, nack_payload(1, 0, 0, body[:-1]))) == "truncated"
    assert reason_of(raw(PacketType.NACK, nack_payload(1, 0, 0, body + b"\x00"))) == "trailing_bytes"
    assert reason_of(raw(PacketType.NACK, nack_payload(1, 0, 0, b"\x00"))) == "truncated"
    assert reason_of(raw(PacketType.NACK, struct.pack(">IBB", 1, 0, 0))) == "truncated"


@pytest.mark.parametrize("encoding", [2, 3, 0xFF])
def test_nack_unknown_encoding(encoding: int) -> None:
    assert reason_of(raw(PacketType.NACK, nack_payload(1, 0, encoding, ranges_body()))) == "malformed"


@pytest.mark.parametrize(
    ("base", "bitmap", "ranges"),
    [
        (0, b"\x80", ((0, 1),)),
        (0, b"\x01", ((7, 1),)),
        (10, b"\xff", ((10, 8),)),
        (0, b"\x01\x80", ((7, 2),)),
        (5, b"\xaa", ((5, 1), (7, 1), (9, 1), (11, 1))),
        (0, b"\x00", ()),
        (0, b"\x00\x00\x01", ((23, 1),)),
        (0, b"\xff\xff", ((0, 16),)),
        (100, b"\xf0\x0f", ((100, 4), (112, 4))),
        (0xFFFFFFF8, b"\x01", ((0xFFFFFFFF, 1),)),
        (0xFFFFFFFF, b"\x80", ((0xFFFFFFFF, 1),)),  # clear bits past 2^32 - 1 are fine
    ],
)
def test_nack_bitmap_to_ranges(base: int, bitmap: bytes, ranges: tuple[tuple[int, int], ...]) -> None:
    packet = decode(raw(PacketType.NACK, nack_payload(2, 0, 1, struct.pack(">I", base) + bitmap, 77))).packet
    assert packet == Nack(2, ranges, False, 77)


def test_nack_bitmap_naming_chunks_past_2_32_is_malformed() -> None:
    assert reason_of(raw(PacketType.NACK, nack_payload(2, 0, 1, struct.pack(">I", 0xFFFFFFF9) + b"\x01"))) == "malformed"
    assert reason_of(raw(PacketType.NACK, nack_payload(2, 0, 1, struct.pack(">I", 0xFFFFFFFF) + b"\x40"))) == "malformed"


def test_nack_bitmap_needs_a_byte() -> None:
    assert reason_of(raw(PacketType.NACK, nack_payload(2, 0, 1, struct.pack(">I", 0)))) == "truncated"


def test_nack_near_the_top_of_the_index_space_round_trips() -> None:
    packet = Nack(1, ((0xFFFFFFF9, 1), (0xFFFFFFFE, 1)), largest_pn=3)  # encoded as a bitmap
    assert encode(packet, SID, 0)[18 + 5] == 1
    assert roundtrip(packet) == packet


def test_nack_flags() -> None:
    packet = Nack(9, (), announce_missing=True, largest_pn=0xFFFFFFFF)
    assert roundtrip(packet) == packet
    other_bits = decode(raw(PacketType.NACK, nack_payload(9, 0xFE, 0, ranges_body()))).packet
    assert isinstance(other_bits, Nack) and not other_bits.announce_missing


def _chosen_encoding(missing: tuple[tuple[int, int], ...]) -> int:
    return encode(Nack(1, missing), SID, 0)[18 + 5]


def test_nack_encoding_choice() -> None:
    """spec R5.7-4: the bitmap if and only if it is strictly smaller; ranges for an empty list."""
    assert _chosen_encoding(()) == 0
    assert _chosen_encoding(((5, 1),)) == 1  # 5 bytes of bitmap vs 10 of ranges
    assert _chosen_encoding(((0, 1), (1000, 1))) == 0  # 18 bytes of ranges vs 129 of bitmap
    # a tie goes to ranges: one range (10 bytes) vs base + 6 bitmap bytes (10 bytes)
    assert nack_sizes(((0, 1), (47, 1))) == (18, 10)
    assert _chosen_encoding(((0, 1), (47, 1))) == 1
    assert nack_sizes(((0, 48),)) == (10, 10)
    assert _chosen_encoding(((0, 48),)) == 0
    assert _chosen_encoding(((0, 40),)) == 1  # 9 < 10


def test_nack_encoding_choice_against_the_rule() -> None:
    rng = random.Random(5)
    for _ in range(300):
        space = rng.randint(1, 400)
        indices = sorted(rng.sample(range(space), rng.randint(1, min(40, space))))
        missing = normalize_missing(tuple((i, 1) for i in indices))
        span = missing[-1][0] + missing[-1][1] - 1 - missing[0][0]
        bitmap_smaller = 4 + span // 8 + 1 < 2 + 8 * len(missing)
        assert _chosen_encoding(missing) == (1 if bitmap_smaller else 0)
        decoded = decode(encode(Nack(1, missing), SID, 0)).packet
        assert isinstance(decoded, Nack) and decoded.missing == missing


def test_hostile_bitmap_decodes_in_linear_time() -> None:
    """spec 14.4: a 64 KiB bitmap of alternating bits must not take quadratic time."""
    bitmap = b"\x55" * (65535 - 14)
    data = raw(PacketType.NACK, nack_payload(1, 0, 1, struct.pack(">I", 0) + bitmap))
    start = time.perf_counter()
    packet = decode(data).packet
    elapsed = time.perf_counter() - start
    assert isinstance(packet, Nack) and len(packet.missing) == len(bitmap) * 4
    assert elapsed < 2.0


# ---------------------------------------------------------------------------------------------
# ACK, COMPLETE, PROBE, PING (spec 5.8, 5.9, 5.11, 5.12)


def test_ack_is_exactly_32_bytes() -> None:
    packet = Ack(0xFFFFFFFF, 0xFFFFFFFF, 2**64 - 1, 0xFFFFFFFF, 0xFFFFFFFF, 2**64 - 1)
    assert roundtrip(packet) == packet
    assert len(encode(packet, SID, 0)) == HEADER_LEN + 32 + CRC_LEN
    assert reason_of(raw(PacketType.ACK, bytes(31))) == "truncated"
    assert reason_of(raw(PacketType.ACK, bytes(33))) == "trailing_bytes"


@pytest.mark.parametrize(("ptype", "size"), [(PacketType.COMPLETE, 4), (PacketType.PROBE, 8), (PacketType.PING, 0)])
def test_fixed_size_payloads(ptype: PacketType, size: int) -> None:
    decode(raw(ptype, bytes(size)))
    if size:
        assert reason_of(raw(ptype, bytes(size - 1))) == "truncated"
    assert reason_of(raw(ptype, bytes(size + 1))) == "trailing_bytes"


# ---------------------------------------------------------------------------------------------
# CANCEL, CLOSE (spec 5.10, 5.13)


def test_cancel_origin_must_be_0_or_1() -> None:
    assert reason_of(raw(PacketType.CANCEL, struct.pack(">IBHB", 1, 2, 6, 0))) == "malformed"
    with pytest.raises(ValueError):
        encode(Cancel(1, 2, 6), SID, 0)


def test_cancel_reason_length_must_match() -> None:
    assert reason_of(raw(PacketType.CANCEL, struct.pack(">IBHB", 1, 0, 6, 3) + b"ab")) == "truncated"
    assert reason_of(raw(PacketType.CANCEL, struct.pack(">IBHB", 1, 0, 6, 1) + b"ab")) == "trailing_bytes"
    assert reason_of(raw(PacketType.CANCEL, struct.pack(">IBH", 1, 0, 6))) == "truncated"


def test_close_reason_length_must_match() -> None:
    assert reason_of(raw(PacketType.CLOSE, struct.pack(">HB", 0, 2) + b"a")) == "truncated"
    assert reason_of(raw(PacketType.CLOSE, struct.pack(">HB", 0, 0) + b"a")) == "trailing_bytes"
    assert reason_of(raw(PacketType.CLOSE, b"\x00\x00")) == "truncated"


def test_invalid_utf8_reasons_are_not_malformed() -> None:
    """spec R5.10-2: reasons are diagnostics; bad UTF-8 is replaced, not dropped."""
    cancel = decode(raw(PacketType.CANCEL, struct.pack(">IBHB", 1, 1, 6, 2) + b"\xff\xfe")).packet
    assert isinstance(cancel, Cancel) and cancel.reason == "\ufffd\ufffd"
    close = decode(raw(PacketType.CLOSE, struct.pack(">HB", 2, 1) + b"\xc3")).packet
    assert isinstance(close, Close) and close.reason == "\ufffd"


def test_unknown_error_codes_decode() -> None:
    """spec R13.1-2: any code is accepted on receipt."""
    assert roundtrip(Close(0xBEEF, "?")) == Close(0xBEEF, "?")
    assert roundtrip(Cancel(4, 0, 0xFFFF)) == Cancel(4, 0, 0xFFFF)


def test_long_reasons_are_cut_at_a_character_boundary() -> None:
    for packet in (Close(1, "é" * 200), Cancel(1, 1, 1, "é" * 200)):
        decoded = roundtrip(packet)
        assert isinstance(decoded, Close | Cancel)
        assert decoded.reason == "é" * 127  # 254 bytes: a 255th would split a character
    assert roundtrip(Close(1, "x" * 300)) == Close(1, "x" * 255)


# ---------------------------------------------------------------------------------------------
# Everything else


def test_encoder_rejects_non_packets() -> None:
    with pytest.raises((TypeError, KeyError)):
        encode("not a packet", SID, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "junk",
    [b"", b"SN", b"SN" + bytes(20), b"SN\x01\x12" + bytes(14) + b"\xff\xff", bytes(range(256)), b"\xff" * 1500],
)
def test_junk_raises_decode_error_only(junk: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(junk)


def test_default_chunk_fits_the_smallest_datagram() -> None:
    """spec R8.1-1: 1024-byte chunks fit every peer (max_datagram_size >= 1200)."""
    assert len(encode_data(SID, 0, 0, 0, bytes(DEFAULT_CHUNK_SIZE))) <= 1200
    assert HEADER_LEN + 8 + CRC_LEN == 30


# ---------------------------------------------------------------------------------------------
# The registries in spec.md match the code


def _table_rows(section_heading: str) -> list[list[str]]:
    section = SPEC.split(section_heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| 0x"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_packet_type_table_matches_the_code() -> None:
    rows = _table_rows("## 5. Packet types")
    assert {int(r[0], 16): r[1] for r in rows} == {t.value: t.name for t in PacketType}


def test_error_code_table_matches_the_code() -> None:
    rows = _table_rows("### 13.1. Codes")
    assert {int(r[0], 16): r[1] for r in rows} == {c.value: c.name for c in ErrorCode}


def test_parameter_table_matches_the_code() -> None:
    rows = _table_rows("## 6. Session parameters")
    defaults = SessionParams()
    assert {int(r[0], 16): r[1] for r in rows} == {p.value: p.name.lower() for p in ParamId}
    for row in rows:
        default = int(re.match(r"\d+", row[3]).group())  # type: ignore[union-attr]
        assert getattr(defaults, row[1]) == default, row[1]
