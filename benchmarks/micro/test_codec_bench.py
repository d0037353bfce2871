"""Codec microbenchmarks: the packets of the hot path and the checksum under them.

Run with ``.venv/bin/pytest benchmarks/micro --benchmark-enable`` (the project's pytest defaults
disable benchmarking, so a plain run only checks that each case works).
"""

from __future__ import annotations

from pytest_benchmark.fixture import BenchmarkFixture

from protocol.codec import Ack, Data, Nack, crc32c, decode, encode, encode_data

SESSION_ID = 0x0123456789ABCDEF
CHUNK = bytes(range(256)) * 4  # a default-sized 1024-byte chunk
DATA = Data(object_id=3, chunk_index=1234, chunk=CHUNK)
ACK = Ack(
    largest_pn=123_456,
    ack_delay_us=2_500,
    received_bytes=987_654_321,
    received_packets=123_000,
    object_id_limit=80,
    announce_limit=300 << 20,
)
# 1000 missing chunks, 1000 separate ranges over 100,000 chunks: the ranges encoding (8 KB; a bitmap
# would take 12.5 KB).
NACK_SPARSE = Nack(object_id=3, missing=tuple((100 * i, 1) for i in range(1000)), largest_pn=50_000)
# 1000 missing chunks, every other one of 2000: the bitmap encoding (254 bytes).
NACK_DENSE = Nack(object_id=3, missing=tuple((2 * i, 1) for i in range(1000)), largest_pn=50_000)
KIB = bytes(range(256)) * 4


def test_encode_data(benchmark: BenchmarkFixture) -> None:
    datagram = benchmark(encode, DATA, SESSION_ID, 42)
    assert len(datagram) == 18 + 8 + 1024 + 4


def test_encode_data_fast_path(benchmark: BenchmarkFixture) -> None:
    datagram = benchmark(encode_data, SESSION_ID, 42, DATA.object_id, DATA.chunk_index, CHUNK)
    assert datagram == encode(DATA, SESSION_ID, 42)


def test_decode_data(benchmark: BenchmarkFixture) -> None:
    datagram = encode(DATA, SESSION_ID, 42)
    assert benchmark(decode, datagram).packet == DATA


def test_encode_ack(benchmark: BenchmarkFixture) -> None:
    assert len(benchmark(encode, ACK, SESSION_ID, 42)) == 18 + 32 + 4


def test_decode_ack(benchmark: BenchmarkFixture) -> None:
    datagram = encode(ACK, SESSION_ID, 42)
    assert benchmark(decode, datagram).packet == ACK


def test_encode_nack_1000_ranges(benchmark: BenchmarkFixture) -> None:
    datagram = benchmark(encode, NACK_SPARSE, SESSION_ID, 42)
    assert datagram[18 + 5] == 0  # ranges


def test_decode_nack_1000_ranges(benchmark: BenchmarkFixture) -> None:
    datagram = encode(NACK_SPARSE, SESSION_ID, 42)
    assert benchmark(decode, datagram).packet == NACK_SPARSE


def test_encode_nack_1000_bitmap(benchmark: BenchmarkFixture) -> None:
    datagram = benchmark(encode, NACK_DENSE, SESSION_ID, 42)
    assert datagram[18 + 5] == 1  # bitmap


def test_decode_nack_1000_bitmap(benchmark: BenchmarkFixture) -> None:
    datagram = encode(NACK_DENSE, SESSION_ID, 42)
    assert benchmark(decode, datagram).packet == NACK_DENSE


def test_crc32c_1kib(benchmark: BenchmarkFixture) -> None:
    assert benchmark(crc32c, KIB) == crc32c(KIB)
