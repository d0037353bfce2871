"""The sender's results: per-image and total figures, as a table for people or JSON for programs.

The columns keep what the original UDP streamer printed (chunks sent, chunks lost, loss %,
success %) and add what reliable delivery brings: retransmissions, goodput, RTT, time and reply.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from apps.media.describe import classification_answers, human_bytes, opt
from apps.sender.app import ImageResult, SendReport
from apps.transport import JSON


def _int(stats: JSON, key: str) -> int | None:
    value = stats.get(key)
    return int(value) if isinstance(value, int | float) else None


def _pct(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole:
        return None
    return 100.0 * part / whole


def image_figures(result: ImageResult) -> dict[str, Any]:
    """One image's figures; None where the transport does not report them."""
    outcome = result.outcome
    stats = outcome.stats
    chunks = _int(stats, "chunks")
    sent = _int(stats, "chunks_sent")
    lost = _int(stats, "chunks_lost")
    goodput = None
    if outcome.delivered and outcome.elapsed_s > 0:
        goodput = outcome.size * 8 / outcome.elapsed_s / 1e6
    rtt = stats.get("rtt_ms")
    return {
        "name": outcome.name,
        "origin": result.origin,
        "size": outcome.size,
        "source_size": result.source_size,
        "delivered": outcome.delivered,
        "answered": result.answered,
        "expired": result.expired,
        "ok": result.ok,
        "problem": result.problem,
        "chunks": chunks,
        "chunks_sent": sent,
        "chunks_lost": lost,
        "retransmitted": _int(stats, "retransmitted"),
        "repairs": _int(stats, "repairs_sent"),  # forward repair (snip only; spec 9.6)
        # Sessions it was sent in: more than one after a session fell silent and it went again,
        # and then the counters above are those of every session together.
        "sessions": _int(stats, "sessions") or 1,
        # Share of the transmitted chunks the network lost (what the link did) ...
        "loss_pct": _pct(lost, sent),
        # ... and share of the image's chunks that got through in the end (what the user got).
        "success_pct": 100.0 if outcome.delivered else (0.0 if chunks else None),
        "goodput_mbps": goodput,
        "rtt_ms": float(rtt) if isinstance(rtt, int | float) else None,
        "time_s": outcome.elapsed_s,
        "reply_time_s": outcome.reply_elapsed_s,
        "reply": outcome.reply,
        "error": outcome.error,
    }


def _sum(rows: list[dict[str, Any]], key: str) -> int | None:
    values = [row[key] for row in rows if row[key] is not None]
    return sum(values) if values else None


def total_figures(report: SendReport) -> dict[str, Any]:
    rows = [image_figures(result) for result in report.results]
    delivered = [row for row in rows if row["delivered"]]
    delivered_bytes = sum(row["size"] for row in delivered)
    chunks, sent, lost = _sum(rows, "chunks"), _sum(rows, "chunks_sent"), _sum(rows, "chunks_lost")
    delivered_chunks = _sum(delivered, "chunks")
    rtts = [row["rtt_ms"] for row in rows if row["rtt_ms"] is not None]
    return {
        "images": len(rows) + len(report.local_failures) + report.not_sent,
        "sent": len(rows),
        "delivered": len(delivered),
        "answered": sum(1 for row in rows if row["answered"]),
        "expired": sum(1 for row in rows if row["expired"]),
        "failed": sum(1 for row in rows if not row["ok"]) + len(report.local_failures),
        "not_sent": report.not_sent,
        "skipped_frames": report.skipped_frames,
        "bytes": delivered_bytes,
        "chunks": chunks,
        "chunks_sent": sent,
        "chunks_lost": lost,
        "retransmitted": _sum(rows, "retransmitted"),
        "repairs": _sum(rows, "repairs"),
        "loss_pct": _pct(lost, sent),
        "success_pct": _pct(delivered_chunks or 0, chunks) if chunks else None,
        "goodput_mbps": delivered_bytes * 8 / report.elapsed_s / 1e6 if report.elapsed_s > 0 else None,
        "rtt_ms": sum(rtts) / len(rtts) if rtts else None,
        "time_s": report.elapsed_s,
        "ok": report.ok,
    }


