"""Shared pieces: a real handler, image sources, a receiver running in the background, the mail server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, TypeVar

import pytest

from apps.transport import JSON, OutgoingImage, ReceivedImage, ReceiverTransport

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    """Run a coroutine to completion with an upper bound, so a hang fails instead of stalling the suite."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


class DigestHandler:
    """A real handler: answers with the image's SHA-256 and size, and remembers what it saw."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.seen: list[ReceivedImage] = []
        self.fail_on = fail_on

    async def __call__(self, image: ReceivedImage) -> JSON | None:
        self.seen.append(image)
        if image.name == self.fail_on:
            raise RuntimeError("classifier exploded")
        return {"sha256": hashlib.sha256(image.data).hexdigest(), "size": len(image.data), "name": image.name}


def make_images(count: int, size: int = 4096, *, prefix: str = "img", seed: int = 0) -> list[OutgoingImage]:
    """Distinct, deterministic image bytes (not random: tests stay reproducible)."""
    images = []
    for i in range(count):
        block = hashlib.sha256(f"{seed}-{i}".encode()).digest()
        data = (block * (size // len(block) + 1))[:size]
        images.append(OutgoingImage(f"{prefix}{i}.png", "image/png", data))
    return images


async def aiter_images(images: list[OutgoingImage]) -> AsyncIterator[OutgoingImage]:
    for image in images:
        yield image


@contextlib.asynccontextmanager
async def serving(receiver: ReceiverTransport, handler: Any) -> AsyncIterator[asyncio.Event]:
    """Run ``receiver.serve`` in the background until the block ends; its start-up errors raise here."""
    stop = asyncio.Event()
    task = asyncio.create_task(receiver.serve(handler, stop))
    listening = asyncio.create_task(receiver.wait_listening())  # type: ignore[attr-defined]
    done, _pending = await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        listening.cancel()
        task.result()
        raise AssertionError("serve() returned before listening")
    try:
        yield stop
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MAIL_LIMIT = 4 << 20  # the test server's largest message
_PAIRS = itertools.count()


@pytest.fixture(scope="session")
def mail_server() -> Iterator[Any]:
    """One embedded mail server for the whole run, with a pool of accounts (a fresh pair per test)."""
    pytest.importorskip("aiosmtpd", reason="the mail server needs aiosmtpd (pip install 'snip[mail]')")
    from apps.mail.server import EmbeddedMailServer, dovecot_problem

    problem = dovecot_problem()
    if problem is not None:
        pytest.skip(problem)
    users = [f"{role}{i}@snip.test" for i in range(40) for role in ("sender", "receiver")]
    with EmbeddedMailServer(users=users, max_message_bytes=MAIL_LIMIT) as info:
        yield info


@pytest.fixture
def mail_pair(mail_server: Any) -> tuple[str, str]:
    """A (sender, receiver) pair of addresses no other test uses, so both mailboxes start empty."""
    i = next(_PAIRS)
    return f"sender{i}@snip.test", f"receiver{i}@snip.test"


def random_bytes(size: int) -> bytes:
    return os.urandom(size)
