"""The link model, statistically (>= 10,000 packets, fixed seeds, bounds of 4 standard errors)."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

import pytest

from netsim.model import DirectionModel, LinkModel, derive_seed
from netsim.spec import FourState, LinkSpec, parse_link

N = 20_000


def direction(text: str, seed: int = 1, *, overhead: int = 0) -> DirectionModel:
    return LinkModel(parse_link(text), seed, header_overhead=overhead).fwd


def send(model: DirectionModel, n: int = N, gap: float = 0.001, size: int = 1000) -> list[list[tuple[float, bytes]]]:
    """Fates of n packets sent every ``gap`` seconds; packet i carries i in its first 4 bytes."""
    out = []
    for i in range(n):
        data = i.to_bytes(4, "big") + bytes(size - 4)
        out.append(list(model.transmit(data, i * gap)))
    return out


def within(measured: float, expected: float, stderr: float, k: float = 4.0) -> bool:
    return abs(measured - expected) <= k * stderr


def bernoulli_stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def loss_runs(lost: list[bool]) -> list[int]:
    runs, current = [], 0
    for x in lost:
        if x:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


# --------------------------------------------------------------------------- loss


def test_bernoulli_loss_rate() -> None:
    m = direction("loss=5%")
    fates = send(m)
    lost = sum(1 for f in fates if not f) / N
    assert within(lost, 0.05, bernoulli_stderr(0.05, N)), lost
    assert m.stats.dropped_loss == sum(1 for f in fates if not f)


def test_gilbert_elliott_loss_rate_and_mean_burst_length() -> None:
    n = 50_000
    p, r = 0.02, 0.25
    m = direction(f"ge={p * 100}%,{r * 100}%")
    lost = [not f for f in send(m, n)]
    rate = sum(lost) / n
    expected = p / (p + r)
    # Losses are correlated: the standard error is larger than Bernoulli's by ~sqrt((1+rho)/(1-rho)).
    rho = 1 - p - r
    assert within(rate, expected, bernoulli_stderr(expected, n) * math.sqrt((1 + rho) / (1 - rho))), rate
    runs = loss_runs(lost)
    mean_burst = statistics.fmean(runs)
    # Burst lengths are geometric with mean 1/r and standard deviation sqrt(1-r)/r.
    assert within(mean_burst, 1 / r, math.sqrt(1 - r) / r / math.sqrt(len(runs))), mean_burst
    # And bursts really are bursts, unlike Bernoulli loss at the same rate.
    bern = [not f for f in send(direction(f"loss={expected}"), n)]
    assert statistics.fmean(loss_runs(bern)) < 1.2


def test_gilbert_elliott_with_partial_losses_in_each_state() -> None:
    n = 40_000
    m = direction("ge=5%,20%,50%,2%")
    lost = sum(1 for f in send(m, n) if not f) / n
    bad = 0.05 / 0.25
    expected = bad * 0.5 + (1 - bad) * 0.02
    assert within(lost, expected, bernoulli_stderr(expected, n) * 3), (lost, expected)


def test_four_state_markov_loss_rate() -> None:
    n = 40_000
    model = FourState(p13=0.01, p31=0.30, p32=0.20, p23=0.10, p14=0.02)
    m = direction("state=1%,30%,20%,10%,2%")
    lost = [not f for f in send(m, n)]
    rate = sum(lost) / n
    expected = model.loss_rate()
    assert 0.02 < expected < 0.2
    assert within(rate, expected, bernoulli_stderr(expected, n) * 3), (rate, expected)
    # Isolated losses (state 4) and bursts (state 3) both occur.
    runs = loss_runs(lost)
    assert runs.count(1) > 100 and max(runs) >= 5


def test_loss_trace_is_followed_exactly_and_repeats(tmp_path: Path) -> None:
    trace = tmp_path / "t.txt"
    trace.write_text("0010 0011\n")
    m = direction(f"losstrace={trace}")
    lost = [not f for f in send(m, 80)]
    assert lost == [c == "1" for c in "00100011" * 10]


# --------------------------------------------------------------------------- delay


@pytest.mark.parametrize(
    ("dist", "sd_factor", "sd_tolerance"),
    [("uniform", 1 / math.sqrt(3), 0.03), ("normal", 1.0, 0.03), ("pareto", 1.0, 0.15)],
)
def test_delay_mean_and_jitter_follow_the_distribution(dist: str, sd_factor: float, sd_tolerance: float) -> None:
    m = direction(f"delay=50ms jitter=10ms dist={dist}")
    delays = [f[0][0] - i * 0.001 for i, f in enumerate(send(m))]
    mean, sd = statistics.fmean(delays), statistics.stdev(delays)
    expected_sd = 0.010 * sd_factor
    assert within(mean, 0.050, expected_sd / math.sqrt(N)), mean
    assert abs(sd - expected_sd) <= sd_tolerance * expected_sd, sd
    if dist == "uniform":
        assert min(delays) >= 0.040 and max(delays) <= 0.060
    if dist == "pareto":
        # Heavy right tail: the far tail is much longer than the near side.
        assert max(delays) - 0.050 > 3 * (0.050 - min(delays))


def test_jitter_reorders_unless_fifo() -> None:
    free = direction("delay=50ms jitter=10ms")
    arrivals = [f[0][0] for f in send(free, 5000)]
    assert any(b < a for a, b in itertools.pairwise(arrivals))
    assert free.stats.reordered > 0
    fifo = direction("delay=50ms jitter=10ms fifo")
    arrivals = [f[0][0] for f in send(fifo, 5000)]
    assert all(b >= a for a, b in itertools.pairwise(arrivals))
    assert fifo.stats.reordered == 0
    assert min(t - i * 0.001 for i, t in enumerate(arrivals)) >= 0.050 - 0.010 * 5


# --------------------------------------------------------------------------- reorder, dup, corrupt


@pytest.mark.parametrize(("prob", "gap"), [(0.10, 1), (0.25, 5)])
def test_netem_reordering_rate(prob: float, gap: int) -> None:
    m = direction(f"delay=10ms reorder={prob * 100}%,{gap}")
    fates = send(m)
    skipped = [i for i, f in enumerate(fates) if f[0][0] == pytest.approx(i * 0.001)]
    expected = 1 / (gap - 1 + 1 / prob)
    assert within(len(skipped) / N, expected, bernoulli_stderr(expected, N)), len(skipped) / N
    # Each skipped packet overtakes the ~10 sent in the 10 ms before it: it arrives out of order.
    assert m.stats.reordered == len([i for i in skipped if i > 0])
    if gap > 1:
        assert min(b - a for a, b in itertools.pairwise(skipped)) >= gap


def test_duplication_rate() -> None:
    m = direction("dup=3%")
    fates = send(m)
    doubles = sum(1 for f in fates if len(f) == 2)
    assert within(doubles / N, 0.03, bernoulli_stderr(0.03, N))
    assert m.stats.duplicated == doubles and m.stats.passed == N + doubles
    for f in fates:
        if len(f) == 2:
            assert f[0][1] == f[1][1]


def test_corruption_flips_exactly_one_bit() -> None:
    m = direction("corrupt=2%")
    fates = send(m)
    corrupted = 0
    for i, f in enumerate(fates):
        original = i.to_bytes(4, "big") + bytes(996)
        got = f[0][1]
        assert len(got) == len(original)
        flipped = (int.from_bytes(original, "big") ^ int.from_bytes(got, "big")).bit_count()
        assert flipped in (0, 1)
        corrupted += flipped
    assert within(corrupted / N, 0.02, bernoulli_stderr(0.02, N))
    assert m.stats.corrupted == corrupted


# --------------------------------------------------------------------------- bottleneck


def wire_rate(fates: list[list[tuple[float, bytes]]], overhead: int) -> float:
    times = [t for f in fates for t, _ in f]
    sizes = [len(d) + overhead for f in fates for _, d in f]
    # n packets finish over n-1 serialisation slots after the first.
    return sum(sizes[1:]) * 8 / (max(times) - min(times))


def test_rate_limit_delivers_the_configured_rate() -> None:
    m = direction("rate=10mbit queue=2000p", overhead=28)
    fates = send(m, N, gap=0.0005)  # offered ~16.5 Mbit/s
    delivered = [f for f in fates if f]
    assert abs(wire_rate(delivered, 28) / 10e6 - 1) < 0.05
    assert m.stats.dropped_queue > 0


def test_drop_tail_queue_in_packets_and_bytes() -> None:
    m = direction("rate=8mbit queue=10p")
    fates = send(m, 100, gap=0.0)
    assert sum(1 for f in fates if f) == 10 and m.stats.dropped_queue == 90
    m = direction("rate=8mbit queue=50kb")
    fates = send(m, 2000, gap=0.0005)  # 16 Mbit/s into 8: the queue fills and stays full
    assert m.stats.dropped_queue > 500
    # Sojourn never exceeds a full queue's worth of serialisation (50 kB at 1 us/byte) + one packet.
    assert m.stats.queue_delay_max <= 0.050 + 0.001 + 1e-9
    assert m.stats.queue_delay_max > 0.045


def test_rate_trace_in_mahimahi_format(tmp_path: Path) -> None:
    trace = tmp_path / "12mbit.trace"
    trace.write_text("1\n")  # one 1500-byte opportunity per ms = 12 Mbit/s
    m = direction(f"ratetrace={trace} queue=5000p")
    fates = send(m, N, gap=0.0005, size=1500)
    assert abs(wire_rate(fates, 0) / 12e6 - 1) < 0.05
    # A bursty trace: three opportunities at 2 ms, one at 10 ms, repeating every 10 ms.
    trace.write_text("2\n2\n2\n10\n")
    m = direction(f"ratetrace={trace} queue=5000p")
    fates = send(m, 4000, gap=0.001, size=1500)
    for f in fates:
        for t, _ in f:
            assert round(t * 1000) % 10 in (0, 2) and abs(t * 1000 - round(t * 1000)) < 1e-6
    assert abs(wire_rate(fates, 0) / (4 * 1500 * 8 / 0.010) - 1) < 0.05


def test_small_packets_share_an_opportunity(tmp_path: Path) -> None:
    trace = tmp_path / "t"
    trace.write_text("5\n")
    m = direction(f"ratetrace={trace}")
    times = [f[0][0] for f in send(m, 6, gap=0.0, size=500)]
    assert times == pytest.approx([0.005, 0.005, 0.005, 0.010, 0.010, 0.010])


# --------------------------------------------------------------------------- outages and limits


def test_blackout_drops_exactly_the_packets_sent_while_down() -> None:
    m = direction("blackout=1s-2s,3s-3.5s")
    fates = send(m, 5000)
    for i, f in enumerate(fates):
        t = i * 0.001
        down = 1 <= t < 2 or 3 <= t < 3.5
        assert (not f) == down, t
    assert m.stats.dropped_blackout == 1500


def test_mtu_counts_header_overhead() -> None:
    m = direction("mtu=1500", overhead=28)
    assert m.transmit(bytes(1472), 0.0)
    assert not m.transmit(bytes(1473), 0.0)
    assert m.stats.dropped_mtu == 1


def test_counters_balance() -> None:
    m = direction("loss=5% dup=5% corrupt=1% delay=5ms jitter=2ms rate=5mbit queue=20kb blackout=1s-2s")
    fates = send(m, N, gap=0.0005)
    st = m.stats
    assert st.sent == N
    assert st.sent + st.duplicated == st.passed + st.dropped
    assert st.passed == sum(len(f) for f in fates)
    assert all(v > 0 for v in st.dropped_by_cause().values() if v is not st.dropped_mtu)


# --------------------------------------------------------------------------- seeds


COMPLEX = "ge=3%,30% delay=30ms jitter=8ms dist=pareto reorder=2% dup=2% corrupt=1% rate=20mbit queue=30kb"


def test_same_seed_same_fates_bit_for_bit() -> None:
    a = send(direction(COMPLEX, seed=42), 5000, gap=0.0003)
    b = send(direction(COMPLEX, seed=42), 5000, gap=0.0003)
    assert a == b
    c = send(direction(COMPLEX, seed=43), 5000, gap=0.0003)
    assert a != c


def test_directions_are_independent() -> None:
    link = LinkModel(parse_link("loss=20%"), seed=5)
    fwd = [not link.fwd.transmit(b"x", i * 0.001) for i in range(N)]
    rev = [not link.rev.transmit(b"x", i * 0.001) for i in range(N)]
    assert fwd != rev
    both = sum(1 for a, b in zip(fwd, rev, strict=True) if a and b) / N
    assert within(both, 0.04, bernoulli_stderr(0.04, N)), both


def test_turning_on_jitter_does_not_change_which_packets_are_lost() -> None:
    plain = [not f for f in send(direction("loss=10%", seed=9), 5000)]
    jittery = [not f for f in send(direction("loss=10% delay=20ms jitter=5ms dup=1%", seed=9), 5000)]
    assert plain == jittery


def test_links_of_one_master_seed_differ_and_seeds_are_stable() -> None:
    spec = LinkSpec.coerce("loss=30%")
    m0, m1 = LinkModel(spec, 1, link_index=0).fwd, LinkModel(spec, 1, link_index=1).fwd
    fates0 = [bool(m0.transmit(b"x", i)) for i in range(200)]
    fates1 = [bool(m1.transmit(b"x", i)) for i in range(200)]
    assert fates0 != fates1
    # The derivation is a pure function of its inputs (no hash randomisation, no global state):
    # a recorded value pins it, so a change that would alter every replay shows up here.
    assert derive_seed(1, "link", 0, "fwd") == 0x82102f762986f0ca
