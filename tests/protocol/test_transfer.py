"""Whole transfers between two sans-I/O endpoints in virtual time (issue 2, spec 8-12).

Every run is seeded; the simulator's clock is virtual, so a 5 MB transfer at 30% loss takes a
fraction of a second of wall time.
"""

from __future__ import annotations

import collections
import itertools
import math
import random
from collections.abc import Callable

import pytest

from protocol import codec
from protocol.config import SessionConfig
from protocol.connection import MAX_COPIES, copies_against, spread_copies
from protocol.constants import MAX_PN, ErrorCode
from protocol.endpoint import Endpoint
from protocol.events import ConnectionClosed, ObjectDelivered, ObjectFailed, ObjectReceived

from .harness import CLIENT, Pair


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("loss", [0.0, 0.01, 0.05, 0.10, 0.20, 0.30, 0.40, 0.50])
def test_bit_exact_under_random_loss(loss: float) -> None:
    pair = Pair(f"loss={loss * 100:g}% rtt=60ms rate=50mbit queue=250kb", seed=int(loss * 100) + 1)
    data = payload(300_000, 7)
    oid = pair.send(data, name="x.jpg", content_type="image/jpeg")
    pair.run_until(lambda: pair.finished([oid]), timeout=120)
    received = pair.server_log.received()
    assert [r.data for r in received] == [data]
    assert [e.object_id for e in pair.client_log.of(ObjectDelivered)] == [oid]
    stats = pair.conn.stats()
    # Bytes on the wire track 1/(1 - loss): nothing like "resend everything" happens.
    ideal_chunks = received[0].stats["chunks"] / (1 - loss) if loss < 1 else 0
    assert stats["chunks_sent"] <= ideal_chunks * 1.25 + 10


def test_five_megabytes_at_thirty_percent_loss() -> None:
    pair = Pair("loss=30% rtt=100ms rate=50mbit queue=250kb", seed=11)
    data = payload(5_000_000, 11)
    oid = pair.send(data, name="big.png", content_type="image/png")
    t = pair.run_until(lambda: pair.finished([oid]), timeout=300)
    assert pair.server_log.received()[0].data == data
    # Virtual time, not wall time: at least the serialisation time of 5 MB at 35 Mbit/s effective.
    assert t > 5_000_000 * 8 / 50e6


@pytest.mark.parametrize(
    "link",
    [
        "loss=5% delay=30ms jitter=20ms",  # jitter that reorders
        "loss=5% delay=30ms reorder=25%,3",
        "loss=5% delay=30ms dup=20%",
        "loss=5% delay=30ms corrupt=10%",
        "ge=2%,30% delay=40ms",  # bursts
    ],
)
def test_bit_exact_under_reordering_duplication_corruption_and_bursts(link: str) -> None:
    pair = Pair(link, seed=5)
    objects = [payload(n, n) for n in (1, 1023, 1024, 1025, 70_000, 250_000)]
    ids = [pair.send(d, name=f"o{i}", content_type="image/jpeg") for i, d in enumerate(objects)]
    pair.run_until(lambda: pair.finished(ids), timeout=120)
    got = {r.object_id: r.data for r in pair.server_log.received()}
    assert got == dict(zip(ids, objects, strict=True))
    if "corrupt" in link:
        assert pair.server.drops["checksum"] + pair.client.drops["checksum"] > 0


def test_many_objects_in_flight_and_replies_matched() -> None:
    pair = Pair("loss=10% rtt=80ms rate=20mbit", seed=9)
    objects = [payload(2000 + 997 * i, i) for i in range(40)]
    ids = [pair.send(d, name=f"img{i}", content_type="image/png", want_reply=True) for i, d in enumerate(objects)]

    replies: dict[int, bytes] = {}

    def serve_replies() -> bool:
        # The server's application answers every object with its own length, as a reply object.
        for r in pair.server_log.received():
            if r.object_id not in replies:
                replies[r.object_id] = str(len(r.data)).encode()
                server_conn = next(iter(pair.server.sessions.values()))
                server_conn.send_object(replies[r.object_id], pair.sim.now, name="reply",
                                        content_type="application/json", in_reply_to=r.object_id)
                pair.sim.poke()
        got = [r for r in pair.client_log.received() if r.in_reply_to is not None]
        return len(got) == len(ids)

    pair.run_until(serve_replies, timeout=120)
    answers = {r.in_reply_to: r.data for r in pair.client_log.received()}
    assert answers == {oid: str(len(d)).encode() for oid, d in zip(ids, objects, strict=True)}


def test_flow_control_credit_lets_more_objects_than_the_window_through() -> None:
    server_config = SessionConfig(max_concurrent_objects=2, max_object_size=50_000, max_buffered_bytes=60_000)
    pair = Pair("loss=5% rtt=40ms", seed=4, server_config=server_config)
    objects = [payload(30_000, i) for i in range(9)]
    ids = [pair.send(d, name=str(i)) for i, d in enumerate(objects)]
    pair.run_until(lambda: pair.finished(ids), timeout=120)
    assert sorted(r.data for r in pair.server_log.received()) == sorted(objects)
    assert not pair.server_log.of(ConnectionClosed)  # no FLOW_CONTROL_ERROR


def test_object_over_the_receivers_limit_fails_locally_without_traffic() -> None:
    pair = Pair("rtt=20ms", seed=2, server_config=SessionConfig(max_object_size=10_000, max_buffered_bytes=10_000))
    small = pair.send(payload(5_000, 1), name="ok")
    big = pair.send(payload(20_000, 2), name="too-big")
    pair.run_until(lambda: pair.finished([small, big]), timeout=30)
    failed = [e for e in pair.client_log.of(ObjectFailed) if e.outgoing]
    assert [(e.object_id, e.error_code) for e in failed] == [(big, ErrorCode.OBJECT_TOO_LARGE)]
    assert [r.name for r in pair.server_log.received()] == ["ok"]


def test_refused_objects_give_their_credit_back() -> None:
    # spec R11.3-5: an object refused at its ANNOUNCE (REFUSED) counts as announced and finished at
    # once. The sender counted it when it announced it; were the receiver to count it nowhere, five
    # refusals of 40 kB would leave the sender 200 kB over a 100 kB credit, waiting for ever.
    pair = Pair("rtt=20ms", seed=2, server_config=SessionConfig(max_object_size=50_000, max_buffered_bytes=100_000))
    pair.server.admit = lambda conn, announce: "not this one" if announce.name.startswith("bad") else None
    refused = [pair.send(payload(40_000, k), name=f"bad{k}") for k in range(5)]
    pair.run_until(lambda: pair.finished(refused), timeout=10)
    good = [pair.send(payload(40_000, 10 + k), name=f"good{k}") for k in range(3)]
    pair.run_until(lambda: pair.finished(good), timeout=10)
    assert [r.name for r in pair.server_log.received()] == ["good0", "good1", "good2"]
    failed = [e for e in pair.client_log.of(ObjectFailed) if e.outgoing]
    assert [(e.object_id, e.error_code) for e in failed] == [(oid, ErrorCode.REFUSED) for oid in refused]


def test_total_blackout_ends_with_an_error_within_the_timeout() -> None:
    config = SessionConfig(idle_timeout=5.0)
    pair = Pair("rtt=50ms rate=10mbit blackout=0.5s-100s", seed=3, client_config=config, server_config=config)
    oid = pair.send(payload(2_000_000, 3), name="never")
    t = pair.run_until(lambda: pair.finished([oid]) and pair.closed(), timeout=60)
    assert t < 0.5 + 5.0 + 1.0
    failure = [e for e in pair.client_log.of(ObjectFailed) if e.outgoing]
    assert failure and failure[0].error_code == ErrorCode.IDLE_TIMEOUT
    assert not pair.server_log.received()  # never a partial or wrong object


def test_unreachable_server_ends_with_handshake_timeout() -> None:
    config = SessionConfig(handshake_timeout=3.0)
    pair = Pair("loss=100%", seed=1, client_config=config)
    oid = pair.send(b"x" * 100, name="x")
    t = pair.run_until(lambda: pair.finished([oid]), timeout=30)
    assert 3.0 <= t < 3.5
    [event] = pair.client_log.of(ConnectionClosed)
    assert event.error_code == ErrorCode.HANDSHAKE_TIMEOUT


