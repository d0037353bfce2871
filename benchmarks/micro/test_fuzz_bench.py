"""Fuzzer microbenchmarks: making mutated datagrams, and pushing a batch through the in-process core.

Run with ``.venv/bin/pytest benchmarks/micro --benchmark-enable``; a plain run checks each case once.
"""

from __future__ import annotations

import random

from pytest_benchmark.fixture import BenchmarkFixture

from apps.conformance.context import Options
from apps.conformance.fuzz.mutate import mutate
from apps.conformance.fuzz.rig import Rig
from apps.conformance.fuzz_cli import FUZZ_CONFIG
from apps.conformance.sim_target import SimTarget
from protocol import codec

SID = 0x0123456789ABCDEF
SEEDS = [
    codec.encode(codec.Data(0, 5, bytes(range(256)) * 4), SID, 7),
    codec.encode(codec.Nack(0, ((1, 2), (9, 1)), largest_pn=6), SID, 8),
    codec.encode(codec.Ack(6, 100, 9000, 8, 64, 1 << 20), SID, 9),
    codec.encode(codec.Ping(), SID, 10),
]


def test_mutate_1000(benchmark: BenchmarkFixture) -> None:
    rng = random.Random(1)
    out = benchmark(lambda: [mutate(rng, SEEDS) for _ in range(1000)])
    assert len(out) == 1000


def test_in_process_batch_of_500(benchmark: BenchmarkFixture) -> None:
    """500 fuzz datagrams through the endpoint, with the legitimate transfer and the checks."""
    rig = Rig(SimTarget("receiver", config=FUZZ_CONFIG, seed=2), 2, Options(timeout=2.0, quiet=0.05))
    rng = random.Random(2)
    seeds = rig.seeds()

    def batch() -> None:
        datagrams = [rig.route(*mutate(rng, seeds)) for _ in range(500)]
        assert rig.run_batch(datagrams, legit_chunks=8) is None

    benchmark(batch)
    rig.close()
