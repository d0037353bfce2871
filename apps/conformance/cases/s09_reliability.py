"""Section 9: NACK and re-NACK, PROBE, ACK policy, retransmission and tail-loss probing."""

from __future__ import annotations

from itertools import pairwise

from protocol import codec, repair
from protocol.codec import Ack, Announce, Cancel, Close, Complete, Data, Nack, Ping, Probe, Repair
from protocol.constants import NON_ACK_ELICITING, ErrorCode
from protocol.params import SessionParams

from ..client import Client, TestObject
from ..context import Context
from ..model import CaseFailed, Unsupported
from ..peer import Rx
from ..receiving_model import listed
from ..registry import case
from ..server import Incoming, SenderPeer
from .common import (
    about_silence,
    expect_nack_naming,
    many_gaps,
    must_complete,
    nacks_listing,
    silent_receiver,
    small_object,
    window_filled,
)


def _nacks(rxs: list[Rx], object_id: int = 0) -> list[Nack]:
    return [rx.packet for rx in rxs if isinstance(rx.packet, Nack) and rx.packet.object_id == object_id]


# ================================================================================================
# Receiver role: the target receives objects


@case(
    "R9.1-1",
    "A receiver SHOULD NOT report a gap chunk missing before the reordering allowance has passed since the chunk that "
    "opened the gap arrived, and SHOULD report it as soon as possible after that if it is still missing.",
    slug="gap-nacked",
    level="SHOULD",
)
def gap_nacked(ctx: Context) -> None:
    """Chunk 3 of 8 left out: a NACK naming chunk 3 comes."""
    s = ctx.session()
    obj = small_object(ctx, 8)
    s.send_object(obj, order=[0, 1, 2, 4, 5, 6, 7], probe=False)
    expect_nack_naming(s, 0, 3, "a NACK naming the chunk left out")


@case(
    "R9.1-1",
    "A receiver SHOULD NOT report a gap chunk missing before the reordering allowance has passed since the chunk that "
    "opened the gap arrived",
    slug="reordering-not-nacked",
    level="SHOULD",
)
def reordering_not_nacked(ctx: Context) -> None:
    """Chunks 2 and 3 swapped, back to back: COMPLETE, and no NACK for either on the way."""
    s = ctx.session()
    obj = small_object(ctx, 8)
    s.send_object(obj, order=[0, 1, 3, 2, 4, 5, 6, 7], probe=False)
    done = s.expect(lambda d: isinstance(d.packet, Complete), "COMPLETE for the object")
    early = [n for n in _nacks(s.inbox) if listed(n.missing) & {2, 3}]
    if early:
        raise CaseFailed("no NACK for a chunk that was only overtaken", f"{early[0]} before {done}")


#: How long the tester holds back its ACK of the ACCEPT in ``allowance_grows``: the target's first RTT
#: sample, so that an allowance "of the order of the round-trip time" has room to grow (on loopback it
#: would be capped at a millisecond or so). Well under any initial PTO: the ACCEPT is not sent again.
SLOW_HANDSHAKE = 0.15
#: How long after its gap opened the held-back chunk arrives: the reordering observation.
LATE_BY = 0.1


def _first_report_wait(s: Client, obj: TestObject, late_by: float | None) -> float:
    """``obj`` with chunk 3 held back: how long after chunk 4 opened the gap the first NACK naming chunk 3
    came. With ``late_by``, chunk 3 then arrives that long after the gap opened, in the datagram number it
    would have had in order (a reordering observation, R9.1-2); otherwise it is simply sent again. The
    object completes either way."""
    clock = s.ctx.target.clock
    s.announce(obj)
    for index in (0, 1, 2):
        s.data(obj, index)
    held_pn = s.take_pn()
    opened = clock()
    for index in range(4, obj.count):
        s.data(obj, index)
    while True:
        rx = s.expect(
            lambda d: isinstance(d.packet, Nack)
            and d.packet.object_id == obj.object_id
            and (d.packet.announce_missing or 3 in listed(d.packet.missing)),
            "a NACK naming the chunk held back",
        )
        assert isinstance(rx.packet, Nack)
        if not rx.packet.announce_missing:
            break
        # The ANNOUNCE was lost on the way: the gap is only known once it arrives.
        s.announce(obj)
        opened = clock()
    wait = rx.at - opened
    chunk = Data(obj.object_id, 3, obj.chunk(3))
    if late_by is None:
        s.send(chunk)
    else:
        if (remaining := opened + late_by - clock()) > 0:
            s.collect(remaining)  # re-reports of chunk 3 and ACKs: nothing the case needs
        s.send(chunk, pn=held_pn)
    must_complete(s.transfer(obj, send=False), "once the chunk held back arrived")
    return wait


@case(
    "R9.1-2",
    "The reordering allowance SHOULD start small and SHOULD grow with each reordering observation, within a bound "
    "of the order of the round-trip time.",
    slug="allowance-grows",
    level="SHOULD",
)
def allowance_grows(ctx: Context) -> None:
    """The ACK of the ACCEPT held back SLOW_HANDSHAKE (the target's RTT); chunk 3 of a 16-chunk object held back
    and sent LATE_BY after chunk 4 opened its gap, in its own lower-numbered datagram: the same gap in the next
    object waits markedly longer for its first NACK than the first did."""
    s = ctx.client()
    s.handshake()
    s.collect(SLOW_HANDSHAKE)
    s.validate()
    s.settle()
    before = _first_report_wait(s, small_object(ctx, 16, object_id=0), LATE_BY)
    after = _first_report_wait(s, small_object(ctx, 16, object_id=1), None)
    if after < before + LATE_BY / 2:
        raise CaseFailed(
            f"the second gap reported at least {LATE_BY / 2 * 1000:.0f} ms later than the first "
            f"({before * 1000:.1f} ms), after chunk 3 came {LATE_BY * 1000:.0f} ms late",
            f"the second after {after * 1000:.1f} ms",
        )


@case(
    "R9.1-3",
    "A NACK SHOULD list only chunks whose report is due",
    slug="nack-lists-only-missing",
    level="SHOULD",
)
def nack_only_missing(ctx: Context) -> None:
    """Chunk 3 of 8 left out: the NACK lists chunk 3 and nothing the target holds or has not seen a gap for."""
    s = ctx.session()
    obj = small_object(ctx, 8)
    s.send_object(obj, order=[0, 1, 2, 4, 5, 6, 7], probe=False)
    rx = expect_nack_naming(s, 0, 3, "a NACK naming the chunk left out")
    assert isinstance(rx.packet, Nack)
    if listed(rx.packet.missing) != {3}:
        raise CaseFailed("a NACK listing chunk 3 alone", str(rx))


@case(
    "R9.1-4",
    "A receiver MUST report a chunk again if it is still missing one re-NACK interval after it was last reported, and "
    "keep doing so for as long as the chunk is missing, the object is unfinished and the session is open.",
    slug="re-nack",
)
def re_nack(ctx: Context) -> None:
    """Chunk 3 of 8 withheld: NACKs naming it keep coming (at least 4), never closer than 1 ms apart on average."""
    s = ctx.session()
    obj = small_object(ctx, 8)
    s.send_object(obj, order=[0, 1, 2, 4, 5, 6, 7], probe=False)
    times: list[float] = []
    deadline = ctx.target.clock() + ctx.timeout
    while len(times) < 4 and (remaining := deadline - ctx.target.clock()) > 0:
        rx = s.maybe(lambda d: isinstance(d.packet, Nack) and 3 in listed(d.packet.missing), remaining)
        if rx is None:
            break
        times.append(rx.at)
    if len(times) < 4:
        got = f"{len(times)} NACK(s) naming it within {ctx.timeout:.3g} s"
        raise CaseFailed("repeated NACKs for a chunk that stays missing", got, absent=True)
    mean = (times[-1] - times[0]) / (len(times) - 1)
    if mean < 0.001:
        raise CaseFailed("re-NACKs at least 1 ms apart (R9.1-4)", f"{mean * 1000:.3f} ms apart on average")


