"""The sending loop the TCP and email senders share (apps/transports/windowed.py), driven by a
sender whose deliveries are plain asyncio events, so that the loop's own rules are what is tested:
the window bound, the order of outcomes, and a fatal error that ends the run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from apps.transport import OutgoingImage, ProgressCallback, SendOutcome, TransportError
from apps.transports.windowed import WindowedSender


class _Sender(WindowedSender):
    def __init__(self, max_inflight: int, *, fail_prepare: bool = False, fatal_at: int = -1) -> None:
        super().__init__(max_inflight)
        self.fail_prepare = fail_prepare
        self.fatal_at = fatal_at
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.inflight = 0
        self.most_inflight = 0
        self.release: dict[int, asyncio.Event] = {}

    async def _prepare(self, want_reply: bool) -> None:
        if self.fail_prepare:
            raise TransportError("no server")

    async def _deliver_one(
        self,
        index: int,
        image: OutgoingImage,
        want_reply: bool,
        submitted: float,
        on_progress: ProgressCallback | None,
    ) -> SendOutcome:
        self.started.append(index)
        self.inflight += 1
        self.most_inflight = max(self.most_inflight, self.inflight)
        gate = self.release.setdefault(index, asyncio.Event())
        try:
            await gate.wait()
            if index == self.fatal_at:
                raise TransportError(f"link lost at image {index}")
            return SendOutcome(image.name, index, len(image.data), True)
        except asyncio.CancelledError:
            self.cancelled.append(index)
            raise
        finally:
            self.inflight -= 1


async def _images(count: int) -> AsyncIterator[OutgoingImage]:
    for i in range(count):
        yield OutgoingImage(f"img{i}.png", "image/png", bytes([i]) * 10)


async def _release_in(sender: _Sender, order: list[int]) -> None:
    for index in order:
        while index not in sender.release:
            await asyncio.sleep(0)
        sender.release[index].set()
        await asyncio.sleep(0)


def test_the_window_bounds_deliveries_and_outcomes_keep_the_source_order() -> None:
    async def main() -> tuple[list[SendOutcome], _Sender]:
        sender = _Sender(max_inflight=2)
        releaser = asyncio.create_task(_release_in(sender, [1, 0, 3, 2, 4]))
        outcomes = await sender.send_all(_images(5), want_reply=False)
        await releaser
        return outcomes, sender

    outcomes, sender = asyncio.run(main())
    assert sender.most_inflight == 2
    assert [o.index for o in outcomes] == [0, 1, 2, 3, 4]
    assert [o.name for o in outcomes] == [f"img{i}.png" for i in range(5)]
    assert all(o.delivered for o in outcomes)


def test_a_failed_prepare_fails_the_run_before_any_image() -> None:
    sender = _Sender(max_inflight=2, fail_prepare=True)
    with pytest.raises(TransportError, match="no server"):
        asyncio.run(sender.send_all(_images(3), want_reply=False))
    assert sender.started == []


def test_a_fatal_error_stops_new_images_and_cancels_those_in_flight() -> None:
    async def main(sender: _Sender) -> None:
        releaser = asyncio.create_task(_release_in(sender, [0]))
        try:
            await sender.send_all(_images(6), want_reply=False)
        finally:
            releaser.cancel()

    sender = _Sender(max_inflight=2, fatal_at=0)
    with pytest.raises(TransportError, match="link lost at image 0"):
        asyncio.run(main(sender))
    # Image 0 failed while image 1 was in flight: the slot it freed goes to no later image, and
    # image 1 is cancelled rather than left running.
    assert sender.started == [0, 1]
    assert sender.cancelled == [1]
    assert sender.inflight == 0
