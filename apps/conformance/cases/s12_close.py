"""Section 12: idle timeouts, object timeouts and cancellation, close and abort."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

from protocol.codec import Announce, Cancel, Close, Complete, Data, Ping, Probe
from protocol.constants import ErrorCode
from protocol.params import SessionParams

from .. import wire
from ..client import TestObject
from ..context import Context
from ..model import CaseFailed
from ..peer import Rx
from ..registry import case
from ..server import SenderPeer
from .common import announced_object, expect_abort, must_complete, small_object


def _short_idle(ctx: Context) -> float:
    """An idle timeout the tester advertises: short, but well above the path's delays."""
    return max(0.5, 10 * ctx.target.slack)


@case(
    "R12.1-1",
    "If an endpoint receives no attributed datagram for the effective idle timeout (R6-6), it MUST close the session "
    "silently: it sends nothing, fails every unfinished object with IDLE_TIMEOUT, reports IDLE_TIMEOUT locally, and "
    "forgets the session.",
    slug="idle-timeout",
)
def idle_timeout(ctx: Context) -> None:
    """The tester advertises a short idle timeout and goes quiet: no CLOSE comes, then the session id is unknown."""
    idle = _short_idle(ctx)
    s = ctx.session(SessionParams(idle_timeout_ms=int(idle * 1000)))
    closes = [rx for rx in s.collect(2.5 * idle) if isinstance(rx.packet, Close)]
    if closes:
        raise CaseFailed("a silent close on idle timeout", str(closes[0]))
    s.ping()
    s.closed = True
    s.silent(f"the session was idle for 2.5 x the {idle:.3g} s idle timeout: its id is unknown (R12.4-7)", ignore=())


@case(
    "R12.1-2",
    "An endpoint that wants to keep an open session alive SHOULD send a PING once it has received nothing from its "
    "peer for one third of the effective idle timeout",
    slug="keepalive",
    level="SHOULD",
)
def keepalive(ctx: Context) -> None:
    """The tester advertises a short idle timeout and stays quiet: a PING comes before two thirds of it pass."""
    idle = 2 * _short_idle(ctx)
    s = ctx.session(SessionParams(idle_timeout_ms=int(idle * 1000)))
    pings = [rx for rx in s.collect(2 * idle / 3) if isinstance(rx.packet, Ping)]
    if not pings:
        raise CaseFailed(f"a keepalive PING within {2 * idle / 3:.3g} s of silence", "none", absent=True)


@case(
    "R12.3-1",
    "An object receiver SHOULD cancel (CANCEL with Origin 0 and OBJECT_TIMEOUT) an unfinished object for which it has "
    "received neither a new chunk nor its ANNOUNCE within the effective idle timeout",
    slug="object-timeout",
    level="SHOULD",
)
def object_timeout(ctx: Context) -> None:
    """Object 0 stalls after its first chunk while PINGs keep the session open: CANCEL OBJECT_TIMEOUT."""
    idle = 2 * _short_idle(ctx)
    s = ctx.session(SessionParams(idle_timeout_ms=int(idle * 1000)))
    s.send_object(small_object(ctx, 3), order=[0], probe=False)
    deadline = ctx.target.clock() + 3 * idle
    while ctx.target.clock() < deadline:
        s.ping()
        rx = s.maybe(lambda d: isinstance(d.packet, Cancel | Complete) and d.packet.object_id == 0, idle / 5)
        if rx is None:
            continue
        if isinstance(rx.packet, Cancel) and rx.packet.error_code == ErrorCode.OBJECT_TIMEOUT and rx.packet.origin == 0:
            return
        raise CaseFailed("CANCEL (Origin 0, OBJECT_TIMEOUT)", str(rx))
    raise CaseFailed(f"CANCEL (Origin 0, OBJECT_TIMEOUT) within {3 * idle:.3g} s", "nothing", absent=True)


_R12_3_3 = (
    "An object receiver MAY cancel (Origin 0, DEADLINE_EXPIRED) an object announced with deadline_ms > 0 that is not "
    "complete deadline_ms after the ANNOUNCE arrived."
)


