"""Golden test vectors of SNIP/2 (spec Appendix A).

One table, ``VECTORS``, drives the encoder tests, the decoder tests and the spec's Appendix A. Each
vector names the spec section that defines its packet and holds the datagram as hex. The hex was
produced once by ``codec.encode`` and is frozen here: a change to the codec that alters a byte fails
tests/protocol/test_vectors.py instead of silently changing the wire format.

``appendix_a()`` renders Appendix A from the table. Its per-field breakdown is built from a second,
independent description of each packet layout (``layout()`` below, written from spec section 5, not
from the codec) and refuses to render if that description and the frozen hex disagree on any byte.
Regenerate the appendix in place with ``python -m protocol.vectors --write`` (without ``--write`` it is
printed); the tests check that protocol/spec.md holds exactly the rendered text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .codec import (
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
    Repair,
    Retry,
    VersionNegotiation,
    crc32c,
)
from .constants import ErrorCode, PacketType
from .params import SessionParams


@dataclass(frozen=True, slots=True)
class Vector:
    """One golden datagram: ``packet`` sent with ``session_id`` and ``packet_number`` is ``hex``."""

    name: str
    section: str  # the spec section that defines the packet
    packet: Packet
    session_id: int
    packet_number: int
    hex: str  # the whole datagram, header to CRC, lower-case hex without spaces
    note: str = ""  # one sentence for the appendix

    @property
    def datagram(self) -> bytes:
        return bytes.fromhex(self.hex)

    @property
    def version(self) -> int:
        """The header's version field: 0 for VERSION packets (spec 3), 2 otherwise."""
        return 0 if isinstance(self.packet, VersionNegotiation) else 2


# Readable field values shared by the vectors.
INITIAL_ID = 0x1122334455667788  # the client's initial id (spec 7.1)
SESSION_ID = 0x0123456789ABCDEF  # the session id the server assigns (spec 7.1)
TOKEN = bytes.fromhex("6553f100") + bytes(range(0xA0, 0xB0))  # 20 bytes: timestamp || 16-byte MAC
OBJECT = bytes(range(100))  # the 100-byte object of the announce/data vectors
REPLY = b'{"label":"cat","probability":0.97}'  # the 34-byte reply object

