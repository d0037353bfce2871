"""Writes a benchmark's results: results.json (everything), runs.csv and images.csv (one row per
run and per image), summary.md (the tables and the targets), and the ``latest`` link.

``load_results`` reads results.json back, so the report and plots can be made again
(``snip bench --from-json``) without running anything.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.endpoints import TRANSPORTS
from benchmarks.metrics import RunResult, Summary, Target, evaluate_targets, summarise
from benchmarks.scenarios import Scenario
from benchmarks.workloads import format_size

__all__ = [
    "BenchResults",
    "fmt_seconds",
    "link_latest",
    "load_results",
    "markdown",
    "write_all",
    "write_json",
]

JSON = dict[str, Any]


class BenchResults:
    """Everything one benchmark produced, with the summaries computed from it."""

    def __init__(self, meta: JSON, scenarios: Sequence[Scenario], runs: Sequence[RunResult]) -> None:
        self.meta = meta
        self.scenarios = list(scenarios)
        self.runs = list(runs)
        by_name = {s.name: s for s in self.scenarios}
        self.summaries: list[Summary] = summarise(self.runs, by_name)
        self.targets: list[Target] = evaluate_targets(self.summaries)

    def to_json(self) -> JSON:
        return {
            "meta": self.meta,
            "scenarios": [s.to_dict() for s in self.scenarios],
            "runs": [asdict(r) for r in self.runs],
            "summaries": [_summary_json(s) for s in self.summaries],
            "targets": [asdict(t) for t in self.targets],
        }


def _finite(value: float | None) -> float | str | None:
    # JSON has no infinity: an image that never arrived is written as the string "timeout".
    if value is None:
        return None
    return value if math.isfinite(value) else "timeout"


def _summary_json(s: Summary) -> JSON:
    out = asdict(s)
    for key in ("deliver_p50", "deliver_p95", "deliver_max", "reply_p50"):
        out[key] = _finite(out[key])
    out["per_size_p50"] = {str(k): _finite(v) for k, v in s.per_size_p50.items()}
    out["seed_p50s"] = [_finite(v) for v in s.seed_p50s]
    out["spread"] = [_finite(v) for v in s.spread] if s.spread else None
    out["spread_stdev"] = s.spread_stdev
    return out


def load_results(path: Path) -> BenchResults:
    data = json.loads(path.read_text())
    scenarios = [Scenario(s["name"], s["link"], s.get("description", ""), bool(s.get("on_grid"))) for s in data["scenarios"]]
    runs = [RunResult.from_dict(r) for r in data["runs"]]
    return BenchResults(data.get("meta", {}), scenarios, runs)


class MergeError(ValueError):
    """Results that cannot be put together: different workloads, or one scenario name for two links."""


def merge_results(paths: Sequence[Path]) -> BenchResults:
    """Several benchmarks' results as one report: scenarios in order of first appearance, and for each
    (scenario, transport, seed) the run of the last file that has one, so that a partial rerun (one
    transport after a change, say) replaces that part of an earlier run. The context is the last
    file's, with every source listed (``meta["sources"]``)."""
    parts = [load_results(path) for path in paths]
    sizes = {tuple(part.meta.get("sizes", ())) for part in parts}
    if len(sizes) > 1:
        raise MergeError(f"the results have different workloads (image sizes {sorted(sizes)}): merged, they would not compare")
    scenarios: dict[str, Scenario] = {}
    runs: dict[tuple[str, str, int], RunResult] = {}
    for path, part in zip(paths, parts, strict=True):
        for scenario in part.scenarios:
            known = scenarios.setdefault(scenario.name, scenario)
            if known.link != scenario.link:
                raise MergeError(f"scenario {scenario.name!r} is {known.link!r} in one file and {scenario.link!r} in {path}")
        for run in part.runs:
            runs[(run.scenario, run.transport, run.seed)] = run
    order = {name: i for i, name in enumerate(scenarios)}
    ranks = {name: i for i, name in enumerate(TRANSPORTS)}
    merged = sorted(runs.values(), key=lambda r: (order[r.scenario], ranks.get(r.transport, len(ranks)), r.seed))
    meta = dict(parts[-1].meta)
    meta["seeds"] = sorted({run.seed for run in merged})
    meta["transports"] = sorted({run.transport for run in merged}, key=lambda t: ranks.get(t, len(ranks)))
    meta["sources"] = [
        {
            "file": str(path),
            "command": part.meta.get("command", ""),
            "commit": part.meta.get("machine", {}).get("git_commit"),
            "started_at": part.meta.get("started_at"),
            "runs": len(part.runs),
        }
        for path, part in zip(paths, parts, strict=True)
    ]
    return BenchResults(meta, list(scenarios.values()), merged)


def write_json(results: BenchResults, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results.to_json(), indent=1, default=str))
    tmp.replace(path)
    return path


