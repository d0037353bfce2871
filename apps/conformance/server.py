"""The tester as the receiver a sender under test connects to: ACCEPT, ACKs, NACKs, COMPLETE.

``pump`` runs a small, correct object receiver whose behaviour a case can bend: drop chunks on
arrival (as a lossy path would), leave PROBEs unanswered, hold back COMPLETE.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protocol import codec
from protocol.codec import (
    Accept,
    Announce,
    Close,
    Complete,
    Data,
    Decoded,
    Initial,
    Nack,
    Packet,
    Ping,
    Probe,
    Retry,
    VersionNegotiation,
)
from protocol.constants import NON_ACK_ELICITING, ErrorCode
from protocol.params import SessionParams

from .model import CaseFailed
from .peer import Peer, Rx
from .receiving_model import missing_ranges
from .target import Arrival, Channel

if TYPE_CHECKING:
    from .context import Context

ACK_EVERY = 2  # the tester acknowledges generously, so a sender is never short of ACKs


@dataclass
class Incoming:
    """What the tester has seen of one object: its ANNOUNCEs, chunks and every copy."""

    object_id: int
    announces: list[Announce] = field(default_factory=list)
    chunks: dict[int, bytes] = field(default_factory=dict)  # chunks held (first copy kept)
    first_seen: dict[int, bytes] = field(default_factory=dict)  # first copy seen, dropped or not
    copies: Counter[int] = field(default_factory=Counter)  # copies of each chunk that arrived
    order: list[int] = field(default_factory=list)  # chunk indices in order of first arrival
    mismatched: list[int] = field(default_factory=list)  # chunks re-sent with other bytes (R8.1-5)
    dropped: Counter[int] = field(default_factory=Counter)  # copies the tester pretended lost
    completed: bool = False

    @property
    def announce(self) -> Announce | None:
        return self.announces[0] if self.announces else None

    @property
    def count(self) -> int:
        return self.announce.chunk_count if self.announce is not None else 0

    def add(self, packet: Data, *, dropped: bool = False) -> None:
        """Record a copy of a chunk; keep it unless the tester pretends it was lost."""
        index = packet.chunk_index
        first = self.first_seen.setdefault(index, packet.chunk)
        if first != packet.chunk:
            self.mismatched.append(index)
        if dropped:
            self.dropped[index] += 1
            return
        self.copies[index] += 1
        if index not in self.chunks:
            self.chunks[index] = packet.chunk
            self.order.append(index)

    def missing(self, below: int | None = None) -> list[int]:
        limit = self.count if below is None else min(below, self.count)
        return [i for i in range(limit) if i not in self.chunks]

    @property
    def whole(self) -> bool:
        return self.announce is not None and not self.missing()

    def content(self) -> bytes:
        return b"".join(self.chunks[i] for i in range(self.count))

    def digest_ok(self) -> bool:
        return self.announce is not None and hashlib.sha256(self.content()).digest() == self.announce.digest


@dataclass
class Policy:
    """How the tester's receiver behaves; the defaults are a correct receiver."""

    ack: bool = True
    answer_probes: bool = True
    complete: bool = True
    drop: Callable[[Data, int], bool] | None = None  # (packet, copy number from 1) -> pretend lost?


def initial_rx(arrival: Arrival) -> Rx:
    """The sender's first INITIAL as an Rx (the target already checked that it decodes)."""
    return Rx(arrival.at, arrival.data, arrival.src, codec.decode(arrival.data))