@case(
    "R9.1-5",
    "A receiver MUST NOT put more in one NACK than fits in a datagram of the peer's max_datagram_size (R5.7-6).",
    slug="nack-fits-datagram",
)
def nack_fits(ctx: Context) -> None:
    """With max_datagram_size 1200 advertised, 200 gaps: the NACKs listing them are each at most 1200 bytes."""
    from protocol.params import SessionParams

    s = ctx.session(SessionParams(max_datagram_size=1200))
    obj, missing, _ = many_gaps(ctx, s, probe=True)
    for rx in nacks_listing(s, obj, missing):
        if len(rx.data) > 1200:
            raise CaseFailed("NACKs of at most 1200 bytes", f"{len(rx.data)} bytes: {rx}")


@case(
    "R9.1-5",
    "When more is due, it reports the lowest indices first and the rest in further NACKs, sent at once or at the "
    "next opportunity.",
    slug="nack-lowest-first",
)
def nack_lowest_first(ctx: Context) -> None:
    """200 gaps, too many for one NACK: the first NACK holds the lowest, the rest follow at once."""
    from protocol.params import SessionParams

    s = ctx.session(SessionParams(max_datagram_size=1200))
    obj, missing, pns = many_gaps(ctx, s, probe=True)
    answer = [rx for rx in nacks_listing(s, obj, missing) if not about_silence(rx, pns)]
    first = answer[0].packet
    assert isinstance(first, Nack)
    if min(listed(first.missing)) != min(missing):
        raise CaseFailed(f"the first NACK starting at chunk {min(missing)}", str(answer[0]))


@case(
    "R9.1-6",
    "It MUST answer with a NACK with announce_missing for the object, at most once per re-NACK interval per object "
    "when answering DATA.",
    slug="unannounced-data",
)
def unannounced_data(ctx: Context) -> None:
    """A chunk of an object never announced: NACK with announce_missing and an empty list (R5.7-5)."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.data(obj, 1)
    rx = s.expect(lambda d: isinstance(d.packet, Nack) and d.packet.announce_missing, "NACK with announce_missing")
    assert isinstance(rx.packet, Nack)
    if rx.packet.missing or rx.packet.object_id != 0:
        raise CaseFailed("announce_missing for object 0 with an empty missing list (R5.7-5)", str(rx))


def _answered_at_once(s: Client, obj: TestObject, what: str) -> Rx:
    """The target's NACK, COMPLETE or CANCEL about ``obj`` in answer to what the tester just sent,
    within the target's slack (R9.1-7: without the reordering allowance)."""
    sent = s.ctx.target.clock()
    rx = s.expect(lambda d: isinstance(d.packet, Nack | Complete | codec.Cancel) and d.packet.object_id == obj.object_id, what)
    late = rx.at - sent
    if late > s.ctx.target.slack + 0.002:
        raise CaseFailed(f"{what}, at once", f"after {late * 1000:.1f} ms: {rx}", late=True)
    return rx


def _probe_answered(s: Client, obj: TestObject, sent_through: int, what: str) -> Rx:
    s.probe(obj, sent_through)
    return _answered_at_once(s, obj, what)


_R9_1_7 = "On a PROBE for object o with sent_through s, the receiver MUST answer at once (without the reordering allowance)"


@case("R9.1-7", _R9_1_7, slug="probe-unannounced")
def probe_unannounced(ctx: Context) -> None:
    """PROBE for an object never announced: NACK with announce_missing, at once."""
    s = ctx.session()
    rx = _probe_answered(s, small_object(ctx, 3), 3, "NACK with announce_missing")
    if not isinstance(rx.packet, Nack) or not rx.packet.announce_missing:
        raise CaseFailed("NACK with announce_missing", str(rx))


@case(
    "R9.1-7",
    "It SHOULD then remember the largest such s (for a bounded number of objects; the reference keeps 256) and, "
    "when the ANNOUNCE comes, take it as a PROBE with that s arriving then",
    slug="probe-before-announce",
    level="SHOULD",
)
def probe_before_announce(ctx: Context) -> None:
    """PROBE with sent_through 3 for an object not yet announced, then its ANNOUNCE and no chunk: a NACK
    at once, as for a PROBE arriving then, and NACKs that list chunks 0-2, with no further PROBE."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    rx = _probe_answered(s, obj, 3, "NACK with announce_missing")
    if not isinstance(rx.packet, Nack) or not rx.packet.announce_missing:
        raise CaseFailed("NACK with announce_missing", str(rx))
    s.announce(obj)
    first = _answered_at_once(s, obj, "NACK answering the remembered PROBE")
    if not isinstance(first.packet, Nack):
        raise CaseFailed("NACK answering the remembered PROBE", str(first))
    nacks_listing(s, obj, {0, 1, 2} - listed(first.packet.missing))


@case("R9.1-7", _R9_1_7, slug="probe-lists-missing")
def probe_lists_missing(ctx: Context) -> None:
    """Chunks 0-2 and 4 of 6 sent, PROBE with sent_through 5: a NACK at once, and chunk 3 listed (at once if
    already reported, else when its reordering allowance ends)."""
    s = ctx.session()
    obj = small_object(ctx, 6)
    s.send_object(obj, order=[0, 1, 2, 4], probe=False)
    rx = _probe_answered(s, obj, 5, "a NACK answering the PROBE")
    if not isinstance(rx.packet, Nack) or not listed(rx.packet.missing) <= {3}:
        raise CaseFailed("a NACK listing at most chunk 3 (the only missing chunk below 5)", str(rx))
    if listed(rx.packet.missing) != {3}:
        nacks_listing(s, obj, {3})


@case("R9.1-7", _R9_1_7, slug="probe-nothing-missing")
def probe_nothing_missing(ctx: Context) -> None:
    """Chunks 0-2 of 5 sent, PROBE with sent_through 3: an empty NACK, at once."""
    s = ctx.session()
    obj = small_object(ctx, 5)
    s.send_object(obj, order=[0, 1, 2], probe=False)
    rx = _probe_answered(s, obj, 3, "an empty NACK")
    if not isinstance(rx.packet, Nack) or rx.packet.missing or rx.packet.announce_missing:
        raise CaseFailed("a NACK with an empty missing list", str(rx))


@case("R9.1-7", _R9_1_7, slug="probe-finished")
def probe_finished(ctx: Context) -> None:
    """PROBE for a completed object, twice: COMPLETE each time, at once (a PROBE is always answered, R9.1-9)."""
    s = ctx.session()
    obj = small_object(ctx, 2)
    must_complete(s.transfer(obj), "the object")
    for attempt in ("first", "second"):
        rx = _probe_answered(s, obj, obj.count, f"COMPLETE again ({attempt} PROBE)")
        if not isinstance(rx.packet, Complete):
            raise CaseFailed("COMPLETE, the object's final word", str(rx))


@case(
    "R9.1-8",
    "A PROBE for an announced object with sent_through greater than the object's Chunk Count is a protocol violation "
    "(PROTOCOL_VIOLATION).",
    slug="probe-beyond-count",
)
def probe_beyond(ctx: Context) -> None:
    """PROBE with sent_through 4 for a 3-chunk object: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.probe(obj, 4)
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "sent_through above the chunk count")


@case(
    "R9.1-9",
    "On an ANNOUNCE, DATA or PROBE for a finished object it MUST NOT buffer anything, and it answers with the "
    "object's final word",
    slug="data-after-finish",
)
def data_after_finish(ctx: Context) -> None:
    """A chunk of a completed object again: COMPLETE again."""
    s = ctx.session()
    obj = small_object(ctx, 2)
    must_complete(s.transfer(obj), "the object")
    s.collect(s.quiet)  # past the rate limit of repeated final words; copies sent before it are read and set aside
    s.drain()
    s.data(obj, 0)
    s.expect(lambda d: isinstance(d.packet, Complete) and d.packet.object_id == 0, "COMPLETE, the object's final word")


