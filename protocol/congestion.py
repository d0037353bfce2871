"""Rate control behind a small interface, chosen by name (spec 11).

``snipbbr`` estimates the bottleneck from delivery-rate samples in the manner of BBR (Cardwell et
al., "BBR: Congestion-Based Congestion Control", ACM Queue 2016) but does not let random loss pose
as congestion: while the round's minimum RTT shows no standing queue, a bandwidth sample is divided
by the measured delivery ratio. Queueing delay, not loss, is the congestion signal.
``fixed:<rate>`` paces at a configured rate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple, Protocol

from .config import parse_rate
from .delivery import TRAIN_NOISE_SPANS, RateSample

STARTUP_GAIN = 2.885  # 2/ln 2: doubles the sending rate each round
PROBE_GAINS = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
# The bandwidth estimate is the best sample of the last BW_WINDOW_ROUNDS rounds, and of at least
# the last BW_WINDOW_MIN_S: on a path that reorders much, a round ends when a datagram that skipped
# the queue is acknowledged, a few ms, and ten such rounds are too short to ride out a dip.
BW_WINDOW_ROUNDS = 10
BW_WINDOW_MIN_S = 0.5
# min_rtt, the typical RTT and the report delay are each the least value seen since it was last
# renewed. Once one has not been met for MIN_RTT_WINDOW it is renewed: by an RTT probe where a queue
# of ours stands, else by taking its next value (spec 11.4, "RTT probe").
MIN_RTT_WINDOW = 10.0  # seconds
# The RTT probe: the window drops to this share of the BDP (BBRv2's 0.5, where BBRv1 went down to
# 4 datagrams) until in-flight bytes are down to it, and stays there PROBE_RTT_HOLD and a round more.
# Taking whatever RTT came after the window ran out instead let a queue we built set the path RTT:
# on a link that slowed to a datagram per 1.4 s, min_rtt went from 0.98 s to 9.9 s, the window grew
# with it, and the queue reached 18 s.
PROBE_RTT_CWND_GAIN = 0.5
PROBE_RTT_HOLD = 0.2  # seconds
# A probe gives up (the stale values then take their next ones) after the hold and this many times
# the smoothed RTT, or the path RTT if larger, at its start.
PROBE_RTT_PATIENCE = 2.0
PROBE_RTT_MIN_SAMPLES = 8  # RTT samples of the hold that its mean must cover to set the typical RTT
MAX_COMPENSATED_LOSS = 0.5
# Up to this loss, samples are still compensated once rounds paced at no more than the estimate
# (drain, and the probe cycle's phases of gain 1 or less) have lost as much: a queue we overran
# drops less when we send slower, random loss does not. Past MAX_COMPENSATED_LOSS without that
# showing, each sample read what arrived, less than half of what left, and paced the next: at
# 60-70 % loss the estimate fell round after round (1 MiB in 4 s at 60 %, never at 70 %). With
# the cap at 0.8, a link losing 85 % each way fell the same way (1 MiB in 10-130 s, 5 s now).
MAX_RANDOM_LOSS = 0.9
LEAST_LOSS_MIN_COUNTED = 8  # datagrams a round's count must cover to be read alone (_RoundLoss.readable)
RESTART_GROWTH = 1.15  # a probe that raised bw this much starts the search for the bottleneck again
# Startup overran a queue in a round that lost at least STARTUP_MIN_LOST datagrams and this much
# more than the least loss of the recent rounds that did not (STARTUP_COLD_LOSS while there are
# none): random loss is the same at any rate, drops from a queue startup overruns grow with it.
STARTUP_EXCESS_LOSS = 0.10
STARTUP_COLD_LOSS = 0.5
STARTUP_MIN_LOST = 8
STARTUP_OVERRUN_ROUNDS = 2
FLOORS_OVERRUN_LOSS = 0.75  # the least loss within a first-startup round that ends its floors
# The path RTT is never under this share of the time datagrams stay in flight until an ACK reports
# them, averaged over at least REPORT_DELAY_DATAGRAMS of them (the least such average of the last
# MIN_RTT_WINDOW). Where netem-style reordering lets some datagrams skip the delay, the RTT samples
# (each the largest acknowledged, so often one that skipped it) can read a few ms on a 60 ms path,
# while the ACKs that report most datagrams come a full delay later. A share under 1: on other
# paths this average exceeds the RTT by half an ACK's span of datagrams, and must not set it.
REPORT_DELAY_SHARE = 0.75
REPORT_DELAY_DATAGRAMS = 128
# A standing queue delays every packet of several rounds in a row. On a reordering path a round can
# be a few ms of datagrams, and one whose RTT samples all took the path's full delay read as a
# queue; loss compensation then stopped, and at 40 % loss each round's samples, uncompensated,
# lowered the estimate that paced the next (1 MiB took 12-18 s instead of 0.3-0.8).
QUEUE_ROUNDS = 4
# The initial window leaves within this time at most, so that the path, not our pacing, spaces
# its arrivals and the ACKs of that first train tell the bottleneck's rate (spec 11.3).
INITIAL_TRAIN_SPREAD = 0.010
# ACK aggregation, as Linux's BBR measures it: ACKs that come in bursts (a path that reorders, a
# jittery hop, a receiver that acknowledges in stretches) report more at once than bw x the time
# since the burst's epoch began, and in between report nothing. The window keeps room for the
# most such excess of the last AGGREGATION_ROUNDS rounds, at most AGGREGATION_MAX_S of bw, or the
# sender idles until the next burst and its rate samples, and the estimate, fall.
AGGREGATION_ROUNDS = 10
AGGREGATION_MAX_S = 0.1
AGGREGATION_EPOCH_RESET = 1 << 20  # bytes: an epoch this long no longer tells about bursts
# The loss test (spec 11.4): random loss is the same at any rate, drops from a queue we overran
# stop when we send slower than the path carries. A queue too short to show delay drops what we send
# too fast in every round we do, as random loss would, and compensating for those drops raises the
# estimate towards what we sent: behind three datagrams of queue at 1 Mbit/s it stood at 1.5-2 times
# the link through most of a megabyte. So while the loss compensated for is at least
# LOSS_TEST_MIN_LOSS, the probe cycle now and then paces at LOSS_TEST_GAIN of what the path delivered
# over the last rounds, and the loss count over the datagrams paced so tells which loss it was. The
# first test comes LOSS_TEST_FIRST_ROUNDS rounds into probe; one that finds random loss doubles the
# wait for the next, up to LOSS_TEST_MAX_ROUNDS.
LOSS_TEST_MIN_LOSS = 0.25
LOSS_TEST_GAIN = 0.9
LOSS_TEST_FIRST_ROUNDS = 16
LOSS_TEST_MAX_ROUNDS = 64
# The test paces at least this many datagrams, and for at least a path RTT; it could not tell if
# the loss count has not covered them this many times the path RTT (or the smoothed RTT, or 1 s, if
# more) after it stopped pacing.
LOSS_TEST_DATAGRAMS = 16
LOSS_TEST_PATIENCE = 4


def _markedly_above(rtt: float, base: float) -> bool:
    """``rtt`` exceeds the path RTT ``base`` by more than a queue's worth of noise: a quarter of it,
    and at least 5 ms."""
    return rtt - base > max(base / 4, 0.005)


class _RoundLoss(NamedTuple):
    """What one round lost of what it counted, whether startup overran the queue in it, and whether
    it was paced at no more than the estimate from its start to its end (calm)."""

    lost: int
    counted: int
    overran: bool
    calm: bool

    @property
    def rate(self) -> float:
        return (self.lost + 1) / (self.counted + 2)

    @property
    def readable(self) -> bool:
        """Counted enough datagrams for its rate to speak for the path on its own."""
        return self.counted >= LEAST_LOSS_MIN_COUNTED


def least_loss(rounds: Sequence[_RoundLoss]) -> float:
    """The loss rate the rounds share (spec 11.4). Random loss shows in every round, drops from a
    queue we overran only in the rounds that overran it, so a round that lost markedly less than the
    rest says what the path's own loss is. Each round's rate is raised by one standard error before
    the least is taken, or the noise of rates read from a few dozen datagrams passes for such a round
    (the least of ten rounds of 30 datagrams at 70 % loss reads about 0.57); and the result is never
    above the calm rounds' rate pooled (all rounds' when none was calm). A round of a few datagrams
    (a burst's tail, a round cut short) says too little even so, and is left out while any other is
    there: 1 lost of 5 reads 0.46, under the compensation bound, beside startup rounds losing 95 %."""
    calm = [r for r in rounds if r.calm] or rounds
    pooled = (sum(r.lost for r in calm) + 1) / (sum(r.counted for r in calm) + 2)
    read = [r for r in rounds if r.readable] or rounds
    highs = (r.rate + math.sqrt(r.rate * (1 - r.rate) / (r.counted + 2)) for r in read)
    return min(pooled, min(highs))


class RateController(Protocol):
    name: str

    @property
    def pacing_rate(self) -> float:
        """Bytes per second."""
        ...

    @property
    def cwnd(self) -> int:
        """Bytes allowed in flight."""
        ...

    def on_rtt_sample(self, now: float, rtt: float) -> None: ...

    def set_feedback_delay(self, seconds: float) -> None:
        """The peer may hold an ACK back this long (its max_ack_delay): the window must cover it."""
        ...

    def on_rate_sample(self, now: float, sample: RateSample) -> None: ...

    def stats(self) -> dict[str, float | str]: ...


class FixedRate:
    """Paces at a configured rate; the window only bounds memory (two configured-rate RTTs)."""

    name = "fixed"

    def __init__(self, bits_per_second: float, mss: int, initial_rtt: float) -> None:
        self._rate = bits_per_second / 8
        self._mss = mss
        self._rtt = initial_rtt

    @property
    def pacing_rate(self) -> float:
        return self._rate

    @property
    def cwnd(self) -> int:
        return max(int(2 * self._rate * self._rtt), 64 * self._mss)

    def on_rtt_sample(self, now: float, rtt: float) -> None:
        self._rtt = max(rtt, 0.001)

    def set_feedback_delay(self, seconds: float) -> None:
        self._rtt = max(self._rtt, seconds)

    def on_rate_sample(self, now: float, sample: RateSample) -> None:
        pass

    def stats(self) -> dict[str, float | str]:
        return {"controller": self.name, "pacing_rate_bps": self._rate * 8}


class _RunningMin:
    """The least value offered since it was last reset; until a value is offered after a reset, the
    one held stands and the next replaces it, higher or not."""

    __slots__ = ("_stamp", "_taken", "value")

    def __init__(self, initial: float) -> None:
        self.value = initial
        self._stamp = 0.0
        self._taken = False  # no value offered yet: the first one replaces the initial value

    def update(self, now: float, value: float) -> None:
        if not self._taken or value <= self.value:
            self.value = value
            self._stamp = now
            self._taken = True

    def renew(self) -> None:
        """Let the next value replace the one held."""
        self._taken = False

    def stale(self, now: float) -> bool:
        """Not met or lowered for MIN_RTT_WINDOW."""
        return self._taken and now - self._stamp > MIN_RTT_WINDOW


class LossTest(Enum):
    """Where the loss test stands: not under way, pacing, or waiting for the loss count to cover
    the datagrams it paced."""

    IDLE = "idle"
    PACING = "pacing"
    READING = "reading"


class Phase(Enum):
    STARTUP = "startup"
    DRAIN = "drain"
    PROBE_BW = "probe_bw"
    PROBE_RTT = "probe_rtt"


class SnipBbr:
    name = "snipbbr"

    def __init__(self, mss: int, initial_window: int, initial_rtt: float) -> None:
        self._mss = mss
        self._initial_cwnd = initial_window * mss
        self.phase = Phase.STARTUP
        self._pacing_gain = STARTUP_GAIN
        self._cwnd_gain = STARTUP_GAIN
        self._bw_samples: deque[tuple[int, float, float]] = deque()  # (round, its best sample, when)
        self._now = 0.0  # the time of the rate sample being taken in
        # The train reading held: a train's later readings replace its earlier ones, since they
        # span more of it and ACK timing noise weighs on them less; another train's reading
        # replaces it only if higher, as any sample would. Its round, so that it ages out.
        self._train_bw = 0.0
        self._train_id = -1
        self._train_round = 0
        self.bw = 0.0
        self._min_rtt = _RunningMin(initial_rtt)
        self._round = 0
        self._next_round_delivered = 0
        self._round_began = 0.0
        self._round_min_rtt = float("inf")
        # The least over MIN_RTT_WINDOW of the smoothed RTT at each round's end: what the window
        # must cover. On a jittery or reordering path the smallest sample is an outlier, far below
        # what most packets take; a window sized by it starves the flow, and its rate samples with it.
        self._smoothed_rtt = 0.0
        self._latest_rtt = 0.0
        self._typical_rtt = _RunningMin(0.0)
        # How long datagrams stay in flight until reported: the sum and count since the last
        # average, and the least average since it was renewed (0 before the first).
        self._report_delay_sum = 0.0
        self._reported = 0
        self._report_delay = _RunningMin(0.0)
        # The peer's received_bytes once the first startup and its drain were over (None before):
        # datagrams sent until then left at the floors' rate and waited in the queue that built.
        self._floors_delivered: int | None = None
        self._queueing = False
        self._round_min_rtts: deque[float] = deque(maxlen=QUEUE_ROUNDS)
        self._full_bw = 0.0
        self._full_bw_rounds = 0
        self._cycle_index = 2
        self._cycle_stamp = 0.0
        self._bw_before_probe = 0.0
        self._restarted = False  # startup entered again: the initial floors no longer apply
        self._floors_overran = False  # the floors overran the queue within a round: they no longer apply
        self._inflight = 0
        self._jitter = 0.0  # the path's, once known (RateSample.jitter)
        self._feedback_delay = 0.0
        # Loss of each of the last rounds, and the count when the current round began. Random loss
        # shows in every round; drops from a queue we overran only in the rounds we overran it.
        self._round_losses: deque[_RoundLoss] = deque(maxlen=BW_WINDOW_ROUNDS)
        # Read from them once a round, not at every sample: the loss to compensate for (None
        # before the first round) and the most loss compensated.
        self._least_round_loss: float | None = None
        self._loss_bound = MAX_COMPENSATED_LOSS
        self._round_calm = False  # the current round's
        self._round_floored = True  # the current round began in the first startup
        self._last_round_floored = True  # the round before it began or ended there
        self._round_count = (0, 0)
        self._overrun_rounds = 0  # startup rounds in a row that overran it
        self._last_round_rate = 0.0  # the best delivery-rate sample of the last round (0: none)
        # When each of the last rounds began, and the peer's received_bytes then.
        self._round_marks: deque[tuple[float, int]] = deque(maxlen=BW_WINDOW_ROUNDS + 1)
        # The loss test: its state, the rate it paces at, the loss compensated for when it began,
        # when it began (then: until when it waits to be read), the loss count's datagram numbers
        # that it paced, the count when that reached the first of them, the round the next test is
        # due (0: none is), and how many rounds the one after waits.
        self._loss_test = LossTest.IDLE
        self._loss_test_rate = 0.0
        self._loss_test_loss = 0.0
        self._loss_test_time = 0.0
        self._loss_test_span = (0, 0)
        self._loss_test_count = (0, 0)
        self._loss_test_round = 0
        self._loss_test_wait = LOSS_TEST_FIRST_ROUNDS
        # When an RTT probe began: the least RTT of the last two rounds, and the last round's rate.
        self._before_probe = (0.0, 0.0)
        # The RTT probe under way: the phase to go back to; once in-flight bytes are down to its
        # window, when that was and the peer's received_bytes then, and the RTT samples of the
        # datagrams sent since: the least, their sum and their count.
        self._phase_after_probe = Phase.PROBE_BW
        self._probe_held_from: tuple[float, int] | None = None
        self._probe_rtts = (float("inf"), 0.0, 0)
        self._probe_deadline = 0.0
        self._probe_entered = 0.0
        # ACK aggregation: the current epoch's start and the bytes delivered since, the peer's
        # received_bytes at the last sample, and the largest excess of each recent round.
        self._epoch_start = 0.0
        self._epoch_delivered = 0
        self._last_delivered = 0
        self._extra_delivered: deque[tuple[int, int]] = deque()  # (round, its largest excess)

    # -- estimates ------------------------------------------------------------------------
    @property
    def min_rtt(self) -> float:
        """The smallest RTT sample since the last RTT probe."""
        return self._min_rtt.value

    @property
    def _path_rtt(self) -> float:
        return max(self.min_rtt, self._typical_rtt.value, REPORT_DELAY_SHARE * self._report_delay.value)

    @property
    def _trains_readable(self) -> bool:
        """Whether an initial window could still arrive spread over enough time to be read past
        the path's jitter: only at a bottleneck below what bw already shows, if jitter forbids
        it. Until then sending the initial window within INITIAL_TRAIN_SPREAD serves a reading."""
        return self.bw * TRAIN_NOISE_SPANS * self._jitter < self._initial_cwnd

    @property
    def _bdp(self) -> float:
        return self.bw * self._path_rtt

    def set_feedback_delay(self, seconds: float) -> None:
        self._feedback_delay = seconds

    @property
    def pacing_rate(self) -> float:
        # Per path RTT, not per min_rtt: on a jittery path min_rtt is an outlier, and a window
        # per outlier would leave at many times any rate the path could carry.
        initial = STARTUP_GAIN * self._initial_cwnd / self._path_rtt
        if self._trains_readable and self._round <= 1:
            # The first round: the initial window leaves within INITIAL_TRAIN_SPREAD, a train to
            # read the bottleneck by. Later, on a path where it was not read, only a burst.
            initial = max(initial, self._initial_cwnd / INITIAL_TRAIN_SPREAD)
        if self.bw <= 0:
            return initial
        # Never under one datagram per path RTT, which no path can be too slow for (its RTT holds
        # the datagram's own transmission). An endpoint that mostly receives reads its rate from
        # its own few small packets: at 70 % loss one read 5 kbit/s on a 10 Mbit/s path, and sent
        # a small reply's REPAIRs 1.6 s apart while its peer asked for them every 36 ms.
        gain_rate = self._loss_test_rate if self._loss_test is LossTest.PACING else self._pacing_gain * self.bw
        rate = max(gain_rate, self._mss / self._path_rtt)
        # Early samples cover less than a round trip of data; in startup they must not slow us
        # below the initial rate (the same floor BBR keeps until the pipe is full).
        return max(rate, initial) if self._floors_apply else rate

    @property
    def _probe_rtt_cwnd(self) -> int:
        # At the last round's delivery rate when that is lower: after the link slowed, bw holds
        # the old rate for ten rounds, and the queue it built makes each round seconds long.
        rate = min(self.bw, self._last_round_rate or self.bw)
        return max(int(PROBE_RTT_CWND_GAIN * rate * self._path_rtt), self._probe_rtt_floor)

    @property
    def _probe_rtt_floor(self) -> int:
        """Enough datagrams that one is likely to be acknowledged each round trip through the
        path's loss, taken to be the same on the way back: 4 at no loss, 25 at 60 %. With 4 in
        flight at 60 % loss one way and 80 % the other, no ACK came for 4 s, and there was no
        room to send anything that would draw one."""
        loss = min(self._least_round_loss or 0.0, MAX_RANDOM_LOSS)
        return int(4 * self._mss / (1 - loss) ** 2)

    @property
    def _window(self) -> int:
        """The congestion window outside an RTT probe."""
        # ACKs may be held back by the peer's ack delay: data sent in that time is in flight too.
        window = max(int(self._cwnd_gain * self.bw * (self._path_rtt + self._feedback_delay)) + 3 * self._mss, 4 * self._mss)
        if self.phase is not Phase.STARTUP:
            window += self._aggregation
        return max(window, self._initial_cwnd) if self._floors_apply else window

    @property
    def cwnd(self) -> int:
        if self.bw <= 0:
            return self._initial_cwnd
        return self._probe_rtt_cwnd if self.phase is Phase.PROBE_RTT else self._window

    def on_rtt_sample(self, now: float, rtt: float) -> None:
        self._min_rtt.update(now, rtt)
        self._latest_rtt = rtt  # the sample the same ACK's rate sample comes with, if it has one
        self._round_min_rtt = min(self._round_min_rtt, rtt)
        self._smoothed_rtt = rtt if not self._smoothed_rtt else self._smoothed_rtt + (rtt - self._smoothed_rtt) / 8

    def on_rate_sample(self, now: float, sample: RateSample) -> None:
        self._now = now
        self._inflight = sample.inflight
        if sample.jitter != float("inf"):
            self._jitter = sample.jitter
        round_start = sample.prior_delivered >= self._next_round_delivered
        if self._shows_path(sample):
            self._report_delay_sum += sample.report_delay_sum
            self._reported += sample.reported
        # The round so far: whether it has delivered a datagram of data, and its loss count.
        data_round, counted, lost = self._round_so_far(sample)
        if round_start:
            self._next_round_delivered = sample.delivered
            if self._bw_samples and self._bw_samples[-1][0] == self._round:
                self._last_round_rate = self._bw_samples[-1][1]
            self._round += 1
            if self._smoothed_rtt:
                self._typical_rtt.update(now, self._smoothed_rtt)
            if self._reported >= REPORT_DELAY_DATAGRAMS:
                # Over many datagrams: a round on a reordering path can be a few ms of datagrams
                # that skipped the delay, reported at once.
                self._report_delay.update(now, self._report_delay_sum / self._reported)
                self._report_delay_sum = 0.0
                self._reported = 0
            if self._round_min_rtt != float("inf"):
                # A standing queue: even the quickest packet of the last QUEUE_ROUNDS rounds took
                # markedly longer than the path's typical RTT (not its single quickest sample,
                # which jitter makes an outlier).
                base = self._path_rtt
                self._round_min_rtts.append(self._round_min_rtt)
                self._queueing = _markedly_above(min(self._round_min_rtts), base)
            self._round_min_rtt = float("inf")
            self._round_began = now
            if counted > 0:
                overran = False
                # A round that delivered less than one datagram of data carried only control
                # packets (an endpoint that mostly receives: its NACKs, COMPLETEs, PINGs, some
                # tens of bytes each, in copies on a lossy path). They overran no queue, and their
                # losses are the path's: at 75 % loss such rounds had ended a receiver's first
                # startup, and its reply then went at one datagram per 1.5 s round trip.
                if self.phase is Phase.STARTUP and data_round:
                    overran = self._on_startup_round_loss(lost / counted, judged=lost >= STARTUP_MIN_LOST)
                # From its start to its end; and not the round after the first startup's, which
                # counts what that startup's floors sent a round earlier: at 20 kbit/s behind a
                # 10-datagram queue, 131 of 144, and that loss taken for the path's had the estimate
                # compensated to 7 times the link's rate.
                calm = self._round_calm and self._calm and not self._last_round_floored
                self._on_round_loss(_RoundLoss(lost, counted, overran, calm))
                self._round_count = (sample.counted, sample.lost)
            self._last_round_floored = self._round_floored or self._floored
            self._round_floored = self._floored
            self._round_calm = self._calm
        elif self._floors_apply:
            # Within the round: each report frees the window, and the floors refill it with an
            # initial window at once. On a slow path whose queue the first flight overran, that
            # flooded it again at every report until the round ended, seconds later (spec 11.4).
            # As at a round's end, only a round that has delivered a datagram of data is judged:
            # a receiver's control packets lose what the path loses, not what a queue drops. A
            # loss of at least FLOORS_OVERRUN_LOSS with half a window in flight keeps random loss
            # out of it: a server's few replies at 80 % loss had gone at the estimate of a few packets.
            flooded = sample.inflight >= self._initial_cwnd // 2
            limit = max(self._startup_loss_limit, FLOORS_OVERRUN_LOSS)
            if data_round and flooded and lost >= STARTUP_MIN_LOST and lost > limit * counted:
                self._floors_overran = True
        self._on_delivered(now, sample.delivered)
        rate = self._compensated(sample.delivery_rate, sample.loss_rate)
        if rate > 0 and (not sample.app_limited or rate > self.bw):
            self._add_bw_sample(rate)
        if sample.train_rate > 0:
            self._on_train(sample)
        if round_start:
            self._check_full_pipe(sample.app_limited)
            self._round_marks.append((now, sample.delivered))
        self._step_loss_test(sample, round_start)
        self._advance_phase(now)
        self._probe_rtt(now, sample)
        if self._floors_delivered is None and not self._floored and self.phase is not Phase.DRAIN:
            self._floors_delivered = sample.delivered

    def _round_so_far(self, sample: RateSample) -> tuple[bool, int, int]:
        """Since the round began: whether it delivered at least a full datagram's bytes (a round of
        control packets alone does not), and the datagrams its loss count covered and lost."""
        counted, lost = sample.counted - self._round_count[0], max(sample.lost - self._round_count[1], 0)
        return sample.delivered - self._next_round_delivered >= self._mss, counted, lost

    def _on_delivered(self, now: float, delivered: int) -> None:
        """ACK aggregation: how far what the ACKs report runs ahead of bw since the epoch began."""
        # bw is 0 until the first sample is taken in, after this: that sample measures nothing here.
        newly, self._last_delivered = delivered - self._last_delivered, delivered
        if self.bw <= 0 or newly <= 0:
            return
        expected = self.bw * (now - self._epoch_start)
        if self._epoch_delivered <= expected or self._epoch_delivered + newly >= AGGREGATION_EPOCH_RESET:
            # Caught up with bw (or too long ago to tell): a new epoch starts at this ACK.
            self._epoch_start, self._epoch_delivered, expected = now, 0, 0.0
        self._epoch_delivered += newly
        extra = int(min(self._epoch_delivered - expected, self._window))
        samples = self._extra_delivered
        if samples and samples[-1][0] == self._round:
            if extra > samples[-1][1]:
                samples[-1] = (self._round, extra)
        else:
            samples.append((self._round, extra))
        while samples[0][0] <= self._round - AGGREGATION_ROUNDS:
            samples.popleft()

    @property
    def _aggregation(self) -> int:
        """Room in the window for bursts of ACKs (AGGREGATION_ROUNDS)."""
        extra = max((value for _, value in self._extra_delivered), default=0)
        return min(extra, int(AGGREGATION_MAX_S * self.bw))

    def _compensated(self, rate: float, loss: float) -> float:
        """Random loss: what left us at ``rate`` would have arrived but for the loss."""
        return rate / (1.0 - self._loss_to_compensate(loss))

    def _loss_to_compensate(self, loss: float) -> float:
        """The share of a measured ``loss`` taken for random loss (0 for none)."""
        if self._least_round_loss is not None:
            # A queue too short to show delay drops what we send too fast; compensating for those
            # drops would raise the rate that overruns it.
            loss = min(loss, self._least_round_loss)
        if self._queueing or loss > self._loss_bound:
            # Past the bound the loss is more likely an overrun receiver or a queue too short to
            # show delay, and compensating would keep the overrun going.
            return 0.0
        return loss

    def _step_loss_test(self, sample: RateSample, round_start: bool) -> None:
        """Start, end or read the loss test (LOSS_TEST_MIN_LOSS)."""
        now = self._now
        first, last = self._loss_test_span
        if self._loss_test is not LossTest.IDLE and sample.counted <= first:
            # The last count from before the test's first datagram (ACKs come in steps).
            self._loss_test_count = (sample.counted, sample.lost)
        if self.phase is not Phase.PROBE_BW:
            self._loss_test = LossTest.IDLE
            if self.phase is not Phase.PROBE_RTT:
                self._loss_test_round = 0  # a new search took over: due w rounds into the next probe
            # The RTT probe keeps the schedule (a test it cut short is due again when it ends): it
            # comes every MIN_RTT_WINDOW on a path whose RTT no sample renews, and on a path of
            # rounds over 0.6 s each one put the test off 16 rounds more, so that it never came.
            # (benchmarks.stress --slow --varying seed 98554: 90 % of what went was dropped by a
            # 5-packet queue, and the estimate stood at up to 8 times the link.)
        elif self._loss_test is LossTest.PACING:
            if sample.sent_counted - first >= LOSS_TEST_DATAGRAMS and now - self._loss_test_time >= self._path_rtt:
                self._loss_test = LossTest.READING
                self._loss_test_span = (first, sample.sent_counted)
                self._loss_test_time = now + LOSS_TEST_PATIENCE * max(self._path_rtt, self._smoothed_rtt, 1.0)
                self._cycle_stamp = now
        elif self._loss_test is LossTest.READING:
            if sample.counted >= last:
                counted, lost = sample.counted - self._loss_test_count[0], sample.lost - self._loss_test_count[1]
                self._loss_test = LossTest.IDLE
                self._read_loss_test(counted, max(lost, 0))
            elif now >= self._loss_test_time:
                self._loss_test = LossTest.IDLE  # the count never covered it: too few ACKs to tell
                self._loss_test_round = self._round + LOSS_TEST_FIRST_ROUNDS
        elif round_start:
            self._start_loss_test(sample)

    def _start_loss_test(self, sample: RateSample) -> None:
        loss = self._loss_to_compensate(sample.loss_rate)
        due = 0 < self._loss_test_round <= self._round
        if not due or self._cycle_index < 2 or loss < LOSS_TEST_MIN_LOSS or len(self._round_marks) < 2:
            return
        # Below what the path delivered over the last rounds, so that a queue we overran drains
        # rather than fills. Not the best sample: on a link whose rate wanders, that is a burst.
        (then, before), (now, delivered) = self._round_marks[0], self._round_marks[-1]
        carried = (delivered - before) / (now - then) if now > then else 0.0
        self._loss_test_rate = LOSS_TEST_GAIN * min(carried, self.bw * (1 - loss))
        if self._loss_test_rate > 0:
            self._loss_test = LossTest.PACING
            self._loss_test_loss = loss
            self._loss_test_time = now
            self._loss_test_span = (sample.sent_counted, sample.sent_counted)
            self._loss_test_count = (sample.counted, sample.lost)

    def _read_loss_test(self, counted: int, lost: int) -> None:
        """The loss count has covered the test's datagrams: ``lost`` of ``counted``. Markedly less
        than the loss compensated for: that was drops from a queue we overran, and the estimate
        built on it is what we sent. It starts again from what the test delivered."""
        test = _RoundLoss(lost, counted, overran=False, calm=True)
        if not test.readable:
            self._loss_test_round = self._round + LOSS_TEST_FIRST_ROUNDS  # too few to tell: again soon
            return
        p = test.rate
        # Less than half, and markedly: losses in bursts (a Gilbert-Elliott link) come and go
        # whatever the rate, and a test that fell in a good spell read a third less than the rest.
        if p < self._loss_test_loss / 2 and p + 2 * math.sqrt(p * (1 - p) / (counted + 2)) < self._loss_test_loss:
            # The path's own loss is the test's: the rounds to come are judged against it.
            self._round_losses.append(test)
            self._least_round_loss = least_loss(self._round_losses)
            self._estimate_from(self._compensated(self._loss_test_rate / LOSS_TEST_GAIN, p))
            self._loss_test_wait = LOSS_TEST_FIRST_ROUNDS
        else:
            self._loss_test_wait = min(2 * self._loss_test_wait, LOSS_TEST_MAX_ROUNDS)
        self._loss_test_round = self._round + self._loss_test_wait

    @property
    def _floored(self) -> bool:
        """In the first startup, whose floors send at the initial rate whatever the estimate."""
        return self.phase is Phase.STARTUP and not self._restarted

    @property
    def _floors_apply(self) -> bool:
        """The first startup's floors still hold: not once its round has lost too much to them."""
        return self._floored and not self._floors_overran

    @property
    def _calm(self) -> bool:
        """Pacing at no more than the estimate."""
        return self.phase in (Phase.DRAIN, Phase.PROBE_RTT) or (
            self.phase is Phase.PROBE_BW and (self._pacing_gain <= 1.0 or self._loss_test is LossTest.PACING)
        )

    def _on_round_loss(self, round_loss: _RoundLoss) -> None:
        taken_raw = self._least_round_loss is not None and self._least_round_loss > self._loss_bound
        self._round_losses.append(round_loss)
        self._least_round_loss = least_loss(self._round_losses)
        # The most loss samples are compensated for: MAX_COMPENSATED_LOSS, or as much as the calm
        # rounds of the window lost (at most MAX_RANDOM_LOSS): loss that slower sending did not
        # lessen is the path's.
        calm = [r for r in self._round_losses if r.calm]
        bound_before = self._loss_bound
        self._loss_bound = max(MAX_COMPENSATED_LOSS, min(least_loss(calm), MAX_RANDOM_LOSS)) if calm else MAX_COMPENSATED_LOSS
        rose_to_it = bound_before < self._loss_bound and self._least_round_loss <= self._loss_bound
        if taken_raw and rose_to_it and self.phase is not Phase.STARTUP:
            # The estimate was made of samples taken as they came, the loss past the bound: what
            # arrived, 20-40 % of what the path carries at 60-80 % loss. Probing up 25 % a cycle
            # from there took seconds (at 70 %, 2.5 s for a 256 KiB image, 2.2 s for 1 MiB after
            # it). Calm rounds now show that loss is the path's: search as startup does.
            self._start_search_again()

    def _add_bw_sample(self, rate: float) -> None:
        if self._bw_samples and self._bw_samples[-1][0] == self._round:
            if rate > self._bw_samples[-1][1]:
                self._bw_samples[-1] = (self._round, rate, self._now)
        else:
            self._bw_samples.append((self._round, rate, self._now))
        self._update_bw()

    def _estimate_from(self, rate: float) -> None:
        """Drop the bandwidth samples and the train reading: bw is ``rate``, a sample of this round."""
        self._bw_samples.clear()
        self._bw_samples.append((self._round, rate, self._now))
        self._train_round = self._round - BW_WINDOW_ROUNDS
        self._update_bw()

    def _update_bw(self) -> None:
        samples = self._bw_samples
        while samples and samples[0][0] <= self._round - BW_WINDOW_ROUNDS and samples[0][2] < self._now - BW_WINDOW_MIN_S:
            samples.popleft()
        best = max((value for _, value, _ in samples), default=0.0)
        if self._train_round > self._round - BW_WINDOW_ROUNDS:
            best = max(best, self._train_bw)
        self.bw = best

    def _on_train(self, sample: RateSample) -> None:
        """The path spread a train we sent faster than it could carry: its arrival rate is the
        bottleneck's. In startup that is what startup looks for, and it ends without overshoot."""
        rate = self._compensated(sample.train_rate, sample.train_loss)
        fresh = self._train_round > self._round - BW_WINDOW_ROUNDS and self._train_id >= 0
        if not fresh or sample.train_id == self._train_id or rate > self._train_bw:
            self._train_bw = rate
            self._train_id = sample.train_id
            self._train_round = self._round
            self._update_bw()
        if self.phase is Phase.STARTUP:
            self._enter_drain()

    @property
    def _startup_loss_limit(self) -> float:
        """A startup round that loses more than this overran the queue: well past what rounds
        that did not lost (the path's own loss), or half, before any such round."""
        calm = [r.rate for r in self._round_losses if not r.overran and r.readable]
        return min(calm) + max(STARTUP_EXCESS_LOSS, min(calm)) if calm else STARTUP_COLD_LOSS

    def _on_startup_round_loss(self, round_loss: float, *, judged: bool = True) -> bool:
        """Whether this startup round overran the queue; two in a row end this startup, counting
        only rounds ``judged``, those that lost STARTUP_MIN_LOST datagrams or more."""
        # A round of a few datagrams reads its loss too roughly to speak for the path: one that
        # lost 2 of 4 read 0.5, and no later round could lose more than 0.5 + 0.5.
        overran = round_loss > self._startup_loss_limit
        if not judged:
            # Too few lost to end startup by, but past the limit all the same: it must not set the
            # loss later rounds are judged against. A first burst that lost 6 of 10 to a 2-datagram
            # queue had made 0.58 the path's loss, and the floors then lost 70-90 % of every round.
            return overran
        # Two rounds in a row: reordering beyond the loss count's window reads as loss for a while.
        self._overrun_rounds = self._overrun_rounds + 1 if overran else 0
        if self._overrun_rounds >= STARTUP_OVERRUN_ROUNDS:
            if self._restarted:
                self._enter_drain()
            else:
                # The first startup's floors (a whole initial window within 10 ms) overran the
                # queue: the rounds since carried what survived a burst, not what the path
                # carries, and read it low. Search again, paced by the estimate: a queue takes that.
                self._start_search_again()
        return overran

    def _start_search_again(self) -> None:
        if self.phase is Phase.PROBE_RTT:
            self._phase_after_probe = Phase.STARTUP
        else:
            self.phase = Phase.STARTUP
        self._restarted = True
        # Only a probe cycle started after this search may start another: the stale figure would
        # read the search's own finding as growth and restart at once, for ever.
        self._bw_before_probe = 0.0
        self._full_bw = self.bw
        self._full_bw_rounds = 0
        self._overrun_rounds = 0
        self._pacing_gain = STARTUP_GAIN
        self._cwnd_gain = STARTUP_GAIN

    def _shows_path(self, sample: RateSample) -> bool:
        """Outside an RTT probe every sample of a datagram sent after the first startup and its
        drain counts towards the report delay; in a probe, only those of datagrams sent once
        in-flight bytes were down to its window: the rest waited in the queue."""
        if self._floors_delivered is None or sample.prior_delivered <= self._floors_delivered:
            # The initial window leaves within INITIAL_TRAIN_SPREAD: on a reordering path one ACK
            # can report most of it a few ms after it left, a delay no paced datagram sees; and on
            # a slow path what is sent until the drain is over waits behind it in the queue.
            return False
        if self.phase is not Phase.PROBE_RTT:
            return True
        return self._probe_held_from is not None and sample.prior_delivered >= self._probe_held_from[1]

    def _probe_rtt(self, now: float, sample: RateSample) -> None:
        """Renew a stale part of the path RTT, or enter, hold or leave the RTT probe that does
        (spec 11.4): the path RTT can only fall between renewals, and a queue of ours that stood
        through the last MIN_RTT_WINDOW hid the path's RTT all that time; only draining it shows
        that again."""
        if self.phase is not Phase.PROBE_RTT:
            if not any(m.stale(now) for m in self._path_rtt_parts) or self.bw <= 0:
                return
            if sample.app_limited and sample.inflight <= self._probe_rtt_cwnd and sample.rtt is not None:
                # Sending resumed after a pause, or little waits to go: no queue of ours stands, and
                # this sample shows the path as a probe's would, without the probe's cost.
                self._renew_path_rtt(now, self._latest_rtt, self._smoothed_rtt)
                return
            if not self._queue_stands or self._probe_rtt_floor >= self._window:
                # Nothing to drain: the next values replace the stale ones, whatever they are. A
                # probe's few datagrams in flight draw few ACKs, and where loss takes those too
                # (bursts of ten at 1.5 s RTT) it waited 8 s for one, sending nothing. Nor is a
                # probe worth that where the window could not shrink anyway (the floor).
                self._renew_stale_parts(now)
                return
            self._enter_probe_rtt(now)
        if self._probe_held_from is None:
            if sample.inflight <= self._probe_rtt_cwnd:
                self._probe_held_from = (now, sample.delivered)
                self._probe_rtts = (float("inf"), 0.0, 0)
                # The report delay's next value is to be read from the hold's datagrams alone.
                self._report_delay_sum = 0.0
                self._reported = 0
            elif now >= self._probe_deadline:
                self._leave_probe_rtt(now, measured=False)
            return
        least, total, count = self._probe_rtts
        if sample.rtt is not None and self._shows_path(sample):
            rtt = self._latest_rtt
            least, total, count = self._probe_rtts = (min(least, rtt), total + rtt, count + 1)
        # The hold lasts PROBE_RTT_HOLD, and until a datagram it sent is acknowledged.
        if now - self._probe_held_from[0] >= PROBE_RTT_HOLD and count:
            self._renew_path_rtt(now, least, total / count, enough=count >= PROBE_RTT_MIN_SAMPLES)
            self._leave_probe_rtt(now, measured=True)
        elif now >= self._probe_deadline:
            self._leave_probe_rtt(now, measured=False)

    @property
    def _queue_stands(self) -> bool:
        """Even the quickest datagrams of the last two rounds took markedly longer than the path
        RTT: a queue delays them all, and it delivers while it drains, so the probe's ACKs come."""
        return _markedly_above(self._recent_min_rtt, self._path_rtt)

    @property
    def _recent_min_rtt(self) -> float:
        """The least RTT of the last two rounds (0 before a round has ended), the round in progress
        counted as the last of them once it has lasted longer than the path RTT. A queue of ours
        stretches the round it delays, and the rounds before it showed less of that queue: on a
        link that slowed to a tenth, one round ran for 9 s with samples of 5-9 s while the two before
        it read 0.8 and 1.4 s; judged by those two, no queue stood, so the stale min_rtt of 0.8 s
        took the next sample, 9 s, the window grew with it and the queue reached 19 s."""
        rounds = list(self._round_min_rtts)
        if self._round_min_rtt != float("inf") and self._now - self._round_began > self._path_rtt:
            rounds.append(self._round_min_rtt)
        return min(rounds[-2:], default=0.0)

    @property
    def _path_rtt_parts(self) -> tuple[_RunningMin, _RunningMin, _RunningMin]:
        return (self._min_rtt, self._typical_rtt, self._report_delay)

    def _enter_probe_rtt(self, now: float) -> None:
        self._phase_after_probe = Phase.STARTUP if self.phase is Phase.STARTUP else Phase.PROBE_BW
        self._before_probe = (self._recent_min_rtt, self._last_round_rate)
        # Draining takes about the RTT the queue gives now, and the hold a round more; where loss
        # keeps the few datagrams in flight from being acknowledged (80 % of ACKs lost, say), a
        # probe that waited for them starved the flow for seconds at a time.
        self._probe_entered = now
        self._probe_deadline = now + PROBE_RTT_HOLD + PROBE_RTT_PATIENCE * max(self._smoothed_rtt, self._path_rtt)
        self.phase = Phase.PROBE_RTT
        self._pacing_gain = 1.0
        self._probe_held_from = None

    def _renew_stale_parts(self, now: float) -> None:
        """Where no probe can read the path: each part of the path RTT that went stale is replaced
        by its next value, higher or not. Held instead, a value read low once (the first smoothed
        RTT on a path with 80 ms of jitter: 31 ms of 200) stood for good."""
        for part in self._path_rtt_parts:
            if part.stale(now):
                part.renew()

    def _leave_probe_rtt(self, now: float, *, measured: bool) -> None:
        """Back to startup or probe; unless ``measured``, the stale parts of the path RTT are
        replaced by their next values."""
        if not measured:
            self._renew_stale_parts(now)
        queued_rtt, queued_rate = self._before_probe
        path = self._path_rtt
        drained_for = self._probe_held_from[0] - self._probe_entered if self._probe_held_from else 0.0
        if measured and _markedly_above(queued_rtt, path) and _markedly_above(drained_for, path) and queued_rate > 0:
            # Even the quickest datagrams of the rounds before took markedly longer than the path
            # does now, and what was in flight took longer than the path's RTT to arrive: a queue
            # of ours stood (on a reordering path whose path RTT reads short, the first alone
            # holds). So we sent faster than the path carried, and what it delivered behind that
            # queue was its rate then. The older samples are from before it slowed; and since it
            # may have changed again since (the probe can wait out a pause), search from there as
            # startup does.
            self._estimate_from(queued_rate)
            self.phase = self._phase_after_probe  # out of the probe first, or the search waits for its end
            self._start_search_again()
        elif self._phase_after_probe is Phase.STARTUP:
            self.phase = Phase.STARTUP
            self._pacing_gain = STARTUP_GAIN
            self._cwnd_gain = STARTUP_GAIN
        else:
            self._enter_probe_bw(now)

    def _renew_path_rtt(self, now: float, least: float, typical: float, *, enough: bool = True) -> None:
        """The path RTT from a time without a queue of ours: min_rtt the least RTT then, the typical
        RTT ``typical`` (the smoothing starts again from it), the report delay the mean over the
        datagrams reported since, if there are a few. Where these are too few to speak for the path
        (not ``enough``: on a reordering path two samples may both have skipped the delay), the value
        held stands until the next one replaces it, higher or not, and the smoothing starts again
        from the larger of the two."""
        self._min_rtt.renew()
        self._min_rtt.update(now, least)
        self._typical_rtt.renew()
        if enough:
            self._smoothed_rtt = typical
            self._typical_rtt.update(now, typical)
        else:
            self._smoothed_rtt = max(typical, self._typical_rtt.value)
        if self._reported >= REPORT_DELAY_DATAGRAMS // 8:
            self._report_delay.value = self._report_delay_sum / self._reported
        self._report_delay.renew()

    def _enter_drain(self) -> None:
        self._full_bw = self.bw
        self.phase = Phase.DRAIN
        self._pacing_gain = 1 / STARTUP_GAIN
        self._cwnd_gain = STARTUP_GAIN

    def _check_full_pipe(self, app_limited: bool) -> None:
        if self.phase is not Phase.STARTUP or app_limited:
            return
        if self.bw >= self._full_bw * 1.25:
            self._full_bw = self.bw
            self._full_bw_rounds = 0
            return
        self._full_bw_rounds += 1
        if self._full_bw_rounds >= 3:
            self._enter_drain()

    def _advance_phase(self, now: float) -> None:
        if self.phase is Phase.DRAIN and self._inflight <= self._bdp:
            self._enter_probe_bw(now)
        elif self.phase is Phase.PROBE_BW and self._loss_test is LossTest.IDLE and now - self._cycle_stamp >= self._path_rtt:
            self._cycle_index = (self._cycle_index + 1) % len(PROBE_GAINS)
            self._cycle_stamp = now
            self._pacing_gain = PROBE_GAINS[self._cycle_index]
            if self._cycle_index == 0:
                self._bw_before_probe = self.bw
        if self.phase is Phase.PROBE_BW and 1 <= self._cycle_index <= 3 and self.bw >= RESTART_GROWTH * self._bw_before_probe > 0:
            # The probe's samples (they come back over the next phases) show the path carrying
            # nearly all of its extra 25%: the estimate was far below the bottleneck (a train read
            # short by jitter, an outage's aftermath). Growing 25% per cycle would take many
            # cycles; search as startup does.
            self._start_search_again()

    def _enter_probe_bw(self, now: float) -> None:
        if not self._loss_test_round:
            self._loss_test_round = self._round + self._loss_test_wait
        self.phase = Phase.PROBE_BW
        self._cwnd_gain = 2.0
        self._cycle_index = 2
        self._cycle_stamp = now
        self._pacing_gain = PROBE_GAINS[self._cycle_index]

    def stats(self) -> dict[str, float | str]:
        return {
            "controller": self.name,
            "phase": self.phase.value,
            "bw_estimate_bps": self.bw * 8,
            "pacing_rate_bps": self.pacing_rate * 8,
            "cwnd_bytes": self.cwnd,
            "queueing": float(self._queueing),
        }


def make_controller(spec: str, mss: int, initial_window: int, initial_rtt: float) -> RateController:
    """'snipbbr' or 'fixed:<rate>' -> a controller. Raises ValueError for anything else."""
    if spec == "snipbbr":
        return SnipBbr(mss, initial_window, initial_rtt)
    if spec.startswith("fixed:"):
        return FixedRate(parse_rate(spec[6:]), mss, initial_rtt)
    raise ValueError(f"unknown rate controller {spec!r}")