class SenderPeer(Peer):
    """The tester facing one handshake attempt of the sender under test."""

    def __init__(self, ctx: Context, channel: Channel, first: Rx, params: SessionParams) -> None:
        super().__init__(ctx, channel, params)
        assert first.decoded is not None and isinstance(first.decoded.packet, Initial)
        self.first = first
        self.initial_id = first.decoded.session_id
        self.client_params = first.decoded.packet.params
        self.initials: list[Rx] = [first]
        self.history.append(first)
        self.objects: dict[int, Incoming] = {}
        self.accept_sent_at: float | None = None
        self.policy = Policy()
        self._unacked = 0

    def finish(self) -> None:
        # An abort, so that a sender left waiting for COMPLETE gives up at once; before ACCEPT, a
        # refusal with the initial id, so that it abandons the attempt instead of retrying (R7.2-7).
        if self.session_id:
            self.close_session(ErrorCode.APPLICATION_ERROR, "conformance case over")
        elif not self.closed:
            self.closed = True
            self.stateless(Close(ErrorCode.APPLICATION_ERROR, "conformance case over"))

    # -- handshake --------------------------------------------------------------------------------

    def attributed(self, decoded: Decoded) -> bool:
        if isinstance(decoded.packet, Initial) and decoded.session_id == self.initial_id:
            return True
        return super().attributed(decoded)

    def stateless(self, packet: Retry | VersionNegotiation | Close, *, session_id: int | None = None) -> None:
        """RETRY, VERSION or a refusing CLOSE: packet number 0, the initial id (spec 7.3)."""
        sid = self.initial_id if session_id is None else session_id
        self.send_raw(codec.encode(packet, sid, 0), pn=0)

    def accept(self, *, params: SessionParams | None = None, session_id: int | None = None) -> int:
        """Send ACCEPT (our packet 0 in the session, spec 8.3); the session id is the tester's."""
        if not self.session_id:
            self.session_id = session_id or self.ctx.new_id()
            self.accept_sent_at = self.ctx.target.clock()
        if params is not None:
            self.params = params
        return self.send(Accept(self.session_id, self.params), session_id=self.initial_id)

    # -- the receiver -----------------------------------------------------------------------------

    def obj(self, object_id: int = 0) -> Incoming:
        return self.objects.setdefault(object_id, Incoming(object_id))

    def session_packets(self) -> list[Rx]:
        """Everything the sender sent in the session (after ACCEPT), in arrival order."""
        return [rx for rx in self.history if rx.decoded is not None and self.in_session(rx.decoded)]

    def pump(self, until: Callable[[], bool] | None, timeout: float | None = None) -> bool:
        """Act as the receiver (``policy``) until ``until()`` holds or ``timeout`` passes."""
        deadline = self.ctx.target.clock() + (self.ctx.timeout if timeout is None else timeout)
        while not (until is not None and until()):
            if self.inbox:
                self.handle(self.inbox.pop(0))
                continue
            remaining = deadline - self.ctx.target.clock()
            if remaining <= 0:
                return False
            rx = self.pull(remaining)
            if rx is None:
                return until is not None and until()
            self.handle(rx)
        return True

    def pump_until_silent(self, gap: float, timeout: float | None = None) -> bool:
        """Act as the receiver until nothing has arrived for ``gap`` (True), or ``timeout`` passes.
        A silence read off the socket is real: a tester that fell behind finds the packets queued."""
        deadline = self.ctx.target.clock() + (self.ctx.timeout if timeout is None else timeout)
        self.pump(lambda: not self.inbox)  # what was already read is not a silence
        while (remaining := deadline - self.ctx.target.clock()) > 0:
            rx = self.pull(min(gap, remaining))
            if rx is None:
                return remaining >= gap
            self.handle(rx)
        return False

    def handle(self, rx: Rx) -> None:
        decoded = rx.decoded
        if decoded is None:
            return
        packet = decoded.packet
        if isinstance(packet, Initial):
            if decoded.session_id == self.initial_id:
                self.initials.append(rx)
                if self.session_id:
                    self.accept()  # the INITIAL crossed our ACCEPT: say it again (R7.3-1 action 1)
            return
        if not self.in_session(decoded):
            return
        if codec.PACKET_TYPE_OF[type(packet)] not in NON_ACK_ELICITING:
            self._unacked += 1
        if isinstance(packet, Announce):
            self.obj(packet.object_id).announces.append(packet)
        elif isinstance(packet, Data):
            incoming = self.obj(packet.object_id)
            drop = self.policy.drop
            copy = incoming.copies[packet.chunk_index] + incoming.dropped[packet.chunk_index] + 1
            incoming.add(packet, dropped=drop is not None and drop(packet, copy))
        elif isinstance(packet, Probe) and self.policy.answer_probes:
            self.answer_probe(packet)
        if self.policy.ack and (isinstance(packet, Ping) or self._unacked >= ACK_EVERY):
            self.ack()
        if self.policy.complete:
            for incoming in self.objects.values():
                if incoming.whole and not incoming.completed and incoming.digest_ok():
                    incoming.completed = True
                    self.send(Complete(incoming.object_id))

    def ack(self) -> None:
        self._unacked = 0
        self.send(self.make_ack())

    def nack(self, object_id: int, missing: list[int], *, announce_missing: bool = False) -> int:
        ranges = () if announce_missing else missing_ranges(missing)
        return self.send(Nack(object_id, ranges, announce_missing, max(self.rx_largest_pn, 0)))

    def answer_probe(self, probe: Probe) -> None:
        """spec R9.1-7, as the tester's receiver does it."""
        incoming = self.obj(probe.object_id)
        if incoming.announce is None:
            self.nack(probe.object_id, [], announce_missing=True)
        elif incoming.completed:
            self.send(Complete(probe.object_id))
        else:
            self.nack(probe.object_id, incoming.missing(probe.sent_through))

    def await_whole(self, object_id: int = 0) -> Incoming:
        """Be the receiver until every chunk of the object is held (COMPLETE as the policy says)."""
        incoming = self.obj(object_id)
        if not self.pump(lambda: incoming.whole):
            got = f"{len(incoming.chunks)} of {incoming.count} chunks" if incoming.announce is not None else "no ANNOUNCE"
            raise CaseFailed(f"every chunk of object {object_id}", got, absent=True)
        return incoming

    def receive_object(self, object_id: int = 0, timeout: float | None = None) -> Incoming:
        """Be a correct receiver until the object is whole and COMPLETEd (the case fails if not)."""
        incoming = self.obj(object_id)
        if not self.pump(lambda: incoming.completed, timeout):
            got = (
                f"{len(incoming.chunks)} of {incoming.count} chunks"
                if incoming.announce is not None
                else "no ANNOUNCE"
            )
            if incoming.whole and not incoming.digest_ok():
                got = "every chunk, but their SHA-256 differs from the ANNOUNCE's digest"
            raise CaseFailed(f"object {object_id} whole, matching its digest (R10.2-1)", got, absent=not incoming.whole)
        return incoming

    def in_session(self, decoded: Decoded) -> bool:
        """A packet of the session proper (carrying the session id we assigned)."""
        return Peer.attributed(self, decoded)

    def expect_session(self, what: str, match: Callable[[Packet], bool], timeout: float | None = None) -> Rx:
        """The first session packet matching ``match``; everything is handled as the receiver would."""
        window = self.ctx.timeout if timeout is None else timeout
        deadline = self.ctx.target.clock() + window
        while True:
            if self.inbox:
                rx: Rx | None = self.inbox.pop(0)
            else:
                remaining = deadline - self.ctx.target.clock()
                rx = self.pull(remaining) if remaining > 0 else None
                if rx is None:
                    raise CaseFailed(what, f"nothing matching within {window:.3g} s", absent=True)
            assert rx is not None
            self.handle(rx)
            if rx.decoded is not None and self.in_session(rx.decoded) and match(rx.decoded.packet):
                return rx

    def await_accept_ack(self, timeout: float | None = None) -> None:
        self.expect_session("an ACK of our ACCEPT", lambda p: isinstance(p, codec.Ack), timeout)

    @property
    def quiet(self) -> float:
        return max(self.ctx.quiet, 2 * self.client_params.max_ack_delay_ms / 1000 + self.ctx.target.slack)
