"""Loopback figures for the apps over a transport: goodput of one large image and of many small
ones (sender -> receiver -> stored -> replied), and the CPU time each image costs (both ends, as
they share this process).

    python -m benchmarks.apps_bench [--via snip|tcp] [--large-mb 16] [--small-count 200] [--small-kb 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apps.receiver.app import ReceiverApp, ReceiverOptions
from apps.receiver.storage import ImageStore
from apps.sender.app import Entry, SendOptions, send_images
from apps.sender.sources import SourceItem
from apps.transports import add_transport_arguments, listening_address, load


def _payload(seed: int, size: int) -> bytes:
    # A JPEG signature and incompressible bytes: what the transport sees of a real photo.
    body = np.random.default_rng(seed).integers(0, 256, size=size - 4, dtype=np.uint8).tobytes()
    return b"\xff\xd8\xff\xe0" + body


def _transport_args(role: str, max_size: int, chunk_size: int | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_transport_arguments(parser, role)  # type: ignore[arg-type]
    args = parser.parse_args([])
    if chunk_size is not None and hasattr(args, "chunk_size"):
        args.chunk_size = chunk_size
    args.max_size, args.max_transfers, args.grace = max_size, 64, 1.0
    return args


async def _entries(items: Sequence[SourceItem]) -> AsyncIterator[Entry]:
    for item in items:
        yield item


async def _phase(via: str, sizes: Sequence[int], chunk_size: int | None = None) -> dict[str, float]:
    """Send images of ``sizes`` over loopback once; the figures of that run."""
    module = load(via)
    items = [SourceItem(f"img{i:05d}.jpg", _payload(i, size), "image/jpeg", "bench") for i, size in enumerate(sizes)]
    with tempfile.TemporaryDirectory(prefix="snip-bench-") as folder:
        app = ReceiverApp(ImageStore(Path(folder)), ReceiverOptions(max_size=max(sizes) + 1), log=lambda line: None)
        receiver = module.receiver_from_args(_transport_args("receiver", max(sizes) + 1, chunk_size), "127.0.0.1:0")
        stop = asyncio.Event()
        serving = asyncio.create_task(receiver.serve(app.handle, stop))
        try:
            address = await listening_address(receiver, serving, "127.0.0.1:0")
            sender = module.sender_from_args(_transport_args("sender", 0, chunk_size), address)
            cpu, wall = time.process_time(), time.perf_counter()
            report = await send_images(sender, _entries(items), SendOptions(want_reply=True), planned=len(items))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            await sender.aclose()
        finally:
            stop.set()
            await serving
    if not report.ok:
        problems = {r.outcome.name: r.problem for r in report.results if not r.ok}
        raise SystemExit(f"benchmark run failed: {len(problems)} images not delivered: {list(problems.items())[:3]}")
    total = sum(sizes)
    return {
        "images": len(sizes),
        "bytes": total,
        "seconds": wall,
        "goodput_mbps": total * 8 / wall / 1e6,
        "images_per_s": len(sizes) / wall,
        "cpu_ms_per_image": cpu * 1000 / len(sizes),
    }


def run_apps_bench(via: str = "snip", large_mb: float = 16.0, small_count: int = 200,
                   small_kb: float = 20.0, chunk_size: int | None = None) -> dict[str, dict[str, float]]:
    """Both phases; returns {"large": figures, "small": figures}."""
    large = asyncio.run(_phase(via, [int(large_mb * 1e6)], chunk_size))
    small = asyncio.run(_phase(via, [int(small_kb * 1e3)] * small_count, chunk_size))
    return {"large": large, "small": small}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.apps_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--via", default="snip", help="transport to measure (default snip)")
    parser.add_argument("--large-mb", type=float, default=16.0, help="size of the one large image (default 16)")
    parser.add_argument("--small-count", type=int, default=200, help="how many small images (default 200)")
    parser.add_argument("--small-kb", type=float, default=20.0, help="size of each small image (default 20)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="snip payload bytes per datagram (default the protocol's 1024; loopback carries 8192 well)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run_apps_bench(args.via, args.large_mb, args.small_count, args.small_kb, args.chunk_size)
    if args.json:
        print(json.dumps({"via": args.via, **figures}, indent=2))
        return 0
    print(f"apps over {args.via}, loopback (sender, receiver, storage and replies in one process)")
    for phase, label in (("large", "one large image"), ("small", "many small images")):
        f: dict[str, Any] = figures[phase]
        print(f"  {label:18} {f['images']:5d} x {f['bytes'] / f['images'] / 1e3:9.1f} kB: "
              f"{f['goodput_mbps']:8.1f} Mbit/s, {f['images_per_s']:8.1f} images/s, "
              f"{f['cpu_ms_per_image']:7.2f} ms CPU per image, {f['seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
