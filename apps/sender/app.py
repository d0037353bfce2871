"""One send run: source entries -> (re-encoded) images -> a transport -> one result per image.

Independent of the transport and of the terminal: the CLI (and the demo) builds the sources, the
transport and the display around ``send_images``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field

from apps.media.encode import EncodeError, EncodeOptions, reencode, renamed
from apps.sender.sources import PlannedFile, SourceError, SourceItem, read_planned
from apps.sender.video import VideoFrames
from apps.transport import JSON, OutgoingImage, ProgressCallback, SenderTransport, SendOutcome
from protocol.codec import utf8_cut
from protocol.constants import MAX_NAME_LEN

_MAX_KEPT_EXTENSION = 16


def fitted_name(name: str) -> str:
    """``name`` cut to the 255 bytes of UTF-8 a snip object name may take, on a character boundary,
    keeping its extension (a name given with --name, or a path's, can be longer)."""
    if len(name.encode()) <= MAX_NAME_LEN:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = f".{extension}" if dot and stem and len(extension.encode()) < _MAX_KEPT_EXTENSION else ""
    return utf8_cut(stem if suffix else name, MAX_NAME_LEN - len(suffix.encode())) + suffix


@dataclass(frozen=True)
class LocalFailure:
    """An image that never reached the transport (unreadable, or could not be re-encoded)."""

    name: str
    origin: str
    error: str


Entry = SourceItem | LocalFailure


@dataclass(frozen=True)
class SendOptions:
    want_reply: bool = True
    deadline: float | None = None  # live mode: seconds an image stays worth delivering
    encode: EncodeOptions = field(default_factory=EncodeOptions)

    @property
    def live(self) -> bool:
        return self.deadline is not None


@dataclass(frozen=True)
class ImageResult:
    outcome: SendOutcome
    origin: str
    source_size: int  # bytes before re-encoding
    want_reply: bool
    live: bool

    @property
    def answered(self) -> bool:
        """A reply came back and it is not a refusal."""
        reply = self.outcome.reply
        return reply is not None and "error" not in reply

    @property
    def expired(self) -> bool:
        """Live mode: dropped because a newer frame was worth more (expected, not a failure)."""
        return self.live and not self.outcome.delivered and bool(self.outcome.stats.get("expired"))

    @property
    def ok(self) -> bool:
        if self.expired:
            return True
        return self.outcome.delivered and (self.answered or not self.want_reply)

    @property
    def problem(self) -> str | None:
        """Why this image is not ok (or was dropped), in a few words; None when all went well."""
        if self.expired:
            return "dropped: deadline passed"
        if not self.outcome.delivered:
            return self.outcome.error or "not delivered"
        if not self.want_reply:
            return None
        reply = self.outcome.reply
        if reply is None:
            return self.outcome.error or "no reply"
        if "error" in reply:
            return f"refused by the receiver: {reply['error']}"
        return None


@dataclass(frozen=True)
class SendReport:
    results: tuple[ImageResult, ...]
    local_failures: tuple[LocalFailure, ...]
    not_sent: int  # images planned but never handed to the transport (stopped early)
    elapsed_s: float
    want_reply: bool
    live: bool
    skipped_frames: int = 0  # live mode: frames replaced by newer ones before they could be sent
    stopped_by_user: bool = False
    session: JSON = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.local_failures and self.not_sent == 0 and all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        if self.ok:
            return 0
        return 130 if self.stopped_by_user else 1


async def file_entries(files: Sequence[PlannedFile], first: SourceItem | None = None) -> AsyncIterator[Entry]:
    """Read planned files one at a time, off the event loop (memory holds only those in flight)."""
    if first is not None:
        yield first
    for planned in files:
        try:
            yield await asyncio.to_thread(read_planned, planned)
        except SourceError as exc:
            yield LocalFailure(planned.name, str(planned.path), str(exc))


async def video_entries(frames: VideoFrames) -> AsyncIterator[Entry]:
    try:
        async for item in frames.items():
            yield item
    except SourceError as exc:
        yield LocalFailure(frames.options.stem, frames.options.label, str(exc))


class _Feed:
    """Turns entries into the transport's images, remembering where each submitted one came from."""

    def __init__(self, entries: AsyncIterator[Entry], options: SendOptions, stop: asyncio.Event,
                 reencode_items: bool) -> None:
        self._entries = entries
        self._options = options
        self._stop = stop
        self._reencode = reencode_items and options.encode.active
        self.submitted: list[tuple[str, int]] = []  # (origin, source size) by submission index
        self.failures: list[LocalFailure] = []
        self.entries_seen = 0

    async def images(self) -> AsyncGenerator[OutgoingImage, None]:
        async for entry in self._entries:
            if self._stop.is_set():
                return
            self.entries_seen += 1
            if isinstance(entry, LocalFailure):
                self.failures.append(entry)
                continue
            name, content_type, data = entry.name, entry.content_type, entry.data
            if self._reencode:
                try:
                    encoded = await asyncio.to_thread(reencode, data, self._options.encode)
                except EncodeError as exc:
                    self.failures.append(LocalFailure(name, entry.origin, str(exc)))
                    continue
                if encoded.data is not data:
                    name, content_type, data = renamed(name, encoded.format), encoded.format.content_type, encoded.data
            self.submitted.append((entry.origin, len(entry.data)))
            yield OutgoingImage(fitted_name(name), content_type, data, deadline=self._options.deadline)


async def send_images(
    transport: SenderTransport,
    entries: AsyncIterator[Entry],
    options: SendOptions,
    *,
    planned: int | None = None,
    on_progress: ProgressCallback | None = None,
    stop: asyncio.Event | None = None,
    reencode_items: bool = True,
    frames: VideoFrames | None = None,
) -> SendReport:
    """Send everything ``entries`` yields; TransportError when the transport as a whole fails.

    ``planned`` is how many entries the source will yield, when known, so that images never handed
    over (the user stopped, or the receiver went away) are counted. Setting ``stop`` ends the run
    after the images in flight.
    """
    stop = stop or asyncio.Event()
    feed = _Feed(entries, options, stop, reencode_items)
    started = time.perf_counter()
    images = feed.images()
    try:
        outcomes = await transport.send_all(images, want_reply=options.want_reply, on_progress=on_progress)
    finally:
        # The transport may stop pulling early (receiver gone): close the sources now, which for a
        # camera stops the capture thread, instead of whenever the garbage collector gets to them.
        await images.aclose()
        aclose = getattr(entries, "aclose", None)
        if aclose is not None:
            await aclose()
    elapsed = time.perf_counter() - started
    by_index = {outcome.index: outcome for outcome in outcomes}
    results = []
    for index, (origin, source_size) in enumerate(feed.submitted):
        outcome = by_index.get(index) or SendOutcome(
            name=origin, index=index, size=source_size, delivered=False, error="the transport gave no outcome"
        )
        results.append(ImageResult(outcome, origin, source_size, options.want_reply, options.live))
    not_sent = max(0, planned - feed.entries_seen) if planned is not None else 0
    session = getattr(transport, "session_stats", None)
    return SendReport(
        results=tuple(results),
        local_failures=tuple(feed.failures),
        not_sent=not_sent,
        elapsed_s=elapsed,
        want_reply=options.want_reply,
        live=options.live,
        skipped_frames=frames.skipped if frames is not None else 0,
        stopped_by_user=stop.is_set(),
        session=dict(session) if isinstance(session, dict) else {},
    )
