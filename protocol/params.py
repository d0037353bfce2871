"""Session parameters (spec 6): a TLV list in INITIAL and ACCEPT."""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields

from .constants import MIN_MAX_DATAGRAM, ParamId
from .errors import DecodeError

_TLV = struct.Struct(">HH")

# parameter id -> (field name, value width in bytes)
_LAYOUT: dict[int, tuple[str, int]] = {
    ParamId.MAX_DATAGRAM_SIZE: ("max_datagram_size", 2),
    ParamId.MAX_OBJECT_SIZE: ("max_object_size", 8),
    ParamId.MAX_CONCURRENT_OBJECTS: ("max_concurrent_objects", 4),
    ParamId.MAX_BUFFERED_BYTES: ("max_buffered_bytes", 8),
    ParamId.IDLE_TIMEOUT_MS: ("idle_timeout_ms", 4),
    ParamId.MAX_ACK_DELAY_MS: ("max_ack_delay_ms", 2),
    ParamId.REPAIR_DECODER: ("repair_decoder", 1),
}


@dataclass(frozen=True, slots=True)
class SessionParams:
    """What an endpoint tells its peer about itself as a receiver (spec 6). Defaults are spec 6's."""

    max_datagram_size: int = 1472
    max_object_size: int = 64 << 20
    max_concurrent_objects: int = 64
    max_buffered_bytes: int = 256 << 20
    idle_timeout_ms: int = 30_000
    max_ack_delay_ms: int = 10
    repair_decoder: int = 0  # 1: this endpoint decodes REPAIR (spec 5.14, 9.6); 0: send it none

    def validate(self) -> None:
        """Raise ValueError when a value is outside what spec 6 allows."""
        if not MIN_MAX_DATAGRAM <= self.max_datagram_size <= 0xFFFF:
            raise ValueError(f"max_datagram_size must be {MIN_MAX_DATAGRAM}..65535")
        if self.max_buffered_bytes < self.max_object_size:
            raise ValueError("max_buffered_bytes must be at least max_object_size")
        if self.max_concurrent_objects < 1:
            raise ValueError("max_concurrent_objects must be at least 1")
        if self.idle_timeout_ms < 1:
            raise ValueError("idle_timeout_ms must be at least 1")
        if not 1 <= self.max_ack_delay_ms <= 1000:
            raise ValueError("max_ack_delay_ms must be 1..1000")
        if self.repair_decoder not in (0, 1):
            raise ValueError("repair_decoder must be 0 or 1")


_DEFAULTS = SessionParams()


def encode_params(params: SessionParams) -> bytes:
    """Every parameter whose value differs from the spec default, in id order."""
    out = bytearray()
    for pid, (name, width) in sorted(_LAYOUT.items()):
        value = getattr(params, name)
        if value != getattr(_DEFAULTS, name):
            out += _TLV.pack(pid, width) + value.to_bytes(width, "big")
    return bytes(out)


def decode_params(raw: memoryview | bytes) -> SessionParams:
    """Parse a TLV list. Unknown ids are skipped (spec 6); duplicates and bad widths are errors."""
    values: dict[str, int] = {}
    seen: set[int] = set()
    offset = 0
    n = len(raw)
    while offset < n:
        if offset + _TLV.size > n:
            raise DecodeError("malformed", "truncated parameter header")
        pid, width = _TLV.unpack_from(raw, offset)
        offset += _TLV.size
        if offset + width > n:
            raise DecodeError("malformed", f"parameter 0x{pid:04x} runs past the list")
        if pid in seen:
            raise DecodeError("malformed", f"parameter 0x{pid:04x} given twice")
        seen.add(pid)
        layout = _LAYOUT.get(pid)
        if layout is not None:
            name, expected = layout
            if width != expected:
                raise DecodeError("malformed", f"parameter {name} must be {expected} bytes, is {width}")
            values[name] = int.from_bytes(raw[offset : offset + width], "big")
        offset += width
    params = SessionParams(**values)
    try:
        params.validate()
    except ValueError as exc:
        raise DecodeError("malformed", str(exc)) from None
    return params


PARAM_FIELDS = tuple(f.name for f in fields(SessionParams))
