"""The receiver app answers an image that comes again (a sender resending after an outage) with the
first copy's receipt instead of storing it twice; everything else is still stored as it comes."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from apps.receiver.app import REMEMBERED_IMAGES, ReceiverApp, ReceiverOptions
from apps.receiver.storage import ImageStore
from apps.transport import JSON, ReceivedImage
from tests.apps.conftest import image_bytes


def _image(data: bytes, name: str = "cam.jpg", peer: str = "10.0.0.7:40001", transfer: str = "1/0") -> ReceivedImage:
    return ReceivedImage(name, "image/jpeg", data, peer, transfer)


def _app(tmp_path: Path, **options: float) -> ReceiverApp:
    return ReceiverApp(ImageStore(tmp_path / "out"), ReceiverOptions(**options),  # type: ignore[arg-type]
                       log=lambda line: None)


def _twice(app: ReceiverApp, data: bytes) -> list[JSON]:
    """The receipts of the same image handed over twice, one after the other."""

    async def scenario() -> list[JSON]:
        return [await app.handle(_image(data)) for _ in range(2)]

    return asyncio.run(scenario())


def test_the_same_bytes_from_the_same_host_are_stored_once_and_answered_alike(tmp_path: Path) -> None:
    app = _app(tmp_path)
    data = image_bytes(3)

    async def scenario() -> tuple[JSON, JSON]:
        first = await app.handle(_image(data))
        # A new session: another source port and transfer id, same host, name and bytes.
        again = await app.handle(_image(data, peer="10.0.0.7:40999", transfer="2/0"))
        return first, again

    first, again = asyncio.run(scenario())
    assert "repeat" not in first and again == {**first, "repeat": True}
    assert [p.read_bytes() for p in (tmp_path / "out").iterdir()] == [data]
    assert (app.totals.images, app.totals.repeats) == (1, 1)


def test_other_hosts_names_or_bytes_are_new_images(tmp_path: Path) -> None:
    app = _app(tmp_path)
    data = image_bytes(4)

    async def scenario() -> list[JSON]:
        return [
            await app.handle(_image(data)),
            await app.handle(_image(data, peer="10.0.0.8:40001")),  # another host
            await app.handle(_image(data, name="cam2.jpg")),  # another name
            await app.handle(_image(image_bytes(5))),  # other bytes
            await app.handle(_image(data, peer="[2001:db8::1]:40001")),
            await app.handle(_image(data, peer="[2001:db8::1]:40002")),  # same v6 host: a repeat
        ]

    receipts = asyncio.run(scenario())
    assert [r.get("repeat", False) for r in receipts] == [False] * 5 + [True]
    assert len(list((tmp_path / "out").iterdir())) == 5
    assert (app.totals.images, app.totals.repeats) == (5, 1)


def test_a_window_of_zero_stores_every_copy(tmp_path: Path) -> None:
    app = _app(tmp_path, repeat_window=0)
    receipts = _twice(app, image_bytes(6))
    assert not any(r.get("repeat") for r in receipts)
    assert receipts[0]["saved"] != receipts[1]["saved"]
    assert len(list((tmp_path / "out").iterdir())) == 2


def test_a_copy_after_the_window_is_stored_again(tmp_path: Path) -> None:
    app = _app(tmp_path, repeat_window=0.05)
    data = image_bytes(7)

    async def scenario() -> list[JSON]:
        first = await app.handle(_image(data))
        await asyncio.sleep(0.1)
        return [first, await app.handle(_image(data))]

    receipts = asyncio.run(scenario())
    assert not any(r.get("repeat") for r in receipts)
    assert len(list((tmp_path / "out").iterdir())) == 2


def test_a_copy_arriving_while_the_first_is_classified_waits_for_its_receipt(tmp_path: Path) -> None:
    """Both copies complete at once (two sessions): the second must not be stored or classified."""
    release = threading.Event()
    calls = []

    def classify(data: bytes) -> JSON:
        calls.append(len(data))
        release.wait(10)
        # STAND-IN classifier: it blocks until released, so the second copy lands mid-classification;
        # a real model cannot be held at that point on demand.
        return {"stub": {"answer": "x"}}

    app = ReceiverApp(ImageStore(tmp_path / "out"), ReceiverOptions(), classify=classify, log=lambda line: None)
    data = image_bytes(8)

    async def scenario() -> tuple[JSON, JSON]:
        first = asyncio.create_task(app.handle(_image(data)))
        while not calls:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(app.handle(_image(data, transfer="2/0")))
        await asyncio.sleep(0.05)
        assert not second.done()
        release.set()
        return await first, await second

    first, second = asyncio.run(scenario())
    assert calls == [len(data)]
    assert second == {**first, "repeat": True} and first["classification"] == {"stub": {"answer": "x"}}
    assert len(list((tmp_path / "out").iterdir())) == 1


def test_a_refused_copy_is_judged_again(tmp_path: Path) -> None:
    """A refusal is not remembered: the next copy is checked afresh (here: refused again)."""
    app = _app(tmp_path, max_size=10)
    receipts = _twice(app, image_bytes(9))
    assert all("error" in r and "repeat" not in r for r in receipts)
    assert app.totals.rejected == 2 and app.totals.repeats == 0


def test_what_it_remembers_is_bounded(tmp_path: Path) -> None:
    app = _app(tmp_path)
    data = image_bytes(10)

    async def scenario() -> JSON:
        await app.handle(_image(data, name="first.jpg"))
        for i in range(REMEMBERED_IMAGES):
            await app.handle(_image(b"x" * (i + 1), name=f"n{i}.bin"))
        return await app.handle(_image(data, name="first.jpg"))

    again = asyncio.run(scenario())
    assert "repeat" not in again  # forgotten: the oldest entry made room
    assert len(app._kept) == REMEMBERED_IMAGES
