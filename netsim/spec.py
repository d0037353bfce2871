"""Link specifications: what an impaired link does, per direction, and the link-string syntax.

A link has two directions. *fwd* carries client -> server traffic (relay: listener -> upstream;
TUN: namespace A -> namespace B; simulator: ``connect(a, b)`` makes a -> b the fwd direction);
*rev* carries the replies. Each direction has its own settings and its own random streams.

Link strings
============

A link string is a list of whitespace-separated tokens, optionally split into sections by ``|``::

    link     := section ( "|" section )*
    section  := [ dir ":" ] token*
    dir      := fwd | rev | both | up | down          (up = fwd, down = rev)
    token    := KEY "=" VALUE | DIR "." KEY "=" VALUE | FLAG | PRESET

A section without a ``dir:`` label applies to both directions. ``fwd.KEY=VALUE`` sets one key for one
direction wherever it appears. Tokens apply left to right, so later tokens override earlier ones
(a preset followed by ``loss=2%`` keeps the preset but changes its loss). Examples::

    loss=5% delay=50ms jitter=10ms rate=20mbit queue=100kb
    ge=1%,30% rtt=200ms
    congested-4g loss=2%
    delay=20ms | fwd: rate=5mbit queue=50kb | rev: rate=50mbit loss=1%
    rate=10mbit fwd.loss=10%

Values
------

- PROB: ``5%`` (percent) or ``0.05`` (a fraction between 0 and 1). ``loss=5`` is an error.
- TIME: a number with a unit: ``us``, ``ms``, ``s`` (``usec``, ``msec``, ``sec`` also accepted);
  ``0`` may be written bare.
- RATE: bits per second with a unit: ``bit``, ``kbit``, ``mbit``, ``gbit`` (SI: 1 kbit = 1000 bit).
  ``kbps``/``mbps`` are refused as ambiguous (tc reads them as bytes per second).
- SIZE: bytes ``b``, ``kb`` (1000), ``mb`` (10^6), ``kib`` (1024), ``mib``; or packets ``p``/``pkt``.

Keys
----

Loss (one loss model per direction; the last one given wins):

- ``loss=PROB``: independent (Bernoulli) loss.
- ``ge=p[,r[,1-h[,1-k]]]`` (alias ``gemodel``): Gilbert-Elliott as in netem's ``loss gemodel``: p is
  the good->bad and r the bad->good transition probability per packet, 1-h the loss probability in
  the bad state and 1-k in the good state. Defaults as in tc: r = 1-p, 1-h = 100%, 1-k = 0%. With
  1-h = 100% and 1-k = 0% the mean loss-burst length is 1/r and the loss rate p/(p+r).
- ``state=p13[,p31[,p32[,p23[,p14]]]]`` (alias ``loss4``): netem's 4-state Markov model (states:
  1 good in a gap, 2 good in a burst, 3 lost in a burst, 4 isolated loss). A packet is lost when
  the chain enters state 3 or 4. Defaults as in tc: p31 = 1-p13, p32 = 0, p23 = 1, p14 = 0.
- ``losstrace=PATH``: a file of ``0``/``1`` characters (1 = lost), one per packet, repeated
  cyclically; whitespace and ``#`` comments are ignored. ``lossseq=0010011`` gives the same inline.

Delay:

- ``delay=TIME``: one-way propagation delay. ``rtt=TIME`` sets ``delay=TIME/2`` in both directions
  (only outside direction sections).
- ``jitter=TIME`` and ``dist=normal|uniform|pareto`` (alias ``distribution``; default normal, as
  netem): normal has standard deviation *jitter*; uniform spreads over delay +- jitter; pareto has
  a heavy right tail (shape 3) with mean *delay* and standard deviation *jitter*. A sampled delay
  below zero is taken as zero.
- ``fifo`` (or ``fifo=on``): jitter never reorders: a packet is never delivered before one sent
  earlier in the same direction.

Reordering, duplication, corruption, size:

- ``reorder=PROB[,GAP]``: netem's reordering: after every reordered packet the next GAP-1 packets
  (default GAP 1) are delayed normally; then each packet, with probability PROB, skips the delay
  and jitter (it still queues at the bottleneck) and so overtakes packets sent before it. Needs a
  delay or jitter. The reordering rate is 1 / (GAP-1 + 1/PROB).
- ``dup=PROB`` (alias ``duplicate``): the packet is delivered twice; each copy goes through
  corruption, the bottleneck and the delay on its own. A lost packet is not duplicated.
- ``corrupt=PROB``: one random bit of the packet is flipped (netem flips one bit too).
- ``mtu=BYTES``: packets whose size on the wire exceeds it are dropped (cause ``mtu``).

Bottleneck:

- ``rate=RATE``: serialisation at RATE through a drop-tail queue (FIFO, shared by all traffic in
  that direction). The size on the wire includes the face's header overhead (28 bytes of IPv4+UDP
  headers in the simulator and the relay; TUN packets are whole IP packets already).
- ``ratetrace=PATH``: mahimahi's format instead of a fixed rate: each line is a time in ms at which
  1500 bytes may leave the queue (repeat a line for more); the trace repeats with a period equal to
  its last time; opportunities with nothing queued are wasted; accounting is by byte.
- ``queue=SIZE``: the drop-tail limit in bytes or packets, counting the packet being sent; an
  empty queue always admits a packet. Default with a bottleneck: 1000 packets.

Outages:

- ``blackout=T1-T2[,T3-T4...]``: the link is down from T1 to T2 (times since the link started):
  packets entering it then are dropped (cause ``blackout``). Repeated ``blackout=`` tokens add up.

Presets
=======

See ``PRESETS`` (``snip netsim presets`` lists them). Inside a ``fwd:`` or ``rev:`` section a
preset contributes only its settings for that direction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeAlias

__all__ = [
    "DEFAULT_QUEUE_PACKETS",
    "PRESETS",
    "PRESET_NOTES",
    "Bernoulli",
    "DirectionSpec",
    "Distribution",
    "FourState",
    "GilbertElliott",
    "LinkSpec",
    "LossModel",
    "LossTrace",
    "RateTrace",
    "SpecError",
    "parse_link",
]

# A bottleneck with no explicit queue gets Linux's default txqueuelen.
DEFAULT_QUEUE_PACKETS = 1000
# mahimahi: every delivery opportunity may carry this many bytes.
TRACE_OPPORTUNITY_BYTES = 1500

Distribution: TypeAlias = Literal["normal", "uniform", "pareto"]
DISTRIBUTIONS: tuple[str, ...] = ("normal", "uniform", "pareto")


class SpecError(ValueError):
    """A link string or link setting that cannot be used; the message names the bad token."""


# --------------------------------------------------------------------------- loss models


def _check_prob(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise SpecError(f"{name} must be between 0% and 100%, got {value * 100:g}%")


@dataclass(frozen=True)
class Bernoulli:
    """Independent loss with probability ``p``."""

    p: float

    def __post_init__(self) -> None:
        _check_prob("loss", self.p)

    def loss_rate(self) -> float:
        return self.p


@dataclass(frozen=True)
class GilbertElliott:
    """netem's gemodel: ``p`` good->bad, ``r`` bad->good, loss ``loss_bad`` (1-h) / ``loss_good`` (1-k)."""

    p: float
    r: float
    loss_bad: float = 1.0
    loss_good: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p", "r", "loss_bad", "loss_good"):
            _check_prob(f"ge {name}", getattr(self, name))

    def loss_rate(self) -> float:
        """Stationary loss probability."""
        if self.p + self.r == 0:
            return self.loss_good
        bad = self.p / (self.p + self.r)
        return bad * self.loss_bad + (1 - bad) * self.loss_good