@case(
    "R9.1-10",
    "On completing an object (all chunks held and the digest verified, section 10.2), the receiver MUST deliver it to "
    "the application, then send COMPLETE, and stop reporting its chunks.",
    slug="complete-then-quiet",
)
def complete_then_quiet(ctx: Context) -> None:
    """A whole object draws COMPLETE; no NACK about it follows."""
    s = ctx.session()
    obj = small_object(ctx, 5)
    s.send_object(obj, order=[0, 1, 3, 4], probe=False)
    expect_nack_naming(s, 0, 2, "a NACK for the chunk left out")
    must_complete(s.transfer(obj, send=False), "the object once whole")
    late = [n for n in _nacks(s.collect(s.quiet))]
    if late:
        raise CaseFailed("no NACK for an object after its COMPLETE", str(late[0]))


@case(
    "R9.2-1",
    "An endpoint MUST send an ACK when it has received 8 ack-eliciting packets in the session since it last sent an "
    "ACK (the reference allows this count to be configured; 8 is RECOMMENDED), or when its own max_ack_delay has "
    "passed since the first of those packets arrived, whichever comes first.",
    slug="ack-within-max-ack-delay",
)
def ack_delay(ctx: Context) -> None:
    """One ack-eliciting packet (an ANNOUNCE): an ACK within the target's max_ack_delay."""
    s = ctx.session()
    pn = s.announce(small_object(ctx, 3))
    sent = ctx.target.clock()
    rx = s.expect_ack(pn, "an ACK for the ANNOUNCE")
    limit = s.target_params.max_ack_delay_ms / 1000 + ctx.target.slack
    if rx.at - sent > limit:
        raise CaseFailed(f"an ACK within {limit * 1000:.0f} ms (max_ack_delay + path)", f"after {(rx.at - sent) * 1000:.1f} ms",
                         late=True)


@case("R9.2-2", "An endpoint MUST send an ACK at once when it receives a PING.", slug="ping-acked-at-once")
def ping_at_once(ctx: Context) -> None:
    """PING: an ACK at once (within the path's round trip)."""
    s = ctx.session()
    pn = s.ping()
    sent = ctx.target.clock()
    rx = s.expect_ack(pn, "an ACK for the PING")
    if rx.at - sent > ctx.target.slack + 0.002:
        raise CaseFailed("the ACK at once", f"after {(rx.at - sent) * 1000:.1f} ms", late=True)


@case(
    "R9.2-3",
    "An endpoint MUST NOT send an ACK in response to packets that are not ack-eliciting alone: ACKs are never "
    "acknowledged.",
    slug="ack-not-acknowledged",
)
def ack_not_acked(ctx: Context) -> None:
    """A valid ACK from the tester draws nothing."""
    s = ctx.session()
    s.send(s.make_ack())
    s.silent("an ACK alone is never acknowledged")


@case(
    "R9.2-4",
    "The counters received_bytes and received_packets MUST cover every datagram attributed to the session that "
    "carries the session id.",
    slug="ack-counters",
)
def ack_counters(ctx: Context) -> None:
    """Three PINGs, one ACK each: received_packets up by 1 and received_bytes by 22 each time (R5.8-2)."""
    s = ctx.session()
    acks: list[Ack] = []
    for _ in range(4):
        pn = s.ping()
        rx = s.expect_ack(pn, "an ACK for the PING")
        assert isinstance(rx.packet, Ack)
        acks.append(rx.packet)
    for before, after in pairwise(acks):
        if after.received_packets - before.received_packets != 1 or after.received_bytes - before.received_bytes != 22:
            raise CaseFailed(
                "received_packets +1 and received_bytes +22 per 22-byte PING",
                f"{before.received_packets}/{before.received_bytes} then {after.received_packets}/{after.received_bytes}",
            )
        if after.object_id_limit < before.object_id_limit or after.announce_limit < before.announce_limit:
            raise CaseFailed("limits that never decrease (R5.8-2)", f"{before} then {after}")


@case(
    "R9.2-4",
    "received_bytes counts duplicates (they crossed the path as any datagram does). received_packets SHOULD count "
    "each packet number once",
    slug="ack-counts-a-duplicate-once",
    level="SHOULD",
)
def ack_counts_duplicate_once(ctx: Context) -> None:
    """One PING datagram sent twice: received_bytes counts both copies, received_packets one."""
    s = ctx.session()
    before = s.expect_ack(s.ping(), "an ACK for the PING").packet
    pn = s.take_pn()
    datagram = codec.encode(Ping(), s.session_id, pn)
    s.send_raw(datagram, pn=pn)
    s.send_raw(datagram, pn=pn)
    after = s.expect_ack(s.ping(), "an ACK for the PING after the duplicate").packet
    assert isinstance(before, Ack) and isinstance(after, Ack)
    got = (after.received_bytes - before.received_bytes, after.received_packets - before.received_packets)
    if got != (3 * len(datagram), 2):
        raise CaseFailed(
            f"received_bytes +{3 * len(datagram)} (both copies and the next PING) and received_packets +2",
            f"+{got[0]} and +{got[1]}",
        )


@case(
    "R9.2-5",
    "An endpoint SHOULD also send an ACK promptly when it raises object_id_limit or announce_limit (section 11.3), "
    "so that a sender waiting for credit is not left waiting.",
    slug="ack-on-raised-limits",
    level="SHOULD",
)
def ack_on_raised_limits(ctx: Context) -> None:
    """A one-chunk object completed: the ACK carrying the raised limits comes at once, not a max_ack_delay later."""
    s = ctx.session()
    before = s.expect_ack(s.ping(), "an ACK for the PING").packet
    assert isinstance(before, Ack)
    s.send_object(small_object(ctx, 1), probe=False)
    sent = ctx.target.clock()

    def raised(d: codec.Decoded) -> bool:
        p = d.packet
        return (
            isinstance(p, Ack)
            and s.attributed(d)
            and (p.object_id_limit > before.object_id_limit or p.announce_limit > before.announce_limit)
        )

    rx = s.maybe(raised, ctx.timeout)
    if rx is None:
        ctx.unsupported("the target raised neither limit when the object finished (R11.3-2)")
    # The ANNOUNCE and the chunk are ack-eliciting: an ordinary delayed ACK would come a
    # max_ack_delay after them; the raise must not wait for that timer.
    late = rx.at - sent
    if late > ctx.target.slack + 0.002:
        raise CaseFailed(
            "the ACK with the raised limits at once",
            f"after {late * 1000:.1f} ms (the target's max_ack_delay is {s.target_params.max_ack_delay_ms} ms): {rx}",
            late=True,
        )


@case(
    "R9.2-6",
    "An ACK whose largest_pn is not lower than the recipient's next packet number in the session (a packet number it "
    "never sent) is a protocol violation (PROTOCOL_VIOLATION).",
    slug="ack-of-unsent-packet",
)
def ack_unsent(ctx: Context) -> None:
    """An ACK for packet 100000, which the target never sent: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    s.send(Ack(100_000, 0, 0, 0, 64, 1 << 20))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "an ACK for a packet number never sent")


@case(
    "R9.3-1",
    "A NACK for an object id the NACK's recipient has never announced is a protocol violation (PROTOCOL_VIOLATION)",
    slug="nack-never-announced",
)
def nack_never_announced(ctx: Context) -> None:
    """A NACK about object 0, which the target never announced: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    s.send(Nack(0, ((0, 1),), largest_pn=0))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "a NACK for an object never announced")


