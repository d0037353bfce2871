"""Events the sans-I/O core hands to its user (spec-level facts, typed and frozen)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    session_id: int
    peer: tuple[str, int]


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The session is over. ``error_code`` 0 is a clean close; ``by_peer`` tells who ended it."""

    session_id: int
    error_code: int
    reason: str
    by_peer: bool


@dataclass(frozen=True, slots=True)
class ObjectStarted:
    """The peer announced an object (a receiver may log it or show progress)."""

    session_id: int
    object_id: int
    name: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class ObjectReceived:
    """A whole object arrived and its SHA-256 matched the announcement."""

    session_id: int
    object_id: int
    name: str
    content_type: str
    data: bytes
    want_reply: bool
    in_reply_to: int | None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ObjectDelivered:
    """The peer confirmed (COMPLETE) an object we sent."""

    session_id: int
    object_id: int
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ObjectFailed:
    """An object will not arrive. ``outgoing`` says whether it was ours or the peer's."""

    session_id: int
    object_id: int
    outgoing: bool
    error_code: int
    reason: str
    by_peer: bool
    stats: dict[str, Any] = field(default_factory=dict)


Event = HandshakeCompleted | ConnectionClosed | ObjectStarted | ObjectReceived | ObjectDelivered | ObjectFailed
