"""One SNIP session, sans-I/O (spec 7-12). Time is passed in; nothing here reads a clock.

The endpoint (endpoint.py) routes decoded packets here after the session lookup; this module
decides what they mean, what to send back and when. A session is symmetric once established:
either side may send objects; a reply is an object announced with ``in_reply_to``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from . import codec
from .codec import PACKET_TYPE_OF as PACKET_TYPE_BY_CLASS
from .codec import (
    Accept,
    Ack,
    Announce,
    Cancel,
    Close,
    Complete,
    Data,
    Initial,
    Nack,
    Packet,
    Ping,
    Probe,
    Repair,
    Retry,
    VersionNegotiation,
)
from .config import SessionConfig
from .congestion import make_controller
from .constants import (
    CANCEL_ORIGIN_RECIPIENT,
    CANCEL_ORIGIN_SENDER,
    DATA_PREFIX_LEN,
    MAX_OBJECT_ID,
    MAX_PN,
    MIN_CHUNK_SIZE,
    NON_ACK_ELICITING,
    OVERHEAD,
    REPAIR_PREFIX_LEN,
    VERSION,
    ErrorCode,
)
from .delivery import SentLog, WindowedMax
from .errors import InvalidObjectError, LocalProtocolError
from .events import (
    ConnectionClosed,
    Event,
    HandshakeCompleted,
    ObjectDelivered,
    ObjectFailed,
    ObjectReceived,
    ObjectStarted,
)
from .params import SessionParams
from .receiving import IncomingObject, to_ranges
from .repair import coefficients as repair_coefficients
from .rtt import GRANULARITY, RttEstimator
from .sending import OutgoingObject, OutState
from .state import OPEN_STATES, Input, State, next_state

Addr = tuple[str, int]

_NACK_FIXED_LEN = OVERHEAD + 10  # header + crc + object_id, flags, encoding, largest_pn
MAX_RETRIES_FOLLOWED = 3
MAX_FINAL_WORDS = 4096
REORDER_RTT_PART_CAP = 0.010
TAIL_REPAIRS = 4  # at most this many repairs waiting: the object is in its tail
# Forward repair at an object's tail (spec 9.6): the reference covers at most this many chunks, and
# sends expected losses + REPAIR_SIGMAS standard deviations + REPAIR_SPARE REPAIRs.
REPAIR_WINDOW = 1024
REPAIR_SIGMAS = 3.0  # a shortfall costs a round trip; a spare REPAIR costs one datagram
REPAIR_SPARE = 1
# A window of a few chunks may get more REPAIRs than it has chunks, up to REPAIR_BEYOND_WINDOW more
# for the smallest (one fewer per 4 chunks): over one chunk every REPAIR is a copy of it, and on a
# path losing half its datagrams one copy is far from enough. A window of many chunks gets at most
# as many REPAIRs: beyond that a round of retransmissions costs less.
REPAIR_BEYOND_WINDOW = 4
# Packets whose loss costs a round trip or a probe timeout go in copies on a lossy path: the fewest
# whose joint loss is below COPIES_MISS, at most MAX_COPIES. They are the ANNOUNCE (without it the
# receiver cannot use a REPAIR, R9.6-3, and buffers only so many chunks, R9.1-6), the copies beyond
# its echoes each behind a first copy of a chunk or a REPAIR; COMPLETE, the sender's only news of
# delivery; and a PROBE on a probe timeout, each copy of which draws an answer.
COPIES_MISS = 0.01
MAX_COPIES = 6
COPIES_MIN_SPAN = 32  # the fewest of the peer's packet numbers its missing ones are counted against
COPIES_OWN_SPAN = 64  # our own packets counted, from which their loss alone sizes copies (_loss_for_copies)
COPIES_MIN_RUNS = 8  # runs of missing packet numbers before their length counts (_loss_continuation)
CLOSE_COPIES = 2
MAX_PROBED_UNANNOUNCED = 256  # objects probed before their ANNOUNCE whose sent_through is kept
MAX_PROBE_COPIES = 16  # a PROBE or PING unanswered again and again: the most copies of one (_probe_copies)
PROBE_INTERVAL_CAP = 0.2  # seconds: the probe timer stops doubling there (or at 2 x srtt)
# The INITIAL's retransmission interval stops doubling here: at heavy loss the handshake timeout
# must hold enough tries (two 1200-byte copies a second cost next to nothing).
INITIAL_INTERVAL_CAP = 1.0
# An INITIAL goes in two copies, and in one more for each try beyond the second that went
# unanswered (each is evidence of heavy loss), up to this many: at 70 % loss each way a copy is
# answered about one time in eleven, and two copies a try would fail one handshake in eight.
MAX_INITIAL_COPIES = 6
# An announced object that has waited behind others sends a chunk out of turn, often enough that
# every such chunk being lost within an idle timeout (its receiver then cancels it, R12.3-1) is
# rarer than STARVED_MISS at the loss the path shows, and at least STARVED_MIN_TRIES times in it.
# Rare per timeout, since a long transfer of many objects spans many timeouts: at 1e-4, 2 in 300
# random links carrying 1 MiB objects lost an object this way (256 kbit/s, 40 % loss), none at 1e-6.
# The chunks are the object's own, so more tries cost nothing but the order objects finish in.
STARVED_MISS = 1e-6
STARVED_MIN_TRIES = 4
LOOKAHEAD_MIN_CHUNKS = 4
DELIVERY_PEAK_WINDOW_S = 10.0
MAX_TAIL_COPIES = 3  # copies of one retransmitted chunk at an object's tail, at most
# Pacing allowance (spec R11.1-1): after an idle spell a sender may send at once what this much time
# at the pacing rate carries; a sender that only waited for its pace keeps what a late wake-up owes
# it, up to PACING_LATE_CREDIT: the driver's timers fire up to a millisecond late (epoll's
# granularity), more on a busy machine, and each late wake-up the allowance cut short was sending
# time lost for good (at 50 Mbit/s over TUN on a two-core machine, 14-50 ms of a 0.3 s transfer).
PACING_IDLE_CREDIT = 0.001
PACING_LATE_CREDIT = 0.004
# Packet numbers this far below the largest received are remembered, so that a duplicated datagram
# is not counted twice in received_packets (spec R9.2-4): duplication must not hide loss.
PN_MEMORY = 4096
# What a chunk or REPAIR held for an unannounced object costs the buffer beyond its bytes: the
# entry's own keeping, so that 256 KiB of 1-byte chunks is not a quarter of a million entries.
HELD_ENTRY_COST = 128

_V = TypeVar("_V")


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error 0x{code:04x}"


class _Violation(Exception):
    """Internal: the peer broke a rule; the session aborts with ``code``."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _held_cost(payload: bytes) -> int:
    """What a chunk or REPAIR kept for an unannounced object counts against the buffer."""
    return len(payload) + HELD_ENTRY_COST


def _remember_bounded(memory: dict[int, _V], oid: int, value: _V) -> None:
    """Record ``value`` for object ``oid``; past MAX_FINAL_WORDS entries the oldest is forgotten,
    or a long session would keep one entry per object it ever sent or received."""
    memory[oid] = value
    if len(memory) > MAX_FINAL_WORDS:
        memory.pop(next(iter(memory)))


def initial_copies(unanswered_tries: int) -> int:
    """Copies of the INITIAL sent after ``unanswered_tries`` tries that drew no answer (spec R7.2-2)."""
    return min(MAX_INITIAL_COPIES, 2 + max(0, unanswered_tries - 1))


def copies_against(loss: float, continuation: float | None = None) -> int:
    """The fewest copies of a packet, at least one, sent back to back, whose joint loss is below
    COPIES_MISS; at most MAX_COPIES. ``loss`` is the chance the first is lost; ``continuation``
    the chance that a packet right after a lost one is lost too (``loss`` itself when losses are
    independent; more where they come in bursts)."""
    if loss <= COPIES_MISS:
        return 1
    first = min(loss, 0.9)
    again = min(max(first, continuation if continuation is not None else first), 0.9)
    return min(MAX_COPIES, 1 + math.ceil(math.log(COPIES_MISS / first) / math.log(again) - 1e-9))


def spread_copies(packets: list[Packet]) -> list[Packet]:
    """``packets`` reordered to take turns among the distinct packets, so that the copies of each
    are spread through the batch instead of going back to back. Losses that come in runs (a burst
    of loss; a queue a few packets deep that the batch overruns) then take some copies of every
    packet, not every copy of some: a probe timeout's ANNOUNCE copies ahead of its PROBE copies,
    sent as one burst, let no PROBE through a 2-packet queue, at every timeout, until the receiver
    cancelled the object. The distinct packets keep the order of their first copies."""
    counts: dict[Packet, int] = {}
    for packet in packets:
        counts[packet] = counts.get(packet, 0) + 1
    if len(counts) in (1, len(packets)):
        return packets
    spread: list[Packet] = []
    while counts:
        for packet in list(counts):
            spread.append(packet)
            counts[packet] -= 1
            if not counts[packet]:
                del counts[packet]
    return spread


