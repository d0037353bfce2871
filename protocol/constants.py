"""Numbers fixed by protocol/spec.md: packet types, error codes, parameter ids, sizes.

Each enum member cites the spec section that defines it.
"""

from __future__ import annotations

from enum import IntEnum

MAGIC = b"SN"  # spec 4.1
VERSION = 2  # spec 3: the only version this implementation speaks
SUPPORTED_VERSIONS: tuple[int, ...] = (VERSION,)
VERSION_NEGOTIATION = 0  # spec 3: the version field of a VERSION packet

HEADER_LEN = 18  # spec 4.1: magic(2) version(1) type(1) session_id(8) pn(4) length(2)
CRC_LEN = 4  # spec 4.1: CRC32C trailer
OVERHEAD = HEADER_LEN + CRC_LEN
DATA_PREFIX_LEN = 8  # spec 5.6: object_id(4) chunk_index(4)
REPAIR_PREFIX_LEN = 14  # spec 5.14: object_id(4) first_index(4) seed(4) count(2)
MAX_REPAIR_WINDOW = 4096  # spec 5.14: chunks one REPAIR may combine
MIN_INITIAL_DATAGRAM = 1200  # spec R5.1-1: INITIAL datagrams are padded to at least this
MIN_MAX_DATAGRAM = 1200  # spec 6: smallest max_datagram_size a peer may advertise
MAX_DATAGRAM = 65507  # largest UDP payload over IPv4
MIN_CHUNK_SIZE = 64  # spec 8.1
DEFAULT_CHUNK_SIZE = 1024  # spec 8.1
MAX_PN = 0xFFFFFFFF  # spec 8.3
MAX_OBJECT_ID = 0xFFFFFFFF
MAX_TOKEN_LEN = 255
MAX_REASON_LEN = 255
MAX_NAME_LEN = 255
MAX_CONTENT_TYPE_LEN = 255
DIGEST_LEN = 32  # SHA-256


class PacketType(IntEnum):
    """spec 5: the packet types."""

    INITIAL = 0x01  # spec 5.1
    RETRY = 0x02  # spec 5.2
    ACCEPT = 0x03  # spec 5.3
    VERSION = 0x04  # spec 5.4
    ANNOUNCE = 0x10  # spec 5.5
    DATA = 0x11  # spec 5.6
    NACK = 0x12  # spec 5.7
    ACK = 0x13  # spec 5.8
    COMPLETE = 0x14  # spec 5.9
    CANCEL = 0x15  # spec 5.10
    PROBE = 0x16  # spec 5.11
    REPAIR = 0x17  # spec 5.14
    PING = 0x20  # spec 5.12
    CLOSE = 0x21  # spec 5.13


# spec 9.2: every packet type except these elicits an ACK.
NON_ACK_ELICITING = frozenset({PacketType.ACK, PacketType.RETRY, PacketType.VERSION, PacketType.CLOSE})


class ErrorCode(IntEnum):
    """spec 13: the error code registry (CLOSE and CANCEL carry these)."""

    NO_ERROR = 0x00
    INTERNAL_ERROR = 0x01
    PROTOCOL_VIOLATION = 0x02
    FLOW_CONTROL_ERROR = 0x03
    OBJECT_TOO_LARGE = 0x04
    DIGEST_MISMATCH = 0x05
    CANCELLED = 0x06
    DEADLINE_EXPIRED = 0x07
    REFUSED = 0x08
    SERVER_BUSY = 0x09
    IDLE_TIMEOUT = 0x0A  # local only: never sent
    HANDSHAKE_TIMEOUT = 0x0B  # local only: never sent
    OBJECT_TIMEOUT = 0x0C
    APPLICATION_ERROR = 0x0D
    LIMIT_REACHED = 0x0E
    VERSION_MISMATCH = 0x0F  # local only: the peer speaks no version we know


class ParamId(IntEnum):
    """spec 6: session parameters carried in INITIAL and ACCEPT."""

    MAX_DATAGRAM_SIZE = 0x0001
    MAX_OBJECT_SIZE = 0x0002
    MAX_CONCURRENT_OBJECTS = 0x0003
    MAX_BUFFERED_BYTES = 0x0004
    IDLE_TIMEOUT_MS = 0x0005
    MAX_ACK_DELAY_MS = 0x0006
    REPAIR_DECODER = 0x0007


class NackEncoding(IntEnum):
    """spec 5.7: how a NACK lists missing chunks."""

    RANGES = 0
    BITMAP = 1


NACK_FLAG_ANNOUNCE_MISSING = 0x01  # spec 5.7
ANNOUNCE_FLAG_WANT_REPLY = 0x01  # spec 5.5
ANNOUNCE_FLAG_IS_REPLY = 0x02  # spec 5.5
CANCEL_ORIGIN_RECIPIENT = 0  # spec 5.10: the object is one the CANCEL's recipient sends (refusal)
CANCEL_ORIGIN_SENDER = 1  # spec 5.10: the object is one the CANCEL's sender sends (abandonment)
