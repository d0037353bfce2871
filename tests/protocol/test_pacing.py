"""Pacing under a driver whose timers fire late (spec R11.1-1).

asyncio waits in epoll, whose timeout is whole milliseconds rounded up, and on a busy machine the
process is woken later still. The simulator fires every timer on the dot, so these tests wrap the
client in netsim's ``LateWakeups``, which models that driver: each timer is taken at the next whole
millisecond plus a scheduling delay. It stands in for the real event loop, whose wake-ups cannot be
made repeatable in a test.
"""

from __future__ import annotations

import random

from netsim.simulator import Address, LateWakeups, Observed, Simulator
from protocol import codec
from protocol.config import SessionConfig
from protocol.endpoint import Endpoint
from protocol.events import ObjectDelivered

from .harness import CLIENT, SERVER, Recorder, seeded_random

WAKE_DELAY = 0.0015  # seconds past the whole millisecond: a machine running three busy processes


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


class _LateDrivenClient:
    """A client paced at 40 Mbit/s whose timers fire WAKE_DELAY past the whole millisecond, with a
    session open to a server over a clean link; every datagram it sends is recorded with its time."""

    def __init__(self) -> None:
        self.sim = Simulator(seed=1)
        client = Endpoint(SessionConfig(rate="fixed:40mbit"), random_bytes=seeded_random(101))
        server = Endpoint(server=True, random_bytes=seeded_random(201))
        self.log = Recorder(client)
        self.sim.add_endpoint(LateWakeups(Observed(client, self.log.drain), delay=WAKE_DELAY), CLIENT)
        self.sim.add_endpoint(Observed(server, Recorder(server).drain), SERVER)
        self.sim.connect(CLIENT[0], SERVER[0], "rate=100mbit rtt=20ms queue=1mb")
        self.sent: list[tuple[float, codec.Packet, int]] = []
        self.sim.add_tap(self._tap)
        self.conn = client.connect(SERVER, self.sim.now)
        self.sim.run_until(lambda: self.conn.state.value == "established", timeout=10)

    def _tap(self, now: float, src: Address, dst: Address, datagram: bytes) -> bytes:
        if src == CLIENT:
            self.sent.append((now, codec.decode(datagram).packet, len(datagram)))
        return datagram

    def send(self, size: int, seed: int) -> float:
        """Send an object and run until it is delivered; returns the time it was handed over."""
        start = self.sim.now
        object_id = self.conn.send_object(payload(size, seed), start)
        self.sim.poke()
        self.sim.run_until(lambda: any(e.object_id == object_id for e in self.log.of(ObjectDelivered)), timeout=30)
        return start


def test_late_wake_ups_do_not_cost_a_paced_sender_its_rate() -> None:
    # Woken 1.5-2.5 ms late each time, a sender allowed only 1 ms of catching up (two datagrams are
    # 0.4 ms at 40 Mbit/s) lost the rest of each delay for good: over TUN on a two-core machine,
    # 14-50 ms of a 0.3 s transfer. A sender that waited only for its pace sends what it owed.
    client = _LateDrivenClient()
    client.send(512 << 10, 3)
    data = [(t, size) for t, p, size in client.sent if isinstance(p, codec.Data)]
    assert len(data) >= 512
    # The middle of the transfer: the rate between the 100th and the 400th datagram.
    (start, _), (end, _) = data[100], data[400]
    rate = sum(size for _, size in data[100:400]) * 8 / (end - start)
    assert rate >= 0.95 * 40e6, f"paced at {rate / 1e6:.1f} Mbit/s of 40"


def test_after_an_idle_spell_only_the_short_burst_is_allowed() -> None:
    # The catching up is for a sender held back by its pace alone: one with nothing to send keeps
    # no credit, and the next object starts with max(2 datagrams, 1 ms at the pacing rate).
    client = _LateDrivenClient()
    client.send(64 << 10, 4)
    client.sim.run_for(0.2)
    start = client.send(64 << 10, 5)
    burst = sum(size for t, p, size in client.sent if t == start and not isinstance(p, codec.Ack))
    # 1 ms at 40 Mbit/s is 5000 bytes: the datagram that crosses the allowance goes too.
    assert 0 < burst <= 5000 + 1100
