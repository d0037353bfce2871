"""Section 7: the handshake, address validation and session identity (both roles)."""

from __future__ import annotations

from collections.abc import Callable

from protocol import codec
from protocol.codec import (
    Accept,
    Ack,
    Announce,
    Cancel,
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
from protocol.constants import ErrorCode

from ..client import Client
from ..context import Context
from ..model import CaseFailed
from ..peer import Rx
from ..registry import case
from ..server import SenderPeer
from .common import must_complete, session_starts, small_object, still_handshaking, unpredictable

# ================================================================================================
# Receiver role: the target is a server


@case(
    "R7.2-9",
    "The client MAY send ANNOUNCE and DATA at once after receiving ACCEPT: objects start one round trip after the "
    "first INITIAL.",
    slug="object-at-once-after-accept",
)
def object_at_once_after_accept(ctx: Context) -> None:
    """ANNOUNCE and DATA straight after ACCEPT, with no ACK of it first: the object completes."""
    c = ctx.client()
    c.handshake()
    # The ANNOUNCE is the session's first datagram from the client: it validates the address as an ACK would (R7.4-1).
    must_complete(c.transfer(small_object(ctx, 3)), "an object sent at once after ACCEPT, before any ACK of it")


@case(
    "R7.3-1",
    "If the server has a session created by an INITIAL from the same source address with the same initial id, it "
    "re-sends ACCEPT (in one or more copies, R7.3-4): the same session id and parameters, each copy with the next "
    "packet number of that session",
    slug="repeated-initial",
)
def repeated_initial(ctx: Context) -> None:
    """The INITIAL sent again after ACCEPT: the same session id comes back, with the next packet number."""
    c = ctx.client()
    first = c.handshake()
    assert c.accept_rx is not None and c.accept_rx.decoded is not None
    c.send_initial()
    rx = c.expect(lambda d: isinstance(d.packet, Accept), "ACCEPT again for the repeated INITIAL")
    assert rx.decoded is not None and isinstance(rx.packet, Accept)
    want_pn = c.accept_rx.decoded.packet_number + 1
    if rx.packet.session_id != first.session_id or rx.packet.params != first.params or rx.decoded.packet_number != want_pn:
        raise CaseFailed(f"ACCEPT of session {first.session_id:016x}, same parameters, packet number {want_pn}", str(rx))


@case(
    "R7.3-2",
    "A server MUST choose each session id with a cryptographically secure random number generator, uniformly from "
    "the non-zero 64-bit values, and MUST NOT assign an id that one of its current sessions uses.",
    slug="session-ids-distinct",
)
def session_ids_distinct(ctx: Context) -> None:
    """Six sessions: six different, non-zero session ids with no arithmetic pattern (R14.2-1)."""
    ids: list[int] = []
    for _ in range(6):
        c = ctx.client()
        ids.append(c.handshake().session_id)
        c.validate()
    unpredictable(ids, "session ids")


@case(
    "R7.3-3",
    "A token that does not verify, or has expired, MUST be treated as if the INITIAL carried none.",
    slug="bad-token-treated-as-none",
)
def bad_token(ctx: Context) -> None:
    """An INITIAL with a made-up 20-byte token is answered as one without a token (ACCEPT or RETRY)."""
    c = ctx.client()
    c.send_initial(token=ctx.payload(20))
    rx = c.handshake_reply()
    if not isinstance(rx.packet, Accept | Retry):
        raise CaseFailed("ACCEPT or RETRY, as for an INITIAL without a token", str(rx))


@case(
    "R7.3-4",
    "A server MUST send at most one datagram in response to each INITIAL, with one exception: it MAY answer with up "
    "to 6 copies of ACCEPT (actions 1 and 4), each a datagram with its own packet number, where the INITIAL's packet "
    "number shows that INITIALs of the client were lost on the way",
    slug="one-datagram-per-initial",
)
def one_datagram_per_initial(ctx: Context) -> None:
    """INITIAL 0 draws one datagram, and copies 1 and 2 (none lost) at most two more. A first INITIAL
    numbered 9 (nine lost before it) draws at most 6 datagrams, all ACCEPTs of one session, each with
    its own packet number."""
    c = ctx.client()
    c.send_initial()
    got = c.collect(c.quiet)
    if len(got) != 1:
        detail = f"{len(got)}: " + "; ".join(str(r) for r in got)
        raise CaseFailed("exactly one answer to one INITIAL", detail, absent=not got)
    c.send_initial()
    c.send_initial()
    more = c.collect(c.quiet)
    if len(more) > 2:
        raise CaseFailed("at most two answers to two INITIALs", f"{len(more)}: " + "; ".join(str(r) for r in more))
    late = ctx.client()
    late.send(Initial(late.params, late.token), session_id=late.initial_id, pn=9)
    copies = late.collect(late.quiet)
    accepts = [rx for rx in copies if isinstance(rx.packet, Accept) and rx.decoded is not None]
    numbers = {rx.decoded.packet_number for rx in accepts if rx.decoded is not None}
    sessions = {rx.packet.session_id for rx in accepts if isinstance(rx.packet, Accept)}
    if not copies or len(copies) > 6 or len(accepts) != len(copies) or len(numbers) != len(accepts) or len(sessions) != 1:
        raise CaseFailed(
            "1 to 6 ACCEPTs of one session, each with its own packet number, for an INITIAL numbered 9",
            f"{len(copies)}: " + "; ".join(str(r) for r in copies), absent=not copies,
        )


@case(
    "R7.3-5",
    "A server MUST NOT retransmit ACCEPT on a timer; it re-sends ACCEPT only in answer to an INITIAL (action 1).",
    slug="no-accept-retransmission",
)
def no_accept_retransmission(ctx: Context) -> None:
    """After ACCEPT the tester stays silent: no ACCEPT comes again."""
    c = ctx.client()
    c.handshake()
    window = max(ctx.timeout / 2, 3 * c.quiet)
    again = [rx for rx in c.collect(window) if isinstance(rx.packet, Accept)]
    if again:
        raise CaseFailed(f"no ACCEPT within {window:.3g} s without an INITIAL", str(again[0]))


def _retry(ctx: Context, c: Client) -> Rx:
    c.send_initial()
    rx = c.handshake_reply()
    if not isinstance(rx.packet, Retry):
        ctx.unsupported("the target does not demand address validation (it answered INITIAL without a RETRY)")
    return rx


@case(
    "R7.3-6",
    "RETRY, VERSION and the SERVER_BUSY CLOSE are stateless: they carry Packet Number 0",
    slug="retry-packet-number-0",
    needs=("retry",),
)
def retry_packet_number(ctx: Context) -> None:
    """A RETRY carries packet number 0 and the initial id."""
    c = ctx.client()
    rx = _retry(ctx, c)
    assert rx.decoded is not None
    if rx.decoded.packet_number != 0 or rx.decoded.session_id != c.initial_id:
        raise CaseFailed(f"RETRY with Packet Number 0 and Session ID {c.initial_id:016x}", str(rx))


@case(
    "R7.3-1",
    "If the INITIAL carries no valid token (section 7.4) and the server requires address validation for it",
    slug="retry-token-round-trip",
    needs=("retry",),
)
def retry_round_trip(ctx: Context) -> None:
    """RETRY, then the INITIAL again with its token: ACCEPT, and the session works."""
    c = ctx.client()
    rx = _retry(ctx, c)
    assert isinstance(rx.packet, Retry)
    c.send_initial(token=rx.packet.token)
    answer = c.handshake_reply()
    if not isinstance(answer.packet, Accept):
        raise CaseFailed("ACCEPT for the INITIAL carrying the RETRY's token", str(answer))
    c.accept_rx = answer
    c.session_id = answer.packet.session_id
    c.alive("the session created with a token")


@case(
    "R7.3-7",
    "The server records the client's address and initial id with the session.",
    slug="same-initial-id-other-address",
)
def same_initial_id_other_address(ctx: Context) -> None:
    """The INITIAL of a live session sent again from another socket: not that session's ACCEPT (action 1 needs the
    same address), and the first session still works."""
    first = ctx.session()
    other = ctx.client()
    other.initial_id = first.initial_id
    other.send_initial()
    rx = other.expect(other.is_handshake_answer, "an answer to the INITIAL from the second address (a new ACCEPT, RETRY or CLOSE)")
    if isinstance(rx.packet, Accept):
        if rx.packet.session_id == first.session_id:
            raise CaseFailed("a new session (or RETRY, or SERVER_BUSY) for the INITIAL from another address", str(rx))
        _take_accept(other, rx, rx.packet)
        other.validate()
    first.alive("the session created from the first address")


def _take_accept(c: Client, rx: Rx, accept: Accept) -> None:
    c.accept, c.accept_rx = accept, rx
    c.session_id = accept.session_id
    c.target_params = accept.params


def _unvalidated(ctx: Context) -> Client:
    """A session the tester has not yet confirmed: INITIAL, ACCEPT, nothing more sent."""
    c = ctx.client()
    c.send_initial()
    rx = c.handshake_reply()
    if isinstance(rx.packet, Retry):
        ctx.unsupported("the target demands a RETRY token: its sessions start with the address validated")
    if not isinstance(rx.packet, Accept):
        raise CaseFailed("ACCEPT in answer to INITIAL", str(rx))
    _take_accept(c, rx, rx.packet)
    return c


def _received(c: Client) -> int:
    """Bytes of the target's datagrams to this socket, stateless answers left out (they are no session's)."""
    return sum(len(rx.data) for rx in c.history if not isinstance(rx.packet, Retry | VersionNegotiation))


def _budget(c: Client) -> int:
    """3 x every byte the tester sent from this socket (R7.4-2: the most an unvalidated session may get)."""
    return 3 * sum(len(datagram) for _, _, datagram in c.sent)


def _holding_back(c: Client) -> bool:
    """Whether the target has announced an object and not yet sent every chunk of it."""
    chunks: dict[int, set[int]] = {}
    announced: dict[int, int] = {}
    for rx in c.history:
        packet = rx.packet
        if isinstance(packet, Announce):
            announced[packet.object_id] = packet.chunk_count
        elif isinstance(packet, Data):
            chunks.setdefault(packet.object_id, set()).add(packet.chunk_index)
    return any(len(chunks.get(oid, ())) < count for oid, count in announced.items())


def _sends_past_budget(c: Client) -> bool:
    """ACK whatever comes (so that no window holds the target back) until it has sent more than the
    unvalidated limit, or stops."""
    for _ in range(8):
        got = c.collect(c.quiet)
        if _received(c) > _budget(c):
            return True
        if not got:
            return False
        c.send(c.make_ack())
    return _received(c) > _budget(c)


@case(
    "R7.3-7",
    "Every later datagram of the session MUST come from that address (R4.2-8).",
    slug="ack-from-other-address-does-not-validate",
    needs=("push",),
)
def ack_from_other_address(ctx: Context) -> None:
    """A server with an object for every new session: an ACK of its ACCEPT from another socket leaves it within 3 x
    what the real address sent; the real ACK then lets the object flow."""
    c = _unvalidated(ctx)
    c.collect(c.quiet)
    if _received(c) > _budget(c):
        ctx.unsupported("the target went past 3 x what it received before any ACK (R7.4-2's case): no change to tell by")
    spoof = ctx.client()
    spoof.session_id = c.session_id
    spoof.closed = True  # not its session: nothing to close at the end
    spoof.send(spoof.make_ack())
    spoof.silent("an ACK with the session's id from another address", ignore=())
    c.collect(c.quiet)
    if _received(c) > _budget(c):
        raise CaseFailed(
            f"at most {_budget(c)} bytes: an ACK from another address does not validate the client's (R7.4-2)",
            f"{_received(c)} bytes",
        )
    c.validate()
    if not _sends_past_budget(c):
        ctx.unsupported("the target sent no more than 3 x what it received once validated either: nothing to tell by")


_R7_4_1_ACK = (
    "it has received, from the client's address, a datagram carrying the session id assigned in ACCEPT and attributed "
    "to the session (which proves that the client received the ACCEPT)."
)


def _outlives_handshake_timeout(ctx: Context, c: Client, how: str) -> None:
    """Silence for 12 s, then a PING: a validated session is still there (an unvalidated one is discarded at the
    handshake timeout, R7.4-3, RECOMMENDED 10 s)."""
    idle = min(c.target_params.idle_timeout_ms, c.params.idle_timeout_ms) / 1000
    if idle <= 13.0:
        ctx.unsupported(f"the session's idle timeout ({idle:.3g} s) would end it before 12 s of silence")
    c.collect(12.0)  # keepalives may come; they need no answer
    c.alive(f"12 s after ACCEPT, a session validated {how} outlives the handshake timeout")


@case("R7.4-1", _R7_4_1_ACK, slug="validated-by-ack", slow=True)
def validated_by_ack(ctx: Context) -> None:
    """INITIAL, ACCEPT, the ACK of it, then 12 s of silence: the session is not discarded as unvalidated, so a PING
    then draws an ACK (assumes the RECOMMENDED 10 s handshake timeout)."""
    c = _unvalidated(ctx)
    c.validate()
    _outlives_handshake_timeout(ctx, c, "by the ACK of ACCEPT")


@case("R7.4-1", _R7_4_1_ACK, slug="ack-lifts-amplification-limit", needs=("push",))
def ack_lifts_amplification_limit(ctx: Context) -> None:
    """A server with an object for every new session: once the tester ACKs the ACCEPT, it sends more than 3 x what
    it received."""
    c = _unvalidated(ctx)
    c.collect(c.quiet)
    c.validate()
    if _sends_past_budget(c):
        return
    if not _holding_back(c):
        ctx.unsupported("the target had nothing to send beyond 3 x what it received")
    raise CaseFailed(
        f"more than {_budget(c)} bytes of the announced object once the ACK of ACCEPT validated the address",
        f"{_received(c)} bytes, then silence",
    )


@case(
    "R7.4-1",
    "the INITIAL that created the session carried a valid token; or",
    slug="validated-by-token",
    slow=True,
    needs=("retry",),
)
def validated_by_token(ctx: Context) -> None:
    """RETRY, the INITIAL with its token, ACCEPT, then 12 s of silence (no ACK): the session was validated from the
    start, so it is not discarded at the handshake timeout, and a PING then draws an ACK."""
    c = ctx.client()
    rx = _retry(ctx, c)
    assert isinstance(rx.packet, Retry)
    c.send_initial(token=rx.packet.token)
    answer = c.handshake_reply()
    if not isinstance(answer.packet, Accept):
        raise CaseFailed("ACCEPT for the INITIAL carrying the RETRY's token", str(answer))
    _take_accept(c, answer, answer.packet)
    _outlives_handshake_timeout(ctx, c, "by its token")


_R7_4_4 = (
    "a server MUST ensure that a token cannot be forged by anyone without the server's secret, that it is valid only "
    "for the client IP address, UDP port and initial id it was issued for, and that it expires"
)


@case("R7.4-4", _R7_4_4, slug="token-bound-to-address", needs=("retry",))
def token_bound_to_address(ctx: Context) -> None:
    """A token issued to one socket, used from another with the same initial id, draws RETRY, not ACCEPT."""
    c = ctx.client()
    rx = _retry(ctx, c)
    assert isinstance(rx.packet, Retry)
    other = ctx.client()
    other.initial_id = c.initial_id
    other.send_initial(token=rx.packet.token)
    answer = other.handshake_reply()
    if isinstance(answer.packet, Accept):
        raise CaseFailed("RETRY (the token belongs to another address)", str(answer))


@case("R7.4-4", _R7_4_4, slug="token-bound-to-initial-id", needs=("retry",))
def token_bound_to_initial_id(ctx: Context) -> None:
    """A token issued for one initial id, used with another from the same socket, draws RETRY, not ACCEPT."""
    c = ctx.client()
    rx = _retry(ctx, c)
    assert isinstance(rx.packet, Retry)
    c.initial_id = ctx.new_id()
    c.send_initial(token=rx.packet.token)
    answer = c.handshake_reply()
    if isinstance(answer.packet, Accept):
        raise CaseFailed("RETRY (the token belongs to another initial id)", str(answer))


#: Attempts of other clients that draw tokens between the first token and its use: more than the unvalidated
#: sessions a server keeps (RECOMMENDED 128, spec 14.4), so that a table of issued tokens would overflow.
OTHER_ATTEMPTS = 256


@case("R7.4-5", "A server MUST keep no per-client state for the tokens it issues.", slug="earlier-token-still-valid",
      needs=("retry",))
def earlier_token_still_valid(ctx: Context) -> None:
    """RETRY, a second RETRY for the same attempt a second later, then RETRYs for 256 other attempts: the first
    token still draws ACCEPT."""
    c = ctx.client()
    first = _retry(ctx, c)
    assert isinstance(first.packet, Retry)
    # A token carries its issue time (it must expire, R7.4-4): a second later the next one differs, and a
    # server that kept the latest token of each client would now refuse the first.
    ctx.target.sleep(1.1)
    c.send_initial()
    second = c.handshake_reply()
    if not isinstance(second.packet, Retry):
        raise CaseFailed("RETRY again for an INITIAL without a token", str(second))
    others = ctx.client()
    for _ in range(OTHER_ATTEMPTS):
        others.send(Initial(others.params), session_id=ctx.new_id(), pn=0)
    others.collect(others.quiet)  # their RETRYs: a bounded table of tokens would have dropped ours for them
    c.send_initial(token=first.packet.token)
    answer = c.handshake_reply()
    if not isinstance(answer.packet, Accept):
        raise CaseFailed(
            "ACCEPT for the first token, valid whatever the server issued since: it can be checked from the token "
            "and the server's secret alone",
            str(answer),
        )
    _take_accept(c, answer, answer.packet)
    c.validate()
    if first.packet.token == second.packet.token:
        ctx.note("both RETRYs carried the same token: the first token's survival says less")


@case(
    "R7.4-2",
    "Until the address is validated, the server MUST NOT send, in the session, more than 3 times the number of bytes "
    "it has received in datagrams attributed to the session (including the INITIALs: the one that created the "
    "session and every repeat of action 1), counting whole datagrams.",
    slug="anti-amplification",
    needs=("push",),
)
def anti_amplification(ctx: Context) -> None:
    """One INITIAL, never confirmed: the target sends at most 3 x 1200 bytes to that address."""
    c = ctx.client()
    sent = len(codec.encode(Initial(c.params), c.initial_id, 0))
    c.send_initial()
    got = c.collect(max(ctx.timeout, 3 * c.quiet))
    if any(isinstance(rx.packet, Retry) for rx in got):
        ctx.unsupported("the target answered with RETRY: it keeps no session for an unvalidated address")
    received = sum(len(rx.data) for rx in got)
    if received > 3 * sent:
        raise CaseFailed(f"at most {3 * sent} bytes before the address is validated", f"{received} bytes in {len(got)} datagrams")
    if all(isinstance(rx.packet, Accept) for rx in got):
        ctx.note(f"the target sent only its ACCEPT ({received} bytes): it had nothing more to send, so the limit was not exercised")


@case(
    "R7.4-3",
    "A session whose client address is still not validated when the handshake timeout (RECOMMENDED 10 s) has passed "
    "since its creation MUST be discarded silently: no CLOSE is sent.",
    slug="unvalidated-session-discarded",
    slow=True,
)
def unvalidated_discarded(ctx: Context) -> None:
    """ACCEPT never confirmed for 12 s: no CLOSE comes, then or for a packet of the session (assumes the 10 s
    timeout). The session id is then unknown, or the session comes back restored (R7.4-6): from the wire the two
    look alike, so this case cannot tell a discarded session from one kept."""
    c, _ = _lapsed_session(ctx)
    c.ping()
    closes = [rx for rx in c.collect(c.quiet) if isinstance(rx.packet, Close)]
    if closes:
        raise CaseFailed("no CLOSE for a session discarded unvalidated", str(closes[0]))


def _lapsed_session(ctx: Context) -> tuple[Client, int]:
    """A session whose ACCEPT went unconfirmed for 12 s, with no CLOSE meanwhile; and the highest packet
    number the target sent in it."""
    c = ctx.client()
    c.send_initial()
    answer = c.handshake_reply()
    if not isinstance(answer.packet, Accept):
        ctx.unsupported(f"the target answered {answer}: no unvalidated session to wait for")
    c.session_id = answer.packet.session_id
    got = [answer, *c.collect(12.0)]
    closes = [rx for rx in got if isinstance(rx.packet, Close)]
    if closes:
        raise CaseFailed("no CLOSE for a discarded unvalidated session", str(closes[0]))
    return c, max(rx.decoded.packet_number for rx in got if rx.decoded is not None)


@case(
    "R7.4-6",
    "Such a datagram proves that the client got the ACCEPT (R7.4-1): the restored session takes it as its first "
    "packet, which validates the address, and numbers its own packets on from the discarded session's, so that the "
    "client sees no packet number twice.",
    slug="lapsed-session-restored",
    slow=True,
)
def lapsed_session_restored(ctx: Context) -> None:
    """ACCEPT unconfirmed for 12 s (past the RECOMMENDED 10 s handshake timeout), then the client's first packet of
    the session: it is answered, and the session works, its packet numbers going on from the ACCEPT's."""
    c, last_pn = _lapsed_session(ctx)
    first = c.next_pn
    c.ping()
    ack = c.maybe(lambda d: isinstance(d.packet, Ack) and d.packet.largest_pn >= first and c.attributed(d))
    if ack is None or ack.decoded is None:
        ctx.unsupported("no answer 12 s after ACCEPT: the target keeps no record of lapsed sessions (a MAY)")
    if ack.decoded.packet_number <= last_pn:
        raise CaseFailed(f"packet numbers going on past those sent before ({last_pn})", str(ack))
    c.alive("a restored session works")


@case(
    "R7.6-2",
    "A client MAY run several sessions from one address and port, with different initial ids; a server distinguishes "
    "them by initial id during the handshake and by session id afterwards.",
    slug="two-sessions-one-address",
)
def two_sessions(ctx: Context) -> None:
    """Two handshakes from one socket: two sessions with different ids, both working."""
    first = ctx.client().establish()
    second = ctx.client(channel=first.channel).establish()
    if first.session_id == second.session_id:
        raise CaseFailed("two different session ids", f"{first.session_id:016x} twice")
    first.alive("the first of two sessions from one address")
    second.alive("the second of two sessions from one address")


# ================================================================================================
# Sender role: the target is a client


def carries_token(peer: SenderPeer, token: bytes) -> Callable[[Decoded], bool]:
    def match(d: Decoded) -> bool:
        return isinstance(d.packet, Initial) and d.session_id == peer.initial_id and d.packet.token == token

    return match


@case(
    "R7.2-1",
    "A client MUST choose each initial id with a cryptographically secure random number generator, uniformly from "
    "the non-zero 64-bit values, and afresh for each connection attempt.",
    slug="initial-ids-fresh",
    role="sender",
)
def initial_ids_fresh(ctx: Context) -> None:
    """Six connection attempts, each refused: six different, non-zero initial ids with no arithmetic pattern and no
    clock in them (R14.2-1)."""
    ids: list[int] = []
    for _ in range(6):
        peer = ctx.sender()
        ids.append(peer.initial_id)
        peer.finish()  # a refusal: the attempt ends, and the sender's next one must bring a new id
    unpredictable(ids, "initial ids")


@case(
    "R7.2-2",
    "A client sends INITIAL (section 5.1) with its parameters and without a token, and MUST retransmit it while no "
    "ACCEPT, RETRY, VERSION or CLOSE for the attempt has been accepted as a response",
    slug="initial-retransmitted",
    role="sender",
)
def initial_retransmitted(ctx: Context) -> None:
    """No answer to the INITIAL: it comes again, same initial id, parameters and token, a higher packet number."""
    peer = ctx.sender()
    first = peer.first
    again: Rx | None = None
    deadline = ctx.target.clock() + ctx.timeout
    while again is None and ctx.target.clock() < deadline:
        got = peer.maybe(lambda d: isinstance(d.packet, Initial) and d.session_id == peer.initial_id, deadline - ctx.target.clock())
        if got is None:
            break
        if got.at - first.at > ctx.target.slack + 0.01:  # a copy sent with the first does not count
            again = got
    if again is None or again.decoded is None or first.decoded is None:
        raise CaseFailed("the INITIAL sent again while unanswered", f"nothing within {ctx.timeout:.3g} s", absent=True)
    if again.decoded.packet_number <= first.decoded.packet_number or again.packet != first.packet:
        raise CaseFailed("the same INITIAL (initial id, parameters, token) with a higher packet number", str(again))


@case(
    "R7.2-3",
    "If no ACCEPT has arrived within the handshake timeout (RECOMMENDED 10 s) of the first INITIAL, the client MUST "
    "abandon the attempt, send nothing more, and report HANDSHAKE_TIMEOUT locally.",
    slug="handshake-timeout-gives-up",
    role="sender",
    slow=True,
)
def handshake_timeout_gives_up(ctx: Context) -> None:
    """No answer to any INITIAL: from 12 s after the first one on, nothing more of the attempt arrives (assumes the
    RECOMMENDED 10 s handshake timeout)."""
    peer = ctx.sender()
    peer.closed = True  # the attempt is to die of its own timeout: no refusal at the end
    start = peer.first.at
    got = peer.collect(start + 15.0 - ctx.target.clock())
    # the attempt's datagrams: from its address, and with its initial id (a client may start a new attempt)
    late = [
        rx for rx in got
        if rx.src == peer.first.src and rx.at - start > 12.0 and (rx.decoded is None or rx.decoded.session_id == peer.initial_id)
    ]
    if late:
        raise CaseFailed(
            "nothing from the client 12 s after its first unanswered INITIAL (handshake timeout, RECOMMENDED 10 s)",
            f"{late[0]} {late[0].at - start:.1f} s after it",
        )


@case(
    "R7.2-4",
    "A client MUST accept a RETRY, ACCEPT, VERSION or CLOSE as a response to its attempt only if it comes from the "
    "address (IP address and port) the client sent its INITIAL to and its Session ID field equals the attempt's "
    "initial id. It MUST drop any other.",
    slug="accept-wrong-initial-id",
    role="sender",
)
def accept_wrong_initial_id(ctx: Context) -> None:
    """An ACCEPT echoing the wrong initial id is ignored; the session then uses the right ACCEPT's id."""
    peer = ctx.sender()
    bogus = ctx.new_id()
    peer.send_raw(codec.encode(Accept(bogus, peer.params), peer.initial_id ^ 1, 0))
    still_handshaking(peer, "the ACCEPT echoed another initial id")
    peer.accept()
    peer.expect_session("a session packet with the real session id", lambda p: True)
    wrong = [r for r in peer.history if r.decoded is not None and r.decoded.session_id == bogus]
    if wrong:
        raise CaseFailed("no packet with the bogus ACCEPT's session id", str(wrong[0]))


@case(
    "R7.2-4",
    "A client MUST accept a RETRY, ACCEPT, VERSION or CLOSE as a response to its attempt only if it comes from the "
    "address (IP address and port) the client sent its INITIAL to and its Session ID field equals the attempt's "
    "initial id. It MUST drop any other.",
    slug="accept-wrong-address",
    role="sender",
)
def accept_wrong_address(ctx: Context) -> None:
    """An ACCEPT from another address than the one the INITIAL went to is ignored."""
    peer = ctx.sender()
    other = ctx.channel(peer.channel.peer)
    bogus = ctx.new_id()
    other.send(codec.encode(Accept(bogus, peer.params), peer.initial_id, 0))
    still_handshaking(peer, "the ACCEPT came from another address")
    session_starts(peer, "the real ACCEPT")
    wrong = [r for r in peer.history if r.decoded is not None and r.decoded.session_id == bogus]
    if wrong:
        raise CaseFailed("no packet with the session id of an ACCEPT from another address", str(wrong[0]))


@case(
    "R7.2-5",
    "On a RETRY, a client that has not yet received an ACCEPT MUST at once send a new INITIAL carrying the RETRY's "
    "token and the same initial id",
    slug="follows-retry",
    role="sender",
)
def follows_retry(ctx: Context) -> None:
    """RETRY with a token: an INITIAL carrying it comes back at once; ACCEPT then starts the session."""
    peer = ctx.sender()
    token = ctx.payload(20)
    peer.stateless(Retry(token))
    sent = ctx.target.clock()
    rx = peer.expect(carries_token(peer, token), "an INITIAL carrying the RETRY's token and the same initial id")
    if rx.at - sent > 4 * ctx.target.slack + 0.05:
        raise CaseFailed("the INITIAL with the token at once", f"after {rx.at - sent:.3f} s", late=True)
    first = peer.first.packet
    if not isinstance(rx.packet, Initial) or not isinstance(first, Initial) or rx.packet.params != first.params:
        raise CaseFailed("the same parameters as the first INITIAL", str(rx))
    peer.initials.append(rx)
    session_starts(peer, "after the RETRY round trip")


@case(
    "R7.2-5",
    "A client MUST NOT act on more than 3 RETRYs in one attempt; it ignores any more.",
    slug="at-most-3-retries",
    role="sender",
)
def at_most_three_retries(ctx: Context) -> None:
    """Four RETRYs: the first three tokens come back in INITIALs, the fourth never does."""
    peer = ctx.sender()
    for n in range(1, 4):
        token = bytes([n]) * 20
        peer.stateless(Retry(token))
        peer.expect(carries_token(peer, token), f"an INITIAL carrying the token of RETRY {n}")
    fourth = bytes([4]) * 20
    peer.stateless(Retry(fourth))
    acted = [
        rx for rx in peer.collect(max(ctx.timeout / 2, 3 * peer.quiet))
        if isinstance(rx.packet, Initial) and rx.packet.token == fourth
    ]
    if acted:
        raise CaseFailed("no INITIAL with the fourth RETRY's token", str(acted[0]))


@case(
    "R7.2-10",
    "A client that has received no packet of the session from the server (a repeated ACCEPT does not count) one PTO "
    "(section 9.4) after the ACCEPT MUST send a PING, and again, at intervals doubling up to a third of the effective "
    "idle timeout, until a packet of the session arrives from the server.",
    slug="pings-a-silent-server",
    role="sender",
)
def pings_a_silent_server(ctx: Context) -> None:
    """After ACCEPT the tester sends nothing (no ACK, NACK, COMPLETE): PINGs come, the second later
    than the first; once the tester answers one, no more."""
    peer = ctx.sender()
    peer.policy.ack = False
    peer.policy.complete = False
    peer.policy.answer_probes = False
    peer.accept()
    first = peer.expect_session("a PING while the server has said nothing since ACCEPT", lambda p: isinstance(p, Ping))
    second = peer.expect_session("a second PING, the server still silent", lambda p: isinstance(p, Ping))
    assert peer.accept_sent_at is not None
    if second.at - first.at < (first.at - peer.accept_sent_at) / 2:
        raise CaseFailed(
            "the PINGs' interval doubling from one PTO",
            f"{(first.at - peer.accept_sent_at) * 1000:.0f} ms, then {(second.at - first.at) * 1000:.0f} ms",
        )
    peer.ack()
    answered = ctx.target.clock()
    late = [rx for rx in peer.collect(4 * (second.at - first.at) + ctx.target.slack) if isinstance(rx.packet, Ping)]
    late = [rx for rx in late if rx.at - answered > ctx.target.slack]
    if late:
        raise CaseFailed("no PING once the server's ACK arrived", str(late[0]))


@case(
    "R7.2-6",
    "On an ACCEPT, the client MUST take the session id from the ACCEPT's payload and the server's parameters from its "
    "list, and from then on MUST put that session id in the Session ID field of every datagram of the session.",
    slug="uses-session-id",
    role="sender",
)
def uses_session_id(ctx: Context) -> None:
    """After ACCEPT every datagram carries its session id, numbered on from the INITIALs (R8.3-1)."""
    peer = ctx.sender()
    peer.accept()
    peer.receive_object()
    last_initial = max(rx.decoded.packet_number for rx in peer.initials if rx.decoded is not None)
    after = [rx for rx in peer.history if rx.decoded is not None and not isinstance(rx.packet, Initial)]
    for rx in after:
        assert rx.decoded is not None
        if rx.decoded.session_id != peer.session_id:
            raise CaseFailed(f"Session ID {peer.session_id:016x} in every session datagram", str(rx))
    first = after[0].decoded if after else None
    if first is None or first.packet_number <= last_initial:
        raise CaseFailed(f"packet numbers continuing after the INITIALs' ({last_initial})", str(after[0]) if after else "none")


@case(
    "R7.2-7",
    "On a CLOSE (with the initial id), the client MUST abandon the attempt and report the CLOSE's error code, for "
    "example SERVER_BUSY. It MUST NOT answer.",
    slug="busy-close-abandons",
    role="sender",
)
def busy_close(ctx: Context) -> None:
    """CLOSE SERVER_BUSY with the initial id: the client sends nothing more for that attempt."""
    peer = ctx.sender()
    peer.stateless(Close(ErrorCode.SERVER_BUSY, "too many sessions"))
    sent = ctx.target.clock()
    window = max(ctx.timeout / 2, 3 * peer.quiet)
    later = [
        rx for rx in peer.collect(window)
        if rx.decoded is not None and rx.decoded.session_id == peer.initial_id and rx.at - sent > ctx.target.slack
    ]
    if later:
        raise CaseFailed("nothing more for the refused attempt", str(later[0]))


@case(
    "R7.3-8",
    "Once the session exists, the server MAY send objects to the client (the session is symmetric)",
    slug="client-receives-object",
    role="sender",
)
def client_receives_object(ctx: Context) -> None:
    """After ACCEPT the tester, as server, sends a 3-chunk object of its own: the client answers COMPLETE."""
    peer = ctx.sender()
    peer.accept()
    obj = small_object(ctx, 3, chunk_size=512)
    peer.send(obj.announce())
    for index in range(obj.count):
        peer.send(Data(obj.object_id, index, obj.chunk(index)))
    peer.send(Probe(obj.object_id, obj.count))

    def answer(p: Packet) -> bool:
        # the client's own object is its business; a COMPLETE, a NACK or a receiver's CANCEL (Origin 0) is about ours
        return isinstance(p, Complete | Nack) or (isinstance(p, Cancel) and p.origin == 0)

    for _ in range(8):
        rx = peer.expect_session("COMPLETE of the tester's object", answer)
        packet = rx.packet
        if isinstance(packet, Complete):
            return
        if not isinstance(packet, Nack):
            raise CaseFailed("COMPLETE of the tester's object (the session is symmetric)", str(rx))
        if packet.announce_missing:
            peer.send(obj.announce())
        for first, count in packet.missing:
            for index in range(first, min(first + count, obj.count)):
                peer.send(Data(obj.object_id, index, obj.chunk(index)))
        peer.send(Probe(obj.object_id, obj.count))
    raise CaseFailed("COMPLETE of the tester's object", "only NACKs, after 8 rounds of repairs")


@case(
    "R7.5-1",
    "otherwise the ACCEPT may answer any of several transmissions, and the client MUST NOT take a sample from it "
    "(Karn's rule).",
    slug="no-rtt-sample-from-retransmitted-initial",
    role="sender",
)
def no_rtt_sample_after_retransmission(ctx: Context) -> None:
    """ACCEPT only at an INITIAL sent 2 s or more after the first, then silence: the client's first PING (R7.2-10)
    comes within twice that wait, not after the thrice it that one PTO is when the wait is taken for a round trip."""
    peer = ctx.sender()
    peer.policy.ack = peer.policy.complete = peer.policy.answer_probes = False
    wait = 2.0
    while True:
        # Retransmissions come further apart, up to 1 s (spec 12.5): a 1 s wait would race them.
        rx = still_handshaking(peer, "no answer yet", max(ctx.timeout, wait))
        if rx.at - peer.first.at >= wait:
            break
    peer.accept()  # at once: a sample from the last transmission would read the path's round trip, not 2 s
    assert peer.accept_sent_at is not None
    waited = peer.accept_sent_at - peer.first.at
    try:
        peer.expect_session("a PING", lambda p: isinstance(p, Ping), timeout=2 * waited)
    except CaseFailed:
        raise CaseFailed(
            f"a PING within {2 * waited:.1f} s of ACCEPT (one PTO from no RTT sample, R7.2-10)",
            f"none: as if the {waited:.1f} s since the first INITIAL had been taken for a round trip",
            absent=True,
        ) from None


@case(
    "R7.6-1",
    "Within a session, an endpoint MUST accept datagrams only from the peer address the session was created with "
    "(R4.2-8).",
    slug="close-from-other-address-ignored",
    role="sender",
)
def close_from_other_address(ctx: Context) -> None:
    """A CLOSE carrying the session id from another socket: the client goes on; a PING from the real address draws
    its ACK, and the object arrives."""
    peer = ctx.sender()
    peer.accept()
    peer.expect_session("the session under way after ACCEPT", lambda p: True)
    other = ctx.channel(peer.channel.peer)
    other.send(codec.encode(Close(ErrorCode.APPLICATION_ERROR, "from another address"), peer.session_id, peer.take_pn()))
    ctx.target.sleep(ctx.target.slack)  # the CLOSE first
    ping = peer.send(Ping())
    peer.expect_session(
        "an ACK of the PING (a CLOSE from another address must not end the session)",
        lambda p: isinstance(p, codec.Ack) and p.largest_pn >= ping,
    )
    peer.receive_object()
