"""The link model: decides the fate of every packet entering one direction of a link.

``DirectionModel.transmit(data, now)`` returns the deliveries of one packet: ``()`` when it is
dropped, ``((t, data),)`` normally, two entries when it is duplicated. ``t`` is the absolute time
(same clock as ``now``) at which the packet leaves the far end. All three faces (simulator, relay,
TUN forwarder) call it in the order packets arrive, with non-decreasing ``now``.

The pipeline, per packet (netem's order where netem has one, see sch_netem.c ``netem_enqueue``):

1. mtu: too big on the wire -> drop (cause ``mtu``);
2. blackout: the link is down -> drop (cause ``blackout``);
3. loss model -> drop (cause ``loss``);
4. duplication: a second copy; each copy then goes through 5-7 on its own;
5. corruption: one random bit flipped (the copy's bytes change);
6. bottleneck: fixed rate or mahimahi trace behind a drop-tail queue -> drop (cause ``queue``);
7. delay + jitter (or, for a reordered packet, none), optionally clamped to keep FIFO order.

Randomness: one master seed gives each direction its own seed (``derive_seed``), and each
mechanism (loss, delay, reorder, duplication, corruption) its own ``random.Random`` stream, so that
turning on jitter does not change which packets are lost, and the two directions are independent.
Same seed, same packets, same ``now`` values -> the same fates, bit for bit.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from netsim.spec import (
    TRACE_OPPORTUNITY_BYTES,
    Bernoulli,
    DirectionSpec,
    FourState,
    GilbertElliott,
    LinkSpec,
    LossModel,
    LossTrace,
    RateTrace,
)

__all__ = [
    "Delivery",
    "DirectionModel",
    "DirectionStats",
    "LinkModel",
    "derive_seed",
    "flip_random_bit",
]

Delivery = tuple[float, bytes]
Deliveries = tuple[Delivery, ...]
Corrupter = Callable[[bytes, random.Random], bytes]

_NONE: Deliveries = ()
# Pareto with shape 3: finite mean and variance, heavy right tail.
_PARETO_SHAPE = 3.0
_PARETO_MEAN = _PARETO_SHAPE / (_PARETO_SHAPE - 1)  # in units of the scale x_m
_PARETO_SD = math.sqrt(_PARETO_SHAPE / ((_PARETO_SHAPE - 1) ** 2 * (_PARETO_SHAPE - 2)))


def derive_seed(master: int, *path: object) -> int:
    """A 64-bit seed for a sub-stream, e.g. ``derive_seed(seed, "link", 0, "fwd")``; stable everywhere."""
    text = repr((int(master), *path)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def flip_random_bit(data: bytes, rng: random.Random) -> bytes:
    """netem's corruption: one random bit of the packet inverted."""
    if not data:
        return data
    buf = bytearray(data)
    pos = rng.randrange(len(buf) * 8)
    buf[pos >> 3] ^= 1 << (pos & 7)
    return bytes(buf)


class DirectionStats:
    """Counters of one direction. ``passed`` counts delivered copies (duplicates included)."""

    __slots__ = (
        "corrupted",
        "dropped_blackout",
        "dropped_loss",
        "dropped_mtu",
        "dropped_queue",
        "duplicated",
        "passed",
        "passed_bytes",
        "queue_delay_max",
        "queue_delay_total",
        "queued",
        "reordered",
        "sent",
        "sent_bytes",
    )

    def __init__(self) -> None:
        self.sent = 0  # packets offered to the link
        self.sent_bytes = 0
        self.passed = 0  # copies scheduled for delivery
        self.passed_bytes = 0
        self.dropped_loss = 0
        self.dropped_queue = 0
        self.dropped_blackout = 0
        self.dropped_mtu = 0
        self.duplicated = 0  # extra copies made
        self.corrupted = 0
        self.reordered = 0  # copies delivered before a copy sent earlier
        self.queued = 0  # copies that went through the bottleneck
        self.queue_delay_total = 0.0  # seconds from entering the bottleneck to leaving it
        self.queue_delay_max = 0.0

    @property
    def dropped(self) -> int:
        return self.dropped_loss + self.dropped_queue + self.dropped_blackout + self.dropped_mtu

    def dropped_by_cause(self) -> dict[str, int]:
        return {
            "loss": self.dropped_loss,
            "queue": self.dropped_queue,
            "blackout": self.dropped_blackout,
            "mtu": self.dropped_mtu,
        }

    @property
    def queue_delay_mean(self) -> float:
        return self.queue_delay_total / self.queued if self.queued else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "sent_bytes": self.sent_bytes,
            "passed": self.passed,
            "passed_bytes": self.passed_bytes,
            "dropped": self.dropped,
            "dropped_by_cause": self.dropped_by_cause(),
            "duplicated": self.duplicated,
            "corrupted": self.corrupted,
            "reordered": self.reordered,
            "queue_delay_mean_s": self.queue_delay_mean,
            "queue_delay_max_s": self.queue_delay_max,
        }

    def __repr__(self) -> str:
        return f"DirectionStats({self.as_dict()!r})"


