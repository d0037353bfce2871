"""Forward repair (spec 5.14, 9.6): the coefficient stream, the decoder, and whole transfers.

The transfers run in netsim's virtual time with the real endpoints; REPAIRs travel as real
datagrams through the same lossy link as everything else.
"""

from __future__ import annotations

import hashlib
import itertools
import random

import pytest

from protocol import codec
from protocol.config import SessionConfig
from protocol.connection import Connection, copies_against
from protocol.events import ObjectReceived
from protocol.receiving import IncomingObject
from protocol.repair import RepairDecoder, chunk_value, coefficients, encode_payload, repair_value, set_bits, xor_chunks
from protocol.sending import OutgoingObject

from .harness import Pair


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# -- the coefficient stream (spec 5.14) ---------------------------------------------------------


def test_seed_0_gives_splitmix64s_published_first_output() -> None:
    # SplitMix64 from state 0: 0xE220A8397B1DCDAF is its well-known first output.
    assert coefficients(0, 64) == 0xE220A8397B1DCDAF
    assert set_bits(coefficients(0, 8)) == [0, 1, 2, 3, 5, 7]  # the example in spec 5.14


def test_longer_windows_take_one_output_per_64_chunks() -> None:
    wide = coefficients(99, 200)
    assert wide & ((1 << 64) - 1) == coefficients(99, 64)
    assert wide >> 200 == 0
    assert 60 < wide.bit_count() < 140  # about half the window is chosen


# -- the decoder ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lost_count", [1, 5, 40])
def test_decoder_rebuilds_any_missing_chunks_from_enough_repairs(lost_count: int) -> None:
    rng = random.Random(lost_count)
    chunk_size, n = 64, 150
    data = rng.randbytes(chunk_size * (n - 1) + 10)  # a short last chunk: zero padding
    chunks = [data[i * chunk_size : (i + 1) * chunk_size] for i in range(n)]
    lost = set(rng.sample(range(n), lost_count))
    missing = sum(1 << i for i in lost)

    def known_xor(mask: int) -> int:
        assert not mask & missing, "the decoder asked for a chunk it does not hold"
        return xor_chunks(data, chunk_size, mask)

    decoder = RepairDecoder(chunk_size)
    solved = None
    seed = 0
    while solved is None:
        seed += 1
        assert seed < lost_count + 30, "a dense random code needs only a few spare equations"
        value = repair_value(0, seed, n, lambda mask: xor_chunks(data, chunk_size, mask))
        decoder.add(0, seed, n, encode_payload(value, chunk_size), missing)
        if decoder.deficit(missing) <= 0:
            solved = decoder.solve(missing, known_xor)
    assert set(solved) == lost
    for index in lost:
        assert solved[index][: len(chunks[index])] == chunks[index]
        assert not any(solved[index][len(chunks[index]) :])


