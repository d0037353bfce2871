"""The benchmark's snip endpoint over real sockets through netsim's UDP relay: an outage longer
than the idle timeout costs the session, and the sender carries on over a new one, as `snip send`
does, within the worker's per-image time."""

from __future__ import annotations

import asyncio
import hashlib
import random

from benchmarks.endpoints import JSON, EndpointOptions, Sent, load
from benchmarks.workloads import BenchImage
from netsim.relay import UdpRelay


def test_an_image_caught_by_an_outage_past_the_idle_timeout_arrives_over_a_new_session() -> None:
    module = load("snip")
    image = BenchImage("caught.png", "image/png", random.Random(3).randbytes(600_000))  # 1.2 s at 4 Mbit/s
    seen: list[bytes] = []
    settings = {"idle_timeout": "1", "handshake_timeout": "1"}

    async def handler(name: str, data: bytes, peer: str) -> JSON:
        seen.append(data)
        return {"name": name, "sha256": hashlib.sha256(data).hexdigest()}

    async def scenario() -> tuple[Sent, JSON, float]:
        receiver = await module.start_receiver(EndpointOptions("127.0.0.1", 0, extra=settings), handler)
        try:
            async with UdpRelay("127.0.0.1:0", ("127.0.0.1", int(receiver.info["port"])),
                                "rate=4mbit blackout=400ms-3s", seed=4) as relay:
                sender = module.make_sender(EndpointOptions("127.0.0.1", relay.listen_addr[1], extra=settings),
                                            receiver.info)
                await sender.open()
                loop = asyncio.get_running_loop()
                started = loop.time()
                sent = await asyncio.wait_for(sender.send(image), 30)
                took = loop.time() - started
                stats = sender.stats()
                await sender.close()
        finally:
            await receiver.stop()
        return sent, stats, took

    sent, stats, took = asyncio.run(scenario())
    assert sent.error is None and sent.reply == {"name": "caught.png", "sha256": image.sha256}
    assert stats["sessions"] == 2 and took > 2.6
    assert seen == [image.data]