@case(
    "R9.3-7",
    "A COMPLETE for an object id the recipient has never announced, or for an object some chunk of which the "
    "recipient has never sent, is a protocol violation (PROTOCOL_VIOLATION).",
    slug="complete-never-announced",
)
def complete_never_announced(ctx: Context) -> None:
    """A COMPLETE for object 0, which the target never announced: CLOSE PROTOCOL_VIOLATION."""
    s = ctx.session()
    s.send(Complete(0))
    s.expect_close(ErrorCode.PROTOCOL_VIOLATION, "a COMPLETE for an object never announced")


@case(
    "R9.3-8",
    "Chunks a NACK lists that the sender has not yet sent (first copies go in ascending order, R8.2-8) are ignored: "
    "they go out in their turn.",
    slug="nack-for-unsent-chunk",
    needs=("push",),
)
def nack_for_unsent_chunk(ctx: Context) -> None:
    """A server pushing an object, held to 3 x what it received before validation: a NACK for its last chunk, not
    yet sent, brings that chunk neither forward nor twice. A copy that follows a probe timeout's PROBE is R9.4-4's
    resend of a chunk the latest NACK listed, not the NACK's doing, and is let be."""
    c = ctx.client()
    c.handshake()
    before = [rx.packet for rx in c.drain() + c.collect(c.quiet)]  # not validated: the target is held back
    announce = next((p for p in before if isinstance(p, Announce)), None)
    if announce is None:
        ctx.unsupported("the target sends no object unasked")
    oid, last = announce.object_id, announce.chunk_count - 1
    if last < 1 or any(isinstance(p, Data) and p.object_id == oid and p.chunk_index == last for p in before):
        ctx.unsupported("the target sent its whole object before the client's address was validated")
    c.send(Nack(oid, ((last, 1),), False, max(c.rx_largest_pn, 0)))  # it also validates the address (R7.4-1)
    got: list[Rx] = []
    deadline = ctx.target.clock() + ctx.timeout
    while not any(_is_chunk(rx, oid, last) for rx in got) and ctx.target.clock() < deadline:
        more = c.collect(c.quiet)
        got += more
        if not more:
            break
    got += c.collect(c.quiet)
    after = [p.chunk_index for p in (rx.packet for rx in got) if isinstance(p, Data) and p.object_id == oid]
    if last not in after:
        raise CaseFailed(f"chunk {last} in its turn once the address was validated", f"chunks {after}", absent=True)
    first = list(dict.fromkeys(after))  # first copies, in the order they came
    if first.index(last) != len(first) - 1 or _copies_before_probe_timeout(got, oid, last, c.params) > 1:
        raise CaseFailed(f"chunk {last} once, after every chunk below it", f"chunks in this order: {after}")


def _is_chunk(rx: Rx, oid: int, index: int) -> bool:
    p = rx.packet
    return isinstance(p, Data) and p.object_id == oid and p.chunk_index == index


def _copies_before_probe_timeout(got: list[Rx], oid: int, index: int, tester: SessionParams) -> int:
    """Copies of chunk ``index`` up to the first PROBE that can only be a probe timeout's (R9.4-4 may send the chunk
    beside it). The PTO is at least the tester's max_ack_delay plus 1 ms (R9.5-3), so a PROBE sooner than that after
    the chunk's first copy is R9.4-1's, which follows the last chunk at once."""
    pto_floor = (tester.max_ack_delay_ms + 1) / 1000
    first_at: float | None = None
    copies = 0
    for rx in got:
        p = rx.packet
        if _is_chunk(rx, oid, index):
            first_at = rx.at if first_at is None else first_at
            copies += 1
        elif isinstance(p, Probe) and p.object_id == oid and first_at is not None and rx.at - first_at > pto_floor:
            break
    return copies


# ================================================================================================
# Sender role: the target sends an object to the tester


def _last_chunk_then(peer: SenderPeer) -> tuple[int, list[Rx]]:
    """Receive until the last chunk's first copy; returns its position in the session packets."""
    peer.accept()
    announce = peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    assert isinstance(announce.packet, Announce)
    last = announce.packet.chunk_count - 1
    if last < 0:
        peer.ctx.unsupported("the sender's object is empty")
    peer.expect_session("the last chunk", lambda p: isinstance(p, Data) and p.chunk_index == last)
    peer.pump(None, peer.quiet)
    packets = peer.session_packets()
    index = next(i for i, rx in enumerate(packets) if isinstance(rx.packet, Data) and rx.packet.chunk_index == last)
    return index, packets


@case(
    "R9.4-1",
    "Right after it first sends the last chunk of an object (the chunk with the highest index), the sender MUST send "
    "a PROBE for the object with sent_through equal to Chunk Count.",
    slug="probe-after-last-chunk",
    role="sender",
)
def probe_after_last(ctx: Context) -> None:
    """After the last chunk a PROBE with sent_through = Chunk Count follows."""
    peer = ctx.sender()
    index, packets = _last_chunk_then(peer)
    count = peer.obj(0).count
    if not any(isinstance(rx.packet, Probe) and rx.packet.sent_through == count for rx in packets[index + 1 :]):
        after = ", ".join(str(r) for r in packets[index + 1 : index + 4]) or "nothing"
        raise CaseFailed(f"PROBE with sent_through {count} after the last chunk", after)


@case("R9.4-1", "It SHOULD be the next datagram it sends: a copy of the ANNOUNCE that R8.2-10 sends after the last "
      "chunk goes behind the PROBE", slug="probe-next-datagram", role="sender", level="SHOULD")
def probe_next(ctx: Context) -> None:
    """The datagram right after the last chunk is that PROBE."""
    peer = ctx.sender()
    index, packets = _last_chunk_then(peer)
    following = packets[index + 1] if index + 1 < len(packets) else None
    if following is None or not isinstance(following.packet, Probe):
        raise CaseFailed("the PROBE as the next datagram after the last chunk", str(following) if following else "nothing")


def _timer_probe(peer: SenderPeer) -> tuple[int, list[Rx]]:
    """The tester holds every chunk but says nothing about the object, until the probe timer's first
    PROBE: its position in the session packets, and those packets."""
    peer.policy.answer_probes = False
    peer.policy.complete = False
    _last_chunk_then(peer)
    # Start between two expiries, not inside one's copies: the probe timer waits at least PTO, which
    # holds the tester's max_ack_delay (R9.4-2), while a burst's copies go back to back.
    gap = max(0.002, (peer.params.max_ack_delay_ms / 1000 + 0.001) / 2)
    if not peer.pump_until_silent(gap):
        raise CaseFailed(f"a pause of {gap * 1000:.3g} ms between the sender's packets", "none", absent=True)
    first = len([rx for rx in peer.session_packets() if isinstance(rx.packet, Probe)])
    peer.expect_session("a PROBE from the probe timer", lambda p: isinstance(p, Probe))
    packets = peer.session_packets()
    probes = [i for i, rx in enumerate(packets) if isinstance(rx.packet, Probe)]
    if len(probes) <= first:
        raise CaseFailed("another PROBE", "none", absent=True)
    return probes[first], packets


@case(
    "R9.4-2",
    "While an object is unfinished and the sender has nothing of it to send (every chunk has been sent, none is "
    "queued for retransmission and no REPAIR of it waits), the sender MUST run a probe timer for it",
    slug="probe-timer",
    role="sender",
)
def probe_timer(ctx: Context) -> None:
    """The tester holds every chunk but says nothing about the object: PROBEs come again, and no chunk twice (R9.4-4)."""
    peer = ctx.sender()
    _timer_probe(peer)
    twice = [i for i, n in peer.obj(0).copies.items() if n > 1]
    if twice:
        raise CaseFailed("no chunk retransmitted without a NACK (R9.4-4)", f"chunk {twice[0]} sent {peer.obj(0).copies[twice[0]]} times")


