"""`snip netsim ...`: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.cli import main
from netsim.spec import PRESETS

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["netsim", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_describe_prints_effective_settings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "describe", "loss=5%", "delay=50ms", "jitter=10ms", "rate=20mbit", "queue=100kb")
    assert code == 0
    assert "link: loss=5% delay=50ms jitter=10ms rate=20mbit queue=100kb" in out
    assert "5% independent (Bernoulli)" in out and "100000 bytes drop-tail" in out


def test_describe_json_has_both_directions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "describe", "--json", "delay=20ms | fwd: rate=5mbit | rev: loss=1%")
    data = json.loads(out)
    assert code == 0
    assert data["fwd"]["rate"] == 5e6 and data["rev"]["rate"] is None
    assert data["rev"]["loss"] == {"model": "bernoulli", "p": 0.01, "loss_rate": 0.01}


def test_presets_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "presets")
    assert code == 0
    for name, text in PRESETS.items():
        assert name in out and text in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["describe", "loss=150%"], "'loss=150%'"),
        (["describe", "delay=-5ms"], "must not be negative"),
        (["describe", "wifi-of-doom"], "unknown link token 'wifi-of-doom'"),
        (["describe", "flavour=mint"], "unknown key 'flavour'"),
        (["relay", "--listen", "127.0.0.1:70000", "--to", "127.0.0.1:9"], "bad address"),
        (["relay", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "loss=2"], "write 2% for percent"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], args: list[str], fragment: str) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snip netsim: error: ") and fragment in lines[0]
    assert "Traceback" not in err


def test_shell_without_root_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, _, err = run(capsys, "shell", "rtt=10ms", "--", "true")
    assert code == 2 and "needs root" in err and "snip netsim relay" in err


def test_relay_command_forwards_and_reports(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from apps.cli import main; sys.exit(main())",
         "netsim", "relay", "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{server.getsockname()[1]}",
         "--stats-interval", "0", "--json", "--pcap", str(tmp_path / "r.pcap"), "delay=5ms"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert banner.startswith("netsim relay: 127.0.0.1:")
        port = int(banner.split()[2].rsplit(":", 1)[1])
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(10):
            client.sendto(b"datagram %d" % i, ("127.0.0.1", port))
        got = sorted(server.recv(100) for _ in range(10))
        assert got == sorted(b"datagram %d" % i for i in range(10))
        client.close()
    finally:
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        server.close()
    assert proc.returncode == 0
    stats = json.loads(out)
    assert stats["to_server"] == 10 and stats["link"]["fwd"]["passed"] == 10
    assert (tmp_path / "r.pcap").stat().st_size > 24 + 10 * 16
