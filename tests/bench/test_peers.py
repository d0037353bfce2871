"""The optional SRT and KCP peers, each a real implementation carrying real images over loopback.

SRT is Debian's libsrt through the benchmark's ctypes driver; KCP is Debian's kcptun, started as
processes around the TCP baseline. Each test is skipped where its peer is not installed (the
README's commands install both when run as root). The TUN benchmark test runs them over the
emulated link as well.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

import pytest

from benchmarks.endpoints import JSON, EndpointOptions, load, srt_end
from benchmarks.workloads import BenchImage


def _images() -> list[BenchImage]:
    rng = random.Random(7)
    return [BenchImage(f"peer-{i}.png", "image/png", rng.randbytes(size)) for i, size in enumerate((1, 70_000, 600_000))]


async def _carry(name: str, extra: dict[str, str] | None = None) -> tuple[list[Any], dict[str, bytes], JSON]:
    module = load(name)
    seen: dict[str, bytes] = {}

    async def handler(image_name: str, data: bytes, peer: str) -> JSON:
        seen[image_name] = data
        return {"name": image_name, "sha256": hashlib.sha256(data).hexdigest(), "verified": True}

    receiver = await module.start_receiver(EndpointOptions("127.0.0.1", 0, timeout=20.0, extra=extra or {}), handler)
    try:
        sender = module.make_sender(EndpointOptions("127.0.0.1", int(receiver.info["port"]), timeout=20.0),
                                    receiver.info)
        await asyncio.wait_for(sender.open(), 20)
        try:
            outcomes = [await asyncio.wait_for(sender.send(image), 20) for image in _images()]
            stats = sender.stats()
        finally:
            await sender.close()
    finally:
        await receiver.stop()
    return outcomes, seen, stats


def _check(outcomes: list[Any], seen: dict[str, bytes]) -> None:
    for image, outcome in zip(_images(), outcomes, strict=True):
        assert outcome.error is None and outcome.reply is not None
        assert outcome.reply["name"] == image.name and outcome.reply["sha256"] == image.sha256
        assert seen[image.name] == image.data


@pytest.mark.skipif(load("srt").unavailable() is not None, reason=str(load("srt").unavailable()))
def test_srt_carries_images_and_replies() -> None:
    outcomes, seen, stats = asyncio.run(_carry("srt", {"fc": "32000"}))
    _check(outcomes, seen)
    assert stats["libsrt"].startswith("1.") and stats["options"] == {"fc": "32000"}
    assert "file mode" in stats["congestion_control"]


@pytest.mark.skipif(load("srt").unavailable() is not None, reason=str(load("srt").unavailable()))
def test_srt_refuses_an_unknown_option() -> None:
    with pytest.raises(srt_end.SrtError, match="unknown SRT option"):
        asyncio.run(_carry("srt", {"no_such_option": "1"}))


@pytest.mark.skipif(load("kcp").unavailable() is not None, reason=str(load("kcp").unavailable()))
def test_kcp_carries_images_and_replies() -> None:
    outcomes, seen, stats = asyncio.run(_carry("kcp", {"sndwnd": "256"}))
    _check(outcomes, seen)
    client = stats["tunnel"]["client"]
    assert client[0] == "kcptun-client" and "--sndwnd" in client and client[client.index("--sndwnd") + 1] == "256"
    assert stats["congestion_control"].startswith("none")


def test_kcp_reports_a_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.endpoints import tunnel_end

    monkeypatch.setattr(tunnel_end.shutil, "which", lambda name: None)
    assert "kcptun-server, kcptun-client not found" in str(load("kcp").unavailable())
