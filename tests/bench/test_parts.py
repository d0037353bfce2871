"""The benchmark's parts without a network: workloads, scenarios, metrics, report, plots, CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from pathlib import Path

import pytest

from apps.cli import CommandError
from apps.cli import main as snip_main
from benchmarks import cli
from benchmarks.metrics import ImageResult, RunResult, evaluate_targets, limit_seconds, percentile, summarise
from benchmarks.plots import plot_all
from benchmarks.report import BenchResults, MergeError, link_latest, load_results, markdown, merge_results, write_all
from benchmarks.scenarios import PRESETS, SPECIALS, Scenario, ScenarioError, custom_scenario, grid, select
from benchmarks.workloads import Workload, format_size, make_image, parse_size, parse_sizes

# --------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_images_have_the_stated_sizes_and_decode(fmt: str) -> None:
    from PIL import Image

    workload = Workload((5000, 65536, 300_001), fmt)  # type: ignore[arg-type]
    images = workload.images()
    assert [i.size for i in images] == [5000, 65536, 300_001]
    for image in images:
        with Image.open(io.BytesIO(image.data)) as decoded:
            decoded.load()
            assert decoded.format == ("PNG" if fmt == "png" else "JPEG")
    assert workload.images() == images  # deterministic: sender and receiver build the same bytes
    assert len({i.sha256 for i in images}) == 3


def test_images_are_incompressible() -> None:
    import zlib

    data = make_image(100_000, random.Random(1))
    assert len(zlib.compress(data, 9)) > 0.99 * len(data)


def test_sizes_parse_and_format() -> None:
    assert parse_size("64kib") == 65536 and parse_size("1MiB") == 1 << 20 and parse_size("64k") == 64000
    assert parse_sizes("16kib, 1mib") == (16384, 1 << 20)
    assert format_size(1 << 20) == "1MiB" and format_size(65536) == "64KiB" and format_size(1000) == "1000B"
    with pytest.raises(ValueError):
        parse_size("lots")


# --------------------------------------------------------------------------- scenarios


def test_presets_build_and_parse() -> None:
    for preset in PRESETS.values():
        for scenario in preset.scenarios():
            assert scenario.base is not None
    quick = PRESETS["quick"].scenarios()
    assert [s.name for s in quick] == ["50mbit 50ms 0%", "50mbit 50ms 5%"]
    full = PRESETS["full"].scenarios()
    assert len(full) == 6 * 5 * 2 + len(SPECIALS)


def test_grid_reads_back_its_parameters() -> None:
    (scenario,) = grid([5], [300], [10])
    assert scenario.loss == pytest.approx(0.05)
    assert scenario.rtt_s == pytest.approx(0.3) and scenario.one_way_s == pytest.approx(0.15)
    assert scenario.rate_bps == 10e6 and scenario.queue == "250000 bytes"


def test_overrides_keep_the_preset_axes_not_given() -> None:
    chosen = select(PRESETS["quick"], losses=[0, 20])
    assert [s.name for s in chosen] == ["50mbit 50ms 0%", "50mbit 50ms 20%"]
    chosen = select(PRESETS["quick"], rtts_ms=[10, 600], rates_mbit=[10])
    assert [s.name for s in chosen] == ["10mbit 10ms 0%", "10mbit 10ms 5%", "10mbit 600ms 0%", "10mbit 600ms 5%"]


def test_named_and_custom_scenarios() -> None:
    chosen = select(PRESETS["quick"], names=["bursts", "50mbit 300ms 20%"], links=["sat: rate=10mbit rtt=600ms"])
    assert [s.name for s in chosen] == ["bursts", "50mbit 300ms 20%", "sat"]
    assert "queue=250kb" in chosen[2].link  # the benchmark's queue when a custom link has a rate
    assert custom_scenario("fwd: loss=1% | rev: loss=2%", 3).name == "link3"  # a direction label is no name
    with pytest.raises(ScenarioError):
        select(PRESETS["quick"], names=["no-such"])
    with pytest.raises(ScenarioError):
        custom_scenario("loss=5", 1)


def test_trace_scenarios_are_one_name_away_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the shipped traces are found by the package's path, not the cwd's
    chosen = select(PRESETS["quick"], names=["trace-cell", "trace-random"])
    cell, rand = chosen
    assert cell.base.fwd.rate is None and cell.base.fwd.rate_trace is not None
    # 30, 3, 12, 1 and 40 Mbit/s for 0.2 s each (benchmarks/traces/README.md)
    assert cell.rate_bps == pytest.approx(17.2e6, rel=0.02)
    assert cell.rtt_s == pytest.approx(0.08) and cell.base.fwd.queue_bytes == 100_000
    assert rand.loss == pytest.approx(0.01)
    assert {s.name for s in PRESETS["full"].scenarios()} >= {"trace-steps", "trace-cell", "trace-random", "trace-drop", "trace-rise"}


def test_blackouts_count_from_timing_start() -> None:
    scenario = SPECIALS["blackout"]
    assert scenario.has_blackout and scenario.blackout_total_s == pytest.approx(1.0)
    shifted = scenario.spec(8.0)
    assert shifted.fwd.blackouts == ((8.05, 9.05),) and shifted.rev.blackouts == ((8.05, 9.05),)
    assert grid([0], [50], [50])[0].spec(8.0) == grid([0], [50], [50])[0].base


# --------------------------------------------------------------------------- metrics


def test_percentile_nearest_rank_with_timeouts() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, math.inf], 95) == math.inf
    assert percentile([], 50) is None


def test_physical_limit() -> None:
    (scenario,) = grid([20], [50], [50])
    # 1 MiB at 50 Mbit/s x 0.8 x 1472/1500, plus 25 ms of propagation.
    expected = (1 << 20) * 8 / (50e6 * 0.8 * 1472 / 1500) + 0.025
    assert limit_seconds(1 << 20, scenario) == pytest.approx(expected)
    assert limit_seconds(1000, Scenario("x", "delay=10ms")) == pytest.approx(0.01)


SCENARIOS = grid([0, 10], [50], [50])


def _run(scenario: Scenario, transport: str, seed: int, times: list[float | None], wire: float | None = 1.2,
         status: str = "ok") -> RunResult:
    images = []
    for index, t in enumerate(times):
        size = (64 << 10) if index == 0 else (1 << 20)
        images.append(ImageResult(f"img{index}", size, "ok" if t is not None else "timeout", delivery_s=t,
                                  reply_s=t + 0.05 if t is not None else None, limit_s=limit_seconds(size, scenario)))
    return RunResult(scenario.name, scenario.link, transport, transport.upper(), seed, seed - 1, status, mode="tun",
                     images=images, timeout_s=60.0, image_bytes=sum(i.size for i in images), wire_ratio=wire,
                     cpu_sender_s=0.1, cpu_receiver_s=0.2, loss=scenario.loss, rtt_s=scenario.rtt_s,
                     rate_bps=scenario.rate_bps, cc="cubic")


def _runs() -> list[RunResult]:
    runs = []
    for scenario in SCENARIOS:
        for seed in (1, 2):
            runs.append(_run(scenario, "snip", seed, [0.05, 0.3 + seed / 100], wire=1.15))
            runs.append(_run(scenario, "tcp-cubic", seed, [0.2, 9.0 if scenario.loss else 0.4]))
            runs.append(_run(scenario, "tcp-bbr", seed, [0.1, 0.5]))
            runs.append(_run(scenario, "email", seed, [1.0, None if scenario.loss else 3.0], wire=None))
        runs.append(RunResult(scenario.name, scenario.link, "quic", "QUIC", 1, 0, "not installed", "aioquic is not installed"))
    return runs


def test_summaries_pool_seeds_and_bound_timeouts() -> None:
    summaries = summarise(_runs(), {s.name: s for s in SCENARIOS})
    by = {(s.scenario, s.transport): s for s in summaries}
    snip = by[("50mbit 50ms 10%", "snip")]
    assert snip.runs == 2 and snip.focus_size == 1 << 20 and snip.images == 4 and snip.delivered == 4
    assert snip.deliver_p50 == pytest.approx(0.31) and snip.deliver_max == pytest.approx(0.32)
    assert snip.seed_p50s == [pytest.approx(0.31), pytest.approx(0.32)] and snip.spread is not None
    assert snip.wire_floor == pytest.approx(1 / 0.9) and not snip.bound
    email = by[("50mbit 50ms 10%", "email")]
    assert email.deliver_p50 == math.inf and email.bound and email.delivered == 2
    assert by[("50mbit 50ms 0%", "quic")].status == "not installed"


def test_targets_are_judged_on_the_figures() -> None:
    summaries = summarise(_runs(), {s.name: s for s in SCENARIOS})
    targets = {(t.target, t.scenario): t for t in evaluate_targets(summaries)}
    lossy = "50mbit 50ms 10%"
    assert targets[("delivery >= 10x shorter than TCP CUBIC's", lossy)].verdict == "met"  # 9.0 / 0.31
    assert targets[("delivery shorter than TCP BBR's", lossy)].verdict == "met"
    # Email timed out: at least 60 / 0.31 = 190x, enough for the 50x target.
    assert targets[("delivery >= 50x shorter than email's round trip", lossy)].verdict == "met"
    assert targets[("wire bytes within 10% of 1/(1-loss)", lossy)].verdict == "met"  # 1.15 <= 1.22
    assert targets[("wire bytes within 10% of 1/(1-loss)", "50mbit 50ms 0%")].verdict == "missed"  # 1.15 > 1.1
    assert targets[("goodput >= 90% of the physical limit", lossy)].verdict == "missed"
    assert ("delivery shorter than TCP BBR's", "50mbit 50ms 0%") not in targets  # only at 5% loss or more


# --------------------------------------------------------------------------- report and plots


def test_report_files_round_trip(tmp_path: Path) -> None:
    results = BenchResults({"sizes": [65536, 1 << 20], "timeout": 60.0, "seeds": [1, 2]}, SCENARIOS, _runs())
    paths = write_all(results, tmp_path)
    assert {p.name for p in paths} == {"results.json", "runs.csv", "images.csv", "summary.md"}
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["runs"]) == len(_runs()) and data["summaries"] and data["targets"]
    email = next(s for s in data["summaries"] if s["transport"] == "email" and s["scenario"] == "50mbit 50ms 10%")
    assert email["deliver_p50"] == "timeout"  # no infinity in JSON
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert len(rows) == len(_runs()) and rows[0]["wire_ratio"]
    images = list(csv.DictReader((tmp_path / "images.csv").open()))
    assert len(images) == 16 * 2 and {"delivery_s", "reply_s", "limit_fraction"} <= set(images[0])
    text = (tmp_path / "summary.md").read_text()
    assert text == markdown(results)
    assert "| 50mbit 50ms 10% | EMAIL | >60 / >60 / >60 |" in text
    assert "**not installed**: aioquic is not installed" in text and "## Targets" in text
    again = load_results(tmp_path / "results.json")
    assert markdown(again) == text


def _results_file(tmp_path: Path, name: str, runs: list[RunResult], sizes: list[int] | None = None,
                  scenarios: list[Scenario] | None = None) -> Path:
    meta = {"sizes": sizes or [64 << 10, 1 << 20], "command": f"snip bench ({name})", "machine": {"git_commit": name}}
    out = tmp_path / name
    write_all(BenchResults(meta, scenarios or SCENARIOS, runs), out)
    return out / "results.json"


def test_results_merge_with_the_later_file_replacing_its_runs(tmp_path: Path) -> None:
    lossy = SCENARIOS[1]
    everything = _results_file(tmp_path, "aaa", _runs())
    rerun = [_run(lossy, "snip", seed, [0.04, 0.2]) for seed in (1, 2)]
    newer = _results_file(tmp_path, "bbb", rerun, scenarios=[lossy])
    merged = merge_results([everything, newer])
    assert len(merged.runs) == len(_runs())  # snip's two runs in the lossy scenario replaced, not added
    snip = next(s for s in merged.summaries if s.scenario == lossy.name and s.transport == "snip")
    assert snip.deliver_p50 == pytest.approx(0.2)
    untouched = next(s for s in merged.summaries if s.scenario == SCENARIOS[0].name and s.transport == "snip")
    assert untouched.deliver_p50 == pytest.approx(0.31)
    assert [s.name for s in merged.scenarios] == [s.name for s in SCENARIOS]
    assert [r.transport for r in merged.runs[:4]] == ["snip", "snip", "tcp-cubic", "tcp-cubic"]  # the usual order
    assert [source["commit"] for source in merged.meta["sources"]] == ["aaa", "bbb"]
    assert "merged from `" in markdown(merged)
    # the other way round, the older file's runs win
    backwards = merge_results([newer, everything])
    assert next(s for s in backwards.summaries if s.scenario == lossy.name and s.transport == "snip").deliver_p50 == pytest.approx(0.31)


def test_results_of_different_workloads_or_links_are_not_merged(tmp_path: Path) -> None:
    first = _results_file(tmp_path, "first", _runs())
    other_sizes = _results_file(tmp_path, "sizes", _runs(), sizes=[1 << 20])
    with pytest.raises(MergeError, match="different workloads"):
        merge_results([first, other_sizes])
    renamed = Scenario(SCENARIOS[0].name, "rate=10mbit rtt=50ms loss=0%")
    other_link = _results_file(tmp_path, "link", [_run(renamed, "snip", 1, [0.1, 0.5])], scenarios=[renamed])
    with pytest.raises(MergeError, match="in one file and"):
        merge_results([first, other_link])


def test_cli_merges_results_into_one_report(tmp_path: Path) -> None:
    first = _results_file(tmp_path, "one", _runs())
    second = _results_file(tmp_path, "two", [_run(SCENARIOS[1], "snip", 1, [0.04, 0.2])], scenarios=[SCENARIOS[1]])
    parser = cli.build_parser()
    assert cli.run(parser.parse_args(["--from-json", str(first), str(second), "--out", str(tmp_path / "both"), "--no-plots"])) == 0
    assert "merged from" in (tmp_path / "both" / "summary.md").read_text()
    with pytest.raises(CommandError, match="needs --out"):
        cli.run(parser.parse_args(["--from-json", str(first), str(second)]))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CommandError, match="cannot read the results"):
        cli.run(parser.parse_args(["--from-json", str(broken)]))


def test_plots_are_written(tmp_path: Path) -> None:
    results = BenchResults({}, SCENARIOS, _runs())
    paths = plot_all(results, tmp_path)
    assert {p.name for p in paths} == {"loss_50mbit_rtt50ms.png", "scenarios.png"}
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latest_points_at_the_newest(tmp_path: Path) -> None:
    for name in ("bench-1", "bench-2"):
        (tmp_path / name).mkdir()
        latest = link_latest(tmp_path / name)
    assert latest.resolve() == (tmp_path / "bench-2").resolve()


# --------------------------------------------------------------------------- command line


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        snip_main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "--transports" in capsys.readouterr().out


def test_cli_lists_and_plans(capsys: pytest.CaptureFixture[str]) -> None:
    assert snip_main(["bench", "--list-scenarios"]) == 0
    assert "blackout" in capsys.readouterr().out
    assert snip_main(["bench", "--dry-run", "--via", "relay", "--loss", "0,5", "--rtt", "10,600"]) == 0
    out = capsys.readouterr().out
    assert "4 scenario(s) x 1 seed(s) x 7 transport(s) = 28 runs" in out and "link: relay" in out


@pytest.mark.parametrize("argv", [
    ["--transports", "snip,carrier-pigeon"],
    ["--link", "loss=5"],
    ["--scenario", "nowhere"],
    ["--sizes", "huge"],
    ["--snip-option", "no_such_setting=1"],
    ["--peer-option", "quic:x=1"],
    ["--peer-option", "srt:no_such_option=1"],
    ["--peer-option", "srt:fc=lots"],
    ["--peer-option", "kcp:sndwnd"],
    ["--repeat", "0"],
])
def test_cli_user_errors(argv: list[str]) -> None:
    parser = cli.build_parser()
    with pytest.raises(CommandError):
        cli.run(parser.parse_args([*argv, "--dry-run", "--via", "relay"]))