@pytest.mark.parametrize(("chunk_size", "size"), [(64, 64 * 20), (64, 64 * 19 + 5), (100, 100 * 7 + 1), (1024, 3000)])
def test_xor_chunks_matches_chunk_by_chunk_xor(chunk_size: int, size: int) -> None:
    # uint64 words (chunk size a multiple of 8) and bytes, with and without a short last chunk
    rng = random.Random(size)
    data = bytearray(rng.randbytes(size))
    count = -(-size // chunk_size)
    for _ in range(20):
        mask = rng.getrandbits(count)
        expected = 0
        for index in set_bits(mask):
            expected ^= chunk_value(data[index * chunk_size : (index + 1) * chunk_size])
        assert xor_chunks(data, chunk_size, mask) == expected
    assert xor_chunks(data, chunk_size, 0) == 0


def test_a_repair_over_chunks_all_present_is_discarded() -> None:
    decoder = RepairDecoder(16)
    assert not decoder.add(0, 5, 8, encode_payload(1234, 16), 0)
    assert decoder.rows == [] and decoder.discarded == 1


def _incoming(size: int, chunk_size: int = 64) -> tuple[IncomingObject, bytes]:
    data = payload(size, 3)
    announce = codec.Announce(
        object_id=0,
        total_length=size,
        chunk_size=chunk_size,
        chunk_count=-(-size // chunk_size),
        digest=hashlib.sha256(data).digest(),
    )
    return IncomingObject(announce, 0.0), data


def test_incoming_object_keeps_no_more_repairs_than_it_can_use() -> None:
    obj, _ = _incoming(64 * 20)
    obj.add_chunk(0, bytes(64), 1, 0.0, 0.0)  # 19 missing
    for seed in range(1, 200):
        obj.add_repair(0, seed, 20, bytes(64), 0.0)
    assert obj.decoder is not None
    assert len(obj.decoder.rows) <= 19 + 9
    assert obj.repairs_received == 199


def test_repairs_that_cannot_reach_full_rank_never_gather_the_held_chunks() -> None:
    # A hostile peer repeats one REPAIR over a window whose chunks are all held but two: every copy
    # is the same equation, so the rows never solve. Folding the held chunks out as each arrived
    # read a whole window of bytes per datagram; they are folded out only for a solution now, and
    # a row that adds nothing to the rank is not kept.
    obj, data = _incoming(64 * 512)
    missing = {100, 400}
    for index in range(512):
        if index not in missing:
            obj.add_chunk(index, data[index * 64 : (index + 1) * 64], 1, 0.0, 0.0)
    gathered: list[int] = []
    held_xor = obj.known_xor

    def counting_xor(mask: int) -> int:
        gathered.append(mask.bit_count())
        return held_xor(mask)

    obj.known_xor = counting_xor  # type: ignore[method-assign]
    def names(seed: int, index: int) -> bool:
        return bool((coefficients(seed, 512) >> index) & 1)

    seed = next(s for s in range(1, 100) if names(s, 100) and names(s, 400))  # two unknowns, one equation
    for _ in range(50):
        assert _repair(obj, data, 0, seed, 512) is None
    assert obj.decoder is not None and obj.decoder.deficit(obj.missing_mask) == 1
    assert gathered == []
    # The copies were not kept: they would have filled the rows an object keeps (unknowns + 8), and
    # the independent REPAIR that completes the rank would have been refused. It is solved, right.
    other = next(s for s in range(seed + 1, 200) if names(s, 100) and not names(s, 400))
    solved = _repair(obj, data, 0, other, 512)
    assert solved is not None and gathered
    assert solved == {i: data[i * 64 : (i + 1) * 64] for i in missing}


def test_a_repair_that_adds_an_equation_is_progress_for_the_idle_timeout() -> None:
    """R12.3-1: at 65 % loss with every packet doubled (benchmarks.stress seed 60884), an object's
    REPAIRs kept arriving for 30 s, too few to rebuild any chunk, and its receiver, counting only
    chunks as progress, cancelled it. A REPAIR that adds an equation over the missing chunks now
    counts; a copy of an equation already held, which a hostile peer could repeat, does not."""
    obj, data = _incoming(64 * 40)
    for index in range(30):
        obj.add_chunk(index, data[index * 64 : (index + 1) * 64], 1, 0.0, 0.0)
    assert obj.last_progress == 0.0

    def repair_at(seed: int, now: float) -> dict[int, bytes] | None:
        value = repair_value(30, seed, 10, lambda mask: xor_chunks(data, 64, mask))
        return obj.add_repair(30, seed, 10, encode_payload(value, 64), now)

    assert repair_at(1, 20.0) is None  # one equation, ten unknowns
    assert obj.last_progress == 20.0
    assert repair_at(1, 40.0) is None  # the same equation again
    assert obj.last_progress == 20.0
    solved = None
    for step, seed in enumerate(range(2, 40)):
        solved = repair_at(seed, 40.0 + step)
        if solved:
            break
    assert solved == {i: data[i * 64 : (i + 1) * 64] for i in range(30, 40)}


def test_rebuilt_chunk_with_nonzero_padding_is_refused_and_repair_stops() -> None:
    obj, _ = _incoming(64 * 2 + 10)  # last chunk: 10 bytes, 54 bytes of padding in a REPAIR
    assert not obj.store_recovered(2, bytes(10) + b"\x01" + bytes(53), 0.0)
    assert obj.repair_disabled and obj.decoder is None
    assert not obj.received[2]
    assert obj.add_repair(0, 1, 3, bytes(64), 0.0) is None  # ignored from now on


def _rebuild_on_arrival(obj: IncomingObject, index: int, data: bytes) -> dict[int, bytes] | None:
    """A chunk arrives as DATA, and the decoder is tried again, as the connection does."""
    obj.add_chunk(index, data[index * 64 : (index + 1) * 64], 1, 0.0, 0.0)
    return obj.try_decode() if obj.covers(index) else None


def _repair(obj: IncomingObject, data: bytes, first: int, seed: int, count: int) -> dict[int, bytes] | None:
    value = repair_value(first, seed, count, lambda mask: xor_chunks(data, 64, mask))
    return obj.add_repair(first, seed, count, encode_payload(value, 64), 0.0)


def test_rows_that_turned_dependent_do_not_hide_a_solution_later() -> None:
    """Rows c1^c2^c3, c3, c3 leave one too few equations for three unknowns. Once c3 and then c1 arrive,
    the first row gives c2. The decoder once counted the spare row against the rows for good, saw a
    deficit where there was none, and held back the NACK for c2 as pinned down (R9.6-5): the object
    then waited for ever."""
    obj, data = _incoming(64 * 8)
    for index in (0, 4, 5, 6, 7):
        obj.add_chunk(index, data[index * 64 : (index + 1) * 64], 1, 0.0, 0.0)
    assert coefficients(7, 3) == 0b111 and coefficients(1, 1) == coefficients(3, 1) == 1
    assert _repair(obj, data, 1, 7, 3) is None
    assert _repair(obj, data, 3, 1, 1) is None
    assert _repair(obj, data, 3, 3, 1) is None  # the same equation again: 2 ranks for 3 unknowns
    assert _rebuild_on_arrival(obj, 3, data) is None  # c1 ^ c2 alone: still one short
    rebuilt = _rebuild_on_arrival(obj, 1, data)
    assert rebuilt is not None and rebuilt[2] == data[128:192]


def test_a_decoder_never_holds_back_every_chunk_without_solving() -> None:
    """Random arrivals of chunks and REPAIRs: whenever the REPAIRs held pin down every missing chunk
    they name (nothing left to ask for), they must also solve them."""
    for trial in range(3000):
        rng = random.Random(trial)
        count = rng.randrange(2, 10)
        obj, data = _incoming(64 * count)
        for _ in range(rng.randrange(3, 30)):
            if obj.complete:
                break
            if rng.random() < 0.5:
                index = rng.randrange(count)
                if not obj.received[index]:
                    rebuilt = _rebuild_on_arrival(obj, index, data)
                    for i, chunk in (rebuilt or {}).items():
                        obj.store_recovered(i, chunk, 0.0)
                continue
            first = rng.randrange(count)
            width = rng.randrange(1, count - first + 1)
            seed = rng.randrange(1, 1000)
            if coefficients(seed, width):
                for i, chunk in (_repair(obj, data, first, seed, width) or {}).items():
                    obj.store_recovered(i, chunk, 0.0)
            missing = [i for i in range(count) if not obj.received[i]]
            if missing and obj.decoder is not None and obj.decoder.rows:
                ask, held = obj._hold_for_repair(missing)
                assert ask or not held or obj.try_decode() is not None, f"trial {trial}"


# -- whole transfers -----------------------------------------------------------------------------


def _deliver(link: str, data: bytes, seed: int, config: SessionConfig | None = None) -> tuple[Pair, float]:
    pair = Pair(link, seed=seed, client_config=config, server_config=config)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    start = pair.sim.now
    oid = pair.send(data, name="img")
    pair.run_until(lambda: pair.finished([oid]))
    [event] = pair.server_log.of(ObjectReceived)
    assert event.data == data
    return pair, next(t for t, e in pair.server_log.events if isinstance(e, ObjectReceived)) - start


def test_forward_repair_spares_the_round_trip_at_a_long_rtt() -> None:
    """300 ms RTT, 5% loss: with REPAIRs the image arrives about when its last chunk does; by NACK
    alone every loss costs at least one more round trip."""
    data = payload(256 << 10, 7)
    link = "rate=50mbit queue=250kb rtt=300ms loss=5%"
    with_repair = []
    without = []
    for seed in (1, 2, 3):
        pair, took = _deliver(link, data, seed)
        with_repair.append(took)
        assert pair.conn.stats()["repairs_sent"] > 0
        assert pair.server.sessions and next(iter(pair.server.sessions.values())).counters["chunks_repaired"] > 0
        pair, took = _deliver(link, data, seed, SessionConfig(repair=False))
        without.append(took)
        assert pair.conn.stats()["repairs_sent"] == 0
    assert max(with_repair) < min(without)
    assert sorted(with_repair)[1] < 0.6  # one-way 150 ms + transmission, not + 300 ms repair rounds


def test_a_sessions_first_image_is_covered_although_its_loss_rate_is_barely_known() -> None:
    """After a small warm-up object the loss rate rests on a handful of datagrams, often none of them
    lost; the REPAIRs planned allow for that uncertainty (spec 9.6), so even at 20% loss the first
    image needs no NACK round."""
    data = payload(64 << 10, 3)
    link = "rate=50mbit queue=250kb rtt=300ms loss=20%"
    for seed in range(1, 13):
        pair = Pair(link, seed=seed)
        warm_up = pair.send(payload(2048, seed), name="warm-up")
        pair.run_until(lambda: pair.finished([warm_up]), timeout=30)  # noqa: B023
        pair.sim.run_for(0.3)
        start = pair.sim.now
        oid = pair.send(data, name="img")
        pair.run_until(lambda: pair.finished([oid]), timeout=30)  # noqa: B023
        arrived = [t for t, e in pair.server_log.events if isinstance(e, ObjectReceived) and e.data == data]
        assert arrived, f"seed {seed}: not delivered"
        took = arrived[0] - start
        assert took < 0.15 + 0.1, f"seed {seed}: {took:.3f} s, a repair round trip (300 ms) was needed"


def test_no_repair_for_a_peer_that_does_not_decode() -> None:
    """R9.6-1: the server advertises repair_decoder = 0, so the client sends no REPAIR."""
    data = payload(100_000, 8)
    pair = Pair("loss=10% rtt=40ms", seed=4, server_config=SessionConfig(repair=False))
    oid = pair.send(data)
    pair.run_until(lambda: pair.finished([oid]))
    assert pair.conn.peer_params.repair_decoder == 0
    assert pair.conn.stats()["repairs_sent"] == 0
    [event] = pair.server_log.of(ObjectReceived)
    assert event.data == data


class _LyingSender(Connection):
    """Sends REPAIRs whose Repair Data is garbage: a faulty peer, or an attacker inside a session."""

    def _emit(self, packet: codec.Packet, now: float, session_id: int | None = None) -> bytes:
        if isinstance(packet, codec.Repair):
            packet = codec.Repair(packet.object_id, packet.first_index, packet.seed, packet.count, payload(len(packet.payload), 1))
        return super()._emit(packet, now, session_id)


def test_wrong_repairs_cost_a_retry_never_a_failed_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """R9.6-4: chunks rebuilt from bad REPAIRs fail the digest; only they are fetched again."""
    from protocol import endpoint

    monkeypatch.setattr(endpoint, "Connection", _LyingSender)
    data = payload(200_000, 9)
    pair = Pair("loss=10% rtt=40ms", seed=6)
    oid = pair.send(data)
    pair.run_until(lambda: pair.finished([oid]))
    [event] = pair.server_log.of(ObjectReceived)
    assert event.data == data
    server = next(iter(pair.server.sessions.values()))
    assert server.counters["repair_mismatches"] >= 1
    assert server.counters["digest_failures"] == 0


def test_a_nack_written_after_the_last_repair_arrived_is_acted_on() -> None:
    """R9.6-6: only a NACK whose Largest PN is below the last REPAIR's packet number speaks too soon;
    one written by a peer that had that REPAIR already lists what the REPAIRs could not rebuild."""
    obj = OutgoingObject(
        0, payload(64 * 10, 1), name="x", content_type="", chunk_size=64, want_reply=False,
        in_reply_to=None, deadline=None, created=0.0,
    )
    obj.plan_repairs(0, 10, (1 << 10) - 1, 2, 0.0)
    assert obj.covered_by_repairs(3, largest_pn=500, loss=0.0)  # REPAIRs still to be sent
    obj.on_repair_sent(99, 0.0)
    obj.on_repair_sent(100, 0.0)
    assert obj.covered_by_repairs(3, largest_pn=99, loss=0.0)
    assert not obj.covered_by_repairs(3, largest_pn=100, loss=0.0)
    assert not obj.covered_by_repairs(3, largest_pn=101, loss=0.0)


def test_premature_nacks_are_left_to_no_more_chunks_than_the_unseen_repairs_can_rebuild() -> None:
    """R9.6-6: the NACKs written as of one packet number list what the REPAIRs their writer held
    left undetermined (R9.6-5). Four REPAIRs it had not seen, a quarter of them lost, rebuild three
    chunks: of five listed, two are losses that outran the batch and go again at once, and the
    round that sends them gets REPAIRs of its own without waiting out a round trip."""
    obj = OutgoingObject(
        0, payload(64 * 40, 1), name="x", content_type="", chunk_size=64, want_reply=False,
        in_reply_to=None, deadline=None, created=0.0,
    )
    obj.next_new = obj.chunk_count
    obj.plan_repairs(10, 30, (1 << 30) - 1, 4, 0.0)
    for pn in (200, 201, 202, 203):
        obj.on_repair_sent(pn, 0.0)
    # Spread over two NACKs as the reports fell due; the second repeats a chunk of the first.
    first = obj.on_nack(((12, 3),), largest_pn=150, now=1.0, wait=0.1, loss=0.25)
    second = obj.on_nack(((14, 3),), largest_pn=150, now=1.0, wait=0.1, loss=0.25)
    assert (first, second) == (0, 2)
    assert sorted(obj.retx) == [15, 16]
    assert obj.outran_repairs
    # A NACK written as of a later packet, the REPAIRs still unseen, is weighed on its own.
    assert obj.on_nack(((20, 2),), largest_pn=160, now=1.0, wait=0.1, loss=0.25) == 0
    # Chunks below the window no REPAIR of the batch covers: a round of them is covered again too.
    obj.plan_repairs(10, 30, (1 << 30) - 1, 4, 0.0)
    assert not obj.outran_repairs
    assert obj.on_nack(((2, 1),), largest_pn=150, now=1.0, wait=0.1, loss=0.25) == 1
    assert obj.outran_repairs


# -- asking for what the REPAIRs cannot give (R9.6-5) ---------------------------------------------


def test_the_chunks_to_ask_for_are_those_the_repairs_leave_undetermined() -> None:
    # Rows: c0 alone, and c1 ^ c2. c0 is pinned down; one of c1, c2 is not. Fetching c0 by NACK would
    # take an unknown and an equation away together and leave the deficit where it was.
    decoder = RepairDecoder(8)
    decoder.rows = [(0b001, 5), (0b110, 9)]
    decoder.union = 0b111
    missing = 0b111
    assert decoder.deficit(missing) == 1
    assert set_bits(decoder.free_chunks(missing)) == [1]
    # once c1 arrives, nothing is left undetermined
    assert decoder.free_chunks(0b101) == 0


def test_a_receiver_holds_back_the_chunks_its_repairs_pin_down() -> None:
    obj, _ = _incoming(64 * 3)
    assert obj.decoder is None
    obj.decoder = RepairDecoder(64)
    obj.decoder.rows = [(0b001, 5), (0b110, 9)]
    obj.decoder.union = 0b111
    ask, held = obj._hold_for_repair([0, 1, 2])
    assert ask == [1] and held == [0, 2]


def test_a_retransmission_round_at_the_tail_is_covered_by_repairs_too() -> None:
    """Loss bursts make the first batch of REPAIRs fall short now and then; the chunks sent again in
    answer are lost as often as first copies were, and each loss would cost another round trip."""
    data = payload(256 << 10, 5)
    link = "rate=50mbit queue=250kb rtt=300ms ge=3%,25%"
    covered_rounds = 0
    for seed in range(1, 13):
        pair = Pair(link, seed=seed)
        warm_up = pair.send(payload(64 << 10, seed), name="warm-up")  # the loss rate is known after it
        pair.run_until(lambda: pair.finished([warm_up]))  # noqa: B023
        packets = pair.record_client_packets()
        oid = pair.send(data, name="img")
        pair.run_until(lambda: pair.finished([oid]))  # noqa: B023
        kinds = [type(packet) for _, packet in packets if isinstance(packet, (codec.Data, codec.Repair))]
        later = kinds[kinds.index(codec.Repair) :]
        resent = [i for i, kind in enumerate(later) if kind is codec.Data]
        if resent:
            # the round's last retransmission is followed by REPAIRs over it
            assert codec.Repair in later[resent[-1] :], f"seed {seed}"
            covered_rounds += 1
    assert covered_rounds >= 1  # the seeds include runs where the first batch fell short


def test_a_round_that_resent_one_chunk_is_covered_by_repairs_that_all_hold_it() -> None:
    """A REPAIR takes each chunk of its window with probability 1/2. After a round that resent one
    chunk, the rest of the object's tail has long been confirmed, and half the REPAIRs over a window
    reaching the object's end would leave the resent chunk out; such a REPAIR rebuilds nothing.
    Seeds that choose no chunk whose fate is unknown are skipped, so each REPAIR holds it."""
    for seed in range(1, 7):
        pair = Pair("rate=20mbit queue=250kb rtt=300ms", seed=seed)
        pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)  # noqa: B023
        packets = pair.record_client_packets()
        # The first copy of chunk 3 is lost, and so is every REPAIR until chunk 3 goes again.
        phase = [0]

        def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
            packet = codec.decode(datagram).packet
            if isinstance(packet, codec.Data) and packet.chunk_index == 3:
                phase[0] += 1  # noqa: B023
                return None if phase[0] == 1 else datagram  # noqa: B023
            return None if isinstance(packet, codec.Repair) and phase[0] == 1 else datagram  # noqa: B023

        pair.sim.add_tap(tap)
        oid = pair.send(payload(40 * 1024, seed), name="img")
        pair.run_until(lambda: pair.finished([oid]), timeout=30)  # noqa: B023
        assert [r.name for r in pair.server_log.received()] == ["img"]
        sent = [p for _, p in packets if isinstance(p, (codec.Data, codec.Repair))]
        resent = next(i for i, p in enumerate(sent) if isinstance(p, codec.Data) and p.chunk_index == 3 and i > 3)
        later = [p for p in sent[resent:] if isinstance(p, codec.Repair)]
        assert later, f"seed {seed}: the round was not covered"
        for repair in later:
            offset = 3 - repair.first_index  # chunk 3's bit in the REPAIR's window
            held = offset >= 0 and coefficients(repair.seed, repair.count) >> offset & 1
            assert held, f"seed {seed}: a REPAIR without chunk 3: {repair}"


# -- NACK scheduling (spec 9.1) ------------------------------------------------------------------


def _with_gap(missing: list[int], count: int = 8) -> IncomingObject:
    obj, data = _incoming(64 * count)
    for index in range(count):
        if index not in missing:
            obj.add_chunk(index, data[index * 64 : (index + 1) * 64], index, 0.0, 0.0)
    return obj


def test_a_re_report_stays_scheduled_when_the_re_nack_interval_grows() -> None:
    # Reported at 0.1 with a 20 ms interval; by its due time the interval has grown to 30 ms
    # (the reordering allowance rose). The chunk must still be reported again, not fall out.
    obj = _with_gap([3])
    assert obj.due_missing(0.1, 0.020, 10) == [3]
    reported = [t for t in (0.12, 0.13, 0.14, 0.15, 0.16) if obj.due_missing(t, 0.030, 10)]
    assert reported and reported[0] <= 0.13
    assert obj.next_due() is not None  # and it stays on the schedule while missing


def test_re_reports_due_soon_join_the_nack_that_goes_out_now() -> None:
    obj = _with_gap([2, 5])
    assert obj.due_missing(0.100, 0.020, 10) == [2, 5]
    # chunk 5 is reported again on its own (a PROBE's answer, say), 8 ms later
    obj._mark_reported([5], 0.108, 0.020, 10, 0.108)
    # chunk 2 is due at 0.120; chunk 5 would be at 0.128: it goes along instead of in a NACK of its own
    assert obj.due_missing(0.120, 0.020, 10) == [2, 5]
    assert obj.due_missing(0.128, 0.020, 10) == []


def test_a_first_report_still_waits_for_its_reordering_allowance() -> None:
    obj = _with_gap([2, 5])
    obj.nack_queue.clear()
    obj.nack_queue.extend([(0.100, 2, 2), (0.105, 5, 5)])
    assert obj.due_missing(0.100, 0.020, 10) == [2]  # 5's gap is not due yet, however close
    assert obj.due_missing(0.105, 0.020, 10) == [5]


def test_a_probe_follows_each_batch_of_repairs() -> None:
    # R9.4-1, 9.6: the answer to it is written after every REPAIR the receiver will get, and it
    # lifts the receiver's Largest PN past a last REPAIR that was lost.
    pair = Pair("rate=50mbit queue=250kb rtt=300ms loss=5%", seed=4)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    sent = pair.record_client_packets()
    oid = pair.send(payload(64 << 10, 4), name="img")
    pair.run_until(lambda: pair.finished([oid]))
    kinds = [type(packet).__name__ for _, packet in sent]
    last_repair = max(i for i, kind in enumerate(kinds) if kind == "Repair")
    assert kinds[last_repair + 1] == "Probe"


@pytest.mark.parametrize(("size", "chunk_size"), [(300, 300), (10, 64), (1024, 1024), (5000, 1024)])
def test_an_object_shorter_than_a_chunk_is_one_chunk_of_its_own_length(size: int, chunk_size: int) -> None:
    # Spec 8.1, 5.14: a REPAIR is Chunk Size long. A 300-byte reply announced with 1024-byte chunks
    # went with three REPAIRs of 1024 bytes of data, ten times its length on the wire.
    pair = Pair("rate=10mbit queue=100kb rtt=50ms loss=20%", seed=2)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    sent = pair.record_client_packets()
    data = payload(size, 2)
    oid = pair.send(data, name="reply")
    pair.run_until(lambda: pair.finished([oid]))
    [announce] = {packet for _, packet in sent if isinstance(packet, codec.Announce)}
    assert announce.chunk_size == chunk_size
    repairs = [packet for _, packet in sent if isinstance(packet, codec.Repair)]
    assert repairs and all(len(packet.payload) == chunk_size for packet in repairs)
    assert [e.data for e in pair.server_log.received()] == [data]


def test_the_repairs_of_a_small_object_are_paced_as_full_chunks() -> None:
    # REPAIRs protect by being spread out. A small reply's, each as short as the reply, went back
    # to back at the pacing rate and met the same three packets of queue; they are paced as if
    # they were full chunks.
    pair = Pair("rate=10mbit queue=100kb rtt=50ms loss=20%", seed=2, client_config=SessionConfig(rate="fixed:1mbit"))
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    sent = pair.record_client_packets()
    oid = pair.send(payload(300, 2), name="reply")
    pair.run_until(lambda: pair.finished([oid]))
    times = [t for t, packet in sent if isinstance(packet, codec.Repair)]
    assert len(times) >= 4
    gaps = [b - a for a, b in itertools.pairwise(times[2:])]  # the first ride the burst allowance
    assert min(gaps) >= 1000 * 8 / 1e6


@pytest.mark.parametrize(("chunks", "copies"), [(4, 2), (20, 3), (100, 4), (300, 5)])
def test_a_larger_object_is_announced_more_times(chunks: int, copies: int) -> None:
    # R8.2-10: a lost ANNOUNCE costs every chunk the receiver could not buffer meanwhile, so the copies
    # are spread over the first 256 chunks: after the 8th, 32nd, 128th and 256th (or the last).
    pair = Pair("rtt=20ms", seed=1)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    sent = pair.record_client_packets()
    oid = pair.send(payload(chunks * 1024, 1), name="img")
    pair.run_until(lambda: pair.finished([oid]))
    assert sum(isinstance(packet, codec.Announce) for _, packet in sent) == copies


def test_a_long_gap_not_yet_due_stays_one_entry_on_the_schedule() -> None:
    obj, data = _incoming(64 * 1000)
    obj.add_chunk(999, data[999 * 64 :], 1, 0.0, 0.010)  # chunks 0-998: one gap, due at 10 ms
    assert obj.due_missing(0.005, 0.020, 1) == []  # within the pull horizon, but a first report
    assert obj.nack_queue == [(0.010, 0, 998)]
    assert obj.due_missing(0.010, 0.020, 1) == list(range(999))


# -- small objects on a path losing many datagrams (spec 9.6, R8.2-10) ----------------------------


def _after_warm_up(link: str, seed: int) -> Pair:
    """A session that has measured its loss: a 64 KiB object went first."""
    pair = Pair(link, seed=seed)
    warm_up = pair.send(payload(64 << 10, seed), name="warm-up")
    pair.run_until(lambda: pair.finished([warm_up]), timeout=60)
    return pair


@pytest.mark.parametrize("seed", [1, 2])
def test_a_one_chunk_object_gets_more_repairs_than_chunks_where_half_the_datagrams_are_lost(seed: int) -> None:
    # Over one chunk every REPAIR is a copy of it: capped at the window's length, one copy went
    # with the chunk, and both were lost one time in four at 50 % loss, a round trip each time.
    pair = _after_warm_up("rate=10mbit rtt=100ms loss=50%", seed)
    sent = pair.record_client_packets()
    oid = pair.send(payload(500, seed), name="reply")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    repairs = [packet for _, packet in sent if isinstance(packet, codec.Repair) and packet.object_id == oid]
    assert len(repairs) >= 4
    assert all(repair.count == 1 for repair in repairs)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_announce_goes_in_as_many_copies_as_the_loss_calls_for(seed: int) -> None:
    # R8.2-10: a lost ANNOUNCE stalls a small object for a round trip (its REPAIRs cannot be used,
    # R9.6-3). At 50 % loss the first copy and the echo after the last chunk left it lost one time
    # in four; the copies now go behind the chunk and the REPAIRs, before any answer could come.
    pair = _after_warm_up("rate=10mbit rtt=100ms loss=50%", seed)
    sent = pair.record_client_packets()
    oid = pair.send(payload(500, seed), name="reply")
    start = pair.sim.now
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    early = [packet for t, packet in sent if t < start + 0.05 and isinstance(packet, codec.Announce)]
    assert len(early) == copies_against(pair.conn.sent.loss_rate) >= 5
    # On a clean path the echo is all there is (the warm-up counted no loss).
    pair = _after_warm_up("rate=10mbit rtt=100ms", seed)
    sent = pair.record_client_packets()
    oid = pair.send(payload(500, seed), name="reply")
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    assert sum(isinstance(packet, codec.Announce) for _, packet in sent) == 2


def test_small_objects_at_half_loss_mostly_arrive_without_a_round_trip() -> None:
    # Thirty one-chunk objects, one after another, over 50 ms each way at 50 % loss. With one
    # REPAIR and two ANNOUNCEs, 13-19 of them arrived within the one-way delay; the rest waited a
    # round trip or a probe timeout, up to seconds.
    pair = _after_warm_up("rate=10mbit rtt=100ms loss=50%", 1)
    took = []
    for k in range(30):
        oid = pair.send(payload(500, k), name=f"reply-{k}")
        start = pair.sim.now
        count = len(pair.server_log.received())
        pair.run_until(lambda count=count: len(pair.server_log.received()) > count, timeout=30)
        took.append(pair.sim.now - start)
        pair.run_until(lambda oid=oid: pair.finished([oid]), timeout=30)
    assert sum(t < 0.05 + 0.04 for t in took) >= 25, [round(t, 3) for t in took]
    assert max(took) < 1.0


def test_a_repair_that_comes_before_its_announce_is_kept_for_it() -> None:
    # R9.6-3: a burst of loss takes a small object's ANNOUNCE and its chunk; the REPAIR behind them
    # gets in, then the ANNOUNCE's echo. Dropped, the REPAIR left the chunk to a NACK and a round
    # trip; kept (within the buffer for unannounced chunks), it rebuilds the chunk at once.
    pair = Pair("rtt=100ms", seed=6)
    pair.run_until(lambda: pair.conn.state.value == "established", timeout=10)
    dropped: list[str] = []

    def burst(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes | None:
        packet = codec.decode(datagram).packet
        if isinstance(packet, (codec.Announce, codec.Data)) and type(packet).__name__ not in dropped:
            dropped.append(type(packet).__name__)
            return None
        return datagram

    pair.sim.add_tap(burst)
    data = payload(700, 6)
    start = pair.sim.now
    oid = pair.send(data, name="reply")
    pair.run_until(lambda: pair.finished([oid]), timeout=10)
    assert dropped == ["Announce", "Data"]
    [(arrived, event)] = [(t, e) for t, e in pair.server_log.events if isinstance(e, ObjectReceived)]
    assert event.data == data
    assert arrived - start < 0.05 + 0.01  # one way: no NACK and no retransmission
    server = next(iter(pair.server.sessions.values()))
    assert server.counters["chunks_repaired"] == 1
    assert pair.conn.counters["chunks_retransmitted"] == 0