def to_json(report: SendReport, *, target: str, transport: str) -> JSON:
    return {
        "target": target,
        "transport": transport,
        "images": [image_figures(result) for result in report.results],
        "local_failures": [vars(failure) for failure in report.local_failures],
        "totals": total_figures(report),
        "session": report.session,
        "stopped_by_user": report.stopped_by_user,
        "exit_code": report.exit_code,
    }


# --- text ----------------------------------------------------------------------------------------


def reply_brief(reply: JSON | None) -> str:
    """A reply in a few words: the classifiers' answers, a refusal, or where it was saved."""
    if reply is None:
        return "-"
    if "error" in reply:
        return f"refused: {reply['error']}"
    answers = classification_answers(reply.get("classification"))
    if answers:
        return "; ".join(answers)
    saved = reply.get("saved")
    if isinstance(saved, str):
        return f"saved as {saved.rsplit('/', 1)[-1]}"
    text = json.dumps(reply, separators=(",", ":"))
    return text if len(text) <= 60 else text[:59] + "…"


def print_report(report: SendReport, console: Console, *, target: str, transport: str,
                 show_replies: bool = True) -> None:
    rows = []
    for result in report.results:
        figures = image_figures(result)
        if result.expired:
            status, note = "[yellow]dropped[/]", result.problem or ""
        elif not result.ok:
            status, note = "[red]FAILED[/]", result.problem or ""
        else:
            status, note = "[green]ok[/]", reply_brief(figures["reply"]) if show_replies else ""
        rows.append([
            figures["name"], human_bytes(figures["size"]), status, opt(figures["chunks"]), opt(figures["chunks_sent"]),
            opt(figures["chunks_lost"]), opt(figures["loss_pct"], ".1f"), opt(figures["success_pct"], ".1f"),
            opt(figures["retransmitted"]), opt(figures["goodput_mbps"], ".1f"), opt(figures["rtt_ms"], ".1f"),
            opt(figures["time_s"], ".2f"), note,
        ])
    rows += [[f.name, "-", "[red]FAILED[/]", *["-"] * 9, f.error] for f in report.local_failures]
    columns = ["image", "size", "status", "chunks", "sent", "lost", "loss %", "success %", "retrans", "Mbit/s",
               "RTT ms", "time s", "reply" if show_replies else "note"]
    if not any(row[-1] for row in rows):
        columns.pop()  # nothing to say in the last column: leave it out
    table = Table(title=f"sent to {target} via {transport}", title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index in (0, 2, 12) else "right")
    for row in rows:
        table.add_row(*row[: len(columns)])
    console.print(table)
    print_totals(report, console)


def print_replies(report: SendReport, console: Console) -> None:
    """Every reply in full (compact JSON), one line per image."""
    for result in report.results:
        if result.outcome.reply is not None:
            text = json.dumps(result.outcome.reply, separators=(",", ":"), default=str)
            console.print(f"{result.outcome.name}: {text}", markup=False, highlight=False, soft_wrap=True)


def print_totals(report: SendReport, console: Console) -> None:
    t = total_figures(report)
    parts = [f"{t['delivered']}/{t['images']} delivered"]
    if report.want_reply:
        parts.append(f"{t['answered']} answered")
    if t["expired"]:
        parts.append(f"{t['expired']} dropped as late")
    if report.skipped_frames:
        parts.append(f"{report.skipped_frames} frames skipped for newer ones")
    if t["not_sent"]:
        parts.append(f"{t['not_sent']} not sent")
    parts.append(f"{human_bytes(t['bytes'])} in {t['time_s']:.2f} s")
    if t["goodput_mbps"] is not None:
        parts.append(f"goodput {t['goodput_mbps']:.1f} Mbit/s")
    console.print("total: " + ", ".join(parts))
    if t["chunks"] is not None:
        console.print(
            f"chunks: {t['chunks']} in the images, {opt(t['chunks_sent'])} sent, {opt(t['chunks_lost'])} lost "
            f"(loss {opt(t['loss_pct'], '.1f')}%), {opt(t['retransmitted'])} retransmitted, "
            f"success {opt(t['success_pct'], '.1f')}%, RTT {opt(t['rtt_ms'], '.1f')} ms"
        )
    if report.stopped_by_user:
        console.print("stopped by the user")
