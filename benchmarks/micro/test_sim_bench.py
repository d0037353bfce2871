"""A real snip transfer in netsim's virtual-time simulator: wall time and events per second.

Two protocol endpoints (the sans-I/O core, as the protocol tests drive it) move one 256 KiB
object and its reply across ``rate=50mbit rtt=50ms loss=5% queue=250kb``. The virtual time the
transfer took and the event rate are attached to the benchmark's extra_info. Run with
``.venv/bin/pytest benchmarks/micro --benchmark-enable``.
"""

from __future__ import annotations

import random

from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.micro.helpers import pedantic
from netsim.simulator import Observed, Simulator
from protocol.endpoint import Endpoint
from protocol.events import ObjectReceived

CLIENT = ("client", 4000)
SERVER = ("server", 5000)
LINK = "rate=50mbit rtt=50ms loss=5% queue=250kb"
SIZE = 256 << 10


def _replying(endpoint: Endpoint) -> Observed:
    """The server endpoint, answering every object it receives with a short reply."""

    def answer(now: float) -> None:
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, ObjectReceived):
                conn = endpoint.session(event.session_id)
                conn.send_object(b'{"answer": "real"}', now, in_reply_to=event.object_id)

    return Observed(endpoint, answer)


def transfer(seed: int = 1) -> tuple[float, int]:
    """(virtual seconds until the reply is back, simulator events)."""
    rng = random.Random(seed)
    sim = Simulator(seed=seed)
    client = Endpoint(random_bytes=random.Random(seed + 100).randbytes)
    server = _replying(Endpoint(server=True, random_bytes=random.Random(seed + 200).randbytes))
    sim.add_endpoint(client, CLIENT)
    sim.add_endpoint(server, SERVER)
    sim.connect(CLIENT[0], SERVER[0], LINK)
    conn = client.connect(SERVER, sim.now)
    conn.send_object(rng.randbytes(SIZE), sim.now, name="img.png", want_reply=True)
    sim.poke()
    replies: list[ObjectReceived] = []

    def done() -> bool:
        while (event := client.next_event()) is not None:
            if isinstance(event, ObjectReceived) and event.in_reply_to is not None:
                replies.append(event)
        return bool(replies)

    took = sim.run_until(done, timeout=60.0)
    return took, sim.events


def test_snip_transfer_in_simulator(benchmark: BenchmarkFixture) -> None:
    took, events = pedantic(benchmark)(transfer, rounds=5, iterations=1)
    mean = benchmark.stats.stats.mean if benchmark.stats is not None else 0.0
    benchmark.extra_info.update(virtual_s=took, events=events, events_per_s=events / mean if mean else None)
    assert 0 < took < 10 and events > (SIZE // 1024)