@case("R12.3-3", _R12_3_3, slug="deadline-not-before-due")
def deadline_not_before_due(ctx: Context) -> None:
    """Objects 0 and 1 announced with a deadline: object 1, sent whole at once, completes; object 0, left a chunk
    short, draws no CANCEL before its deadline, and after it at most CANCEL (Origin 0, DEADLINE_EXPIRED)."""
    s = ctx.session()
    due = max(1.0, 8 * s.quiet)

    def with_deadline(obj: TestObject) -> bytes:
        return wire.announce_payload(replace(obj.announce(), deadline_ms=int(due * 1000)))

    late = small_object(ctx, 3)
    on_time = small_object(ctx, 3, object_id=1)
    announced = ctx.target.clock()
    s.send_object(late, order=[0, 1], probe=False, announce_payload=with_deadline(late))
    # The same ANNOUNCE goes again with any repair the target asks for (R8.2-5).
    must_complete(s.transfer(on_time, announce_payload=with_deadline(on_time)), "an object whole well before its deadline")
    rx = s.maybe(
        lambda d: isinstance(d.packet, Cancel) and d.packet.object_id == late.object_id,
        max(announced + due + 3 * s.quiet - ctx.target.clock(), 0.0),
    )
    if rx is None:
        ctx.note(f"object 0 was not cancelled {3 * s.quiet:.3g} s past its deadline: the target lets it go on (a MAY)")
        s.alive("an object past its deadline")
        return
    if rx.at < announced + due:
        raise CaseFailed(
            f"no CANCEL before the deadline, {due * 1000:.0f} ms after the ANNOUNCE",
            f"{rx} {(rx.at - announced) * 1000:.0f} ms after it",
        )
    assert isinstance(rx.packet, Cancel)
    if rx.packet.origin != 0 or rx.packet.error_code != ErrorCode.DEADLINE_EXPIRED:
        raise CaseFailed("CANCEL (Origin 0, DEADLINE_EXPIRED) once the deadline has passed", str(rx))


@case(
    "R12.3-5",
    "On a CANCEL with Origin 1 (its peer abandons its own object), an endpoint MUST discard what it holds of the "
    "object, MUST NOT send COMPLETE for it",
    slug="cancel-before-announce",
)
def cancel_before_announce(ctx: Context) -> None:
    """CANCEL (Origin 1) of object 0 before its ANNOUNCE, then the object whole: never COMPLETE."""
    s = ctx.session()
    s.send(Cancel(0, 1, ErrorCode.CANCELLED, "changed my mind"))
    outcome = s.transfer(small_object(ctx, 2))
    if outcome.kind == "complete":
        raise CaseFailed("no COMPLETE for an object its sender cancelled (its id is finished)", str(outcome))


