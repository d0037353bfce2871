"""The figures (matplotlib, Agg backend, PNG).

- ``loss_<rate>_rtt<RTT>.png`` for every (rate, RTT) of the loss grid: delivery time of the
  largest image (p50, bar up to p95) and goodput against loss, one line per transport, log
  scales; images that never arrived sit on the timeout line with an ``x``; the goodput panel
  draws the physical limit;
- ``scenarios.png``: delivery p50 of the largest image in every scenario, one bar per transport.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from benchmarks.metrics import Summary
from benchmarks.report import BenchResults
from benchmarks.workloads import format_size

__all__ = ["plot_all"]

_STYLE = {
    "snip": ("tab:blue", "o"),
    "tcp-cubic": ("tab:orange", "s"),
    "tcp-bbr": ("tab:green", "^"),
    "email": ("tab:red", "D"),
    "quic": ("tab:purple", "v"),
    "srt": ("tab:brown", "P"),
    "kcp": ("tab:pink", "X"),
}


def _style(transport: str) -> tuple[str, str]:
    return _STYLE.get(transport, ("tab:gray", "."))


def _shown(value: float | None, timeout: float) -> float | None:
    if value is None:
        return None
    return timeout if not math.isfinite(value) else value


def _label_ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


def _loss_figure(group: Sequence[Summary], path: Path, rate_bps: float | None, rtt_s: float) -> Path:
    import matplotlib.pyplot as plt

    timeout = max(s.timeout_s for s in group)
    focus = max(s.focus_size for s in group)
    fig, (ax_time, ax_rate) = plt.subplots(1, 2, figsize=(12, 4.6))
    transports = list(dict.fromkeys(s.transport for s in group))
    for transport in transports:
        rows = sorted((s for s in group if s.transport == transport), key=lambda s: s.loss)
        color, marker = _style(transport)
        label = rows[0].label
        xs = [s.loss * 100 for s in rows]
        p50 = [_shown(s.deliver_p50, timeout) for s in rows]
        p95 = [_shown(s.deliver_p95, timeout) for s in rows]
        ax_time.plot(xs, p50, color=color, marker=marker, label=label)
        for x, lo, hi in zip(xs, p50, p95, strict=True):
            if lo is not None and hi is not None and hi > lo:
                ax_time.vlines(x, lo, hi, color=color, alpha=0.5)
        timed_out = [(x, timeout) for x, s in zip(xs, rows, strict=True)
                     if s.deliver_p50 is not None and not math.isfinite(s.deliver_p50)]
        if timed_out:
            ax_time.scatter(*zip(*timed_out, strict=True), marker="x", s=80, color=color, zorder=5)
        goodput = [s.goodput_mbit for s in rows]
        ax_rate.plot(xs, goodput, color=color, marker=marker, label=label,
                     linestyle="--" if any(s.bound for s in rows) else "-")
    ax_time.axhline(timeout, color="black", linewidth=0.8, linestyle=":")
    ax_time.text(0.01, timeout, f" timeout {timeout:g} s", va="bottom", fontsize=8, transform=ax_time.get_yaxis_transform())
    limits = sorted({(s.loss, s.limit_s) for s in group if s.limit_s is not None and s.transport == transports[0]})
    if limits:
        ax_time.plot([x * 100 for x, _ in limits], [y for _, y in limits], color="black", linestyle="--",
                     linewidth=1, label="physical limit")
    if rate_bps:
        losses = sorted({s.loss for s in group})
        ax_rate.plot([x * 100 for x in losses], [rate_bps * (1 - x) * 1472 / 1500 / 1e6 for x in losses],
                     color="black", linestyle="--", linewidth=1, label="physical limit")
    ax_time.set_yscale("log")
    ax_rate.set_yscale("log")
    ax_time.set_xlabel("loss, both directions (%)")
    ax_rate.set_xlabel("loss, both directions (%)")
    ax_time.set_ylabel(f"time to deliver {format_size(focus)}, p50 (bar to p95), s")
    ax_rate.set_ylabel("goodput over all images, Mbit/s (dashed: upper bound)")
    rate = f"{rate_bps / 1e6:g} Mbit/s" if rate_bps else "no rate limit"
    fig.suptitle(f"{rate}, RTT {rtt_s * 1000:g} ms")
    for ax in (ax_time, ax_rate):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _scenarios_figure(summaries: Sequence[Summary], path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    ran = [s for s in summaries if s.status == "ok" and s.deliver_p50 is not None]
    if not ran:
        return None
    scenarios = list(dict.fromkeys(s.scenario for s in ran))
    transports = list(dict.fromkeys(s.transport for s in ran))
    timeout = max(s.timeout_s for s in ran)
    height = 0.8 / max(1, len(transports))
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.22 * len(scenarios) * len(transports)))
    for t_index, transport in enumerate(transports):
        color, _ = _style(transport)
        ys, widths = [], []
        for s_index, scenario in enumerate(scenarios):
            row = next((s for s in ran if s.scenario == scenario and s.transport == transport), None)
            value = _shown(row.deliver_p50, timeout) if row else None
            if value is not None:
                ys.append(s_index + t_index * height)
                widths.append(value)
        label = next(s.label for s in ran if s.transport == transport)
        ax.barh(ys, widths, height=height, color=color, label=label)
    ax.axvline(timeout, color="black", linewidth=0.8, linestyle=":")
    ax.set_yticks([i + height * (len(transports) - 1) / 2 for i in range(len(scenarios))], scenarios, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    focus = max(s.focus_size for s in ran)
    ax.set_xlabel(f"time to deliver {format_size(focus)}, p50, s (log; the dotted line is the timeout)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(results: BenchResults, out_dir: Path) -> list[Path]:
    """Write every figure into ``out_dir/plots``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    groups: dict[tuple[float | None, float], list[Summary]] = {}
    for s in results.summaries:
        if s.status == "ok" and s.on_grid:
            groups.setdefault((s.rate_bps, round(s.rtt_s, 6)), []).append(s)
    for (rate, rtt), group in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
        if len({s.loss for s in group}) < 2:
            continue  # one point is no line: the scenarios chart shows it
        rate_name = f"{rate / 1e6:g}mbit" if rate else "unlimited"
        paths.append(_loss_figure(group, plots / f"loss_{rate_name}_rtt{_label_ms(rtt)}.png", rate, rtt))
    overview = _scenarios_figure(results.summaries, plots / "scenarios.png")
    if overview is not None:
        paths.append(overview)
    return paths
