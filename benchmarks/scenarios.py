"""The links the benchmark runs on: a loss x RTT x rate grid, named special cases, and presets.

A scenario is a netsim link string (both directions alike unless the string says otherwise) plus
a name. Blackout times in a scenario count from the moment timing starts (the first measured
image), not from the link's creation: the runner shifts them (``Scenario.spec(offset)``), so a
blackout lands in mid-transfer whatever the set-up took.

Users pick from the presets, override the grid's axes (``--loss``, ``--rtt``, ``--rate``), pick
scenarios by name, or add their own link strings (``--link "NAME: LINK"``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from netsim.spec import DirectionSpec, LinkSpec, SpecError, parse_link

__all__ = [
    "DEFAULT_QUEUE",
    "LOSSES",
    "PRESETS",
    "RATES_MBIT",
    "RTTS_MS",
    "SPECIALS",
    "TRACES_DIR",
    "Preset",
    "Scenario",
    "ScenarioError",
    "catalog",
    "custom_scenario",
    "grid",
    "select",
]

# The axes of the full grid (the values).
LOSSES: tuple[float, ...] = (0.0, 1.0, 5.0, 10.0, 20.0, 30.0)  # percent, both directions
RTTS_MS: tuple[float, ...] = (10.0, 50.0, 100.0, 300.0, 600.0)
RATES_MBIT: tuple[float, ...] = (10.0, 50.0)
# DESIGN.md's bar was measured with a 250 kB drop-tail queue.
DEFAULT_QUEUE = "250kb"

_DIRECTION_LABELS = {"fwd", "rev", "both", "up", "down"}


class ScenarioError(ValueError):
    """A scenario that cannot be built (bad link string, unknown name)."""


@dataclass(frozen=True)
class Scenario:
    """One link to run every transport over."""

    name: str
    link: str
    description: str = ""
    on_grid: bool = False  # part of a loss sweep: plotted against loss, one figure per (rate, RTT)

    @cached_property
    def base(self) -> LinkSpec:
        try:
            return parse_link(self.link)
        except SpecError as exc:
            raise ScenarioError(f"scenario {self.name!r}: {exc}") from None

    def spec(self, blackout_offset: float = 0.0) -> LinkSpec:
        """The link to build, blackouts moved ``blackout_offset`` seconds later (see module doc)."""
        base = self.base
        if not blackout_offset or not self.has_blackout:
            return base
        return LinkSpec(_shift(base.fwd, blackout_offset), _shift(base.rev, blackout_offset))

    @property
    def has_blackout(self) -> bool:
        return bool(self.base.fwd.blackouts or self.base.rev.blackouts)

    @property
    def blackout_total_s(self) -> float:
        return sum(end - start for start, end in self.base.fwd.blackouts)

    # What the physical limit and the plots need, read from the data (fwd) direction.
    @property
    def rate_bps(self) -> float | None:
        fwd = self.base.fwd
        if fwd.rate is not None:
            return fwd.rate
        return fwd.rate_trace.mean_rate() if fwd.rate_trace is not None else None

    @property
    def loss(self) -> float:
        """Average loss probability of the data direction (0..1)."""
        return self.base.fwd.loss.loss_rate() if self.base.fwd.loss is not None else 0.0

    @property
    def reverse_loss(self) -> float:
        return self.base.rev.loss.loss_rate() if self.base.rev.loss is not None else 0.0

    @property
    def one_way_s(self) -> float:
        return self.base.fwd.delay

    @property
    def rtt_s(self) -> float:
        return self.base.fwd.delay + self.base.rev.delay

    @property
    def queue(self) -> str:
        queue = self.base.fwd.effective_queue()
        if queue is None:
            return "none"
        amount, unit = queue
        return f"{amount} {unit}"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "link": self.link,
            "description": self.description,
            "on_grid": self.on_grid,
            "rate_bps": self.rate_bps,
            "loss": self.loss,
            "reverse_loss": self.reverse_loss,
            "rtt_s": self.rtt_s,
            "one_way_s": self.one_way_s,
            "queue": self.queue,
            "blackout_s": self.blackout_total_s,
        }


def _shift(direction: DirectionSpec, offset: float) -> DirectionSpec:
    return replace(direction, blackouts=tuple((a + offset, b + offset) for a, b in direction.blackouts))


def _num(value: float) -> str:
    return f"{value:g}"


def grid(
    losses: Iterable[float],
    rtts_ms: Iterable[float],
    rates_mbit: Iterable[float],
    *,
    queue: str = DEFAULT_QUEUE,
    jitter_ms: float | None = None,
) -> list[Scenario]:
    """Every (rate, RTT, loss) combination, loss innermost; loss applies to both directions."""
    out = []
    for rate, rtt, loss in itertools.product(rates_mbit, rtts_ms, losses):
        if not (0 <= loss < 100):
            raise ScenarioError(f"loss must be from 0 to below 100 percent, not {loss:g}")
        if rtt < 0 or rate <= 0:
            raise ScenarioError("RTT must be >= 0 ms and rate > 0 Mbit/s")
        link = f"rate={_num(rate)}mbit queue={queue} rtt={_num(rtt)}ms loss={_num(loss)}%"
        name = f"{_num(rate)}mbit {_num(rtt)}ms {_num(loss)}%"
        if jitter_ms:
            link += f" jitter={_num(jitter_ms)}ms"
            name += f" jitter{_num(jitter_ms)}ms"
        out.append(Scenario(name, link, f"{_num(loss)}% loss both ways, {_num(rtt)} ms RTT, {_num(rate)} Mbit/s",
                            on_grid=True))
    return out


TRACES_DIR = Path(__file__).resolve().parent / "traces"


def _trace(name: str) -> str:
    """``ratetrace=`` for one of the shipped traces, so that a named scenario works from any
    directory. Link strings split at spaces: a checkout whose path has one gets the relative path."""
    path = str(TRACES_DIR / f"{name}.trace")
    if any(ch.isspace() for ch in path):
        path = os.path.relpath(path)
    return f"ratetrace={path}"


# A bottleneck whose rate changes (benchmarks/traces/README.md), behind a 100 kB queue at 80 ms.
_TRACE_LINK = "queue=100kb rtt=80ms"

# Named cases off the loss grid. Each keeps the 50 Mbit/s, 250 kB bottleneck unless it is about rate.
SPECIALS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("jitter", f"rate=50mbit queue={DEFAULT_QUEUE} rtt=100ms jitter=10ms loss=1%",
                 "100 ms RTT, normal jitter of 10 ms (it reorders, as netem does), 1% loss"),
        Scenario("bursts", f"rate=50mbit queue={DEFAULT_QUEUE} rtt=50ms ge=1%,30%",
                 "Gilbert-Elliott bursts: 3.2% loss on average in bursts of 3.3 packets, 50 ms RTT"),
        Scenario("bursts-heavy", f"rate=50mbit queue={DEFAULT_QUEUE} rtt=100ms ge=4%,20%",
                 "Gilbert-Elliott bursts: 16.7% loss on average in bursts of 5 packets, 100 ms RTT"),
        Scenario("blackout", f"rate=50mbit queue={DEFAULT_QUEUE} rtt=50ms loss=1% blackout=0.05s-1.05s",
                 "a 1 s blackout starting 50 ms into the first image, 1% loss, 50 ms RTT"),
        Scenario("cap10", f"rate=10mbit queue={DEFAULT_QUEUE} rtt=50ms loss=5%",
                 "a 10 Mbit/s cap, 5% loss, 50 ms RTT"),
        Scenario("shallow-queue", "rate=50mbit queue=15kb rtt=100ms loss=1%",
                 "a 15 kB queue (2.4 ms at 50 Mbit/s, 2% of the path's BDP): overrun shows as drops, not delay; "
                 "100 ms RTT, 1% loss"),
        Scenario("satellite", f"rate=10mbit queue={DEFAULT_QUEUE} rtt=600ms jitter=5ms fifo loss=2%",
                 "geostationary-like: 600 ms RTT, 10 Mbit/s, 2% loss, jitter without reordering"),
        Scenario("trace-steps", f"{_trace('steps')} {_TRACE_LINK}",
                 "the rate steps through 50, 5, 20 and 2 Mbit/s, 0.5 s each; 80 ms RTT, 100 kB queue"),
        Scenario("trace-cell", f"{_trace('cell')} {_TRACE_LINK}",
                 "cellular-like: 30, 3, 12, 1 and 40 Mbit/s, 0.2 s each; 80 ms RTT, 100 kB queue"),
        Scenario("trace-random", f"{_trace('random')} {_TRACE_LINK} loss=1%",
                 "random steps of 0.5-40 Mbit/s held 50-450 ms (11.7 on average), 1% loss; 80 ms RTT, 100 kB queue"),
        Scenario("trace-drop", f"{_trace('drop')} {_TRACE_LINK}",
                 "50 Mbit/s for 2 s, then 10 for 4 s; 80 ms RTT, 100 kB queue"),
        Scenario("trace-rise", f"{_trace('rise')} {_TRACE_LINK}",
                 "5 Mbit/s for 2 s, then 40 for 4 s; 80 ms RTT, 100 kB queue"),
    )
}


@dataclass(frozen=True)
class Preset:
    description: str
    grids: tuple[tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]], ...]  # (losses, RTTs, rates)
    specials: tuple[str, ...] = ()
    sizes: tuple[int, ...] = (64 << 10, 256 << 10, 1 << 20)
    repeat: int = 1
    timeout: float = 60.0

    def scenarios(self, queue: str = DEFAULT_QUEUE) -> list[Scenario]:
        out: list[Scenario] = []
        for losses, rtts, rates in self.grids:
            out += grid(losses, rtts, rates, queue=queue)
        out += [_requeued(SPECIALS[name], queue) for name in self.specials]
        return _unique(out)

    @property
    def axes(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """The first grid's (losses, RTTs, rates): what axes not overridden by options keep."""
        return self.grids[0]


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "two scenarios (0% and 5% loss at 50 ms RTT, 50 Mbit/s), 64 KiB / 256 KiB / 1 MiB, one seed",
        grids=(((0.0, 5.0), (50.0,), (50.0,)),),
        timeout=30.0,
    ),
    "standard": Preset(
        "loss 0-30% at 50 ms RTT, 0/5/20% at 300 ms, bursts, blackout, jitter, 10 Mbit/s; two seeds",
        grids=(((0.0, 1.0, 5.0, 10.0, 20.0, 30.0), (50.0,), (50.0,)), ((0.0, 5.0, 20.0), (300.0,), (50.0,))),
        specials=("bursts", "blackout", "jitter", "cap10"),
        repeat=2,
    ),
    "full": Preset(
        "the whole grid: loss 0-30% x RTT 10-600 ms x 10 and 50 Mbit/s, every special case; three seeds",
        grids=((LOSSES, RTTS_MS, RATES_MBIT),),
        specials=tuple(SPECIALS),
        repeat=3,
    ),
}