RUN_COLUMNS = (
    "scenario", "link", "transport", "seed", "repeat", "status", "note", "mode", "mtu", "queue", "cc", "loss_pct",
    "rtt_ms", "rate_mbit", "images", "delivered", "image_bytes", "wire_fwd_bytes", "wire_rev_bytes",
    "wire_fwd_packets", "wire_rev_packets", "wire_dropped", "wire_ratio", "wire_floor", "cpu_sender_s",
    "cpu_receiver_s", "setup_s", "wall_s", "timeout_s", "blackout_missed", "started_at",
    "cpu_model", "cores", "kernel", "python", "snip", "git_commit",
)
IMAGE_COLUMNS = (
    "scenario", "transport", "seed", "name", "size", "status", "delivery_s", "reply_s", "acked_s", "limit_s",
    "limit_fraction", "goodput_mbit", "classification", "error",
)


def _run_row(run: RunResult) -> JSON:
    wire = run.wire or {}
    fwd, rev = wire.get("fwd", {}), wire.get("rev", {})
    return {
        "scenario": run.scenario, "link": run.link, "transport": run.transport, "seed": run.seed,
        "repeat": run.repeat, "status": run.status, "note": run.note, "mode": run.mode, "mtu": run.mtu,
        "queue": run.queue, "cc": run.cc, "loss_pct": round(run.loss * 100, 4), "rtt_ms": round(run.rtt_s * 1000, 3),
        "rate_mbit": run.rate_bps / 1e6 if run.rate_bps else None, "images": len(run.images),
        "delivered": sum(1 for i in run.images if i.delivered), "image_bytes": run.image_bytes,
        "wire_fwd_bytes": fwd.get("bytes"), "wire_rev_bytes": rev.get("bytes"),
        "wire_fwd_packets": fwd.get("packets"), "wire_rev_packets": rev.get("packets"),
        "wire_dropped": (fwd.get("dropped", 0) + rev.get("dropped", 0)) if wire else None,
        "wire_ratio": run.wire_ratio, "wire_floor": 1 / (1 - run.loss) if run.loss < 1 else None,
        "cpu_sender_s": run.cpu_sender_s, "cpu_receiver_s": run.cpu_receiver_s, "setup_s": run.setup_s,
        "wall_s": run.wall_s, "timeout_s": run.timeout_s, "blackout_missed": run.blackout_missed,
        "started_at": run.started_at,
    }


def write_csv(results: BenchResults, out_dir: Path) -> list[Path]:
    runs_path, images_path = out_dir / "runs.csv", out_dir / "images.csv"
    # The machine goes on every row, so a row copied elsewhere still says where it was measured.
    machine = results.meta.get("machine", {})
    where = {key: machine.get(key) for key in ("cpu_model", "cores", "kernel", "python", "snip", "git_commit")}
    with runs_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, RUN_COLUMNS)
        writer.writeheader()
        for run in results.runs:
            writer.writerow({**_run_row(run), **where})
    with images_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, IMAGE_COLUMNS)
        writer.writeheader()
        for run in results.runs:
            for image in run.images:
                delivered = image.delivered and image.delivery_s
                writer.writerow({
                    "scenario": run.scenario, "transport": run.transport, "seed": run.seed, "name": image.name,
                    "size": image.size, "status": image.status, "delivery_s": image.delivery_s,
                    "reply_s": image.reply_s, "acked_s": image.acked_s, "limit_s": image.limit_s,
                    "limit_fraction": (image.limit_s / image.delivery_s) if delivered and image.limit_s and image.delivery_s else None,
                    "goodput_mbit": image.size * 8 / image.delivery_s / 1e6 if delivered and image.delivery_s else None,
                    "classification": image.classification, "error": image.error,
                })
    return [runs_path, images_path]


def fmt_seconds(value: float | None, timeout: float) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return f">{timeout:g}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _pct(value: float | None, bound: bool) -> str:
    if value is None:
        return "-"
    return f"{'≤' if bound else ''}{value * 100:.0f}%"


def _num(value: float | None, digits: int = 1, bound: bool = False) -> str:
    if value is None:
        return "-"
    return f"{'≤' if bound else ''}{value:.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _spread(s: Summary) -> str:
    spread = s.spread
    if spread is None:
        return ""
    return f"{fmt_seconds(spread[0], s.timeout_s)}–{fmt_seconds(spread[1], s.timeout_s)}"