VECTORS: tuple[Vector, ...] = (
    Vector(
        name="initial",
        section="5.1",
        packet=Initial(params=SessionParams(), token=b""),
        session_id=INITIAL_ID,
        packet_number=0,
        note="A client's first INITIAL: no token, every parameter at its default (an empty list), padded to 1200 bytes.",
        hex=("534e0201112233445566778800000000049a" + "00" * 1178 + "c99d3d13"),
    ),
    Vector(
        name="initial_with_token",
        section="5.1",
        packet=Initial(params=SessionParams(max_datagram_size=1400, idle_timeout_ms=60_000), token=TOKEN),
        session_id=INITIAL_ID,
        packet_number=1,
        note="The INITIAL re-sent after a RETRY: it carries the RETRY's token and two non-default parameters.",
        hex=(
            "534e0201112233445566778800000001049a146553f100a0a1a2a3a4a5a6a7a8a9aaabacadaeaf000e00010002057800"
            "0500040000ea600000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000064a7f02d"
        ),
    ),
    Vector(
        name="retry",
        section="5.2",
        packet=Retry(TOKEN),
        session_id=INITIAL_ID,
        packet_number=0,
        note="A server's stateless RETRY, echoing the initial id; the token is 4 bytes of timestamp and 16 bytes of MAC.",
        hex="534e02021122334455667788000000000015146553f100a0a1a2a3a4a5a6a7a8a9aaabacadaeaf3954602a",
    ),
    Vector(
        name="accept",
        section="5.3",
        packet=Accept(
            SESSION_ID,
            SessionParams(max_object_size=16 << 20, max_concurrent_objects=16, max_buffered_bytes=64 << 20),
        ),
        session_id=INITIAL_ID,
        packet_number=0,
        note="ACCEPT, echoing the initial id in the header and assigning the session id in the payload; "
        "the server takes objects up to 16 MiB, 16 at a time, 64 MiB in all.",
        hex=(
            "534e0203112233445566778800000000002a0123456789abcdef00200002000800000000010000000003000400000010"
            "0004000800000000040000007c357543"
        ),
    ),
    Vector(
        name="version",
        section="5.4",
        packet=VersionNegotiation((2,)),
        session_id=INITIAL_ID,
        packet_number=0,
        note="VERSION answering an INITIAL of an unknown version: version field 0, one supported version (2).",
        hex="534e0004112233445566778800000000000102c858adf9",
    ),
    Vector(
        name="announce",
        section="5.5",
        packet=Announce(
            object_id=0,
            total_length=len(OBJECT),
            chunk_size=64,
            chunk_count=2,
            digest=hashlib.sha256(OBJECT).digest(),
            content_type="image/jpeg",
            name="cat.jpg",
            want_reply=True,
        ),
        session_id=SESSION_ID,
        packet_number=2,
        note="The first object of a session: 100 bytes (00 01 02 ... 63) in two chunks of at most 64 bytes; the sender wants a reply.",
        hex=(
            "534e02100123456789abcdef00000002004e000000000000000000000064004000000002010000000000000000bce0af"
            "f19cf5aa6a7469a30d61d04e4376e4bbf6381052ee9e7f33925c954d520a696d6167652f6a706567076361742e6a7067"
            "a62e9158"
        ),
    ),
    Vector(
        name="announce_reply",
        section="5.5",
        packet=Announce(
            object_id=0,
            total_length=len(REPLY),
            chunk_size=1024,
            chunk_count=1,
            digest=hashlib.sha256(REPLY).digest(),
            content_type="application/json",
            name="cat.jpg.json",
            in_reply_to=0,
            deadline_ms=5000,
        ),
        session_id=SESSION_ID,
        packet_number=5,
        note=(
            "The other endpoint's first object, a 34-byte JSON reply to object 0, with a 5-second deadline. "
            "The vector exercises the codec's fields only: its name, deadline and body are not the reference "
            "applications' reply convention, which Appendix C gives (the reference receiver names a reply "
            "`reply:<name>`, sets no deadline and sends a JSON receipt)."
        ),
        hex=(
            "534e02100123456789abcdef00000005005900000000000000000000002204000000000102000000000000138805701f"
            "1f004c59ad8ec83dae0776c2efbe99347a4667779026231cb0ed8f2156106170706c69636174696f6e2f6a736f6e0c63"
            "61742e6a70672e6a736f6ec4458c28"
        ),
    ),
    Vector(
        name="announce_empty",
        section="5.5",
        packet=Announce(
            object_id=1,
            total_length=0,
            chunk_size=1024,
            chunk_count=0,
            digest=hashlib.sha256(b"").digest(),
            content_type="application/octet-stream",
            name="empty",
        ),
        session_id=SESSION_ID,
        packet_number=6,
        note="An empty object: no chunks, the digest of the empty string.",
        hex=(
            "534e02100123456789abcdef00000006005a000000010000000000000000040000000000000000000000000000e3b0c4"
            "4298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855186170706c69636174696f6e2f6f637465742d"
            "73747265616d05656d707479aa2b56c7"
        ),
    ),
    Vector(
        name="data",
        section="5.6",
        packet=Data(object_id=0, chunk_index=1, chunk=OBJECT[64:]),
        session_id=SESSION_ID,
        packet_number=4,
        note="The last chunk of the announce vector's object: bytes 64..99, 36 bytes.",
        hex=(
            "534e02110123456789abcdef00000004002c0000000000000001404142434445464748494a4b4c4d4e4f505152535455"
            "565758595a5b5c5d5e5f606162631dc71b67"
        ),
    ),
    Vector(
        name="nack_ranges",
        section="5.7",
        packet=Nack(object_id=5, missing=((2, 3), (1000, 5)), largest_pn=1012),
        session_id=SESSION_ID,
        packet_number=17,
        note="Chunks 2-4 and 1000-1004 of object 5 are missing; two ranges (18 bytes) beat a bitmap "
        "(130 bytes: 4 + floor((1004 - 2) / 8) + 1). The NACK's writer had received packets up to number 1012.",
        hex=(
            "534e02120123456789abcdef00000011001c000000050000000003f400020000000200000003000003e80000000532a5"
            "88b7"
        ),
    ),
    Vector(
        name="nack_bitmap",
        section="5.7",
        packet=Nack(object_id=5, missing=((16, 1), (18, 2), (23, 1)), largest_pn=30),
        session_id=SESSION_ID,
        packet_number=18,
        note="Chunks 16, 18, 19 and 23 of object 5 are missing; a bitmap (5 bytes) beats three ranges (26 bytes).",
        hex="534e02120123456789abcdef00000012000f0000000500010000001e00000010b14bd2587b",
    ),
    Vector(
        name="nack_tie",
        section="5.7",
        packet=Nack(object_id=5, missing=((0, 41),), largest_pn=60),
        session_id=SESSION_ID,
        packet_number=18,
        note="Chunks 0-40 of object 5 are missing: one range and a bitmap both take 10 bytes "
        "(2 + 8 and 4 + floor(40 / 8) + 1); at a tie the ranges form is used (R5.7-4).",
        hex="534e02120123456789abcdef0000001200140000000500000000003c0001000000000000002924f0a1d1",
    ),
    Vector(
        name="nack_announce_missing",
        section="5.7",
        packet=Nack(object_id=6, announce_missing=True, largest_pn=15),
        session_id=SESSION_ID,
        packet_number=19,
        note="The receiver got DATA or PROBE for object 6 but has no ANNOUNCE for it.",
        hex="534e02120123456789abcdef00000013000c0000000601000000000f000022f85555",
    ),
    Vector(
        name="nack_nothing_missing",
        section="5.7",
        packet=Nack(object_id=0, largest_pn=11),
        session_id=SESSION_ID,
        packet_number=20,
        note="The answer to the probe vector's PROBE (packet 11) when no chunk below sent_through is missing: zero ranges.",
        hex="534e02120123456789abcdef00000014000c0000000000000000000b0000f50011cc",
    ),
    Vector(
        name="ack",
        section="5.8",
        packet=Ack(
            largest_pn=41,
            ack_delay_us=2500,
            received_bytes=52_000,
            received_packets=40,
            object_id_limit=65,
            announce_limit=(256 << 20) + 100,
        ),
        session_id=SESSION_ID,
        packet_number=7,
        note="Packet 41 is the largest received, 2.5 ms ago; 40 datagrams (52000 bytes) have arrived; "
        "one 100-byte object has finished, so both limits rose by one object.",
        hex=(
            "534e02130123456789abcdef00000007002000000029000009c4000000000000cb200000002800000041000000001000"
            "00640b701fcb"
        ),
    ),
    Vector(
        name="complete",
        section="5.9",
        packet=Complete(object_id=0),
        session_id=SESSION_ID,
        packet_number=8,
        note="Object 0 arrived whole, its digest matched, and it was delivered.",
        hex="534e02140123456789abcdef00000008000400000000f4795a2f",
    ),
    Vector(
        name="cancel_refusal",
        section="5.10",
        packet=Cancel(object_id=3, origin=0, error_code=ErrorCode.REFUSED, reason="busy"),
        session_id=SESSION_ID,
        packet_number=9,
        note="The receiver of object 3 refuses it (origin 0: the object is one the CANCEL's recipient sends).",
        hex="534e02150123456789abcdef00000009000c000000030000080462757379a7368fa5",
    ),
    Vector(
        name="cancel_abandon",
        section="5.10",
        packet=Cancel(object_id=4, origin=1, error_code=ErrorCode.DEADLINE_EXPIRED, reason="deadline passed"),
        session_id=SESSION_ID,
        packet_number=10,
        note="The sender of object 4 abandons it (origin 1: the object is one the CANCEL's sender sends).",
        hex="534e02150123456789abcdef0000000a0017000000040100070f646561646c696e65207061737365642871432b",
    ),
    Vector(
        name="probe",
        section="5.11",
        packet=Probe(object_id=0, sent_through=2),
        session_id=SESSION_ID,
        packet_number=11,
        note="Sent right behind the last chunk of object 0: chunks 0 and 1 have both been sent.",
        hex="534e02160123456789abcdef0000000b0008000000000000000265baac48",
    ),
    Vector(
        name="repair",
        section="5.14",
        packet=Repair(
            object_id=0,
            first_index=0,
            seed=7,
            count=2,
            payload=bytes(a ^ b for a, b in zip(OBJECT[:64], OBJECT[64:] + bytes(28), strict=True)),
        ),
        session_id=SESSION_ID,
        packet_number=5,
        note=(
            "Forward repair over both chunks of the announce vector's object (chunk size 64): seed 7 chooses "
            "chunks 0 and 1 (o_0 = 0x63CBE1E459320DD7: bits 0 and 1 set), so Repair Data is chunk 0 XOR chunk 1 "
            "extended with 28 zero bytes."
        ),
        hex=(
            "534e02170123456789abcdef00000005004e000000000000000000000007000240404040404040404040404040404040"
            "40404040404040404040404040404040404040402425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
            "9e77454a"
        ),
    ),
    Vector(
        name="ping",
        section="5.12",
        packet=Ping(),
        session_id=SESSION_ID,
        packet_number=12,
        note="A keepalive: an empty payload.",
        hex="534e02200123456789abcdef0000000c0000b5f06be1",
    ),
    Vector(
        name="close",
        section="5.13",
        packet=Close(error_code=ErrorCode.NO_ERROR),
        session_id=SESSION_ID,
        packet_number=13,
        note="A clean close without a reason.",
        hex="534e02210123456789abcdef0000000d00030000003059fc66",
    ),
    Vector(
        name="close_abort",
        section="5.13",
        packet=Close(error_code=ErrorCode.PROTOCOL_VIOLATION, reason="chunk index out of range"),
        session_id=SESSION_ID,
        packet_number=14,
        note="An abort for a protocol violation, with a reason.",
        hex=(
            "534e02210123456789abcdef0000000e001b0002186368756e6b20696e646578206f7574206f662072616e6765882005"
            "3c"
        ),
    ),
    Vector(
        name="close_server_busy",
        section="5.13",
        packet=Close(error_code=ErrorCode.SERVER_BUSY, reason="too many sessions"),
        session_id=INITIAL_ID,
        packet_number=0,
        note="A server's stateless refusal of an INITIAL (section 7.3): it echoes the initial id.",
        hex="534e02211122334455667788000000000014000911746f6f206d616e792073657373696f6e73eeb0ab66",
    ),
)

