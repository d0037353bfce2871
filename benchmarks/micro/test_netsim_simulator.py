"""Simulator microbenchmarks: events per second through a lossy, rate-limited link.

Run with ``.venv/bin/pytest benchmarks/micro --benchmark-enable``. One round moves 2000 datagrams
of 1 KB from a paced sender to a counting receiver (plus one ACK per 16 back) through
``loss=2% rtt=100ms rate=100mbit``; events = arrivals + timer firings.
"""

from __future__ import annotations

from pytest_benchmark.fixture import BenchmarkFixture

from netsim.simulator import Simulator

Address = tuple[str, int]
COUNT = 2000


class PacedSender:
    def __init__(self, peer: Address, count: int, interval: float) -> None:
        self.peer, self.count, self.interval = peer, count, interval
        self.sent, self.next_at, self.acks = 0, 0.0, 0

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.acks += 1

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = []
        while self.sent < self.count and self.next_at <= now:
            out.append((self.sent.to_bytes(4, "big") + bytes(1020), self.peer))
            self.sent += 1
            self.next_at += self.interval
        return out

    def get_timer(self) -> float | None:
        return self.next_at if self.sent < self.count else None

    def handle_timer(self, now: float) -> None:
        pass


class AckingReceiver:
    def __init__(self) -> None:
        self.received = 0
        self.pending: list[tuple[bytes, Address]] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.received += 1
        if self.received % 16 == 0:
            self.pending.append((data[:4], addr))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self.pending = self.pending, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


def transfer() -> int:
    sim = Simulator(seed=1)
    receiver = AckingReceiver()
    sim.add_endpoint(PacedSender(("b", 2), COUNT, 1052 * 8 / 90e6), ("a", 1))
    sim.add_endpoint(receiver, ("b", 2))
    sim.connect("a", "b", "loss=2% rtt=100ms rate=100mbit queue=250kb")
    sim.run()
    return sim.events


def test_simulator_event_rate(benchmark: BenchmarkFixture) -> None:
    events = benchmark(transfer)
    assert events > COUNT
