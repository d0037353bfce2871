"""Link-model microbenchmarks: the cost of deciding one packet's fate, and of parsing a link.

Run with ``.venv/bin/pytest benchmarks/micro --benchmark-enable`` (the project's pytest defaults
disable benchmarking, so a plain run only checks that each case works). Each round pushes 1000
packets through one direction, so the reported time / 1000 is the per-packet cost.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from netsim.model import LinkModel
from netsim.spec import parse_link

PACKETS = 1000
PAYLOAD = bytes(1052)  # a 1024-byte chunk with a snip-sized header

SPECS = {
    "perfect": "",
    "loss": "loss=5%",
    "typical": "loss=5% delay=50ms jitter=10ms rate=20mbit queue=100kb",
    "gilbert-elliott": "ge=1%,30% delay=20ms",
    "everything": "ge=2%,25% delay=40ms jitter=8ms dist=pareto reorder=1% dup=1% corrupt=0.5% "
    "rate=50mbit queue=250kb blackout=100s-101s",
    "preset lossy-radio": "lossy-radio",
}


def _rounds(text: str) -> Callable[[], int]:
    direction = LinkModel(parse_link(text), seed=1, header_overhead=28).fwd
    clock = [0.0]

    def send_batch() -> int:
        t = clock[0]
        delivered = 0
        transmit = direction.transmit
        for _ in range(PACKETS):
            t += 0.0002  # 5000 packets/s offered: ~42 Mbit/s
            delivered += len(transmit(PAYLOAD, t))
        clock[0] = t
        return delivered

    return send_batch


@pytest.mark.parametrize("name", list(SPECS))
def test_model_per_packet_cost(benchmark: BenchmarkFixture, name: str) -> None:
    delivered = benchmark(_rounds(SPECS[name]))
    assert 0 < delivered <= 2 * PACKETS


def test_parse_link_string(benchmark: BenchmarkFixture) -> None:
    spec = benchmark(parse_link, "congested-4g loss=2% | fwd: rate=3mbit | rev: ge=1%,30%")
    assert spec.fwd.rate == 3e6