@dataclass(frozen=True)
class FourState:
    """netem's 4-state Markov loss model (``loss state p13 p31 p32 p23 p14``)."""

    p13: float
    p31: float
    p32: float = 0.0
    p23: float = 1.0
    p14: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p13", "p31", "p32", "p23", "p14"):
            _check_prob(f"state {name}", getattr(self, name))
        if self.p13 + self.p14 > 1.0 + 1e-12:
            raise SpecError("state: p13 + p14 must not exceed 100%")
        if self.p31 + self.p32 > 1.0 + 1e-12:
            raise SpecError("state: p31 + p32 must not exceed 100%")

    def loss_rate(self) -> float:
        """Stationary loss probability (share of time in states 3 and 4), by power iteration."""
        pi = [1.0, 0.0, 0.0, 0.0]
        for _ in range(20000):
            s1, s2, s3, s4 = pi
            nxt = [
                s1 * (1 - self.p13 - self.p14) + s3 * self.p31 + s4,
                s2 * (1 - self.p23) + s3 * self.p32,
                s1 * self.p13 + s2 * self.p23 + s3 * (1 - self.p31 - self.p32),
                s1 * self.p14,
            ]
            # Average with the previous step so periodic chains converge too.
            nxt = [(a + b) / 2 for a, b in zip(pi, nxt, strict=True)]
            if max(abs(a - b) for a, b in zip(pi, nxt, strict=True)) < 1e-13:
                pi = nxt
                break
            pi = nxt
        return pi[2] + pi[3]


@dataclass(frozen=True)
class LossTrace:
    """A cyclic per-packet loss pattern: ``pattern[i]`` is 1 when the i-th packet is lost."""

    pattern: bytes
    source: str = ""  # file it came from, "" when given inline

    def __post_init__(self) -> None:
        if not self.pattern:
            raise SpecError("loss trace is empty")
        if any(b not in (0, 1) for b in self.pattern):
            raise SpecError("loss trace may hold only 0 and 1")

    def loss_rate(self) -> float:
        return sum(self.pattern) / len(self.pattern)


LossModel: TypeAlias = Bernoulli | GilbertElliott | FourState | LossTrace