def main_table(results: BenchResults) -> list[str]:
    multi_seed = any(len(s.seed_p50s) > 1 for s in results.summaries)
    head = ["scenario", "transport", "deliver p50 / p95 / max (s)", "reply p50 (s)", "limit (s)", "% of limit",
            "goodput (Mbit/s)", "wire / image (floor)", "CPU send / recv (s)"]
    if multi_seed:
        head.append("p50 per seed, min–max (s)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in results.summaries:
        if s.status != "ok":
            row = [s.scenario, s.label, f"**{s.status}**: {s.note}"] + [""] * (len(head) - 3)
        else:
            t = s.timeout_s
            floor = f" ({s.wire_floor:.2f})" if s.wire_floor else ""
            row = [
                s.scenario, s.label,
                f"{fmt_seconds(s.deliver_p50, t)} / {fmt_seconds(s.deliver_p95, t)} / {fmt_seconds(s.deliver_max, t)}",
                fmt_seconds(s.reply_p50, t), fmt_seconds(s.limit_s, t), _pct(s.limit_fraction, s.bound),
                _num(s.goodput_mbit, 1, s.bound), (_num(s.wire_ratio, 3) + floor) if s.wire_ratio else "-",
                f"{_num(s.cpu_sender_s, 2)} / {_num(s.cpu_receiver_s, 2)}",
            ]
            if multi_seed:
                row.append(_spread(s))
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines


def size_table(results: BenchResults) -> list[str]:
    sizes = sorted({size for s in results.summaries for size in s.per_size_p50})
    if len(sizes) < 2:
        return []
    head = ["scenario", "transport", *[format_size(size) for size in sizes]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in results.summaries:
        if s.status == "ok":
            cells = [fmt_seconds(s.per_size_p50.get(size), s.timeout_s) for size in sizes]
            lines.append("| " + " | ".join(_cell(c) for c in [s.scenario, s.label, *cells]) + " |")
    return lines


def targets_table(results: BenchResults) -> list[str]:
    if not results.targets:
        return ["No target could be checked (they need snip and, at 5% loss or more, the other transports)."]
    lines = ["| target | scenario | verdict | figures |", "|---|---|---|---|"]
    for t in results.targets:
        verdict = {"met": "met", "missed": "**missed**"}.get(t.verdict, t.verdict)
        lines.append(f"| {_cell(t.target)} | {_cell(t.scenario)} | {verdict} | {_cell(t.figures)} |")
    met = sum(1 for t in results.targets if t.verdict == "met")
    missed = sum(1 for t in results.targets if t.verdict == "missed")
    lines += ["", f"{met} met, {missed} missed, {len(results.targets) - met - missed} not measurable."]
    return lines


def _number(value: Any) -> str:
    # a results.json from elsewhere may lack a setting, or carry it as text
    return f"{value:g}" if isinstance(value, (int, float)) else "?"


def _context(results: BenchResults) -> list[str]:
    m = results.meta
    machine = m.get("machine", {})
    sizes = ", ".join(format_size(int(x)) for x in m.get("sizes", []))
    focus = format_size(max(int(x) for x in m["sizes"])) if m.get("sizes") else "largest"
    lines = [
        f"- when: {m.get('started_at', '?')} ({m.get('wall_s', 0):.0f} s); preset {m.get('preset', '-')}; "
        f"command: `{m.get('command', '')}`",
        f"- machine: {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores, load at start "
        f"{machine.get('load_average_at_start')}; Linux {machine.get('kernel', '?')}; Python {machine.get('python', '?')}; "
        f"snip {machine.get('snip', '?')} (commit {machine.get('git_commit') or '?'})",
        f"- link: {m.get('mode_description', m.get('mode', '?'))}; seeds {m.get('seeds')}; "
        f"timeout {_number(m.get('timeout'))} s per image",
        f"- workload: {sizes} {m.get('format', 'png')} images of random pixels, sent one at a time (the next once the "
        f"reply to the previous one is in); the receiver verifies each against its SHA-256 and classifies it with "
        f"`{m.get('classify', '-')}` before answering",
        f"- p50 / p95 / max (nearest rank) and the reply are for the {focus} image over all seeds; % of limit, "
        "goodput, wire and CPU "
        "cover every image; `>T` = not delivered within the timeout, `≤` = an upper bound because of such an image",
    ]
    if m.get("fallback_reason"):
        lines.append(f"- no TUN link: {m['fallback_reason']}")
    for source in m.get("sources", []):
        lines.append(
            f"- merged from `{source.get('file')}`: {source.get('runs')} runs, {source.get('started_at', '?')}, "
            f"commit {source.get('commit') or '?'}, `{source.get('command', '')}` (where files overlap, the later one's runs)"
        )
    return lines


def markdown(results: BenchResults) -> str:
    out = ["# snip bench", "", *_context(results), "", "## Results", "", *main_table(results)]
    sizes = size_table(results)
    if sizes:
        out += ["", "## Delivery p50 by image size (s)", "", *sizes]
    out += ["", "## Targets", "", *targets_table(results), ""]
    return "\n".join(out)


def link_latest(out_dir: Path) -> Path:
    """``<parent>/latest`` -> ``out_dir`` (a relative symlink; a copy where links are not possible)."""
    latest = out_dir.parent / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.is_dir():
        shutil.rmtree(latest)
    try:
        os.symlink(out_dir.name, latest, target_is_directory=True)
    except OSError:
        shutil.copytree(out_dir, latest)
    return latest


def write_all(results: BenchResults, out_dir: Path) -> list[Path]:
    """results.json, runs.csv, images.csv, summary.md; returns their paths."""
    paths = [write_json(results, out_dir), *write_csv(results, out_dir)]
    summary = out_dir / "summary.md"
    summary.write_text(markdown(results))
    paths.append(summary)
    return paths
