"""The virtual-time simulator, driven with toy endpoints."""

from __future__ import annotations

import random

import pytest

from netsim.simulator import (
    LateWakeups,
    RoutingError,
    SimulationError,
    SimulationStalled,
    SimulationTimeout,
    Simulator,
)

from .toys import Blaster, Counter, StopAndWaitReceiver, StopAndWaitSender, TimerRecorder, digest

A, B = ("a", 1000), ("b", 2000)


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def stop_and_wait(spec: str, seed: int, size: int = 50_000) -> tuple[Simulator, StopAndWaitSender, StopAndWaitReceiver]:
    sim = Simulator(seed=seed)
    sender = StopAndWaitSender(B, payload(size), rto=0.5)
    receiver = StopAndWaitReceiver()
    sim.add_endpoint(sender, A)
    sim.add_endpoint(receiver, B)
    sim.connect("a", "b", spec)
    sim.run_until(lambda: sender.done, timeout=3600)
    return sim, sender, receiver


def test_delivers_bit_exact_through_loss_and_reports_virtual_time() -> None:
    sim, sender, receiver = stop_and_wait("loss=20% rtt=200ms", seed=1)
    assert receiver.complete and digest(receiver.payload()) == digest(payload(50_000))
    chunks = len(sender.chunks)
    # Every chunk costs at least one RTT; losses add RTO waits.
    assert sim.now >= chunks * 0.2
    assert sender.finished_at == sim.now
    stats = sim.link("a", "b").stats()
    assert stats["fwd"]["dropped_by_cause"]["loss"] > 0 and stats["rev"]["dropped_by_cause"]["loss"] > 0
    assert sender.sent == stats["fwd"]["sent"]
    # Time spent is explained: each lost datagram or lost ACK costs one RTO instead of one RTT.
    retransmissions = sender.sent - chunks
    assert sim.now == pytest.approx(chunks * 0.2 + retransmissions * 0.5, abs=1e-6)


def test_runs_are_bit_reproducible() -> None:
    sim1, s1, _ = stop_and_wait("loss=10% delay=30ms jitter=10ms dup=2%", seed=7)
    sim2, s2, _ = stop_and_wait("loss=10% delay=30ms jitter=10ms dup=2%", seed=7)
    assert sim1.now == sim2.now and s1.sent == s2.sent
    assert sim1.stats() == sim2.stats()
    sim3, _, _ = stop_and_wait("loss=10% delay=30ms jitter=10ms dup=2%", seed=8)
    assert sim3.now != sim1.now


def test_run_until_timeout_and_stall_raise_clearly() -> None:
    sim = Simulator()
    sender = StopAndWaitSender(B, b"x" * 5000)
    sim.add_endpoint(sender, A)
    sim.add_endpoint(StopAndWaitReceiver(), B)
    sim.connect("a", "b", "loss=100%")
    with pytest.raises(SimulationTimeout, match="after 10 virtual seconds") as info:
        sim.run_until(lambda: sender.done, timeout=10)
    assert not isinstance(info.value, SimulationStalled)
    assert sim.now == pytest.approx(10)
    assert "a->b 0/" in str(info.value)

    quiet = Simulator()
    quiet.add_endpoint(Counter(), A)
    with pytest.raises(SimulationStalled, match="nothing left to happen"):
        quiet.run_until(lambda: False, timeout=10)
    assert isinstance(SimulationStalled("x"), TimeoutError)


def test_run_advances_the_clock_without_events() -> None:
    sim = Simulator()
    assert sim.run(until=5.0) == 5.0
    assert sim.run_for(2.5) == 7.5
    assert sim.now == 7.5


def test_timers_fire_at_their_time_and_follow_changes() -> None:
    sim = Simulator()
    ep = TimerRecorder([1.5, 3.0])
    sim.add_endpoint(ep, A)
    sim.run(until=2.0)
    assert ep.fired == [1.5]
    # The endpoint moves its timer earlier and later from outside; a poke makes the sim notice.
    ep.timers = [2.25, 9.0]
    sim.poke()
    sim.run(until=4.0)
    assert ep.fired == [1.5, 2.25]  # the stale 3.0 entry does not fire
    ep.timers = [1.0]  # a timer in the past fires at once
    sim.poke()
    sim.run(until=4.0)
    assert ep.fired == [1.5, 2.25, 4.0]


def test_late_wakeups_take_each_timer_at_the_next_millisecond_plus_a_delay() -> None:
    sim = Simulator()
    ep = TimerRecorder([0.0103, 0.012, 0.5])
    sim.add_endpoint(LateWakeups(ep, delay=0.0015), A)
    sim.run(until=1.0)
    # 0.0103 -> 0.011 + 1.5 ms; 0.012 has passed by then and is handled in the same wake-up.
    assert ep.fired == pytest.approx([0.0125, 0.5015])
    drawn = TimerRecorder([1.2])
    sim.add_endpoint(LateWakeups(drawn, delay=0.004, rng=random.Random(3)), B)
    sim.run(until=2.0)
    assert len(drawn.fired) == 1 and 1.2 < drawn.fired[0] <= 1.204


