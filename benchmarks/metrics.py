"""Results and what is computed from them: per-image times, the physical limit, per-run and
per-(scenario, transport) summaries, and the targets of the issue.

Definitions (the README repeats them):

- delivery time: from the sender handing the image over to the receiver holding it, verified
  (the receiver's clock reading minus the sender's: both are the machine's monotonic clock);
- reply time: from handing it over to the sender holding the receiver's answer (classification);
- physical limit of an image: size / (rate x (1 - loss) x (MTU - 28) / MTU) + one-way delay: the
  data direction's bottleneck after random loss and the least header overhead any IP transport
  pays (IPv4 + UDP), plus propagation. Blackouts are not subtracted;
- fraction of the limit: the sum of the limits of the images divided by the sum of their delivery
  times (1.0 = as fast as physics allows); goodput: image bytes / delivery time;
- wire / image: bytes offered to the link in both directions (IP headers included) while the
  images were being sent, divided by the image bytes; the floor is 1 / (1 - loss).

An image that did not arrive within the timeout counts as taking the timeout: percentiles show
it as ``>T s`` and fractions and goodputs computed with it are upper bounds (``bound``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.scenarios import Scenario

__all__ = [
    "UDP_IPV4_HEADERS",
    "ImageResult",
    "RunResult",
    "Summary",
    "Target",
    "evaluate_targets",
    "limit_goodput_bps",
    "limit_seconds",
    "percentile",
    "summarise",
]

UDP_IPV4_HEADERS = 28
DEFAULT_MTU = 1500
OK = "ok"


@dataclass
class ImageResult:
    name: str
    size: int
    status: str  # ok | timeout | skipped | failed | corrupt
    delivery_s: float | None = None
    reply_s: float | None = None
    acked_s: float | None = None
    limit_s: float | None = None
    error: str | None = None
    classification: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status == OK and self.delivery_s is not None


@dataclass
class RunResult:
    """One transport over one scenario with one seed (or a row saying why it did not run)."""

    scenario: str
    link: str
    transport: str
    label: str
    seed: int
    repeat: int
    status: str  # ok | error | not installed | needs root
    note: str = ""
    mode: str = ""  # tun | relay
    images: list[ImageResult] = field(default_factory=list)
    timeout_s: float = 60.0
    image_bytes: int = 0
    wire: dict[str, dict[str, int]] = field(default_factory=dict)
    wire_bytes: int | None = None
    wire_ratio: float | None = None
    cpu_sender_s: float | None = None
    cpu_receiver_s: float | None = None
    setup_s: float | None = None
    cc: str | None = None
    mtu: int | None = None
    queue: str = ""
    loss: float = 0.0
    rtt_s: float = 0.0
    rate_bps: float | None = None
    blackout_missed: bool = False
    started_at: str = ""
    wall_s: float = 0.0
    sender_stats: dict[str, Any] = field(default_factory=dict)
    receiver_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        return self.status == OK

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        images = [ImageResult(**image) for image in data.get("images", [])]
        return cls(**{**data, "images": images})


def limit_goodput_bps(scenario: Scenario, mtu: int | None = None) -> float | None:
    """The best goodput the data direction allows; None for a link without a rate limit."""
    rate = scenario.rate_bps
    if rate is None:
        return None
    packet = mtu or DEFAULT_MTU
    return rate * (1.0 - scenario.loss) * (packet - UDP_IPV4_HEADERS) / packet


def limit_seconds(size: int, scenario: Scenario, mtu: int | None = None) -> float:
    goodput = limit_goodput_bps(scenario, mtu)
    transfer = size * 8 / goodput if goodput else 0.0
    return transfer + scenario.one_way_s


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (works with +inf for images that never arrived); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _times(images: Iterable[ImageResult], attr: str) -> list[float]:
    out = []
    for image in images:
        value = getattr(image, attr)
        out.append(float(value) if image.status == OK and value is not None else math.inf)
    return out


@dataclass
class Summary:
    """One (scenario, transport) over every seed: what the tables and plots show."""

    scenario: str
    transport: str
    label: str
    status: str
    note: str = ""
    runs: int = 0
    timeout_s: float = 60.0
    focus_size: int = 0  # the largest image: the percentiles below are of this size
    deliver_p50: float | None = None
    deliver_p95: float | None = None
    deliver_max: float | None = None
    reply_p50: float | None = None
    limit_s: float | None = None
    limit_fraction: float | None = None
    goodput_mbit: float | None = None
    bound: bool = False  # an image timed out: fraction and goodput are upper bounds
    wire_ratio: float | None = None
    wire_floor: float | None = None
    cpu_sender_s: float | None = None
    cpu_receiver_s: float | None = None
    delivered: int = 0
    images: int = 0
    per_size_p50: dict[int, float | None] = field(default_factory=dict)
    seed_p50s: list[float] = field(default_factory=list)  # per seed: median delivery of focus_size
    cc: str | None = None
    loss: float = 0.0
    rtt_s: float = 0.0
    rate_bps: float | None = None
    on_grid: bool = False

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.seed_p50s), max(self.seed_p50s)) if len(self.seed_p50s) > 1 else None

    @property
    def spread_stdev(self) -> float | None:
        finite = [x for x in self.seed_p50s if math.isfinite(x)]
        return statistics.stdev(finite) if len(finite) > 1 else None


def _mean(values: Iterable[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def summarise(runs: Sequence[RunResult], scenarios: dict[str, Scenario]) -> list[Summary]:
    """One Summary per (scenario, transport), in the order the runs were made."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.scenario, run.transport), []).append(run)
    out = []
    for (scenario_name, transport), group in groups.items():
        scenario = scenarios.get(scenario_name)
        first = group[0]
        summary = Summary(scenario_name, transport, first.label, first.status, first.note, timeout_s=first.timeout_s,
                          cc=first.cc, loss=first.loss, rtt_s=first.rtt_s, rate_bps=first.rate_bps,
                          on_grid=bool(scenario and scenario.on_grid))
        ran = [r for r in group if r.ran]
        if not ran:
            errors = [r for r in group if r.status == "error"]
            if errors:
                summary.status, summary.note = "error", errors[0].note
            out.append(summary)
            continue
        summary.status = OK
        summary.note = "; ".join(dict.fromkeys(r.note for r in group if r.note))
        summary.runs = len(ran)
        images = [image for run in ran for image in run.images]
        summary.images = len(images)
        summary.delivered = sum(1 for image in images if image.delivered)
        focus = max(image.size for image in images) if images else 0
        summary.focus_size = focus
        focused = [image for image in images if image.size == focus]
        deliver = _times(focused, "delivery_s")
        summary.deliver_p50 = percentile(deliver, 50)
        summary.deliver_p95 = percentile(deliver, 95)
        summary.deliver_max = max(deliver) if deliver else None
        summary.reply_p50 = percentile(_times(focused, "reply_s"), 50)
        summary.limit_s = focused[0].limit_s if focused else None
        for size in sorted({image.size for image in images}):
            summary.per_size_p50[size] = percentile(_times([i for i in images if i.size == size], "delivery_s"), 50)
        for run in ran:
            mine = [image for image in run.images if image.size == focus]
            if mine:
                seed_p50 = percentile(_times(mine, "delivery_s"), 50)
                if seed_p50 is not None:
                    summary.seed_p50s.append(seed_p50)
        spent = [image.delivery_s if image.delivered and image.delivery_s is not None else first.timeout_s
                 for image in images]
        summary.bound = any(not image.delivered for image in images)
        total_time = sum(spent)
        if total_time > 0:
            summary.goodput_mbit = sum(image.size for image in images) * 8 / total_time / 1e6
            limits = [image.limit_s for image in images]
            if all(limit is not None for limit in limits):
                summary.limit_fraction = sum(limit for limit in limits if limit is not None) / total_time
        summary.wire_ratio = _mean(run.wire_ratio for run in ran)
        summary.wire_floor = 1.0 / (1.0 - first.loss) if first.loss < 1 else None
        summary.cpu_sender_s = _mean(run.cpu_sender_s for run in ran)
        summary.cpu_receiver_s = _mean(run.cpu_receiver_s for run in ran)
        summary.cc = next((run.cc for run in ran if run.cc), None)
        out.append(summary)
    return out


