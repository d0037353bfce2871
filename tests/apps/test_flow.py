"""The whole sender -> receiver -> reply flow over the snip transport adapter.

These run against the in-memory STAND-IN for protocol.aio (tests/apps/fake_aio.py), so they check
the apps and the adapter, not the protocol; test_e2e.py repeats the important ones over real
sockets once protocol.aio and netsim.relay exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from apps.cli import CommandError
from tests.apps.conftest import blob_with_signature, image_bytes, run_send, start_receiver


def _files(folder: Path, count: int) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for i in range(count):
        data = image_bytes(i, size=32 + 8 * i)
        (folder / f"img{i:02d}.jpg").write_bytes(data)
        made[f"img{i:02d}.jpg"] = data
    return made


def test_files_and_folder_arrive_with_replies(tmp_path: Path, fake_snip: ModuleType) -> None:
    sent = _files(tmp_path / "src", 6)
    (tmp_path / "src" / "notes.txt").write_text("not an image")

    async def scenario() -> tuple[int, str, str, int, str]:
        receiver = await start_receiver(tmp_path / "out")
        code, out, err = await run_send(receiver.address, str(tmp_path / "src"), "--json")
        status = await receiver.finish()
        return code, out, err, status, receiver.stdout.getvalue()

    code, out, err, status, log = asyncio.run(scenario())
    assert code == 0, err
    assert status == 0
    assert "skipped" in err and "notes.txt" in err  # the folder's non-image is skipped, and said so
    doc = json.loads(out)
    assert doc["totals"]["delivered"] == 6 and doc["totals"]["answered"] == 6
    assert doc["exit_code"] == 0
    for row in doc["images"]:
        data = sent[row["name"]]
        assert row["reply"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["reply"]["name"] == row["name"]  # each reply matched to its own image
        assert Path(row["reply"]["saved"]).read_bytes() == data
        assert row["chunks_sent"] >= row["chunks"]
        assert row["retransmitted"] == row["chunks_sent"] - row["chunks"]
    assert doc["totals"]["bytes"] == sum(len(d) for d in sent.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(sent)
    assert log.count("received ") == 6 and "total: 6 images" in log


def test_twenty_senders_at_once(tmp_path: Path, fake_snip: ModuleType) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for sender in range(20):
        for k in range(3):
            (src / f"s{sender:02d}-{k}.jpg").write_bytes(image_bytes(sender * 10 + k))

    async def scenario() -> tuple[list[int], str]:
        receiver = await start_receiver(tmp_path / "out")
        results = await asyncio.gather(*(
            run_send(receiver.address, *(str(src / f"s{s:02d}-{k}.jpg") for k in range(3)))
            for s in range(20)
        ))
        await receiver.finish()
        return [code for code, _, _ in results], receiver.stdout.getvalue()

    codes, log = asyncio.run(scenario())
    assert codes == [0] * 20
    stored = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert stored == {p.name: p.read_bytes() for p in src.iterdir()}
    assert "total: 60 images" in log


def test_image_above_the_receivers_limit(tmp_path: Path, fake_snip: ModuleType) -> None:
    (tmp_path / "big.jpg").write_bytes(blob_with_signature(1, 300_000))
    (tmp_path / "small.jpg").write_bytes(image_bytes(1))

    async def scenario() -> tuple[int, str, str]:
        receiver = await start_receiver(tmp_path / "out", "--max-size", "200K")
        result = await run_send(receiver.address, str(tmp_path / "big.jpg"), str(tmp_path / "small.jpg"))
        await receiver.finish()
        return result

    code, _, err = asyncio.run(scenario())
    assert code == 1
    assert "big.jpg: too large for the receiver: 300000 bytes, its limit is 204800 bytes" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["small.jpg"]


def test_unreachable_receiver_is_one_clear_error(tmp_path: Path, fake_snip: ModuleType) -> None:
    (tmp_path / "a.jpg").write_bytes(image_bytes(1))
    with pytest.raises(CommandError) as caught:
        asyncio.run(run_send("127.0.0.1:9", str(tmp_path / "a.jpg"), "--connect-timeout", "0.2"))
    assert caught.value.exit_code == 1
    assert "no snip receiver answered at 127.0.0.1:9" in str(caught.value)


@pytest.mark.parametrize("argv", [["missing.jpg"], ["empty.jpg"], ["notes.txt"], []])
def test_bad_input_fails_before_connecting(tmp_path: Path, fake_snip: ModuleType, argv: list[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("empty.jpg").write_bytes(b"")
    Path("notes.txt").write_text("text")
    # No receiver at all: a check that waited for the handshake would time out instead.
    with pytest.raises(CommandError) as caught:
        asyncio.run(run_send("127.0.0.1:9", *argv, "--connect-timeout", "30"))
    assert caught.value.exit_code == 2
    assert str(caught.value) and "\n" not in str(caught.value)


def test_receiver_stopped_mid_transfer(tmp_path: Path, fake_snip: ModuleType,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_snip, "RATE", 1e6)  # 2 MB take 2 s
    (tmp_path / "big.jpg").write_bytes(blob_with_signature(2, 2_000_000))

    async def scenario() -> tuple[int, str]:
        receiver = await start_receiver(tmp_path / "out", "--grace", "0.1")
        sending = asyncio.create_task(run_send(receiver.address, str(tmp_path / "big.jpg")))
        await asyncio.sleep(0.3)
        assert await receiver.finish() == 0
        code, _, err = await sending
        return code, err

    code, err = asyncio.run(scenario())
    assert code == 1
    assert "connection lost" in err
    assert list((tmp_path / "out").iterdir()) == []  # nothing, not even a temporary file


def test_receiver_finishes_transfers_within_the_grace_period(tmp_path: Path, fake_snip: ModuleType,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_snip, "RATE", 2e6)  # 1 MB takes 0.5 s
    (tmp_path / "big.jpg").write_bytes(blob_with_signature(3, 1_000_000))

    async def scenario() -> int:
        receiver = await start_receiver(tmp_path / "out", "--grace", "5")
        sending = asyncio.create_task(run_send(receiver.address, str(tmp_path / "big.jpg")))
        await asyncio.sleep(0.2)
        await receiver.finish()
        code, _, _ = await sending
        return code

    assert asyncio.run(scenario()) == 0
    assert (tmp_path / "out" / "big.jpg").read_bytes() == (tmp_path / "big.jpg").read_bytes()


@pytest.mark.parametrize(
    ("receiver_args", "payload", "expected", "transferred"),
    [
        # Checked once the image is complete: delivered, then refused in the reply.
        (["--verify-image"], b"\xff\xd8\xff" + b"\x00" * 500, "not a valid image", True),
        # Checked when the transfer is announced: refused before any data flows.
        (["--min-free", "1000000T"], None, "not enough disk space", False),
    ],
)
def test_receiver_refusals_reach_the_sender(tmp_path: Path, fake_snip: ModuleType, receiver_args: list[str],
                                            payload: bytes | None, expected: str, transferred: bool) -> None:
    (tmp_path / "x.jpg").write_bytes(payload or image_bytes(4))

    async def scenario() -> tuple[int, str, str]:
        receiver = await start_receiver(tmp_path / "out", *receiver_args)
        code, out, _ = await run_send(receiver.address, str(tmp_path / "x.jpg"), "--json")
        await receiver.finish()
        return code, out, receiver.stdout.getvalue()

    code, out, log = asyncio.run(scenario())
    assert code == 1
    row = json.loads(out)["images"][0]
    assert row["delivered"] is transferred and row["answered"] is False and expected in row["problem"]
    assert list((tmp_path / "out").iterdir()) == []
    assert "0 images" in log and "1 rejected" in log


def test_no_reply_and_reencoding_and_stdin(tmp_path: Path, fake_snip: ModuleType) -> None:
    import io

    from PIL import Image

    from apps.sender.cli import send_command
    from tests.apps.conftest import parse

    big = image_bytes(5, size=300, fmt="png")

    async def scenario() -> tuple[int, dict[str, object]]:
        receiver = await start_receiver(tmp_path / "out")
        args = parse("send", receiver.address, "-", "--name", "from-stdin.png", "--format", "jpeg",
                     "--max-dim", "100", "--quality", "60", "--no-reply", "--json")
        stdout = io.StringIO()
        code = await send_command(args, stdout=stdout, stderr=io.StringIO(), stdin=io.BytesIO(big))
        await receiver.finish()
        return code, json.loads(stdout.getvalue())

    code, doc = asyncio.run(scenario())
    assert code == 0
    row = doc["images"][0]  # type: ignore[index]
    assert row["name"] == "from-stdin.jpg" and row["reply"] is None and row["source_size"] == len(big)
    saved = tmp_path / "out" / "from-stdin.jpg"
    with Image.open(saved) as img:
        assert img.format == "JPEG" and max(img.size) == 100


def test_video_frames_flow_to_the_receiver(tmp_path: Path, fake_snip: ModuleType) -> None:
    from tests.apps.test_sources import make_video

    video = make_video(tmp_path / "cam.avi", frames=12, fps=10)

    async def scenario() -> tuple[int, str]:
        receiver = await start_receiver(tmp_path / "out")
        code, out, _ = await run_send(receiver.address, "--video", str(video), "--frames", "5")
        await receiver.finish()
        return code, out

    code, out = asyncio.run(scenario())
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"cam-00000{i}.jpg" for i in range(1, 6)]
    assert "5/5 delivered" in out


def test_live_mode_drops_late_images_without_failing(tmp_path: Path, fake_snip: ModuleType,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_snip, "RATE", 1e6)
    (tmp_path / "late.jpg").write_bytes(blob_with_signature(6, 500_000))  # needs 0.5 s
    (tmp_path / "quick.jpg").write_bytes(image_bytes(6))

    async def scenario() -> tuple[int, dict[str, object]]:
        receiver = await start_receiver(tmp_path / "out")
        code, out, _ = await run_send(receiver.address, str(tmp_path / "late.jpg"), str(tmp_path / "quick.jpg"),
                                        "--deadline", "0.2", "--json")
        await receiver.finish()
        return code, json.loads(out)

    code, doc = asyncio.run(scenario())
    assert code == 0
    rows = {row["name"]: row for row in doc["images"]}  # type: ignore[attr-defined]
    assert rows["late.jpg"]["expired"] is True and rows["late.jpg"]["delivered"] is False
    assert rows["quick.jpg"]["delivered"] is True
    assert doc["totals"]["expired"] == 1  # type: ignore[index]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["quick.jpg"]


def test_classification_reply_with_a_stand_in_registry(tmp_path: Path, fake_snip: ModuleType,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    calls: list[tuple[tuple[str, ...], int]] = []

    def classify_with(names: list[str], data: bytes, options: object = None) -> dict[str, object]:
        calls.append((tuple(names), len(data)))
        return {"results": [{"classifier": n, "answer": "animated", "confidence": 0.75} for n in names]}

    # STAND-IN for apps.classifier.registry (written by another engineer; same call signature).
    registry = types.ModuleType("apps.classifier.registry")
    registry.classify_with = classify_with  # type: ignore[attr-defined]
    registry.canonical = lambda name: name  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "apps.classifier.registry", registry)
    (tmp_path / "a.jpg").write_bytes(image_bytes(7))

    async def scenario() -> tuple[int, str, str]:
        receiver = await start_receiver(tmp_path / "out", "--classify", "colors,bytes")
        code, out, _ = await run_send(receiver.address, str(tmp_path / "a.jpg"))
        await receiver.finish()
        return code, out, receiver.stdout.getvalue()

    code, out, log = asyncio.run(scenario())
    assert code == 0
    assert calls == [(("colors", "bytes"), len(image_bytes(7)))]
    assert "colors: animated (75%); bytes: animated (75%)" in out
    assert "[colors: animated (75%); bytes: animated (75%)]" in log


def test_classify_without_the_registry_is_a_clear_error(tmp_path: Path, fake_snip: ModuleType,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apps.classifier.registry", None)  # makes the import fail
    with pytest.raises(CommandError, match="--classify needs the classifier registry"):
        asyncio.run(start_receiver(tmp_path / "out", "--classify", "animal"))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_classify_none_stores_without_classifying(tmp_path: Path, fake_snip: ModuleType,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The registry is made unimportable: "none" must not need it (as with `snip bench --classify none`).
    monkeypatch.setitem(sys.modules, "apps.classifier.registry", None)
    (tmp_path / "a.jpg").write_bytes(image_bytes(9))

    async def scenario() -> int:
        receiver = await start_receiver(tmp_path / "out", "--classify", "none")
        code, _, _ = await run_send(receiver.address, str(tmp_path / "a.jpg"))
        await receiver.finish()
        return code

    assert asyncio.run(scenario()) == 0
    assert (tmp_path / "out" / "a.jpg").read_bytes() == image_bytes(9)
    with pytest.raises(CommandError, match="--classify none cannot be combined"):
        asyncio.run(start_receiver(tmp_path / "out2", "--classify", "none,animal"))


def test_receiver_json_lines(tmp_path: Path, fake_snip: ModuleType) -> None:
    (tmp_path / "a.jpg").write_bytes(image_bytes(8))

    async def scenario() -> str:
        receiver = await start_receiver(tmp_path / "out", "--json")
        await run_send(receiver.address, str(tmp_path / "a.jpg"))
        await receiver.finish()
        return receiver.stdout.getvalue()

    lines = [json.loads(line) for line in asyncio.run(scenario()).splitlines()]
    assert lines[0]["name"] == "a.jpg" and lines[0]["sha256"] == hashlib.sha256(image_bytes(8)).hexdigest()
    assert lines[0]["stats"]["chunks"] >= 1 and lines[0]["peer"].startswith("127.0.0.1:")
    assert lines[-1]["totals"]["images"] == 1


def test_progress_view_draws_and_clears_bars() -> None:
    import io

    from rich.console import Console

    from apps.sender.progress import MAX_ROWS, ProgressView
    from apps.transport import Progress

    screen = io.StringIO()
    with ProgressView(Console(file=screen, force_terminal=True, width=100), total_images=12) as view:
        for index in range(12):
            view(Progress(f"img{index}.jpg", index, 10, 100))
        shown = [t for t in view._progress.tasks if t.visible]
        assert len(shown) == MAX_ROWS + 1  # the bars that fit, plus the overall one
        for index in range(12):
            view(Progress(f"img{index}.jpg", index, 100, 100))
        overall = view._progress.tasks[0]
        assert overall.completed == 12 and len(view._progress.tasks) == 1
    assert "img0.jpg" in screen.getvalue()