@case(
    "R9.4-2",
    "It SHOULD also send the ANNOUNCE again with the PROBE while no NACK for the object without announce_missing "
    "has yet shown that the peer has the ANNOUNCE: before it, or, on every other expiry, behind the PROBE's first "
    "copy",
    slug="probe-timer-repeats-announce",
    role="sender",
    level="SHOULD",
)
def probe_timer_announce(ctx: Context) -> None:
    """The tester holds every chunk but never answers about the object: the PROBE the timer sends has an
    ANNOUNCE right before or right behind it, since nothing showed the ANNOUNCE arrived."""
    peer = ctx.sender()
    index, packets = _timer_probe(peer)
    if isinstance(packets[index - 1].packet, Announce):
        return
    later = [rx for rx in packets[index + 1:] if not isinstance(rx.packet, Ack)]
    after = later[0] if later else peer.expect_session(
        "the packet behind the probe timer's PROBE", lambda packet: not isinstance(packet, Ack))
    if not isinstance(after.packet, Announce):
        raise CaseFailed("the ANNOUNCE again right before or behind the probe timer's PROBE",
                         f"{packets[index - 1]} before it, {after} behind it")


@case(
    "R9.4-4",
    "A sender MUST NOT retransmit chunks that no NACK has listed when the probe timer expires; it sends PROBE, and "
    "retransmits what the answer lists.",
    slug="tail-loss",
    role="sender",
)
def tail_loss(ctx: Context) -> None:
    """The last chunk and the first PROBE "lost": the next PROBE, answered with a NACK, draws that chunk alone."""
    peer = ctx.sender()
    state = {"probes": 0}
    peer.policy.drop = lambda packet, copy: copy == 1 and packet.chunk_index == max(peer.obj(0).count - 1, 0)
    peer.policy.answer_probes = False
    peer.accept()
    announce = peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    assert isinstance(announce.packet, Announce)
    last = announce.packet.chunk_count - 1
    if last < 1:
        ctx.unsupported("the sender's object has fewer than two chunks")
    while state["probes"] < 2:
        peer.expect_session("PROBEs while the tail is missing", lambda p: isinstance(p, Probe))
        state["probes"] += 1
    peer.policy.answer_probes = True
    peer.nack(0, [last])
    incoming = peer.receive_object()
    extra = {i: n for i, n in incoming.copies.items() if n + incoming.dropped[i] > 1 and i != last}
    if extra:
        raise CaseFailed(f"only chunk {last} retransmitted", f"chunks {sorted(extra)} sent again too")


@case(
    "R9.3-4",
    "Otherwise it MUST queue the chunk for retransmission; the chunk counts as lost.",
    slug="nack-retransmitted",
    role="sender",
)
def nack_retransmitted(ctx: Context) -> None:
    """Chunk 1 "lost": the NACK answering the PROBE draws its retransmission, and the object completes."""
    peer = ctx.sender()
    peer.policy.drop = lambda packet, copy: packet.chunk_index == 1 and copy == 1
    peer.accept()
    incoming = peer.receive_object()
    if incoming.dropped[1] == 0:
        ctx.unsupported("the sender's object has a single chunk")


@case(
    "R9.3-5",
    "A sender SHOULD send queued retransmissions before any chunk not yet sent",
    slug="retransmission-before-new-chunks",
    role="sender",
    level="SHOULD",
    needs=("big-object",),
)
def retransmission_first(ctx: Context) -> None:
    """Chunk 2 "lost" and nothing acknowledged until the window is full; then a NACK for chunk 2, which frees the
    window: the first DATA after it is chunk 2, not one of the many chunks not yet sent."""
    peer = ctx.sender()
    silent_receiver(peer)
    peer.policy.drop = lambda packet, copy: packet.chunk_index == 2 and copy == 1
    peer.accept()
    window_filled(peer)
    incoming = peer.obj(0)
    if not incoming.dropped[2]:
        raise CaseFailed("chunk 2 among the first chunks", f"chunks {sorted(incoming.chunks)[:8]}...", absent=True)
    # Nothing is on its way (DATA stopped a quiet spell ago): whatever DATA comes next was chosen after the NACK,
    # whose Largest PN reports every datagram received, so that the whole window is free again.
    unsent = incoming.count - len(incoming.first_seen)
    peer.nack(0, [2])
    rx = peer.expect_session("DATA after the NACK", lambda p: isinstance(p, Data) and p.object_id == 0)
    assert isinstance(rx.packet, Data)
    if rx.packet.chunk_index != 2:
        raise CaseFailed(f"chunk 2 retransmitted before any of the {unsent} chunks not yet sent", f"{rx} first")


@case(
    "R9.4-5",
    "A sender whose congestion window is full and that has received no ACK for PTO (doubling as in R9.4-2) SHOULD "
    "send a PING, which draws an immediate ACK (R9.2-2): without it, lost ACKs could leave the window closed for good.",
    slug="window-full-ping",
    role="sender",
    level="SHOULD",
    needs=("big-object",),
)
def window_full_ping(ctx: Context) -> None:
    """The tester acknowledges nothing (one PING of its own confirms the handshake, R7.2-10): once DATA stops with
    the window full, a PING comes."""
    peer = ctx.sender()
    silent_receiver(peer)
    peer.accept()
    # A packet of the session but no ACK: the sender's handshake PINGs (R7.2-10) end, its window stays full.
    peer.send(Ping())
    sent = window_filled(peer)
    full = sent[-1].at
    if not any(isinstance(rx.packet, Ping) and rx.at >= full for rx in peer.session_packets()):
        peer.expect_session(
            "a PING while the window is full and nothing is acknowledged",
            lambda p: isinstance(p, Ping),
            ctx.timeout,
        )


@case(
    "R9.3-3",
    "On a NACK with announce_missing for an unfinished object it announced, the sender MUST send the object's "
    "ANNOUNCE again (identical to the first)",
    slug="announce-again",
    role="sender",
)
def announce_again(ctx: Context) -> None:
    """NACK with announce_missing: the ANNOUNCE comes again, identical."""
    peer = ctx.sender()
    peer.policy.complete = False
    peer.accept()
    first = peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    peer.nack(0, [], announce_missing=True)
    again = peer.expect_session("the ANNOUNCE again", lambda p: isinstance(p, Announce))
    if again.packet != first.packet:
        raise CaseFailed(f"an identical ANNOUNCE ({first})", str(again))


@case(
    "R9.3-6",
    "A sender MUST NOT retransmit a chunk that no NACK has listed: a quiet receiver is probed (section 9.4), never "
    "flooded with blind retransmissions.",
    slug="no-blind-retransmission",
    role="sender",
)
def no_blind_retransmission(ctx: Context) -> None:
    """A clean transfer: no chunk arrives twice."""
    peer = ctx.sender()
    peer.accept()
    incoming = peer.receive_object()
    twice = [i for i, n in incoming.copies.items() if n > 1]
    if twice:
        raise CaseFailed("each chunk once (no NACK listed any)", f"chunk {twice[0]} sent {incoming.copies[twice[0]]} times")


@case(
    "R9.3-7",
    "On COMPLETE for an object it announced, the sender MUST stop sending anything for that object (chunks, "
    "ANNOUNCE, PROBE) and report the object delivered.",
    slug="complete-stops-object",
    role="sender",
)
def complete_stops(ctx: Context) -> None:
    """After COMPLETE, nothing more about the object arrives."""
    peer = ctx.sender()
    peer.accept()
    peer.receive_object()
    done = ctx.target.clock()
    late = [
        rx for rx in peer.collect(3 * peer.quiet)
        if isinstance(rx.packet, Announce | Data | Probe) and rx.at - done > ctx.target.slack
    ]
    if late:
        raise CaseFailed("nothing about the object after COMPLETE", str(late[0]))