@dataclass(frozen=True)
class Target:
    """One check of one target in one scenario: met, missed, or not measurable, with the figures."""

    target: str
    scenario: str
    verdict: str  # met | missed | n/a
    figures: str


def _compare(what: str, scenario: str, snip: Summary, other: str, theirs: float | None, factor: float) -> Target:
    """snip's delivery p50 against another transport's figure: ``factor`` times shorter (1: shorter)."""
    t = snip.timeout_s
    mine = snip.deliver_p50
    figures = f"snip {_fmt(mine, t)} vs {other} {_fmt(theirs, t)}"
    if mine is None or theirs is None:
        return Target(what, scenario, "n/a", figures)
    if not math.isfinite(mine):
        return Target(what, scenario, "missed" if math.isfinite(theirs) else "n/a", figures)
    # A peer that timed out took at least the timeout: the ratio is then a lower bound.
    lower_bound = not math.isfinite(theirs)
    ratio = (t if lower_bound else theirs) / max(mine, 1e-9)
    met = ratio > factor if factor == 1.0 else ratio >= factor
    verdict = "met" if met else ("n/a" if lower_bound else "missed")
    return Target(what, scenario, verdict, f"{figures} ({'>=' if lower_bound else ''}{ratio:.1f}x)")


def _fmt(seconds: float | None, timeout: float) -> str:
    if seconds is None:
        return "-"
    return f">{timeout:g} s" if not math.isfinite(seconds) else f"{seconds:.3g} s"