@case(
    "R12.3-6",
    "A CANCEL with Origin 0 for an object id the recipient has never announced is a protocol violation "
    "(PROTOCOL_VIOLATION).",
    slug="refusal-of-unannounced",
)
def refusal_unannounced(ctx: Context) -> None:
    """CANCEL (Origin 0) for object 0, which the target never announced: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    s.send(Cancel(0, 0, ErrorCode.REFUSED))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "a refusal of an object the target never announced")


@case("R12.3-7", "A CANCEL for an object that is already finished at its recipient MUST be ignored.", slug="cancel-after-finish")
def cancel_after_finish(ctx: Context) -> None:
    """Object 0 completes, then its sender CANCELs it: ignored, a PROBE still draws COMPLETE."""
    s = ctx.session()
    obj = small_object(ctx, 2)
    must_complete(s.transfer(obj), "object 0")
    s.send(Cancel(0, 1, ErrorCode.CANCELLED))
    s.settle()
    s.probe(obj)
    rx = s.expect(lambda d: isinstance(d.packet, Complete | Cancel) and d.packet.object_id == 0, "COMPLETE, unchanged")
    if not isinstance(rx.packet, Complete):
        raise CaseFailed("COMPLETE: the late CANCEL was ignored", str(rx))


@case(
    "R12.4-3",
    "While closing it MUST NOT send anything but that CLOSE",
    slug="closing-sends-only-close",
)
def closing(ctx: Context) -> None:
    """The target aborts (a chunk index out of range); then a PING and a chunk draw CLOSE again or nothing."""
    s = ctx.session()
    obj = small_object(ctx, 2)
    s.announce(obj)
    s.send(Data(0, 5, obj.chunk(0)))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "the abort that starts the closing period")
    s.closed = True
    s.ping()
    s.data(obj, 1)
    others = [rx for rx in s.collect(s.quiet) if not isinstance(rx.packet, Close)]
    if others:
        raise CaseFailed("only CLOSE while closing", str(others[0]))


@case(
    "R12.4-4",
    "While draining it MUST NOT send anything, except that, in answer to a CLOSE with NO_ERROR, it MAY send one CLOSE "
    "with NO_ERROR so that the closer can stop early.",
    slug="draining-after-abort",
)
def draining_abort(ctx: Context) -> None:
    """CLOSE APPLICATION_ERROR from the tester, then a PING: nothing at all comes back."""
    s = ctx.session()
    s.send(Close(ErrorCode.APPLICATION_ERROR, "tester aborts"))
    s.closed = True
    s.ping()
    s.silent("the target is draining", ignore=())


@case(
    "R12.4-4",
    "While draining it MUST NOT send anything, except that, in answer to a CLOSE with NO_ERROR, it MAY send one CLOSE "
    "with NO_ERROR so that the closer can stop early.",
    slug="draining-after-clean-close",
)
def draining_clean(ctx: Context) -> None:
    """CLOSE NO_ERROR from the tester, then a PING: at most one CLOSE NO_ERROR comes back."""
    s = ctx.session()
    s.send(Close(ErrorCode.NO_ERROR))
    s.closed = True
    s.ping()
    got = s.collect(s.quiet)
    closes = [rx for rx in got if isinstance(rx.packet, Close) and rx.packet.error_code == ErrorCode.NO_ERROR]
    others = [rx for rx in got if rx not in closes]
    if others or len(closes) > 1:
        raise CaseFailed("nothing, or one CLOSE NO_ERROR", "; ".join(str(r) for r in got))


@case(
    "R12.4-6",
    "The recipient of a CLOSE whose error code is not in section 13 MUST treat it as an abort and report the number it "
    "carried.",
    slug="close-unknown-code",
)
def close_unknown_code(ctx: Context) -> None:
    """CLOSE with the unassigned code 0x7777: an abort; the target drains and answers nothing."""
    s = ctx.session()
    s.send(Close(0x7777, "a code from the future"))
    s.closed = True
    s.ping()
    s.silent("the target is draining after an abort", ignore=())


@case(
    "R12.4-7",
    "After an endpoint has forgotten a session, datagrams carrying its id are dropped as unknown (R4.2-7).",
    slug="forgotten-after-closing",
)
def forgotten_after_closing(ctx: Context) -> None:
    """The target aborts; once its closing period is surely over, a PING with the session id draws nothing."""
    s = ctx.session()
    obj = small_object(ctx, 2)
    s.announce(obj)
    sent = ctx.target.clock()
    s.send(Data(0, 5, obj.chunk(0)))
    close = s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "the abort that starts the closing period")
    s.closed = True
    # Closing lasts 3 x PTO, PTO = srtt + max(4 x rttvar, 1 ms) + the tester's max_ack_delay (R9.5-3).
    # The target's samples are round trips to the tester, so srtt and rttvar stay under the longest
    # round trip the tester saw (the handshake's, or the abort's): 5 of them bound srtt + 4 x rttvar.
    assert s.accept_rx is not None
    handshake_rtt = s.accept_rx.at - s.sent[0][0]  # from the first INITIAL: an overestimate at worst
    rtt = max(handshake_rtt, close.at - sent, 2 * ctx.target.slack)
    closing = 3 * (5 * rtt + 0.001 + s.params.max_ack_delay_ms / 1000)
    s.collect(closing)  # CLOSE copies answering late datagrams may still come: not looked at
    s.ping()
    s.silent(f"the closing period (at most {closing:.3g} s) is over: the session id is unknown", ignore=())


# ================================================================================================
# Sender role


@case(
    "R12.4-4",
    "While draining it MUST NOT send anything, except that, in answer to a CLOSE with NO_ERROR, it MAY send one CLOSE "
    "with NO_ERROR so that the closer can stop early.",
    slug="sender-draining",
    role="sender",
)
def sender_draining(ctx: Context) -> None:
    """CLOSE APPLICATION_ERROR to a sender in mid-transfer: it sends nothing more."""
    peer = ctx.sender()
    peer.policy.complete = False
    peer.accept()
    peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    peer.send(Close(ErrorCode.APPLICATION_ERROR, "tester aborts"))
    peer.closed = True
    sent = ctx.target.clock()
    late = [rx for rx in peer.collect(3 * peer.quiet) if rx.at - sent > ctx.target.slack and rx.decoded is not None
            and rx.decoded.session_id == peer.session_id]
    if late:
        raise CaseFailed("nothing from a draining sender", str(late[0]))


@case(
    "R12.4-2",
    "An endpoint aborts a session by sending CLOSE with a non-zero error code: when its peer violates the protocol "
    "(with the code section 13.2 names)",
    slug="sender-aborts-violation",
    role="sender",
)
def sender_aborts_violation(ctx: Context) -> None:
    """An ACK for a packet number the sender never sent: it aborts, CLOSE PROTOCOL_VIOLATION."""
    peer, _ = announced_object(ctx)
    # Far beyond the few dozen datagrams a sender has sent by its ANNOUNCE (R9.2-6).
    peer.send(replace(peer.make_ack(), largest_pn=peer.rx_largest_pn + 100_000))
    expect_abort(peer, ErrorCode.PROTOCOL_VIOLATION, "an ACK for a packet never sent")


@case(
    "R12.3-6",
    "On a CANCEL with Origin 0 (its peer refuses one of its objects), an endpoint MUST stop sending anything for the "
    "object and report it failed with the CANCEL's error code.",
    slug="sender-stops-refused-object",
    role="sender",
)
def sender_refused(ctx: Context) -> None:
    """CANCEL (Origin 0, REFUSED) of the sender's object: nothing more about it arrives."""
    peer = ctx.sender()
    peer.policy.complete = False
    peer.accept()
    peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    peer.send(Cancel(0, 0, ErrorCode.REFUSED, "no thanks"))
    sent = ctx.target.clock()
    late = [rx for rx in peer.collect(3 * peer.quiet) if rx.at - sent > ctx.target.slack
            and isinstance(rx.packet, Announce | Data | Probe) and rx.packet.object_id == 0]
    if late:
        raise CaseFailed("nothing about a refused object", str(late[0]))