def test_a_handshake_outlasts_an_outage_that_leaves_no_time_within_ten_seconds() -> None:
    """An 8.5 s outage from 0.3 s on a path of 1.5 s RTT: the first INITIAL after it leaves at 9.3 s
    and its ACCEPT comes back at 10.8 s, past the protocol's 10 s. `snip send` waits 30 s by
    default (apps.transports.snip.DEFAULT_CONNECT_TIMEOUT_S) and opens the session."""
    link = "rate=10mbit rtt=1500ms blackout=0.3s-8.8s"

    def opened(timeout: float) -> bool:
        config = SessionConfig(handshake_timeout=timeout)
        pair = Pair(link, seed=1, client_config=config)
        oid = pair.send(b"x" * 5000, name="x")
        pair.run_until(lambda: pair.finished([oid]), timeout=60)
        return bool(pair.client_log.of(ObjectDelivered))

    assert not opened(10.0)
    assert opened(30.0)


def test_initial_retransmissions_double_up_to_a_second() -> None:
    """R7.2-2: 0.3 s after the first try, then doubling, but never more than 1 s apart, so that the
    10 s handshake timeout holds twelve tries; two copies a try, and one more for each unanswered try
    beyond the second, up to six."""
    pair = Pair("loss=100%", seed=1)
    sent = pair.record_client_packets()
    pair.run_until(pair.closed, timeout=30)
    times = [t for t, packet in sent if isinstance(packet, codec.Initial)]
    tries = sorted(set(times))
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(tries)]
    assert gaps == [0.3, 0.6] + [1.0] * 9
    assert [times.count(t) for t in tries] == [2, 2, 3, 4, 5] + [6] * 7


def test_handshake_opens_at_50_percent_loss_each_way() -> None:
    """With intervals doubling without end, seed 32 never opened within the 10 s timeout."""

    def opens(seed: int) -> bool:
        pair = Pair("rate=10mbit rtt=100ms loss=50%", seed=seed)
        pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED" or pair.closed(), timeout=15)
        return not pair.closed()

    assert [seed for seed in range(1, 41) if not opens(seed)] == []


def test_handshake_opens_at_70_percent_loss_each_way() -> None:
    """A copy is answered about one time in eleven at 70 % loss each way. With two copies a try, one
    handshake in eight timed out (0.83 ** 11); with copies that grow with each unanswered try, one in
    two hundred or so (0.91 ** 58)."""

    def opens(seed: int) -> bool:
        pair = Pair("rate=10mbit rtt=100ms loss=70%", seed=seed)
        pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED" or pair.closed(), timeout=15)
        return not pair.closed()

    assert len([seed for seed in range(1, 201) if not opens(seed)]) <= 3


def test_handshake_opens_at_85_percent_loss_each_way() -> None:
    """R7.3-4: a copy of an INITIAL and one ACCEPT in answer both arrive 2 % of the time at 85 %
    loss each way, and one handshake in four timed out (15 of these 60 seeds). The server now
    answers an INITIAL whose packet number shows the others lost with copies of ACCEPT."""

    def opens(seed: int) -> bool:
        pair = Pair("rate=10mbit rtt=100ms loss=85%", seed=seed)
        pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED" or pair.closed(), timeout=15)
        return not pair.closed()

    assert len([seed for seed in range(1, 61) if not opens(seed)]) <= 2


def _accepts_for(pns: list[int]) -> list[list[int]]:
    """The ACCEPTs (their packet numbers) a server sends for each of one client's INITIALs in turn."""
    ep = Endpoint(SessionConfig(), server=True)
    answers = []
    for k, pn in enumerate(pns):
        ep.receive_datagram(codec.encode(codec.Initial(), 77, pn), CLIENT, k * 0.3)
        decoded = [codec.decode(datagram) for datagram, _ in ep.datagrams_to_send(k * 0.3)]
        assert all(isinstance(d.packet, codec.Accept) for d in decoded)
        answers.append([d.packet_number for d in decoded])
    return answers


def test_accept_goes_in_copies_as_the_initials_packet_numbers_show_them_lost() -> None:
    """R7.3-4: one ACCEPT while none of the client's INITIALs went missing; for a first INITIAL
    numbered 9 (nine lost), six; for 1 of 2 lost, as many as 50 % loss calls for (capped at six),
    and then for 1 of 3, five (a third ** 5 < 1 %); each copy with the session's next packet number."""
    assert _accepts_for([0, 1, 2]) == [[0], [1], [2]]
    assert _accepts_for([9]) == [[0, 1, 2, 3, 4, 5]]
    assert _accepts_for([1, 2]) == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]


def test_the_first_nack_for_a_tail_the_queue_dropped_is_acted_on_at_once() -> None:
    """R9.3-4. The first flight overruns a 30 kB queue at 512 kbit/s; the RTT samples climb with the
    queue, and rttvar with them, while the jitter estimate (spec 9.5) stays small. A wait of a round
    trip plus 2 x rttvar turned away the first NACK for the dropped tail, and the chunks went again
    only on the next report, 0.18 s later."""
    pair = Pair("rate=512kbit queue=30kb rtt=200ms", seed=1)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=10)
    log: list[tuple[float, bool, int, codec.Packet]] = []

    def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes:
        decoded = codec.decode(datagram)
        log.append((now, src == CLIENT, decoded.packet_number, decoded.packet))
        return datagram

    pair.sim.add_tap(tap)
    oid = pair.send(payload(64 << 10, 1))
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    last_pn: dict[int, int] = {}
    first_nack: tuple[float, list[int]] | None = None
    acted_on: dict[int, float] = {}
    for now, from_client, pn, packet in log:
        if from_client and isinstance(packet, codec.Data):
            if first_nack is not None and packet.chunk_index in first_nack[1]:
                acted_on.setdefault(packet.chunk_index, now)
            last_pn[packet.chunk_index] = pn
        elif not from_client and isinstance(packet, codec.Nack) and packet.missing and first_nack is None:
            listed = [i for first, count in packet.missing for i in range(first, first + count)]
            first_nack = (now, [i for i in listed if last_pn[i] < packet.largest_pn])
    assert first_nack is not None and len(first_nack[1]) >= 10  # the queue dropped a tail
    arrives = first_nack[0] + 0.100  # one way, over an idle return path
    first_chunk = first_nack[1][0]
    assert acted_on[first_chunk] <= arrives + 0.005


def test_a_window_shut_by_lost_datagrams_opens_again_at_heavy_loss_and_reordering() -> None:
    """Spec 11.1 and R9.4-5. At 40 % loss each way, with a quarter of the datagrams overtaking the
    rest (as netem's reorder does), the window shrank to a few datagrams and its newest ones were
    lost. ACKs of the peer's NACKs counted in flight, NACKs did not take anything out of it, and the
    window PING backed off to 64 PTOs: the third object stalled and failed by timeout after 32 s."""
    pair = Pair("rate=50mbit queue=250kb rtt=60ms jitter=5ms reorder=25% loss=40%", seed=4)
    rng = random.Random(4)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=10)
    for size in (64, 256, 1024):  # one after another, as the bench sends them
        oid = pair.send(rng.randbytes(size << 10))
        pair.run_until(lambda: pair.finished([oid]), timeout=60)  # noqa: B023 (called at once)
    assert len(pair.client_log.of(ObjectDelivered)) == 3
    assert not pair.client_log.of(ObjectFailed)


def test_window_probes_stop_doubling_at_a_fifth_of_a_second() -> None:
    """R9.4-5 (doubling as in R9.4-2): a sender whose window is full and that hears nothing sends a
    PING at intervals that stop growing at max(0.2 s, 2 x srtt), here 0.2 s, not at 64 PTOs."""
    pair = Pair("rate=20mbit queue=250kb rtt=50ms blackout=0.3s-9s", seed=2)
    sent = pair.record_client_packets()
    pair.send(payload(2_000_000, 2))
    pair.run_until(lambda: pair.sim.now > 8.9, timeout=20)
    pings = [t for t, packet in sent if isinstance(packet, codec.Ping) and 1.0 < t < 9.0]
    assert len(set(pings)) >= 30
    assert max(b - a for a, b in itertools.pairwise(pings)) <= 0.2 + 1e-6


