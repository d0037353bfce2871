"""`snip receive`: accept images from many senders, store them safely, classify, and reply."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from apps.cli import CommandError
from apps.receiver.app import (
    ClassifierUnavailable,
    ReceiverApp,
    ReceiverOptions,
    describe_stats,
    load_classifier,
)
from apps.receiver.storage import ImageStore, StorageError
from apps.transport import JSON, TransportError
from apps.transports import (
    DEFAULT_TRANSPORT,
    TRANSPORT_MODULES,
    Admitting,
    TransportUnavailable,
    add_transport_arguments,
    listening_address,
    load,
)
from apps.transports.units import count_arg, seconds_arg, size_arg

EPILOG = """\
Images are written to a hidden temporary file and renamed only once complete and verified, under
a sanitised name that never overwrites (photo.jpg, photo-1.jpg, ...). Ctrl-C or SIGTERM stops
accepting and lets transfers in progress finish for up to --grace seconds; a second one aborts.
Either way no partial file is left behind.

examples:
  snip receive --listen 0.0.0.0:9000 --out received/
  snip receive --listen [::]:9000 --out received/ --classify animal --verify-image --max-size 20M
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "receive",
        help="receive images, store and classify them, reply to the senders",
        description="Receive images from many senders at once; store, verify and classify them, and "
        "send each sender the result.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def _seconds_or_zero(text: str) -> float:
    """argparse ``type=`` for a duration in seconds that may be 0."""
    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass  # seconds_arg says what is wrong
    return seconds_arg(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="0.0.0.0", metavar="HOST:PORT",
                        help="address to listen on; [::]:PORT for IPv6 (default 0.0.0.0 and the "
                        "transport's port: 9000 for snip)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to store the images in")
    parser.add_argument("--max-size", type=size_arg, default=64 << 20, metavar="SIZE",
                        help="largest image accepted, e.g. 20M (default 64M)")
    parser.add_argument("--max-transfers", type=count_arg, default=64, metavar="N",
                        help="transfers in progress at once (default 64)")
    parser.add_argument("--min-free", type=size_arg, default=64 << 20, metavar="SIZE",
                        help="refuse images that would leave less free disk space than this (default 64M)")
    parser.add_argument("--grace", type=seconds_arg, default=5.0, metavar="SECONDS",
                        help="on shutdown, how long transfers in progress may take to finish (default 5)")
    parser.add_argument("--repeat-window", type=_seconds_or_zero, default=600.0, metavar="SECONDS",
                        help="an image that comes again from the same host with the same name and bytes "
                        "within this long (a sender resending after an outage) is answered with the first "
                        "copy's reply and not stored again (default 600; 0 stores every copy)")
    parser.add_argument("--verify-image", action="store_true",
                        help="decode every image and refuse those that do not decode")
    parser.add_argument("--classify", metavar="NAME[,NAME]",
                        help="classify each image with these classifiers and reply with the answers "
                        "(default, or \"none\": store and acknowledge only)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per image and a final totals object on stdout")
    parser.add_argument("--quiet", action="store_true", help="no per-image lines")
    parser.add_argument("--via", choices=tuple(TRANSPORT_MODULES), default=DEFAULT_TRANSPORT,
                        help=f"transport (default {DEFAULT_TRANSPORT})")
    add_transport_arguments(parser, "receiver")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(receive_command(args))


@contextlib.contextmanager
def _signals(stop: asyncio.Event, grace: float, say: Any) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop and let transfers finish; second: abort now."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set():
            if main is not None:
                main.cancel()
            return
        stop.set()
        say(f"stopping: transfers in progress have {grace:g} s to finish (again to abort)")

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):
            pass  # not the main thread (tests embed the receiver): the caller's stop event rules
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def receive_command(args: argparse.Namespace, *, stop: asyncio.Event | None = None,
                          stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Serve until ``stop`` is set (or a signal arrives); 0 after a clean shutdown."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr

    def say(message: str) -> None:
        print(f"snip receive: {message}", file=stderr, flush=True)

    def log(line: str) -> None:
        if not args.quiet and not args.json:
            print(line, file=stdout, flush=True)

    def record(entry: JSON) -> None:
        if args.json:
            print(json.dumps(entry, default=str), file=stdout, flush=True)

    classify = None
    names = [name.strip() for name in (args.classify or "").split(",") if name.strip()]
    if "none" in names and len(names) > 1:
        raise CommandError(f"--classify none cannot be combined with other classifiers (got {args.classify!r})")
    if names and names != ["none"]:
        try:
            classify = load_classifier(names)
        except ClassifierUnavailable as exc:
            raise CommandError(str(exc)) from None
    try:
        transport = load(args.via).receiver_from_args(args, args.listen)
    except (TransportUnavailable, TransportError) as exc:
        raise CommandError(str(exc)) from None
    try:
        store = ImageStore(args.out, min_free_bytes=args.min_free)
    except StorageError as exc:
        raise CommandError(str(exc)) from None
    for path in store.remove_stale():
        say(f"removed {path.name}, left over by an interrupted earlier run")
    app = ReceiverApp(store, ReceiverOptions(max_size=args.max_size, verify_image=args.verify_image,
                                          repeat_window=args.repeat_window),
                      classify=classify, log=log, record=record)
    if isinstance(transport, Admitting):
        transport.set_admission(app.admit)  # refuse early what handle() would refuse after the transfer
    stop = stop or asyncio.Event()
    with _signals(stop, args.grace, say):
        serving = asyncio.create_task(transport.serve(app.handle, stop))
        try:
            say(f"listening on {await listening_address(transport, serving, args.listen)} via {args.via}, "
                f"saving to {store.root}")
            await serving
            await app.drain(args.grace)
        except TransportError as exc:
            raise CommandError(str(exc), exit_code=1) from None
        except asyncio.CancelledError:
            serving.cancel()
            say("aborted; transfers in progress were dropped (no partial files are kept)")
            return 130
    if args.json:
        record({"totals": app.totals.as_json(), "transport": transport.stats()})
    else:
        print(app.summary(), file=stdout, flush=True)
        stats = transport.stats()
        if stats:
            print(f"{args.via}: {describe_stats(stats)}", file=stdout, flush=True)
    return 0