class Connection:
    def __init__(
        self,
        *,
        config: SessionConfig,
        is_client: bool,
        peer: Addr,
        initial_id: int,
        now: float,
        events: deque[Event],
        session_id: int = 0,
        peer_params: SessionParams | None = None,
        address_validated: bool = False,
        on_closed: Callable[[Connection], None] | None = None,
        admit: Callable[[Connection, Announce], str | None] | None = None,
        on_activity: Callable[[Connection], None] | None = None,
        first_pn: int = 0,
    ) -> None:
        self.config = config
        self.is_client = is_client
        self.peer = peer
        self.initial_id = initial_id
        self.session_id = session_id
        self.created = now
        self._events = events
        self._on_closed = on_closed
        self._admit = admit  # the application's say on each announced object, before any data is kept
        # Told when the application gives us work (an object, a cancel, a close): the endpoint
        # polls only the sessions that may have something to send, not all of them.
        self._on_activity = on_activity
        self.local_params = config.params()
        self.peer_params = peer_params or SessionParams()
        self.state = State.CLIENT_INITIAL if is_client else State.SERVER_UNVALIDATED
        self.address_validated = is_client or address_validated
        self.rtt = RttEstimator(config.initial_rtt)
        self.sent = SentLog()
        self.sent.next_pn = first_pn  # above 0 for a server session restored after it lapsed (R7.4-6)
        self._mss = config.chunk_size + OVERHEAD + DATA_PREFIX_LEN
        self.controller = make_controller(config.rate, self._mss, config.initial_window, config.initial_rtt)
        self._delivery_peak = WindowedMax(DELIVERY_PEAK_WINDOW_S)
        self.controller.set_feedback_delay(self.peer_params.max_ack_delay_ms / 1000)
        self._control: deque[Packet] = deque()
        self._next_send_time = now
        self._pace_bound = False  # the last send stopped only for the pacing rate (PACING_LATE_CREDIT)
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_at: float | None = None
        self._close_deadline: float | None = None
        self._last_close_sent = -math.inf

        # handshake (client)
        self._token = b""
        self._retries_followed = 0
        self._initial_sends: list[float] = []
        self._next_initial: float | None = now if is_client else None
        self._handshake_deadline = now + config.handshake_timeout
        self._created = now

        # receive side bookkeeping for ACKs (spec 9.2)
        self._largest_pn = -1
        self._largest_pn_time = now
        self._recv_bytes = 0
        self._initials_seen = 0  # the client's INITIALs that reached us (a server's)
        self._recv_packets = 0
        self._lowest_pn = -1  # the lowest packet number counted in _recv_packets
        self._gap_runs = 0  # times a packet number came more than one past the largest before it
        self._recent_pns = 0  # bit i set: packet number largest_pn - i has arrived
        self._ack_pending = 0
        self._ack_deadline: float | None = None
        self._ack_now = False
        self._ack_copies = 1  # copies of the next ACK: more than one when it answers a PING (R9.2-2)
        self._ping_answered_in_copies = float("-inf")  # when we last did
        self._last_recv = now
        # The last DATA, REPAIR or PROBE of any object from the peer: a sender silent for a PTO
        # while we hold an ANNOUNCE lost what it sent, or is waiting to hear of it (R9.1-11).
        self._last_object_traffic = -math.inf
        self._last_ping = -math.inf
        self._last_ack_time = now
        self._window_probes = 0
        # Client: when to PING if the server has still sent nothing after ACCEPT, and how many
        # PINGs went; None once it has (spec R7.2-10).
        self._confirm_at: float | None = None
        self._confirm_pings = 0

        # outgoing objects
        self.outgoing: dict[int, OutgoingObject] = {}
        self._out_final: dict[int, int] = {}  # finished outgoing id -> error code (0 = delivered)
        self._next_object_id = 0
        self._deferred_cancels: list[Cancel] = []  # CANCELs of never-announced ids awaiting credit
        # Our CANCELs (Origin 1) the peer may not have: id -> (the CANCEL, when to send it again,
        # copies sent). A receiver that never heard of the object has nothing to ask about, so a
        # lost one would leave the id unfinished there and its credit never back (spec R12.3-8).
        self._cancels_unconfirmed: dict[int, tuple[Cancel, float, int]] = {}
        self._announced_bytes = 0
        self._peer_id_limit = self.peer_params.max_concurrent_objects
        self._peer_announce_limit = self.peer_params.max_buffered_bytes

        # incoming objects
        self.incoming: dict[int, IncomingObject] = {}
        # The sizes of the objects in self.incoming (their buffers), kept rather than summed: the
        # endpoint adds it up over every session at each ANNOUNCE (spec R14.4-1).
        self.incoming_bytes = 0
        self._in_final: dict[int, int] = {}  # finished incoming id -> error code (0 = complete)
        self._in_finished_above: set[int] = set()
        self._in_watermark = 0  # every incoming id below this is finished
        self._in_announced_bytes = 0
        self._in_finished_bytes = 0
        self._in_id_limit = self.local_params.max_concurrent_objects
        self._in_announce_limit = self.local_params.max_buffered_bytes
        self._unannounced: dict[int, list[tuple[int, bytes, int]]] = {}
        self._unannounced_repairs: dict[int, list[Repair]] = {}  # within the same byte bound
        self._unannounced_bytes = 0
        # The largest sent_through of PROBEs for objects not yet announced (bounded like the ids):
        # when the ANNOUNCE comes, the chunks below it are known sent, and lacking them is a gap.
        self._probed_unannounced: dict[int, int] = {}
        # When we last spoke about each incoming object (its final word, or a request for its
        # ANNOUNCE), for the rate limits on both.
        self._final_word_sent: dict[int, float] = {}
        self._reorder_observed = 0.0  # the largest reordering seen, in seconds
        self._repair_seed = 0

        self.counters: dict[str, int] = {
            "packets_sent": 0,
            "bytes_sent": 0,
            "packets_received": 0,
            "bytes_received": 0,
            "chunks_sent": 0,
            "chunks_retransmitted": 0,
            "chunks_received": 0,
            "duplicates": 0,
            "chunks_nacked_by_us": 0,
            "chunks_nacked_by_peer": 0,
            "chunks_recovered": 0,
            "repairs_sent": 0,
            "repairs_received": 0,
            "chunks_repaired": 0,
            "repair_mismatches": 0,
            "late_arrivals": 0,
            "nacks_sent": 0,
            "nacks_received": 0,
            "acks_sent": 0,
            "probes_sent": 0,
            "probe_chunks_sent": 0,
            "unannounced_dropped": 0,
            "digest_failures": 0,
            "objects_sent": 0,
            "objects_delivered": 0,
            "objects_failed": 0,
            "objects_received": 0,
            "amplification_blocked": 0,
            "ignored_packets": 0,
        }

    # ------------------------------------------------------------------------------------------
    # Public API (called by the endpoint or the application)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def awaiting_validation(self) -> bool:
        """A server session whose client address is still unproven: on the handshake clock (R7.4-3).
        A valid token proves the address before the session's first packet does."""
        return self.state is State.SERVER_UNVALIDATED and not self.address_validated

    def send_object(
        self,
        data: bytes,
        now: float,
        *,
        name: str = "",
        content_type: str = "application/octet-stream",
        want_reply: bool = False,
        in_reply_to: int | None = None,
        deadline: float | None = None,
    ) -> int:
        """Queue an object; returns its object id. Raises LocalProtocolError on misuse."""
        if next_state(self.state, Input.LOCAL_SEND) is None:
            raise LocalProtocolError(f"cannot send objects in state {self.state.value}")
        if self._next_object_id > MAX_OBJECT_ID:
            raise LocalProtocolError("object ids exhausted in this session")
        if len(name.encode("utf-8")) > 255:
            raise InvalidObjectError("object name longer than 255 bytes (UTF-8)")
        if len(content_type) > 255 or not content_type.isascii() or not content_type.isprintable() or " " in content_type:
            raise InvalidObjectError("content type must be printable ASCII without spaces, at most 255 bytes")
        if in_reply_to is not None and not 0 <= in_reply_to <= MAX_OBJECT_ID:
            raise InvalidObjectError("in_reply_to must be a 32-bit object id")
        object_id = self._next_object_id
        self._next_object_id += 1
        obj = OutgoingObject(
            object_id,
            data,
            name=name,
            content_type=content_type,
            # Never larger than the peer accepts (spec 8.1): a reply on a session opened with big
            # chunks still fits a peer that takes only small datagrams. Nor than the object: its
            # one chunk is the same, and its REPAIRs (each Chunk Size long) are no longer than it,
            # not three 1 KiB REPAIRs behind a 300-byte reply.
            chunk_size=max(MIN_CHUNK_SIZE, min(self.config.chunk_size, len(data),
                                               self.peer_params.max_datagram_size - OVERHEAD - DATA_PREFIX_LEN)),
            want_reply=want_reply,
            in_reply_to=in_reply_to,
            deadline=None if deadline is None else now + deadline,
            created=now,
        )
        self.outgoing[object_id] = obj
        self.counters["objects_sent"] += 1
        if self.state is not State.CLIENT_INITIAL:
            self._check_object_fits(obj, now)
        self._notify_activity()
        return object_id

    def _notify_activity(self) -> None:
        if self._on_activity is not None:
            self._on_activity(self)

    def cancel_object(self, object_id: int, now: float, code: int = ErrorCode.CANCELLED, reason: str = "") -> None:
        obj = self.outgoing.get(object_id)
        if obj is None:
            raise LocalProtocolError(f"no outgoing object {object_id} in progress")
        self._fail_outgoing(obj, code, reason or "cancelled by the application", by_peer=False, now=now, tell_peer=True)
        self._notify_activity()

    def refuse_object(self, object_id: int, now: float, code: int = ErrorCode.REFUSED, reason: str = "") -> None:
        """Refuse an incoming object in progress (spec 5.10, origin 0)."""
        obj = self.incoming.get(object_id)
        if obj is None:
            raise LocalProtocolError(f"no incoming object {object_id} in progress")
        self._fail_incoming(obj, code, reason or "refused", by_peer=False, tell_peer=True)
        self._notify_activity()

    def close(self, now: float, code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Clean close (code 0) or abort (any other code)."""
        if self.state in (State.CLOSING, State.DRAINING, State.CLOSED):
            return
        if self.state is State.CLIENT_INITIAL:
            self._enter_closed(now, code, reason or "closed before the handshake completed", by_peer=False)
            return
        self._start_closing(now, code, reason)
        self._notify_activity()

    def pending_outgoing(self) -> int:
        return len(self.outgoing)

    # ------------------------------------------------------------------------------------------
    # Handshake inputs routed by the endpoint

    def on_accept(self, packet: Accept, pn: int, size: int, now: float) -> None:
        if next_state(self.state, Input.RECV_ACCEPT) is None or self.state is not State.CLIENT_INITIAL:
            self.counters["ignored_packets"] += 1
            return
        self._note_received(pn, size, True, now)
        if len(self._initial_sends) == 1:  # an unambiguous handshake RTT sample (Karn)
            self._rtt_sample(now - self._initial_sends[0], 0.0, now)
        self.sent.restart(now)
        self.session_id = packet.session_id
        self.peer_params = packet.params
        self.controller.set_feedback_delay(packet.params.max_ack_delay_ms / 1000)
        self._peer_id_limit = packet.params.max_concurrent_objects
        self._peer_announce_limit = packet.params.max_buffered_bytes
        self.state = State.ESTABLISHED
        self._next_initial = None
        self._confirm_at = now + self._pto()
        self._events.append(HandshakeCompleted(self.session_id, self.peer))
        for obj in list(self.outgoing.values()):
            self._check_object_fits(obj, now)

    def on_retry(self, packet: Retry, now: float) -> None:
        if self.state is not State.CLIENT_INITIAL or self._retries_followed >= MAX_RETRIES_FOLLOWED:
            self.counters["ignored_packets"] += 1
            return
        self._retries_followed += 1
        self._token = packet.token
        self._initial_sends.clear()  # the next INITIAL's answer gives a clean RTT sample
        self._next_initial = now

    def on_version(self, packet: VersionNegotiation, now: float) -> None:
        if self.state is not State.CLIENT_INITIAL:
            return
        if VERSION in packet.versions:  # spec R3-10: a genuine server would not list our own version
            self.counters["ignored_packets"] += 1
            return
        # Entries naming 0 are ignored, as ones naming versions we do not know (R5.4-2).
        offered = ", ".join(str(v) for v in packet.versions if v != 0) or "none"
        self._enter_closed(now, ErrorCode.VERSION_MISMATCH, f"peer speaks versions {offered}, not {VERSION}", by_peer=True)

    def on_initial(self, pn: int, size: int, now: float) -> None:
        """An INITIAL of our client's, the first or a repeat (our ACCEPT was lost, or is late):
        answer with ACCEPT, in as many copies as the INITIALs' loss on the way here calls for
        (R7.3-4). The client has sent pn + 1 of them: those that did not arrive are the loss the
        ACCEPTs are likely to meet going back, and at 85 % each way one copy of each got through
        in 2 % of the tries."""
        self._recv_bytes += size
        self._initials_seen += 1
        if self.state not in OPEN_STATES:
            return
        if self.awaiting_validation:
            # The client was still waiting for an ACCEPT when it sent this: give the ACCEPT going
            # now the time to be answered (R7.4-3). Were the earlier ACCEPTs lost in an outage,
            # the deadline from the first INITIAL would pass while the answer is on its way, and
            # the client's packets would then meet an unknown session, for good.
            handshake = self.config.handshake_timeout
            self._handshake_deadline = min(max(self._handshake_deadline, now + handshake), self._created + 2 * handshake)
        lost = max(0, pn + 1 - self._initials_seen)
        wanted = copies_against(lost / (pn + 1))
        queued = sum(1 for packet in self._control if isinstance(packet, Accept))
        self._control.extend(Accept(self.session_id, self.local_params) for _ in range(wanted - queued))

    def on_handshake_close(self, packet: Close, now: float) -> None:
        if self.state is State.CLIENT_INITIAL:
            self._enter_closed(now, packet.error_code, packet.reason or "refused by the server", by_peer=True)

    # ------------------------------------------------------------------------------------------
    # Session packets

    def receive_packet(self, pn: int, packet: Packet, size: int, now: float) -> None:
        """A packet carrying our session id from our peer's address."""
        if self.state is State.CLOSED or self.state is State.CLIENT_INITIAL:
            self.counters["ignored_packets"] += 1
            return
        self._last_recv = now
        self.counters["packets_received"] += 1
        self.counters["bytes_received"] += size
        if self.state is State.DRAINING:
            return
        if self.state is State.CLOSING:
            if isinstance(packet, Close):
                self.state = State.DRAINING
            elif now - self._last_close_sent >= max(self.rtt.smoothed, 0.01):
                self._queue_close_again()
            return
        self._confirm_at = None  # client: the server has heard from us since ACCEPT
        if self.state is State.SERVER_UNVALIDATED:
            # Only someone who saw our ACCEPT knows the session id: the address is real.
            self.address_validated = True
            self.state = State.ESTABLISHED
            self._events.append(HandshakeCompleted(self.session_id, self.peer))
        ptype = PACKET_TYPE_BY_CLASS[type(packet)]
        self._note_received(pn, size, ptype not in NON_ACK_ELICITING, now)
        try:
            self._dispatch(packet, pn, now)
        except _Violation as violation:
            self._start_closing(now, violation.code, violation.reason, violation=True)

    def _dispatch(self, packet: Packet, pn: int, now: float) -> None:
        if isinstance(packet, Data | Repair | Probe):
            self._last_object_traffic = now
        if isinstance(packet, Data):
            self._on_data(packet, pn, now)
        elif isinstance(packet, Repair):
            self._on_repair(packet, pn, now)
        elif isinstance(packet, Ack):
            self._on_ack(packet, now)
        elif isinstance(packet, Nack):
            self._on_nack(packet, now)
        elif isinstance(packet, Announce):
            self._on_announce(packet, now)
        elif isinstance(packet, Probe):
            self._on_probe(packet, now)
        elif isinstance(packet, Complete):
            self._on_complete(packet, now)
        elif isinstance(packet, Cancel):
            self._on_cancel(packet, now)
        elif isinstance(packet, Ping):
            # The PING's sender is waiting on this answer, most often with its window full: a lost
            # one costs it a doubled timeout, as a lost COMPLETE does (R9.1-10), so it goes in as
            # many copies once our own packets' loss has been counted over COPIES_OWN_SPAN of them
            # (before that, a packet number or two the peer skipped would double it). One copy per
            # PING was lost fifteen times running over 28 s on a return path that loses in runs,
            # which only our own packets move on (R9.2-2). The PING's own copies, arriving close
            # together, draw one ACK each beyond the first's copies: on a slow path, copies for
            # each would crowd out the rest of what we send.
            self._ack_now = True
            if self.sent.loss_samples >= COPIES_OWN_SPAN and now >= self._ping_answered_in_copies + self.rtt.smoothed / 2:
                self._ping_answered_in_copies = now
                self._ack_copies = max(self._ack_copies, self._copies())
        elif isinstance(packet, Close):
            self._on_close(packet, now)
        else:  # INITIAL/RETRY/ACCEPT/VERSION inside an established session: nothing to do
            self.counters["ignored_packets"] += 1

    def _note_received(self, pn: int, size: int, ack_eliciting: bool, now: float) -> None:
        self._recv_bytes += size  # duplicates included: they crossed the path like any other
        if self._first_copy(pn):
            self._recv_packets += 1
            self._lowest_pn = pn if self._lowest_pn < 0 else min(self._lowest_pn, pn)
        if pn > self._largest_pn:
            if pn > self._largest_pn + 1 and self._largest_pn >= 0:
                self._gap_runs += 1
            self._largest_pn = pn
            self._largest_pn_time = now
        if ack_eliciting:
            self._ack_pending += 1
            if self._ack_pending >= self.config.ack_every:
                self._ack_now = True
            elif self._ack_deadline is None:
                self._ack_deadline = now + self.config.max_ack_delay

    def _first_copy(self, pn: int) -> bool:
        """Remember ``pn``; False if it arrived before (spec R9.2-4). One older than PN_MEMORY below
        the largest cannot be told apart and counts as a first copy, as a late arrival most likely is."""
        age = self._largest_pn - pn
        if age < 0:
            self._recent_pns = ((self._recent_pns << -age) | 1) & ((1 << PN_MEMORY) - 1) if -age < PN_MEMORY else 1
            return True
        if age >= PN_MEMORY:
            return True
        seen = self._recent_pns >> age & 1
        self._recent_pns |= 1 << age
        return not seen

    # -- receiver side ---------------------------------------------------------------------------

    @property
    def _reorder_allowance(self) -> float:
        # Delay variation is what reorders packets on a path: rttvar bounds the allowance from below.
        # A long path is not a jittery one: the RTT-proportional part stops at REORDER_RTT_PART_CAP.
        rtt_part = min(self.rtt.min_rtt / 8, REORDER_RTT_PART_CAP)
        base = max(0.001, rtt_part, self.rtt.settled_variance) if self.rtt.has_sample else 0.005
        cap = self.rtt.smoothed + 4 * self.rtt.variance
        return min(max(base, self._reorder_observed), max(cap, base))

    @property
    def _sender_reorder_allowance(self) -> float:
        # How much later than a newer packet an older copy may still arrive: jitter shows in rttvar.
        return max(GRANULARITY, 2 * self.rtt.settled_variance)

    @property
    def _nack_reorder_allowance(self) -> float:
        # How long past a round trip a NACKed copy may still be on its way (spec R9.3-4). rttvar
        # grows with our own queue as much as with reordering, jitter does not (spec 9.5): a first
        # flight filling a short queue must not make us turn away the NACK for the tail it dropped.
        jitter = self.rtt.known_jitter
        if jitter == float("inf"):
            return self._sender_reorder_allowance
        return max(GRANULARITY, 2 * jitter, min(self._sender_reorder_allowance, 4 * jitter))

    @property
    def _renack_interval(self) -> float:
        # The sender judges each report against the copies it sent (spec 9.3), so re-reporting
        # often costs only a few bytes and saves whole round trips when a repair is lost again.
        return max(self.rtt.smoothed / 4, GRANULARITY) + self._reorder_allowance

    def _in_finished(self, object_id: int) -> bool:
        return object_id < self._in_watermark or object_id in self._in_finished_above

    def _on_announce(self, packet: Announce, now: float) -> None:
        oid = packet.object_id
        if self._in_finished(oid):
            self._repeat_final_word_in(oid, now)
            return
        existing = self.incoming.get(oid)
        if existing is not None:
            if existing.announce != packet:
                raise _Violation(ErrorCode.PROTOCOL_VIOLATION, f"object {oid} announced twice with different fields")
            return
        if oid >= self._in_id_limit:
            raise _Violation(ErrorCode.FLOW_CONTROL_ERROR, f"object id {oid} beyond the limit {self._in_id_limit}")
        if packet.chunk_size + OVERHEAD + DATA_PREFIX_LEN > self.local_params.max_datagram_size:
            raise _Violation(ErrorCode.PROTOCOL_VIOLATION, f"chunk size {packet.chunk_size} exceeds our datagram limit")
        if packet.total_length > self.local_params.max_object_size:
            self._drop_unannounced(oid)
            self._finish_incoming_id(oid, ErrorCode.OBJECT_TOO_LARGE, 0)
            self._control.append(
                Cancel(oid, CANCEL_ORIGIN_RECIPIENT, ErrorCode.OBJECT_TOO_LARGE,
                       f"{packet.total_length} bytes exceeds the limit of {self.local_params.max_object_size}")
            )
            self._events.append(
                ObjectFailed(self.session_id, oid, False, ErrorCode.OBJECT_TOO_LARGE,
                             f"peer announced {packet.total_length} bytes, over our limit", by_peer=False)
            )
            return
        if self._in_announced_bytes + packet.total_length > self._in_announce_limit:
            raise _Violation(ErrorCode.FLOW_CONTROL_ERROR, "announced bytes beyond the advertised limit")
        refusal = self._admit(self, packet) if self._admit is not None else None
        if refusal is not None:
            self._drop_unannounced(oid)
            # Announced and finished at once (spec R11.3-5): the sender counted it when it
            # announced it, and gets the credit back; counted nowhere, its credit would be lost.
            self._in_announced_bytes += packet.total_length
            self._finish_incoming_id(oid, ErrorCode.REFUSED, packet.total_length)
            self._control.append(Cancel(oid, CANCEL_ORIGIN_RECIPIENT, ErrorCode.REFUSED, refusal[:200]))
            self._events.append(ObjectFailed(self.session_id, oid, False, ErrorCode.REFUSED, refusal, by_peer=False))
            return
        obj = IncomingObject(packet, now)
        self.incoming[oid] = obj
        self.incoming_bytes += obj.size
        self._in_announced_bytes += packet.total_length
        self._events.append(ObjectStarted(self.session_id, oid, packet.name, packet.content_type, packet.total_length))
        held = self._unannounced.pop(oid, None)
        if held:
            for index, chunk, pn in held:
                self._unannounced_bytes -= _held_cost(chunk)
                self._store_chunk(obj, index, chunk, pn, now)
                if oid not in self.incoming:
                    return
        for repair in self._unannounced_repairs.pop(oid, []):
            self._unannounced_bytes -= _held_cost(repair.payload)
            if oid in self.incoming and not obj.complete:
                self._take_repair(obj, repair, now)
        if obj.complete and oid in self.incoming:
            self._complete_incoming(obj, now)
        sent_through = self._probed_unannounced.pop(oid, 0)
        if sent_through and oid in self.incoming:
            # A PROBE came before the ANNOUNCE (R9.1-6): it said which chunks were sent, and with
            # no chunk of them here nothing else would open the gap until the next PROBE. Answered
            # as a PROBE arriving now (R9.1-7), empty NACK included: it tells the sender that the
            # ANNOUNCE arrived, a reordering allowance before the gap's report does.
            missing = obj.on_probe(min(sent_through, obj.chunk_count), now, self._renack_interval,
                                   self._largest_pn, self._reorder_allowance)
            self._queue_nacks(oid, missing, always=True)

    def _on_data(self, packet: Data, pn: int, now: float) -> None:
        oid = packet.object_id
        obj = self.incoming.get(oid)
        if obj is None:
            if self._unannounced_id(oid, "data", now):
                self._hold_unannounced(packet, pn, now)
            return
        self._store_chunk(obj, packet.chunk_index, packet.chunk, pn, now)
        if obj.decoder is not None and obj.covers(packet.chunk_index):
            self._apply_repaired(obj, obj.try_decode(), now)
        if obj.complete and oid in self.incoming:
            self._complete_incoming(obj, now)

    def _unannounced_id(self, oid: int, what: str, now: float) -> bool:
        """DATA or REPAIR for an object we are not receiving: answered with its final word if we
        finished it, a violation past the id limit; True when it may still be announced."""
        if self._in_finished(oid):
            self.counters["duplicates"] += 1
            self._repeat_final_word_in(oid, now)
            return False
        if oid >= self._in_id_limit:
            raise _Violation(ErrorCode.FLOW_CONTROL_ERROR, f"{what} for object {oid} beyond the id limit")
        return True

    def _on_repair(self, packet: Repair, pn: int, now: float) -> None:
        oid = packet.object_id
        self.counters["repairs_received"] += 1
        obj = self.incoming.get(oid)
        if obj is None:
            if self._unannounced_id(oid, "REPAIR", now):
                # Its ANNOUNCE was lost or is late: a burst of loss that takes a small object's
                # ANNOUNCE and chunk often spares REPAIRs sent right behind them (R9.6-3).
                self._hold_unannounced(packet, pn, now)
            return
        self._take_repair(obj, packet, now)
        if obj.complete and oid in self.incoming:
            self._complete_incoming(obj, now)

    def _take_repair(self, obj: IncomingObject, packet: Repair, now: float) -> None:
        if packet.first_index + packet.count > obj.chunk_count:
            raise _Violation(ErrorCode.PROTOCOL_VIOLATION, f"REPAIR window runs past chunk {obj.chunk_count - 1}")
        if len(packet.payload) != obj.chunk_size:
            raise _Violation(ErrorCode.PROTOCOL_VIOLATION, f"REPAIR payload of {len(packet.payload)} bytes, chunk size {obj.chunk_size}")
        if not self.config.repair:
            self.counters["ignored_packets"] += 1  # we did not offer to decode (spec R9.6-1)
            return
        self._apply_repaired(obj, obj.add_repair(packet.first_index, packet.seed, packet.count, packet.payload, now), now)

    def _apply_repaired(self, obj: IncomingObject, chunks: dict[int, bytes] | None, now: float) -> None:
        if not chunks:
            return
        for index, chunk in sorted(chunks.items()):
            if not obj.store_recovered(index, chunk, now):
                return
            self.counters["chunks_repaired"] += 1

    def _store_chunk(self, obj: IncomingObject, index: int, chunk: bytes, pn: int, now: float) -> None:
        if index >= obj.chunk_count:
            raise _Violation(ErrorCode.PROTOCOL_VIOLATION, f"chunk {index} of a {obj.chunk_count}-chunk object")
        if len(chunk) != obj.expected_len(index):
            raise _Violation(ErrorCode.PROTOCOL_VIOLATION, f"chunk {index} has {len(chunk)} bytes")
        result = obj.add_chunk(index, chunk, pn, now, self._reorder_allowance)
        if result is None:
            self.counters["duplicates"] += 1
            return
        self.counters["chunks_received"] += 1
        late, overtaken = result
        if late:
            self.counters["late_arrivals"] += 1
        # The allowance must cover at least the reordering seen from now on (as RACK widens its
        # window on a spurious repair); a gap filled before its report counts as well, so that a
        # jittery path need not first cost a round of spurious reports.
        self._reorder_observed = max(self._reorder_observed, 1.25 * max(late, overtaken))

    def _hold_unannounced(self, packet: Data | Repair, pn: int, now: float) -> None:
        """Keep a chunk or REPAIR of an object whose ANNOUNCE has not come, within the buffer's
        bound (R9.1-6, R9.6-3), and ask for the ANNOUNCE."""
        size = _held_cost(packet.chunk if isinstance(packet, Data) else packet.payload)
        if self._unannounced_bytes + size > self.config.unannounced_buffer:
            self.counters["unannounced_dropped"] += 1
        else:
            if isinstance(packet, Data):
                self._unannounced.setdefault(packet.object_id, []).append((packet.chunk_index, packet.chunk, pn))
            else:
                self._unannounced_repairs.setdefault(packet.object_id, []).append(packet)
            self._unannounced_bytes += size
        self._ask_for_announce(packet.object_id, now)

    def _drop_unannounced(self, oid: int) -> None:
        for _, chunk, _ in self._unannounced.pop(oid, []):
            self._unannounced_bytes -= _held_cost(chunk)
        for repair in self._unannounced_repairs.pop(oid, []):
            self._unannounced_bytes -= _held_cost(repair.payload)

    def _ask_for_announce(self, oid: int, now: float) -> None:
        last = self._final_word_sent.get(oid, -math.inf)
        if now - last >= self._renack_interval:
            _remember_bounded(self._final_word_sent, oid, now)
            self._control.append(Nack(oid, (), announce_missing=True, largest_pn=max(self._largest_pn, 0)))

    def _complete_incoming(self, obj: IncomingObject, now: float) -> None:
        if not obj.verify():
            if obj.repaired:
                # A wrong REPAIR, not the sender's data, may be to blame: fetch the rebuilt chunks again.
                self.counters["repair_mismatches"] += 1
                obj.undo_repairs(now)
                return
            self.counters["digest_failures"] += 1
            # An empty object cannot be re-requested: its digest is simply wrong (spec R10.2-3).
            if obj.chunk_count == 0 or obj.digest_failures + 1 >= self.config.max_digest_failures:
                reason = "SHA-256 mismatch" if obj.chunk_count == 0 else f"SHA-256 mismatch, {obj.digest_failures + 1} times"
                self._fail_incoming(obj, ErrorCode.DIGEST_MISMATCH, reason, by_peer=False, tell_peer=True)
                return
            obj.reset_after_digest_failure(now)
            return
        del self.incoming[obj.object_id]
        self.incoming_bytes -= obj.size
        self.counters["objects_received"] += 1
        self._finish_incoming_id(obj.object_id, ErrorCode.NO_ERROR, obj.size)
        # Copies, on a lossy path: the sender learns of delivery from nothing else, and a lost
        # COMPLETE leaves it probing, a probe timeout or more (spec R9.1-10).
        self._control.extend(Complete(obj.object_id) for _ in range(self._copies()))
        _remember_bounded(self._final_word_sent, obj.object_id, now)
        stats = obj.stats()
        stats["elapsed_s"] = round(now - obj.started, 6)
        self._events.append(
            ObjectReceived(
                self.session_id,
                obj.object_id,
                obj.name,
                obj.content_type,
                bytes(obj.buffer),
                obj.want_reply,
                obj.in_reply_to,
                stats,
            )
        )

    def _copies(self) -> int:
        """How many copies a packet whose loss costs a timeout goes in (copies_against)."""
        return copies_against(self._loss_for_copies(), self._loss_continuation())

    def _probe_copies(self, pto: float, tries: int) -> int:
        """Copies of the ``tries``-th PROBE or PING in a row that no answer followed: as many more
        than the first's as the wait before it was longer than one PTO, so that the probes' packet
        rate stays that of the first. A path that loses in bursts counted in packets (netem's
        Gilbert-Elliott) stays in its bad state while nothing crosses it: packets, not time, move
        it on, and a doubled wait with a single probe would halve them."""
        waited = self._probe_backoff(pto, tries - 1) / pto
        return min(MAX_PROBE_COPIES, math.ceil(self._copies() * waited - 1e-9))

    def _loss_continuation(self) -> float | None:
        """The chance that a packet right after a lost one is lost too, from the runs missing among
        the peer's packet numbers (a mean run of b packets: 1 - 1/b), once COPIES_MIN_RUNS runs
        have shown; None before. Independent loss gives the loss rate itself."""
        if self._gap_runs < COPIES_MIN_RUNS:
            return None
        _, missing = self._peer_packets_missing()
        return max(0.0, 1.0 - self._gap_runs / missing) if missing else None

    def _peer_packets_missing(self) -> tuple[int, int]:
        """The peer's packet numbers from the lowest received to the largest, and how many of them
        have not arrived."""
        span = self._largest_pn + 1 - self._lowest_pn
        return span, span - min(self._recv_packets, span)

    def _loss_for_copies(self) -> float:
        """The loss rate that sizes copies (copies_against). Once our own packets' count covers
        COPIES_OWN_SPAN of them, their smoothed rate (spec 11.2) alone: it is the path the copies
        take, while the peer's missing packet numbers may be drops from a queue its own flight
        overran (behind five packets of queue at 800 ms a receiver saw 47 % of an image's datagrams
        missing, and answered with six COMPLETEs ahead of its reply, on a return path that lost
        none). Before, the worse of that rate and the share missing from the peer's packet numbers:
        a receiver sends few packets of its own, and the other direction is usually alike. Over
        fewer than COPIES_MIN_SPAN packet numbers, what is missing is counted against that many: a
        handful says little (a few copies too few cost a round trip, not a failed object), but 21
        gone of 29 on a path losing 60-80 % each way, whose ACKs rarely bring our own rate a sample,
        is not read as no loss at all."""
        if self.sent.loss_samples >= COPIES_OWN_SPAN:
            return self.sent.loss_rate
        span, missing = self._peer_packets_missing()
        incoming = missing / max(span, COPIES_MIN_SPAN)
        return max(self.sent.loss_rate, incoming)

    def _fail_incoming(self, obj: IncomingObject, code: int, reason: str, *, by_peer: bool, tell_peer: bool) -> None:
        if self.incoming.pop(obj.object_id, None) is not None:
            self.incoming_bytes -= obj.size
        self._finish_incoming_id(obj.object_id, code, obj.size)
        if tell_peer:
            self._control.append(Cancel(obj.object_id, CANCEL_ORIGIN_RECIPIENT, code, reason))
        self._events.append(ObjectFailed(self.session_id, obj.object_id, False, code, reason, by_peer, obj.stats()))

    def _finish_incoming_id(self, oid: int, code: int, size: int) -> None:
        self._probed_unannounced.pop(oid, None)
        _remember_bounded(self._in_final, oid, code)
        self._in_finished_bytes += size
        self._in_finished_above.add(oid)
        while self._in_watermark in self._in_finished_above:
            self._in_finished_above.discard(self._in_watermark)
            self._in_watermark += 1
        # Credit (spec 11.3): both limits only grow, and a raise is acknowledged at once, not after
        # the delayed-ACK timer the finishing packet set (R9.2-5): a sender may be waiting for it.
        limits = (self._in_id_limit, self._in_announce_limit)
        self._in_id_limit = max(self._in_id_limit, self._in_watermark + self.local_params.max_concurrent_objects)
        self._in_announce_limit = max(
            self._in_announce_limit, self._in_finished_bytes + self.local_params.max_buffered_bytes
        )
        if (self._in_id_limit, self._in_announce_limit) != limits:
            self._ack_deadline = 0.0

    def _repeat_final_word_in(self, oid: int, now: float, *, probed: bool = False) -> None:
        """Packets about an incoming object we finished: say COMPLETE/CANCEL again, rate-limited.

        A PROBE always gets its answer, and the first of a round gets as many copies as the
        COMPLETE did (R9.1-9, R9.1-10): the sender probed because the COMPLETE and every answer
        since were lost, and it waits a doubled timeout for the next."""
        fresh = now - self._final_word_sent.get(oid, -math.inf) >= max(self.rtt.smoothed / 2, GRANULARITY)
        if not (fresh or probed):
            return
        _remember_bounded(self._final_word_sent, oid, now)
        code = self._in_final.get(oid)
        if code is None:
            # Finished so long ago that its outcome is forgotten: without an answer its sender would
            # probe it for ever (spec R9.1-9).
            word: Packet = Cancel(oid, CANCEL_ORIGIN_RECIPIENT, ErrorCode.INTERNAL_ERROR, "outcome forgotten")
        elif code == ErrorCode.NO_ERROR:
            word = Complete(oid)
        else:
            word = Cancel(oid, CANCEL_ORIGIN_RECIPIENT, code, "")
        self._control.extend(word for _ in range(self._copies() if probed and fresh else 1))

    def _on_probe(self, packet: Probe, now: float) -> None:
        oid = packet.object_id
        obj = self.incoming.get(oid)
        if obj is None:
            if self._in_finished(oid):
                self._repeat_final_word_in(oid, now, probed=True)
            elif oid >= self._in_id_limit:
                raise _Violation(ErrorCode.FLOW_CONTROL_ERROR, f"probe for object {oid} beyond the id limit")
            else:
                self._final_word_sent.pop(oid, None)
                self._ask_for_announce(oid, now)
                if oid in self._probed_unannounced or len(self._probed_unannounced) < MAX_PROBED_UNANNOUNCED:
                    self._probed_unannounced[oid] = max(packet.sent_through, self._probed_unannounced.get(oid, 0))
            return
        if packet.sent_through > obj.chunk_count:
            raise _Violation(ErrorCode.PROTOCOL_VIOLATION, "PROBE sent_through beyond the chunk count")
        missing = obj.on_probe(packet.sent_through, now, self._renack_interval, self._largest_pn, self._reorder_allowance)
        self.counters["chunks_nacked_by_us"] += len(missing)
        self._queue_nacks(oid, missing, always=True)

    def _queue_nacks(self, oid: int, missing: list[int], always: bool = False) -> None:
        """NACK packets listing ``missing`` (sorted), each within the peer's datagram limit."""
        ranges = to_ranges(missing)
        largest = max(self._largest_pn, 0)
        if not ranges:
            if always:
                self._control.append(Nack(oid, (), largest_pn=largest))
                self.counters["nacks_sent"] += 1
            return
        budget = self.peer_params.max_datagram_size - _NACK_FIXED_LEN
        batch: list[tuple[int, int]] = []
        for rng in ranges:
            candidate = (*batch, rng)
            if batch and min(codec.nack_sizes(candidate)) > budget:
                self._control.append(Nack(oid, tuple(batch), largest_pn=largest))
                self.counters["nacks_sent"] += 1
                batch = [rng]
            else:
                batch.append(rng)
        if batch:
            self._control.append(Nack(oid, tuple(batch), largest_pn=largest))
            self.counters["nacks_sent"] += 1

    # -- sender side -----------------------------------------------------------------------------

    def _check_object_fits(self, obj: OutgoingObject, now: float) -> None:
        limit = self.peer_params.max_object_size
        if obj.size > limit:
            self._fail_outgoing(
                obj, ErrorCode.OBJECT_TOO_LARGE, f"{obj.size} bytes exceeds the receiver's limit of {limit} bytes",
                by_peer=False, now=now, tell_peer=False,
            )
        elif obj.chunk_size + OVERHEAD + DATA_PREFIX_LEN > self.peer_params.max_datagram_size:
            self._fail_outgoing(
                obj, ErrorCode.LIMIT_REACHED, "chunk size too large for the receiver's datagram limit",
                by_peer=False, now=now, tell_peer=False,
            )

    def _promote_queued(self, now: float) -> None:
        """Announce queued objects, in id order, as the peer's credit allows (spec 8.2)."""
        if self._deferred_cancels and self.state is not State.CLIENT_INITIAL:
            ready = [c for c in self._deferred_cancels if c.object_id < self._peer_id_limit]
            if ready:
                self._deferred_cancels = [c for c in self._deferred_cancels if c.object_id >= self._peer_id_limit]
                for cancel in ready:
                    self._send_cancel(cancel, now)
        # Announced objects with chunks still to send go ahead of those announced after them: no
        # more is announced than the path can carry before a later object's receiver would give it
        # up (R12.3-1), or 20 objects at 20 kbit/s all wait for their turn at once.
        backlog: float | None = None
        lookahead = 0.0
        for obj in self.outgoing.values():
            if obj.state is not OutState.QUEUED:
                continue
            if obj.object_id >= self._peer_id_limit:
                return
            if backlog is None:
                backlog = sum((o.chunk_count - o.next_new) * o.chunk_size
                              for o in self.outgoing.values() if o.state is OutState.SENDING)
                lookahead = self._announce_lookahead()
            if backlog > lookahead:
                return
            backlog += obj.chunk_count * obj.chunk_size
            if self._announced_bytes + obj.size > self._peer_announce_limit:
                return
            obj.state = OutState.SENDING
            obj.announce_pending = True
            obj.progress_sent_at = now
            # Beyond the first copy and the echoes (R8.2-10), as many as the loss calls for.
            obj.announces_owed = max(0, self._copies() - 1 - obj.announce_echoes_left)
            obj.last_feedback = now
            self._announced_bytes += obj.size
            if obj.chunk_count == 0:
                obj.tail_probe_pending = True
            self._note_backlog()

    def _announce_lookahead(self) -> float:
        """Bytes of first transmissions that may wait ahead of an object being announced: as much
        as the path delivers in half the time an object may go without a chunk (R12.3-1). Until
        a rate is measured, the initial window's worth: what the first flight carries anyway."""
        peak = self._delivery_peak.value
        if peak <= 0:
            return float(self.config.initial_window * self._mss)
        return max(LOOKAHEAD_MIN_CHUNKS * self._mss, peak * self._starved_after() / 2)

    def _note_backlog(self) -> None:
        """An object started: if every chunk waiting to go fits in the free window, the flight that
        carries them is application-limited from its first packet (spec 11.2)."""
        waiting = sum(
            (obj.chunk_count - obj.next_new + len(obj.retx) + obj.repairs_pending) * obj.chunk_size
            for obj in self.outgoing.values()
            if obj.state is OutState.SENDING
        )
        self.sent.expect_app_limited(waiting < self.controller.cwnd - self.sent.inflight)

    def _on_ack(self, packet: Ack, now: float) -> None:
        if packet.largest_pn >= self.sent.next_pn:
            raise _Violation(ErrorCode.PROTOCOL_VIOLATION, f"ACK for packet {packet.largest_pn} never sent")
        send_time = self.sent.send_time(packet.largest_pn)
        rtt = None
        if packet.largest_pn > self.sent.largest_acked and send_time is not None:
            rtt = now - send_time
            self._rtt_sample(rtt, packet.ack_delay_us / 1e6, now)
        self._last_ack_time = now
        self._window_probes = 0
        sample = self.sent.on_ack(
            now,
            packet.largest_pn,
            packet.received_bytes,
            packet.received_packets,
            rtt,
            packet.ack_delay_us / 1e6,
            self._sender_reorder_allowance,
            self.rtt.known_jitter,
        )
        if sample is not None:
            self.controller.on_rate_sample(now, sample)
            self._delivery_peak.update(now, sample.delivery_rate)
        self._peer_id_limit = max(self._peer_id_limit, packet.object_id_limit)
        self._peer_announce_limit = max(self._peer_announce_limit, packet.announce_limit)
        if self._cancels_unconfirmed:
            # The peer's credit is its lowest unfinished id plus its max_concurrent_objects (R11.3-2).
            finished_below = self._peer_id_limit - self.peer_params.max_concurrent_objects
            for oid in [oid for oid in self._cancels_unconfirmed if oid < finished_below]:
                self._cancels_unconfirmed.pop(oid, None)

    def _rtt_sample(self, rtt: float, ack_delay: float, now: float) -> None:
        self.rtt.update(rtt, ack_delay)
        self.controller.on_rtt_sample(now, self.rtt.latest)

    def _outgoing_for_feedback(self, oid: int, what: str) -> OutgoingObject | None:
        obj = self.outgoing.get(oid)
        if obj is not None and obj.state is not OutState.QUEUED:
            return obj
        if oid >= self._next_object_id or (obj is not None and obj.state is OutState.QUEUED):
            raise _Violation(ErrorCode.PROTOCOL_VIOLATION, f"{what} for object {oid}, which we never announced")
        return None

    def _on_nack(self, packet: Nack, now: float) -> None:
        self.counters["nacks_received"] += 1
        # Its Largest PN reports what arrived as an ACK's does: while the window is full and the
        # newest datagrams were lost, the NACKs for them are often all that comes back.
        self.sent.on_reported(packet.largest_pn)
        obj = self._outgoing_for_feedback(packet.object_id, "NACK")
        if obj is None:
            code = self._out_final.get(packet.object_id)
            if code:  # we gave up on it: say so again
                self._control.append(Cancel(packet.object_id, CANCEL_ORIGIN_SENDER, code, ""))
            return
        # With announce_missing set the list means nothing, whatever it holds (R5.7-5).
        missing = () if packet.announce_missing else packet.missing
        if missing:
            last_first, last_count = missing[-1]
            if last_first + last_count > obj.chunk_count:
                raise _Violation(ErrorCode.PROTOCOL_VIOLATION, "NACK lists chunks beyond the object's chunk count")
        if not packet.announce_missing:
            obj.announce_confirmed = True
        else:
            obj.announce_pending = obj.announce_lost = True
            # Every chunk went out while the peer did not know the object; what it kept of them
            # (R9.1-6) only a PROBE behind the ANNOUNCE makes it say at once.
            obj.probe_after_announce = obj.next_new == obj.chunk_count > 0
        wait = min(self.rtt.smoothed, self.rtt.latest) + self._nack_reorder_allowance
        queued = obj.on_nack(missing, packet.largest_pn, now, wait, self.sent.loss_for_planning)
        self.counters["chunks_nacked_by_peer"] += queued

    def _on_complete(self, packet: Complete, now: float) -> None:
        obj = self._outgoing_for_feedback(packet.object_id, "COMPLETE")
        if obj is None:
            self._cancels_unconfirmed.pop(packet.object_id, None)  # the peer has its outcome
            return
        if obj.next_new < obj.chunk_count:
            raise _Violation(ErrorCode.PROTOCOL_VIOLATION, f"COMPLETE for object {obj.object_id} before all chunks were sent")
        obj.state = OutState.DELIVERED
        obj.finished_at = now
        del self.outgoing[obj.object_id]
        _remember_bounded(self._out_final, obj.object_id, ErrorCode.NO_ERROR)
        self.counters["objects_delivered"] += 1
        self._events.append(ObjectDelivered(self.session_id, obj.object_id, obj.stats()))

    def _on_cancel(self, packet: Cancel, now: float) -> None:
        oid = packet.object_id
        reason = packet.reason or error_name(packet.error_code)
        if packet.origin == CANCEL_ORIGIN_SENDER:
            obj_in = self.incoming.get(oid)
            if obj_in is not None:
                self._fail_incoming(obj_in, packet.error_code, reason or "abandoned by the sender", by_peer=True, tell_peer=False)
            elif not self._in_finished(oid):
                if oid >= self._in_id_limit:
                    raise _Violation(ErrorCode.FLOW_CONTROL_ERROR, f"CANCEL for object {oid} beyond the id limit")
                self._drop_unannounced(oid)
                self._finish_incoming_id(oid, packet.error_code, 0)
            return
        obj_out = self._outgoing_for_feedback(oid, "CANCEL")
        if obj_out is None:
            self._cancels_unconfirmed.pop(oid, None)  # the peer has its outcome
        else:
            self._fail_outgoing(obj_out, packet.error_code, reason or "refused by the receiver", by_peer=True, now=now, tell_peer=False)

    def _fail_outgoing(
        self, obj: OutgoingObject, code: int, reason: str, *, by_peer: bool, now: float, tell_peer: bool
    ) -> None:
        was_announced = obj.state is not OutState.QUEUED
        if by_peer and was_announced and code == ErrorCode.OBJECT_TOO_LARGE:
            self._announced_bytes -= obj.size  # never taken on: it counts in neither sum (R11.3-5)
        obj.state = OutState.FAILED
        obj.finished_at = now
        self.outgoing.pop(obj.object_id, None)
        _remember_bounded(self._out_final, obj.object_id, code or ErrorCode.CANCELLED)
        self.counters["objects_failed"] += 1
        # Every id must end at the receiver, or its credit window would stall: an id that was
        # never announced is closed with a CANCEL too, under the same credit rule (spec R8.2-9).
        if tell_peer and was_announced:
            self._send_cancel(Cancel(obj.object_id, CANCEL_ORIGIN_SENDER, code, reason[:200]), now)
        elif not was_announced and not by_peer:
            self._deferred_cancels.append(Cancel(obj.object_id, CANCEL_ORIGIN_SENDER, code, reason[:200]))
        self._events.append(ObjectFailed(self.session_id, obj.object_id, True, code, reason, by_peer, obj.stats()))

    def _send_cancel(self, cancel: Cancel, now: float) -> None:
        """Send our CANCEL (Origin 1) and keep sending it until the peer shows the id finished."""
        self._control.append(cancel)
        self._cancels_unconfirmed[cancel.object_id] = (cancel, now + self._pto(), 1)

    def _on_close(self, packet: Close, now: float) -> None:
        reason = packet.reason or ("closed by the peer" if packet.error_code == 0 else "aborted by the peer")
        self._fail_all(packet.error_code or ErrorCode.CANCELLED, reason, by_peer=True, now=now)
        self.close_code = packet.error_code
        self.close_reason = reason
        self.state = State.DRAINING
        self._close_deadline = now + 3 * self.rtt.pto(self.peer_params.max_ack_delay_ms / 1000)
        self._events.append(ConnectionClosed(self.session_id, packet.error_code, reason, by_peer=True))

    # ------------------------------------------------------------------------------------------
    # Closing

    def _start_closing(self, now: float, code: int, reason: str, violation: bool = False) -> None:
        self._fail_all(code or ErrorCode.CANCELLED, reason or "session closed", by_peer=False, now=now)
        self.close_code = code
        self.close_reason = reason
        self.state = State.CLOSING
        self._control.clear()
        # Two copies: a lost CLOSE leaves a silent peer waiting out its idle timeout.
        for _ in range(CLOSE_COPIES):
            self._control.append(Close(code, reason[:200]))
        self._close_deadline = now + 3 * self.rtt.pto(self.peer_params.max_ack_delay_ms / 1000)
        self._events.append(ConnectionClosed(self.session_id, code, reason or ("closed" if code == 0 else "aborted"), by_peer=False))

    def _queue_close_again(self) -> None:
        self._control.append(Close(self.close_code or 0, self.close_reason[:200]))

    def _fail_all(self, code: int, reason: str, *, by_peer: bool, now: float) -> None:
        for obj in list(self.outgoing.values()):
            self._fail_outgoing(obj, code, reason, by_peer=by_peer, now=now, tell_peer=False)
        for obj_in in list(self.incoming.values()):
            self._fail_incoming(obj_in, code, reason, by_peer=by_peer, tell_peer=False)

    def _enter_closed(self, now: float, code: int, reason: str, by_peer: bool) -> None:
        if self.state is State.CLOSED:
            return
        was_closing = self.state in (State.CLOSING, State.DRAINING)
        self._fail_all(code, reason, by_peer=by_peer, now=now)
        self.state = State.CLOSED
        self.closed_at = now
        self._control.clear()
        if not was_closing:
            self.close_code = code
            self.close_reason = reason
            self._events.append(ConnectionClosed(self.session_id or self.initial_id, code, reason, by_peer))
        if self._on_closed is not None:
            self._on_closed(self)

    # ------------------------------------------------------------------------------------------
    # Timers

    def next_timer(self) -> float | None:
        if self.state is State.CLOSED:
            return None
        if self.state in (State.CLOSING, State.DRAINING):
            t = self._close_deadline
            if self._control and self.state is State.CLOSING:
                return self._next_send_time if t is None else min(t, self._next_send_time)
            return t
        if self.state is State.CLIENT_INITIAL:
            t = self._handshake_deadline
            return t if self._next_initial is None else min(t, self._next_initial)
        candidates: list[float] = [self._last_recv + self.idle_timeout]
        if self.awaiting_validation:
            candidates.append(self._handshake_deadline)
        if self._ack_now or self._control:
            candidates.append(self._next_send_time if not self._ack_now else 0.0)
        if self._ack_deadline is not None:
            candidates.append(self._ack_deadline)
        if self.config.keepalive:
            candidates.append(max(self._last_recv, self._last_ping) + self.idle_timeout / 3)
        if self._confirm_at is not None:
            candidates.append(self._confirm_at)
        candidates.extend(resend_at for _, resend_at, _ in self._cancels_unconfirmed.values())
        pto = self._pto()
        data_waiting = False
        for obj in self.outgoing.values():
            if obj.state is OutState.SENDING:
                if obj.has_data_to_send or obj.announce_pending or obj.tail_probe_pending:
                    data_waiting = True
                else:
                    candidates.append(self._probe_time(obj, pto))
            if obj.deadline is not None:
                candidates.append(obj.deadline)
        if data_waiting and self.address_validated:  # unvalidated: nothing to send until the client speaks
            if self.sent.inflight < self.controller.cwnd:
                candidates.append(self._next_send_time)
            else:
                # Window-blocked: if no ACK frees it within a PTO, ask for one (spec 9.4).
                candidates.append(self._last_ack_time + self._probe_backoff(pto, self._window_probes))
        for obj_in in self.incoming.values():
            due = obj_in.next_due()
            if due is not None:
                candidates.append(due)
            candidates.append(obj_in.last_progress + self.idle_timeout)
            candidates.append(self._silence_deadline(obj_in, pto))
        best: float = min(candidates)
        return best

    @property
    def idle_timeout(self) -> float:
        """The effective idle timeout: the lower of the two advertised (spec 6)."""
        return min(self.local_params.idle_timeout_ms, self.peer_params.idle_timeout_ms) / 1000

    def _pto(self) -> float:
        return self.rtt.pto(self.peer_params.max_ack_delay_ms / 1000)

    def _silence_deadline(self, obj_in: IncomingObject, pto: float) -> float:
        """When to ask for the rest of ``obj_in`` from a sender silent since its ANNOUNCE: after a
        PTO of silence, then as often as the sender would probe, while it lasts (R9.1-11). Never
        once every chunk has been seen."""
        if obj_in.high >= obj_in.chunk_count:
            return math.inf
        if self._silence_goes_on(obj_in):
            return obj_in.silence_last + self._probe_backoff(pto, obj_in.silence_reports)
        return max(obj_in.started, self._last_object_traffic) + pto

    def _silence_goes_on(self, obj_in: IncomingObject) -> bool:
        """Nothing of any object has come since ``obj_in``'s last report to a silent sender."""
        return obj_in.silence_reports > 0 and obj_in.silence_last > self._last_object_traffic

    def _backed_off(self, pto: float, tries: int) -> float:
        """The wait before the next copy of a packet no answer confirmed yet: doubling from one PTO,
        up to the keepalive interval."""
        return max(pto, min(pto * 2.0 ** min(tries, 16), self.idle_timeout / 3))

    def _probe_backoff(self, pto: float, tries: int) -> float:
        # Doubling spares a path that is gone; but past a fifth of a second (two round trips, on a
        # long path) a few PROBEs or PINGs of some 60 bytes cost next to nothing, while the interval
        # is how long a transfer sits idle after an outage ends. Never sooner than one PTO.
        backoff = pto * (2.0 ** min(tries, 6))
        return max(pto, min(backoff, max(PROBE_INTERVAL_CAP, 2 * self.rtt.smoothed)))

    def _probe_time(self, obj: OutgoingObject, pto: float) -> float:
        return obj.last_feedback + self._probe_backoff(pto, obj.probe_count)

    def handle_timer(self, now: float) -> None:
        state = self.state
        if state is State.CLOSED:
            return
        if state in (State.CLOSING, State.DRAINING):
            if self._close_deadline is not None and now >= self._close_deadline:
                self._enter_closed(now, self.close_code or 0, self.close_reason, by_peer=False)
            return
        if state is State.CLIENT_INITIAL:
            if now >= self._handshake_deadline:
                self._enter_closed(now, ErrorCode.HANDSHAKE_TIMEOUT, "no answer from the receiver (handshake timeout)", by_peer=False)
            return
        if self.awaiting_validation and now >= self._handshake_deadline:
            self._enter_closed(now, ErrorCode.HANDSHAKE_TIMEOUT, "client never confirmed the handshake", by_peer=False)
            return
        if now >= self._last_recv + self.idle_timeout:
            self._enter_closed(now, ErrorCode.IDLE_TIMEOUT, f"no packet from the peer for {self.idle_timeout:.1f} s", by_peer=False)
            return
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._ack_now = True
        if self.config.keepalive and now >= max(self._last_recv, self._last_ping) + self.idle_timeout / 3:
            self._last_ping = now
            self._control.append(Ping())
        pto = self._pto()
        if self._confirm_at is not None and now >= self._confirm_at:
            # Our ACK of ACCEPT is not ack-eliciting: if it was lost, the server heard nothing from
            # us and drops the session at its handshake timeout. A PING draws an ACK (R7.2-10).
            self._confirm_pings += 1
            self._confirm_at = now + self._backed_off(pto, self._confirm_pings)
            self._control.append(Ping())
        for oid, (cancel, resend_at, copies) in list(self._cancels_unconfirmed.items()):
            if now >= resend_at:
                self._control.append(cancel)
                self._cancels_unconfirmed[oid] = (cancel, now + self._backed_off(pto, copies + 1), copies + 1)
        if (
            self.sent.inflight >= self.controller.cwnd
            and now >= self._last_ack_time + self._probe_backoff(pto, self._window_probes)
        ):
            self._window_probes += 1
            self._last_ack_time = now
            self._control.extend(Ping() for _ in range(self._probe_copies(pto, self._window_probes)))
        for obj in list(self.outgoing.values()):
            if obj.deadline is not None and now >= obj.deadline:
                self._fail_outgoing(obj, ErrorCode.DEADLINE_EXPIRED, "deadline passed before delivery",
                                    by_peer=False, now=now, tell_peer=obj.state is not OutState.QUEUED)
                continue
            if (
                obj.state is OutState.SENDING
                and not (obj.has_data_to_send or obj.announce_pending or obj.tail_probe_pending)
                and now >= self._probe_time(obj, pto)
            ):
                obj.probe_count += 1
                if obj.next_new == 0 or not obj.announce_confirmed:
                    obj.announce_pending = obj.announce_lost = True  # the peer may not have it: repeat it
                probe = self._probe(obj, now)
                copies = self._probe_copies(pto, obj.probe_count)
                if obj.announce_pending and obj.next_new > 0 and obj.probe_count % 2 == 0:
                    # Every other time the PROBE leads (R9.4-2): a queue that passes only the head of
                    # each burst would otherwise pass nothing but ANNOUNCEs the peer may well have.
                    obj.lead_probe = probe
                    copies -= 1
                self._control.extend(probe for _ in range(copies))
                # Chunks the receiver said it lacked, sent again since, and not heard of for a
                # PTO go with the PROBE (R9.4-4): a return path that loses NACKs in a long run
                # would otherwise leave them waiting for one to get through, however many PROBEs
                # arrive. Behind its first copy (spread_copies), whose answer, if the object is
                # done, comes in as many copies as the COMPLETE did. As many chunk copies as PROBE
                # copies, going round the chunks again when they are fewer: the PROBE is sent in
                # copies because single packets get lost, and a lone chunk sent once beside them
                # was (a one-chunk reply at 80 % loss: nine copies over 25 s, all lost, and the
                # receiver gave it up).
                chunks = obj.probe_chunks(now - pto, copies)
                for k in range(copies if chunks else 0):
                    index = chunks[k % len(chunks)]
                    self._control.append(Data(obj.object_id, index, obj.chunk(index)))
        reorder_renack = self._renack_interval
        for obj_in in list(self.incoming.values()):
            if now >= obj_in.last_progress + self.idle_timeout:
                self._fail_incoming(obj_in, ErrorCode.OBJECT_TIMEOUT, "no data for the object within the timeout",
                                    by_peer=False, tell_peer=True)
                continue
            if now >= self._silence_deadline(obj_in, pto):
                # Nothing of any object for a PTO since its ANNOUNCE: ask for the rest. What the
                # sender has not sent yet, it ignores (R9.3-8).
                obj_in.silence_reports = obj_in.silence_reports + 1 if self._silence_goes_on(obj_in) else 1
                obj_in.silence_last = now
                self._queue_nacks(obj_in.object_id, obj_in.unseen_tail())
            due = obj_in.next_due()
            if due is not None and now >= due:
                allowance = self._reorder_allowance
                missing = obj_in.due_missing(now, reorder_renack, self._largest_pn, allowance,
                                             min(self._reorder_observed, allowance))
                self.counters["chunks_nacked_by_us"] += len(missing)
                self._queue_nacks(obj_in.object_id, missing)

    # ------------------------------------------------------------------------------------------
    # Output

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        state = self.state
        if state is State.CLOSED or state is State.DRAINING:
            return out
        if state is State.CLIENT_INITIAL:
            if self._next_initial is not None and now >= self._next_initial:
                # Copies: on a lossy link a lost handshake costs a whole retransmission interval.
                for _ in range(initial_copies(len(self._initial_sends))):
                    out.append(self._emit(Initial(self.local_params, self._token), now, self.initial_id))
                self._initial_sends.append(now)
                backoff = 3 * self.config.initial_rtt * (2.0 ** (len(self._initial_sends) - 1))
                self._next_initial = now + min(backoff, max(INITIAL_INTERVAL_CAP, 3 * self.config.initial_rtt))
            return out
        if state is State.CLOSING:
            while self._control:
                packet = self._control.popleft()
                out.append(self._emit(packet, now))
                self._last_close_sent = now
            return out
        if self._ack_now or (self._ack_deadline is not None and now >= self._ack_deadline):
            ack, copies = self._make_ack(now), self._ack_copies
            self._ack_copies = 1
            out.extend(self._emit(ack, now) for _ in range(copies))
            self.counters["acks_sent"] += copies
        self._promote_queued(now)
        if not any(obj.state is OutState.SENDING and obj.has_data_to_send for obj in self.outgoing.values()):
            # What goes now (a PROBE, a PING, an ANNOUNCE again, a NACK) is sent for want of data:
            # timed from the last flight, long ago, its sample would read the path as nearly idle.
            self.sent.expect_app_limited(True)
        # Announcements go ahead of other control packets, but never ahead of an ACCEPT: the
        # session's first packet is its ACCEPT (spec R8.3-1).
        announces: list[Announce | Probe] = []
        for obj in self.outgoing.values():
            if obj.announce_pending:
                obj.announce_pending = False
                if obj.lead_probe is not None:
                    announces.append(obj.lead_probe)
                    obj.lead_probe = None
                # Sent again because the peer lacks it: as many copies as the loss calls for.
                copies = self._copies() if obj.announce_lost else 1
                obj.announce_lost = False
                announces.extend(obj.announce() for _ in range(copies))
                if obj.probe_after_announce:
                    obj.probe_after_announce = False
                    announces.append(self._probe(obj, now))
        if announces or len(self._control) > 1:
            queued = list(self._control)
            accepts = 0
            while accepts < len(queued) and isinstance(queued[accepts], Accept):
                accepts += 1
            self._control = deque(queued[:accepts] + spread_copies(announces + queued[accepts:]))
        # While we send objects, control packets are paced with their data (spec R11.1-3): the
        # copies a lossy path calls for, times the objects probed at once, make bursts of hundreds
        # that a queue a few packets deep cuts to the same first few every time. Not otherwise: a
        # receiver's rate estimate rests on its own few packets and can read a few kbit/s, and
        # paced by it, the NACKs of a receiver that had sent one small reply held back the repair
        # of the next image (at 70 % loss, 1 MiB took 4.9 s instead of 1.6).
        rate = self.controller.pacing_rate
        credit = PACING_LATE_CREDIT if self._pace_bound else PACING_IDLE_CREDIT
        self._next_send_time = max(self._next_send_time, now - max(2 * self._mss / rate, credit))
        self._pace_bound = False
        paced = self.counters["chunks_sent"] > 0 and any(obj.state is OutState.SENDING for obj in self.outgoing.values())
        while self._control:
            packet = self._control[0]
            if paced and self._next_send_time > now and not isinstance(packet, Accept):
                self._pace_bound = True
                break
            # ACCEPT echoes the client's initial id (spec 5.3); everything else carries ours.
            sid = self.initial_id if isinstance(packet, Accept) else self.session_id
            datagram = codec.encode(packet, sid, self.sent.next_pn)
            if not self._amplification_allows(len(datagram)):
                break
            self._control.popleft()
            if isinstance(packet, Data) and not self._probe_chunk_sent(packet, now):
                continue  # its object finished while the chunk waited
            out.append(datagram)
            self._count_sent(datagram, now, in_flight=not isinstance(packet, Ack), counted=not isinstance(packet, Accept))
            if paced:
                self._next_send_time += len(datagram) / rate
        self._send_data(now, out)
        return out

    def _probe_chunk_sent(self, packet: Data, now: float) -> bool:
        """Bookkeeping for a chunk sent with a PROBE, as for any retransmission; False if its
        object is no longer being sent."""
        obj = self.outgoing.get(packet.object_id)
        if obj is None or obj.state is not OutState.SENDING:
            return False
        self._chunk_sent(obj, packet.chunk_index, self.sent.next_pn, now, retransmission=True)
        self.counters["probe_chunks_sent"] += 1
        return True

    def _chunk_sent(self, obj: OutgoingObject, index: int, pn: int, now: float, retransmission: bool) -> None:
        obj.on_chunk_sent(index, pn, now, retransmission)
        self.counters["chunks_sent"] += 1
        if retransmission:
            self.counters["chunks_retransmitted"] += 1

    def _amplification_allows(self, size: int) -> bool:
        if self.address_validated:
            return True
        if self.counters["bytes_sent"] + size <= 3 * self._recv_bytes:
            return True
        self.counters["amplification_blocked"] += 1
        return False

    def _make_ack(self, now: float) -> Ack:
        self._ack_now = False
        self._ack_pending = 0
        self._ack_deadline = None
        return Ack(
            largest_pn=max(self._largest_pn, 0),
            ack_delay_us=min(int((now - self._largest_pn_time) * 1e6), 0xFFFFFFFF),
            received_bytes=self._recv_bytes,
            received_packets=self._recv_packets & 0xFFFFFFFF,
            object_id_limit=min(self._in_id_limit, 0xFFFFFFFF),
            announce_limit=self._in_announce_limit,
        )

    def _emit(self, packet: Packet, now: float, session_id: int | None = None) -> bytes:
        # Past the last packet number only the closing CLOSE goes out, every copy numbered 2^32 - 1
        # (spec R8.3-3).
        pn = min(self.sent.next_pn, MAX_PN)
        datagram = codec.encode(packet, self.session_id if session_id is None else session_id, pn)
        self._count_sent(datagram, now, in_flight=not isinstance(packet, Ack))
        return datagram

    def _count_sent(self, datagram: bytes, now: float, in_flight: bool = True, counted: bool = True) -> None:
        self.sent.on_sent(now, len(datagram), in_flight, counted)
        self.counters["packets_sent"] += 1
        self.counters["bytes_sent"] += len(datagram)
        # spec R8.3-3: number 2^32 - 1 is kept for the CLOSE that ends an exhausted session.
        if self.sent.next_pn >= MAX_PN and self.state in OPEN_STATES:
            self._start_closing(now, ErrorCode.LIMIT_REACHED, "packet numbers exhausted")

    def _pick_chunk(self, starved: float) -> tuple[OutgoingObject, int, bool] | None:
        # An object that has sent nothing since ``starved`` (-inf when it is alone) while others
        # went ahead of it gets a chunk out of turn: its receiver cancels an object that brings
        # nothing new for a whole idle timeout (R12.3-1), and on a slow path the objects ahead can
        # take longer than that. The one that has waited longest goes first. Taken in the usual
        # order instead, the first object took every such turn while the second's receiver
        # cancelled it; and with the object whose turn it was passed over, on a path so slow that
        # every object was waiting at each send, the second took them all and the first, its 64
        # chunks queued to go again, was cancelled (benchmarks.stress --slow --varying, seed 98613).
        waiting = sorted(
            (obj for obj in self.outgoing.values()
             if obj.state is OutState.SENDING and obj.progress_sent_at <= starved and obj.has_data_to_send),
            key=lambda obj: obj.progress_sent_at,
        )
        for obj in waiting:
            pick = obj.next_chunk()
            if pick is not None:
                return obj, pick[0], pick[1]
            if obj.repairs_pending:
                # Every chunk has left once and REPAIRs are all it has to send. No PROBE goes
                # while they wait (R9.4-2), and other objects' retransmissions and REPAIRs go
                # ahead of them: on a slow path for longer than the receiver's idle timeout
                # (benchmarks.stress seed 51054: a reply's waited 19 s).
                return obj, -1, False
        for obj, repair in self._in_turn():
            if repair:
                return obj, -1, False
            pick = obj.next_chunk()
            if pick is not None:
                return obj, pick[0], pick[1]
        return None

    def _in_turn(self) -> Iterator[tuple[OutgoingObject, bool]]:
        """The objects with something to send in the usual order, each with whether a REPAIR is what
        it sends: retransmissions of any object go ahead of REPAIRs, and those ahead of new data
        (spec 9.3), each oldest object first."""
        sending = [obj for obj in self.outgoing.values() if obj.state is OutState.SENDING]
        yield from ((obj, False) for obj in sending if obj.retx)
        yield from ((obj, True) for obj in sending if obj.repairs_pending)
        yield from ((obj, False) for obj in sending if obj.next_new < obj.chunk_count)

    def _starved_after(self) -> float:
        """How long an announced object with chunks to send may go without sending one while others
        go ahead of it."""
        loss = min(self._loss_for_copies(), 0.9)
        tries = math.ceil(math.log(STARVED_MISS) / math.log(loss)) if loss > 0 else 1
        return self.idle_timeout / max(STARVED_MIN_TRIES, tries)

    def _repair_possible(self, obj: OutgoingObject) -> bool:
        """Both ends agreed to forward repair (spec R9.6-1), and a REPAIR fits the peer's datagrams."""
        return (
            self.config.repair
            and self.peer_params.repair_decoder == 1
            and OVERHEAD + REPAIR_PREFIX_LEN + obj.chunk_size <= self.peer_params.max_datagram_size
        )

    def _plan_repairs(self, obj: OutgoingObject, now: float) -> None:
        """The last chunk of an object just left: cover the chunks whose fate no NACK can tell us
        about for a round trip yet with REPAIRs, enough for the losses the path is showing (spec 9.6).

        Those are the chunks sent in the last round trip (plus the peer's ack delay and the
        reordering allowance), first copies and retransmissions alike, and those waiting to be
        retransmitted: a loss among them would cost a round trip to repair by NACK. The window runs
        from the lowest of them to the end; chunks in it that arrived long ago cost the receiver
        nothing, so only the uncertain ones count towards the REPAIRs needed, and only REPAIRs that
        choose at least one of them are sent (_next_repair_seed).
        """
        if not self._repair_possible(obj) or obj.chunk_count == 0:
            return
        horizon = now - (self.rtt.smoothed + self._sender_reorder_allowance + self.peer_params.max_ack_delay_ms / 1000)
        # A later batch covers only what was sent since the one before: the NACK that started this
        # round already said what the earlier batch left missing.
        horizon = max(horizon, obj.repair_planned_at)
        floor = max(0, obj.chunk_count - REPAIR_WINDOW)
        last_sent = obj.last_sent
        uncertain = [i for i in range(floor, obj.chunk_count) if last_sent[i] >= horizon or obj.is_queued(i)]
        if not uncertain:
            return
        first = uncertain[0]
        count = obj.chunk_count - first
        loss = self.sent.loss_for_planning
        chunks = len(uncertain)
        expected = chunks * loss
        # The spread of the chunks lost: the binomial's, plus that of a loss rate measured from a
        # finite count, which dominates while a session has seen few datagrams.
        variance = chunks * loss * (1 - loss) * (1 + chunks / (self.sent.loss_samples + 2))
        # REPAIRs are lost too: send enough that those arriving cover the chunks lost.
        needed = expected + REPAIR_SIGMAS * math.sqrt(variance) + REPAIR_SPARE
        repairs = min(count + max(0, REPAIR_BEYOND_WINDOW - count // 4), math.ceil(needed / (1 - loss)))
        # Those sent as the previous batch was planned (the chunk that planned it) are counted, but
        # REPAIRs need not choose them: that batch covered them.
        fresh = [i for i in uncertain if last_sent[i] > obj.repair_planned_at or obj.is_queued(i)] or uncertain
        uncertain_mask = sum(1 << (index - first) for index in fresh)
        obj.plan_repairs(first, count, uncertain_mask, repairs, now)

    def _probe(self, obj: OutgoingObject, now: float) -> Probe:
        """A PROBE for ``obj`` naming every chunk sent so far (spec 9.4), counted; the probe timer
        starts again from now."""
        obj.last_feedback = now
        self.counters["probes_sent"] += 1
        return Probe(obj.object_id, obj.next_new)

    def _round_needs_repairs(self, obj: OutgoingObject, now: float) -> bool:
        """A round of retransmissions at the tail just ended. Unprotected, each of its losses costs
        another round trip, and a lost retransmission is as likely as a lost first copy: cover it
        with REPAIRs too, once the previous batch is out, and at most once a round trip unless the
        round retransmitted losses that outran the previous batch (R9.6-6)."""
        if obj.repair_count == 0 or obj.repairs_pending > 0:
            return False
        return obj.outran_repairs or now >= obj.repair_planned_at + self.rtt.smoothed

    def _next_repair_seed(self, obj: OutgoingObject) -> int:
        # Any u32 will do; a seed whose bit stream picks no uncertain chunk of the window is skipped:
        # the receiver has every chunk it would XOR. After a round that resent one chunk, half the
        # REPAIRs over a window reaching the object's end would leave it out. The window's first
        # chunk is uncertain, so about one seed in two passes however few the uncertain chunks are.
        while True:
            self._repair_seed = (self._repair_seed + 1) & 0xFFFFFFFF
            if repair_coefficients(self._repair_seed, obj.repair_count) & obj.repair_uncertain:
                return self._repair_seed

    def _pay_announce(self, obj: OutgoingObject, now: float, out: list[bytes], rate: float) -> None:
        """One of the ANNOUNCE copies a lossy path calls for, behind a chunk's first copy or a
        REPAIR, while the peer has not shown it has the ANNOUNCE."""
        if obj.announces_owed > 0 and not obj.announce_confirmed:
            obj.announces_owed -= 1
            self._send_announce(obj, now, out, rate)

    def _send_echo(self, obj: OutgoingObject, now: float, out: list[bytes], rate: float) -> None:
        """The ANNOUNCE again, where R8.2-10 places it, if an echo is due."""
        if obj.echo_due:
            obj.echo_due = False
            self._send_announce(obj, now, out, rate)

    def _send_announce(self, obj: OutgoingObject, now: float, out: list[bytes], rate: float) -> None:
        """A copy of the ANNOUNCE among the data, paced with it."""
        datagram = self._emit(obj.announce(), now)
        out.append(datagram)
        self._next_send_time += len(datagram) / rate

    def _tail_copies(self, obj: OutgoingObject, index: int) -> int:
        """Copies of a repair to send at an object's tail, where each lost copy costs a round trip.

        Once every chunk has gone out and only a few repairs remain, sending a repair k times,
        with k the smallest count whose joint loss is under 10% at the measured loss rate, trades
        a few datagrams for whole round trips of waiting. The budget is 2% of the object's chunks
        (at least 4), but a chunk whose copies were all lost goes in copies again: on a path that
        loses that much, single tries a round trip apart are what lets the object time out.
        """
        again = index in obj.copied
        obj.copied.discard(index)
        in_tail = obj.next_new == obj.chunk_count and len(obj.retx) <= TAIL_REPAIRS
        loss = self.sent.loss_rate
        if not in_tail or loss <= 0.1 or (obj.extra_copies_left <= 0 and not again):
            return 1
        # Over 10 % loss this is at least 2, and the budget, when it applies, is not spent.
        copies = min(MAX_TAIL_COPIES, math.ceil(math.log(0.1) / math.log(min(loss, 0.9))))
        if not again:
            copies = min(copies, 1 + obj.extra_copies_left)
            obj.extra_copies_left -= copies - 1
        obj.copied.add(index)
        return copies

    def _send_data(self, now: float, out: list[bytes]) -> None:
        if not self.address_validated:
            return
        rate = self.controller.pacing_rate
        cwnd = self.controller.cwnd
        session_id = self.session_id
        starved = now - self._starved_after() if len(self.outgoing) > 1 else -math.inf
        while True:
            if self._next_send_time > now:
                # The pace alone held us back if control packets wait for it, or if the window has
                # room and data waits to go.
                self._pace_bound = self._pace_bound or (self.sent.inflight < cwnd and any(
                    obj.state is OutState.SENDING and obj.has_data_to_send for obj in self.outgoing.values()
                ))
                break
            if self.sent.inflight >= cwnd:
                break
            pick = self._pick_chunk(starved)
            if pick is None:
                self.sent.mark_app_limited()
                break
            obj, index, is_retx = pick
            if index < 0:
                datagram = self._emit(obj.repair_packet(self._next_repair_seed(obj)), now)
                out.append(datagram)
                obj.on_repair_sent(self.sent.next_pn - 1, now)
                self.counters["repairs_sent"] += 1
                # Paced as a full chunk even when the object's chunks are short: REPAIRs protect by
                # being spread out, and a small reply's, sent back to back, all met the same three
                # packets of queue.
                self._next_send_time += max(len(datagram), self._mss) / rate
                self._pay_announce(obj, now, out, rate)
                if not obj.repairs_pending and not obj.retx:
                    # A status request behind the batch: NACKs written before the last REPAIR
                    # arrived are not acted on (R9.6-6), and were the last REPAIR lost, nothing
                    # newer would reach the receiver until the probe timeout.
                    out.append(self._emit(self._probe(obj, now), now))
                if not obj.repairs_pending:
                    self._send_echo(obj, now, out, rate)
                continue
            copies = self._tail_copies(obj, index) if is_retx else 1
            chunk = obj.chunk(index)
            for _ in range(copies):
                datagram = codec.encode_data(session_id, self.sent.next_pn, obj.object_id, index, chunk)
                out.append(datagram)
                self._count_sent(datagram, now)
                self._chunk_sent(obj, index, self.sent.next_pn - 1, now, is_retx)
                self._next_send_time += len(datagram) / rate
            if not is_retx:
                if obj.next_new < obj.chunk_count:
                    self._send_echo(obj, now, out, rate)
                self._pay_announce(obj, now, out, rate)
            if obj.next_new == obj.chunk_count:
                first_batch = not is_retx and obj.repair_count == 0
                round_batch = is_retx and not obj.retx and self._round_needs_repairs(obj, now)
                if first_batch or round_batch:
                    self._plan_repairs(obj, now)
            if obj.tail_probe_pending or (is_retx and not obj.retx and obj.next_new == obj.chunk_count):
                # spec 9.4: a status request right behind the last chunk of a round
                obj.tail_probe_pending = False
                out.append(self._emit(self._probe(obj, now), now))
                if not obj.repairs_pending:
                    self._send_echo(obj, now, out, rate)
        # an empty object has no chunk to ride behind
        for obj in self.outgoing.values():
            if obj.tail_probe_pending and obj.chunk_count == 0 and obj.state is OutState.SENDING:
                obj.tail_probe_pending = False
                obj.last_feedback = now
                out.append(self._emit(Probe(obj.object_id, 0), now))

    # ------------------------------------------------------------------------------------------
    # Stats

    def stats(self) -> dict[str, Any]:
        c: dict[str, Any] = dict(self.counters)
        sent_unique = c["chunks_sent"] - c["chunks_retransmitted"]
        c.update(
            {
                "session_id": f"{self.session_id:016x}",
                "state": self.state.value,
                "peer": f"{self.peer[0]}:{self.peer[1]}",
                "chunks_sent_unique": sent_unique,
                "srtt_ms": round(self.rtt.smoothed * 1000, 3),
                "min_rtt_ms": round(self.rtt.min_rtt * 1000, 3) if self.rtt.has_sample else None,
                "rttvar_ms": round(self.rtt.variance * 1000, 3),
                "jitter_ms": round(self.rtt.jitter * 1000, 3),
                "loss_estimate": round(self.sent.loss_rate, 4),
                "inflight_bytes": self.sent.inflight,
                "reorder_allowance_ms": round(self._reorder_allowance * 1000, 3),
            }
        )
        c.update(self.controller.stats())
        return c
