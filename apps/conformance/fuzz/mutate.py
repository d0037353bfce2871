"""Structure-aware mutations of SNIP datagrams.

Most mutations keep the datagram well framed and recompute its CRC32C, so that it gets past the
checksum and reaches the parsers and the session logic; a few break the frame on purpose. Field
tables (offsets from the spec's layouts) let a mutation hit numeric fields with boundary values.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Callable, Sequence
from typing import Any

from protocol import codec
from protocol.constants import CRC_LEN, HEADER_LEN, PacketType
from protocol.errors import DecodeError

from .. import wire

Strategy = Callable[[random.Random, bytes, bytes], bytes]

# (offset in the datagram, width in bytes) of the header's numeric fields (spec 4.1)
_HEADER_FIELDS: tuple[tuple[int, int], ...] = ((2, 1), (3, 1), (4, 8), (12, 4), (16, 2))
# payload numeric fields by packet type (spec 5.x layouts), offsets from the payload's start
_PAYLOAD_FIELDS: dict[int, tuple[tuple[int, int], ...]] = {
    PacketType.INITIAL: ((0, 1), (1, 2)),
    PacketType.RETRY: ((0, 1),),
    PacketType.ACCEPT: ((0, 8), (8, 2), (10, 2), (12, 2)),
    PacketType.ANNOUNCE: ((0, 4), (4, 8), (12, 2), (14, 4), (18, 1), (19, 4), (23, 4), (59, 1), (60, 1)),
    PacketType.DATA: ((0, 4), (4, 4)),
    PacketType.NACK: ((0, 4), (4, 1), (5, 1), (6, 4), (10, 2), (12, 4), (16, 4)),
    PacketType.ACK: ((0, 4), (4, 4), (8, 8), (16, 4), (20, 4), (24, 8)),
    PacketType.COMPLETE: ((0, 4),),
    PacketType.CANCEL: ((0, 4), (4, 1), (5, 2), (7, 1)),
    PacketType.PROBE: ((0, 4), (4, 4)),
    PacketType.CLOSE: ((0, 2), (2, 1)),
}
INTERESTING = (
    0, 1, 2, 7, 8, 63, 64, 0x7F, 0x80, 0xFF, 0x100, 1199, 1200, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
    0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1,
)


def _framed(data: bytes) -> bool:
    return len(data) >= HEADER_LEN + CRC_LEN and data[:2] == b"SN"


def _fields(data: bytes) -> list[tuple[int, int]]:
    fields = list(_HEADER_FIELDS)
    if _framed(data):
        fields += [(HEADER_LEN + off, width) for off, width in _PAYLOAD_FIELDS.get(data[3], ())]
    return [(off, width) for off, width in fields if off + width <= len(data) - CRC_LEN]


def _value(rng: random.Random, width: int) -> int:
    value = rng.choice(INTERESTING) if rng.random() < 0.8 else rng.getrandbits(8 * width)
    if rng.random() < 0.2:
        value += rng.choice((-1, 1))
    return value % (1 << (8 * width))


def replay(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """The datagram unchanged: a duplicate, and (sent later) a reordered one."""
    return data


def flip_fixed(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A few bits flipped anywhere but the trailer; the CRC32C recomputed so it passes."""
    if len(data) <= CRC_LEN:
        return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange((len(buf) - CRC_LEN) * 8)
        buf[pos >> 3] ^= 1 << (pos & 7)
    return wire.fix_crc(bytes(buf))


def flip(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """Bits flipped, the CRC32C left alone: the checksum must catch it."""
    if not data:
        return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(buf) * 8)
        buf[pos >> 3] ^= 1 << (pos & 7)
    return bytes(buf)