def _requeued(scenario: Scenario, queue: str) -> Scenario:
    if queue == DEFAULT_QUEUE:
        return scenario
    return replace(scenario, link=scenario.link.replace(f"queue={DEFAULT_QUEUE}", f"queue={queue}"))


def _unique(scenarios: Sequence[Scenario]) -> list[Scenario]:
    seen: dict[str, Scenario] = {}
    for scenario in scenarios:
        seen.setdefault(scenario.name, scenario)
    return list(seen.values())


def catalog(queue: str = DEFAULT_QUEUE) -> dict[str, Scenario]:
    """Every named scenario: the full grid and the special cases."""
    return {s.name: s for s in PRESETS["full"].scenarios(queue)}


def custom_scenario(text: str, index: int, queue: str = DEFAULT_QUEUE) -> Scenario:
    """``--link "[NAME:] LINK"``; the bottleneck queue defaults to the benchmark's when a rate is set."""
    name = f"link{index}"
    body = text.strip()
    first, _, rest = body.partition(" ")
    if first.endswith(":") and first[:-1] and first[:-1].lower() not in _DIRECTION_LABELS:
        name, body = first[:-1], rest.strip()
    scenario = Scenario(name, body, "given with --link")
    spec = scenario.base  # validates
    if spec.fwd.has_bottleneck and spec.fwd.queue_bytes is None and spec.fwd.queue_packets is None:
        scenario = Scenario(name, f"{body} queue={queue}", scenario.description)
        scenario.base  # noqa: B018 (validate the amended string now, not in mid-run)
    return scenario


