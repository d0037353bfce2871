"""The project's own receiver and sender, live on loopback UDP, each on an event loop in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from protocol.aio import ReceivedObject, SessionConfig, SnipError, connect, serve

#: Small limits: the cases that announce up to them stay light (spec 11.3, 14.4).
LIVE_CONFIG = SessionConfig(max_object_size=1 << 20, max_buffered_bytes=4 << 20, max_receiving_bytes=16 << 20)


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="snip-live", daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@contextlib.contextmanager
def live_receiver(config: SessionConfig = LIVE_CONFIG) -> Iterator[tuple[str, int]]:
    """protocol.aio.serve on 127.0.0.1 with a handler that keeps nothing; yields its address."""

    async def handler(obj: ReceivedObject) -> bytes | None:
        return None

    runner = _LoopThread()
    server = runner.call(serve("127.0.0.1", 0, handler, config=config))
    try:
        yield server.sockname
    finally:
        runner.call(server.close())
        runner.stop()


@contextlib.contextmanager
def live_sender(addr: tuple[str, int], payload: bytes, config: SessionConfig | None = None) -> Iterator[None]:
    """protocol.aio.connect in a loop: a new session sending ``payload`` whenever the last one ends."""
    stop = threading.Event()

    async def one_session() -> None:
        session = await connect(addr[0], addr[1], config=config)
        try:
            obj = session.send_object(payload, name="live.bin")
            await asyncio.wait_for(obj.delivered(), 10)
        finally:
            session.abort("done")

    async def forever() -> None:
        while not stop.is_set():
            with contextlib.suppress(SnipError, TimeoutError, OSError):
                await one_session()
            await asyncio.sleep(0.01)

    runner = _LoopThread()
    future = asyncio.run_coroutine_threadsafe(forever(), runner.loop)
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            future.result(15)
        runner.stop()
