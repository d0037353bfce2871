"""The tester's end of one conversation with the target: a socket, packet numbers and an inbox.

Everything the target sends is decoded and audited on arrival (is it well-formed, within the
size the tester advertised, free of local-only error codes), whatever the case is looking for.
Datagrams a case has not asked for yet wait in the inbox; ``expect`` takes the first one that
matches, reading more as needed; ``silent`` demands that nothing (but keepalives) arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol import codec
from protocol.codec import Ack, Cancel, Close, Decoded, Packet, Ping
from protocol.constants import ErrorCode, PacketType
from protocol.errors import DecodeError
from protocol.params import SessionParams

from .model import CaseFailed
from .target import Addr, Channel
from .wire import describe

if TYPE_CHECKING:
    from .context import Context

Match = Callable[[Decoded], bool]

# spec 13.1: codes an endpoint reports locally and never sends.
LOCAL_ONLY_CODES = frozenset({ErrorCode.IDLE_TIMEOUT, ErrorCode.HANDSHAKE_TIMEOUT, ErrorCode.VERSION_MISMATCH})
_DECODE_LABEL = {
    "truncated": "R4.1-1",
    "trailing_bytes": "R4.1-1",
    "bad_magic": "R4.1-2",
    "checksum": "R4.1-3",
    "unknown_version": "R3-2",
}


@dataclass(frozen=True)
class Rx:
    """One datagram from the target, decoded if it could be."""

    at: float
    data: bytes
    src: Addr
    decoded: Decoded | None

    @property
    def packet(self) -> Packet | None:
        return None if self.decoded is None else self.decoded.packet

    def __str__(self) -> str:
        if self.decoded is None:
            return f"an undecodable {len(self.data)}-byte datagram"
        return describe(self.decoded)


def summarize(rxs: Iterable[Rx], window: float) -> str:
    items = list(rxs)
    if not items:
        return f"nothing within {window:.3g} s"
    shown = "; ".join(str(rx) for rx in items[:4])
    more = f" and {len(items) - 4} more" if len(items) > 4 else ""
    return f"{shown}{more}"


class Peer:
    """Base of the tester-as-client (``Client``) and tester-as-receiver (``SenderPeer``)."""

    def __init__(self, ctx: Context, channel: Channel, params: SessionParams) -> None:
        self.ctx = ctx
        self.channel = channel
        self.params = params  # what the tester advertises
        self.session_id = 0
        self.next_pn = 0
        self.inbox: list[Rx] = []
        self.history: list[Rx] = []
        self.sent: list[tuple[float, int, bytes]] = []  # (time, packet number, datagram)
        self.closed = False
        # for the tester's own ACKs (spec 5.8)
        self.rx_largest_pn = -1
        self.rx_bytes = 0
        self.rx_packets = 0

    # -- sending ----------------------------------------------------------------------------------

    def take_pn(self) -> int:
        pn = self.next_pn
        self.next_pn += 1
        return pn

    def send_raw(self, data: bytes, *, pn: int = -1, to: Addr | None = None) -> None:
        self.sent.append((self.ctx.target.clock(), pn, data))
        self.channel.send(data, to)

    def send(self, packet: Packet, *, session_id: int | None = None, pn: int | None = None) -> int:
        """Encode and send ``packet`` in this session; returns its packet number."""
        number = self.take_pn() if pn is None else pn
        sid = self.session_id if session_id is None else session_id
        self.send_raw(codec.encode(packet, sid, number), pn=number)
        return number

    def make_ack(self) -> Ack:
        return Ack(
            largest_pn=max(self.rx_largest_pn, 0),
            ack_delay_us=0,
            received_bytes=self.rx_bytes,
            received_packets=self.rx_packets,
            object_id_limit=self.params.max_concurrent_objects,
            announce_limit=self.params.max_buffered_bytes,
        )

    def finish(self) -> None:
        """End the conversation when its case is over, so nothing of it spills into the next."""
        self.close_session(ErrorCode.NO_ERROR, "conformance case over")

    def close_session(self, code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        if self.session_id and not self.closed:
            self.closed = True
            self.send(Close(code, reason))

    # -- receiving --------------------------------------------------------------------------------

    def attributed(self, decoded: Decoded) -> bool:
        """Whether a datagram belongs to this conversation (counts for the tester's ACKs)."""
        return bool(self.session_id) and decoded.session_id == self.session_id

    def pull(self, timeout: float) -> Rx | None:
        """Read one datagram from the socket (not the inbox), audited and recorded."""
        arrival = self.channel.recv(timeout)
        if arrival is None:
            return None
        try:
            decoded: Decoded | None = codec.decode(arrival.data)
        except DecodeError as exc:
            decoded = None
            label = _DECODE_LABEL.get(exc.reason, "R4.2-6")
            self.ctx.violation(label, f"the target sent a datagram that does not decode: {exc}")
        rx = Rx(arrival.at, arrival.data, arrival.src, decoded)
        self.history.append(rx)
        if decoded is not None:
            self._audit(rx, decoded)
            if self.attributed(decoded):
                self.rx_largest_pn = max(self.rx_largest_pn, decoded.packet_number)
                self.rx_bytes += len(arrival.data)
                self.rx_packets += 1
        return rx

    def _audit(self, rx: Rx, decoded: Decoded) -> None:
        packet = decoded.packet
        if decoded.session_id == 0:
            self.ctx.violation("R4.1-4", f"the target sent {rx} with Session ID 0")
        limit = self.params.max_datagram_size
        if len(rx.data) > limit and codec.PACKET_TYPE_OF[type(packet)] is not PacketType.INITIAL:
            self.ctx.violation("R4.1-5", f"the target sent a {len(rx.data)}-byte datagram; the tester accepts {limit}")
        if isinstance(packet, Close | Cancel) and packet.error_code in LOCAL_ONLY_CODES:
            self.ctx.violation("R13.1-1", f"the target sent the local-only code in {rx}")

    def _remaining(self, deadline: float) -> float:
        return deadline - self.ctx.target.clock()

    def maybe(self, match: Match, timeout: float | None = None) -> Rx | None:
        """The first datagram (inbox first) that matches, or None after ``timeout``."""
        for i, held in enumerate(self.inbox):
            if held.decoded is not None and match(held.decoded):
                return self.inbox.pop(i)
        deadline = self.ctx.target.clock() + (self.ctx.timeout if timeout is None else timeout)
        while (remaining := self._remaining(deadline)) > 0:
            rx = self.pull(remaining)
            if rx is None:
                break
            if rx.decoded is not None and match(rx.decoded):
                return rx
            self.on_unmatched(rx)
            self.inbox.append(rx)
        return None

    def on_unmatched(self, rx: Rx) -> None:
        """Hook: a datagram arrived that the case was not waiting for (answer PINGs, ...)."""

    def expect(self, match: Match, what: str, timeout: float | None = None) -> Rx:
        """The first datagram that matches; the case fails, naming ``what``, if none comes."""
        start = len(self.inbox)
        window = self.ctx.timeout if timeout is None else timeout
        rx = self.maybe(match, window)
        if rx is None:
            raise CaseFailed(what, summarize(self.inbox[start:], window), absent=True)
        return rx

    def collect(self, duration: float) -> list[Rx]:
        """Everything that arrives within ``duration`` (the inbox is left alone)."""
        out: list[Rx] = []
        deadline = self.ctx.target.clock() + duration
        while (remaining := self._remaining(deadline)) > 0:
            rx = self.pull(remaining)
            if rx is None:
                break
            out.append(rx)
        return out

    def drain(self) -> list[Rx]:
        old, self.inbox = self.inbox, []
        return old

    def silent(self, why: str, duration: float | None = None, *, ignore: tuple[type, ...] = (Ping,)) -> None:
        """Nothing but ``ignore``d packets (keepalive PINGs) may arrive within ``duration``."""
        self.drain()
        window = self.quiet if duration is None else duration
        offending = [rx for rx in self.collect(window) if not isinstance(rx.packet, ignore)]
        if offending:
            raise CaseFailed(f"no answer within {window:.3g} s ({why})", summarize(offending, window))

    @property
    def quiet(self) -> float:
        """How long silence must last to mean "no answer" (the target may delay ACKs)."""
        return self.ctx.quiet
