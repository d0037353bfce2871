"""Forward-repair decoding: what one datagram costs a receiver that holds many REPAIRs.

``dependent-arrival``: a decoder holds a window of 1024 missing chunks, with rows of rank 1023 and
eight dependent rows on top, as REPAIRs from a peer that never lets them solve would leave it.
One chunk then arrives, and the receiver asks for the deficit (what it does for every DATA the rows
name). The echelon basis moves only the row that chunk heads, instead of eliminating all the rows
again. ``decode-256``: 256 chunks lost out of 1024, rebuilt from 260 REPAIRs over the window, the
rows added one by one as they arrive and then solved. Set-up is not timed. Run with
``.venv/bin/pytest benchmarks/micro --benchmark-enable``.
"""

from __future__ import annotations

import random

from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.micro.helpers import pedantic
from protocol.repair import RepairDecoder, coefficients, encode_payload, repair_value, xor_chunks

WINDOW = 1024
CHUNK = 64


def _held_rows(rng: random.Random) -> tuple[RepairDecoder, int, list[int]]:
    decoder = RepairDecoder(CHUNK)
    missing = (1 << WINDOW) - 1
    independent = [rng.getrandbits(WINDOW) | 1 << (WINDOW - 1) for _ in range(WINDOW - 1)]
    for mask in independent:
        decoder.rows.append((mask, 0))
        decoder.union |= mask
    for _ in range(8):
        decoder.rows.append((rng.choice(independent) ^ rng.choice(independent), 0))
    decoder.deficit(missing)  # the basis is built as the rows arrived
    return decoder, missing, independent


def _rank(rows: list[int], missing: int) -> int:
    """Rank of the rows over the missing chunks, by a full elimination (what the basis avoids)."""
    pivots: dict[int, int] = {}
    for mask in rows:
        mask &= missing
        while mask:
            top = mask.bit_length() - 1
            if top not in pivots:
                pivots[top] = mask
                break
            mask ^= pivots[top]
    return len(pivots)


def test_a_chunk_arriving_beside_dependent_repairs(benchmark: BenchmarkFixture) -> None:
    rng = random.Random(7)
    expected: list[int] = []

    def setup() -> tuple[tuple[RepairDecoder, int], dict[str, object]]:
        decoder, missing, _ = _held_rows(rng)
        after = missing & ~(1 << rng.randrange(WINDOW))
        expected.append(WINDOW - 1 - _rank([mask for mask, _ in decoder.rows], after))
        return (decoder, after), {}

    def run(decoder: RepairDecoder, missing: int) -> int:
        return decoder.deficit(missing)

    deficit: int = pedantic(benchmark)(run, setup=setup, rounds=10, iterations=1)
    assert deficit == expected[-1]


def test_decode_256_lost_chunks(benchmark: BenchmarkFixture) -> None:
    rng = random.Random(8)
    data = rng.randbytes(WINDOW * CHUNK)
    lost = set(rng.sample(range(WINDOW), 256))
    missing = sum(1 << i for i in lost)
    payloads = []
    for seed in range(1, 261):
        if coefficients(seed, WINDOW):
            value = repair_value(0, seed, WINDOW, lambda mask: xor_chunks(data, CHUNK, mask))
            payloads.append((seed, encode_payload(value, CHUNK)))

    def known_xor(mask: int) -> int:
        return xor_chunks(data, CHUNK, mask)

    def run() -> dict[int, bytes] | None:
        decoder = RepairDecoder(CHUNK)
        for seed, payload in payloads:
            decoder.add(0, seed, WINDOW, payload, missing)
            if decoder.deficit(missing) <= 0:
                return decoder.solve(missing, known_xor)
        return None

    solved: dict[int, bytes] | None = pedantic(benchmark)(run, rounds=5, iterations=1)
    assert solved is not None and set(solved) == lost
    assert all(solved[i] == data[i * CHUNK : (i + 1) * CHUNK] for i in lost)
