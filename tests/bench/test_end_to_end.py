"""`snip bench` end to end, small: every output is written, complete and consistent.

These check completeness, not speed: every image of every run that could run was delivered,
verified and answered; every metric is present; JSON, CSV, markdown and PNG are written. The TUN
test needs root (network namespaces); the relay test forces the no-root path and runs anywhere.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import cli, runner
from benchmarks.endpoints import CORE_TRANSPORTS, TRANSPORTS
from benchmarks.runner import transport_problem
from netsim.tun import TunUnavailable, check_available

SMALL = ["--sizes", "16kib,64kib", "--loss", "0,5", "--rtt", "20", "--timeout", "30"]


def _tun_problem() -> str | None:
    try:
        check_available()
    except TunUnavailable as exc:
        return str(exc)
    return None


def _bench(tmp_path: Path, *argv: str) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "out"
    assert cli.main([*SMALL, "--out", str(out), *argv]) == 0
    return out, json.loads((out / "results.json").read_text())


def _check(out: Path, data: dict[str, Any], ran: set[str], not_run: dict[str, str]) -> None:
    runs = data["runs"]
    assert {(r["scenario"], r["transport"]) for r in runs} == {
        (s, t) for s in ("50mbit 20ms 0%", "50mbit 20ms 5%") for t in ran | set(not_run)
    }
    for run in runs:
        if run["transport"] in not_run:
            assert run["status"] == not_run[run["transport"]] and run["note"]
            continue
        assert run["status"] == "ok", run["note"]
        assert [i["size"] for i in run["images"]] == [16384, 65536]
        for image in run["images"]:
            assert image["status"] == "ok", (run["transport"], image)
            assert 0 < image["delivery_s"] <= image["reply_s"] < 30
            assert image["limit_s"] > 0 and image["classification"] in ("real", "animated")
        assert run["wire_ratio"] > 1.0 and run["wire"]["fwd"]["bytes"] > 16384 + 65536
        assert run["cpu_sender_s"] >= 0 and run["cpu_receiver_s"] >= 0 and run["setup_s"] > 0
        assert run["cc"] and run["seed"] == 1 and run["queue"] == "250000 bytes"
    for summary in data["summaries"]:
        if summary["transport"] in ran:
            for key in ("deliver_p50", "deliver_p95", "deliver_max", "reply_p50", "limit_s", "limit_fraction",
                        "goodput_mbit", "wire_ratio", "cpu_sender_s", "cpu_receiver_s"):
                assert isinstance(summary[key], float), (summary["transport"], key)
    assert data["meta"]["machine"]["cores"] and data["meta"]["machine"]["python"]
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == len(runs)
    images = list(csv.DictReader((out / "images.csv").open()))
    assert len(images) == 2 * sum(1 for r in runs if r["status"] == "ok")
    table = (out / "summary.md").read_text()
    for transport in ran | set(not_run):
        assert f"| 50mbit 20ms 5% | {TRANSPORTS[transport].label} |" in table
    for plot in ("loss_50mbit_rtt20ms.png", "scenarios.png"):
        assert (out / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    logs = list((out / "logs").glob("*.log"))
    assert len(logs) == 2 * sum(1 for r in runs if r["status"] == "ok")


def test_relay_path_forced(tmp_path: Path) -> None:
    out, data = _bench(tmp_path, "--via", "relay", "--transports", "snip,tcp-bbr,email")
    assert data["meta"]["mode"] == "relay"
    _check(out, data, {"snip"}, {"tcp-bbr": "needs root", "email": "needs root"})
    assert data["runs"][0]["mode"] == "relay" and data["runs"][0]["cc"] == "snipbbr"


def _no_tun() -> None:
    raise TunUnavailable("the TUN link emulator needs root (network namespaces and /dev/net/tun)")


def test_without_root_snip_runs_through_the_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runner, "check_available", _no_tun)  # what a non-root user meets
    out, data = _bench(tmp_path, "--transports", "snip,tcp-cubic", "--loss", "5")
    said = capsys.readouterr().out
    assert "no TUN link here (the TUN link emulator needs root" in said
    assert "running snip alone through the UDP relay" in said
    assert data["meta"]["mode"] == "relay" and "needs root" in data["meta"]["fallback_reason"]
    assert [r["status"] for r in data["runs"]] == ["ok", "needs root"]
    assert all(image["status"] == "ok" for image in data["runs"][0]["images"])
    assert "no TUN link: the TUN link emulator needs root" in (out / "summary.md").read_text()


def test_tun_refused_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "check_available", _no_tun)
    assert cli.main(["--via", "tun", "--dry-run"]) == 2


@pytest.mark.root
@pytest.mark.skipif(_tun_problem() is not None, reason=_tun_problem() or "")
def test_quick_over_the_tun_link_every_transport(tmp_path: Path) -> None:
    not_run = {}
    for name in TRANSPORTS:
        problem = transport_problem(name, "tun")
        if problem is not None:
            not_run[name] = problem[0]
    ran = set(TRANSPORTS) - set(not_run)
    assert not {"snip", "tcp-cubic", "tcp-bbr"} & set(not_run)
    if "email" in not_run:
        pytest.skip(f"email cannot run here: {transport_problem('email', 'tun')}")
    out, data = _bench(tmp_path, "--transports", "all", "--via", "tun")
    assert data["meta"]["mode"] == "tun"
    _check(out, data, ran, not_run)
    by = {(r["transport"]): r for r in data["runs"] if r["scenario"] == "50mbit 20ms 5%"}
    assert by["tcp-cubic"]["cc"] == "cubic" and by["tcp-bbr"]["cc"] == "bbr"
    assert by["email"]["cc"].startswith("cubic") and by["snip"]["mtu"] == 1500
    assert set(CORE_TRANSPORTS) <= ran
