"""Property tests of the codec (spec sections 4 to 6), derandomized so every run checks the same cases.

- Any byte string either decodes or raises ``DecodeError``, and nothing else (DESIGN.md section 6).
- Every packet the encoder accepts decodes back to itself, for every packet type.
- Every packet the decoder accepts, the encoder can produce again.
- NACK missing lists of any shape survive the trip, whichever encoding the encoder picks.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import (
    Accept,
    Ack,
    Announce,
    Cancel,
    Close,
    Complete,
    Data,
    Decoded,
    Initial,
    Nack,
    Packet,
    Ping,
    Probe,
    Repair,
    Retry,
    VersionNegotiation,
    crc32c,
    decode,
    encode,
    normalize_missing,
)
from protocol.constants import VERSION, PacketType
from protocol.errors import DecodeError
from protocol.params import SessionParams

SEEDED = settings(
    derandomize=True,  # the same examples on every run: no unseeded randomness in tests
    database=None,
    deadline=None,
    max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)
session_ids = st.integers(1, 2**64 - 1)


def utf8_text(max_bytes: int) -> st.SearchStrategy[str]:
    return st.text(max_size=max_bytes // 4 + 8).filter(lambda s: len(s.encode("utf-8")) <= max_bytes)


@st.composite
def session_params(draw: st.DrawFn) -> SessionParams:
    max_object_size = draw(st.one_of(st.integers(0, 1 << 40), st.just(64 << 20), st.integers(0, 2**63)))
    return SessionParams(
        max_datagram_size=draw(st.integers(1200, 0xFFFF)),
        max_object_size=max_object_size,
        max_concurrent_objects=draw(st.integers(1, 0xFFFFFFFF)),
        max_buffered_bytes=max_object_size + draw(st.integers(0, 2**64 - 1 - max_object_size)),
        idle_timeout_ms=draw(st.integers(1, 0xFFFFFFFF)),
        max_ack_delay_ms=draw(st.integers(1, 1000)),
    )


@st.composite
def announces(draw: st.DrawFn) -> Announce:
    chunk_size = draw(st.integers(64, 0xFFFF))
    chunk_count = draw(st.one_of(st.just(0), st.integers(1, 0xFFFFFFFF)))
    total = 0 if chunk_count == 0 else draw(st.integers((chunk_count - 1) * chunk_size + 1, chunk_count * chunk_size))
    return Announce(
        object_id=draw(u32),
        total_length=total,
        chunk_size=chunk_size,
        chunk_count=chunk_count,
        digest=draw(st.binary(min_size=32, max_size=32)),
        content_type=draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=255)),
        name=draw(utf8_text(255)),
        want_reply=draw(st.booleans()),
        in_reply_to=draw(st.none() | u32),
        deadline_ms=draw(u32),
    )


@st.composite
def missing_lists(draw: st.DrawFn, max_ranges: int = 120) -> tuple[tuple[int, int], ...]:
    """Canonical missing lists: ascending, disjoint, non-adjacent ranges below 2^32."""
    start = draw(st.one_of(st.integers(0, 5000), st.integers(0, 0xFFFFFFFF), st.integers(0xFFFFF000, 0xFFFFFFFF)))
    ranges: list[tuple[int, int]] = []
    position = start
    for gap, length in draw(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 300)), max_size=max_ranges)):
        first = position + (gap if ranges else 0)
        if first + length > 0x100000000:
            break
        ranges.append((first, length))
        position = first + length
    return tuple(ranges)


nacks = st.builds(Nack, object_id=u32, missing=missing_lists(), announce_missing=st.booleans(), largest_pn=u32)

packets: st.SearchStrategy[Packet] = st.one_of(
    st.builds(Initial, params=session_params(), token=st.binary(max_size=255)),
    st.builds(Retry, token=st.binary(min_size=1, max_size=255)),
    st.builds(Accept, session_id=session_ids, params=session_params()),
    st.builds(VersionNegotiation, versions=st.lists(u8, min_size=1, max_size=40).map(tuple)),
    announces(),
    st.builds(Data, object_id=u32, chunk_index=u32, chunk=st.binary(min_size=1, max_size=1500)),
    nacks,
    st.builds(Ack, u32, u32, u64, u32, u32, u64),
    st.builds(Complete, object_id=u32),
    st.builds(Cancel, object_id=u32, origin=st.integers(0, 1), error_code=u16, reason=utf8_text(255)),
    st.builds(Probe, object_id=u32, sent_through=u32),
    st.builds(
        Repair,
        object_id=u32,
        first_index=st.integers(0, 0xFFFFFFFF - 4096),
        seed=u32,
        count=st.integers(1, 4096),
        payload=st.binary(min_size=1, max_size=1400),
    ),
    st.just(Ping()),
    st.builds(Close, error_code=u16, reason=utf8_text(255)),
)


def framed(ptype: int, payload: bytes, session_id: int, pn: int, version: int) -> bytes:
    body = struct.pack(">2sBBQIH", b"SN", version, ptype, session_id, pn, len(payload)) + payload
    return body + struct.pack(">I", crc32c(body))


def canonical(packet: Packet) -> Packet:
    if isinstance(packet, Nack):
        return Nack(packet.object_id, normalize_missing(packet.missing), packet.announce_missing, packet.largest_pn)
    return packet


def decode_or_none(data: bytes) -> Decoded | None:
    try:
        return decode(data)
    except DecodeError:
        return None


# ---------------------------------------------------------------------------------------------


@SEEDED
@given(st.binary(max_size=1600))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    decode_or_none(data)  # any other exception fails the test


@SEEDED
@given(
    ptype=st.one_of(st.sampled_from([int(t) for t in PacketType]), u8),
    payload=st.binary(max_size=1400),
    session_id=u64,
    pn=u32,
    version=st.sampled_from([0, 1, VERSION, VERSION, VERSION, 3]),
)
def test_well_framed_garbage_decodes_or_raises_decode_error(ptype: int, payload: bytes, session_id: int, pn: int, version: int) -> None:
    """Valid framing and CRC32C, arbitrary payload: the payload parsers are reached and must hold."""
    data = framed(ptype, payload, session_id, pn, version)
    decoded = decode_or_none(data)
    if decoded is not None:
        # Whatever the decoder accepts, the encoder can say again (closure).
        again = decode(encode(decoded.packet, decoded.session_id, decoded.packet_number))
        assert canonical(again.packet) == canonical(decoded.packet)


@SEEDED
@given(packet=packets, session_id=u64, pn=u32, edits=st.lists(st.tuples(st.integers(0, 2), u16, u8), min_size=1, max_size=6))
def test_mutated_packets_decode_or_raise_decode_error(packet: Packet, session_id: int, pn: int, edits: list[tuple[int, int, int]]) -> None:
    """A valid packet with a few payload bytes replaced, inserted or deleted, then reframed with a
    correct length and CRC32C: reaches every payload parser with nearly valid input."""
    datagram = encode(packet, max(session_id, 1), pn)
    payload = bytearray(datagram[18:-4])
    for op, position, value in edits:
        at = position % (len(payload) + 1)
        if op == 0 and at < len(payload):
            payload[at] = value
        elif op == 1:
            payload.insert(at, value)
        elif payload:
            del payload[min(at, len(payload) - 1)]
    decoded = decode_or_none(framed(datagram[3], bytes(payload), session_id, pn, datagram[2]))
    if decoded is not None:
        again = decode(encode(decoded.packet, decoded.session_id, decoded.packet_number))
        assert canonical(again.packet) == canonical(decoded.packet)


@SEEDED
@given(packet=packets, session_id=session_ids, pn=u32)
def test_every_packet_round_trips(packet: Packet, session_id: int, pn: int) -> None:
    datagram = encode(packet, session_id, pn)
    version = 0 if isinstance(packet, VersionNegotiation) else VERSION
    assert decode(datagram) == Decoded(version, session_id, pn, packet)
    assert len(datagram) == 18 + int.from_bytes(datagram[16:18], "big") + 4


@SEEDED
@given(packet=packets, session_id=session_ids, pn=u32, data=st.data())
def test_truncated_or_extended_packets_are_rejected(packet: Packet, session_id: int, pn: int, data: st.DataObject) -> None:
    datagram = encode(packet, session_id, pn)
    cut = data.draw(st.integers(0, len(datagram) - 1))
    assert decode_or_none(datagram[:cut]) is None
    assert decode_or_none(datagram + data.draw(st.binary(min_size=1, max_size=8))) is None


@SEEDED
@given(packet=packets, session_id=session_ids, pn=u32, data=st.data())
def test_any_single_bit_flip_is_rejected(packet: Packet, session_id: int, pn: int, data: st.DataObject) -> None:
    datagram = bytearray(encode(packet, session_id, pn))
    bit = data.draw(st.integers(0, len(datagram) * 8 - 1))
    datagram[bit // 8] ^= 0x80 >> (bit % 8)
    assert decode_or_none(bytes(datagram)) is None


@SEEDED
@given(missing=missing_lists(max_ranges=400), object_id=u32, largest_pn=u32)
def test_nack_round_trips_any_missing_list(missing: tuple[tuple[int, int], ...], object_id: int, largest_pn: int) -> None:
    packet = Nack(object_id, missing, largest_pn=largest_pn)
    datagram = encode(packet, 1, 0)
    assert decode(datagram).packet == packet
    # The encoding is the smaller one (spec R5.7-4).
    if missing:
        span = missing[-1][0] + missing[-1][1] - 1 - missing[0][0]
        bitmap_smaller = 4 + span // 8 + 1 < 2 + 8 * len(missing)
        assert datagram[18 + 5] == (1 if bitmap_smaller else 0)
        assert len(datagram) == 18 + 10 + min(4 + span // 8 + 1, 2 + 8 * len(missing)) + 4
    else:
        assert datagram[18 + 5] == 0


@SEEDED
@given(indices=st.sets(st.integers(0, 3000), max_size=600), base=st.integers(0, 0xFFFFF000))
def test_nack_round_trips_any_set_of_chunks(indices: set[int], base: int) -> None:
    """Single-chunk ranges, adjacent ones included: the decoded set of chunks is the set sent."""
    missing = tuple((base + i, 1) for i in sorted(indices))
    decoded = decode(encode(Nack(3, missing), 1, 0)).packet
    assert isinstance(decoded, Nack)
    chunks = {first + k for first, count in decoded.missing for k in range(count)}
    assert chunks == {base + i for i in indices}
    assert decoded.missing == normalize_missing(missing)
