"""Sender sources: files and folders with globs, stdin, and camera/video frames."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from apps.media.encode import EncodeOptions
from apps.media.formats import JPEG, PNG, sniff
from apps.sender.app import fitted_name
from apps.sender.sources import SourceError, check_file, plan_files, read_planned, read_stdin, walk_folder
from apps.sender.video import VideoFrames, VideoOptions, open_capture
from tests.apps.conftest import image_bytes


def _tree(root: Path) -> None:
    files = {
        "a.jpg": image_bytes(1),
        "B.JPG": image_bytes(2),
        "sub/c.png": image_bytes(3, fmt="png"),
        "sub/deeper/d.jpg": image_bytes(4),
        "sub/skip-me.jpg": image_bytes(5),
        ".hidden.jpg": image_bytes(6),
        ".git/e.jpg": image_bytes(7),
        "readme.txt": b"hello",
        "empty.jpg": b"",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_walk_folder_recurses_sorted_skips_hidden_and_filters(tmp_path: Path) -> None:
    _tree(tmp_path)
    rel = lambda paths: [p.relative_to(tmp_path).as_posix() for p in paths]  # noqa: E731
    assert rel(walk_folder(tmp_path, [], [])) == [
        "B.JPG", "a.jpg", "empty.jpg", "readme.txt", "sub/c.png", "sub/skip-me.jpg", "sub/deeper/d.jpg"]
    assert rel(walk_folder(tmp_path, ["*.jpg"], ["skip-*", "empty*"])) == ["B.JPG", "a.jpg", "sub/deeper/d.jpg"]
    assert rel(walk_folder(tmp_path, ["sub/*"], [])) == ["sub/c.png", "sub/skip-me.jpg", "sub/deeper/d.jpg"]


def test_plan_files_skips_bad_files_in_folders_with_warnings(tmp_path: Path) -> None:
    _tree(tmp_path)
    warnings: list[str] = []
    planned = plan_files([str(tmp_path)], warn=warnings.append)
    assert [p.name for p in planned] == ["B.JPG", "a.jpg", "c.png", "skip-me.jpg", "d.jpg"]
    assert [p.format for p in planned] == [JPEG, JPEG, PNG, JPEG, JPEG]
    assert any("empty.jpg" in w and "0 bytes" in w for w in warnings)
    assert any("readme.txt" in w and "not an image" in w for w in warnings)


def test_plan_files_dedupes_and_keeps_order(tmp_path: Path) -> None:
    _tree(tmp_path)
    planned = plan_files([str(tmp_path / "a.jpg"), str(tmp_path / "sub"), str(tmp_path / "a.jpg")])
    assert [p.name for p in planned] == ["a.jpg", "c.png", "skip-me.jpg", "d.jpg"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jpg", None, "no such file"),
        ("empty.jpg", b"", r"empty file \(0 bytes\)"),
        ("notes.txt", b"just text", "not an image"),
        ("fake.jpg", b"GIF8 but not quite", "not an image"),
    ],
)
def test_named_files_must_pass_every_check(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        plan_files([str(path)])


def test_any_file_lets_non_images_through(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"just text")
    planned = check_file(path, allow_any=True)
    assert planned.format is None and planned.content_type == "text/plain"
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(SourceError, match=r"0 bytes\), not an image; --any-file sends it anyway"):
        check_file(tmp_path / "e.txt", allow_any=False)
    empty = check_file(tmp_path / "e.txt", allow_any=True)  # an empty object is a valid one
    assert (empty.size, empty.format) == (0, None)
    assert read_planned(empty).data == b""
    path.write_bytes(b"")  # a file planned with content that empties before its turn is an error
    with pytest.raises(SourceError, match="became empty"):
        read_planned(planned)


def test_stdin() -> None:
    data = image_bytes(9, fmt="png")
    item = read_stdin(io.BytesIO(data), name=None, allow_any=False)
    assert (item.name, item.content_type, item.data) == ("stdin.png", "image/png", data)
    assert read_stdin(io.BytesIO(data), name="x.png", allow_any=False).name == "x.png"
    with pytest.raises(SourceError, match="0 bytes"):
        read_stdin(io.BytesIO(b""), name=None, allow_any=False)
    with pytest.raises(SourceError, match="not an image"):
        read_stdin(io.BytesIO(b"text"), name=None, allow_any=False)
    assert read_stdin(io.BytesIO(b"text"), name="t.txt", allow_any=True).content_type == "text/plain"
    assert read_stdin(io.BytesIO(b""), name=None, allow_any=True).data == b""


def make_video(path: Path, frames: int = 30, fps: float = 10.0, size: tuple[int, int] = (96, 64)) -> Path:
    """An MJPG .avi whose frame i has its left i*3 columns red (so frames can be told apart)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        frame[:, : i * 3] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    return path


