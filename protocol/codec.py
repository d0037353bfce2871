"""SNIP/2 codec: datagrams to packets and back (spec sections 4 and 5).

Pure functions over bytes; no connection state. ``decode`` either returns a ``Decoded`` or raises
``DecodeError`` — never anything else, whatever the input (the fuzz tests hold it to that).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

import crc32c as _crc32c

from .constants import (
    ANNOUNCE_FLAG_IS_REPLY,
    ANNOUNCE_FLAG_WANT_REPLY,
    CRC_LEN,
    DATA_PREFIX_LEN,
    DIGEST_LEN,
    HEADER_LEN,
    MAGIC,
    MAX_CONTENT_TYPE_LEN,
    MAX_NAME_LEN,
    MAX_REASON_LEN,
    MAX_REPAIR_WINDOW,
    MAX_TOKEN_LEN,
    MIN_CHUNK_SIZE,
    MIN_INITIAL_DATAGRAM,
    NACK_FLAG_ANNOUNCE_MISSING,
    VERSION,
    VERSION_NEGOTIATION,
    NackEncoding,
    PacketType,
)
from .errors import DecodeError
from .params import SessionParams, decode_params, encode_params

_HEADER = struct.Struct(">2sBBQIH")
_CRC = struct.Struct(">I")
_DATA_PREFIX = struct.Struct(">II")
_ANNOUNCE_FIXED = struct.Struct(">IQHIBII32s")
_ACK = struct.Struct(">IIQIIQ")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_RANGE = struct.Struct(">II")
_PROBE = struct.Struct(">II")
_CANCEL_FIXED = struct.Struct(">IBHB")
_CLOSE_FIXED = struct.Struct(">HB")
_NACK_FIXED = struct.Struct(">IBBI")
_REPAIR_PREFIX = struct.Struct(">IIIH")  # object id, first index, seed, count

crc32c = _crc32c.crc32c
_RUN_OF_ONES = re.compile("1+")


# ---------------------------------------------------------------------------------------------
# Packets (spec 5). Frozen: a decoded packet is a value.


@dataclass(frozen=True, slots=True)
class Initial:
    """spec 5.1: client -> server, opens a session. Padded to MIN_INITIAL_DATAGRAM on encode."""

    params: SessionParams = field(default_factory=SessionParams)
    token: bytes = b""


@dataclass(frozen=True, slots=True)
class Retry:
    """spec 5.2: server -> client, a stateless address-validation token."""

    token: bytes


@dataclass(frozen=True, slots=True)
class Accept:
    """spec 5.3: server -> client, the session id and the server's parameters."""

    session_id: int
    params: SessionParams = field(default_factory=SessionParams)


@dataclass(frozen=True, slots=True)
class VersionNegotiation:
    """spec 5.4: the versions a server speaks, sent in answer to an unknown version."""

    versions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Announce:
    """spec 5.5: the object header ("length header")."""

    object_id: int
    total_length: int
    chunk_size: int
    chunk_count: int
    digest: bytes
    content_type: str = "application/octet-stream"
    name: str = ""
    want_reply: bool = False
    in_reply_to: int | None = None
    deadline_ms: int = 0


@dataclass(frozen=True, slots=True)
class Data:
    """spec 5.6: one chunk of an object."""

    object_id: int
    chunk_index: int
    chunk: bytes


@dataclass(frozen=True, slots=True)
class Repair:
    """spec 5.14: the XOR of pseudo-randomly chosen chunks of a window of one object."""

    object_id: int
    first_index: int
    seed: int
    count: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Nack:
    """spec 5.7: the chunks of one object the receiver misses, as (first, count) ranges."""

    object_id: int
    missing: tuple[tuple[int, int], ...] = ()
    announce_missing: bool = False
    # The largest packet number the NACK's sender had received when it wrote the NACK: lets the
    # object's sender tell a lost copy from one still in flight (spec 9.3).
    largest_pn: int = 0


@dataclass(frozen=True, slots=True)
class Ack:
    """spec 5.8: session-level acknowledgement and flow-control credit."""

    largest_pn: int
    ack_delay_us: int
    received_bytes: int
    received_packets: int
    object_id_limit: int
    announce_limit: int


