"""Link strings: syntax, units, directions, presets, canonical form, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.spec import (
    DEFAULT_QUEUE_PACKETS,
    PRESETS,
    Bernoulli,
    DirectionSpec,
    FourState,
    GilbertElliott,
    LinkSpec,
    LossTrace,
    RateTrace,
    SpecError,
    parse_link,
)


def test_issue_example_sets_every_value_in_both_directions() -> None:
    spec = parse_link("loss=5% delay=50ms jitter=10ms rate=20mbit queue=100kb")
    assert spec.fwd == spec.rev
    d = spec.fwd
    assert d.loss == Bernoulli(0.05)
    assert d.delay == pytest.approx(0.050)
    assert d.jitter == pytest.approx(0.010)
    assert d.rate == 20e6
    assert d.queue_bytes == 100_000 and d.queue_packets is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("delay=250us", 250e-6),
        ("delay=1.5s", 1.5),
        ("delay=3.5ms", 0.0035),
        ("delay=0", 0.0),
        ("rtt=200ms", 0.1),
    ],
)
def test_time_units(text: str, expected: float) -> None:
    assert parse_link(text).fwd.delay == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("rate=1gbit", 1e9), ("rate=500kbit", 5e5), ("rate=64bit", 64.0), ("rate=2.5Mbit", 2.5e6)],
)
def test_rate_units(text: str, rate: float) -> None:
    assert parse_link(text).fwd.rate == rate


@pytest.mark.parametrize(
    ("text", "queue_bytes", "queue_packets"),
    [("100kb", 100_000, None), ("64kib", 65536, None), ("1mb", 1_000_000, None), ("50p", None, 50),
     ("20pkt", None, 20), ("1500b", 1500, None)],
)
def test_queue_units(text: str, queue_bytes: int | None, queue_packets: int | None) -> None:
    d = parse_link(f"rate=1mbit queue={text}").fwd
    assert (d.queue_bytes, d.queue_packets) == (queue_bytes, queue_packets)


def test_probability_as_fraction_or_percent() -> None:
    assert parse_link("loss=0.05").fwd.loss == Bernoulli(0.05)
    assert parse_link("loss=0.5%").fwd.loss == Bernoulli(0.005)
    assert parse_link("loss=0%").fwd.loss is None


def test_gilbert_elliott_defaults_follow_tc() -> None:
    assert parse_link("ge=1%").fwd.loss == GilbertElliott(0.01, 0.99, 1.0, 0.0)
    assert parse_link("ge=1%,30%").fwd.loss == GilbertElliott(0.01, 0.30, 1.0, 0.0)
    assert parse_link("gemodel=1%,30%,50%,2%").fwd.loss == GilbertElliott(0.01, 0.30, 0.5, 0.02)


def test_four_state_defaults_follow_tc() -> None:
    assert parse_link("state=2%").fwd.loss == FourState(0.02, 0.98, 0.0, 1.0, 0.0)
    assert parse_link("loss4=2%,30%,10%,5%,1%").fwd.loss == FourState(0.02, 0.30, 0.10, 0.05, 0.01)


def test_loss_trace_file_and_inline(tmp_path: Path) -> None:
    trace = tmp_path / "loss.txt"
    trace.write_text("# burst then clean\n1 1 0\n0,0\n")
    assert parse_link(f"losstrace={trace}").fwd.loss == LossTrace(bytes([1, 1, 0, 0, 0]), source=str(trace))
    assert parse_link("lossseq=0010").fwd.loss == LossTrace(bytes([0, 0, 1, 0]))


def test_rate_trace_file_in_mahimahi_format(tmp_path: Path) -> None:
    trace = tmp_path / "cell.trace"
    trace.write_text("1\n1\n3\n4\n")
    d = parse_link(f"ratetrace={trace}").fwd
    assert d.rate_trace == RateTrace((1, 1, 3, 4), source=str(trace))
    assert d.rate is None
    assert d.rate_trace.mean_rate() == pytest.approx(4 * 1500 * 8 / 0.004)
    assert d.effective_queue() == (DEFAULT_QUEUE_PACKETS, "packets")


def test_reorder_duplicate_corrupt_blackout_mtu_fifo() -> None:
    d = parse_link("delay=10ms reorder=25%,5 dup=1% corrupt=0.1% blackout=2s-3s blackout=5s-6s mtu=1400 fifo").fwd
    assert (d.reorder, d.reorder_gap) == (0.25, 5)
    assert d.duplicate == 0.01 and d.corrupt == 0.001
    assert d.blackouts == ((2.0, 3.0), (5.0, 6.0))
    assert d.mtu == 1400 and d.fifo


def test_direction_sections_and_prefixes() -> None:
    spec = parse_link("delay=20ms | fwd: rate=5mbit queue=50kb | rev: rate=50mbit loss=1%")
    assert spec.fwd.delay == spec.rev.delay == pytest.approx(0.02)
    assert spec.fwd.rate == 5e6 and spec.rev.rate == 50e6
    assert spec.fwd.loss is None and spec.rev.loss == Bernoulli(0.01)
    spec = parse_link("rate=10mbit fwd.loss=10% rev.delay=5ms")
    assert spec.fwd.loss == Bernoulli(0.1) and spec.rev.loss is None
    assert spec.rev.delay == pytest.approx(0.005) and spec.fwd.delay == 0
    assert parse_link("up: loss=1% | down: loss=2%") == parse_link("fwd.loss=1% rev.loss=2%")


def test_later_tokens_override_and_last_loss_model_wins() -> None:
    spec = parse_link("ge=1%,30% delay=10ms loss=2% delay=20ms")
    assert spec.fwd.loss == Bernoulli(0.02) and spec.fwd.delay == pytest.approx(0.02)
    assert parse_link("rate=1mbit queue=10p queue=20kb").fwd.queue_packets is None


def test_presets_parse_and_can_be_overridden() -> None:
    for name in PRESETS:
        spec = parse_link(name)
        assert spec.fwd.has_bottleneck, name
    spec = parse_link("congested-4g loss=2%")
    assert spec.fwd.loss == Bernoulli(0.02)
    assert spec.fwd.rate == 4e6 and spec.rev.rate == 12e6  # asymmetric preset kept
    # In a direction section a preset contributes only that direction.
    spec = parse_link("fwd: satellite")
    assert spec.fwd.delay == pytest.approx(0.3) and spec.rev.is_perfect()


@pytest.mark.parametrize(
    "text",
    [
        "loss=5% delay=50ms jitter=10ms rate=20mbit queue=100kb",
        "ge=1%,30% rtt=200ms",
        "state=1%,30%,10%,20%,0.5%",
        "lossseq=0010011 delay=3.7ms jitter=330us dist=pareto",
        "delay=20ms | fwd: rate=5mbit queue=50kb | rev: rate=50mbit loss=1%",
        "delay=10ms reorder=25%,5 dup=1% corrupt=0.1% blackout=1s-2.5s mtu=1400 fifo dist=uniform jitter=1ms",
        *PRESETS,
    ],
)
def test_canonical_string_round_trips(text: str) -> None:
    spec = parse_link(text)
    assert parse_link(spec.to_string()) == spec


def test_code_built_specs_are_validated_like_strings() -> None:
    with pytest.raises(SpecError, match="loss"):
        DirectionSpec(loss=Bernoulli(1.5))
    with pytest.raises(SpecError, match="delay"):
        DirectionSpec(delay=-0.1)
    with pytest.raises(SpecError, match="rate"):
        DirectionSpec(rate=0)
    assert LinkSpec.coerce(DirectionSpec(delay=0.01)) == parse_link("delay=10ms")
    assert LinkSpec.coerce(None) == LinkSpec() == parse_link("")


def test_describe_names_both_directions() -> None:
    text = parse_link("congested-4g").describe()
    assert "fwd:  4mbit" in text and "rev:  12mbit" in text
    assert "mean burst 2.5 packets" in text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("loss=150%", "'loss=150%'"),
        ("loss=5", "write 5% for percent"),
        ("delay=-5ms", "must not be negative"),
        ("delay=5", "needs a unit"),
        ("delay=5min", "unknown time unit"),
        ("jitter=abc", "'jitter=abc'"),
        ("rate=20mbps", "ambiguous"),
        ("rate=20", "needs a rate unit"),
        ("queue=10", "needs a unit"),
        ("queue=0p", "must be > 0"),
        ("ge=1%,2%,3%,4%,5%", "1 to 4"),
        ("state=60%,1%,1%,1%,50%", "p13 + p14"),
        ("foo", "unknown link token 'foo'"),
        ("colour=red", "unknown key 'colour'"),
        ("loss=", "needs a value"),
        ("side: loss=1%", "unknown direction 'side'"),
        ("sideways.loss=1%", "unknown direction 'sideways'"),
        ("fwd: rtt=10ms", "rtt applies to both directions"),
        ("reorder=5%", "reorder needs a delay"),
        ("reorder=5%,0 delay=1ms", "gap"),
        ("blackout=3s-2s", "must end after it starts"),
        ("blackout=3s", "T1-T2"),
        ("dist=cauchy", "unknown distribution 'cauchy'"),
        ("fifo=maybe", "on or off"),
        ("mtu=1.5kb", "mtu"),
        ("lossseq=0120", "0 and 1"),
        ("losstrace=/nonexistent/trace", "cannot read"),
        ("rate=1mbit ratetrace=/nonexistent/trace", "cannot read"),
    ],
)
def test_bad_input_gives_a_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_link(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_trace_files_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.trace"
    bad.write_text("1\n2\nfast\n")
    with pytest.raises(SpecError, match=r"bad.trace:3"):
        parse_link(f"ratetrace={bad}")
    bad.write_text("5\n3\n")
    with pytest.raises(SpecError, match="must not decrease"):
        parse_link(f"ratetrace={bad}")
    bad.write_text("0\n0\n")
    with pytest.raises(SpecError, match="end after 0 ms"):
        parse_link(f"ratetrace={bad}")
