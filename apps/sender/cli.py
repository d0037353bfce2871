"""`snip send`: send images (files, folders, stdin, a camera or a video) and print what came back."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, TextIO

from rich.console import Console

from apps.cli import CommandError
from apps.media.encode import WRITABLE_NAMES, EncodeOptions
from apps.sender.app import Entry, SendOptions, SendReport, file_entries, send_images, video_entries
from apps.sender.report import print_replies, print_report, to_json
from apps.sender.sources import PlannedFile, SourceError, SourceItem, plan_files, read_stdin
from apps.sender.video import VideoFrames, VideoOptions, open_capture
from apps.transport import ProgressCallback, TransportError
from apps.transports import (
    DEFAULT_TRANSPORT,
    TRANSPORT_MODULES,
    TransportUnavailable,
    add_transport_arguments,
    load,
)

# Live mode without --deadline: a frame older than this is worth less than a newer one.
DEFAULT_LIVE_DEADLINE_S = 1.0

EPILOG = """\
exit status: 0 every image delivered (and answered, unless --no-reply); 1 some image failed or the
receiver could not be reached; 2 bad input (missing file, empty or non-image file without
--any-file, bad option);
130 stopped with Ctrl-C before everything was sent. The first Ctrl-C stops taking new images and
waits for those in flight; a second one aborts.

examples:
  snip send 10.0.0.5:9000 photo.jpg shots/ --include '*.jpg'
  snip send 10.0.0.5:9000 --camera 0 --fps 5 --live --max-dim 640 --quality 70
  cat frame.png | snip send 10.0.0.5:9000 - --name frame.png --json
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "send",
        help="send images to a receiver and print the replies",
        description="Send images to a `snip receive` (or a TCP/email baseline) and print the replies.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="the receiver: HOST:PORT (snip, tcp) or a mail address (email)")
    parser.add_argument("sources", nargs="*", metavar="SOURCE",
                        help="image files, folders (walked recursively) or - for stdin")
    src = parser.add_argument_group("sources")
    src.add_argument("--include", action="append", default=[], metavar="GLOB",
                     help="in folders, send only files whose name or relative path matches (repeatable)")
    src.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                     help="in folders, skip files matching (repeatable)")
    src.add_argument("--any-file", action="store_true",
                     help="send files even when they do not look like images, empty ones too")
    src.add_argument("--name", help="the name to give the image read from stdin (cut to 255 bytes of UTF-8)")
    cam = src.add_mutually_exclusive_group()
    cam.add_argument("--camera", metavar="DEVICE", help="capture from a camera (index such as 0, or a device path)")
    cam.add_argument("--video", metavar="FILE_OR_URL", help="send frames of a video file or stream")
    src.add_argument("--fps", type=float, help="camera/video: frames per second to send (default: all)")
    src.add_argument("--frames", type=int, help="camera/video: stop after this many frames")
    src.add_argument("--duration", type=float, metavar="SECONDS", help="camera/video: stop after this long")
    enc = parser.add_argument_group("re-encoding (off unless one of these is given)")
    enc.add_argument("--format", choices=WRITABLE_NAMES, help="re-encode to this format")
    enc.add_argument("--quality", type=int, metavar="1-100", help="JPEG/WebP quality (default 90)")
    enc.add_argument("--max-dim", type=int, metavar="PIXELS", help="shrink so the longest side is at most this")
    live = parser.add_argument_group("live streaming")
    live.add_argument("--live", action="store_true",
                      help=f"drop images that cannot arrive in time for newer ones (deadline "
                      f"{DEFAULT_LIVE_DEADLINE_S:g} s unless --deadline)")
    live.add_argument("--deadline", type=float, metavar="SECONDS",
                      help="live mode with this per-image deadline, counted from submission")
    out = parser.add_argument_group("output")
    out.add_argument("--no-reply", action="store_true", help="do not ask the receiver for a reply")
    out.add_argument("--show-replies", action="store_true", help="print each reply in full after the table")
    out.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of the table")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bars on stderr (default: when stderr is a terminal)")
    parser.add_argument("--via", choices=tuple(TRANSPORT_MODULES), default=DEFAULT_TRANSPORT,
                        help=f"transport (default {DEFAULT_TRANSPORT})")
    add_transport_arguments(parser, "sender")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(send_command(args))


def _encode_options(args: argparse.Namespace) -> EncodeOptions:
    try:
        return EncodeOptions(format=args.format, quality=args.quality, max_dim=args.max_dim)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _deadline(args: argparse.Namespace) -> float | None:
    if args.deadline is not None:
        if args.deadline <= 0:
            raise CommandError("--deadline must be positive")
        return float(args.deadline)
    return DEFAULT_LIVE_DEADLINE_S if args.live else None


