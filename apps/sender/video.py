"""Camera and video sources: frames captured with OpenCV, encoded, and handed to the sender.

Capture runs on a worker thread (VideoCapture blocks). Normally every kept frame is sent, with
back-pressure on the capture. In live mode the capture never waits: when the sender has no room,
older frames are skipped in favour of the newest, and file videos are played in real time as a
camera would deliver them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.media.encode import EncodeError, EncodeOptions, encode_frame
from apps.sender.sources import SourceError, SourceItem

# Frames captured ahead of the sender when not in live mode.
QUEUE_DEPTH = 4


@dataclass(frozen=True)
class VideoOptions:
    source: str  # a camera index or device path (camera=True), or a video file or URL
    camera: bool = False
    fps: float | None = None  # keep at most this many frames per second (of video time)
    frames: int | None = None  # stop after this many frames
    duration: float | None = None  # stop after this many seconds (of video time)
    live: bool = False
    encode: EncodeOptions = field(default_factory=EncodeOptions)

    def __post_init__(self) -> None:
        for option, value in (("--fps", self.fps), ("--frames", self.frames), ("--duration", self.duration)):
            if value is not None and value <= 0:
                raise SourceError(f"{option} must be positive")

    @property
    def label(self) -> str:
        return f"camera {self.source}" if self.camera else self.source

    @property
    def stem(self) -> str:
        if self.camera:
            return "camera" + "".join(ch for ch in self.source if ch.isalnum())
        if "://" in self.source:
            return "stream"
        return Path(self.source).stem or "video"


def open_capture(options: VideoOptions) -> Any:
    """Open the camera or video; SourceError with the reason when it cannot be opened."""
    import cv2

    if not options.camera and "://" not in options.source and not Path(options.source).is_file():
        raise SourceError(f"{options.source}: no such video file")
    target: int | str = int(options.source) if options.camera and options.source.isdigit() else options.source
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"{options.label}: cannot open (OpenCV could not read it)")
    return capture


_END = object()


class VideoFrames:
    """Async iterator over encoded frames from one capture."""

    def __init__(self, options: VideoOptions, capture: Any) -> None:
        self.options = options
        self._capture = capture
        self._stop = threading.Event()
        self._room = threading.Semaphore(QUEUE_DEPTH)
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.frames_read = 0
        self.frames_kept = 0
        self.skipped = 0  # live mode: kept frames replaced by newer ones before they were sent

    def stop(self) -> None:
        """End the stream after the frame in hand (a user's Ctrl-C, for instance)."""
        self._stop.set()

    async def items(self) -> AsyncIterator[SourceItem]:
        self._loop = asyncio.get_running_loop()
        worker = threading.Thread(target=self._produce, name="snip-capture", daemon=True)
        worker.start()
        try:
            while True:
                entry = await self._queue.get()
                if not self.options.live:
                    self._room.release()
                if entry is _END:
                    return
                if isinstance(entry, BaseException):
                    raise entry
                if isinstance(entry, SourceItem):
                    yield entry
        finally:
            self._stop.set()
            self._room.release()  # wake a capture thread waiting for room
            await asyncio.to_thread(worker.join, 5.0)

    def _put_newest(self, entry: object) -> None:
        """Live mode, on the loop: a new frame replaces any still waiting (they are stale now)."""
        if isinstance(entry, SourceItem):
            while not self._queue.empty():
                self._queue.get_nowait()
                self.skipped += 1
        self._queue.put_nowait(entry)

    def _deliver(self, entry: object) -> bool:
        """Hand an entry to the event loop; False when the stream was stopped meanwhile."""
        live = self.options.live
        if not live and entry is not _END:
            while not self._room.acquire(timeout=0.1):
                if self._stop.is_set():
                    return False
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(self._put_newest if live else self._queue.put_nowait, entry)
        except RuntimeError:  # the loop closed in between: nobody is listening any more
            return False
        return not self._stop.is_set()

    def _produce(self) -> None:
        import cv2

        opts = self.options
        capture = self._capture
        native_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        start = time.monotonic()
        next_keep_ms = 0.0
        period_ms = 1000.0 / opts.fps if opts.fps else 0.0
        try:
            while not self._stop.is_set():
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                self.frames_read += 1
                if opts.camera:
                    at_ms = (time.monotonic() - start) * 1000.0
                elif native_fps > 0:
                    at_ms = (self.frames_read - 1) * 1000.0 / native_fps
                else:
                    at_ms = float(capture.get(cv2.CAP_PROP_POS_MSEC))
                if opts.duration is not None and at_ms >= opts.duration * 1000.0:
                    break
                if period_ms:
                    if at_ms + 1e-6 < next_keep_ms:
                        continue
                    next_keep_ms += period_ms
                    if next_keep_ms <= at_ms:  # fell behind (slow camera): restart the grid here
                        next_keep_ms = at_ms + period_ms
                if opts.live and not opts.camera:
                    # Play a file at its own pace, as a camera would deliver it.
                    delay = start + at_ms / 1000.0 - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                try:
                    encoded = encode_frame(frame, opts.encode)
                except EncodeError as exc:
                    self._deliver(SourceError(f"{opts.label}: {exc}"))
                    return
                self.frames_kept += 1
                name = f"{opts.stem}-{self.frames_kept:06d}{encoded.format.extension}"
                origin = f"{opts.label} frame {self.frames_read}"
                item = SourceItem(name, encoded.data, encoded.format.content_type, origin)
                if not self._deliver(item):
                    break
                if opts.frames is not None and self.frames_kept >= opts.frames:
                    break
        except Exception as exc:  # an OpenCV failure mid-stream ends it with a message, not a hang
            self._deliver(SourceError(f"{opts.label}: capture failed ({type(exc).__name__}: {exc})"))
        finally:
            capture.release()
            self._deliver(_END)
