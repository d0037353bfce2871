"""What the receiver does with each image: check, store, classify, log, and answer the sender."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from apps.media.describe import classification_answers, human_bytes, opt
from apps.media.formats import JPEG, SIGNATURE_BYTES, TIFF, ImageFormat, decode_problem, sniff
from apps.receiver.storage import ImageStore, StorageError, safe_name
from apps.transport import JSON, ReceivedImage

Classify = Callable[[bytes], JSON]


class ClassifierUnavailable(Exception):
    """--classify was asked for but the classifier registry cannot be used."""


class _Refused(Exception):
    """An image the receiver does not keep; the message says why."""


def load_classifier(names: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None = None) -> Classify:
    """A function classifying image bytes with the registry's classifiers ``names``.

    ClassifierUnavailable when the registry is missing or a name is unknown, so that a typo stops
    the receiver at start-up rather than producing an error reply for every image.
    """
    try:
        registry = importlib.import_module("apps.classifier.registry")
    except ModuleNotFoundError as exc:
        raise ClassifierUnavailable(
            f"--classify needs the classifier registry (apps.classifier.registry), which cannot be "
            f"imported here: {exc}"
        ) from exc
    if not names:
        raise ClassifierUnavailable("--classify needs at least one classifier name")
    for name in names:
        try:
            registry.canonical(name)
        except KeyError as exc:  # the registry's UnknownClassifierError is a KeyError
            raise ClassifierUnavailable(str(exc)) from None
    classify_with = cast(Callable[..., JSON], registry.classify_with)
    chosen = list(names)
    settings = {name: dict(value) for name, value in (options or {}).items()} or None

    def classify(data: bytes) -> JSON:
        return classify_with(chosen, data, options=settings)

    return classify


@dataclass(frozen=True)
class ReceiverOptions:
    max_size: int = 64 << 20
    verify_image: bool = False
    # An image arriving again from the same host with the same name and bytes within this many
    # seconds is answered with the first copy's receipt, not stored again (0: store every copy).
    repeat_window: float = 600.0


# How many kept images the receiver remembers for recognising repeats (their receipts stay in memory).
REMEMBERED_IMAGES = 4096


@dataclass
class Totals:
    images: int = 0
    bytes: int = 0
    rejected: int = 0
    chunks: int = 0
    chunks_received: int = 0
    chunks_lost: int = 0
    recovered: int = 0
    chunks_repaired: int = 0  # rebuilt from REPAIRs (snip's forward repair)
    duplicates: int = 0
    repeats: int = 0  # images received again (a sender resending after an outage), not stored again
    peers: set[str] = field(default_factory=set)

    def as_json(self) -> JSON:
        figures = {k: v for k, v in vars(self).items() if k != "peers"}
        figures["peers"] = len(self.peers)
        figures["loss_pct"] = _loss_pct(self.chunks_lost, self.chunks_received)
        return figures


def _loss_pct(lost: int | None, received: int | None) -> float | None:
    """Share of chunk transmissions the network lost, as the receiver saw it."""
    if lost is None or received is None or lost + received == 0:
        return None
    return 100.0 * lost / (lost + received)


def _host(peer: str) -> str:
    """The host part of a transport's "host:port" (or "[v6]:port") peer name."""
    return peer.rsplit(":", 1)[0]


def _stat(stats: JSON, key: str) -> int | None:
    value = stats.get(key)
    return int(value) if isinstance(value, int | float) else None


# Extensions that already fit a format, so "photo.jpeg" keeps its name.
_EXTENSIONS = {JPEG: (".jpg", ".jpeg", ".jpe", ".jfif"), TIFF: (".tif", ".tiff")}


def storage_name(name: str, fmt: ImageFormat | None) -> str:
    """A safe name whose extension matches the content, so a JPEG sent as "x.exe" is stored as x.exe.jpg."""
    if fmt is None:
        return safe_name(name, ".bin")
    fitting = _EXTENSIONS.get(fmt, (fmt.extension,))
    candidate = safe_name(name, fmt.extension)
    if candidate.lower().endswith(fitting):
        return candidate
    return safe_name(candidate + fmt.extension)