def _whole_and_quiet(peer: SenderPeer) -> Incoming:
    """ACCEPT, then hold every chunk of object 0 (the tester does not COMPLETE it unless its policy
    says so) and wait until nothing is in flight."""
    peer.accept()
    incoming = peer.await_whole()
    peer.pump(None, peer.quiet)
    return incoming


@case(
    "R9.3-2",
    "A NACK about an object the sender has finished MUST NOT cause retransmission.",
    slug="nack-after-complete",
    role="sender",
)
def nack_after_complete(ctx: Context) -> None:
    """The object COMPLETEd and all quiet, then a NACK listing every chunk: no chunk is sent again."""
    peer = ctx.sender()
    incoming = _whole_and_quiet(peer)
    if not incoming.completed:
        raise CaseFailed("the object whole and COMPLETEd by the tester", "it was not", absent=True)
    # Largest PN is fresh and every copy is old: only the object being finished stops a retransmission.
    peer.nack(0, list(range(incoming.count)))
    late = [rx for rx in peer.collect(3 * peer.quiet) if isinstance(rx.packet, Data | Repair) and rx.packet.object_id == 0]
    if late:
        raise CaseFailed("no chunk of a delivered object on a NACK for it", str(late[0]))


@case(
    "R9.3-2",
    "If the object failed (it was cancelled by either side, or failed locally), the sender SHOULD answer with CANCEL "
    "(Origin 1) and the object's error code again",
    slug="nack-after-cancel",
    role="sender",
    level="SHOULD",
)
def nack_after_cancel(ctx: Context) -> None:
    """The tester refuses the object (CANCEL REFUSED), then NACKs a chunk of it: CANCEL (Origin 1, REFUSED) again,
    and no chunk."""
    peer = ctx.sender()
    peer.policy.complete = False
    _whole_and_quiet(peer)
    peer.send(Cancel(0, 0, ErrorCode.REFUSED, "conformance: refused"))
    peer.pump(None, peer.quiet)  # whatever the CANCEL itself draws is not the answer to the NACK
    ended = [rx for rx in peer.session_packets() if isinstance(rx.packet, Close)]
    if ended:
        ctx.unsupported(f"the sender closed the session once its only object failed ({ended[0]})")
    peer.nack(0, [0])
    rx = peer.expect_session(
        "CANCEL (Origin 1, REFUSED) again in answer to the NACK",
        lambda p: isinstance(p, Close) or (isinstance(p, Cancel | Data | Repair) and p.object_id == 0),
    )
    packet = rx.packet
    if isinstance(packet, Close):
        ctx.unsupported(f"the sender closed the session once its only object failed ({rx})")
    if not isinstance(packet, Cancel):
        raise CaseFailed("no chunk of a cancelled object on a NACK for it (a MUST)", str(rx))
    if packet.origin != 1 or packet.error_code != ErrorCode.REFUSED:
        raise CaseFailed("CANCEL (Origin 1, REFUSED): the object's own error code", str(rx))


@case(
    "R9.2-1",
    "or when its own max_ack_delay has passed since the first of those packets arrived, whichever comes first.",
    slug="accept-acknowledged",
    role="sender",
)
def accept_acknowledged(ctx: Context) -> None:
    """The ACCEPT (ack-eliciting) is acknowledged within the sender's own max_ack_delay."""
    peer = ctx.sender()
    peer.policy.ack = False
    peer.policy.complete = False  # a sender may close at once after COMPLETE, before its ACK is due
    peer.accept()
    sent = ctx.target.clock()
    rx = peer.expect_session("an ACK of the ACCEPT", lambda p: isinstance(p, Ack) and p.largest_pn >= 0)
    limit = peer.client_params.max_ack_delay_ms / 1000 + ctx.target.slack
    if rx.at - sent > limit:
        raise CaseFailed(f"the ACK within {limit * 1000:.0f} ms", f"after {(rx.at - sent) * 1000:.1f} ms", late=True)


@case("R9.2-2", "An endpoint MUST send an ACK at once when it receives a PING.", slug="sender-acks-ping", role="sender")
def sender_acks_ping(ctx: Context) -> None:
    """PING to the sender during its transfer: an ACK acknowledging it, at once."""
    peer = ctx.sender()
    peer.policy.ack = False
    peer.policy.complete = False
    peer.accept()
    peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    pn = peer.send(Ping())
    sent = ctx.target.clock()
    rx = peer.expect_session("an ACK of the PING", lambda p: isinstance(p, Ack) and p.largest_pn >= pn)
    if rx.at - sent > ctx.target.slack + 0.002:
        raise CaseFailed("the ACK at once", f"after {(rx.at - sent) * 1000:.1f} ms", late=True)


@case(
    "R9.5-3",
    "PTO = srtt + max(4 * rttvar, 1 ms) + the peer's max_ack_delay.",
    slug="pto-includes-max-ack-delay",
    role="sender",
)
def pto_includes_max_ack_delay(ctx: Context) -> None:
    """With max_ack_delay 200 ms advertised and the object left unanswered, the probe timer's PROBE comes no sooner
    than 200 ms after the last one."""
    delay_ms = 200
    peer = ctx.sender(SessionParams(max_ack_delay_ms=delay_ms))
    peer.policy.answer_probes = False
    peer.policy.complete = False
    peer.accept()
    # The PROBE after the last chunk (and any copies sent with it), then the timer's PROBE: the
    # first one that comes well apart from those before it. No feedback about the object is sent,
    # so the timer runs from the last PROBE.
    wait = 2 * delay_ms / 1000 + ctx.timeout
    last = peer.expect_session("the PROBE after the last chunk", lambda p: isinstance(p, Probe), wait).at
    while (gap := peer.expect_session("the probe timer's PROBE", lambda p: isinstance(p, Probe), wait).at - last) <= ctx.target.slack:
        last += gap
    least = (delay_ms + 1) / 1000 - ctx.target.slack  # srtt > 0, max(4 rttvar, 1 ms) >= 1 ms
    if gap < least:
        raise CaseFailed(
            f"the probe timer's PROBE at least {delay_ms + 1} ms after the previous one (PTO includes the tester's max_ack_delay)",
            f"{gap * 1000:.1f} ms after it",
        )


def _estimate(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """srtt and rttvar after ``samples`` (latest_rtt, ack_delay), as spec 9.5 computes them. Written out
    from the spec, not taken from protocol.rtt: the tester must not share the estimator it judges."""
    min_rtt = float("inf")
    srtt = rttvar = 0.0
    for n, (latest, ack_delay) in enumerate(samples):
        min_rtt = min(min_rtt, latest)
        sample = latest - ack_delay if latest - ack_delay >= min_rtt else latest
        if n == 0:
            srtt, rttvar = sample, sample / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - sample)
            srtt = 0.875 * srtt + 0.125 * sample
    return srtt, rttvar