@dataclass(frozen=True, slots=True)
class Complete:
    """spec 5.9: the object arrived whole and its digest matched."""

    object_id: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """spec 5.10: an object is abandoned (by its sender) or refused (by its receiver)."""

    object_id: int
    origin: int
    error_code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Probe:
    """spec 5.11: asks for the status of an object; chunks below sent_through were all sent."""

    object_id: int
    sent_through: int


@dataclass(frozen=True, slots=True)
class Ping:
    """spec 5.12: keepalive; elicits an ACK."""


@dataclass(frozen=True, slots=True)
class Close:
    """spec 5.13: ends the session; error_code 0 is a clean close, anything else an abort."""

    error_code: int
    reason: str = ""


Packet = (
    Initial | Retry | Accept | VersionNegotiation | Announce | Data | Nack | Ack | Complete | Cancel
    | Probe | Ping | Close | Repair
)

PACKET_TYPE_OF: dict[type, PacketType] = {
    Initial: PacketType.INITIAL,
    Retry: PacketType.RETRY,
    Accept: PacketType.ACCEPT,
    VersionNegotiation: PacketType.VERSION,
    Announce: PacketType.ANNOUNCE,
    Data: PacketType.DATA,
    Nack: PacketType.NACK,
    Ack: PacketType.ACK,
    Complete: PacketType.COMPLETE,
    Cancel: PacketType.CANCEL,
    Probe: PacketType.PROBE,
    Ping: PacketType.PING,
    Close: PacketType.CLOSE,
    Repair: PacketType.REPAIR,
}


class Decoded(NamedTuple):
    version: int
    session_id: int
    packet_number: int
    packet: Packet


# ---------------------------------------------------------------------------------------------
# Encoding