class _Sources:
    """What the arguments name, checked; built before any connection is made."""

    def __init__(self, args: argparse.Namespace, err: Console, stdin: Any) -> None:
        self.frames: VideoFrames | None = None
        self.planned: int | None = None
        self._files: list[PlannedFile] = []
        self._stdin_item: SourceItem | None = None
        video_source = args.camera if args.camera is not None else args.video
        if video_source is not None and args.sources:
            raise CommandError("give files/folders or --camera/--video, not both")
        if video_source is None and not args.sources:
            raise CommandError("nothing to send: give image files, folders, - (stdin), --camera or --video")
        if video_source is None and (args.fps, args.frames, args.duration) != (None, None, None):
            raise CommandError("--fps, --frames and --duration apply to --camera and --video only")
        try:
            if video_source is not None:
                options = VideoOptions(
                    source=str(video_source), camera=args.camera is not None, fps=args.fps, frames=args.frames,
                    duration=args.duration, live=args.live or args.deadline is not None,
                    encode=_encode_options(args),
                )
                self.frames = VideoFrames(options, open_capture(options))
                return
            paths = [s for s in args.sources if s != "-"]
            if len(paths) < len(args.sources) - 1:
                raise CommandError("stdin (-) can be given only once")
            self._files = plan_files(paths, include=args.include, exclude=args.exclude,
                                     allow_any=args.any_file, warn=lambda m: err.print(f"snip send: {m}"))
            if "-" in args.sources:
                stream = stdin if stdin is not None else sys.stdin.buffer
                self._stdin_item = read_stdin(stream, name=args.name, allow_any=args.any_file)
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        self.planned = len(self._files) + (1 if self._stdin_item else 0)
        if not self.planned:
            raise CommandError("no images to send")

    def entries(self) -> AsyncIterator[Entry]:
        if self.frames is not None:
            return video_entries(self.frames)
        return file_entries(self._files, self._stdin_item)


@contextlib.contextmanager
def _interrupts(stop: asyncio.Event, frames: VideoFrames | None, err: Console) -> Iterator[None]:
    """First Ctrl-C/SIGTERM: no new images, finish those in flight. Second: abort."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set():
            if main is not None:
                main.cancel()
            return
        stop.set()
        if frames is not None:
            frames.stop()
        err.print("snip send: stopping after the images in flight (again to abort)")

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):
            pass  # not the main thread (tests) or no signals here: Ctrl-C falls back to the default
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def send_command(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None,
                       stdin: Any = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    err = Console(file=stderr, stderr=True, highlight=False, soft_wrap=True)
    out = Console(file=stdout, highlight=False, width=None if stdout.isatty() else 160)
    options = SendOptions(want_reply=not args.no_reply, deadline=_deadline(args), encode=_encode_options(args))
    try:
        transport = load(args.via).sender_from_args(args, args.target)
    except (TransportUnavailable, TransportError) as exc:
        raise CommandError(str(exc)) from None
    if hasattr(transport, "on_notice"):  # e.g. snip's "session reopened" after an outage
        transport.on_notice = lambda message: err.print(f"snip send: {message}", markup=False)
    # Reading folders and stdin blocks; opening a camera can take a while.
    sources = await asyncio.to_thread(_Sources, args, err, stdin)
    show_progress = args.progress if args.progress is not None else stderr.isatty()
    stop = asyncio.Event()
    try:
        with _interrupts(stop, sources.frames, err):
            # --progress draws bars even when stderr is not a terminal (a user watching a pipe).
            bars = Console(file=stderr, force_terminal=True) if args.progress else err
            report = await _send(transport, sources, options, stop, bars if show_progress else None)
    except TransportError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    except asyncio.CancelledError:
        err.print("snip send: aborted")
        return 130
    finally:
        await transport.aclose()
    if args.json:
        document = to_json(report, target=args.target, transport=args.via)
        stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    else:
        print_report(report, out, target=args.target, transport=args.via, show_replies=options.want_reply)
        if args.show_replies:
            print_replies(report, out)
    _print_problems(report, err)
    return report.exit_code


async def _send(transport: Any, sources: _Sources, options: SendOptions, stop: asyncio.Event,
                progress_console: Console | None) -> SendReport:
    async def go(on_progress: ProgressCallback | None) -> SendReport:
        return await send_images(
            transport, sources.entries(), options, planned=sources.planned, on_progress=on_progress, stop=stop,
            reencode_items=sources.frames is None, frames=sources.frames,
        )

    if progress_console is None:
        return await go(None)
    from apps.sender.progress import ProgressView

    with ProgressView(progress_console, sources.planned) as view:
        return await go(view)


def _print_problems(report: SendReport, err: Console) -> None:
    """One line per failed image on stderr, so failures stand out even with --json."""
    for result in report.results:
        if not result.ok:
            err.print(f"snip send: {result.outcome.name}: {result.problem}", markup=False)
    for failure in report.local_failures:
        err.print(f"snip send: {failure.error}", markup=False)
    if report.not_sent:
        err.print(f"snip send: {report.not_sent} image(s) not sent")
