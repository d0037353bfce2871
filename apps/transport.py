"""What every transport (snip, TCP, email) offers the sender and receiver apps.

The app flow is the same whatever carries the bytes: the sender hands images to a
``SenderTransport`` and gets one ``SendOutcome`` per image (with the receiver's reply when one was
asked for); the receiver runs a ``ReceiverTransport`` that calls an ``ImageHandler`` for each
verified image and sends back whatever JSON the handler returns. A benchmark therefore compares
transports, not programs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

JSON = dict[str, Any]


@dataclass(frozen=True)
class OutgoingImage:
    """An image the sender wants delivered."""

    name: str
    content_type: str
    data: bytes
    # Live mode: seconds after submission after which the image is worth nothing and is dropped.
    deadline: float | None = None


@dataclass(frozen=True)
class ReceivedImage:
    """A complete, verified image as the receiver gets it."""

    name: str
    content_type: str
    data: bytes
    peer: str  # "host:port" of the sender, or the mail address
    transfer_id: str  # unique per receiver run: session/object id, connection id or Message-ID
    stats: JSON = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """A progress report for one image (sent bytes so far out of total)."""

    name: str
    index: int  # position of the image in the submission order
    done_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one image."""

    name: str
    index: int
    size: int
    delivered: bool
    reply: JSON | None = None
    error: str | None = None
    elapsed_s: float = 0.0  # submission -> delivery confirmed
    reply_elapsed_s: float | None = None  # submission -> reply received
    stats: JSON = field(default_factory=dict)  # transport-specific counters (chunks, retransmissions, rtt)


ImageHandler = Callable[[ReceivedImage], Awaitable[JSON | None]]
ProgressCallback = Callable[[Progress], None]


class TransportError(Exception):
    """A transport failed in a way the user must hear about (unreachable, refused, bad credentials)."""


class SenderTransport(Protocol):
    """Delivers images to one receiver and collects the replies."""

    async def send_all(
        self,
        images: AsyncIterator[OutgoingImage],
        *,
        want_reply: bool,
        on_progress: ProgressCallback | None = None,
    ) -> list[SendOutcome]:
        """Send every image (many may be in flight at once); return one outcome per image, in order.

        A failure of one image is an outcome with ``delivered=False`` and an ``error``; a failure of
        the whole transport (receiver unreachable) raises ``TransportError``.
        """
        ...

    async def aclose(self) -> None: ...


class ReceiverTransport(Protocol):
    """Accepts images from many senders, hands each to the handler, and returns its reply."""

    async def serve(self, handler: ImageHandler, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then finish or cleanly abandon transfers in progress."""
        ...

    def stats(self) -> JSON: ...
