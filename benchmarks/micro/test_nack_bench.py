"""NACK construction: a receiver with 1000 chunks missing finds them and writes its NACK datagrams.

What a receiver does when a NACK is due: ``IncomingObject.due_missing`` walks the gaps, the
missing chunks become (first, count) ranges, and the codec encodes them in NACKs that each fit
one datagram (the smaller of ranges and bitmap, as the connection chooses). Each round starts from
a fresh object (set-up not timed). Run with ``.venv/bin/pytest benchmarks/micro --benchmark-enable``.
"""

from __future__ import annotations

import hashlib

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.micro.helpers import pedantic
from protocol import codec
from protocol.codec import Announce, Nack
from protocol.receiving import IncomingObject, to_ranges

MISSING = 1000
CHUNK = 64  # the smallest chunk size keeps each round's set-up (the object's buffer) cheap
DATAGRAM = 1472
SESSION_ID = 0x0123456789ABCDEF
_NACK_FIXED = 40  # room for the header, object id, largest pn and encoding byte: conservative


def _object(chunks: int, every: int) -> IncomingObject:
    """An object of ``chunks`` chunks in which every ``every``-th chunk (1000 of them, from the first) never came."""
    announce = Announce(object_id=3, total_length=chunks * CHUNK, chunk_size=CHUNK, chunk_count=chunks,
                        digest=hashlib.sha256(b"").digest())
    obj = IncomingObject(announce, now=0.0)
    payload = bytes(CHUNK)
    pn = 0
    for index in range(chunks):
        if index % every != 0:
            pn += 1
            obj.add_chunk(index, payload, pn, now=0.001, reorder=0.0)
    return obj


def build_nacks(obj: IncomingObject, now: float, largest_pn: int) -> list[bytes]:
    """The due NACK datagrams, split to fit ``DATAGRAM`` bytes (what the connection sends)."""
    missing = obj.due_missing(now, renack=0.2, largest_pn=largest_pn)
    out: list[bytes] = []
    batch: list[tuple[int, int]] = []
    for rng in to_ranges(missing):
        if batch and min(codec.nack_sizes((*batch, rng))) > DATAGRAM - _NACK_FIXED:
            out.append(codec.encode(Nack(obj.object_id, tuple(batch), largest_pn=largest_pn), SESSION_ID, 7))
            batch = []
        batch.append(rng)
    if batch:
        out.append(codec.encode(Nack(obj.object_id, tuple(batch), largest_pn=largest_pn), SESSION_ID, 7))
    return out


@pytest.mark.parametrize(("layout", "every"), [("dense-bitmap", 2), ("sparse-ranges", 20)])
def test_build_nacks_for_1000_missing(benchmark: BenchmarkFixture, layout: str, every: int) -> None:
    chunks = MISSING * every

    def setup() -> tuple[tuple[IncomingObject], dict[str, object]]:
        return (_object(chunks, every),), {}

    def run(obj: IncomingObject) -> list[bytes]:
        return build_nacks(obj, now=1.0, largest_pn=chunks)

    datagrams: list[bytes] = pedantic(benchmark)(run, setup=setup, rounds=30, iterations=1)
    reported = [codec.decode(d).packet for d in datagrams]
    missing = sum(count for nack in reported if isinstance(nack, Nack) for _, count in nack.missing)
    assert missing == MISSING
    assert all(len(d) <= DATAGRAM for d in datagrams)