def boost(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A numeric field (lengths, ids, indices, counts, codes) set to a boundary value."""
    fields = _fields(data)
    if not fields:
        return flip(rng, data, other)
    offset, width = rng.choice(fields)
    value = _value(rng, width).to_bytes(width, "big")
    return wire.patch(data, offset, value, fix=rng.random() < 0.9)


def semantic(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A field of the decoded packet changed and the packet re-encoded: well-formed, but hostile."""
    try:
        decoded = codec.decode(data)
    except DecodeError:
        return boost(rng, data, other)
    packet = decoded.packet
    ints = [f for f in dataclasses.fields(packet) if isinstance(getattr(packet, f.name), int) and f.name != "origin"]
    if not ints:
        return boost(rng, data, other)
    field = rng.choice(ints)
    changes: dict[str, Any] = {field.name: rng.choice(INTERESTING)}
    changed = dataclasses.replace(packet, **changes)
    try:
        return codec.encode(changed, decoded.session_id, decoded.packet_number)
    except (ValueError, struct.error, OverflowError, TypeError):
        return boost(rng, data, other)


def truncate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """Cut short; half the time with the length field and CRC32C made to agree."""
    if len(data) <= 1:
        return data
    cut = data[: rng.randrange(len(data))]
    if rng.random() < 0.5 and len(cut) > HEADER_LEN + CRC_LEN:
        payload = cut[HEADER_LEN : len(cut) - CRC_LEN]
        return wire.with_payload(data, payload)
    return cut


def extend(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """Bytes added to the payload, length field and CRC32C agreeing (or not)."""
    extra = rng.randbytes(rng.choice((1, 2, 8, 100, 1500)))
    if _framed(data) and rng.random() < 0.7:
        return wire.with_payload(data, wire.payload_of(data) + extra)
    return data + extra


def type_swap(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """Another type byte (defined or not) on the same payload."""
    if not _framed(data):
        return flip(rng, data, other)
    ptype = rng.choice([int(t) for t in PacketType]) if rng.random() < 0.8 else rng.randrange(256)
    return wire.patch(data, wire.OFFSET_TYPE, bytes([ptype]))


def splice(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """The header of one datagram with the payload of another."""
    if not (_framed(data) and _framed(other)):
        return random_bytes(rng, data, other)
    return wire.with_payload(data, wire.payload_of(other))


def random_bytes(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """Noise: any length, any bytes."""
    return rng.randbytes(rng.choice((0, 1, 21, 22, 23, rng.randrange(1500))))


def random_framed(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """A well-framed datagram of a random type around a random payload (CRC32C right)."""
    sid = int.from_bytes(data[4:12], "big") if len(data) >= 12 else rng.getrandbits(64)
    ptype = rng.choice([int(t) for t in PacketType])
    return wire.raw(ptype, sid, rng.getrandbits(32), rng.randbytes(rng.choice((0, 1, 4, 8, 32, 60, rng.randrange(1300)))))


STRATEGIES: tuple[tuple[str, Strategy, int], ...] = (
    ("replay", replay, 6),
    ("flip-fixed", flip_fixed, 14),
    ("flip", flip, 5),
    ("boost", boost, 20),
    ("semantic", semantic, 20),
    ("truncate", truncate, 7),
    ("extend", extend, 6),
    ("type-swap", type_swap, 8),
    ("splice", splice, 5),
    ("random", random_bytes, 3),
    ("random-framed", random_framed, 6),
)
_NAMES = [name for name, _, _ in STRATEGIES]
_FUNCS = {name: func for name, func, _ in STRATEGIES}
_WEIGHTS = [weight for _, _, weight in STRATEGIES]


def mutate(rng: random.Random, seeds: Sequence[bytes]) -> tuple[bytes, str]:
    """One fuzz datagram from the seed corpus, and the name of the strategy that made it."""
    name = rng.choices(_NAMES, _WEIGHTS)[0]
    data = _FUNCS[name](rng, rng.choice(seeds), rng.choice(seeds))
    if rng.random() < 0.15:  # stack a second mutation now and then
        second = rng.choices(_NAMES, _WEIGHTS)[0]
        data = _FUNCS[second](rng, data, rng.choice(seeds))
        name = f"{name}+{second}"
    return data, name