def _probe_timeout(ctx: Context, holds: list[tuple[float, float]], params: SessionParams | None = None) -> None:
    """The sender's RTT samples set by the tester, read back from its probe timer.

    The tester acknowledges the sender's first ``len(holds)`` ack-eliciting packets, packet i ``holds[i][0]`` seconds
    after it arrived, claiming ``holds[i][1]`` of ack delay, and nothing else: the object stays unanswered. The
    samples the sender takes (R9.5-1) are then known to the tester. A NACK listing nothing restarts the probe
    timer (R9.4-2): the PROBE that follows must come one PTO (R9.5-3) later, PTO computed as spec 9.5 says from
    those samples, with the handshake's first (R7.5-1, a SHOULD) or without it.
    """
    peer = ctx.sender(params)
    silent_receiver(peer)
    peer.accept()
    clock = ctx.target.clock
    path = ctx.target.path_delay  # one way: a sample is the tester's wait and a round trip
    assert peer.accept_sent_at is not None
    handshake = peer.accept_sent_at - peer.first.at + 2 * path
    pending: list[tuple[float, Ack, float]] = []  # (when due, the ACK, when its packet arrived)
    samples: list[tuple[float, float]] = []
    acked = -1
    taken = 0
    deadline = clock() + ctx.timeout + max(hold for hold, _ in holds)
    while taken < len(holds) or pending:
        now = clock()
        if pending and pending[0][0] <= now:
            _, ack, arrived = pending.pop(0)
            peer.send(ack)
            if ack.largest_pn > acked:  # only a larger largest_pn gives a sample (R9.5-1)
                acked = ack.largest_pn
                samples.append((clock() - arrived + 2 * path, ack.ack_delay_us / 1e6))
            continue
        if now >= deadline:
            raise CaseFailed(f"{len(holds)} ack-eliciting packets in the session", f"{taken} within the time", absent=True)
        rx = peer.inbox.pop(0) if peer.inbox else peer.pull((pending[0][0] if pending else deadline) - now)
        if rx is None or rx.decoded is None:
            continue
        peer.handle(rx)
        decoded = rx.decoded
        if taken >= len(holds) or not peer.in_session(decoded):
            continue
        if codec.PACKET_TYPE_OF[type(decoded.packet)] in NON_ACK_ELICITING:
            continue
        hold, claimed = holds[taken]
        taken += 1
        ack = Ack(
            largest_pn=decoded.packet_number,
            ack_delay_us=round(claimed * 1e6),
            received_bytes=peer.rx_bytes,
            received_packets=peer.rx_packets,
            object_id_limit=peer.params.max_concurrent_objects,
            announce_limit=peer.params.max_buffered_bytes,
        )
        pending.append((rx.at + hold, ack, rx.at))
        pending.sort(key=lambda item: item[0])
    peer.drain()
    peer.nack(0, [])
    restarted = clock()
    # A PROBE the sender sent before the NACK reached it arrives within a round trip of it.
    earliest = restarted + 2 * path + min(ctx.target.slack, 0.01)
    max_ack_delay = peer.params.max_ack_delay_ms / 1000
    with_handshake, without = (
        srtt + max(4 * rttvar, 0.001) + max_ack_delay
        for srtt, rttvar in (_estimate([(handshake, 0.0), *samples]), _estimate(samples))
    )
    low, high = min(with_handshake, without), max(with_handshake, without)
    rx = peer.expect_session(
        "the PROBE of the probe timer the NACK restarted",
        lambda p: isinstance(p, Probe) and clock() > earliest,
        high + ctx.timeout,
    )
    waited = rx.at - restarted - 2 * path
    margin = 0.05 * high + 2 * ctx.target.slack
    if not low - margin <= waited <= high + margin:
        shown = " ".join(f"{latest * 1000:.0f}-{delay * 1000:.0f}" for latest, delay in samples)
        raise CaseFailed(
            f"the PROBE one PTO after the NACK: {with_handshake * 1000:.0f} ms (after the handshake's sample, R7.5-1) or "
            f"{without * 1000:.0f} ms (without it), from the samples the tester's ACKs gave (latest_rtt-ack_delay, ms: "
            f"{shown})",
            f"{waited * 1000:.0f} ms",
        )
    ctx.note(f"PTO {waited * 1000:.0f} ms; spec 9.5 gives {low * 1000:.0f} to {high * 1000:.0f} ms")


@case(
    "R9.5-1",
    "If latest_rtt - ack_delay is not less than min_rtt, it uses latest_rtt - ack_delay as the sample (ack_delay "
    "taken from the ACK, in seconds), otherwise latest_rtt.",
    slug="ack-delay-subtracted",
    role="sender",
)
def ack_delay_subtracted(ctx: Context) -> None:
    """With max_ack_delay 500 ms advertised, the first ACK at once, then 15 ACKs each held 450 ms claiming 440 ms of
    ack delay: the probe timer's PTO is that of samples of 10 ms, not of 450."""
    _probe_timeout(ctx, [(0.0, 0.0)] + [(0.45, 0.44)] * 15, SessionParams(max_ack_delay_ms=500))


@case(
    "R9.5-2",
    "The first sample sets srtt = sample and rttvar = sample / 2. Each later sample sets rttvar = 3/4 * rttvar + 1/4 * "
    "|srtt - sample|, then srtt = 7/8 * srtt + 1/8 * sample (the estimator of RFC 6298, as used by RFC 9002).",
    slug="rtt-estimator",
    role="sender",
)
def rtt_estimator(ctx: Context) -> None:
    """16 ACKs claiming no ack delay, held 100 ms, 130 ms, ... 550 ms (to the sender, a path growing slower): the
    probe timer's PTO is srtt + 4 x rttvar + max_ack_delay as RFC 6298 smooths those samples."""
    _probe_timeout(ctx, [(0.1 + 0.03 * i, 0.0) for i in range(16)])


# ================================================================================================
# 9.6 Forward repair


@case(
    "R9.6-2",
    "A receiver that advertised repair_decoder = 1 SHOULD use REPAIRs to rebuild missing chunks when the equations "
    "they give, together with the chunks it holds, determine them.",
    level="SHOULD",
    slug="repair-rebuilds-chunk",
)
def repair_rebuilds_chunk(ctx: Context) -> None:
    """Chunks 0 and 2 of 3, then a REPAIR that is chunk 1 (a window of one): COMPLETE without chunk 1."""
    s = ctx.session()
    if s.target_params.repair_decoder != 1:
        raise Unsupported("the target advertises repair_decoder = 0")
    obj = small_object(ctx, 3)
    s.announce(obj)
    s.send(Data(obj.object_id, 0, obj.chunk(0)))
    s.send(Data(obj.object_id, 2, obj.chunk(2)))
    seed = next(seed for seed in range(1, 64) if repair.coefficients(seed, 1))
    s.send(Repair(obj.object_id, 1, seed, 1, obj.chunk(1)))
    s.expect(
        lambda d: isinstance(d.packet, Complete) and d.packet.object_id == obj.object_id,
        "COMPLETE: chunk 1 is the REPAIR's Repair Data",
    )


def _decoder(s: Client) -> None:
    if s.target_params.repair_decoder != 1:
        raise Unsupported("the target advertises repair_decoder = 0")


def _seed_choosing_all(count: int) -> int:
    """A Seed whose REPAIR over a window of ``count`` chunks combines every one of them (spec 5.14)."""
    return next(seed for seed in range(1, 1 << 16) if repair.coefficients(seed, count) == (1 << count) - 1)


@case(
    "R9.6-3",
    "A REPAIR for an object the receiver has finished is answered as a DATA would be (its final word, section 9.1).",
    slug="repair-after-finish",
)
def repair_after_finish(ctx: Context) -> None:
    """A REPAIR for a completed object: COMPLETE again."""
    s = ctx.session()
    _decoder(s)
    obj = small_object(ctx, 2)
    must_complete(s.transfer(obj), "the object")
    s.collect(s.quiet)  # the COMPLETE's copies; and past the rate limit of repeated final words (R9.1-9)
    s.drain()
    s.send(Repair(obj.object_id, 0, _seed_choosing_all(1), 1, obj.chunk(0)))
    s.expect(lambda d: isinstance(d.packet, Complete) and d.packet.object_id == 0, "COMPLETE, the object's final word")