# --------------------------------------------------------------------------- loss processes


def _make_loss(model: LossModel | None, rng: random.Random) -> Callable[[], bool] | None:
    """A zero-argument callable answering "is the next packet lost?"."""
    if model is None:
        return None
    rand = rng.random
    if isinstance(model, Bernoulli):
        p = model.p
        if p <= 0:
            return None
        return lambda: rand() < p
    if isinstance(model, GilbertElliott):
        return _GilbertElliott(model, rand).lost
    if isinstance(model, FourState):
        return _FourState(model, rand).lost
    if isinstance(model, LossTrace):
        return _TraceLoss(model).lost
    raise TypeError(f"unknown loss model {model!r}")


class _GilbertElliott:
    """netem loss_gilb_ell: the state a packet meets decides its loss; then the state may change."""

    __slots__ = ("bad", "h_loss", "k_loss", "p", "r", "rand")

    def __init__(self, m: GilbertElliott, rand: Callable[[], float]) -> None:
        self.p, self.r, self.h_loss, self.k_loss = m.p, m.r, m.loss_bad, m.loss_good
        self.rand = rand
        self.bad = False

    def lost(self) -> bool:
        rand = self.rand
        if self.bad:
            lost = rand() < self.h_loss
            if rand() < self.r:
                self.bad = False
        else:
            lost = rand() < self.k_loss if self.k_loss else False
            if rand() < self.p:
                self.bad = True
        return lost


class _FourState:
    """netem loss_4state: a packet is lost when the chain moves into state 3 or 4."""

    __slots__ = ("m", "rand", "state")

    def __init__(self, m: FourState, rand: Callable[[], float]) -> None:
        self.m = m
        self.rand = rand
        self.state = 1

    def lost(self) -> bool:
        m, u = self.m, self.rand()
        state = self.state
        if state == 1:
            if u < m.p14:
                self.state = 4
                return True
            if u < m.p14 + m.p13:
                self.state = 3
                return True
            return False
        if state == 2:
            if u < m.p23:
                self.state = 3
                return True
            return False
        if state == 3:
            if u < m.p32:
                self.state = 2
                return False
            if u < m.p32 + m.p31:
                self.state = 1
                return False
            return True
        self.state = 1  # state 4: an isolated loss is followed by a good packet
        return False


class _TraceLoss:
    __slots__ = ("i", "pattern")

    def __init__(self, m: LossTrace) -> None:
        self.pattern = m.pattern
        self.i = 0

    def lost(self) -> bool:
        i = self.i
        self.i = i + 1 if i + 1 < len(self.pattern) else 0
        return self.pattern[i] == 1


# --------------------------------------------------------------------------- the direction