def select(
    preset: Preset,
    *,
    losses: Sequence[float] | None = None,
    rtts_ms: Sequence[float] | None = None,
    rates_mbit: Sequence[float] | None = None,
    jitter_ms: float | None = None,
    queue: str = DEFAULT_QUEUE,
    links: Sequence[str] = (),
    names: Sequence[str] = (),
) -> list[Scenario]:
    """The scenarios to run: the preset's, or a grid with overridden axes, named ones, custom links.

    Overriding any axis replaces the preset's scenarios by one grid (axes not given keep the
    preset's first grid's values); names and links add to that, or replace the preset when alone.
    """
    out: list[Scenario] = []
    if losses is not None or rtts_ms is not None or rates_mbit is not None or jitter_ms:
        p_losses, p_rtts, p_rates = preset.axes
        out += grid(
            losses if losses is not None else p_losses,
            rtts_ms if rtts_ms is not None else p_rtts,
            rates_mbit if rates_mbit is not None else p_rates,
            queue=queue,
            jitter_ms=jitter_ms,
        )
    if names:
        known = {**catalog(queue), **{s.name: s for s in preset.scenarios(queue)}}
        for name in names:
            if name not in known:
                raise ScenarioError(f"unknown scenario {name!r}; `snip bench --list-scenarios` lists them")
            out.append(known[name])
    out += [custom_scenario(text, i + 1, queue) for i, text in enumerate(links)]
    if not out:
        out = preset.scenarios(queue)
    return _unique(out)
