"""Shared helpers for the app tests: parsers, sample files, and a receiver running in-process."""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from apps.media.formats import JPEG, PNG
from apps.media.samples import encode_rgb
from tests.apps import fake_aio


def parse(*argv: str) -> argparse.Namespace:
    """Parse `snip send|receive ...` with only the apps' own subcommands registered."""
    from apps.receiver import cli as receiver_cli
    from apps.sender import cli as sender_cli

    parser = argparse.ArgumentParser(prog="snip")
    sub = parser.add_subparsers(dest="command")
    sender_cli.register(sub)
    receiver_cli.register(sub)
    return parser.parse_args(list(argv))


@pytest.fixture
def fake_snip(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Route the snip transport to the in-memory STAND-IN for protocol.aio (see fake_aio.py)."""
    fake_aio.SERVERS.clear()
    monkeypatch.setattr(fake_aio, "RATE", 200e6)
    monkeypatch.setitem(sys.modules, "protocol.aio", fake_aio)
    yield fake_aio
    fake_aio.SERVERS.clear()


def real_aio_available() -> bool:
    try:
        import protocol.aio  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def image_bytes(seed: int, size: int = 64, fmt: str = "jpeg") -> bytes:
    """A small real image (noise), decodable, deterministic."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return encode_rgb(rgb, JPEG if fmt == "jpeg" else PNG, 80)


def blob_with_signature(seed: int, size: int) -> bytes:
    """``size`` bytes starting with a JPEG signature: passes the sender's check, cheap to make."""
    body = np.random.default_rng(seed).integers(0, 256, size=max(0, size - 4), dtype=np.uint8).tobytes()
    return (b"\xff\xd8\xff\xe0" + body)[:size]


@dataclass
class RunningReceiver:
    task: asyncio.Task[int]
    stop: asyncio.Event
    address: str
    out: Path
    stdout: io.StringIO
    stderr: io.StringIO

    async def finish(self) -> int:
        self.stop.set()
        return await asyncio.wait_for(self.task, 30)


async def start_receiver(out: Path, *extra: str, port: int | None = None) -> RunningReceiver:
    """Run `snip receive` as a task of the current loop and wait until it listens."""
    from apps.receiver.cli import receive_command

    port = free_udp_port() if port is None else port
    args = parse("receive", "--listen", f"127.0.0.1:{port}", "--out", str(out), *extra)
    stop = asyncio.Event()
    stdout, stderr = io.StringIO(), io.StringIO()
    task = asyncio.create_task(receive_command(args, stop=stop, stdout=stdout, stderr=stderr))
    for _ in range(400):
        if "listening on" in stderr.getvalue():
            break
        if task.done():
            task.result()  # raises what went wrong
            raise AssertionError(f"receiver ended early: {stderr.getvalue()}")
        await asyncio.sleep(0.01)
    else:
        raise AssertionError(f"receiver did not start: {stderr.getvalue()}")
    return RunningReceiver(task, stop, f"127.0.0.1:{port}", out, stdout, stderr)


async def run_send(*argv: str) -> tuple[int, str, str]:
    """Run `snip send ...` in the current loop; returns (exit code, stdout, stderr)."""
    from apps.sender.cli import send_command

    stdout, stderr = io.StringIO(), io.StringIO()
    code = await send_command(parse("send", *argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()