class DirectionModel:
    """One direction of a link: ``transmit(data, now)`` -> deliveries (see the module docstring).

    ``epoch`` is the time the link started (blackouts and rate traces count from it).
    ``header_overhead`` bytes are added to every packet's size for the bottleneck and the mtu: the
    simulator and the relay carry UDP payloads, so they pass 28 (IPv4 + UDP headers).
    ``corrupter`` may be replaced (the TUN face corrupts only past the IP header).
    """

    def __init__(
        self,
        spec: DirectionSpec,
        seed: int,
        *,
        epoch: float = 0.0,
        header_overhead: int = 0,
    ) -> None:
        self.spec = spec
        self.epoch = epoch
        self.stats = DirectionStats()
        self.corrupter: Corrupter = flip_random_bit
        self._overhead = header_overhead
        self._mtu = spec.mtu
        self._blackouts = tuple((epoch + a, epoch + b) for a, b in spec.blackouts)

        def stream(tag: str) -> random.Random:
            return random.Random(derive_seed(seed, tag))

        self._lost = _make_loss(spec.loss, stream("loss"))
        self._dup_p = spec.duplicate
        self._dup_rand = stream("duplicate").random
        self._corrupt_p = spec.corrupt
        self._corrupt_rng = stream("corrupt")
        self._corrupt_rand = self._corrupt_rng.random

        # Delay sampler: None for a constant delay.
        self._delay = spec.delay
        self._jitter_rng = stream("delay")
        self._sample: Callable[[], float] | None = None
        if spec.jitter > 0:
            self._sample = self._make_sampler(spec)
        self._fifo = spec.fifo
        self._last_fifo = -math.inf
        self._max_delivery = -math.inf

        self._reorder_p = spec.reorder
        self._reorder_gap = spec.reorder_gap
        self._reorder_rand = stream("reorder").random
        self._reorder_counter = 0

        # Bottleneck state.
        self._rate_trace: RateTrace | None = spec.rate_trace
        self._sec_per_byte = 8.0 / spec.rate if spec.rate is not None else 0.0
        queue = spec.effective_queue()
        self._queue_limit_bytes = queue[0] if queue and queue[1] == "bytes" else None
        self._queue_limit_packets = queue[0] if queue and queue[1] == "packets" else None
        self._has_bottleneck = queue is not None
        self._bottleneck = self._rate_departure if spec.rate_trace is None else self._trace_departure
        self._busy_until = -math.inf
        self._in_queue: deque[tuple[float, int]] = deque()  # (departure time, wire size)
        self._queue_bytes = 0
        if spec.rate_trace is not None:
            self._trace_s = [t / 1000.0 for t in spec.rate_trace.times_ms]
            self._trace_period = spec.rate_trace.period_ms / 1000.0
            self._opp = -1  # global index of the current delivery opportunity; -1: none yet
            self._opp_left = 0

    # ------------------------------------------------------------------ samplers

    def _make_sampler(self, spec: DirectionSpec) -> Callable[[], float]:
        rng = self._jitter_rng
        delay, jitter = spec.delay, spec.jitter
        if spec.distribution == "uniform":
            rand = rng.random
            low, width = delay - jitter, 2 * jitter
            return lambda: max(0.0, low + width * rand())
        if spec.distribution == "normal":
            gauss = rng.gauss
            return lambda: max(0.0, gauss(delay, jitter))
        # pareto: x_m * U^(-1/shape) has mean 1.5 x_m and sd 0.866 x_m; shift and scale to (delay, jitter).
        pareto = rng.paretovariate
        scale = jitter / _PARETO_SD
        base = delay - _PARETO_MEAN * scale
        return lambda: max(0.0, base + scale * pareto(_PARETO_SHAPE))

    # ------------------------------------------------------------------ public

    def transmit(self, data: bytes, now: float) -> Deliveries:
        """The deliveries of one packet entering the link at ``now``."""
        st = self.stats
        st.sent += 1
        st.sent_bytes += len(data)
        if self._mtu is not None and len(data) + self._overhead > self._mtu:
            st.dropped_mtu += 1
            return _NONE
        if self._blackouts:
            for start, end in self._blackouts:
                if start <= now < end:
                    st.dropped_blackout += 1
                    return _NONE
        if self._lost is not None and self._lost():
            st.dropped_loss += 1
            return _NONE
        if self._dup_p and self._dup_rand() < self._dup_p:
            st.duplicated += 1
            first = self._carry(data, now)
            second = self._carry(data, now)
            if first is None:
                return _NONE if second is None else (second,)
            return (first,) if second is None else (first, second)
        one = self._carry(data, now)
        return _NONE if one is None else (one,)

    def is_down(self, now: float) -> bool:
        """Whether a blackout holds at ``now``."""
        return any(start <= now < end for start, end in self._blackouts)

    # ------------------------------------------------------------------ one copy

    def _carry(self, data: bytes, now: float) -> Delivery | None:
        st = self.stats
        if self._corrupt_p and self._corrupt_rand() < self._corrupt_p:
            data = self.corrupter(data, self._corrupt_rng)
            st.corrupted += 1
        t = now
        if self._has_bottleneck:
            size = len(data) + self._overhead
            departure = self._bottleneck(size, now)
            if departure is None:
                st.dropped_queue += 1
                return None
            sojourn = departure - now
            st.queued += 1
            st.queue_delay_total += sojourn
            if sojourn > st.queue_delay_max:
                st.queue_delay_max = sojourn
            t = departure
        if self._reorder_p and self._reorder_now():
            # netem: the reordered packet is sent at once, ahead of the delayed ones.
            delivery = t
        else:
            delivery = t + (self._sample() if self._sample is not None else self._delay)
            if self._fifo:
                if delivery < self._last_fifo:
                    delivery = self._last_fifo
                self._last_fifo = delivery
        if delivery < self._max_delivery:
            st.reordered += 1
        else:
            self._max_delivery = delivery
        st.passed += 1
        st.passed_bytes += len(data)
        return (delivery, data)

    def _reorder_now(self) -> bool:
        # netem: the GAP-1 packets after a reordered one are always delayed.
        if self._reorder_counter < self._reorder_gap - 1 or self._reorder_rand() >= self._reorder_p:
            self._reorder_counter += 1
            return False
        self._reorder_counter = 0
        return True

    def _admit(self, size: int, now: float) -> bool:
        """Drop-tail: forget departed packets, then check the limit. An empty queue admits anything."""
        q = self._in_queue
        while q and q[0][0] <= now:
            self._queue_bytes -= q.popleft()[1]
        if not q:
            return True
        if self._queue_limit_packets is not None:
            return len(q) < self._queue_limit_packets
        limit = self._queue_limit_bytes
        return limit is None or self._queue_bytes + size <= limit

    def _rate_departure(self, size: int, now: float) -> float | None:
        if not self._admit(size, now):
            return None
        start = self._busy_until if self._busy_until > now else now
        departure = start + size * self._sec_per_byte
        self._busy_until = departure
        self._in_queue.append((departure, size))
        self._queue_bytes += size
        return departure

    def _opp_time(self, k: int) -> float:
        cycle, i = divmod(k, len(self._trace_s))
        return self.epoch + cycle * self._trace_period + self._trace_s[i]

    def _trace_departure(self, size: int, now: float) -> float | None:
        # mahimahi link queue: every opportunity drains up to 1500 bytes, byte by byte, FIFO;
        # opportunities that find the queue empty are wasted.
        if not self._admit(size, now):
            return None
        if self._opp < 0 or self._opp_time(self._opp) < now:
            # The queue has drained: the next usable opportunity is the first at or after now.
            rel = max(0.0, now - self.epoch)
            cycle = int(rel // self._trace_period)
            i = bisect.bisect_left(self._trace_s, rel - cycle * self._trace_period)
            if i == len(self._trace_s):
                cycle, i = cycle + 1, 0
            k = cycle * len(self._trace_s) + i
            # Rounding in rel may land one opportunity early; never go backwards in time.
            while self._opp_time(k) < now:
                k += 1
            self._opp, self._opp_left = k, TRACE_OPPORTUNITY_BYTES
        remaining = size
        while remaining > self._opp_left:
            remaining -= self._opp_left
            self._opp += 1
            self._opp_left = TRACE_OPPORTUNITY_BYTES
        self._opp_left -= remaining
        departure = self._opp_time(self._opp)
        if self._opp_left == 0:
            self._opp += 1
            self._opp_left = TRACE_OPPORTUNITY_BYTES
        self._in_queue.append((departure, size))
        self._queue_bytes += size
        return departure


class LinkModel:
    """Both directions of a link, each with its own seed derived from one master seed.

    ``link_index`` tells links of one simulator apart (link k of seed s always gets the same
    streams). The relay and the TUN emulator use link 0, so a relay and a simulator given the same
    seed and spec decide the same fates for the same packet sequence.
    """

    def __init__(
        self,
        spec: LinkSpec | str | None = None,
        seed: int = 0,
        *,
        epoch: float = 0.0,
        header_overhead: int = 0,
        link_index: int = 0,
    ) -> None:
        self.spec = LinkSpec.coerce(spec)
        self.seed = seed
        opts: dict[str, Any] = {"epoch": epoch, "header_overhead": header_overhead}
        self.fwd = DirectionModel(self.spec.fwd, derive_seed(seed, "link", link_index, "fwd"), **opts)
        self.rev = DirectionModel(self.spec.rev, derive_seed(seed, "link", link_index, "rev"), **opts)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {"fwd": self.fwd.stats.as_dict(), "rev": self.rev.stats.as_dict()}
