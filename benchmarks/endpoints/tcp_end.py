"""Kernel TCP through the apps' TCP baseline (apps.transports.tcp), congestion control pinned."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from apps.transport import OutgoingImage, ReceivedImage, TransportError
from apps.transports.tcp import TcpReceiver, TcpSender
from benchmarks.endpoints import JSON, EndpointOptions, Handler, Sent
from benchmarks.workloads import BenchImage

_MAX_IMAGE = 256 << 20


def unavailable() -> str | None:
    return None


class TcpBenchReceiver:
    def __init__(self, receiver: TcpReceiver, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        self._receiver = receiver
        self._task = task
        self._stop = stop
        host, port = receiver.address
        self.info: JSON = {"host": host, "port": port, "congestion_control": receiver.congestion}

    async def stop(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, 5.0)
        except (TimeoutError, TransportError):
            self._task.cancel()

    def stats(self) -> JSON:
        return self._receiver.stats()


async def start_receiver(options: EndpointOptions, handler: Handler) -> TcpBenchReceiver:
    receiver = TcpReceiver(
        options.host, options.port, congestion=options.cc, max_image_bytes=_MAX_IMAGE,
        max_buffered_bytes=_MAX_IMAGE * 2, io_timeout=options.timeout, shutdown_grace=1.0,
    )

    async def on_image(image: ReceivedImage) -> JSON:
        return await handler(image.name, image.data, image.peer)

    stop = asyncio.Event()
    task = asyncio.create_task(receiver.serve(on_image, stop))
    ready = asyncio.create_task(receiver.wait_listening())
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:  # serve() failed before listening: surface its error
        ready.cancel()
        task.result()
        raise TransportError("the TCP receiver stopped before listening")
    return TcpBenchReceiver(receiver, task, stop)


async def _one(image: OutgoingImage) -> AsyncIterator[OutgoingImage]:
    yield image


class TcpBenchSender:
    def __init__(self, options: EndpointOptions, peer: JSON) -> None:
        self.options = options
        self.sender = TcpSender(
            options.host, options.port, congestion=options.cc,
            connect_timeout=options.timeout, io_timeout=options.timeout, reply_timeout=options.timeout,
            max_inflight=1,
        )
        self.last: JSON = {}

    async def open(self) -> None:
        """The connection opens with the first (warm-up) image."""

    async def send(self, image: BenchImage) -> Sent:
        outgoing = OutgoingImage(image.name, image.content_type, image.data)
        try:
            outcome = (await self.sender.send_all(_one(outgoing), want_reply=True))[0]
        except TransportError as exc:
            return Sent(None, None, str(exc))
        self.last = dict(outcome.stats)
        if not outcome.delivered:
            return Sent(None, None, outcome.error or "not delivered", outcome.stats)
        return Sent(outcome.elapsed_s, outcome.reply, outcome.error, outcome.stats)

    def stats(self) -> JSON:
        return {"congestion_control": self.last.get("congestion_control"), "last_image": self.last}

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.sender.aclose(), 3.0)


def make_sender(options: EndpointOptions, peer: JSON) -> TcpBenchSender:
    return TcpBenchSender(options, peer)