@case(
    "R12.1-1",
    "If an endpoint receives no attributed datagram for the effective idle timeout (R6-6), it MUST close the session "
    "silently",
    slug="sender-idle-timeout",
    role="sender",
)
def sender_idle(ctx: Context) -> None:
    """The tester's ACCEPT advertises a short idle timeout, then the tester says nothing: the sender falls silent."""
    idle = _short_idle(ctx)
    peer = ctx.sender()
    peer.policy.ack = peer.policy.answer_probes = peer.policy.complete = False
    peer.accept(params=SessionParams(idle_timeout_ms=int(idle * 1000)))
    accepted = ctx.target.clock()
    peer.closed = True  # the session is meant to die: no CLOSE from the tester at the end
    got = peer.collect(3 * idle)
    session = [rx for rx in got if rx.decoded is not None and rx.decoded.session_id == peer.session_id]
    closes = [rx for rx in session if isinstance(rx.packet, Close)]
    if closes:
        raise CaseFailed("a silent close", str(closes[0]))
    late = [rx for rx in session if rx.at - accepted > idle + 2 * ctx.target.slack]
    if late:
        raise CaseFailed(f"nothing {idle:.3g} s after the tester's last datagram", f"{late[0]} at +{late[0].at - accepted:.3f} s")


def _deadline_object(ctx: Context) -> tuple[SenderPeer, Rx, float]:
    """A sender whose object the tester never COMPLETEs: the peer, the ANNOUNCE, and its deadline in
    seconds (the case is unsupported without one, or with a long one on a live target not --slow)."""
    peer = ctx.sender()
    peer.policy.complete = False
    peer.accept()
    rx = peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    assert isinstance(rx.packet, Announce)
    deadline = rx.packet.deadline_ms / 1000
    if deadline <= 0:
        ctx.unsupported("the sender's object has no deadline")
    if deadline > 10 and not (ctx.target.virtual or ctx.options.slow):
        ctx.unsupported(f"the deadline is {deadline:.0f} s; run with --slow to wait for it")
    return peer, rx, deadline


