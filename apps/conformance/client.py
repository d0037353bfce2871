"""The tester as a client of a receiver under test: handshake, session packets, object transfers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from protocol import codec
from protocol.codec import (
    Accept,
    Announce,
    Cancel,
    Close,
    Complete,
    Data,
    Decoded,
    Initial,
    Nack,
    Ping,
    Probe,
    Retry,
    VersionNegotiation,
)
from protocol.constants import DATA_PREFIX_LEN, OVERHEAD, PacketType
from protocol.params import SessionParams

from .model import CaseFailed
from .peer import Peer, Rx
from .target import Channel
from .wire import error_name, raw

if TYPE_CHECKING:
    from .context import Context

MAX_RETRIES_FOLLOWED = 3  # spec R7.2-5


@dataclass
class TestObject:
    """An object the tester sends; ``digest`` may be set wrong on purpose."""

    data: bytes
    object_id: int = 0
    chunk_size: int = 1024
    name: str = "conformance.bin"
    content_type: str = "application/octet-stream"
    digest: bytes | None = None
    want_reply: bool = False
    in_reply_to: int | None = None

    @property
    def count(self) -> int:
        return -(-len(self.data) // self.chunk_size)

    def chunk(self, index: int) -> bytes:
        return self.data[index * self.chunk_size : (index + 1) * self.chunk_size]

    def announce(self) -> Announce:
        return Announce(
            object_id=self.object_id,
            total_length=len(self.data),
            chunk_size=self.chunk_size,
            chunk_count=self.count,
            digest=self.digest if self.digest is not None else hashlib.sha256(self.data).digest(),
            content_type=self.content_type,
            name=self.name,
            want_reply=self.want_reply,
            in_reply_to=self.in_reply_to,
        )


@dataclass
class Outcome:
    """How a transfer ended, and the NACKs the target sent on the way."""

    kind: Literal["complete", "cancel", "close", "timeout"]
    final: Rx | None = None
    nacks: list[Nack] = field(default_factory=list)
    resent: int = 0

    @property
    def code(self) -> int | None:
        packet = None if self.final is None else self.final.packet
        return packet.error_code if isinstance(packet, Cancel | Close) else None

    def __str__(self) -> str:
        if self.kind == "timeout":
            return "no COMPLETE, CANCEL or CLOSE before the timeout"
        return str(self.final)


class Client(Peer):
    """The tester as a SNIP client; ``establish()`` gives a validated, quiet session."""

    def __init__(self, ctx: Context, channel: Channel, params: SessionParams, initial_id: int) -> None:
        super().__init__(ctx, channel, params)
        self.initial_id = initial_id
        self.accept: Accept | None = None
        self.accept_rx: Rx | None = None
        self.retries: list[Rx] = []
        self.token = b""
        self.target_params = SessionParams()

    # -- handshake --------------------------------------------------------------------------------

    def attributed(self, decoded: Decoded) -> bool:
        if isinstance(decoded.packet, Accept) and decoded.session_id == self.initial_id:
            return True  # the ACCEPT is the first packet of the target's session (spec 8.3)
        return super().attributed(decoded)

    def send_initial(self, *, token: bytes | None = None, params: SessionParams | None = None) -> int:
        packet = Initial(self.params if params is None else params, self.token if token is None else token)
        return self.send(packet, session_id=self.initial_id)

    def is_handshake_answer(self, decoded: Decoded) -> bool:
        """RETRY, ACCEPT, VERSION or CLOSE carrying this attempt's initial id (spec 7.2)."""
        return decoded.session_id == self.initial_id and isinstance(
            decoded.packet, Retry | Accept | VersionNegotiation | Close
        )

    def handshake_reply(self, timeout: float | None = None) -> Rx:
        """The first handshake answer to this attempt."""
        return self.expect(self.is_handshake_answer, "a handshake answer (ACCEPT or RETRY) echoing the initial id", timeout)

    def handshake(self, *, follow_retry: bool = True) -> Accept:
        """INITIAL until ACCEPT (following up to 3 RETRYs), retransmitting as a client would."""
        interval = max(self.ctx.timeout / 6, self.ctx.quiet)
        deadline = self.ctx.target.clock() + self.ctx.timeout
        self.send_initial()
        while True:
            remaining = deadline - self.ctx.target.clock()
            if remaining <= 0:
                raise CaseFailed(
                    "an ACCEPT (or RETRY) in answer to INITIAL", f"nothing within {self.ctx.timeout:.3g} s", absent=True
                )
            rx = self.maybe(self.is_handshake_answer, min(interval, remaining))
            if rx is None:
                self.send_initial()  # R7.2-2: retransmit while nothing answers
                continue
            packet = rx.packet
            if isinstance(packet, Accept):
                self._accepted(rx, packet)
                return packet
            if isinstance(packet, Retry) and follow_retry and len(self.retries) < MAX_RETRIES_FOLLOWED:
                self.retries.append(rx)
                self.token = packet.token
                self.send_initial()
                continue
            raise CaseFailed("an ACCEPT in answer to INITIAL", str(rx))

    def _accepted(self, rx: Rx, packet: Accept) -> None:
        self.accept = packet
        self.accept_rx = rx
        self.session_id = packet.session_id
        self.target_params = packet.params

    def validate(self) -> None:
        """ACK the ACCEPT: the first datagram with the session id proves our address (R7.4-1)."""
        self.send(self.make_ack())

    def establish(self) -> Client:
        self.handshake()
        self.validate()
        self.settle()
        return self

    # -- session ----------------------------------------------------------------------------------

    def ping(self) -> int:
        return self.send(Ping())

    def expect_ack(self, pn: int, what: str, timeout: float | None = None) -> Rx:
        return self.expect(
            lambda d: isinstance(d.packet, codec.Ack) and d.packet.largest_pn >= pn and self.attributed(d),
            what,
            timeout,
        )

    def ping_until_ack(self, what: str) -> Rx:
        """PING, again if the ACK does not come (a datagram may be lost), until an ACK covers one."""
        tries = 5
        window = self.ctx.timeout / tries
        first = self.next_pn
        for _ in range(tries):
            self.ping()
            rx = self.maybe(
                lambda d: isinstance(d.packet, codec.Ack) and d.packet.largest_pn >= first and self.attributed(d), window
            )
            if rx is not None:
                return rx
        raise CaseFailed(what, f"no ACK for {tries} PINGs within {self.ctx.timeout:.3g} s", absent=True)

    def settle(self) -> None:
        """PING until its ACK: everything sent before is acknowledged and the session is quiet."""
        self.ping_until_ack("an ACK in answer to PING (R9.2-2)")
        self.drain()

    def alive(self, why: str = "the session must still work") -> None:
        """The session still works: a PING draws its ACK."""
        self.ping_until_ack(f"an ACK in answer to PING ({why})")

    def expect_close(self, code: int, why: str, timeout: float | None = None) -> Rx:
        rx = self.expect(lambda d: isinstance(d.packet, Close) and self.attributed(d), f"CLOSE {error_name(code)} ({why})", timeout)
        packet = rx.packet
        assert isinstance(packet, Close)
        if packet.error_code != code:
            raise CaseFailed(f"CLOSE {error_name(code)} ({why})", str(rx))
        return rx

    @property
    def quiet(self) -> float:
        # An accepted ack-eliciting packet draws an ACK within the target's max_ack_delay.
        return max(self.ctx.quiet, 2 * self.target_params.max_ack_delay_ms / 1000 + self.ctx.target.slack)

    def on_unmatched(self, rx: Rx) -> None:
        if isinstance(rx.packet, Ping) and rx.decoded is not None and self.attributed(rx.decoded) and not self.closed:
            self.send(self.make_ack())  # R9.2-2: a PING is answered at once

    # -- objects ----------------------------------------------------------------------------------

    def max_chunk(self) -> int:
        """The largest chunk the target accepts (R8.1-1), capped to what IPv4 UDP carries."""
        return min(self.target_params.max_datagram_size, 65507) - OVERHEAD - DATA_PREFIX_LEN

    def announce(self, obj: TestObject, payload: bytes | None = None) -> int:
        """ANNOUNCE ``obj``, or send ``payload`` as its ANNOUNCE (a deliberately odd one)."""
        if payload is None:
            return self.send(obj.announce())
        pn = self.take_pn()
        self.send_raw(raw(PacketType.ANNOUNCE, self.session_id, pn, payload), pn=pn)
        return pn

    def data(self, obj: TestObject, index: int, chunk: bytes | None = None) -> int:
        return self.send(Data(obj.object_id, index, obj.chunk(index) if chunk is None else chunk))

    def probe(self, obj: TestObject, sent_through: int | None = None) -> int:
        return self.send(Probe(obj.object_id, obj.count if sent_through is None else sent_through))

    def send_object(
        self,
        obj: TestObject,
        order: list[int] | None = None,
        *,
        probe: bool = True,
        announce_payload: bytes | None = None,
    ) -> dict[int, int]:
        """ANNOUNCE, then the chunks (in ``order``), then a PROBE; returns chunk -> packet number."""
        self.announce(obj, announce_payload)
        sent = {index: self.data(obj, index) for index in (range(obj.count) if order is None else order)}
        if probe:
            self.probe(obj)
        return sent

    def transfer(
        self,
        obj: TestObject,
        *,
        order: list[int] | None = None,
        send: bool = True,
        timeout: float | None = None,
        announce_payload: bytes | None = None,
    ) -> Outcome:
        """Send ``obj`` and repair what the target NACKs until it says COMPLETE, CANCEL or CLOSE.

        With ``send=False`` the object is assumed sent already; only the repairs happen here.
        """
        last_pn = self.send_object(obj, order, announce_payload=announce_payload) if send else {}
        outcome = Outcome("timeout")
        oid = obj.object_id
        window = max(self.quiet, 4 * self.ctx.target.slack)
        deadline = self.ctx.target.clock() + (self.ctx.timeout if timeout is None else timeout)

        def about_it(d: Decoded) -> bool:
            p = d.packet
            return self.attributed(d) and (isinstance(p, Close) or getattr(p, "object_id", None) == oid)

        clock = self.ctx.target.clock
        last_sent = clock()  # when we last sent the target something about the object
        while (remaining := deadline - clock()) > 0:
            rx = self.maybe(lambda d: about_it(d) and not isinstance(d.packet, codec.Ack), min(window, remaining))
            if rx is None:
                self.probe(obj)  # quiet: ask (spec 9.4)
                last_sent = clock()
                continue
            packet = rx.packet
            if isinstance(packet, Complete):
                return Outcome("complete", rx, outcome.nacks, outcome.resent)
            if isinstance(packet, Cancel):
                return Outcome("cancel", rx, outcome.nacks, outcome.resent)
            if isinstance(packet, Close):
                return Outcome("close", rx, outcome.nacks, outcome.resent)
            if isinstance(packet, Nack):
                outcome.nacks.append(packet)
                resent = False
                if packet.announce_missing:
                    self.announce(obj, announce_payload)
                    resent = True
                for first, count in packet.missing:
                    for index in range(first, min(first + count, obj.count)):
                        # R9.3-4: a NACK speaks only for copies sent before its Largest PN
                        if last_pn.get(index, -1) < packet.largest_pn:
                            last_pn[index] = self.data(obj, index)
                            outcome.resent += 1
                            resent = True
                if resent or clock() - last_sent >= window:
                    # A NACK that names only chunks resent after its Largest PN says our copies
                    # have not arrived; it must not put the PROBE off (R9.4-2), or a lost resend
                    # and a target that keeps reporting would wait on each other until the timeout.
                    self.probe(obj)
                    last_sent = clock()
        return outcome