def test_a_ping_is_answered_in_as_many_copies_as_a_complete() -> None:
    """R9.2-2. A sender whose window is full of lost packets hears of them only from the ACKs its
    PINGs draw (R9.4-5). Sent once per PING, those ACKs were lost fifteen times running over 28 s
    on a return path that loses in runs, and the session ended. Once the answering endpoint has
    counted its own packets' loss, on a path losing half of them, the answer goes in copies; on a
    clean path, once. (Keep-alive PINGs, one a second at a 3 s idle timeout, stand for any.)"""

    def answers(link: str) -> list[int]:
        pair = Pair(link, seed=7, client_config=SessionConfig(idle_timeout=3.0))
        pair.run_until(lambda: pair.conn.state.value == "established", timeout=30)
        warm_up = pair.send(payload(512 << 10, 7), name="warm-up")  # the server counts its loss
        pair.run_until(lambda: pair.finished([warm_up]), timeout=60)
        pings: list[float] = []
        acks: collections.Counter[float] = collections.Counter()

        def arrived(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes:
            if src == CLIENT and isinstance(codec.decode(datagram).packet, codec.Ping):
                pings.append(now)
            return datagram

        def sent(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes:
            if src != CLIENT and isinstance(codec.decode(datagram).packet, codec.Ack):
                acks[now] += 1
            return datagram

        pair.sim.add_tap(arrived, on="deliver")
        pair.sim.add_tap(sent)
        pair.sim.run_for(15.0)
        assert pings
        return [acks[t] for t in pings]

    assert min(answers("rate=10mbit rtt=100ms loss=50%")) >= 3
    assert set(answers("rate=10mbit rtt=100ms")) == {1}


def test_deadline_drops_a_stale_object_and_the_next_one_still_arrives() -> None:
    pair = Pair("rtt=100ms rate=2mbit", seed=6)
    stale = pair.send(payload(400_000, 1), name="stale-frame", deadline=0.3)
    fresh = pair.send(payload(20_000, 2), name="fresh-frame", deadline=5.0)
    pair.run_until(lambda: pair.finished([stale, fresh]), timeout=30)
    failed = {e.object_id: e.error_code for e in pair.client_log.of(ObjectFailed)}
    assert failed == {stale: ErrorCode.DEADLINE_EXPIRED}
    assert [r.name for r in pair.server_log.received()] == ["fresh-frame"]


def test_clean_close_after_delivery() -> None:
    pair = Pair("loss=10% rtt=40ms", seed=8)
    oid = pair.send(payload(50_000, 8), name="a")
    pair.run_until(lambda: pair.finished([oid]))
    pair.conn.close(pair.sim.now)
    pair.sim.poke()
    pair.run_until(lambda: bool(pair.server_log.of(ConnectionClosed)), timeout=30)
    [closed] = pair.server_log.of(ConnectionClosed)
    assert closed.error_code == ErrorCode.NO_ERROR and closed.by_peer


def test_simulation_is_bit_reproducible() -> None:
    def run() -> tuple[float, dict[str, object]]:
        pair = Pair("loss=15% rtt=70ms jitter=5ms", seed=21)
        oid = pair.send(payload(200_000, 21), name="r")
        t = pair.run_until(lambda: pair.finished([oid]))
        return t, pair.link.stats()

    assert run() == run()


def test_received_object_events_carry_receiver_stats() -> None:
    pair = Pair("loss=10% rtt=40ms", seed=12)
    oid = pair.send(payload(100_000, 12), name="s")
    pair.run_until(lambda: pair.finished([oid]))
    [event] = pair.server_log.of(ObjectReceived)
    stats = event.stats
    assert stats["chunks"] == 98
    # Every chunk came as DATA or was rebuilt from REPAIRs (spec 9.6), none twice.
    assert stats["chunks_received"] + stats["chunks_repaired"] == 98
    assert stats["chunks_repaired"] <= stats["repairs_received"]
    assert stats["recovered"] <= stats["nacked"]


def test_close_goes_out_twice_so_that_one_loss_does_not_leave_the_peer_waiting() -> None:
    pair = Pair("rtt=40ms", seed=3)
    sent = pair.record_client_packets()
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    pair.conn.close(pair.sim.now)
    pair.sim.poke()
    pair.run_until(lambda: bool(pair.server_log.of(ConnectionClosed)), timeout=30)
    pair.sim.run_for(1.0)
    assert sum(isinstance(packet, codec.Close) for _, packet in sent) == 2
    [closed] = pair.server_log.of(ConnectionClosed)
    assert closed.error_code == ErrorCode.NO_ERROR and closed.by_peer


def test_probes_keep_coming_through_an_outage_so_the_transfer_resumes_soon_after() -> None:
    """R9.4-2: the probe timer stops doubling at a fifth of a second on a short path, so an object
    whose confirmation the outage swallowed is confirmed within about that much after the link is
    back."""
    pair = Pair("rtt=50ms blackout=0.5s-4.5s", seed=2)
    sent = pair.record_client_packets()
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    pair.sim.run(0.49)
    oid = pair.send(payload(64 << 10, 2), name="img")  # its chunks get in; every answer is lost
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    assert pair.sim.now < 4.5 + 0.2 + 0.1
    in_outage = sorted({t for t, packet in sent if isinstance(packet, codec.Probe) and 1.5 <= t < 4.5})
    gaps = [b - a for a, b in itertools.pairwise(in_outage)]
    assert gaps and max(gaps) <= 0.2 + 1e-6


def test_announce_echoes_ride_behind_chunks_8_and_32_and_follow_the_tail_repairs() -> None:
    """R8.2-10 and R9.4-1: the ANNOUNCE goes again right behind the 8th and the 32nd chunk, even in a
    first flight that leaves in one burst, and behind the last chunk only after the tail's REPAIRs
    and the PROBE that ends them. Queued with the control packets, the echoes of a burst had all
    gone after it as one copy."""
    pair = Pair("rate=50mbit rtt=20ms", seed=4)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    sent = pair.record_client_packets()
    oid = pair.send(payload(40 * 1024, 4), name="img")  # 40 chunks: echoes after 8, 32 and 40
    pair.run_until(lambda: pair.finished([oid]), timeout=10)
    kinds = [type(packet).__name__ for _, packet in sent if not isinstance(packet, codec.Ack)]
    data_seen = 0
    echoes_after: list[int] = []
    for kind in kinds[1:]:  # the first ANNOUNCE opens the object
        if kind == "Data":
            data_seen += 1
        elif kind == "Announce":
            echoes_after.append(data_seen)
    assert kinds[0] == "Announce"
    assert echoes_after[:2] == [8, 32]
    last_data = max(i for i, kind in enumerate(kinds) if kind == "Data")
    tail = kinds[last_data + 1 :]
    assert tail[0] == "Probe" and "Repair" in tail
    # the third echo: behind the batch's last REPAIR and its PROBE
    last_repair = max(i for i, kind in enumerate(tail) if kind == "Repair")
    assert tail[last_repair + 1 : last_repair + 3] == ["Probe", "Announce"]
    assert tail.count("Announce") == 1


def test_an_announce_sent_again_because_the_peer_lost_it_has_a_probe_behind_it() -> None:
    """R8.2-10, 9.4: every chunk already went out while the peer did not know the object; the
    PROBE makes the peer say at once what it lacks, instead of a probe timeout later."""
    pair = Pair("rtt=50ms blackout=0.5s-1.5s", seed=5)
    sent = pair.record_client_packets()
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    pair.sim.run(0.5)
    oid = pair.send(payload(3000, 5), name="small")  # announce and chunks all lost in the outage
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    later = [packet for t, packet in sent if t >= 1.5]
    repeats = [i for i, packet in enumerate(later) if isinstance(packet, codec.Announce)]
    assert repeats, "the ANNOUNCE was sent again after the outage"
    follower = later[repeats[0] + 1]
    assert isinstance(follower, codec.Probe) and follower.object_id == oid


def test_an_announce_that_follows_its_probe_is_answered_at_once() -> None:
    """R9.1-7: a receiver that had a PROBE before the ANNOUNCE takes the ANNOUNCE as that PROBE
    arriving then, and a PROBE is answered at once, with an empty NACK if nothing is due yet. That
    NACK shows the sender the ANNOUNCE arrived (R9.4-2) a reordering allowance before the report of
    the chunks it lacks would."""
    pair = Pair("rtt=200ms", seed=3)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    probe_passed: list[float] = []
    announce_passed: list[float] = []
    answers: list[tuple[float, codec.Nack]] = []

    def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        packet = codec.decode(datagram).packet
        if src != CLIENT:
            if isinstance(packet, codec.Nack) and not packet.announce_missing:
                answers.append((now, packet))
            return datagram
        if isinstance(packet, codec.Probe) and not probe_passed:
            probe_passed.append(now)
            return datagram
        if isinstance(packet, codec.Announce) and probe_passed and not announce_passed:
            announce_passed.append(now)
            return datagram
        # The object's chunks are all lost, and its other ANNOUNCEs and PROBEs until one of each passed.
        if isinstance(packet, (codec.Data, codec.Repair)):
            return None
        return None if isinstance(packet, (codec.Announce, codec.Probe)) and not announce_passed else datagram

    pair.sim.add_tap(tap)
    pair.send(payload(3000, 3), name="late-announce")
    pair.run_until(lambda: bool(answers), timeout=30)
    assert announce_passed
    # The tap sees each packet as it leaves: the ANNOUNCE reaches the server 100 ms after it left.
    first_at, first = answers[0]
    assert first_at - (announce_passed[0] + 0.1) < 0.002, f"answered {first_at - announce_passed[0] - 0.1:.3f} s late: {first}"


def test_a_probe_timeout_repeats_an_announce_no_answer_has_confirmed() -> None:
    """R9.4-2: the ANNOUNCE's copies are lost, and so is every NACK that asks for it again. Only a
    NACK that does not ask for it shows the peer has it; until then each probe timeout sends the
    ANNOUNCE again, so the object gets through instead of probing for ever."""
    pair = Pair("rtt=50ms", seed=4)
    announces_dropped = 0

    def lossy(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        nonlocal announces_dropped
        packet = codec.decode(datagram).packet
        if isinstance(packet, codec.Nack) and packet.announce_missing:
            return None
        if isinstance(packet, codec.Announce) and announces_dropped < 2:
            announces_dropped += 1
            return None
        return datagram

    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    sent = pair.record_client_packets()  # before the losses: it sees every copy sent
    pair.sim.add_tap(lossy)
    data = payload(3000, 4)
    oid = pair.send(data, name="small")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    assert announces_dropped == 2
    assert pair.server_log.received()[-1].data == data
    announce_times = [t for t, packet in sent if isinstance(packet, codec.Announce)]
    # The two copies sent with the chunks, then more on a probe timeout: one, or as many as the
    # loss the sender measured calls for (its two lost ANNOUNCEs count), all at once.
    repeats = announce_times[2:]
    assert repeats and len(set(repeats)) == 1 and repeats[0] > announce_times[1]


@pytest.mark.parametrize("seed", [1, 3])
def test_a_queue_too_short_to_show_delay_does_not_keep_the_sender_above_the_path(seed: int) -> None:
    # 15 kB of queue at 50 Mbit/s is 2.4 ms: sending too fast shows as drops, never as delay. The
    # first flight overruns it; after that the sender must pace at the path's rate, not go on at
    # the first flight's rate (stuck in startup) or at a rate raised to make up for its own drops.
    pair = Pair("rate=50mbit queue=15kb rtt=100ms loss=1%", seed=seed)
    warm_up = pair.send(payload(2048, seed))
    pair.run_until(lambda: pair.finished([warm_up]), timeout=60)
    data = payload(262_144, seed)
    oid = pair.send(data)
    pair.run_until(lambda: pair.finished([oid]), timeout=60)
    assert pair.server_log.received()[-1].data == data
    controller = pair.conn.controller
    assert controller.stats()["phase"] != "startup"
    assert controller.pacing_rate * 8 <= 1.1 * 50e6


@pytest.mark.parametrize("seed", [1, 2])
def test_duplication_does_not_hide_loss_from_the_sender(seed: int) -> None:
    # A path that drops 5% and duplicates 10%: were each copy counted in received_packets, the peer
    # would count more datagrams than were sent, the loss would read as none, and the REPAIRs sized
    # from it would fall short (spec R9.2-4, 11.2).
    pair = Pair("rate=50mbit queue=250kb rtt=60ms loss=5% dup=10%", seed=seed)
    data = payload(1_048_576, seed)
    oid = pair.send(data)
    pair.run_until(lambda: pair.finished([oid]), timeout=60)
    assert pair.server_log.received()[-1].data == data
    server = next(iter(pair.server.sessions.values()))
    assert server.counters["duplicates"] > 0  # the path did duplicate
    # the session's whole count of datagrams lost, over the thousand or so the transfer took
    assert pair.conn.sent.loss_samples > 900
    assert 0.035 <= pair.conn.sent.counted_loss_rate <= 0.075



def _drop_client_packets(pair: Pair, count: int) -> tuple[list[codec.Packet], Callable[[], None]]:
    """Drop the client's next ``count`` datagrams other than INITIALs: (the dropped packets, a
    function that stops dropping)."""
    dropped: list[codec.Packet] = []

    def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        packet = codec.decode(datagram).packet
        if src == CLIENT and not isinstance(packet, codec.Initial) and len(dropped) < count:
            dropped.append(packet)
            return None
        return datagram

    return dropped, pair.sim.add_tap(tap)


def test_an_idle_client_whose_ack_of_accept_was_lost_still_validates_its_address() -> None:
    """spec R7.2-6: the server discards a session it has heard nothing more from within the handshake
    timeout; a client with nothing to send must still make its address known, or its first object,
    seconds later, would go to a session the server no longer has."""
    pair = Pair("rtt=40ms", seed=4)
    dropped, _ = _drop_client_packets(pair, 1)
    pair.sim.run(until=15.0)
    assert dropped and not pair.server_log.of(ConnectionClosed)
    oid = pair.send(payload(20_000, 4), name="late")
    pair.run_until(lambda: pair.finished([oid]), timeout=20)
    assert [r.name for r in pair.server_log.received()] == ["late"]


def test_a_lost_cancel_for_an_object_the_receiver_never_saw_is_sent_again() -> None:
    """spec R8.2-9: a CANCEL ends an id at the receiver; if the receiver never heard of the object
    and the CANCEL is lost, nothing else would end it, and the id's credit (R11.3-2) never returns."""
    pair = Pair("rtt=40ms", seed=5, server_config=SessionConfig(max_concurrent_objects=2))
    pair.sim.run(until=0.3)
    dropped, stop_dropping = _drop_client_packets(pair, 10**6)  # the whole first object is lost ...
    first = pair.send(payload(3_000, 1), name="lost")
    pair.run_until(lambda: len(dropped) >= 2, timeout=5)
    pair.conn.cancel_object(first, pair.sim.now)  # ... and so is its CANCEL
    pair.sim.poke()
    pair.run_until(lambda: any(isinstance(p, codec.Cancel) for p in dropped), timeout=5)
    stop_dropping()
    later = [pair.send(payload(2_000, n), name=f"later{n}") for n in range(3)]  # ids 1-3: 2 and 3 need id 0 ended
    pair.run_until(lambda: pair.finished(later), timeout=30)
    assert [r.name for r in pair.server_log.received()] == ["later0", "later1", "later2"]


def test_the_last_packet_number_ends_the_session_with_every_close_copy_numbered_2_32_minus_1() -> None:
    """spec R8.3-3: a session that runs out of packet numbers aborts with LIMIT_REACHED; the CLOSE
    goes out more than once (R12.4-3), and no copy may carry a number past the u32 field."""
    pair = Pair("rtt=20ms", seed=1)
    pair.sim.run(until=0.2)
    pair.conn.sent.next_pn = MAX_PN - 3  # as if four billion datagrams had gone out
    sent = pair.record_client_packets()
    numbers: list[int] = []
    pair.sim.add_tap(lambda now, src, dst, datagram: numbers.append(codec.decode(datagram).packet_number) or datagram
                     if src == CLIENT else datagram)
    pair.send(payload(50_000, 1), name="a")
    pair.run_until(lambda: bool(pair.server_log.of(ConnectionClosed)), timeout=5)
    closes = [i for i, (_, packet) in enumerate(sent) if isinstance(packet, codec.Close)]
    assert len(closes) >= 2 and all(numbers[i] == MAX_PN for i in closes)
    assert max(numbers) == MAX_PN
    [closed] = pair.server_log.of(ConnectionClosed)
    assert closed.error_code == ErrorCode.LIMIT_REACHED and closed.by_peer


def test_a_probe_for_an_object_whose_outcome_was_forgotten_still_gets_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """spec R9.1-9: a receiver keeps the outcome of its last few thousand objects only; a PROBE for an
    older one must still end its sender's probing."""
    from protocol import connection

    monkeypatch.setattr(connection, "MAX_FINAL_WORDS", 1)
    pair = Pair("rtt=20ms", seed=3)
    oids = [pair.send(payload(3_000, n), name=f"o{n}") for n in range(3)]
    pair.run_until(lambda: pair.finished(oids), timeout=10)
    answers: list[codec.Packet] = []
    pair.sim.add_tap(lambda now, src, dst, datagram: answers.append(codec.decode(datagram).packet) or datagram
                     if src != CLIENT else datagram)
    pair.conn._control.append(codec.Probe(oids[0], 3))  # as a sender that never heard the COMPLETE would
    pair.client.wake(pair.conn)
    pair.sim.poke()
    pair.run_until(lambda: any(isinstance(p, codec.Cancel) for p in answers), timeout=5)
    # In copies if the loss calls for them: when a final word about it was last sent is forgotten too.
    cancels = {(p.object_id, p.origin, p.error_code) for p in answers if isinstance(p, codec.Cancel)}
    assert cancels == {(oids[0], 0, ErrorCode.INTERNAL_ERROR)}


def test_a_long_session_does_not_keep_a_rate_limit_entry_per_object_it_received(monkeypatch: pytest.MonkeyPatch) -> None:
    # When a final word about each incoming object was last sent (for its rate limit) used to be
    # kept for the life of the session: one entry per object ever received, without bound. It is
    # now forgotten past MAX_FINAL_WORDS, as the outcomes are; a PROBE still gets its answer.
    from protocol import connection

    monkeypatch.setattr(connection, "MAX_FINAL_WORDS", 4)
    pair = Pair("rtt=20ms", seed=5)
    oids = [pair.send(payload(100, n), name=f"o{n}") for n in range(12)]
    pair.run_until(lambda: pair.finished(oids), timeout=10)
    receiver = pair.server.session(pair.conn.session_id)
    assert receiver.counters["objects_received"] == 12
    assert len(receiver._final_word_sent) <= 4


# -- copies of the packets whose loss costs a timeout (R9.1-10, R9.4-2) ---------------------------


def _server_sends(pair: Pair, kind: type) -> list[float]:
    """From now on, when each packet of ``kind`` the server sends leaves."""
    times: list[float] = []

    def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes:
        if src != CLIENT and isinstance(codec.decode(datagram).packet, kind):
            times.append(now)
        return datagram

    pair.sim.add_tap(tap)
    return times


def _server_completes(pair: Pair) -> list[float]:
    """From now on, when each COMPLETE the server sends leaves."""
    return _server_sends(pair, codec.Complete)


@pytest.mark.parametrize(("loss", "least", "most"), [(0, 1, 2), (20, 3, 4), (50, 6, 7)])
def test_the_receiver_says_complete_as_many_times_as_the_loss_calls_for(loss: int, least: int, most: int) -> None:
    # R9.1-10: the COMPLETE is the sender's only news of delivery; lost, it costs a probe timeout.
    # Copies go at once, as many as put the chance of losing all under 1 % (a PROBE right behind
    # the last chunk may draw one more).
    pair = Pair(f"rtt=50ms loss={loss}%", seed=5)
    completes = _server_completes(pair)
    oid = pair.send(payload(64 << 10, 5), name="img")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    assert least <= sum(t == completes[0] for t in completes) <= most


def test_a_probe_after_the_complete_was_lost_is_answered_in_as_many_copies() -> None:
    # R9.1-9, R9.1-10: the sender probes because the COMPLETE's copies were all lost, and if the
    # answer is lost too it waits a doubled timeout. One COMPLETE per PROBE arriving left the
    # receiver's answer to chance at high loss: 64 KiB at 80 % loss each way waited 3 s on it.
    pair = Pair("rate=10mbit queue=250kb rtt=50ms loss=50%", seed=2)
    completes = _server_completes(pair)
    muted_until = 0.0

    def mute(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        return None if src != CLIENT and now < muted_until and isinstance(codec.decode(datagram).packet, codec.Complete) else datagram

    pair.sim.add_tap(mute)
    muted_until = pair.sim.now + 1.0
    oid = pair.send(payload(64 << 10, 2), name="img")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    bursts = [sum(t == u for u in completes) for t in sorted(set(completes))]
    answers = [n for t, n in zip(sorted(set(completes)), bursts, strict=True) if t > completes[0]]
    assert bursts[0] >= 5 and answers and max(answers) >= 5


def test_copies_allow_for_losses_that_come_in_bursts() -> None:
    # Copies go back to back: the chance that the one after a lost packet is lost too is what the
    # later copies face, the loss rate itself only where losses are independent.
    assert copies_against(0.2) == copies_against(0.2, 0.2) == copies_against(0.2, 0.1) == 3
    assert copies_against(0.03, 0.7) == 5  # 3 % in bursts of 3.3 packets, as ge=1%,30%
    assert copies_against(0.167, 0.9) == MAX_COPIES  # bursts of 10: no few copies would do
    assert copies_against(0.005, 0.9) == 1


def test_the_receiver_sends_more_copies_of_complete_where_losses_come_in_bursts() -> None:
    # R9.1-10: 20 % loss either way; in bursts of five packets on average (Gilbert-Elliott), three
    # back-to-back copies are all lost about one time in eight, not one in 125.
    def copies(link: str) -> int:
        pair = Pair(link, seed=5)
        completes = _server_completes(pair)
        oid = pair.send(payload(256 << 10, 5), name="img")
        pair.run_until(lambda: pair.finished([oid]), timeout=30)
        return sum(t == completes[0] for t in completes)

    assert copies("rtt=50ms loss=20%") <= 4
    assert copies("rtt=50ms ge=5%,20%") >= 5


def test_copies_follow_the_return_path_not_the_drops_of_the_peers_own_flight() -> None:
    # R9.1-10: behind a queue of five packets at 800 ms the client's first flights lose about half
    # their datagrams to the queue, while the return path loses nothing. The server read that half
    # as the loss its own packets face and said COMPLETE six times, ahead of its reply, in one burst
    # that the return queue cut before the reply's DATA: the reply came a probe round late (2.0 s,
    # not 0.4). Its own packets' count, once it covers enough of them, is the path its copies take.
    pair = Pair("rate=10mbit rtt=800ms queue=5p fwd.loss=5% rev.loss=0%", seed=1)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=30)
    completes = _server_completes(pair)
    oid = pair.send(payload(256 << 10, 1), name="img")
    pair.run_until(lambda: bool(pair.server_log.received()), timeout=60)
    [(arrived, event)] = [(t, e) for t, e in pair.server_log.events if isinstance(e, ObjectReceived)]
    server = pair.server.session(event.session_id)
    span, missing = server._peer_packets_missing()
    assert missing / span > 0.3  # the case: the peer's packet numbers show heavy loss
    server.send_object(b"label: cat", pair.sim.now, in_reply_to=oid)
    pair.sim.poke()
    pair.run_until(lambda: any(r.in_reply_to == oid for r in pair.client_log.received()), timeout=60)
    replied = next(t for t, e in pair.client_log.events if isinstance(e, ObjectReceived) and e.in_reply_to == oid)
    assert sum(t == completes[0] for t in completes) <= 2
    assert replied - arrived < 0.4 + 0.05


def test_a_receiver_that_sent_a_reply_does_not_pace_its_nacks_by_its_own_rate() -> None:
    # Spec R11.1-3: control packets are paced with the data of objects being sent. A receiver's
    # rate, read from its own few packets, can be a few kbit/s (here fixed at 20 kbit/s); once it
    # had sent one small reply, its NACKs for the next image went at that rate, and 256 KiB at 20 %
    # loss took 1.2 s instead of 0.25.
    pair = Pair("rate=10mbit queue=250kb rtt=50ms loss=20%", seed=1, server_config=SessionConfig(rate="fixed:20kbit"))
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=30)
    first = pair.send(payload(64 << 10, 1), name="first")
    pair.run_until(lambda: bool(pair.server_log.received()), timeout=60)
    [event] = pair.server_log.received()
    pair.server.session(event.session_id).send_object(b"label: cat", pair.sim.now, in_reply_to=first)
    pair.sim.poke()
    pair.run_until(lambda: any(r.in_reply_to == first for r in pair.client_log.received()), timeout=60)
    start = pair.sim.now
    second = pair.send(payload(256 << 10, 2), name="second")
    pair.run_until(lambda: any(r.object_id == second for r in pair.server_log.received()), timeout=60)
    assert pair.sim.now - start < 0.5


def test_a_servers_accept_copies_are_not_read_as_lost() -> None:
    # Spec 11.2: at 800 ms the client retransmits its INITIAL before the first ACCEPT can arrive,
    # and the server answers each copy with ACCEPTs; the client counts only the ACCEPT that
    # completed its handshake (R7.2-6). Counted as sent, the others read as 5 lost of the server's
    # first 15 datagrams on a return path that loses none. (The forward path loses some, so that
    # the server sends NACKs, which the client acknowledges.)
    pair = Pair("rate=10mbit rtt=800ms fwd.loss=5% rev.loss=0%", seed=1)
    accepts = _server_sends(pair, codec.Accept)
    oid = pair.send(payload(256 << 10, 1), name="img")
    pair.run_until(lambda: pair.finished([oid]), timeout=60)
    [event] = pair.server_log.received()
    server = pair.server.session(event.session_id)
    assert len(accepts) > 2 and server.sent.loss_samples > 10
    assert server.sent.loss_rate == 0.0


def test_the_sender_hears_of_delivery_without_waiting_on_its_probe_timer() -> None:
    # 300 ms, 20 % loss: a single COMPLETE was lost one time in five, and the sender then waited a
    # probe timeout (0.6 s here) or more before it learnt the object had arrived.
    for seed in range(1, 17):
        pair = Pair("rate=50mbit queue=250kb rtt=300ms loss=20%", seed=seed)
        oid = pair.send(payload(64 << 10, seed), name="img")
        pair.run_until(lambda: pair.finished([oid]), timeout=30)  # noqa: B023
        [(arrived, _)] = [(t, e) for t, e in pair.server_log.events if isinstance(e, ObjectReceived)]
        delivered = [t for t, e in pair.client_log.events if isinstance(e, ObjectDelivered)]
        assert delivered[0] - arrived < 0.15 + 0.05, f"seed {seed}"


def test_a_probe_timeout_on_a_lossy_path_sends_the_probe_in_copies() -> None:
    # R9.4-2: each copy of a PROBE draws an answer, so at 30 % loss one round of the probe timer
    # gets through about as often as 1 % of rounds fail, not 51 %. Every answer to the object is
    # lost for a while, so the probe timer runs out.
    pair = Pair("rtt=50ms loss=30%", seed=3)
    warm_up = pair.send(payload(64 << 10, 3), name="warm-up")
    pair.run_until(lambda: pair.finished([warm_up]), timeout=30)
    muted_until = pair.sim.now + 1.0

    def mute(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        return None if src != CLIENT and now < muted_until else datagram

    pair.sim.add_tap(mute)
    sent = pair.record_client_packets()
    oid = pair.send(payload(8 << 10, 4), name="img")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    probes = [t for t, packet in sent if isinstance(packet, codec.Probe) and packet.object_id == oid]
    bursts = [sum(t == u for u in probes) for t in sorted(set(probes))]
    assert max(bursts) >= copies_against(0.3) - 1
    # On a clean path a probe timeout sends one PROBE.
    pair = Pair("rtt=50ms", seed=3)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    muted_until = pair.sim.now + 1.0
    pair.sim.add_tap(mute)
    sent = pair.record_client_packets()
    oid = pair.send(payload(8 << 10, 4), name="img")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    probes = [t for t, packet in sent if isinstance(packet, codec.Probe) and t > 0.1]  # not the tail's
    assert len(probes) >= 3 and probes.count(probes[0]) == 1


def _sent_while_the_client_hears_nothing(seconds: float) -> tuple[list[tuple[float, codec.Packet]], float]:
    """An 8 KiB object sent on a clean path while everything the server sends is lost for
    ``seconds``: the packets the client sent until it was delivered, and when the loss ended."""
    pair = Pair("rtt=50ms", seed=3)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    muted_until = pair.sim.now + seconds
    pair.sim.add_tap(lambda now, src, dst, datagram: None if src != CLIENT and now < muted_until else datagram)
    sent = pair.record_client_packets()
    oid = pair.send(payload(8 << 10, 4), name="img")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    return sent, muted_until


def test_probes_unanswered_again_and_again_keep_the_packet_rate_of_the_first() -> None:
    # R9.4-2: the wait doubles, and the copies grow with it. On a path that loses in bursts counted
    # in packets (netem's Gilbert-Elliott), nothing crossing it leaves it in its bad state; one
    # PROBE per doubled wait halved the packets that could move it on, again and again.
    sent, muted_until = _sent_while_the_client_hears_nothing(2.0)
    probes = [t for t, packet in sent if isinstance(packet, codec.Probe) and 0.1 < t < muted_until]
    times = sorted(set(probes))
    assert len(times) >= 5 and probes.count(times[0]) == 1  # a clean path: the first goes alone
    first_rate = 1 / (times[1] - times[0])
    rates = [probes.count(t) / (t - before) for before, t in itertools.pairwise(times)]
    assert min(rates) >= first_rate * 0.99
    assert max(probes.count(t) for t in times) >= 2


def test_nacks_that_repeat_an_old_largest_pn_do_not_put_off_the_probe() -> None:
    # R9.4-2, R9.3-4: every retransmission is lost, and the receiver says again and again what it
    # lacks, with the Largest PN of the last packet that reached it. Those NACKs cannot speak for
    # the retransmissions, so nothing is sent again for them; had each reset the probe timer, the
    # sender would have stayed silent as long as they kept coming.
    pair = Pair("rate=20mbit rtt=80ms", seed=6)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    seen: set[int] = set()
    mute_from: list[float] = []
    nacks: list[float] = []
    probes: list[float] = []

    def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        packet = codec.decode(datagram).packet
        if src != CLIENT:
            if isinstance(packet, codec.Nack):
                nacks.append(now)
                if not mute_from:
                    mute_from.append(now + 0.04)  # once it has reached the sender
            return datagram
        if isinstance(packet, codec.Probe):
            probes.append(now)
        if mute_from and mute_from[0] <= now < mute_from[0] + 1.0:
            return None
        if isinstance(packet, codec.Data) and packet.chunk_index >= 200 and packet.chunk_index not in seen:
            seen.add(packet.chunk_index)
            return None  # its first copy
        return datagram

    warm_up = pair.send(payload(64 << 10, 5), name="warm-up")  # the first object is all REPAIRs
    pair.run_until(lambda: pair.finished([warm_up]), timeout=30)
    pair.sim.add_tap(tap)
    oid = pair.send(payload(256 << 10, 6), name="img")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    start = mute_from[0]
    assert sum(start + 0.3 < t < start + 1.0 for t in nacks) >= 10  # they kept coming
    assert len({t for t in probes if start + 0.3 < t < start + 1.0}) >= 3
    assert pair.sim.now < start + 1.0 + 0.3


def test_copies_sent_at_once_take_turns_so_a_short_queue_passes_some_of_each() -> None:
    """R8.2-10, R9.4-2: a probe timeout sends the ANNOUNCE again and the PROBE, each in copies, at
    once. Queued kind by kind, a tail-drop queue two packets deep passed the ANNOUNCEs only, at
    every timeout, and the object waited until its receiver cancelled it (R12.3-1). The copies now
    take turns, each packet's first copy where it was."""
    announce = codec.Announce(2, 1, 1024, 1, bytes(32))
    probe, other = codec.Probe(2, 1), codec.Probe(3, 2)
    assert spread_copies([announce] * 3 + [probe] * 4 + [other] * 2) == [
        announce, probe, other, announce, probe, other, announce, probe, probe,
    ]
    assert spread_copies([probe, other]) == [probe, other]

    pair = Pair("rate=100mbit rtt=400ms queue=2p loss=3%", seed=93)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    data = [payload(64 << 10, 1), b"a", b"b"]
    ids = [pair.send(item) for item in data]
    pair.run_until(lambda: pair.finished(ids), timeout=60)
    assert not pair.client_log.of(ObjectFailed)
    assert {e.object_id: e.data for e in pair.server_log.received()} == dict(zip(ids, data, strict=True))


def test_an_object_waiting_behind_others_on_a_slow_path_is_not_cancelled_by_its_receiver() -> None:
    """R12.3-1: a receiver cancels an object that brings it nothing new for an idle timeout. Both
    objects leave in the first flight, before the path's rate is known, and a 10 kB queue at 32
    kbit/s drops most of it; the first object's retransmissions go first and take longer than
    that. An object that has waited a quarter of the idle timeout sends a chunk out of turn, the one
    that has waited longest first: the first object, having waited as well, had taken every such
    turn, and the second's receiver cancelled it."""
    config = SessionConfig(idle_timeout=4.0)
    pair = Pair("rate=32kbit rtt=100ms queue=10kb", seed=1, client_config=config, server_config=config)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    sent = pair.record_client_packets()
    data = [payload(60_000, 1), payload(5000, 2)]
    ids = [pair.send(item) for item in data]
    pair.run_until(lambda: pair.finished(ids), timeout=60)
    assert not pair.client_log.of(ObjectFailed)
    assert {e.object_id: e.data for e in pair.server_log.received()} == dict(zip(ids, data, strict=True))
    # The second object's chunks went again between the first's retransmissions, not after them.
    order = [packet.object_id for _, packet in sent if isinstance(packet, codec.Data)]
    first_flight_end = order.index(ids[1]) + 5
    last_of_first = len(order) - 1 - order[::-1].index(ids[0])
    assert order[first_flight_end:last_of_first].count(ids[1]) >= 3


@pytest.mark.parametrize("seed", range(1, 13))
def test_on_a_path_so_slow_that_every_object_waits_at_each_send_none_is_starved(seed: int) -> None:
    """R12.3-1: at 60 % loss an object may wait about 1 s (the idle timeout over 28 tries) before it
    sends out of turn, and at 12 kbit/s a datagram takes 0.7 s, so every object with something to
    send waits that long between two sends. When the object whose turn it was anyway was passed
    over, the second object took every such turn and the first, its chunks queued to go again, got
    none: its receiver cancelled it (seeds 3 and 5; one in seven of 200 random slow, varying links
    lost an object this way). The one that has waited longest now goes first."""
    pair = Pair("rate=12kbit rtt=100ms queue=10kb fwd.loss=60% rev.loss=0%", seed=seed)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=30)
    data = [payload(20_000, i) for i in range(3)]
    ids = [pair.send(item) for item in data]
    pair.run_until(lambda: pair.finished(ids), timeout=900)
    assert not pair.client_log.of(ObjectFailed)
    assert {e.object_id: e.data for e in pair.server_log.received()} == dict(zip(ids, data, strict=True))


def test_images_queued_together_on_a_20_kbit_s_path_are_announced_as_it_carries_them() -> None:
    """R12.3-1: twenty 30 kB images at once take five and a half minutes at 20 kbit/s. Announced
    all at once, each waiting object needed a chunk out of turn every 7.5 s, more than the path
    carries, and the receiver cancelled five of them. An object is now announced only while what is
    still to be sent ahead of it takes the path less than half that long."""
    pair = Pair("rate=20kbit rtt=400ms queue=3000b", seed=1)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    sent = pair.record_client_packets()
    data = [payload(30_000, seed) for seed in range(20)]
    ids = [pair.send(item) for item in data]
    waiting: list[int] = []  # objects announced and not yet delivered, at each step

    def done() -> bool:
        announced = {packet.object_id for _, packet in sent if isinstance(packet, codec.Announce)}
        waiting.append(len(announced - {e.object_id for e in pair.client_log.of(ObjectDelivered)}))
        return pair.finished(ids)

    pair.run_until(done, timeout=600)
    assert not pair.client_log.of(ObjectFailed)
    assert {e.object_id: e.data for e in pair.server_log.received()} == dict(zip(ids, data, strict=True))
    assert max(waiting) <= 8


def test_control_packets_are_paced_so_a_short_queue_lets_every_objects_probe_through() -> None:
    """R11.1-3: twenty small objects at once through a queue two packets deep. Their first flight
    overruns the queue; what the probe timeout then sends (an ANNOUNCE and a PROBE for each, in
    copies for the loss the overrun showed) left as one burst of 85 packets, the queue passed the
    same first few every time, and six of the objects were cancelled by their receiver. Paced with
    the data, they all get through."""
    pair = Pair("rate=5mbit rtt=100ms queue=2p loss=1%", seed=1)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    sent = pair.record_client_packets()
    data = [payload(3000, seed) for seed in range(20)]
    ids = [pair.send(item) for item in data]
    pair.run_until(lambda: pair.finished(ids), timeout=60)
    assert not pair.client_log.of(ObjectFailed)
    assert {e.object_id: e.data for e in pair.server_log.received()} == dict(zip(ids, data, strict=True))
    at_once = collections.Counter(t for t, packet in sent if not isinstance(packet, codec.Ack))
    assert max(at_once.values()) < 40


def test_a_repeated_initial_gives_the_server_time_for_the_answer_to_its_accept() -> None:
    """R7.4-3: the server's ACCEPTs are lost in an outage; the client's INITIAL after it draws
    another, shortly before the server's handshake deadline (10 s from the first INITIAL). The
    client's answer arrived after that deadline, the server had discarded the session, and every
    packet of the client's met an unknown session until its idle timeout."""
    pair = Pair("rtt=800ms blackout=0.1s-9.5s", seed=1, client_config=SessionConfig(handshake_timeout=15.0))
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=20)
    assert pair.sim.now > 10.0
    data = payload(5000, 1)
    oid = pair.send(data)
    pair.run_until(lambda: pair.finished([oid]) or pair.closed(), timeout=60)
    assert not pair.closed() and not pair.client_log.of(ObjectFailed)
    assert pair.server_log.received()[-1].data == data


def test_a_session_whose_first_packets_an_outage_took_is_restored_when_they_get_through() -> None:
    """R7.4-6: the outage begins just after the ACCEPT reaches the client, so the server hears
    nothing in the session and discards it at its 10 s handshake timeout (R7.4-3). The outage ends
    at 12 s, well within the idle timeout the client's session lives by: its next packet carries
    the session id from its address, which proves it got the ACCEPT, and the server restores the
    session. Before, that packet met an unknown session id and the client waited out its 30 s idle
    timeout."""
    pair = Pair("rtt=100ms blackout=0.09s-12s", seed=1)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    data = payload(50_000, 1)
    oid = pair.send(data)
    pair.run_until(lambda: pair.finished([oid]) or pair.closed(), timeout=60)
    assert not pair.closed() and not pair.client_log.of(ObjectFailed)
    assert pair.server_log.received()[-1].data == data
    assert 12.0 < pair.sim.now < 14.0
    # The server did discard the session in the outage, and counted the restore.
    closed = pair.server_log.of(ConnectionClosed)
    assert [event.error_code for event in closed] == [ErrorCode.HANDSHAKE_TIMEOUT]
    assert closed[0].session_id == pair.conn.session_id
    assert pair.server.counters["sessions_restored"] == 1


def test_every_other_probe_timeout_the_probe_goes_ahead_of_the_announce_sent_again() -> None:
    """R9.4-2: while no NACK has shown the peer has the ANNOUNCE, each probe timeout sends it
    again with the PROBE. Always first, it was all a queue that passes only the head of each burst
    let through (benchmarks.stress seed 763: 256 kbit/s, a 2-packet queue, every packet
    duplicated), and no PROBE ever reached the receiver. Every other time the PROBE now leads."""
    sent, _ = _sent_while_the_client_hears_nothing(3.0)
    # past the object's tail: its chunks, its REPAIRs, and the PROBE and ANNOUNCE behind them
    tail = max(t for t, packet in sent if isinstance(packet, codec.Data | codec.Repair))
    rounds = [[packet for t, packet in sent if t == instant]
              for instant in sorted({t for t, packet in sent if t > tail and isinstance(packet, codec.Probe)})]
    rounds = [kinds for kinds in rounds if any(isinstance(packet, codec.Announce) for packet in kinds)]
    assert len(rounds) >= 4
    leaders = [type(kinds[0]) for kinds in rounds[:4]]
    assert leaders == [codec.Announce, codec.Probe, codec.Announce, codec.Probe]


def test_a_probe_timeout_sends_again_what_the_receiver_last_said_it_lacked() -> None:
    """R9.4-4: chunk 10 is lost, then its retransmission; every NACK the receiver writes after
    the first is lost for 3 s (a return path in a long burst of loss), and REPAIRs are lost
    too. The PROBEs still arrive, but their answers do not: a sender that waited for a NACK to get
    through sent the receiver nothing it could use until the loss ended. Chunk 10 now goes with
    the PROBE of the first probe timeout."""
    pair = Pair("rate=20mbit rtt=50ms", seed=4)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    copies: list[float] = []
    nacks: list[float] = []

    def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        packet = codec.decode(datagram).packet
        if src == CLIENT:
            if isinstance(packet, codec.Repair):
                return None
            if isinstance(packet, codec.Data) and packet.chunk_index == 10:
                copies.append(now)
                return None if len(copies) <= 2 else datagram
            return datagram
        if isinstance(packet, codec.Nack) and packet.missing:
            nacks.append(now)
            return None if len(nacks) > 1 and now < nacks[0] + 3.0 else datagram
        return datagram

    pair.sim.add_tap(tap)
    data = payload(64 << 10, 7)
    oid = pair.send(data, name="img")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    assert [e.data for e in pair.server_log.received()] == [data]
    assert len(copies) >= 3 and pair.sim.now < nacks[0] + 1.0
    assert pair.conn.counters["probe_chunks_sent"] >= 1


def test_a_few_packet_numbers_mostly_missing_are_read_as_loss_for_copies() -> None:
    """R9.1-10: copies are sized from the share of the peer's packet numbers missing, which used to
    count only once they spanned 32. A receiver with nothing else to go on (its own packets draw
    few ACKs) read a return path losing 60-80 % as lossless and sent one copy of each answer;
    what is missing is now counted against 32 while the span is shorter."""
    pair = Pair("rtt=50ms", seed=2)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    completes = _server_completes(pair)

    def lossy(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        if src != CLIENT:
            return datagram
        decoded = codec.decode(datagram)
        if isinstance(decoded.packet, codec.Ack | codec.Ping) or decoded.packet_number % 3 == 0:
            return datagram
        return None  # two of every three of the client's packets that carry the object

    pair.sim.add_tap(lossy)
    oid = pair.send(payload(3000, 8), name="small")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    span, missing = pair.server.session(pair.conn.session_id)._peer_packets_missing()
    assert span < 32 and missing >= 6
    assert sum(t == completes[0] for t in completes) >= 2


def test_a_receiver_asks_a_silent_sender_for_the_rest_less_often_as_the_silence_lasts() -> None:
    """R9.1-11: the receiver holds an object's ANNOUNCE, and nothing of the object (DATA, REPAIR,
    PROBE) gets through. It asks for the whole object after a probe timeout, then as often as the
    sender's probe timer runs, never at the re-NACK interval; once the path passes data again, the
    object completes."""
    pair = Pair("rtt=100ms", seed=3)
    pair.run_until(lambda: pair.conn.is_open, timeout=5.0)
    silenced = [True]
    asked: list[tuple[float, codec.Nack]] = []

    def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        packet = codec.decode(datagram).packet
        if src == CLIENT and silenced[0] and isinstance(packet, codec.Data | codec.Repair | codec.Probe):
            return None
        if src != CLIENT and isinstance(packet, codec.Nack) and packet.object_id == 0 and packet.missing:
            asked.append((now, packet))
        return datagram

    pair.sim.add_tap(tap)
    start = pair.sim.now
    oid = pair.send(random.Random(5).randbytes(5 * 1024))
    pair.sim.run_for(8.0)
    assert asked, "no NACK for an object whose sender went silent after its ANNOUNCE"
    assert all(nack.missing == ((0, 5),) for _, nack in asked)
    assert asked[0][0] - start < 1.0  # a probe timeout, at 100 ms RTT
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(asked)]
    # As often as the sender's probe timer at most: never within a PTO (above the 100 ms RTT), where
    # reports on the re-NACK schedule went out every 40 ms (203 NACKs in these 8 s).
    assert min(gaps) >= 0.1 and len(asked) <= 8 / 0.1
    silenced[0] = False
    pair.run_until(lambda: pair.finished([oid]), timeout=30.0)
    assert oid in {e.object_id for e in pair.client_log.of(ObjectDelivered)}


def test_a_probe_timeout_sends_a_lone_lacking_chunk_in_as_many_copies_as_the_probe() -> None:
    """R9.4-4: a one-chunk reply on a path losing 40 % of what we send. Every copy of its chunk
    is lost until a probe timeout comes after the receiver's first NACK, and every NACK after that
    first one is lost too. The PROBE goes in copies, and a chunk sent once beside them was lost as
    often as any single packet (at 80 % loss, nine such tries of a reply over 25 s, and the
    receiver gave it up). The chunk now goes in as many copies as the PROBE."""
    pair = Pair("rate=20mbit rtt=50ms fwd.loss=40%", seed=3)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    warm = pair.send(payload(64 << 10, 5), name="warm")  # the loss count the copies are sized from
    pair.run_until(lambda: pair.finished([warm]), timeout=30)
    sent: list[tuple[float, codec.Packet]] = []
    nacks: list[float] = []
    cut_off = [math.inf]  # until a NACK comes: then two round trips after it

    def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        packet = codec.decode(datagram).packet
        if src == CLIENT:
            if isinstance(packet, codec.Data | codec.Repair | codec.Probe) and packet.object_id != warm:
                sent.append((now, packet))
                if not isinstance(packet, codec.Probe) and now < cut_off[0]:
                    return None
            return datagram
        if isinstance(packet, codec.Nack) and packet.missing:
            nacks.append(now)
            cut_off[0] = min(cut_off[0], now + 0.1)
            return None if len(nacks) > 1 else datagram
        return datagram

    pair.sim.add_tap(tap)
    data = payload(300, 6)
    oid = pair.send(data, name="small")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    assert [e.data for e in pair.server_log.received()][-1] == data
    timeout = min(t for t, packet in sent if t >= cut_off[0] and isinstance(packet, codec.Probe))
    # Paced with the object's data, the burst takes a few ms; the next timeout is a PTO away.
    burst = [packet for t, packet in sent if timeout <= t < timeout + 0.02]
    probes = sum(isinstance(packet, codec.Probe) for packet in burst)
    chunks = [packet for packet in burst if isinstance(packet, codec.Data)]
    assert probes >= 2 and len(chunks) == probes
    assert {packet.chunk_index for packet in chunks} == {0}