class ReceiverApp:
    """The image handler the transports call, plus the running totals."""

    def __init__(self, store: ImageStore, options: ReceiverOptions, *, classify: Classify | None = None,
                 log: Callable[[str], None] = print, record: Callable[[JSON], None] | None = None) -> None:
        self.store = store
        self.options = options
        self._classify = classify
        self._log = log
        self._record = record
        self.totals = Totals()
        self.in_progress = 0
        # (host, name, sha256) -> (when it arrived, its receipt, once stored and classified).
        self._kept: OrderedDict[tuple[str, str, str], tuple[float, asyncio.Future[JSON]]] = OrderedDict()

    def admit(self, name: str, size: int) -> str | None:
        """Vet a transfer when it is announced: None to accept it, else why it is refused."""
        problem = self._size_problem(size)
        if problem is None:
            try:
                self.store.check_space(size)
            except StorageError as exc:
                problem = str(exc)
        if problem is not None:
            self.totals.rejected += 1
            self._log(f"refused {name!r} ({size} bytes) before transfer: {problem}")
        return problem

    async def handle(self, image: ReceivedImage) -> JSON:
        self.in_progress += 1
        try:
            return await self._handle(image)
        finally:
            self.in_progress -= 1

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for images being stored or classified."""
        loop = asyncio.get_running_loop()
        until = loop.time() + grace
        while self.in_progress and loop.time() < until:
            await asyncio.sleep(0.05)

    def _size_problem(self, size: int) -> str | None:
        if size > self.options.max_size:
            return f"too large: {size} bytes, the limit is {self.options.max_size}"
        return None

    async def _handle(self, image: ReceivedImage) -> JSON:
        size = len(image.data)
        digest = (await asyncio.to_thread(hashlib.sha256, image.data)).hexdigest()
        key = (_host(image.peer), image.name, digest)
        first = self._first_copy(key)
        if first is not None:
            return await self._repeat(image, first)
        pending: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        if self.options.repeat_window > 0:
            self._remember(key, pending)
        try:
            receipt = await self._store_and_classify(image, size, digest)
        except BaseException:
            self._kept.pop(key, None)
            pending.cancel()
            raise
        if "error" in receipt:
            self._kept.pop(key, None)  # a refused copy is judged afresh when it comes again
        pending.set_result(receipt)
        return receipt

    def _first_copy(self, key: tuple[str, str, str]) -> asyncio.Future[JSON] | None:
        """The receipt (maybe still being made) of an earlier copy within the repeat window."""
        entry = self._kept.get(key)
        if entry is None:
            return None
        arrived, receipt = entry
        if asyncio.get_running_loop().time() - arrived > self.options.repeat_window:
            del self._kept[key]
            return None
        return receipt

    def _remember(self, key: tuple[str, str, str], receipt: asyncio.Future[JSON]) -> None:
        self._kept[key] = (asyncio.get_running_loop().time(), receipt)
        while len(self._kept) > REMEMBERED_IMAGES:
            self._kept.popitem(last=False)

    async def _repeat(self, image: ReceivedImage, first: asyncio.Future[JSON]) -> JSON:
        try:
            receipt = await asyncio.shield(first)
        except asyncio.CancelledError:
            if first.cancelled():  # the first copy was abandoned (shutdown): this one is not kept either
                return {"name": image.name, "size": len(image.data), "saved": None,
                        "error": "the receiver is shutting down"}
            raise
        self.totals.repeats += 1
        self._log(f"received {image.name} again from {image.peer}: the same bytes as the copy kept as "
                  f"{receipt.get('saved')}, answered with its receipt")
        repeat = {**receipt, "repeat": True}
        self._emit(image, repeat)
        return repeat

    async def _store_and_classify(self, image: ReceivedImage, size: int, digest: str) -> JSON:
        receipt: JSON = {"name": image.name, "size": size, "sha256": digest, "content_type": image.content_type}
        try:
            path = await self._keep(image)
        except _Refused as exc:
            self.totals.rejected += 1
            receipt.update(saved=None, error=str(exc))
            self._log(f"rejected {image.name!r} ({size} bytes) from {image.peer}: {exc}")
            self._emit(image, receipt)
            return receipt
        receipt["saved"] = str(path)
        if self._classify is not None:
            try:
                receipt["classification"] = await asyncio.to_thread(self._classify, image.data)
            except Exception as exc:  # a classifier failure is reported, the image stays saved
                receipt["classification_error"] = f"{type(exc).__name__}: {exc}"
        self._count(image, size)
        self._log(self._line(image, receipt, path))
        self._emit(image, receipt)
        return receipt

    async def _keep(self, image: ReceivedImage) -> Path:
        """Check and store the image; _Refused with the reason when it is not kept."""
        problem = self._size_problem(len(image.data))
        if problem is None and self.options.verify_image:
            reason = await asyncio.to_thread(decode_problem, image.data)
            problem = f"not a valid image: {reason}" if reason else None
        if problem is not None:
            raise _Refused(problem)
        name = storage_name(image.name, sniff(image.data[:SIGNATURE_BYTES]))
        try:
            return await asyncio.to_thread(self.store.save, name, image.data)
        except StorageError as exc:
            raise _Refused(str(exc)) from None

    def _emit(self, image: ReceivedImage, receipt: JSON) -> None:
        if self._record is not None:
            self._record({**receipt, "peer": image.peer, "transfer_id": image.transfer_id, "stats": image.stats})

    def _count(self, image: ReceivedImage, size: int) -> None:
        t = self.totals
        t.images += 1
        t.bytes += size
        t.peers.add(_host(image.peer))
        for key in ("chunks", "chunks_received", "chunks_lost", "recovered", "chunks_repaired", "duplicates"):
            value = _stat(image.stats, key)
            if value is not None:
                setattr(t, key, getattr(t, key) + value)

    @staticmethod
    def _line(image: ReceivedImage, receipt: JSON, path: Path) -> str:
        stats = image.stats
        pieces = [f"received {image.name} ({human_bytes(len(image.data))}) from {image.peer}"]
        chunks, received = _stat(stats, "chunks"), _stat(stats, "chunks_received")
        lost, recovered = _stat(stats, "chunks_lost"), _stat(stats, "recovered")
        if chunks is not None:
            repaired = _stat(stats, "chunks_repaired")
            pieces.append(
                f"{chunks} chunks, {opt(received)} received, {opt(lost)} lost, {opt(recovered)} recovered, "
                + (f"{repaired} rebuilt from REPAIRs, " if repaired else "")
                + f"loss {opt(_loss_pct(lost, received), '.1f')}%, success 100.0%"
            )
        elapsed = stats.get("elapsed_s")
        if isinstance(elapsed, int | float):
            pieces.append(f"{elapsed:.2f} s")
        line = ", ".join(pieces) + f" -> {path}"
        answers = classification_answers(receipt.get("classification"))
        if answers:
            line += " [" + "; ".join(answers) + "]"
        if "classification_error" in receipt:
            line += f" [classification failed: {receipt['classification_error']}]"
        return line

    def summary(self) -> str:
        t = self.totals
        line = (f"total: {t.images} images ({human_bytes(t.bytes)}) from {len(t.peers)} "
                f"host{'s' if len(t.peers) != 1 else ''}, {t.rejected} rejected")
        if t.repeats:
            line += f", {t.repeats} received again (answered, not stored twice)"
        if t.chunks:
            loss = _loss_pct(t.chunks_lost, t.chunks_received)
            line += (f"; chunks: {t.chunks_received} received, {t.chunks_lost} lost, {t.recovered} recovered, "
                     f"{t.chunks_repaired} rebuilt from REPAIRs, {t.duplicates} duplicates, loss {opt(loss, '.1f')}%")
        return line


def describe_stats(stats: dict[str, Any]) -> str:
    """A transport's own counters on one line (what its stats() returned)."""
    shown = {k: v for k, v in stats.items() if isinstance(v, int | float | str)}
    return ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
