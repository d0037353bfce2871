"""Runs the benchmark: every scenario, every seed, every transport, one after another.

Each run gets a fresh link built from the scenario and the seed (so every transport meets the
same loss pattern), a receiver worker in namespace B and a sender worker in namespace A (see
``benchmarks.worker``). Timing, link counters and CPU time are taken between the sender's ``go``
and its ``done``: connection set-up, logins and imports are outside the window (the warm-up
image pays them; its time is kept as ``setup_s``).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.endpoints import TRANSPORTS, TransportInfo, load
from benchmarks.links import BenchLink, RelayLink, TunBenchLink
from benchmarks.metrics import ImageResult, RunResult, limit_seconds
from benchmarks.procs import WorkerError, WorkerProcess, tree_cpu_seconds
from benchmarks.scenarios import Scenario
from benchmarks.workloads import Workload
from netsim.tun import TunUnavailable, check_available

__all__ = ["BLACKOUT_LEAD_S", "BenchConfig", "choose_mode", "run_all", "transport_problem"]

JSON = dict[str, Any]
# Scenarios with a blackout start timing this long after the link came up (the blackout times
# count from then): long enough for workers to start and the warm-up to finish.
BLACKOUT_LEAD_S = 8.0
_READY_S = 60.0


@dataclass
class BenchConfig:
    scenarios: list[Scenario]
    transports: list[str]
    workload: Workload
    out_dir: Path
    repeat: int = 1
    seed: int = 1
    timeout: float = 60.0
    classify: str = "colors"
    via: str = "auto"  # auto | tun | relay
    mtu: int = 1500
    email_cc: str | None = None
    transport_options: dict[str, list[str]] = field(default_factory=dict)  # transport -> KEY=VALUE


def choose_mode(via: str) -> tuple[str, str | None]:
    """("tun" | "relay", why the TUN link is not used, or None)."""
    if via == "relay":
        return "relay", "--via relay"
    try:
        check_available()
    except TunUnavailable as exc:
        if via == "tun":
            raise
        return "relay", str(exc)
    return "tun", None


def transport_problem(name: str, mode: str) -> tuple[str, str] | None:
    """(status, reason) when ``name`` cannot run here, else None."""
    info = TRANSPORTS[name]
    try:
        reason = load(name).unavailable()
    except ImportError as exc:
        reason = f"cannot import its driver: {exc}"
    if reason is not None:
        hint = f" ({info.install_hint})" if info.install_hint else ""
        return "not installed", reason + hint
    if mode == "relay" and not info.udp:
        return "needs root", "kernel TCP and the mail server cross only the TUN link, which needs root"
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


class _Run:
    """One transport over one scenario with one seed."""

    def __init__(self, config: BenchConfig, scenario: Scenario, info: TransportInfo, seed: int, repeat: int,
                 mode: str) -> None:
        self.config = config
        self.scenario = scenario
        self.info = info
        self.seed = seed
        self.mode = mode
        self.images = config.workload.images()
        self.result = RunResult(
            scenario=scenario.name, link=scenario.link, transport=info.name, label=info.label, seed=seed,
            repeat=repeat, status="ok", mode=mode, timeout_s=config.timeout, queue=scenario.queue,
            loss=scenario.loss, rtt_s=scenario.rtt_s, rate_bps=scenario.rate_bps,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self.cc = config.email_cc if info.name == "email" and config.email_cc else info.link_cc
        logs = config.out_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_stem = logs / f"{_slug(scenario.name)}--{info.name}--seed{seed}"

    def worker_argv(self, role: str, host: str, port: int) -> list[str]:
        config = self.config
        argv = ["-m", "benchmarks.worker", role, "--transport", self.info.name, "--host", host, "--port", str(port),
                "--timeout", f"{config.timeout:g}", "--classify", config.classify, *config.workload.to_args()]
        if self.cc and not self.info.udp:
            argv += ["--cc", self.cc]
        for option in config.transport_options.get(self.info.name, []):
            argv += ["--option", option]
        return argv

    def execute(self) -> RunResult:
        started = time.monotonic()
        lead = BLACKOUT_LEAD_S if self.scenario.has_blackout else 0.0
        spec = self.scenario.spec(lead)
        link: BenchLink | None = None
        workers: list[WorkerProcess] = []
        logs: list[Any] = []
        try:
            link = TunBenchLink(spec, self.seed, self.cc, self.config.mtu) if self.mode == "tun" else RelayLink(spec, self.seed)
            described = link.describe()
            self.result.mtu = described.get("mtu")
            self.result.cc = (described.get("namespace_cc") or {}).get("a")

            def start(role: str, host: str, port: int) -> WorkerProcess:
                path = Path(f"{self.log_stem}--{role}.log")
                log = path.open("w")
                logs.append(log)
                proc = link.popen(role, self.worker_argv("receive" if role == "receiver" else "send", host, port),
                                  subprocess.PIPE, log)
                worker = WorkerProcess(role, proc, path)
                workers.append(worker)
                return worker

            receiver = start("receiver", link.listen_host, 0)
            ready = receiver.expect("ready", _READY_S)
            peer: JSON = ready.get("info", {})
            host, port = link.route(int(peer.get("port") or 0))
            sender = start("sender", host, port)
            sender.tell(json.dumps(peer))
            warm = sender.expect("warm", _READY_S + self.config.timeout)
            self.result.setup_s = warm.get("setup_s")
            if warm.get("status") == "timeout":
                # Not even connected within the timeout: every image counts as taking longer.
                self.result.note = f"set-up did not finish within {self.config.timeout:g} s ({warm.get('error')})"
                self.result.images = [
                    ImageResult(image.name, image.size, "timeout", error="set-up timed out",
                                limit_s=limit_seconds(image.size, self.scenario, self.result.mtu))
                    for image in self.images
                ]
                self.result.wall_s = round(time.monotonic() - started, 3)
                return self.result
            if warm.get("status") != "ok":
                raise WorkerError(f"the warm-up image failed: {warm.get('error') or warm.get('status')}")
            if lead:
                wait = link.started_at + lead - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                else:
                    self.result.blackout_missed = True
                    self.result.note = f"set-up took {lead - wait:.1f} s: the blackout began before timing did"
            wire0, cpu0 = link.counters(), self._cpu(sender, receiver)
            sender.tell("go")
            done = sender.expect("done", len(self.images) * (self.config.timeout + 5) + 30)
            wire1, cpu1 = link.counters(), self._cpu(sender, receiver)
            receiver.tell("stop")
            report = receiver.expect("report", 30)
            self._fill(done, report, wire0, wire1, cpu0, cpu1)
        except Exception as exc:  # one failed run is a row saying why, not the end of the benchmark
            self.result.status = "error"
            detail = str(exc) if isinstance(exc, WorkerError | TunUnavailable) else f"{type(exc).__name__}: {exc}"
            self.result.note = detail[:2000]
        finally:
            for worker in reversed(workers):
                worker.finish(timeout=5)
            if link is not None:
                link.close()
            for log in logs:
                log.close()
        self.result.wall_s = round(time.monotonic() - started, 3)
        return self.result

    @staticmethod
    def _cpu(sender: WorkerProcess, receiver: WorkerProcess) -> tuple[float, float]:
        return tree_cpu_seconds([sender.pid]), tree_cpu_seconds([receiver.pid])

    def _fill(self, done: JSON, report: JSON, wire0: dict[str, JSON], wire1: dict[str, JSON],
              cpu0: tuple[float, float], cpu1: tuple[float, float]) -> None:
        result = self.result
        received = {r["name"]: r for r in report.get("received", [])}
        for record in done.get("images", []):
            result.images.append(self._image(record, received.get(record["name"])))
        result.sender_stats = done.get("stats", {})
        result.receiver_stats = report.get("stats", {})
        result.wire = {
            d: {k: int(wire1[d][k]) - int(wire0[d][k]) for k in ("packets", "bytes", "dropped")} for d in ("fwd", "rev")
        }
        result.wire_bytes = result.wire["fwd"]["bytes"] + result.wire["rev"]["bytes"]
        result.image_bytes = sum(image.size for image in result.images)
        # Only a run that delivered everything has a meaningful bytes-per-image ratio.
        if result.images and all(image.delivered for image in result.images) and result.image_bytes:
            result.wire_ratio = result.wire_bytes / result.image_bytes
        # A child that ends between the two readings without its parent waiting for it (one that
        # ignores SIGCHLD, or a helper reparented out of the tree) takes its CPU time with it: the
        # parent's count of reaped children never gets it, and the difference can dip below zero.
        result.cpu_sender_s = round(max(cpu1[0] - cpu0[0], 0.0), 3)
        result.cpu_receiver_s = round(max(cpu1[1] - cpu0[1], 0.0), 3)
        result.cc = self._cc(done, result.cc)

    def _cc(self, done: JSON, namespace_cc: str | None) -> str | None:
        """The congestion control actually in force, read back where the transport reports it."""
        stats = done.get("stats", {})
        if self.info.name.startswith("tcp"):
            for record in done.get("images", []):
                used = (record.get("stats") or {}).get("congestion_control")
                if used:
                    return str(used)
            return namespace_cc
        if self.info.udp:
            controller = stats.get("rate_control") or stats.get("congestion_control")
            return str(controller) if controller else None
        return f"{namespace_cc} (kernel default in the namespaces)" if namespace_cc else None

    def _image(self, record: JSON, got: JSON | None) -> ImageResult:
        timeout = self.config.timeout
        submitted = record.get("submitted_at")
        size = int(record["size"])
        image = ImageResult(record["name"], size, str(record.get("status", "failed")), error=record.get("error"),
                            limit_s=limit_seconds(size, self.scenario, self.result.mtu))
        if submitted is None:
            return image  # never sent
        if record.get("replied_at") is not None and record.get("status") == "ok":
            image.reply_s = float(record["replied_at"]) - float(submitted)
        if record.get("acked_s") is not None:
            image.acked_s = float(record["acked_s"])
        arrived = got.get("received_at") if got else record.get("reply_received_at")
        if arrived is not None:
            image.delivery_s = float(arrived) - float(submitted)
        if got is not None and not got.get("verified"):
            image.status = "corrupt"
        elif image.delivery_s is not None and image.delivery_s <= timeout and (got or record.get("verified")):
            # Delivered in time, even if the reply then was not: the reply time says that.
            image.status = "ok"
        elif image.status == "ok":
            image.status = "failed"
        if isinstance(record.get("classification"), dict):
            image.classification = record["classification"].get("answer")
        return image


def _say(line: str) -> None:
    # Flushed per line: a benchmark's output is often redirected to a log that someone is watching.
    print(line, flush=True)


def run_all(
    config: BenchConfig,
    *,
    progress: Callable[[str], None] | None = None,
    on_result: Callable[[Sequence[RunResult]], None] | None = None,
) -> tuple[list[RunResult], str, str | None]:
    """Every run; returns (results, mode, why not TUN). ``on_result`` sees the results so far."""
    if progress is None:
        progress = _say
    mode, why = choose_mode(config.via)
    if why is not None and config.via != "relay":
        progress(f"snip bench: no TUN link here ({why}).")
        progress("snip bench: running snip alone through the UDP relay; TCP and email need the TUN link (root).")
    problems = {name: transport_problem(name, mode) for name in config.transports}
    results: list[RunResult] = []
    total = len(config.scenarios) * config.repeat * len(config.transports)
    count = 0
    for scenario in config.scenarios:
        for repeat in range(config.repeat):
            seed = config.seed + repeat
            for name in config.transports:
                count += 1
                info = TRANSPORTS[name]
                problem = problems[name]
                if problem is not None:
                    result = RunResult(scenario.name, scenario.link, name, info.label, seed, repeat, problem[0],
                                       note=problem[1], mode=mode, timeout_s=config.timeout, queue=scenario.queue,
                                       loss=scenario.loss, rtt_s=scenario.rtt_s, rate_bps=scenario.rate_bps)
                else:
                    result = _Run(config, scenario, info, seed, repeat, mode).execute()
                results.append(result)
                progress(f"[{count}/{total}] {describe(result)}")
                if on_result is not None:
                    on_result(results)
    return results, mode, why


def describe(result: RunResult) -> str:
    """One progress line."""
    head = f"{result.scenario} | {result.transport} | seed {result.seed}: "
    if result.status != "ok":
        return head + f"{result.status} ({result.note})"
    parts = []
    for image in result.images:
        if image.delivered and image.delivery_s is not None:
            parts.append(f"{image.name.split('-', 1)[-1].rsplit('.', 1)[0]} {image.delivery_s:.3g}s")
        else:
            parts.append(f"{image.name.split('-', 1)[-1].rsplit('.', 1)[0]} {image.status}")
    wire = f", wire {result.wire_ratio:.3f}x" if result.wire_ratio else ""
    return head + ", ".join(parts) + wire + (f" [{result.note}]" if result.note else "")
