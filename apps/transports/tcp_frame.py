"""Wire format of the TCP baseline: one header per frame, then the frame's bytes.

Every frame (an image from the sender; an acknowledgement, a reply or an error from the receiver)
starts with the same fixed header, followed by the name, the content type and the body::

    magic 4s "SNPT" | version B | kind B | flags B | reserved B | seq I | name_len H | ctype_len H
    | body_len Q | sha256 32s | name (UTF-8) | content type (ASCII) | body

All integers are big-endian. ``seq`` numbers the images of one connection so that replies to
pipelined images find their image. This module only encodes and decodes; the connection logic
lives in ``apps.transports.tcp``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"SNPT"
VERSION = 1
FIXED = struct.Struct("!4sBBBBIHHQ32s")
FIXED_SIZE = FIXED.size
MAX_NAME_BYTES = 1024
MAX_CONTENT_TYPE_BYTES = 255
MAX_SEQ = 0xFFFFFFFF
JSON_TYPE = "application/json"


class FrameKind(enum.IntEnum):
    IMAGE = 1  # sender -> receiver: an image, answered by ACK (+ REPLY when asked) or ERROR
    ACK = 2  # receiver -> sender: image complete and its digest verified
    REPLY = 3  # receiver -> sender: the handler's JSON
    ERROR = 4  # receiver -> sender: JSON {"error": ...}; the image was not handled


class Flags(enum.IntFlag):
    NONE = 0
    WANT_REPLY = 1


class FrameError(ValueError):
    """Bytes that are not a valid frame header; the connection cannot be trusted after one."""


@dataclass(frozen=True)
class FramePrefix:
    """The fixed part of a header: enough to know how many bytes follow."""

    kind: FrameKind
    flags: Flags
    seq: int
    name_len: int
    content_type_len: int
    body_len: int
    digest: bytes

    @property
    def meta_len(self) -> int:
        return self.name_len + self.content_type_len


@dataclass(frozen=True)
class FrameHeader:
    """A decoded header: the fixed part plus name and content type."""

    kind: FrameKind
    flags: Flags
    seq: int
    name: str
    content_type: str
    body_len: int
    digest: bytes


def encode_header(
    kind: FrameKind,
    seq: int,
    body: bytes,
    *,
    name: str = "",
    content_type: str = "",
    flags: Flags = Flags.NONE,
) -> bytes:
    """The header (fixed part, name, content type) for ``body``; the body itself is written after it."""
    name_b = name.encode("utf-8")
    ctype_b = content_type.encode("ascii")
    if len(name_b) > MAX_NAME_BYTES:
        raise ValueError(f"name is {len(name_b)} bytes in UTF-8; the limit is {MAX_NAME_BYTES}")
    if len(ctype_b) > MAX_CONTENT_TYPE_BYTES:
        raise ValueError(f"content type longer than {MAX_CONTENT_TYPE_BYTES} bytes")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number {seq} out of range")
    digest = hashlib.sha256(body).digest()
    fixed = FIXED.pack(
        MAGIC, VERSION, kind, flags, 0, seq, len(name_b), len(ctype_b), len(body), digest
    )
    return fixed + name_b + ctype_b


def encode_json_frame(kind: FrameKind, seq: int, value: Any) -> bytes:
    """A whole ACK, REPLY or ERROR frame whose body is ``value`` as JSON."""
    body = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return encode_header(kind, seq, body, content_type=JSON_TYPE) + body


def decode_prefix(data: bytes) -> FramePrefix:
    """Decode the fixed part (exactly ``FIXED_SIZE`` bytes) or raise FrameError."""
    if len(data) != FIXED_SIZE:
        raise FrameError(f"header needs {FIXED_SIZE} bytes, got {len(data)}")
    magic, version, kind, flags, reserved, seq, name_len, ctype_len, body_len, digest = FIXED.unpack(data)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}: not a snip TCP peer")
    if version != VERSION:
        raise FrameError(f"unsupported version {version} (this end speaks {VERSION})")
    try:
        frame_kind = FrameKind(kind)
    except ValueError:
        raise FrameError(f"unknown frame kind {kind}") from None
    if flags & ~int(Flags.WANT_REPLY) or reserved:
        raise FrameError("unknown flags or non-zero reserved byte")
    if name_len > MAX_NAME_BYTES:
        raise FrameError(f"name length {name_len} exceeds {MAX_NAME_BYTES}")
    if ctype_len > MAX_CONTENT_TYPE_BYTES:
        raise FrameError(f"content type length {ctype_len} exceeds {MAX_CONTENT_TYPE_BYTES}")
    return FramePrefix(frame_kind, Flags(flags), seq, name_len, ctype_len, body_len, digest)


def decode_meta(prefix: FramePrefix, meta: bytes) -> FrameHeader:
    """Complete a header with its name and content type (``prefix.meta_len`` bytes) or raise FrameError."""
    if len(meta) != prefix.meta_len:
        raise FrameError(f"expected {prefix.meta_len} bytes of name and type, got {len(meta)}")
    try:
        name = meta[: prefix.name_len].decode("utf-8")
        content_type = meta[prefix.name_len :].decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError(f"undecodable name or content type: {exc}") from None
    return FrameHeader(
        prefix.kind, prefix.flags, prefix.seq, name, content_type, prefix.body_len, prefix.digest
    )


def decode_json_body(header: FrameHeader, body: bytes) -> Any:
    """The JSON value carried by an ACK, REPLY or ERROR frame, its digest checked, or FrameError."""
    if hashlib.sha256(body).digest() != header.digest:
        raise FrameError(f"{header.kind.name} frame {header.seq}: digest mismatch")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"{header.kind.name} frame {header.seq}: body is not JSON: {exc}") from None
