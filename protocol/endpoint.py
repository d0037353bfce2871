"""A SNIP endpoint, sans-I/O: one UDP socket's worth of sessions (spec 4.2, 7).

It decodes datagrams, answers what needs no state (VERSION, RETRY, SERVER_BUSY), routes the rest
to sessions by session id and source address, and gathers their output and timers. The interface
is the one netsim's simulator and the asyncio binding drive:

    receive_datagram(data, addr, now); datagrams_to_send(now); get_timer(); handle_timer(now);
    next_event()
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import codec
from .codec import Accept, Close, Initial, Retry, VersionNegotiation
from .config import SessionConfig, receiving_budget
from .connection import Addr, Connection
from .constants import MIN_INITIAL_DATAGRAM, SUPPORTED_VERSIONS, ErrorCode, PacketType
from .errors import DecodeError, LocalProtocolError
from .events import Event
from .params import SessionParams
from .token import check_token, make_token

# Server sessions discarded unvalidated whose record is kept, per allowed pending handshake: a
# flood of spoofed INITIALs then evicts records, never grows them without limit (R7.4-6).
LAPSED_PER_PENDING = 4


@dataclass(frozen=True)
class Lapsed:
    """A server session discarded at its handshake timeout with its client's address unproven
    (R7.4-3): what it takes to restore it if its client, which did get the ACCEPT, turns out to
    be there after all (R7.4-6). An outage that began between the ACCEPT and the client's first
    packets otherwise left the client talking to an unknown session id until its idle timeout."""

    peer: Addr
    initial_id: int
    peer_params: SessionParams
    next_pn: int
    until: float


class Endpoint:
    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        server: bool = False,
        random_bytes: Callable[[int], bytes] = os.urandom,
        secret: bytes | None = None,
    ) -> None:
        self.config = config or SessionConfig()
        self.config.validate()
        self.server = server
        self._random = random_bytes
        self._secret = secret if secret is not None else random_bytes(32)
        self.sessions: dict[int, Connection] = {}  # by session id (established or server-side)
        self._pending_clients: dict[int, Connection] = {}  # by initial id, until ACCEPT
        self._handshakes: dict[tuple[Addr, int], Connection] = {}  # server: (client addr, initial id)
        self._stateless: deque[tuple[bytes, Addr]] = deque()
        self._events: deque[Event] = deque()
        self.drops: Counter[str] = Counter()
        # The application's admission check for announced objects: None accepts, a string refuses.
        self.admit: Callable[[Connection, codec.Announce], str | None] | None = None
        self.accepting = True  # False once stop_accepting(): a server about to shut down
        # spec R14.4-1: the bytes of objects being received across sessions, and of received ones
        # the application has not let go of (it says so through app_held_bytes), stay within this.
        self.receiving_budget = receiving_budget(self.config)
        self.app_held_bytes = 0
        self.counters: Counter[str] = Counter()
        # Work is per session touched, not per session held: a datagram, a timer or the application
        # wakes one session, and only woken sessions are asked for output and for their next timer.
        # With every session polled at each wake-up, 128 half-open handshakes from a flood made each
        # datagram cost a millisecond. Dicts as insertion-ordered sets, for a deterministic order.
        self._to_poll: dict[Connection, None] = {}
        self._to_retime: dict[Connection, None] = {}
        self._timer_at: dict[Connection, float] = {}  # each session's timer as the heap holds it
        self._timer_heap: list[tuple[float, int, Connection]] = []  # entries not in _timer_at are stale
        self._timer_seq = itertools.count()
        self._unvalidated: dict[Connection, None] = {}  # server sessions awaiting address validation
        self._lapsed: dict[int, Lapsed] = {}  # by session id, oldest first

    # ------------------------------------------------------------------------------------------
    # Application API

    def connect(self, addr: Addr, now: float) -> Connection:
        """Open a session to a server; the handshake starts with the next datagrams_to_send."""
        initial_id = self._fresh_id(self._pending_clients)
        conn = Connection(
            config=self.config,
            is_client=True,
            peer=addr,
            initial_id=initial_id,
            now=now,
            events=self._events,
            on_closed=self._forget,
            admit=self._admit_object,
            on_activity=self.wake,
        )
        self._pending_clients[initial_id] = conn
        self.wake(conn)
        return conn

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def stats(self) -> dict[str, Any]:
        return {
            "sessions": len(self.sessions),
            "pending_handshakes": len(self._pending_clients) + self._unvalidated_count(),
            "dropped": dict(self.drops),
            **dict(self.counters),
        }

    # ------------------------------------------------------------------------------------------
    # Input

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Take one datagram. Never raises: bad input is dropped and counted (spec 4.2)."""
        self.counters["datagrams_received"] += 1
        if len(data) > self.config.max_datagram_size:
            self.drops["oversized"] += 1
            return
        try:
            decoded = codec.decode(data)
        except DecodeError as exc:
            self.drops[exc.reason] += 1
            if exc.reason == "unknown_version":
                self._maybe_negotiate_version(data, addr)
            return
        packet = decoded.packet
        sid = decoded.session_id
        if isinstance(packet, Initial):
            if self.server:
                self._on_initial(packet, sid, decoded.packet_number, addr, len(data), now)
            else:
                self.drops["unexpected_initial"] += 1
            return
        if self.server and isinstance(packet, Accept | Retry | VersionNegotiation):
            self.drops["unexpected_handshake"] += 1  # spec 4.2 step 7: a server drops these
            return
        conn = self.sessions.get(sid)
        if conn is None and self.server:
            conn = self._restore_lapsed(sid, addr, now)
        if conn is None:
            pending = self._pending_clients.get(sid)
            if pending is not None and pending.peer == addr:
                self._on_handshake_reply(pending, packet, decoded.packet_number, len(data), now)
                self.wake(pending)
            else:
                self.drops["unknown_session"] += 1
            return
        if conn.peer != addr:
            self.drops["address_mismatch"] += 1
            return
        conn.receive_packet(decoded.packet_number, packet, len(data), now)
        self.wake(conn)

    def _on_handshake_reply(self, conn: Connection, packet: codec.Packet, pn: int, size: int, now: float) -> None:
        if isinstance(packet, Accept):
            if packet.session_id in self.sessions:
                self.drops["session_id_collision"] += 1
                return
            del self._pending_clients[conn.initial_id]
            self.sessions[packet.session_id] = conn
            conn.on_accept(packet, pn, size, now)
        elif isinstance(packet, Retry):
            conn.on_retry(packet, now)
        elif isinstance(packet, VersionNegotiation):
            conn.on_version(packet, now)
        elif isinstance(packet, Close):
            conn.on_handshake_close(packet, now)
        else:
            self.drops["unknown_session"] += 1

    def _on_initial(self, packet: Initial, initial_id: int, pn: int, addr: Addr, size: int, now: float) -> None:
        if initial_id == 0:
            self.drops["malformed"] += 1
            return
        existing = self._handshakes.get((addr, initial_id))
        if existing is not None:
            existing.on_initial(pn, size, now)
            self.wake(existing)
            return
        validated = bool(packet.token) and check_token(self._secret, packet.token, addr, initial_id, now)
        if packet.token and not validated:
            self.drops["bad_token"] += 1
        if not validated and (
            self.config.retry == "always"
            or (self.config.retry == "auto" and self._unvalidated_count() >= self.config.max_pending_handshakes)
        ):
            token = make_token(self._secret, addr, initial_id, now)
            self._stateless.append((codec.encode(Retry(token), initial_id, 0), addr))
            self.counters["retries_sent"] += 1
            return
        busy = self._busy()
        if busy is not None:
            refusal = Close(ErrorCode.SERVER_BUSY, busy)
            self._stateless.append((codec.encode(refusal, initial_id, 0), addr))
            self.counters["busy_refusals"] += 1
            return
        conn = self._server_session(self._fresh_id(self.sessions), addr, initial_id, packet.params, validated, now)
        conn.on_initial(pn, size, now)
        self.counters["sessions_accepted"] += 1

    def _busy(self) -> str | None:
        """Why no session can be opened now (SERVER_BUSY), or None."""
        if not self.accepting:
            return "server shutting down"
        if len(self.sessions) >= self.config.max_sessions:
            return "too many sessions"
        return None

    def _server_session(
        self, session_id: int, addr: Addr, initial_id: int, params: SessionParams, validated: bool, now: float,
        first_pn: int = 0,
    ) -> Connection:
        conn = Connection(
            config=self.config,
            is_client=False,
            peer=addr,
            initial_id=initial_id,
            now=now,
            events=self._events,
            session_id=session_id,
            peer_params=params,
            address_validated=validated,
            on_closed=self._forget,
            admit=self._admit_object,
            on_activity=self.wake,
            first_pn=first_pn,
        )
        self.sessions[session_id] = conn
        self._handshakes[(addr, initial_id)] = conn
        if not validated:
            self._unvalidated[conn] = None
        self.wake(conn)
        return conn

    def _restore_lapsed(self, session_id: int, addr: Addr, now: float) -> Connection | None:
        """The session ``session_id`` if it lapsed unvalidated and this datagram, from its client's
        address, proves the client got the ACCEPT after all (R7.4-6); None otherwise."""
        lapsed = self._lapsed.get(session_id)
        if lapsed is None or lapsed.peer != addr:
            return None
        del self._lapsed[session_id]
        if now >= lapsed.until or self._busy() is not None:
            return None
        # Unvalidated until the packet in hand, which validates it as any first packet does (R7.4-1);
        # numbering goes on from the discarded session's, so the client sees no packet number twice.
        conn = self._server_session(session_id, addr, lapsed.initial_id, lapsed.peer_params, False, now, lapsed.next_pn)
        self.counters["sessions_restored"] += 1
        return conn

    def _remember_lapsed(self, conn: Connection, now: float) -> None:
        limit = LAPSED_PER_PENDING * self.config.max_pending_handshakes
        # Oldest first, and all kept for the same idle timeout: expired records are at the front.
        while self._lapsed and (len(self._lapsed) >= limit or next(iter(self._lapsed.values())).until <= now):
            del self._lapsed[next(iter(self._lapsed))]
        self._lapsed[conn.session_id] = Lapsed(
            conn.peer, conn.initial_id, conn.peer_params, conn.sent.next_pn, now + conn.idle_timeout,
        )

    def _maybe_negotiate_version(self, data: bytes, addr: Addr) -> None:
        """spec 3: an INITIAL in an unknown version gets the list of versions we speak."""
        header = codec.peek_header(data)
        if not self.server or header is None or header[1] != PacketType.INITIAL or len(data) < MIN_INITIAL_DATAGRAM:
            return
        if header[2] == 0:  # spec R3-9: never answer an INITIAL with session id 0
            return
        reply = codec.encode(VersionNegotiation(SUPPORTED_VERSIONS), header[2], 0)
        if len(reply) <= len(data):
            self._stateless.append((reply, addr))
            self.counters["version_negotiations"] += 1

    def stop_accepting(self) -> None:
        """A server winding down: sessions and objects already under way go on; new sessions are
        refused with SERVER_BUSY and new objects with REFUSED, so their senders hear why at once."""
        self.accepting = False

    # ------------------------------------------------------------------------------------------
    # Output and timers

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out: list[tuple[bytes, Addr]] = list(self._stateless)
        self._stateless.clear()
        polled = list(self._to_poll)
        self._to_poll.clear()
        for conn in polled:
            for datagram in conn.datagrams_to_send(now):
                out.append((datagram, conn.peer))
            self._to_retime[conn] = None  # sending moves its timers (pacing, probes)
        return out

    def get_timer(self) -> float | None:
        self._retime()
        heap = self._timer_heap
        while heap and self._timer_at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def handle_timer(self, now: float) -> None:
        self._retime()
        heap = self._timer_heap
        due: list[Connection] = []
        while heap and heap[0][0] <= now:
            t, _, conn = heapq.heappop(heap)
            if self._timer_at.get(conn) == t:
                del self._timer_at[conn]
                due.append(conn)
        for conn in due:
            conn.handle_timer(now)
            self.wake(conn)

    def wake(self, conn: Connection) -> None:
        """``conn`` may have output now, and its next timer may have moved. Datagrams, timers and the
        session's own API (objects, cancels, close) call this; call it after changing a session any
        other way."""
        self._to_poll[conn] = None
        self._to_retime[conn] = None
        # A session leaves the handshake clock only on a packet or a timer, each followed by a wake.
        if conn in self._unvalidated and not conn.awaiting_validation:
            del self._unvalidated[conn]

    def _retime(self) -> None:
        heap = self._timer_heap
        for conn in self._to_retime:
            t = conn.next_timer()
            if t is None:
                self._timer_at.pop(conn, None)
            elif self._timer_at.get(conn) != t:
                self._timer_at[conn] = t
                heapq.heappush(heap, (t, next(self._timer_seq), conn))
        self._to_retime.clear()
        if len(heap) > 2 * len(self._timer_at) + 64:
            # Entries go stale each time a session's timer moves; drop them before they pile up.
            self._timer_heap = [(t, next(self._timer_seq), conn) for conn, t in self._timer_at.items()]
            heapq.heapify(self._timer_heap)

    # ------------------------------------------------------------------------------------------

    def receiving_bytes(self) -> int:
        """Bytes of objects held across sessions: being received, or received and still held by
        the application."""
        return sum(c.incoming_bytes for c in self.sessions.values()) + self.app_held_bytes

    def _admit_object(self, conn: Connection, announce: codec.Announce) -> str | None:
        if not self.accepting:
            return "receiver shutting down"
        held = self.receiving_bytes()
        if held + announce.total_length > self.receiving_budget:
            self.counters["objects_refused_busy"] += 1
            return (f"receiver busy: {held} bytes of objects in hand, {announce.total_length} more would pass "
                    f"its limit of {self.receiving_budget}; send it again later")
        return self.admit(conn, announce) if self.admit is not None else None

    def _fresh_id(self, taken: dict[int, Connection]) -> int:
        while True:
            value = int.from_bytes(self._random(8), "big")
            if value != 0 and value not in taken and value not in self.sessions:
                return value

    def _unvalidated_count(self) -> int:
        return len(self._unvalidated)

    def _forget(self, conn: Connection) -> None:
        if self.sessions.get(conn.session_id) is conn:
            del self.sessions[conn.session_id]
            lapsed = not conn.is_client and conn.close_code == ErrorCode.HANDSHAKE_TIMEOUT and not conn.address_validated
            if lapsed and conn.closed_at is not None:
                self._remember_lapsed(conn, conn.closed_at)
        if self._pending_clients.get(conn.initial_id) is conn:
            del self._pending_clients[conn.initial_id]
        if self._handshakes.get((conn.peer, conn.initial_id)) is conn:
            # A stray copy of the INITIAL may have opened a session beside one since restored.
            del self._handshakes[(conn.peer, conn.initial_id)]
        self._unvalidated.pop(conn, None)
        self._to_poll.pop(conn, None)
        self._to_retime.pop(conn, None)
        self._timer_at.pop(conn, None)

    def session(self, session_id: int) -> Connection:
        conn = self.sessions.get(session_id)
        if conn is None:
            raise LocalProtocolError(f"no session {session_id:016x}")
        return conn