def _short_str(text: str, limit: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > limit:
        raise ValueError(f"{what} is {len(raw)} bytes encoded; at most {limit}")
    return _U8.pack(len(raw)) + raw


def utf8_cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, on a character boundary."""
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def _reason(text: str) -> bytes:
    """spec 5.10/5.13: UTF-8, cut to 255 bytes on a character boundary."""
    return utf8_cut(text, MAX_REASON_LEN).encode("utf-8")


def normalize_missing(missing: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Validate a NACK missing list and merge adjacent ranges (spec 5.7, R5.7-1 and R5.7-4).

    Raises ValueError unless every range is non-empty, ascending, disjoint from the one before and
    below 2^32. Returns the list with adjacent ranges merged (the same object when there are none).
    """
    prev_end = -1
    merged: list[tuple[int, int]] | None = None
    for i, (first, count) in enumerate(missing):
        if count < 1 or first <= prev_end or first + count > 0x100000000:
            raise ValueError("NACK ranges must be non-empty, ascending, disjoint and below 2^32")
        if first == prev_end + 1 and i > 0:
            if merged is None:
                merged = list(missing[:i])
            last_first, last_count = merged[-1]
            merged[-1] = (last_first, last_count + count)
        elif merged is not None:
            merged.append((first, count))
        prev_end = first + count - 1
    return missing if merged is None else tuple(merged)


def _encode_payload(packet: Packet) -> bytes:
    if isinstance(packet, Data):
        if not packet.chunk:
            raise ValueError("a DATA chunk holds at least one byte")
        return _DATA_PREFIX.pack(packet.object_id, packet.chunk_index) + packet.chunk
    if isinstance(packet, Repair):
        if not 1 <= packet.count <= MAX_REPAIR_WINDOW:
            raise ValueError(f"a REPAIR window holds 1..{MAX_REPAIR_WINDOW} chunks")
        if not packet.payload:
            raise ValueError("a REPAIR payload holds at least one byte")
        return _REPAIR_PREFIX.pack(packet.object_id, packet.first_index, packet.seed, packet.count) + packet.payload
    if isinstance(packet, Ack):
        return _ACK.pack(
            packet.largest_pn,
            packet.ack_delay_us,
            packet.received_bytes,
            packet.received_packets,
            packet.object_id_limit,
            packet.announce_limit,
        )
    if isinstance(packet, Nack):
        return encode_nack_payload(packet)
    if isinstance(packet, Announce):
        flags = (ANNOUNCE_FLAG_WANT_REPLY if packet.want_reply else 0) | (
            ANNOUNCE_FLAG_IS_REPLY if packet.in_reply_to is not None else 0
        )
        if len(packet.digest) != DIGEST_LEN:
            raise ValueError("digest must be 32 bytes (SHA-256)")
        if packet.chunk_size < MIN_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be at least {MIN_CHUNK_SIZE}")
        if packet.chunk_count != -(-packet.total_length // packet.chunk_size):
            raise ValueError("chunk_count must be ceil(total_length / chunk_size)")
        if not all(0x20 < ord(c) < 0x7F for c in packet.content_type):
            raise ValueError("content type must be printable ASCII without spaces")
        return (
            _ANNOUNCE_FIXED.pack(
                packet.object_id,
                packet.total_length,
                packet.chunk_size,
                packet.chunk_count,
                flags,
                packet.in_reply_to or 0,
                packet.deadline_ms,
                packet.digest,
            )
            + _short_str(packet.content_type, MAX_CONTENT_TYPE_LEN, "content type")
            + _short_str(packet.name, MAX_NAME_LEN, "name")
        )
    if isinstance(packet, Complete):
        return _U32.pack(packet.object_id)
    if isinstance(packet, Probe):
        return _PROBE.pack(packet.object_id, packet.sent_through)
    if isinstance(packet, Ping):
        return b""
    if isinstance(packet, Cancel):
        if packet.origin not in (0, 1):
            raise ValueError("CANCEL origin must be 0 or 1")
        reason = _reason(packet.reason)
        return _CANCEL_FIXED.pack(packet.object_id, packet.origin, packet.error_code, len(reason)) + reason
    if isinstance(packet, Close):
        reason = _reason(packet.reason)
        return _CLOSE_FIXED.pack(packet.error_code, len(reason)) + reason
    if isinstance(packet, Initial):
        if len(packet.token) > MAX_TOKEN_LEN:
            raise ValueError("token too long")
        params = encode_params(packet.params)
        body = _U8.pack(len(packet.token)) + packet.token + _U16.pack(len(params)) + params
        pad = MIN_INITIAL_DATAGRAM - HEADER_LEN - CRC_LEN - len(body)
        return body + bytes(max(pad, 0))
    if isinstance(packet, Retry):
        if not 1 <= len(packet.token) <= MAX_TOKEN_LEN:
            raise ValueError("token must be 1..255 bytes")
        return _U8.pack(len(packet.token)) + packet.token
    if isinstance(packet, Accept):
        if packet.session_id == 0:
            raise ValueError("session id 0 is reserved")
        params = encode_params(packet.params)
        return _U64.pack(packet.session_id) + _U16.pack(len(params)) + params
    if isinstance(packet, VersionNegotiation):
        if not packet.versions:
            raise ValueError("a VERSION packet lists at least one version")
        return bytes(packet.versions)
    raise TypeError(f"not a SNIP packet: {packet!r}")


def encode(packet: Packet, session_id: int, packet_number: int, version: int = VERSION) -> bytes:
    """One datagram: header, payload, CRC32C (spec 4.1)."""
    ptype = PACKET_TYPE_OF[type(packet)]
    if ptype is PacketType.VERSION:
        version = VERSION_NEGOTIATION
    payload = _encode_payload(packet)
    if len(payload) > 0xFFFF:
        raise ValueError("payload exceeds 65535 bytes")
    head = _HEADER.pack(MAGIC, version, ptype, session_id, packet_number, len(payload))
    body = head + payload
    return body + _CRC.pack(crc32c(body))


def encode_data(session_id: int, packet_number: int, object_id: int, chunk_index: int, chunk: bytes) -> bytes:
    """Fast path for the hot packet type; byte-identical to ``encode(Data(...))``."""
    body = (
        _HEADER.pack(MAGIC, VERSION, PacketType.DATA, session_id, packet_number, DATA_PREFIX_LEN + len(chunk))
        + _DATA_PREFIX.pack(object_id, chunk_index)
        + chunk
    )
    return body + _CRC.pack(crc32c(body))


def nack_sizes(missing: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """Encoded sizes (ranges form, bitmap form) of a missing list, for choosing the smaller."""
    ranges_size = 2 + _RANGE.size * len(missing)
    if not missing:
        return ranges_size, 4
    first = missing[0][0]
    last = missing[-1][0] + missing[-1][1] - 1
    return ranges_size, 4 + (last - first) // 8 + 1


def encode_nack_payload(packet: Nack) -> bytes:
    """spec 5.7: the ranges form unless the bitmap form is strictly smaller."""
    flags = NACK_FLAG_ANNOUNCE_MISSING if packet.announce_missing else 0
    missing = normalize_missing(packet.missing)
    ranges_size, bitmap_size = nack_sizes(missing)
    if missing and bitmap_size < ranges_size:
        base = missing[0][0]
        last = missing[-1][0] + missing[-1][1] - 1
        nbits = last - base + 1
        bits = 0
        for first, count in missing:
            # a run of `count` ones starting at bit (first - base), MSB-first within the bitmap
            run = (1 << count) - 1
            bits |= run << (nbits - (first - base) - count)
        nbytes = (nbits + 7) // 8
        bits <<= nbytes * 8 - nbits
        return _NACK_FIXED.pack(packet.object_id, flags, NackEncoding.BITMAP, packet.largest_pn) + _U32.pack(base) + (
            bits.to_bytes(nbytes, "big")
        )
    out = bytearray(_NACK_FIXED.pack(packet.object_id, flags, NackEncoding.RANGES, packet.largest_pn))
    out += _U16.pack(len(missing))
    for first, count in missing:
        out += _RANGE.pack(first, count)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Decoding


def peek_header(data: bytes) -> tuple[int, int, int] | None:
    """(version, type, session_id) if the datagram starts like SNIP, else None. No CRC check."""
    if len(data) < HEADER_LEN + CRC_LEN or data[:2] != MAGIC:
        return None
    _, version, ptype, session_id, _, _ = _HEADER.unpack_from(data)
    return version, ptype, session_id


def decode(data: bytes) -> Decoded:
    """Parse and verify one datagram (spec 4.2). Raises DecodeError, and nothing else."""
    try:
        return _decode(data)
    except DecodeError:
        raise
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:  # belt and braces
        raise DecodeError("malformed", str(exc)) from None


def _decode(data: bytes) -> Decoded:
    n = len(data)
    if n < HEADER_LEN + CRC_LEN:
        raise DecodeError("truncated", f"{n} bytes is shorter than the {HEADER_LEN + CRC_LEN}-byte minimum")
    magic, version, ptype, session_id, pn, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError("bad_magic", "not a SNIP datagram")
    if HEADER_LEN + length + CRC_LEN != n:
        reason = "truncated" if HEADER_LEN + length + CRC_LEN > n else "trailing_bytes"
        held = n - HEADER_LEN - CRC_LEN
        raise DecodeError(reason, f"length field says {length} payload bytes, datagram holds {held}")
    (crc,) = _CRC.unpack_from(data, n - CRC_LEN)
    if crc != crc32c(memoryview(data)[: n - CRC_LEN]):
        raise DecodeError("checksum", "CRC32C mismatch")
    try:
        kind = PacketType(ptype)
    except ValueError:
        raise DecodeError("unknown_type", f"packet type 0x{ptype:02x}") from None
    if kind is PacketType.VERSION:
        if version != VERSION_NEGOTIATION:
            raise DecodeError("malformed", "VERSION packet must carry version 0")
    elif version != VERSION:
        raise DecodeError("unknown_version", f"version {version}")
    payload = memoryview(data)[HEADER_LEN : HEADER_LEN + length]
    return Decoded(version, session_id, pn, _decode_payload(kind, payload, n, session_id))


def _need(payload: memoryview, size: int, what: str) -> None:
    if len(payload) < size:
        raise DecodeError("truncated", f"{what} payload needs {size} bytes, has {len(payload)}")


def _exact(payload: memoryview, size: int, what: str) -> None:
    if len(payload) != size:
        kind = "truncated" if len(payload) < size else "trailing_bytes"
        raise DecodeError(kind, f"{what} payload must be {size} bytes, has {len(payload)}")


def _read_short_str(payload: memoryview, offset: int, what: str, ascii_only: bool = False) -> tuple[str, int]:
    _need(payload, offset + 1, what)
    size = payload[offset]
    end = offset + 1 + size
    _need(payload, end, what)
    raw = bytes(payload[offset + 1 : end])
    try:
        text = raw.decode("ascii" if ascii_only else "utf-8")
    except UnicodeDecodeError:
        raise DecodeError("malformed", f"{what} is not valid {'ASCII' if ascii_only else 'UTF-8'}") from None
    if ascii_only and not all(0x20 < b < 0x7F for b in raw):
        raise DecodeError("malformed", f"{what} has non-printable characters")
    return text, end


def _decode_payload(kind: PacketType, payload: memoryview, datagram_len: int, session_id: int) -> Packet:
    if kind is PacketType.DATA:
        _need(payload, DATA_PREFIX_LEN + 1, "DATA")
        object_id, index = _DATA_PREFIX.unpack_from(payload)
        return Data(object_id, index, bytes(payload[DATA_PREFIX_LEN:]))
    if kind is PacketType.REPAIR:
        _need(payload, _REPAIR_PREFIX.size + 1, "REPAIR")
        object_id, first, seed, count = _REPAIR_PREFIX.unpack_from(payload)
        if not 1 <= count <= MAX_REPAIR_WINDOW:
            raise DecodeError("malformed", f"REPAIR window of {count} chunks (1..{MAX_REPAIR_WINDOW})")
        if first + count > 0x100000000:
            raise DecodeError("malformed", "REPAIR window runs past chunk index 2^32 - 1")
        return Repair(object_id, first, seed, count, bytes(payload[_REPAIR_PREFIX.size :]))
    if kind is PacketType.ACK:
        _exact(payload, _ACK.size, "ACK")
        return Ack(*_ACK.unpack_from(payload))
    if kind is PacketType.NACK:
        return _decode_nack(payload)
    if kind is PacketType.ANNOUNCE:
        return _decode_announce(payload)
    if kind is PacketType.COMPLETE:
        _exact(payload, 4, "COMPLETE")
        return Complete(_U32.unpack_from(payload)[0])
    if kind is PacketType.PROBE:
        _exact(payload, _PROBE.size, "PROBE")
        return Probe(*_PROBE.unpack_from(payload))
    if kind is PacketType.PING:
        _exact(payload, 0, "PING")
        return Ping()
    if kind is PacketType.CANCEL:
        _need(payload, _CANCEL_FIXED.size, "CANCEL")
        object_id, origin, code, rlen = _CANCEL_FIXED.unpack_from(payload)
        if origin > 1:
            raise DecodeError("malformed", f"CANCEL origin {origin}")
        _exact(payload, _CANCEL_FIXED.size + rlen, "CANCEL")
        reason = bytes(payload[_CANCEL_FIXED.size :]).decode("utf-8", "replace")
        return Cancel(object_id, origin, code, reason)
    if kind is PacketType.CLOSE:
        _need(payload, _CLOSE_FIXED.size, "CLOSE")
        code, rlen = _CLOSE_FIXED.unpack_from(payload)
        _exact(payload, _CLOSE_FIXED.size + rlen, "CLOSE")
        return Close(code, bytes(payload[_CLOSE_FIXED.size :]).decode("utf-8", "replace"))
    if kind is PacketType.INITIAL:
        if session_id == 0:
            raise DecodeError("malformed", "INITIAL with session id 0")
        if datagram_len < MIN_INITIAL_DATAGRAM:
            raise DecodeError(
                "short_initial", f"INITIAL datagram of {datagram_len} bytes (< {MIN_INITIAL_DATAGRAM})"
            )
        _need(payload, 1, "INITIAL")
        tlen = payload[0]
        _need(payload, 1 + tlen + 2, "INITIAL")
        token = bytes(payload[1 : 1 + tlen])
        (plen,) = _U16.unpack_from(payload, 1 + tlen)
        start = 3 + tlen
        _need(payload, start + plen, "INITIAL")
        # whatever follows the parameters is padding (spec 5.1), ignored
        return Initial(decode_params(payload[start : start + plen]), token)
    if kind is PacketType.RETRY:
        _need(payload, 2, "RETRY")
        tlen = payload[0]
        if tlen == 0:
            raise DecodeError("malformed", "RETRY with an empty token")
        _exact(payload, 1 + tlen, "RETRY")
        return Retry(bytes(payload[1:]))
    if kind is PacketType.ACCEPT:
        _need(payload, 10, "ACCEPT")
        (sid,) = _U64.unpack_from(payload)
        (plen,) = _U16.unpack_from(payload, 8)
        _exact(payload, 10 + plen, "ACCEPT")
        if sid == 0:
            raise DecodeError("malformed", "ACCEPT with session id 0")
        return Accept(sid, decode_params(payload[10:]))
    if kind is PacketType.VERSION:
        _need(payload, 1, "VERSION")
        return VersionNegotiation(tuple(payload))
    raise DecodeError("unknown_type", f"packet type {kind!r}")  # pragma: no cover - enum is exhaustive


def _decode_announce(payload: memoryview) -> Announce:
    _need(payload, _ANNOUNCE_FIXED.size, "ANNOUNCE")
    fixed = _ANNOUNCE_FIXED.unpack_from(payload)
    (object_id, total, chunk_size, count, flags, in_reply_to, deadline_ms, digest) = fixed
    content_type, offset = _read_short_str(payload, _ANNOUNCE_FIXED.size, "content type", ascii_only=True)
    name, offset = _read_short_str(payload, offset, "name")
    if offset != len(payload):
        raise DecodeError("trailing_bytes", "ANNOUNCE has bytes after the name")
    if chunk_size < MIN_CHUNK_SIZE:
        raise DecodeError("malformed", f"chunk size {chunk_size} < {MIN_CHUNK_SIZE}")
    if count != -(-total // chunk_size):
        raise DecodeError("malformed", f"chunk count {count} != ceil({total} / {chunk_size})")
    return Announce(
        object_id=object_id,
        total_length=total,
        chunk_size=chunk_size,
        chunk_count=count,
        digest=bytes(digest),
        content_type=content_type,
        name=name,
        want_reply=bool(flags & ANNOUNCE_FLAG_WANT_REPLY),
        in_reply_to=in_reply_to if flags & ANNOUNCE_FLAG_IS_REPLY else None,
        deadline_ms=deadline_ms,
    )


def _decode_nack(payload: memoryview) -> Nack:
    _need(payload, _NACK_FIXED.size, "NACK")
    object_id, flags, encoding, largest_pn = _NACK_FIXED.unpack_from(payload)
    body = payload[_NACK_FIXED.size :]
    announce_missing = bool(flags & NACK_FLAG_ANNOUNCE_MISSING)
    if encoding == NackEncoding.RANGES:
        _need(body, 2, "NACK ranges")
        (count,) = _U16.unpack_from(body)
        _exact(body, 2 + count * _RANGE.size, "NACK ranges")
        ranges: list[tuple[int, int]] = []
        prev_end = -1
        for i in range(count):
            first, length = _RANGE.unpack_from(body, 2 + i * _RANGE.size)
            if length == 0 or first <= prev_end or first + length > 0x100000000:
                raise DecodeError("malformed", "NACK ranges must be non-empty, ascending and disjoint")
            ranges.append((first, length))
            prev_end = first + length - 1
        return Nack(object_id, tuple(ranges), announce_missing, largest_pn)
    if encoding == NackEncoding.BITMAP:
        _need(body, 5, "NACK bitmap")
        (base,) = _U32.unpack_from(body)
        ranges = list(_bitmap_to_ranges(base, bytes(body[4:])))
        # only set bits name chunks: zero bits past index 2^32-1 (the last octet's padding) are fine
        if ranges and ranges[-1][0] + ranges[-1][1] > 0x100000000:
            raise DecodeError("malformed", "NACK bitmap names a chunk index above 2^32-1")
        return Nack(object_id, tuple(ranges), announce_missing, largest_pn)
    raise DecodeError("malformed", f"NACK encoding {encoding}")


def _bitmap_to_ranges(base: int, bitmap: bytes) -> tuple[tuple[int, int], ...]:
    # Linear time: one binary string, one regex pass over its runs of ones. (A loop of big-int masks
    # per run is quadratic, and a hostile 64 KiB bitmap of alternating bits took seconds.)
    nbits = len(bitmap) * 8
    bits = format(int.from_bytes(bitmap, "big"), f"0{nbits}b")
    return tuple((base + m.start(), m.end() - m.start()) for m in _RUN_OF_ONES.finditer(bits))
