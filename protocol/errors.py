"""The error tiers (DESIGN.md section 6).

- ``DecodeError``: bytes that do not parse or fail integrity. The endpoint drops and counts them.
- A peer that violates the protocol is answered on the wire (CLOSE/CANCEL with an ``ErrorCode``)
  and reported as an event; that is not an exception at all.
- ``LocalProtocolError``: the local caller misused the API. Raised to that caller, never ``assert``.
  ``InvalidObjectError`` is the kind that concerns one object only (its name or content type).
"""

from __future__ import annotations


class SnipError(Exception):
    """Base class of snip's exceptions."""


class DecodeError(SnipError):
    """A datagram that is not a valid SNIP/2 packet. ``reason`` names the cause for the counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class LocalProtocolError(SnipError):
    """The local application asked for something the protocol or the session's state forbids."""


class InvalidObjectError(LocalProtocolError, ValueError):
    """An object the caller asked to send cannot be described on the wire (name, content type, ids).

    Only that object is refused; the session goes on.
    """
