"""STAND-IN for protocol.aio: an in-memory imitation of its documented API, for app tests.

It is not the SNIP protocol: there are no sockets and no packets. Objects "travel" at RATE bytes
per second inside one event loop, with seeded fake loss figures, so the apps (sender, receiver,
the snip transport adapter) can be tested before the real binding lands and independently of it.
Tests that need the real thing use protocol.aio itself and are skipped while it is absent.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

RATE = 200e6  # bytes per second an object moves at
LOSS = 0.1  # share of chunks reported lost (and recovered) in the stats
SERVERS: dict[tuple[str, int], FakeServer] = {}
_ports = iter(range(41000, 60000))


class SnipError(Exception):
    pass


class InvalidObjectError(SnipError, ValueError):
    pass


class ObjectFailed(SnipError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (code {code})")
        self.code = code
        self.reason = reason


# protocol.constants.ErrorCode values (spec 13).
OBJECT_TOO_LARGE, DEADLINE_EXPIRED, REFUSED, APPLICATION_ERROR = 0x04, 0x07, 0x08, 0x0D


@dataclass(frozen=True)
class SessionConfig:
    chunk_size: int = 1024
    rate: str = "snipbbr"
    max_object_size: int = 64 << 20
    max_concurrent_objects: int = 64
    idle_timeout: float = 30.0
    handshake_timeout: float = 10.0
    max_buffered_bytes: int = 256 << 20

    def validate(self) -> None:
        if not self.rate.startswith("fixed:") and self.rate != "snipbbr":
            raise ValueError(f"unknown rate controller {self.rate!r} (snipbbr or fixed:RATE)")


@dataclass(frozen=True)
class PeerLimits:
    max_object_size: int
    max_concurrent_objects: int


@dataclass(frozen=True)
class ReceivedObject:
    session_id: int
    peer: tuple[str, int]
    object_id: int
    name: str
    content_type: str
    data: bytes
    want_reply: bool
    in_reply_to: int | None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IncomingInfo:
    session_id: int
    peer: tuple[str, int]
    object_id: int
    name: str
    content_type: str
    size: int


Handler = Callable[[ReceivedObject], Awaitable[bytes | None]]
Accept = Callable[[IncomingInfo], str | None]


class FakeServer:
    def __init__(self, host: str, port: int, handler: Handler, config: SessionConfig, accept: Accept | None) -> None:
        self.sockname = (host, port)
        self.handler = handler
        self.accept = accept
        self.config = config
        self.sessions: list[Session] = []
        self.in_progress = 0
        self.closed = False
        self.completed = 0

    def stats(self) -> dict[str, Any]:
        return {"sessions": len(self.sessions), "objects_in_progress": self.in_progress,
                "objects_completed": self.completed}

    async def close(self, grace: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + grace
        while self.in_progress and loop.time() < until:
            await asyncio.sleep(0.01)
        self.closed = True
        SERVERS.pop(self.sockname, None)
        for session in self.sessions:
            session.peer_gone()


async def serve(host: str, port: int, handler: Handler, *, config: SessionConfig,
                accept: Accept | None = None) -> FakeServer:
    if port == 0:
        port = next(_ports)
    if (host, port) in SERVERS:
        raise SnipError(f"cannot listen on {host}:{port}: Address already in use")
    server = FakeServer(host, port, handler, config, accept)
    SERVERS[(host, port)] = server
    return server


async def connect(host: str, port: int, *, config: SessionConfig) -> Session:
    server = SERVERS.get((host, port))
    if server is None:
        await asyncio.sleep(config.handshake_timeout)
        raise SnipError(f"handshake timed out after {config.handshake_timeout:g} s")
    session = Session(server, config)
    server.sessions.append(session)
    return session


class OutgoingObject:
    def __init__(self, size: int) -> None:
        loop = asyncio.get_running_loop()
        self._delivered: asyncio.Future[None] = loop.create_future()
        self._reply: asyncio.Future[ReceivedObject] = loop.create_future()
        self._done = 0
        self._size = size
        self._stats: dict[str, Any] = {}
        for future in (self._delivered, self._reply):
            future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    @property
    def progress(self) -> tuple[int, int]:
        return (self._done, self._size)

    async def delivered(self) -> None:
        await asyncio.shield(self._delivered)

    async def reply(self) -> ReceivedObject:
        return await asyncio.shield(self._reply)

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def fail(self, exc: Exception) -> None:
        for future in (self._delivered, self._reply):
            if not future.done():
                future.set_exception(exc)


class Session:
    _ids = iter(range(1, 1 << 30))

    def __init__(self, server: FakeServer, config: SessionConfig) -> None:
        self._server = server
        self._config = config
        self.session_id = next(self._ids)
        self.peer = ("127.0.0.1", 30000 + self.session_id)
        self.peer_limits = PeerLimits(server.config.max_object_size, server.config.max_concurrent_objects)
        self._rng = random.Random(self.session_id)
        self._objects: dict[int, OutgoingObject] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_id = 0
        self.closed = False

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.closed = True

    def stats(self) -> dict[str, Any]:
        return {"srtt_ms": 0.2, "min_rtt_ms": 0.1, "objects": self._next_id}

    def peer_gone(self) -> None:
        self.closed = True
        for obj in self._objects.values():
            obj.fail(ObjectFailed(APPLICATION_ERROR, "receiver shutting down"))

    def send_object(self, data: bytes, *, name: str, content_type: str, want_reply: bool = False,
                    deadline: float | None = None) -> OutgoingObject:
        if self.closed:
            raise SnipError("session is closed")
        obj = OutgoingObject(len(data))
        object_id = self._next_id
        self._next_id += 1
        self._objects[object_id] = obj
        task = asyncio.create_task(self._transfer(object_id, obj, data, name, content_type, want_reply, deadline))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return obj

    async def _transfer(self, object_id: int, obj: OutgoingObject, data: bytes, name: str, content_type: str,
                        want_reply: bool, deadline: float | None) -> None:
        server = self._server
        if len(data) > server.config.max_object_size:
            obj.fail(ObjectFailed(OBJECT_TOO_LARGE, "object too large for the receiver"))
            return
        if server.accept is not None:
            refusal = server.accept(IncomingInfo(self.session_id, self.peer, object_id, name, content_type, len(data)))
            if refusal is not None:
                obj.fail(ObjectFailed(REFUSED, refusal))
                return
        chunks = math.ceil(len(data) / self._config.chunk_size)
        lost = sum(1 for _ in range(chunks) if self._rng.random() < LOSS)
        duration = len(data) / RATE
        if deadline is not None and duration > deadline:
            await asyncio.sleep(deadline)
            obj.fail(ObjectFailed(DEADLINE_EXPIRED, "deadline expired"))
            return
        # Busy from the first chunk until the reply is back: what a graceful close waits for.
        server.in_progress += 1
        try:
            for step in range(1, 11):
                await asyncio.sleep(duration / 10)
                if self.closed or server.closed:
                    return  # peer_gone() failed the object already
                obj._done = len(data) * step // 10
            obj._stats = {"chunks": chunks, "chunks_sent": chunks + lost, "retransmitted": lost, "nacked": lost,
                          "elapsed_s": duration}
            server.completed += 1
            received = ReceivedObject(
                self.session_id, self.peer, object_id, name, content_type, bytes(data), want_reply, None,
                {"chunks": chunks, "chunks_received": chunks + lost // 2, "duplicates": 0, "nacked": lost,
                 "recovered": lost, "elapsed_s": duration},
            )
            obj._delivered.set_result(None)
            answer = await server.handler(received)
            if want_reply and not obj._reply.done():
                obj._reply.set_result(ReceivedObject(
                    self.session_id, ("127.0.0.1", server.sockname[1]), object_id + 1_000_000, "",
                    "application/json", answer or b"", False, object_id,
                ))
        finally:
            server.in_progress -= 1
