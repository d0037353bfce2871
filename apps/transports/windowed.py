"""The sending loop the TCP and email baselines share: images go out concurrently, at most a window
of them at a time, in the order the source yields them; the outcomes come back in that order."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from apps.transport import OutgoingImage, ProgressCallback, SendOutcome, TransportError


class WindowedSender(ABC):
    """A subclass opens what it needs in ``_prepare`` and sends one image in ``_deliver_one``.

    A ``TransportError`` from either ends the whole run (no server, bad credentials, a lost link
    that retries could not get past); any other failure belongs to its image's outcome.
    """

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self._fatal: TransportError | None = None

    @abstractmethod
    async def _prepare(self, want_reply: bool) -> None:
        """Before the first image: fail here, and the run fails before anything is sent."""

    @abstractmethod
    async def _deliver_one(
        self,
        index: int,
        image: OutgoingImage,
        want_reply: bool,
        submitted: float,
        on_progress: ProgressCallback | None,
    ) -> SendOutcome: ...

    async def send_all(
        self,
        images: AsyncIterator[OutgoingImage],
        *,
        want_reply: bool,
        on_progress: ProgressCallback | None = None,
    ) -> list[SendOutcome]:
        self._fatal = None
        await self._prepare(want_reply)
        loop = asyncio.get_running_loop()
        window = asyncio.Semaphore(self.max_inflight)
        tasks: list[asyncio.Task[SendOutcome]] = []
        try:
            index = 0
            async for image in images:
                # An image's clock starts when the source hands it over, not when the window opens.
                submitted = loop.time()
                await window.acquire()
                if self._fatal is not None:
                    raise self._fatal
                tasks.append(
                    asyncio.create_task(self._deliver(index, image, want_reply, submitted, on_progress, window))
                )
                index += 1
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(
        self,
        index: int,
        image: OutgoingImage,
        want_reply: bool,
        submitted: float,
        on_progress: ProgressCallback | None,
        window: asyncio.Semaphore,
    ) -> SendOutcome:
        try:
            return await self._deliver_one(index, image, want_reply, submitted, on_progress)
        except TransportError as exc:
            self._fatal = exc
            raise
        finally:
            window.release()
