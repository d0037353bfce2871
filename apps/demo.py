"""`snip demo`: real photos and drawings cross a visibly bad link, are classified, and answered.

Everything runs in this one process on loopback: a snip receiver, a netsim UDP relay impairing
the path between the two (10% loss and 30 ms jitter by default), and a sender streaming the
sample images through the relay. No network, credentials or GPU needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from apps.cli import CommandError
from apps.media.describe import classification_answers
from apps.media.samples import SampleImage, sample_images
from apps.receiver.app import ClassifierUnavailable, Classify, ReceiverApp, ReceiverOptions, load_classifier
from apps.receiver.storage import ImageStore
from apps.sender.app import Entry, SendOptions, SendReport, send_images
from apps.sender.report import print_report
from apps.sender.sources import SourceItem
from apps.transport import JSON, TransportError
from apps.transports import TransportUnavailable, listening_address, split_host_port

DEFAULT_LINK = "loss=10% delay=20ms jitter=30ms"
DEFAULT_IMAGES = 12
ANIMAL = "animal"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="send sample photos and drawings across an impaired link and show the answers",
        description="Start a receiver, a lossy, jittery netsim relay and a sender on loopback; send real "
        "photos and generated drawings through it; print what arrived, what the classifiers said, "
        "and the totals.",
    )
    parser.add_argument("--link", default=DEFAULT_LINK, metavar="SPEC",
                        help=f'the relay\'s link, in netsim syntax (default "{DEFAULT_LINK.replace("%", "%%")}")')
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, metavar="N",
                        help=f"how many images to send, photos and drawings alternating (default {DEFAULT_IMAGES})")
    parser.add_argument("--classify", default="auto", metavar="NAME[,NAME]|auto|none",
                        help="classifiers to run on arrival; auto: the animal model when its weights are "
                        "installed, else the real-vs-animated ones (default auto)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the drawings and the link (default 1)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="keep the received images here")
    parser.add_argument("--rate", metavar="CONTROL", help='snip rate control: snipbbr (default) or fixed:RATE')
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: when stderr is a terminal)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(demo_command(args))


def _parse_link(text: str) -> Any:
    try:
        spec_module = importlib.import_module("netsim.spec")
    except ModuleNotFoundError as exc:
        raise CommandError(f"snip demo needs netsim, which this checkout lacks ({exc})") from None
    try:
        return spec_module.parse_link(text)
    except ValueError as exc:
        raise CommandError(f"--link: {exc}") from None


def _relay_class() -> Any:
    try:
        return importlib.import_module("netsim.relay").UdpRelay
    except (ModuleNotFoundError, AttributeError) as exc:
        raise CommandError(f"snip demo needs the netsim UDP relay (netsim.relay.UdpRelay): {exc}") from None


# The demo never downloads model weights: it uses what is installed and says what it falls back to.
_NO_DOWNLOAD = {ANIMAL: {"download": False}}


def choose_classifier(requested: str, probe: bytes) -> tuple[Classify | None, str | None]:
    """The classifier to run and, when it differs from what was asked for, one line saying why."""
    if requested == "none":
        return None, None
    if requested != "auto":
        try:
            names = [n.strip() for n in requested.split(",") if n.strip()]
            return load_classifier(names, _NO_DOWNLOAD), None
        except ClassifierUnavailable as exc:
            raise CommandError(str(exc)) from None
    try:
        registry = importlib.import_module("apps.classifier.registry")
    except ModuleNotFoundError:
        return None, "no classification: the classifier registry is not installed in this checkout"
    problem = _failure(_classify_safely(registry, probe))
    if problem is None:
        return load_classifier([ANIMAL], _NO_DOWNLOAD), None
    fallback = [name for name in registry.available() if name != ANIMAL]
    # The registry's reasons name paths and URLs after a colon; the first clause is enough here.
    reason = problem.split(": ", 1)[0]
    if not fallback:
        return None, f"no classification: the animal model is unavailable ({reason})"
    return (load_classifier(fallback),
            f"animal model unavailable ({reason}); using the real-vs-animated classifiers: {', '.join(fallback)}")


def _classify_safely(registry: Any, data: bytes) -> Any:
    try:
        return registry.classify_with([ANIMAL], data, options=_NO_DOWNLOAD)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _failure(result: Any) -> str | None:
    """The first error in a registry result, if any."""
    if isinstance(result, dict):
        if "error" in result:
            return str(result["error"])
        values: Any = result.values()
    elif isinstance(result, list):
        values = result
    else:
        return None
    return next((problem for v in values if (problem := _failure(v)) is not None), None)


async def _entries(samples: Sequence[SampleImage]) -> AsyncIterator[Entry]:
    for sample in samples:
        yield SourceItem(sample.name, sample.data, sample.content_type, sample.kind)


@contextlib.contextmanager
def _output_folder(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="snip-demo-") as folder:
        yield Path(folder)


async def demo_command(args: argparse.Namespace, *, stdout: TextIO | None = None,
                       stderr: TextIO | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    console = Console(file=stdout, highlight=False, width=None if stdout.isatty() else 150)
    if args.images < 1:
        raise CommandError("--images must be at least 1")
    link = _parse_link(args.link)
    relay_class = _relay_class()
    from apps.transports.snip import SnipReceiver, SnipSender, session_config

    try:
        config = session_config(rate=args.rate)
    except (TransportUnavailable, TransportError) as exc:
        raise CommandError(str(exc)) from None
    samples = await asyncio.to_thread(sample_images, args.images, args.seed)
    classify, note = await asyncio.to_thread(choose_classifier, args.classify, samples[0].data)
    console.print(f"[bold]snip demo[/]: {len(samples)} images through a netsim relay with link [cyan]{args.link}[/]")
    if note:
        console.print(note)
    with _output_folder(args.out) as folder:
        store = ImageStore(folder)
        app = ReceiverApp(store, ReceiverOptions(), classify=classify, log=lambda line: None)
        receiver = SnipReceiver("127.0.0.1", 0, config=config, grace=2.0)
        stop = asyncio.Event()
        serving = asyncio.create_task(receiver.serve(app.handle, stop))
        try:
            receiver_host, receiver_port = split_host_port(await listening_address(receiver, serving, ""))
            relay = relay_class(listen=("127.0.0.1", 0), to=(receiver_host, receiver_port), spec=link,
                                seed=args.seed)
            async with relay:
                relay_host, relay_port = relay.listen_addr
                sender = SnipSender(relay_host, relay_port, config=config)
                report = await _send(sender, samples, args.progress, stderr)
                relay_stats = _relay_summary(relay)
        except TransportError as exc:
            raise CommandError(str(exc), exit_code=1) from None
        finally:
            stop.set()
            await serving
        print_report(report, console, target="the receiver through the relay", transport="snip",
                     show_replies=classify is None)
        _print_answers(report, samples, console)
        console.print("receiver " + app.summary())
        if relay_stats:
            console.print(f"relay: {relay_stats}")
        if args.out is not None:
            console.print(f"received images kept in {folder}")
    return report.exit_code


def _relay_summary(relay: Any) -> str:
    """What the relay's link did in each direction, from its stats."""
    link = relay.stats().get("link", {})
    parts = []
    for direction, label in (("fwd", "sender->receiver"), ("rev", "receiver->sender")):
        figures = link.get(direction)
        if not isinstance(figures, dict) or not figures.get("sent"):
            continue
        sent, dropped = int(figures["sent"]), int(figures.get("dropped", 0))
        parts.append(f"{label} {sent} packets, {dropped} dropped ({100 * dropped / sent:.1f}%), "
                     f"{figures.get('reordered', 0)} reordered")
    return "; ".join(parts)


async def _send(sender: Any, samples: Sequence[SampleImage], progress: bool | None, stderr: TextIO) -> SendReport:
    """Send the samples; progress bars when asked for, or by default when stderr is a terminal."""
    options = SendOptions(want_reply=True)
    if not (progress if progress is not None else stderr.isatty()):
        return await send_images(sender, _entries(samples), options, planned=len(samples))
    from apps.sender.progress import ProgressView

    with ProgressView(Console(file=stderr, force_terminal=progress or None), len(samples)) as view:
        return await send_images(sender, _entries(samples), options, planned=len(samples), on_progress=view)


def _print_answers(report: SendReport, samples: Sequence[SampleImage], console: Console) -> None:
    kinds = {sample.name: sample.kind for sample in samples}
    lines = []
    for result in report.results:
        reply: JSON | None = result.outcome.reply
        if reply is None:
            continue
        answers = classification_answers(reply.get("classification"))
        if answers:
            kind = kinds.get(result.outcome.name, "?")
            lines.append(f"  {result.outcome.name} ({kind}): " + "; ".join(answers))
    if lines:
        console.print("[bold]classification answers[/] (the image's true kind in brackets):")
        for line in lines:
            console.print(line, markup=False)
