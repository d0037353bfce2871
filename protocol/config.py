"""Configuration of an endpoint: its limits as a receiver (advertised) and its local choices."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .constants import DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE, OVERHEAD
from .params import SessionParams

_RATE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmg]?)(bit|bps|b)?(?:/s)?\s*$", re.IGNORECASE)
_UNIT = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(text: str) -> float:
    """'20mbit' -> 20e6 bits/s. Raises ValueError with the offending text."""
    match = _RATE_RE.match(text)
    if not match:
        raise ValueError(f"bad rate {text!r}: expected e.g. 20mbit, 500kbit, 1gbit")
    value = float(match.group(1)) * _UNIT[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"rate must be positive: {text!r}")
    return value


@dataclass(frozen=True)
class SessionConfig:
    """Everything one endpoint decides for itself. All durations in seconds."""

    # Advertised to the peer (spec 6): what we accept as a receiver.
    max_datagram_size: int = 1472
    max_object_size: int = 64 << 20
    max_concurrent_objects: int = 64
    max_buffered_bytes: int = 256 << 20
    idle_timeout: float = 30.0
    max_ack_delay: float = 0.010
    # Local choices.
    chunk_size: int = DEFAULT_CHUNK_SIZE
    rate: str = "snipbbr"  # a controller name, or "fixed:<rate>" e.g. "fixed:20mbit"
    initial_rtt: float = 0.1
    initial_window: int = 128  # datagrams
    handshake_timeout: float = 10.0
    keepalive: bool = True
    ack_every: int = 8  # ack-eliciting packets per ACK (spec 9.2)
    unannounced_buffer: int = 256 << 10  # bytes of chunks held for objects not yet announced
    repair: bool = True  # forward repair (spec 9.6): decode REPAIR, and send it to a peer that does
    max_digest_failures: int = 2
    # Server only.
    retry: str = "auto"  # "auto": RETRY when many handshakes are unvalidated; "always"; "never"
    max_sessions: int = 1024
    max_pending_handshakes: int = 128
    # Bytes of objects being received, and of received ones the application still holds, across
    # all sessions (spec R14.4-1): an ANNOUNCE beyond it is refused. Per-session limits times
    # max_sessions (256 MiB x 1024) exceed any machine's memory. None: a quarter of the physical
    # memory, and at least max_object_size.
    max_receiving_bytes: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def params(self) -> SessionParams:
        return SessionParams(
            max_datagram_size=self.max_datagram_size,
            max_object_size=self.max_object_size,
            max_concurrent_objects=self.max_concurrent_objects,
            max_buffered_bytes=self.max_buffered_bytes,
            idle_timeout_ms=int(self.idle_timeout * 1000),
            max_ack_delay_ms=max(1, round(self.max_ack_delay * 1000)),
            repair_decoder=int(self.repair),
        )

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        self.params().validate()
        if not MIN_CHUNK_SIZE <= self.chunk_size <= 0xFFFF - OVERHEAD - 8:
            raise ValueError(f"chunk_size must be at least {MIN_CHUNK_SIZE} and fit in a datagram")
        if self.retry not in ("auto", "always", "never"):
            raise ValueError("retry must be auto, always or never")
        if self.initial_rtt <= 0 or self.handshake_timeout <= 0 or self.idle_timeout <= 0:
            raise ValueError("timeouts and initial_rtt must be positive")
        if self.ack_every < 1 or self.initial_window < 2:
            raise ValueError("ack_every must be >= 1 and initial_window >= 2")
        if self.max_receiving_bytes is not None and self.max_receiving_bytes < self.max_object_size:
            raise ValueError("max_receiving_bytes must hold at least one object of max_object_size")
        if self.rate.startswith("fixed:"):
            parse_rate(self.rate[6:])
        elif self.rate not in ("snipbbr",):
            raise ValueError(f"unknown rate controller {self.rate!r} (snipbbr or fixed:RATE)")


def physical_memory() -> int | None:
    """Bytes of physical memory, where the system says (POSIX sysconf); None elsewhere."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def receiving_budget(config: SessionConfig) -> int:
    """The bytes a server may hold of objects across sessions (SessionConfig.max_receiving_bytes)."""
    if config.max_receiving_bytes is not None:
        return config.max_receiving_bytes
    memory = physical_memory()
    quarter = memory // 4 if memory else 1 << 30
    return max(quarter, config.max_object_size)