async def _collect(frames: VideoFrames) -> list[bytes]:
    return [item.data async for item in frames.items()]


def _red_columns(data: bytes) -> int:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return int((img[img.shape[0] // 2, :, 2] > 128).sum())


def test_video_frames_all_subsampled_and_limited(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.avi", frames=30, fps=10)
    every = VideoOptions(str(video))
    data = asyncio.run(_collect(VideoFrames(every, open_capture(every))))
    assert len(data) == 30 and all(sniff(d) is JPEG for d in data)
    assert [_red_columns(d) // 3 for d in data[:5]] == [0, 1, 2, 3, 4]

    # 10 fps video sampled at 2 fps: every 5th frame.
    sampled = VideoOptions(str(video), fps=2, encode=EncodeOptions(format="png"))
    data = asyncio.run(_collect(VideoFrames(sampled, open_capture(sampled))))
    assert len(data) == 6 and all(sniff(d) is PNG for d in data)
    assert [round(_red_columns(d) / 3) for d in data] == [0, 5, 10, 15, 20, 25]

    limited = VideoOptions(str(video), frames=4)
    assert len(asyncio.run(_collect(VideoFrames(limited, open_capture(limited))))) == 4
    short = VideoOptions(str(video), duration=1.25)  # frames at 0.0 .. 1.2 s
    assert len(asyncio.run(_collect(VideoFrames(short, open_capture(short))))) == 13


def test_video_frames_names_and_origins(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.avi", frames=3)
    options = VideoOptions(str(video))

    async def names() -> list[tuple[str, str]]:
        return [(item.name, item.origin) async for item in VideoFrames(options, open_capture(options)).items()]

    assert asyncio.run(names()) == [
        ("clip-000001.jpg", f"{video} frame 1"), ("clip-000002.jpg", f"{video} frame 2"),
        ("clip-000003.jpg", f"{video} frame 3")]


def test_live_mode_keeps_only_the_newest_frame_for_a_slow_consumer(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.avi", frames=20, fps=50)  # 0.4 s played in real time
    options = VideoOptions(str(video), live=True)
    frames = VideoFrames(options, open_capture(options))

    async def slow() -> list[int]:
        seen = []
        async for item in frames.items():
            seen.append(round(_red_columns(item.data) / 3))
            await asyncio.sleep(0.1)  # a sender with no room for 5 frames in a row
        return seen

    seen = asyncio.run(slow())
    assert frames.skipped > 0
    assert len(seen) + frames.skipped == 20
    assert seen == sorted(seen) and seen[-1] == 19  # in order, and the last frame is the newest


def test_stopping_a_stream_ends_it(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.avi", frames=30)
    options = VideoOptions(str(video))
    frames = VideoFrames(options, open_capture(options))

    async def take_two() -> int:
        count = 0
        async for _ in frames.items():
            count += 1
            if count == 2:
                frames.stop()
        return count

    assert asyncio.run(take_two()) <= 2 + 4  # at most what was already queued


def test_unopenable_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such video file"):
        open_capture(VideoOptions(str(tmp_path / "none.avi")))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot open"):
        open_capture(VideoOptions(str(junk)))
    with pytest.raises(SourceError, match="--fps must be positive"):
        VideoOptions(str(junk), fps=0)


def test_names_longer_than_a_snip_name_are_cut_keeping_the_extension() -> None:
    """Spec 5.5: a name is at most 255 bytes of UTF-8. A longer one (from --name) made the session's
    send_object fail, reported as "connection lost"; it is cut on a character boundary instead."""
    assert fitted_name("cat.jpg") == "cat.jpg"
    long_ascii = fitted_name("a" * 300 + ".jpg")
    assert long_ascii == "a" * 251 + ".jpg" and len(long_ascii.encode()) == 255
    wide = fitted_name("日" * 100 + ".png")  # 3 bytes each: 83 fit beside ".png"
    assert wide == "日" * 83 + ".png" and len(wide.encode()) == 253
    assert fitted_name("é" * 200) == "é" * 127  # no extension: the name alone, whole characters
    assert len(fitted_name("x." + "y" * 300).encode()) == 255  # an "extension" that long is not kept