VECTORS_BY_NAME: dict[str, Vector] = {v.name: v for v in VECTORS}


# ---------------------------------------------------------------------------------------------
# Appendix A. The layout below restates spec section 5 field by field, independently of codec.py.

_Field = tuple[str, bytes]  # (description, the bytes the spec says the field holds)


def _u(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big")


def _params_fields(params: SessionParams) -> list[_Field]:
    defaults = SessionParams()
    layout = (
        (0x0001, "max_datagram_size", 2),
        (0x0002, "max_object_size", 8),
        (0x0003, "max_concurrent_objects", 4),
        (0x0004, "max_buffered_bytes", 8),
        (0x0005, "idle_timeout_ms", 4),
        (0x0006, "max_ack_delay_ms", 2),
    )
    tlvs: list[_Field] = []
    for pid, name, width in layout:
        value = getattr(params, name)
        if value == getattr(defaults, name):
            continue
        tlvs.append((f"param id = 0x{pid:04x} ({name})", _u(pid, 2)))
        tlvs.append((f"param length = {width}", _u(width, 2)))
        tlvs.append((f"param value = {value}", _u(value, width)))
    size = sum(len(raw) for _, raw in tlvs)
    return [(f"params_length = {size}", _u(size, 2)), *tlvs]


def _nack_fields(nack: Nack) -> list[_Field]:
    ranges_size = 2 + 8 * len(nack.missing)
    flags = f"flags = 0x{int(nack.announce_missing):02x}" + (" (announce_missing)" if nack.announce_missing else "")
    fields: list[_Field] = [
        (f"object_id = {nack.object_id}", _u(nack.object_id, 4)),
        (flags, _u(int(nack.announce_missing), 1)),
    ]
    largest: _Field = (f"largest_pn = {nack.largest_pn}", _u(nack.largest_pn, 4))
    if nack.missing:
        base = nack.missing[0][0]
        top = nack.missing[-1][0] + nack.missing[-1][1] - 1
        nbytes = (top - base) // 8 + 1
        if 4 + nbytes < ranges_size:  # spec 5.7: the bitmap only when strictly smaller
            bitmap = bytearray(nbytes)
            for first, count in nack.missing:
                for index in range(first, first + count):
                    bit = index - base
                    bitmap[bit // 8] |= 0x80 >> (bit % 8)
            missing = ", ".join(str(i) for f, c in nack.missing for i in range(f, f + c))
            return [
                *fields,
                ("encoding = 1 (bitmap)", b"\x01"),
                largest,
                (f"base = {base}", _u(base, 4)),
                (f"bitmap, MSB first: missing {missing}", bytes(bitmap)),
            ]
    fields += [
        ("encoding = 0 (ranges)", b"\x00"),
        largest,
        (f"range count = {len(nack.missing)}", _u(len(nack.missing), 2)),
    ]
    for first, count in nack.missing:
        fields.append((f"first = {first}", _u(first, 4)))
        fields.append((f"length = {count}", _u(count, 4)))
    return fields


def _payload_fields(packet: Packet) -> list[_Field]:
    if isinstance(packet, Initial):
        fields: list[_Field] = [(f"token_length = {len(packet.token)}", _u(len(packet.token), 1))]
        if packet.token:
            fields.append(("token", packet.token))
        fields += _params_fields(packet.params)
        used = 18 + sum(len(raw) for _, raw in fields) + 4
        if used < 1200:
            fields.append((f"padding: {1200 - used} zero bytes, to a 1200-byte datagram", bytes(1200 - used)))
        return fields
    if isinstance(packet, Retry):
        return [(f"token_length = {len(packet.token)}", _u(len(packet.token), 1)), ("token", packet.token)]
    if isinstance(packet, Accept):
        return [(f"session_id = 0x{packet.session_id:016x}", _u(packet.session_id, 8)), *_params_fields(packet.params)]
    if isinstance(packet, VersionNegotiation):
        return [(f"supported version = {v}", _u(v, 1)) for v in packet.versions]
    if isinstance(packet, Announce):
        flags = (1 if packet.want_reply else 0) | (2 if packet.in_reply_to is not None else 0)
        flag_names = [n for bit, n in ((1, "want_reply"), (2, "is_reply")) if flags & bit]
        ctype = packet.content_type.encode("ascii")
        name = packet.name.encode("utf-8")
        return [
            (f"object_id = {packet.object_id}", _u(packet.object_id, 4)),
            (f"total_length = {packet.total_length}", _u(packet.total_length, 8)),
            (f"chunk_size = {packet.chunk_size}", _u(packet.chunk_size, 2)),
            (f"chunk_count = {packet.chunk_count}", _u(packet.chunk_count, 4)),
            (f"flags = 0x{flags:02x}" + (f" ({', '.join(flag_names)})" if flag_names else ""), _u(flags, 1)),
            (f"in_reply_to = {packet.in_reply_to or 0}", _u(packet.in_reply_to or 0, 4)),
            (f"deadline_ms = {packet.deadline_ms}", _u(packet.deadline_ms, 4)),
            ("digest: SHA-256 of the object", packet.digest),
            (f"content_type_length = {len(ctype)}", _u(len(ctype), 1)),
            (f'content_type = "{packet.content_type}"', ctype),
            (f"name_length = {len(name)}", _u(len(name), 1)),
            *([(f'name = "{packet.name}"', name)] if name else []),
        ]
    if isinstance(packet, Data):
        return [
            (f"object_id = {packet.object_id}", _u(packet.object_id, 4)),
            (f"chunk_index = {packet.chunk_index}", _u(packet.chunk_index, 4)),
            (f"chunk: {len(packet.chunk)} bytes", packet.chunk),
        ]
    if isinstance(packet, Nack):
        return _nack_fields(packet)
    if isinstance(packet, Ack):
        return [
            (f"largest_pn = {packet.largest_pn}", _u(packet.largest_pn, 4)),
            (f"ack_delay_us = {packet.ack_delay_us}", _u(packet.ack_delay_us, 4)),
            (f"received_bytes = {packet.received_bytes}", _u(packet.received_bytes, 8)),
            (f"received_packets = {packet.received_packets}", _u(packet.received_packets, 4)),
            (f"object_id_limit = {packet.object_id_limit}", _u(packet.object_id_limit, 4)),
            (f"announce_limit = {packet.announce_limit}", _u(packet.announce_limit, 8)),
        ]
    if isinstance(packet, Complete):
        return [(f"object_id = {packet.object_id}", _u(packet.object_id, 4))]
    if isinstance(packet, Probe):
        return [
            (f"object_id = {packet.object_id}", _u(packet.object_id, 4)),
            (f"sent_through = {packet.sent_through}", _u(packet.sent_through, 4)),
        ]
    if isinstance(packet, Ping):
        return []
    if isinstance(packet, Repair):
        return [
            (f"object_id = {packet.object_id}", _u(packet.object_id, 4)),
            (f"first_index = {packet.first_index}", _u(packet.first_index, 4)),
            (f"seed = {packet.seed}", _u(packet.seed, 4)),
            (f"count = {packet.count}", _u(packet.count, 2)),
            (f"repair data ({len(packet.payload)} bytes)", packet.payload),
        ]
    if isinstance(packet, Cancel):
        reason = packet.reason.encode("utf-8")
        origin = "recipient's object: a refusal" if packet.origin == 0 else "sender's object: abandoned"
        return [
            (f"object_id = {packet.object_id}", _u(packet.object_id, 4)),
            (f"origin = {packet.origin} ({origin})", _u(packet.origin, 1)),
            (f"error_code = {packet.error_code} ({ErrorCode(packet.error_code).name})", _u(packet.error_code, 2)),
            (f"reason_length = {len(reason)}", _u(len(reason), 1)),
            *([(f'reason = "{packet.reason}"', reason)] if reason else []),
        ]
    if isinstance(packet, Close):
        reason = packet.reason.encode("utf-8")
        return [
            (f"error_code = {packet.error_code} ({ErrorCode(packet.error_code).name})", _u(packet.error_code, 2)),
            (f"reason_length = {len(reason)}", _u(len(reason), 1)),
            *([(f'reason = "{packet.reason}"', reason)] if reason else []),
        ]
    raise TypeError(f"no layout for {packet!r}")  # pragma: no cover


# Deliberately restated rather than imported from the codec: the layout is a second opinion.
_TYPE_OF: dict[type, PacketType] = {
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


def layout(vector: Vector) -> list[_Field]:
    """Every field of the vector's datagram in order, from the spec's description of the packet.

    Raises ValueError if the fields do not add up to exactly the vector's frozen bytes.
    """
    ptype = _TYPE_OF[type(vector.packet)]
    payload = _payload_fields(vector.packet)
    payload_len = sum(len(raw) for _, raw in payload)
    header: list[_Field] = [
        ('magic = "SN"', b"SN"),
        (f"version = {vector.version}", _u(vector.version, 1)),
        (f"type = 0x{int(ptype):02x} ({ptype.name})", _u(ptype, 1)),
        (f"session_id = 0x{vector.session_id:016x}", _u(vector.session_id, 8)),
        (f"packet_number = {vector.packet_number}", _u(vector.packet_number, 4)),
        (f"payload_length = {payload_len}", _u(payload_len, 2)),
    ]
    body = b"".join(raw for _, raw in header + payload)
    fields = [*header, *payload, (f"crc32c = 0x{crc32c(body):08x}", _u(crc32c(body), 4))]
    if b"".join(raw for _, raw in fields) != vector.datagram:
        raise ValueError(f"vector {vector.name}: the field layout does not reproduce its hex")
    return fields


def hexdump(data: bytes, width: int = 16) -> list[str]:
    """Lines of ``width`` bytes, as two-digit lower-case hex separated by spaces."""
    return [" ".join(f"{b:02x}" for b in data[i : i + width]) for i in range(0, len(data), width)]


def _field_bytes(raw: bytes) -> str:
    if len(raw) <= 8:
        return " ".join(f"{b:02x}" for b in raw)
    return " ".join(f"{b:02x}" for b in raw[:6]) + " .."


def _render_vector(number: int, vector: Vector) -> list[str]:
    ptype = _TYPE_OF[type(vector.packet)]
    lines = [
        f"### A.{number}. {vector.name}",
        "",
        f"{ptype.name} (section {vector.section}), {len(vector.hex) // 2} bytes. {vector.note}",
        "",
        f"Vector: {vector.name}",
        "",
        "```",
        *hexdump(vector.datagram),
        "```",
        "",
        "```",
        "offset  length  bytes                    field",
    ]
    offset = 0
    for description, raw in layout(vector):
        lines.append(f"{offset:6d}  {len(raw):6d}  {_field_bytes(raw):<23}  {description}")
        offset += len(raw)
    lines += ["```", ""]
    return lines


APPENDIX_BEGIN = "<!-- BEGIN GENERATED VECTORS: python -m protocol.vectors --write -->"
APPENDIX_END = "<!-- END GENERATED VECTORS -->"


def appendix_a() -> str:
    """The generated part of spec Appendix A, between (not including) the two marker lines."""
    lines: list[str] = []
    for number, vector in enumerate(VECTORS, start=2):
        lines += _render_vector(number, vector)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_appendix(spec_path: str) -> bool:
    """Replace the generated part of Appendix A in ``spec_path``; True if the file changed."""
    with open(spec_path, encoding="utf-8") as f:
        text = f.read()
    head, sep, rest = text.partition(APPENDIX_BEGIN + "\n")
    _, sep2, tail = rest.partition(APPENDIX_END)
    if not sep or not sep2:
        raise ValueError(f"{spec_path} lacks the generated-vectors markers")
    new = head + APPENDIX_BEGIN + "\n" + appendix_a() + APPENDIX_END + tail
    if new != text:
        with open(spec_path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if sys.argv[1:] == ["--write"]:
        spec = Path(__file__).with_name("spec.md")
        print(f"{spec}: {'updated' if write_appendix(str(spec)) else 'already up to date'}")
    else:
        print(APPENDIX_BEGIN)
        print(appendix_a(), end="")
        print(APPENDIX_END)