@case(
    "R12.3-2",
    "An object sender that announced an object with deadline_ms > 0 MUST cancel it (CANCEL with Origin 1 and "
    "DEADLINE_EXPIRED) and report it failed if it has not received COMPLETE for it by the time its deadline runs out",
    slug="sender-deadline",
    role="sender",
)
def sender_deadline(ctx: Context) -> None:
    """The tester holds back COMPLETE: by the ANNOUNCE's deadline a CANCEL (Origin 1, DEADLINE_EXPIRED) arrives."""
    peer, rx, deadline = _deadline_object(ctx)
    cancel = peer.expect_session(
        "CANCEL of the object", lambda p: isinstance(p, Cancel) and p.object_id == 0, deadline + 2 * peer.quiet
    )
    packet = cancel.packet
    assert isinstance(packet, Cancel)
    if packet.origin != 1 or packet.error_code != ErrorCode.DEADLINE_EXPIRED:
        raise CaseFailed("CANCEL (Origin 1, DEADLINE_EXPIRED)", str(cancel))
    if cancel.at - rx.at > deadline + 2 * ctx.target.slack + 0.05:
        raise CaseFailed(f"the CANCEL by the {deadline:.3g} s deadline", f"after {cancel.at - rx.at:.3f} s", late=True)


_R12_3_8 = (
    "An endpoint that sent a CANCEL with Origin 1 MUST send it again, at intervals doubling from one PTO up to a "
    "third of the effective idle timeout, until the peer shows the id finished: an ACK whose object_id_limit is above "
    "the id plus the peer's max_concurrent_objects, or a COMPLETE or CANCEL from the peer for the id."
)


@case("R12.3-8", _R12_3_8, slug="sender-cancel-repeated", role="sender")
def sender_cancel_repeated(ctx: Context) -> None:
    """The tester never shows object 0 finished (its ACKs keep the first object_id_limit): the deadline's CANCEL
    comes again at growing intervals; after the tester's own CANCEL for the id, no more copies."""
    peer, _announce, deadline = _deadline_object(ctx)

    def cancel_of_0(p: object) -> bool:
        return isinstance(p, Cancel) and p.object_id == 0 and p.origin == 1

    idle = min(peer.params.idle_timeout_ms, peer.client_params.idle_timeout_ms) / 1000
    copies = [peer.expect_session("CANCEL (Origin 1) of the object", cancel_of_0, deadline + 2 * peer.quiet).at]
    for n in (2, 3, 4):
        copies.append(peer.expect_session(f"copy {n} of the CANCEL", cancel_of_0, idle / 3 + 2 * peer.quiet).at)
    gaps = [b - a for a, b in pairwise(copies)]
    slack = 2 * ctx.target.slack + 0.01
    # Doubling makes the third interval four times the first, unless the cap (a third of the idle
    # timeout) comes first; at least twice is asked, and never shorter in any case.
    if any(later + slack < earlier for earlier, later in pairwise(gaps)) or (
        4 * gaps[0] <= idle / 3 and gaps[2] + slack < 2 * gaps[0]
    ):
        raise CaseFailed("intervals doubling from the first", ", then ".join(f"{g:.3f} s" for g in gaps))
    last_gap = gaps[-1]
    # The tester shows the id finished: the copies stop.
    peer.send(Cancel(0, 0, ErrorCode.CANCELLED))
    stopped_at = ctx.target.clock()
    late = [
        r for r in peer.collect(2 * last_gap + 2 * peer.quiet)
        if cancel_of_0(r.packet) and r.at - stopped_at > slack
    ]
    if late:
        raise CaseFailed("no CANCEL copy after the tester's CANCEL for the id", str(late[0]))


@case(
    "R12.4-1",
    "An endpoint closes a session cleanly by sending CLOSE with NO_ERROR. It SHOULD do so only when every object it "
    "sent is finished.",
    slug="sender-no-clean-close-before-complete",
    role="sender",
    level="SHOULD",
)
def sender_closes_after_complete(ctx: Context) -> None:
    """The tester holds back COMPLETE of a whole object: no clean CLOSE comes while the object waits for it."""
    peer = ctx.sender()
    peer.policy.complete = False
    peer.accept()
    incoming = peer.await_whole()
    announce = incoming.announce
    assert announce is not None
    # Held for a while, but well inside the object's deadline: its CANCEL would finish the object too.
    hold = 3 * peer.quiet
    if announce.deadline_ms:
        hold = min(hold, announce.deadline_ms / 1000 / 4)
    peer.pump(None, hold)
    # An abort (R12.4-2) is the application's to choose; a clean close says the objects are done.
    early = [
        rx for rx in peer.session_packets()
        if isinstance(rx.packet, Close) and rx.packet.error_code == ErrorCode.NO_ERROR
    ]
    if early:
        raise CaseFailed("no clean CLOSE while the object awaits COMPLETE", str(early[0]))
    incoming.completed = True
    peer.send(Complete(0))