def test_an_endpoint_that_never_clears_its_timer_is_reported() -> None:
    class Spinner(TimerRecorder):
        def handle_timer(self, now: float) -> None:
            self.fired.append(now)

    sim = Simulator()
    sim.add_endpoint(Spinner([1.0]), A)
    with pytest.raises(SimulationError, match="never let time advance"):
        sim.run(until=2.0)


def test_scheduled_calls_and_injection() -> None:
    sim = Simulator()
    counter = Counter()
    sim.add_endpoint(counter, B)
    sim.add_endpoint(Counter(), A)
    sim.connect("a", "b", "delay=100ms")
    sim.call_at(1.0, lambda: sim.inject(b"spoofed", ("a", 666), B))
    sim.inject(b"direct", ("z", 1), B, at=0.5, through_link=False)
    sim.run()
    assert [(t, src, d) for t, src, d in counter.arrivals] == [
        (0.5, ("z", 1), b"direct"),
        (pytest.approx(1.1), ("a", 666), b"spoofed"),
    ]


def test_taps_observe_change_and_drop() -> None:
    sim = Simulator()
    counter = Counter()
    sim.add_endpoint(Blaster(B, 100, rate=1e6), A)
    sim.add_endpoint(counter, B)
    sim.connect("a", "b", "delay=1ms")
    seen: list[int] = []

    def drop_even(now: float, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bytes | None:
        seq = int.from_bytes(data[:4], "big")
        seen.append(seq)
        return None if seq % 2 == 0 else data

    remove = sim.add_tap(drop_even)
    sim.add_tap(lambda now, src, dst, data: b"X" + data[1:], on="deliver")
    sim.run(until=0.5)
    assert len(seen) == 63 and len(counter.arrivals) == 31
    assert all(d[:1] == b"X" for _, _, d in counter.arrivals)
    remove()
    sim.run()
    assert len(seen) == 63 and len(counter.arrivals) == 31 + 37
    assert sim.tapped_out == 32


def test_twenty_senders_to_one_receiver_through_a_star() -> None:
    sim = Simulator(seed=3)
    receiver = Counter()
    sim.add_endpoint(receiver, ("hub", 9000))
    for i in range(20):
        host = f"s{i}"
        sim.add_endpoint(Blaster(("hub", 9000), 500, rate=2e6, start=i * 0.01), (host, 5000))
        sim.connect(host, "hub", "loss=10% delay=20ms")
    sim.run()
    assert set(receiver.by_source) == {(f"s{i}", 5000) for i in range(20)}
    for i in range(20):
        fwd = sim.link(f"s{i}", "hub").stats()["fwd"]
        assert receiver.by_source[(f"s{i}", 5000)] == fwd["passed"]
        assert 350 < fwd["passed"] < 500
    assert sim.stats()["arrivals"] == len(receiver.arrivals)


def test_simulated_bottleneck_delivers_its_rate() -> None:
    sim = Simulator()
    counter = Counter()
    sim.add_endpoint(Blaster(B, 12_000, size=1000, rate=20e6), A)
    sim.add_endpoint(counter, B)
    link = sim.connect("a", "b", "rate=10mbit queue=100kb delay=10ms")
    sim.run()
    times = [t for t, _, _ in counter.arrivals]
    rate = (len(times) - 1) * (1000 + 28) * 8 / (times[-1] - times[0])
    assert abs(rate / 10e6 - 1) < 0.05
    assert link.stats()["fwd"]["dropped_by_cause"]["queue"] > 0


def test_routing_errors() -> None:
    sim = Simulator()
    sim.add_endpoint(Blaster(("nowhere", 1), 1), A)
    with pytest.raises(RoutingError, match="no link joins a and nowhere"):
        sim.run()
    lenient = Simulator(strict=False)
    lenient.add_endpoint(Blaster(("nowhere", 1), 3, rate=1e6), A)
    lenient.add_endpoint(Blaster(("b", 4242), 2, rate=1e6), ("a", 2))
    lenient.connect("a", "b")
    lenient.run()
    assert lenient.unroutable == 3 and lenient.undeliverable == 2


def test_setup_mistakes_are_refused() -> None:
    sim = Simulator()
    sim.add_endpoint(Counter(), A)
    with pytest.raises(SimulationError, match="already has an endpoint"):
        sim.add_endpoint(Counter(), A)
    sim.connect("a", "b")
    with pytest.raises(SimulationError, match="already connected"):
        sim.connect("b", "a")
    with pytest.raises(SimulationError, match="two different hosts"):
        sim.connect("a", "a")
    with pytest.raises(KeyError):
        sim.link("a", "c")


def test_link_fwd_is_the_first_host_to_the_second() -> None:
    sim = Simulator()
    counter_a, counter_b = Counter(), Counter()
    sim.add_endpoint(counter_a, A)
    sim.add_endpoint(counter_b, B)
    sim.add_endpoint(Blaster(B, 10, rate=1e6), ("a", 1))
    sim.add_endpoint(Blaster(A, 10, rate=1e6), ("b", 1))
    sim.connect("a", "b", "fwd: delay=10ms | rev: loss=100%")
    sim.run()
    assert len(counter_b.arrivals) == 10 and not counter_a.arrivals
    assert counter_b.arrivals[0][0] == pytest.approx(0.010)
