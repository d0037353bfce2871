"""Hand-made datagrams: the bytes the codec refuses to produce, and short descriptions of packets.

The codec encodes only valid packets. Cases that need a wrong one (a bad CRC, a lying length
field, an unknown type, a malformed payload) build it here, field by field.
"""

from __future__ import annotations

import struct
from dataclasses import fields, is_dataclass

from protocol import codec
from protocol.codec import Announce, Data, Decoded, Nack, Packet
from protocol.constants import CRC_LEN, HEADER_LEN, MIN_INITIAL_DATAGRAM, VERSION, ErrorCode, PacketType

HEADER = struct.Struct(">2sBBQIH")
OFFSET_VERSION = 2
OFFSET_TYPE = 3
OFFSET_SESSION_ID = 4
OFFSET_PN = 12
OFFSET_LENGTH = 16


def crc(body: bytes) -> bytes:
    return struct.pack(">I", codec.crc32c(body))


def raw(
    ptype: int,
    session_id: int,
    pn: int,
    payload: bytes = b"",
    *,
    version: int = VERSION,
    magic: bytes = b"SN",
    length: int | None = None,
) -> bytes:
    """A datagram with any header values; the CRC32C is right for whatever precedes it."""
    head = HEADER.pack(magic, version, ptype, session_id, pn, len(payload) if length is None else length)
    body = head + payload
    return body + crc(body)


def fix_crc(datagram: bytes) -> bytes:
    """Recompute the trailer over everything before it (so only other checks can catch a change)."""
    body = datagram[:-CRC_LEN]
    return body + crc(body)


def break_crc(datagram: bytes) -> bytes:
    """The same datagram with a CRC32C that no longer matches."""
    return datagram[:-1] + bytes([datagram[-1] ^ 0x5A])


def patch(datagram: bytes, offset: int, value: bytes, *, fix: bool = True) -> bytes:
    """Overwrite bytes at ``offset``; recompute the CRC unless ``fix`` is False."""
    out = datagram[:offset] + value + datagram[offset + len(value) :]
    return fix_crc(out) if fix else out


def payload_of(datagram: bytes) -> bytes:
    return datagram[HEADER_LEN:-CRC_LEN]


def with_payload(datagram: bytes, payload: bytes) -> bytes:
    """The datagram's header (length updated) with another payload, CRC recomputed."""
    magic, version, ptype, sid, pn, _ = HEADER.unpack_from(datagram)
    return raw(ptype, sid, pn, payload, version=version, magic=magic)


def initial(
    initial_id: int,
    pn: int,
    *,
    token: bytes = b"",
    params: bytes = b"",
    size: int = MIN_INITIAL_DATAGRAM,
    pad: int = 0,
    version: int = VERSION,
) -> bytes:
    """An INITIAL of exactly ``size`` bytes (if it fits), padded with ``pad`` bytes."""
    body = bytes([len(token)]) + token + struct.pack(">H", len(params)) + params
    padding = max(size - HEADER_LEN - CRC_LEN - len(body), 0)
    return raw(PacketType.INITIAL, initial_id, pn, body + bytes([pad]) * padding, version=version)


def tlv(param_id: int, value: bytes) -> bytes:
    """One parameter entry (spec 6), value given as raw bytes so widths can be wrong on purpose."""
    return struct.pack(">HH", param_id, len(value)) + value


def announce_payload(
    a: Announce,
    *,
    flags: int | None = None,
    in_reply_to: int | None = None,
    chunk_count: int | None = None,
    chunk_size: int | None = None,
    content_type: bytes | None = None,
    name: bytes | None = None,
    trailer: bytes = b"",
) -> bytes:
    """ANNOUNCE payload bytes with any field forced, valid or not (spec 5.5 layout)."""
    default_flags = (0x01 if a.want_reply else 0) | (0x02 if a.in_reply_to is not None else 0)
    ct = a.content_type.encode() if content_type is None else content_type
    nm = a.name.encode() if name is None else name
    return (
        struct.pack(
            ">IQHIBII32s",
            a.object_id,
            a.total_length,
            a.chunk_size if chunk_size is None else chunk_size,
            a.chunk_count if chunk_count is None else chunk_count,
            default_flags if flags is None else flags,
            (a.in_reply_to or 0) if in_reply_to is None else in_reply_to,
            a.deadline_ms,
            a.digest,
        )
        + bytes([len(ct)])
        + ct
        + bytes([len(nm)])
        + nm
        + trailer
    )


# ------------------------------------------------------------------------------------------------
# Describing what came back, for verdicts a person can read


def _value(value: object) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>" if len(value) > 8 else value.hex()
    return repr(value)


def _ranges(missing: tuple[tuple[int, int], ...]) -> str:
    parts = [str(f) if n == 1 else f"{f}-{f + n - 1}" for f, n in missing[:6]]
    if len(missing) > 6:
        parts.append(f"... {len(missing)} ranges")
    return "[" + ", ".join(parts) + "]"


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:04x}"


def describe_packet(packet: Packet) -> str:
    name = codec.PACKET_TYPE_OF[type(packet)].name
    if isinstance(packet, Data):
        return f"DATA(object {packet.object_id}, chunk {packet.chunk_index}, {len(packet.chunk)} bytes)"
    if isinstance(packet, Nack):
        flag = ", announce_missing" if packet.announce_missing else ""
        return f"NACK(object {packet.object_id}, missing {_ranges(packet.missing)}{flag}, largest_pn {packet.largest_pn})"
    if isinstance(packet, codec.Close):
        return f"CLOSE({error_name(packet.error_code)}, {packet.reason!r})"
    if isinstance(packet, codec.Cancel):
        return f"CANCEL(object {packet.object_id}, origin {packet.origin}, {error_name(packet.error_code)})"
    if is_dataclass(packet):
        inner = ", ".join(f"{f.name}={_value(getattr(packet, f.name))}" for f in fields(packet))
        return f"{name}({inner})"
    return name  # pragma: no cover - every packet is a dataclass


def describe(decoded: Decoded) -> str:
    return f"{describe_packet(decoded.packet)} [sid {decoded.session_id:016x}, pn {decoded.packet_number}]"