def evaluate_targets(summaries: Sequence[Summary]) -> list[Target]:
    """The issue's targets, checked scenario by scenario on snip's figures."""
    by: dict[str, dict[str, Summary]] = {}
    for s in summaries:
        if s.status == OK:
            by.setdefault(s.scenario, {})[s.transport] = s
    out: list[Target] = []
    for scenario, rows in by.items():
        snip = rows.get("snip")
        if snip is None:
            continue
        if snip.loss >= 0.05 - 1e-9:
            for other, factor, what, attr in (
                ("tcp-cubic", 10.0, "delivery >= 10x shorter than TCP CUBIC's", "deliver_p50"),
                ("tcp-bbr", 1.0, "delivery shorter than TCP BBR's", "deliver_p50"),
                ("email", 50.0, "delivery >= 50x shorter than email's round trip", "reply_p50"),
            ):
                peer = rows.get(other)
                if peer is not None:
                    out.append(_compare(what, scenario, snip, other, getattr(peer, attr), factor))
        if not snip.on_grid:
            continue  # the goodput and overhead targets are about the loss grid (no blackouts, no jitter)
        if snip.loss <= 0.20 + 1e-9 and snip.rtt_s <= 0.300 + 1e-9 and snip.limit_fraction is not None:
            verdict = "met" if snip.limit_fraction >= 0.9 and not snip.bound else "missed"
            out.append(Target("goodput >= 90% of the physical limit", scenario, verdict,
                              f"{snip.limit_fraction * 100:.0f}% of the limit ({snip.goodput_mbit or 0:.1f} Mbit/s)"))
        if snip.wire_ratio is not None and snip.wire_floor is not None:
            ceiling = 1.1 * snip.wire_floor
            verdict = "met" if snip.wire_ratio <= ceiling else "missed"
            out.append(Target("wire bytes within 10% of 1/(1-loss)", scenario, verdict,
                              f"{snip.wire_ratio:.4f} x image bytes (floor {snip.wire_floor:.4f}, ceiling {ceiling:.4f})"))
    return out
