"""Endpoint microbenchmarks: what one datagram costs a server that holds many sessions.

A datagram wakes one session; the others must cost nothing. Each case drives a server endpoint
through its sans-I/O interface the way the asyncio driver does (receive, timers, output) and
reports the time per datagram. Run with ``.venv/bin/pytest benchmarks/micro --benchmark-enable``.
"""

from __future__ import annotations

import random

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from protocol import codec
from protocol.codec import Initial, Ping
from protocol.config import SessionConfig
from protocol.endpoint import Endpoint


def _server_with_sessions(count: int) -> tuple[Endpoint, list[tuple[int, tuple[str, int]]]]:
    """A server holding ``count`` half-open sessions (INITIALs whose clients went quiet)."""
    server = Endpoint(SessionConfig(retry="never", max_sessions=count + 1), server=True)
    rng = random.Random(7)
    for i in range(count):
        server.receive_datagram(codec.encode(Initial(), rng.getrandbits(63) | 1, 0), ("10.0.0.1", 1000 + i), 1.0)
    server.datagrams_to_send(1.0)
    sessions = [(sid, conn.peer) for sid, conn in server.sessions.items()]
    return server, sessions


def _pump(server: Endpoint, now: float) -> None:
    timer = server.get_timer()
    if timer is not None and timer <= now:
        server.handle_timer(now)
    server.datagrams_to_send(now)
    server.get_timer()


@pytest.mark.parametrize("sessions", [1, 256])
def test_a_ping_to_one_session_among_many(benchmark: BenchmarkFixture, sessions: int) -> None:
    server, held = _server_with_sessions(sessions)
    sid, peer = held[0]
    clock = [1.0]
    pn = [1]

    def one() -> None:
        clock[0] += 0.0001
        pn[0] += 1
        server.receive_datagram(codec.encode(Ping(), sid, pn[0]), peer, clock[0])
        _pump(server, clock[0])

    benchmark(one)
    assert len(server.sessions) == sessions


@pytest.mark.parametrize("held", [0, 128])
def test_an_initial_flood_past_the_handshake_bound(benchmark: BenchmarkFixture, held: int) -> None:
    """INITIALs from new client ids, answered with RETRY once ``held`` handshakes wait (retry=auto)."""
    server = Endpoint(SessionConfig(max_pending_handshakes=max(held, 1)), server=True)
    rng = random.Random(3)
    clock = [1.0]

    def one() -> None:
        clock[0] += 0.0001
        server.receive_datagram(codec.encode(Initial(), rng.getrandbits(63) | 1, 0), ("10.0.0.2", 2000), clock[0])
        _pump(server, clock[0])

    benchmark(one)
    assert server.counters["retries_sent"] > 0
