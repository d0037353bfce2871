"""A fuzzing campaign: batches of mutated datagrams, checks after each, a minimised reproducer.

Guidance: the target's reactions to a batch (the answers it sends, and in-process the drop
counters it bumps) are its features; a batch that shows a new one gives its well-formed
datagrams to the seed corpus, so that later mutations start from inputs that reached new code.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import codec
from protocol.errors import DecodeError

from ..context import Options
from ..model import CaseFailed
from ..target import Target, TargetCrashed
from .minimize import ddmin
from .mutate import mutate
from .rig import Anomaly, FuzzDatagram, Rig

FORMAT = "snip-fuzz-reproducer/1"
REPLAY_SEED_OFFSET = 1_000_003
MAX_CORPUS = 400

#: A fresh target for each rig (in-process: a new simulation; live: the same endpoint).
TargetMaker = Callable[[], Target]


class FuzzSetupError(Exception):
    """The campaign could not even start: the target does not complete a handshake."""


@dataclass(frozen=True)
class FuzzSettings:
    seed: int = 0
    count: int | None = 2000  # datagrams to send (None: until ``duration``)
    duration: float | None = None  # seconds of wall-clock time
    batch: int = 100
    legit_chunks: int = 6  # legitimate chunks spread through each batch
    fresh_every: int = 10  # a fresh handshake every this many batches
    minimize: bool = True
    max_tests: int = 150  # replays the minimiser may run
    options: Options = field(default_factory=lambda: Options(timeout=2.0, quiet=0.1))


@dataclass
class Reproducer:
    seed: int
    anomaly: Anomaly
    datagrams: list[FuzzDatagram]
    target: str
    reproduced: bool  # whether the saved datagrams alone showed the anomaly again
    original: int  # datagrams in the batch(es) before minimisation

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seed": self.seed,
            "target": self.target,
            "anomaly": {"kind": self.anomaly.kind, "detail": self.anomaly.detail},
            "reproduced": self.reproduced,
            "original_datagrams": self.original,
            "datagrams": [d.to_json() for d in self.datagrams],
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Reproducer:
        """Raises ValueError (with the reason) for a file that is not a reproducer."""
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a snip fuzz reproducer ({FORMAT})")
        try:
            return cls(
                seed=int(data["seed"]),
                anomaly=Anomaly(str(data["anomaly"]["kind"]), str(data["anomaly"]["detail"])),
                datagrams=[FuzzDatagram.from_json(d) for d in data["datagrams"]],
                target=str(data.get("target", "")),
                reproduced=bool(data.get("reproduced", False)),
                original=int(data.get("original_datagrams", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed reproducer ({exc})") from None


@dataclass
class FuzzReport:
    sent: int = 0
    batches: int = 0
    legit_objects: int = 0
    legit_bytes: int = 0
    elapsed: float = 0.0
    strategies: Counter[str] = field(default_factory=Counter)
    features: set[str] = field(default_factory=set)
    corpus: int = 0
    reproducer: Reproducer | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "datagrams_sent": self.sent,
            "batches": self.batches,
            "legit_objects_completed": self.legit_objects,
            "legit_bytes_completed": self.legit_bytes,
            "elapsed_s": round(self.elapsed, 3),
            "datagrams_per_s": round(self.rate, 1),
            "strategies": dict(self.strategies.most_common()),
            "features": sorted(self.features),
            "corpus": self.corpus,
            "anomaly": None if self.reproducer is None else self.reproducer.to_json(),
        }


def replay(datagrams: list[FuzzDatagram], make_target: TargetMaker, seed: int, options: Options) -> Anomaly | None:
    """Run ``datagrams`` as one batch against fresh sessions (and a fresh target when in-process).

    The legitimate transfer runs alongside and is finished afterwards; returns the first anomaly.
    """
    target = make_target()
    try:
        # Not the campaign's seed: the replay's session ids must not be the campaign's first ones,
        # or datagrams aimed at no session would hit one by coincidence.
        rig = Rig(target, seed + REPLAY_SEED_OFFSET, options)
    except TargetCrashed as crash:
        return Anomaly("crash", f"the endpoint raised {crash}")
    except CaseFailed as failure:
        return Anomaly("unresponsive", f"the sessions for the replay could not be set up: {failure.got}")
    try:
        anomaly = rig.run_batch(datagrams, legit_chunks=16, retarget=True)
        if anomaly is None:
            try:
                rig.advance(64)  # the rest of the object, then its repair
                anomaly = rig.check() or rig.finish_object()
            except TargetCrashed as crash:
                anomaly = Anomaly("crash", f"the endpoint raised {crash}")
        return anomaly
    finally:
        rig.close()


def _minimize(
    found: Anomaly, history: list[list[FuzzDatagram]], make_target: TargetMaker, settings: FuzzSettings, target_name: str
) -> Reproducer:
    """The smallest list of fuzz datagrams that shows the same kind of anomaly again."""

    def fails(candidate: list[FuzzDatagram]) -> bool:
        again = replay(candidate, make_target, settings.seed, settings.options)
        return again is not None and again.kind == found.kind

    last = history[-1] if history else []
    if not settings.minimize:
        return Reproducer(settings.seed, found, last, target_name, False, len(last))
    # The last batch alone, then with more and more of the batches before it.
    for back in sorted({1, 2, 4, len(history)}):
        candidate = [d for batch in history[-back:] for d in batch]
        if candidate and fails(candidate):
            smallest = ddmin(candidate, fails, max_tests=settings.max_tests)
            return Reproducer(settings.seed, found, smallest, target_name, True, len(candidate))
    # Something earlier in the batch masks it on a fresh session: try its datagrams one by one.
    for d in last[: settings.max_tests]:
        if fails([d]):
            return Reproducer(settings.seed, found, [d], target_name, True, len(last))
    return Reproducer(settings.seed, found, last, target_name, False, len(last))


def run_campaign(
    make_target: TargetMaker,
    settings: FuzzSettings,
    *,
    target_name: str = "",
    progress: Callable[[FuzzReport], None] | None = None,
) -> FuzzReport:
    """Fuzz until ``count`` datagrams or ``duration`` seconds, or the first anomaly."""
    report = FuzzReport()
    rng = random.Random(settings.seed)
    start = time.monotonic()
    history: list[list[FuzzDatagram]] = []
    try:
        rig = Rig(make_target(), settings.seed, settings.options)
    except CaseFailed as failure:
        raise FuzzSetupError(f"cannot open sessions with the target: expected {failure.expected}; got {failure.got}") from None
    corpus = rig.seeds()
    try:
        while True:
            if settings.count is not None and report.sent >= settings.count:
                break
            if settings.duration is not None and time.monotonic() - start >= settings.duration:
                break
            size = settings.batch if settings.count is None else min(settings.batch, settings.count - report.sent)
            batch: list[FuzzDatagram] = []
            for _ in range(size):
                data, strategy = mutate(rng, corpus)
                batch.append(rig.route(data, strategy))
                report.strategies[strategy.split("+")[0]] += 1
            history = [*history[-7:], batch]
            known = len(rig.features)
            anomaly = rig.run_batch(batch, settings.legit_chunks)
            report.sent += len(batch)
            report.batches += 1
            if anomaly is None and report.batches % settings.fresh_every == 0:
                anomaly = rig.fresh_handshake()
            if anomaly is not None:
                report.reproducer = _minimize(anomaly, history, make_target, settings, target_name)
                break
            if len(rig.features) > known:
                corpus = _grow(corpus, batch, rng)
            if progress is not None:
                report.elapsed = time.monotonic() - start
                progress(report)
        if report.reproducer is None and rig.stream.obj is not None:
            try:
                rig.advance(64)
                anomaly = rig.check() or rig.finish_object()
            except CaseFailed as failure:
                anomaly = Anomaly("unresponsive", f"{failure.expected}; got {failure.got}")
            if anomaly is not None:
                report.reproducer = _minimize(anomaly, history, make_target, settings, target_name)
    except TargetCrashed as crash:  # outside a batch: setting up or finishing
        report.reproducer = _minimize(Anomaly("crash", f"the endpoint raised {crash}"), history, make_target, settings, target_name)
    finally:
        report.legit_objects = rig.stream.completed
        report.legit_bytes = rig.stream.completed_bytes
        report.features = set(rig.features)
        report.corpus = len(corpus)
        report.elapsed = time.monotonic() - start
        rig.close()
    return report


def _grow(corpus: list[bytes], batch: list[FuzzDatagram], rng: random.Random) -> list[bytes]:
    """Keep the well-formed datagrams of a batch that showed something new (bounded corpus)."""
    fresh: list[bytes] = []
    for d in batch:
        try:
            codec.decode(d.data)
        except DecodeError:
            continue
        fresh.append(d.data)
    rng.shuffle(fresh)
    grown = corpus + fresh[:10]
    if len(grown) > MAX_CORPUS:
        keep = grown[:20]  # the hand-made seeds stay
        rest = grown[20:]
        rng.shuffle(rest)
        grown = keep + rest[: MAX_CORPUS - 20]
    return grown