@case(
    "R9.6-4",
    "If an object's digest check fails (section 10.3) and chunks of it were rebuilt from REPAIRs, the receiver SHOULD "
    "discard the rebuilt chunks only, report them missing, and stop using REPAIRs for that object, instead of treating "
    "the mismatch as a digest failure",
    slug="wrong-repair-refetched",
    level="SHOULD",
)
def wrong_repair_refetched(ctx: Context) -> None:
    """Chunks 0 and 2 of 3 and a REPAIR that stands for a wrong chunk 1: the NACK asks for chunk 1 alone, and with
    it the object completes."""
    s = ctx.session()
    _decoder(s)
    obj = small_object(ctx, 3)
    s.send_object(obj, order=[0, 2], probe=False)
    wrong = bytes(b ^ 0xA5 for b in obj.chunk(1))  # chunk 1 is whole: no padding to give the REPAIR away
    s.send(Repair(obj.object_id, 1, _seed_choosing_all(1), 1, wrong))
    rx = s.expect(
        lambda d: isinstance(d.packet, Nack | Complete | Cancel) and d.packet.object_id == 0
        and not (isinstance(d.packet, Nack) and not d.packet.missing),
        "a NACK for chunk 1, the only chunk rebuilt",
    )
    if not isinstance(rx.packet, Nack) or listed(rx.packet.missing) != {1}:
        raise CaseFailed("a NACK listing chunk 1 alone (the chunks that came as DATA are kept)", str(rx))
    s.data(obj, 1)
    done = s.expect(lambda d: isinstance(d.packet, Complete | Cancel) and d.packet.object_id == 0, "COMPLETE once chunk 1 came")
    if not isinstance(done.packet, Complete):
        raise CaseFailed("COMPLETE once chunk 1 came as DATA", str(done))


@case(
    "R9.6-5",
    "While the REPAIRs it holds for an object lack d equations to determine the missing chunks they cover, a receiver "
    "SHOULD report (NACK) only d of those chunks when their reports fall due, and hold back the others",
    slug="repair-deficit-nacked",
    level="SHOULD",
)
def repair_deficit_nacked(ctx: Context) -> None:
    """Chunks 2 and 3 of 6 left out and one REPAIR over both: the NACK asks for one of them, and that one completes
    the object."""
    s = ctx.session()
    _decoder(s)
    obj = small_object(ctx, 6)
    s.send_object(obj, order=[0, 1, 4, 5], probe=False)
    both = bytes(a ^ b for a, b in zip(obj.chunk(2), obj.chunk(3), strict=True))
    s.send(Repair(obj.object_id, 2, _seed_choosing_all(2), 2, both))  # two unknowns, one equation: d = 1
    rx = s.expect(
        lambda d: isinstance(d.packet, Nack) and d.packet.object_id == 0 and bool(listed(d.packet.missing) & {2, 3}),
        "a NACK for chunk 2 or 3",
    )
    assert isinstance(rx.packet, Nack)
    asked = listed(rx.packet.missing) & {2, 3}
    if len(asked) != 1:
        raise CaseFailed("a NACK naming one of chunks 2 and 3 (the REPAIR gives the other)", str(rx))
    s.data(obj, asked.pop())
    s.expect(
        lambda d: isinstance(d.packet, Complete) and d.packet.object_id == 0,
        "COMPLETE: the chunk asked for and the REPAIR determine the other",
    )


@case(
    "R9.1-11",
    "When no DATA, REPAIR or PROBE of any object has arrived from the peer for one probe timeout",
    slug="silent-sender-asked",
    level="SHOULD",
)
def silent_sender_asked(ctx: Context) -> None:
    """The ANNOUNCE of a 3-chunk object, and nothing after it, not even a PROBE: a NACK asks for chunks 0-2, and the
    chunks it asks for complete the object."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    rx = s.expect(
        lambda d: isinstance(d.packet, Nack) and d.packet.object_id == 0 and bool(d.packet.missing),
        "a NACK for the chunks of an object whose sender went silent after its ANNOUNCE",
    )
    assert isinstance(rx.packet, Nack)
    if listed(rx.packet.missing) != {0, 1, 2}:
        raise CaseFailed("a NACK listing chunks 0-2, all the object has", str(rx))
    for index in range(3):
        s.data(obj, index)
    s.expect(lambda d: isinstance(d.packet, Complete) and d.packet.object_id == 0, "COMPLETE once the chunks came")


@case(
    "R9.6-1",
    "An endpoint MUST NOT send REPAIR to a peer whose repair_decoder is 0.",
    slug="no-repair-without-decoder",
    role="sender",
)
def no_repair_without_decoder(ctx: Context) -> None:
    """With repair_decoder = 0 advertised and a chunk "lost", the transfer completes without a single REPAIR."""
    peer = ctx.sender(SessionParams(repair_decoder=0))
    peer.policy.drop = lambda packet, copy: copy == 1 and packet.chunk_index == max(peer.obj(0).count - 2, 0)
    peer.accept()
    peer.receive_object()
    peer.pump(None, peer.quiet)  # a REPAIR batch may follow the retransmission round
    repairs = [rx for rx in peer.session_packets() if isinstance(rx.packet, Repair)]
    if repairs:
        raise CaseFailed("no REPAIR to a peer that advertised repair_decoder = 0", str(repairs[0]))


@case(
    "R9.6-6",
    "a sender SHOULD NOT retransmit a chunk of a window because of a NACK whose Largest PN is below the packet number "
    "of the last REPAIR it sent for that window",
    slug="nack-before-repairs",
    role="sender",
    level="SHOULD",
)
def nack_before_repairs(ctx: Context) -> None:
    """With repair_decoder = 1, chunk n-2 "lost" and a NACK for it written before the REPAIRs covering it: the NACK
    draws no retransmission; a later one does."""
    peer = ctx.sender(SessionParams(repair_decoder=1))
    peer.policy.answer_probes = False
    peer.accept()
    announce = peer.expect_session("the ANNOUNCE", lambda p: isinstance(p, Announce))
    assert isinstance(announce.packet, Announce)
    lost = announce.packet.chunk_count - 2
    if lost < 0:
        ctx.unsupported("the sender's object has fewer than two chunks")
    peer.policy.drop = lambda packet, copy: copy == 1 and packet.chunk_index == lost
    peer.pump(None, peer.quiet)  # the chunks, the PROBE and the REPAIRs; later PROBEs go unanswered
    packets = [(rx.decoded.packet_number, rx.packet) for rx in peer.session_packets() if rx.decoded is not None]
    copy_pn = next((pn for pn, p in packets if isinstance(p, Data) and p.chunk_index == lost), None)
    if copy_pn is None:
        raise CaseFailed(f"chunk {lost} of the object", "it never came", absent=True)
    covering = [
        pn for pn, p in packets
        if isinstance(p, Repair) and p.object_id == 0 and p.first_index <= lost < p.first_index + p.count and pn > copy_pn
    ]
    if not covering:
        ctx.unsupported(f"the sender sent no REPAIR whose window holds chunk {lost}")
    # The NACK as written when the datagram before the first such REPAIR had arrived: after the lost
    # copy (so R9.3-4 allows a retransmission), before every REPAIR that may rebuild the chunk.
    stale = max(pn for pn, _ in packets if pn < min(covering))
    if stale <= copy_pn or len([pn for pn in covering if pn > stale]) < 2:
        ctx.unsupported(f"too few REPAIRs covering chunk {lost} after it to judge")
    incoming = peer.obj(0)
    copies = incoming.copies[lost] + incoming.dropped[lost]
    seen = len(peer.session_packets())
    peer.send(Nack(0, ((lost, 1),), False, stale))
    # Up to the sender's next PROBE: a probe timeout may send the chunk again with its PROBE (R9.4-4),
    # which the NACK did not cause.
    peer.pump(lambda: any(isinstance(rx.packet, Probe) for rx in peer.session_packets()[seen:]), peer.quiet)
    if incoming.copies[lost] + incoming.dropped[lost] > copies:
        raise CaseFailed(
            f"no retransmission of chunk {lost} on a NACK with Largest PN {stale}, below the REPAIRs for it "
            f"(up to pn {max(covering)})",
            f"chunk {lost} sent again",
        )
    peer.policy.answer_probes = True
    peer.receive_object()  # a NACK written after the REPAIRs does draw it (R9.3-4)