@dataclass(frozen=True)
class RateTrace:
    """A mahimahi delivery trace: times in ms of 1500-byte delivery opportunities, repeated."""

    times_ms: tuple[int, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if not self.times_ms:
            raise SpecError("rate trace is empty")
        if any(t < 0 for t in self.times_ms):
            raise SpecError("rate trace times must not be negative")
        if any(b < a for a, b in zip(self.times_ms, self.times_ms[1:], strict=False)):
            raise SpecError("rate trace times must not decrease")
        if self.times_ms[-1] <= 0:
            raise SpecError("rate trace must end after 0 ms (its last time is its period)")

    @property
    def period_ms(self) -> int:
        return self.times_ms[-1]

    def mean_rate(self) -> float:
        """Average capacity in bits per second."""
        return len(self.times_ms) * TRACE_OPPORTUNITY_BYTES * 8 / (self.period_ms / 1000.0)


# --------------------------------------------------------------------------- direction and link


@dataclass(frozen=True)
class DirectionSpec:
    """Everything one direction of a link does to the packets crossing it (times in seconds)."""

    loss: LossModel | None = None
    delay: float = 0.0
    jitter: float = 0.0
    distribution: Distribution = "normal"
    fifo: bool = False
    reorder: float = 0.0
    reorder_gap: int = 1
    duplicate: float = 0.0
    corrupt: float = 0.0
    rate: float | None = None  # bits per second
    rate_trace: RateTrace | None = None
    queue_bytes: int | None = None
    queue_packets: int | None = None
    blackouts: tuple[tuple[float, float], ...] = ()
    mtu: int | None = None

    def __post_init__(self) -> None:
        for name in ("delay", "jitter"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise SpecError(f"{name} must be a finite time >= 0, got {value!r}")
        if self.distribution not in DISTRIBUTIONS:
            known = ", ".join(DISTRIBUTIONS)
            raise SpecError(f"unknown delay distribution {self.distribution!r} (use {known})")
        for name in ("reorder", "duplicate", "corrupt"):
            _check_prob(name, getattr(self, name))
        if self.reorder_gap < 1:
            raise SpecError(f"reorder gap must be >= 1, got {self.reorder_gap}")
        if self.reorder > 0 and self.delay == 0 and self.jitter == 0:
            raise SpecError("reorder needs a delay or jitter (a reordered packet skips the delay)")
        if self.rate is not None and (not math.isfinite(self.rate) or self.rate <= 0):
            raise SpecError(f"rate must be > 0, got {self.rate!r}")
        if self.rate is not None and self.rate_trace is not None:
            raise SpecError("give either rate or ratetrace, not both")
        if self.queue_bytes is not None and self.queue_packets is not None:
            raise SpecError("give the queue limit in bytes or in packets, not both")
        if self.queue_bytes is not None and self.queue_bytes <= 0:
            raise SpecError(f"queue must be > 0 bytes, got {self.queue_bytes}")
        if self.queue_packets is not None and self.queue_packets <= 0:
            raise SpecError(f"queue must be > 0 packets, got {self.queue_packets}")
        for start, end in self.blackouts:
            if not (0 <= start < end) or not math.isfinite(end):
                raise SpecError(f"blackout must run from T1 >= 0 to a later T2, got {start:g}s-{end:g}s")
        if self.mtu is not None and self.mtu <= 0:
            raise SpecError(f"mtu must be > 0 bytes, got {self.mtu}")

    @property
    def has_bottleneck(self) -> bool:
        return self.rate is not None or self.rate_trace is not None

    def effective_queue(self) -> tuple[int, str] | None:
        """The queue limit as (amount, "bytes"|"packets"), default applied; None without bottleneck."""
        if not self.has_bottleneck:
            return None
        if self.queue_bytes is not None:
            return self.queue_bytes, "bytes"
        if self.queue_packets is not None:
            return self.queue_packets, "packets"
        return DEFAULT_QUEUE_PACKETS, "packets"

    def is_perfect(self) -> bool:
        return self == DirectionSpec()

    def to_tokens(self) -> list[str]:
        """Canonical link-string tokens for this direction (parse them back to get an equal spec)."""
        out: list[str] = []
        loss = self.loss
        if isinstance(loss, Bernoulli):
            out.append(f"loss={_fmt_prob(loss.p)}")
        elif isinstance(loss, GilbertElliott):
            parts = [loss.p, loss.r, loss.loss_bad, loss.loss_good]
            out.append("ge=" + ",".join(_fmt_prob(v) for v in parts))
        elif isinstance(loss, FourState):
            parts = [loss.p13, loss.p31, loss.p32, loss.p23, loss.p14]
            out.append("state=" + ",".join(_fmt_prob(v) for v in parts))
        elif isinstance(loss, LossTrace):
            if loss.source:
                out.append(f"losstrace={loss.source}")
            else:
                out.append("lossseq=" + "".join(str(b) for b in loss.pattern))
        if self.delay:
            out.append(f"delay={_fmt_time(self.delay)}")
        if self.jitter:
            out.append(f"jitter={_fmt_time(self.jitter)}")
            if self.distribution != "normal":
                out.append(f"dist={self.distribution}")
        if self.fifo:
            out.append("fifo")
        if self.reorder:
            gap = f",{self.reorder_gap}" if self.reorder_gap != 1 else ""
            out.append(f"reorder={_fmt_prob(self.reorder)}{gap}")
        if self.duplicate:
            out.append(f"dup={_fmt_prob(self.duplicate)}")
        if self.corrupt:
            out.append(f"corrupt={_fmt_prob(self.corrupt)}")
        if self.rate is not None:
            out.append(f"rate={_fmt_rate(self.rate)}")
        if self.rate_trace is not None:
            if not self.rate_trace.source:
                raise SpecError("a rate trace built in code has no file to name in a link string")
            out.append(f"ratetrace={self.rate_trace.source}")
        if self.queue_bytes is not None:
            qb = self.queue_bytes
            out.append(f"queue={qb // 1000}kb" if qb % 1000 == 0 else f"queue={qb}b")
        if self.queue_packets is not None:
            out.append(f"queue={self.queue_packets}p")
        if self.blackouts:
            out.append("blackout=" + ",".join(f"{_fmt_time(a)}-{_fmt_time(b)}" for a, b in self.blackouts))
        if self.mtu is not None:
            out.append(f"mtu={self.mtu}")
        return out

    def describe(self) -> list[tuple[str, str]]:
        """Human-readable (setting, value) rows with defaults made explicit."""
        rows: list[tuple[str, str]] = []
        loss = self.loss
        if loss is None:
            rows.append(("loss", "none"))
        elif isinstance(loss, Bernoulli):
            rows.append(("loss", f"{_show_prob(loss.p)} independent (Bernoulli)"))
        elif isinstance(loss, GilbertElliott):
            burst = f", mean burst {1 / loss.r:.3g} packets" if loss.r > 0 and loss.loss_bad == 1 else ""
            rows.append((
                "loss",
                f"Gilbert-Elliott p={_show_prob(loss.p)} r={_show_prob(loss.r)} "
                f"1-h={_show_prob(loss.loss_bad)} 1-k={_show_prob(loss.loss_good)} "
                f"(average {_show_prob(loss.loss_rate())}{burst})",
            ))
        elif isinstance(loss, FourState):
            rows.append((
                "loss",
                f"4-state p13={_show_prob(loss.p13)} p31={_show_prob(loss.p31)} p32={_show_prob(loss.p32)} "
                f"p23={_show_prob(loss.p23)} p14={_show_prob(loss.p14)} "
                f"(average {_show_prob(loss.loss_rate())})",
            ))
        else:
            src = loss.source or "inline"
            rows.append((
                "loss",
                f"trace {src}: {len(loss.pattern)} packets, {_show_prob(loss.loss_rate())} lost, repeated",
            ))
        delay = _fmt_time(self.delay)
        if self.jitter:
            delay += f" + {self.distribution} jitter {_fmt_time(self.jitter)}"
        rows.append(("delay", delay + (" (kept in order)" if self.fifo else "")))
        if self.reorder:
            rows.append(("reorder", f"{_show_prob(self.reorder)} gap {self.reorder_gap}"))
        if self.duplicate:
            rows.append(("duplicate", _show_prob(self.duplicate)))
        if self.corrupt:
            rows.append(("corrupt", f"{_show_prob(self.corrupt)} (one bit flipped)"))
        if self.rate is not None:
            rows.append(("rate", _fmt_rate(self.rate)))
        elif self.rate_trace is not None:
            tr = self.rate_trace
            rows.append((
                "rate",
                f"trace {tr.source or 'inline'}: mean {_fmt_rate(tr.mean_rate())}, period {tr.period_ms} ms",
            ))
        else:
            rows.append(("rate", "unlimited"))
        queue = self.effective_queue()
        if queue is not None:
            amount, unit = queue
            rows.append(("queue", f"{amount} {unit} drop-tail" + ("" if self.queue_bytes or self.queue_packets
                                                                   else " (default)")))
        if self.blackouts:
            rows.append(("blackout", ", ".join(f"{_fmt_time(a)}-{_fmt_time(b)}" for a, b in self.blackouts)))
        if self.mtu is not None:
            rows.append(("mtu", f"{self.mtu} bytes"))
        return rows


@dataclass(frozen=True)
class LinkSpec:
    """A link: ``fwd`` (client -> server, A -> B) and ``rev`` settings."""

    fwd: DirectionSpec = field(default_factory=DirectionSpec)
    rev: DirectionSpec = field(default_factory=DirectionSpec)

    @classmethod
    def symmetric(cls, direction: DirectionSpec) -> LinkSpec:
        return cls(direction, direction)

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> LinkSpec:
        return parse_link(text)

    @classmethod
    def coerce(cls, spec: LinkSpec | DirectionSpec | str | None) -> LinkSpec:
        """Accept what the public APIs accept: a LinkSpec, one DirectionSpec for both ways, a string."""
        if spec is None:
            return cls()
        if isinstance(spec, LinkSpec):
            return spec
        if isinstance(spec, DirectionSpec):
            return cls.symmetric(spec)
        return parse_link(spec)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings of both directions (times in seconds, rates in bits/s)."""
        return {"fwd": _direction_dict(self.fwd), "rev": _direction_dict(self.rev)}

    def reversed(self) -> LinkSpec:
        return LinkSpec(self.rev, self.fwd)

    def to_string(self) -> str:
        """Canonical link string: ``parse_link(spec.to_string()) == spec``."""
        if self.fwd == self.rev:
            return " ".join(self.fwd.to_tokens())
        fwd = " ".join(self.fwd.to_tokens())
        rev = " ".join(self.rev.to_tokens())
        return f"fwd: {fwd} | rev: {rev}".rstrip()

    def describe(self) -> str:
        """A two-column table of the effective settings of both directions."""
        fwd = self.fwd.describe()
        rev = self.rev.describe()
        keys: list[str] = []
        for key, _ in fwd + rev:
            if key not in keys:
                keys.append(key)
        fwd_d, rev_d = dict(fwd), dict(rev)
        width = max(len(k) for k in keys)
        out = []
        for key in keys:
            a, b = fwd_d.get(key, "-"), rev_d.get(key, "-")
            if a == b:
                out.append(f"{key:{width}}  both: {a}")
            else:
                out.append(f"{key:{width}}  fwd:  {a}")
                out.append(f"{'':{width}}  rev:  {b}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_string() or "(perfect link)"


def _direction_dict(d: DirectionSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(d):
        value = getattr(d, f.name)
        if isinstance(value, LossTrace):
            value = {"model": "trace", "source": value.source, "packets": len(value.pattern),
                     "loss_rate": value.loss_rate()}
        elif isinstance(value, RateTrace):
            value = {"source": value.source, "period_ms": value.period_ms, "mean_rate": value.mean_rate()}
        elif isinstance(value, (Bernoulli, GilbertElliott, FourState)):
            name = {Bernoulli: "bernoulli", GilbertElliott: "gilbert-elliott", FourState: "4-state"}
            value = {"model": name[type(value)], **asdict(value), "loss_rate": value.loss_rate()}
        elif isinstance(value, tuple):
            value = [list(v) for v in value]
        out[f.name] = value
    queue = d.effective_queue()
    out["effective_queue"] = {"amount": queue[0], "unit": queue[1]} if queue else None
    return out


# --------------------------------------------------------------------------- value parsing

_NUM_RE = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)([a-zA-Zµ%]*)$")

# Divisors, not factors: 3.5 / 1000 is the float nearest 0.0035, so formatted times parse back exactly.
_TIME_UNITS = {"us": 1e6, "usec": 1e6, "µs": 1e6, "ms": 1e3, "msec": 1e3, "s": 1.0, "sec": 1.0}
_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_AMBIGUOUS_RATE = {"bps", "kbps", "mbps", "gbps", "b/s", "kb/s", "mb/s"}
_BYTE_UNITS = {"b": 1, "byte": 1, "bytes": 1, "kb": 1000, "mb": 1000_000, "kib": 1024, "mib": 1024 * 1024}
_PACKET_UNITS = {"p", "pkt", "pkts", "packet", "packets"}
_BOOLS = {
    "on": True, "yes": True, "true": True, "1": True,
    "off": False, "no": False, "false": False, "0": False,
}


def _split_number(text: str, what: str) -> tuple[float, str]:
    if text.startswith("-"):
        raise SpecError(f"{what} must not be negative")
    m = _NUM_RE.match(text)
    if not m:
        raise SpecError(f"{what}: {text!r} is not a number with an optional unit")
    return float(m.group(1)), m.group(2)


def parse_prob(text: str, what: str = "probability") -> float:
    """``5%`` -> 0.05; ``0.05`` -> 0.05; anything outside [0, 1] is an error."""
    value, unit = _split_number(text, what)
    if unit == "%":
        value /= 100.0
    elif unit:
        raise SpecError(f"{what}: unknown unit {unit!r} (write a percentage like 5% or a fraction like 0.05)")
    elif value > 1.0:
        raise SpecError(f"{what}: {text} is not a probability; write {text}% for percent or a fraction <= 1")
    if value > 1.0:
        raise SpecError(f"{what} must be between 0% and 100%, got {text}")
    return value


def parse_time(text: str, what: str = "time") -> float:
    """``50ms`` -> 0.05 seconds. A bare ``0`` is allowed; other bare numbers need a unit."""
    value, unit = _split_number(text, what)
    if not unit:
        if value == 0:
            return 0.0
        raise SpecError(f"{what}: {text!r} needs a unit (us, ms or s)")
    divisor = _TIME_UNITS.get(unit.lower())
    if divisor is None:
        raise SpecError(f"{what}: unknown time unit {unit!r} (use us, ms or s)")
    return value / divisor


def parse_rate(text: str, what: str = "rate") -> float:
    """``20mbit`` -> 20e6 bits per second."""
    value, unit = _split_number(text, what)
    lower = unit.lower()
    if lower in _AMBIGUOUS_RATE:
        raise SpecError(
            f"{what}: unit {unit!r} is ambiguous (tc reads it as bytes/s); "
            "write kbit, mbit or gbit for bits/s"
        )
    scale = _RATE_UNITS.get(lower)
    if scale is None:
        raise SpecError(f"{what}: {text!r} needs a rate unit (bit, kbit, mbit, gbit)")
    if value <= 0:
        raise SpecError(f"{what} must be > 0")
    return value * scale


def parse_size(text: str, what: str = "queue") -> tuple[int, str]:
    """``100kb`` -> (100000, "bytes"); ``50p`` -> (50, "packets")."""
    value, unit = _split_number(text, what)
    lower = unit.lower()
    if lower in _PACKET_UNITS:
        if value != int(value):
            raise SpecError(f"{what}: a packet count must be whole, got {text}")
        amount, kind = int(value), "packets"
    elif lower in _BYTE_UNITS:
        amount, kind = round(value * _BYTE_UNITS[lower]), "bytes"
    else:
        raise SpecError(
            f"{what}: {text!r} needs a unit (b, kb, mb, kib, mib for bytes; p or pkt for packets)"
        )
    if amount <= 0:
        raise SpecError(f"{what} must be > 0")
    return amount, kind


def _parse_bool(text: str, what: str) -> bool:
    try:
        return _BOOLS[text.lower()]
    except KeyError:
        raise SpecError(f"{what}: expected on or off, got {text!r}") from None


def _prob_list(text: str, what: str, low: int, high: int) -> list[float]:
    parts = [p for p in text.split(",")]
    if not (low <= len(parts) <= high) or any(not p for p in parts):
        raise SpecError(f"{what} takes {low} to {high} comma-separated probabilities, got {text!r}")
    return [parse_prob(p, what) for p in parts]


def _read_loss_trace(path: str) -> LossTrace:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(f"losstrace: cannot read {path!r}: {exc.strerror or exc}") from None
    bits = bytearray()
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        for ch in line:
            if ch in "01":
                bits.append(ord(ch) - 48)
            elif not ch.isspace() and ch != ",":
                raise SpecError(f"losstrace {path}:{lineno}: unexpected {ch!r} (only 0 and 1 are allowed)")
    if not bits:
        raise SpecError(f"losstrace {path}: no 0/1 values found")
    return LossTrace(bytes(bits), source=path)


def _read_rate_trace(path: str) -> RateTrace:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(f"ratetrace: cannot read {path!r}: {exc.strerror or exc}") from None
    times: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            value = int(line)
        except ValueError:
            raise SpecError(f"ratetrace {path}:{lineno}: {line!r} is not a whole number of ms") from None
        if times and value < times[-1]:
            raise SpecError(f"ratetrace {path}:{lineno}: times must not decrease ({value} after {times[-1]})")
        times.append(value)
    if not times:
        raise SpecError(f"ratetrace {path}: no delivery times found")
    try:
        return RateTrace(tuple(times), source=path)
    except SpecError as exc:
        raise SpecError(f"ratetrace {path}: {exc}") from None


# --------------------------------------------------------------------------- keys

# One direction's settings while parsing: DirectionSpec field name -> value.
Settings = dict[str, Any]
Setter = Callable[[Settings, str], None]

def _set_loss(s: Settings, v: str) -> None:
    p = parse_prob(v, "loss")
    s["loss"] = Bernoulli(p) if p > 0 else None


def _set_ge(s: Settings, v: str) -> None:
    vals = _prob_list(v, "ge", 1, 4)
    p = vals[0]
    r = vals[1] if len(vals) > 1 else 1.0 - p
    s["loss"] = GilbertElliott(p, r, vals[2] if len(vals) > 2 else 1.0, vals[3] if len(vals) > 3 else 0.0)


def _set_state(s: Settings, v: str) -> None:
    vals = _prob_list(v, "state", 1, 5)
    defaults = [0.0, 1.0 - vals[0], 0.0, 1.0, 0.0]  # tc's defaults for p31, p32, p23, p14
    vals += defaults[len(vals):]
    s["loss"] = FourState(*vals)


def _set_lossseq(s: Settings, v: str) -> None:
    if not v or any(ch not in "01" for ch in v):
        raise SpecError(f"lossseq takes a string of 0 and 1, got {v!r}")
    s["loss"] = LossTrace(bytes(ord(ch) - 48 for ch in v))


def _set_losstrace(s: Settings, v: str) -> None:
    s["loss"] = _read_loss_trace(v)


def _set_delay(s: Settings, v: str) -> None:
    s["delay"] = parse_time(v, "delay")


def _set_jitter(s: Settings, v: str) -> None:
    s["jitter"] = parse_time(v, "jitter")


def _set_dist(s: Settings, v: str) -> None:
    name = v.lower()
    if name not in DISTRIBUTIONS:
        raise SpecError(f"dist: unknown distribution {v!r} (use {', '.join(DISTRIBUTIONS)})")
    s["distribution"] = name


def _set_fifo(s: Settings, v: str) -> None:
    s["fifo"] = _parse_bool(v, "fifo")


def _set_reorder(s: Settings, v: str) -> None:
    prob, _, gap = v.partition(",")
    s["reorder"] = parse_prob(prob, "reorder")
    if gap:
        if not gap.isdigit() or int(gap) < 1:
            raise SpecError(f"reorder gap must be a whole number >= 1, got {gap!r}")
        s["reorder_gap"] = int(gap)
    else:
        s["reorder_gap"] = 1


def _set_dup(s: Settings, v: str) -> None:
    s["duplicate"] = parse_prob(v, "dup")


def _set_corrupt(s: Settings, v: str) -> None:
    s["corrupt"] = parse_prob(v, "corrupt")


def _set_rate(s: Settings, v: str) -> None:
    s["rate"] = parse_rate(v, "rate")
    s["rate_trace"] = None


def _set_ratetrace(s: Settings, v: str) -> None:
    s["rate_trace"] = _read_rate_trace(v)
    s["rate"] = None


def _set_queue(s: Settings, v: str) -> None:
    amount, kind = parse_size(v, "queue")
    s["queue_bytes"] = amount if kind == "bytes" else None
    s["queue_packets"] = amount if kind == "packets" else None


def _set_blackout(s: Settings, v: str) -> None:
    spans = list(s.get("blackouts", ()))
    for part in v.split(","):
        start, sep, end = part.partition("-")
        if not sep or not start or not end:
            raise SpecError(f"blackout takes T1-T2 (e.g. 2s-3.5s), got {part!r}")
        t1, t2 = parse_time(start, "blackout start"), parse_time(end, "blackout end")
        if t2 <= t1:
            raise SpecError(f"blackout {part!r} must end after it starts")
        spans.append((t1, t2))
    s["blackouts"] = tuple(sorted(spans))


def _set_mtu(s: Settings, v: str) -> None:
    value, unit = _split_number(v, "mtu")
    if unit.lower() not in ("", "b", "byte", "bytes") or value != int(value) or value < 1:
        raise SpecError(f"mtu takes a whole number of bytes, got {v!r}")
    s["mtu"] = int(value)


_SETTERS: dict[str, Setter] = {
    "loss": _set_loss,
    "ge": _set_ge,
    "gemodel": _set_ge,
    "state": _set_state,
    "loss4": _set_state,
    "losstrace": _set_losstrace,
    "lossseq": _set_lossseq,
    "delay": _set_delay,
    "jitter": _set_jitter,
    "dist": _set_dist,
    "distribution": _set_dist,
    "fifo": _set_fifo,
    "reorder": _set_reorder,
    "dup": _set_dup,
    "duplicate": _set_dup,
    "corrupt": _set_corrupt,
    "rate": _set_rate,
    "ratetrace": _set_ratetrace,
    "queue": _set_queue,
    "blackout": _set_blackout,
    "mtu": _set_mtu,
}
_FLAGS = {"fifo": "on"}
_BOTH_ONLY = {"rtt"}
KEYS: tuple[str, ...] = (*sorted(_SETTERS), "rtt")

_DIRS = {"fwd": ("fwd",), "up": ("fwd",), "rev": ("rev",), "down": ("rev",), "both": ("fwd", "rev")}

# Presets are link strings themselves. fwd = uplink (the image sender is the client).
PRESETS: dict[str, str] = {
    "lan": "delay=0.1ms rate=1gbit queue=1000p",
    "good-wifi": "delay=3ms jitter=1ms fifo loss=0.1% rate=100mbit queue=250kb",
    "congested-4g": "delay=40ms jitter=15ms fifo ge=1%,40% "
    "| fwd: rate=4mbit queue=200kb | rev: rate=12mbit queue=500kb",
    "satellite": "delay=300ms jitter=5ms fifo loss=0.5% "
    "| fwd: rate=5mbit queue=500kb | rev: rate=25mbit queue=2mb",
    "lossy-radio": "delay=25ms jitter=10ms dist=pareto ge=5%,25%,80% corrupt=0.1% rate=2mbit queue=60kb",
}
PRESET_NOTES: dict[str, str] = {
    "lan": "wired LAN: 0.2 ms RTT, 1 Gbit/s",
    "good-wifi": "home Wi-Fi on a good day: 6 ms RTT, 100 Mbit/s, 0.1% loss",
    "congested-4g": "busy cell: 80 ms RTT, bursty loss (~2.4%, bursts of 2.5), "
    "4 up / 12 down Mbit/s, deep buffers",
    "satellite": "geostationary: 600 ms RTT, 0.5% loss, 5 up / 25 down Mbit/s",
    "lossy-radio": "long-range radio: 50 ms RTT, heavy-tailed jitter (reorders), ~13% bursty loss, "
    "bit errors, 2 Mbit/s",
}


# --------------------------------------------------------------------------- parser


def _tokens(text: str | Iterable[str]) -> str:
    return text if isinstance(text, str) else " ".join(text)


def parse_link(text: str | Iterable[str]) -> LinkSpec:
    """Parse a link string (see the module docstring) into a LinkSpec; raises SpecError."""
    return _parse(_tokens(text), _seen_presets=())


def _parse(text: str, _seen_presets: tuple[str, ...]) -> LinkSpec:
    settings: dict[str, Settings] = {"fwd": {}, "rev": {}}
    _apply_text(text, settings, ("fwd", "rev"), _seen_presets)
    return LinkSpec(_build(settings["fwd"], "fwd"), _build(settings["rev"], "rev"))


_SECTION_RE = re.compile(r"^\s*([A-Za-z]+)\s*:(.*)$", re.S)


def _apply_text(
    text: str, settings: dict[str, Settings], allowed: tuple[str, ...], seen: tuple[str, ...]
) -> None:
    for section in text.split("|"):
        dirs: tuple[str, ...] = ("fwd", "rev")
        m = _SECTION_RE.match(section)
        if m:
            label = m.group(1).lower()
            if label not in _DIRS:
                raise SpecError(
                    f"unknown direction {m.group(1)!r} before ':' (use fwd, rev, both, up or down)"
                )
            dirs = _DIRS[label]
            section = m.group(2)
        for word in section.split():
            _apply_token(word, settings, tuple(d for d in dirs if d in allowed), seen)


def _apply_token(
    token: str, settings: dict[str, Settings], dirs: tuple[str, ...], seen: tuple[str, ...]
) -> None:
    key, eq, value = token.partition("=")
    key = key.lower()
    if not eq:
        if key in _FLAGS:
            key, value = key, _FLAGS[key]
        elif key in PRESETS:
            if key in seen:
                raise SpecError(f"preset {key!r} refers to itself")
            sub: dict[str, Settings] = {"fwd": {}, "rev": {}}
            _apply_text(PRESETS[key], sub, ("fwd", "rev"), (*seen, key))
            for d in dirs:
                settings[d].update(sub[d])
            return
        else:
            raise SpecError(
                f"unknown link token {token!r}: not KEY=VALUE, a flag or a preset "
                f"(presets: {', '.join(PRESETS)}; keys: {', '.join(KEYS)})"
            )
    prefix, dot, bare = key.partition(".")
    if dot:
        if prefix not in _DIRS:
            raise SpecError(f"bad link token {token!r}: unknown direction {prefix!r} (use fwd. or rev.)")
        dirs = _DIRS[prefix]
        key = bare
    if not value:
        raise SpecError(f"bad link token {token!r}: {key} needs a value")
    try:
        if key == "rtt":
            if dirs != ("fwd", "rev"):
                raise SpecError("rtt applies to both directions; in a direction section use delay=")
            half = parse_time(value, "rtt") / 2
            for d in dirs:
                settings[d]["delay"] = half
            return
        setter = _SETTERS.get(key)
        if setter is None:
            raise SpecError(f"unknown key {key!r} (keys: {', '.join(KEYS)}; presets: {', '.join(PRESETS)})")
        for d in dirs:
            setter(settings[d], value)
    except SpecError as exc:
        raise SpecError(f"bad link token {token!r}: {exc}") from None


def _build(settings: Settings, direction: str) -> DirectionSpec:
    try:
        return DirectionSpec(**settings)
    except SpecError as exc:
        raise SpecError(f"{direction}: {exc}") from None


# --------------------------------------------------------------------------- formatting


# --------------------------------------------------------------------------- formatting


def _fmt_exact(value: float, units: tuple[tuple[str, float], ...]) -> str:
    """Shortest text in the first unit that parses back to exactly ``value`` (value / divisor)."""
    for unit, divisor in units:
        text = f"{value * divisor:.12g}"
        if float(text) / divisor == value:
            return text + unit
    unit, divisor = units[-1]
    return repr(value * divisor) + unit


def _fmt_prob(p: float) -> str:
    if p == 0:
        return "0%"
    text = f"{p * 100:.12g}"
    return text + "%" if float(text) / 100 == p else repr(p)


def _show_prob(p: float) -> str:
    """For people: four significant digits."""
    return f"{p * 100:.4g}%"


def _fmt_time(t: float) -> str:
    if t == 0:
        return "0"
    if t >= 1:
        return _fmt_exact(t, (("s", 1.0), ("ms", 1e3)))
    if t >= 1e-3:
        return _fmt_exact(t, (("ms", 1e3), ("us", 1e6), ("s", 1.0)))
    return _fmt_exact(t, (("us", 1e6), ("s", 1.0)))


def _fmt_rate(bps: float) -> str:
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bps >= scale:
            text = f"{bps / scale:.12g}"
            if float(text) * scale == bps:
                return text + unit
    return repr(bps) + "bit"
