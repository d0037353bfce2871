"""The transport registry, address parsing, and the command-line surface of send/receive."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from apps import transports
from apps.transports import TransportUnavailable, add_transport_arguments, join_host_port, load, split_host_port
from tests.apps.conftest import parse

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("example.org:1", ("example.org", 1)),
        ("[::1]:9000", ("::1", 9000)),
        ("[::]", ("::", 7)),
        ("::1", ("::1", 7)),
        ("host", ("host", 7)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text, 7) == expected


@pytest.mark.parametrize("text", ["host:", ":90", "[::1", "[::1]x", "host:99999", "host:port", "host:-1"])
def test_split_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(text, None if text == "host:" else 7)


def test_join_host_port() -> None:
    assert join_host_port("::1", 5) == "[::1]:5" and join_host_port("10.0.0.1", 5) == "10.0.0.1:5"


def test_unknown_and_missing_transports_say_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TransportUnavailable, match="unknown transport 'pigeon'"):
        load("pigeon")
    monkeypatch.setitem(transports.TRANSPORT_MODULES, "carrier", "apps.transports.no_such_module")
    with pytest.raises(TransportUnavailable, match="not part of this installation"):
        load("carrier")
    assert load("snip").__name__ == "apps.transports.snip"  # type: ignore[attr-defined]


def test_snip_without_its_binding_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from apps.cli import CommandError
    from tests.apps.conftest import image_bytes, run_send

    monkeypatch.setitem(sys.modules, "protocol.aio", None)
    (tmp_path / "a.jpg").write_bytes(image_bytes(1))
    with pytest.raises(CommandError, match=r"needs the protocol's asyncio binding \(protocol.aio\)"):
        asyncio.run(run_send("127.0.0.1:9", str(tmp_path / "a.jpg")))


@pytest.mark.parametrize("role", ["sender", "receiver"])
def test_every_present_transport_adds_its_options_without_clashing(role: str) -> None:
    parser = argparse.ArgumentParser()
    present = add_transport_arguments(parser, role)  # type: ignore[arg-type]
    assert "snip" in present
    args = parser.parse_args([])
    assert args.chunk_size is None and args.rate is None  # snip leaves its defaults to the protocol


def test_the_sender_keeps_trying_to_open_the_session_for_30_seconds_unless_told() -> None:
    # protocol/spec.md R7.2-3 recommends 10 s; an outage at the start of a slow path needs longer
    # (tests/protocol/test_transfer.py shows one that 10 s cannot survive).
    from apps.transports import snip

    for argv, expected in (([], snip.DEFAULT_CONNECT_TIMEOUT_S), (["--connect-timeout", "4"], 4.0)):
        args = parse("send", "h:1", "a.jpg", *argv)
        assert snip.sender_from_args(args, "h:1")._config.handshake_timeout == expected
    assert snip.DEFAULT_CONNECT_TIMEOUT_S == 30.0


def test_send_and_receive_parse() -> None:
    args = parse("send", "h:1", "a.jpg", "dir", "--include", "*.jpg", "--include", "*.png", "--format", "webp",
                 "--quality", "70", "--max-dim", "640", "--deadline", "0.5", "--no-reply", "--via", "snip")
    assert (args.sources, args.include, args.format, args.deadline, args.no_reply) == (
        ["a.jpg", "dir"], ["*.jpg", "*.png"], "webp", 0.5, True)
    args = parse("receive", "--out", "o", "--max-size", "20M", "--max-transfers", "8", "--grace", "2",
                 "--classify", "colors,bytes", "--listen", "[::1]:9000")
    assert (args.max_size, args.max_transfers, args.grace, args.listen) == (20 << 20, 8, 2.0, "[::1]:9000")


def test_help_of_every_app_command_renders() -> None:
    from apps import demo
    from apps.receiver import cli as receiver_cli
    from apps.sender import cli as sender_cli

    parser = argparse.ArgumentParser(prog="snip")
    sub = parser.add_subparsers()
    for module in (sender_cli, receiver_cli, demo):
        module.register(sub)
    for name, subparser in sub.choices.items():
        assert "usage: snip " + name in subparser.format_help()


def _snip(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apps.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "a-file").write_text("x")
    cases = [
        (["send", "127.0.0.1:9", "missing.jpg"], "missing.jpg: no such file or folder"),
        (["send", "127.0.0.1:9", "empty.jpg"], "empty.jpg: empty file (0 bytes)"),
        (["send", "127.0.0.1:9", "notes.txt"], "notes.txt: not an image"),
        (["send", "127.0.0.1:9"], "nothing to send"),
        (["send", "127.0.0.1:9", "x.jpg", "--camera", "0"], "not both"),
        (["send", "127.0.0.1:9", "--video", "none.avi"], "none.avi: no such video file"),
        (["send", "127.0.0.1:9", "empty.jpg", "--fps", "5"], "apply to --camera and --video only"),
        (["send", "127.0.0.1:9", "--video", "none.avi", "--fps", "0"], "--fps must be positive"),
        (["receive", "--out", "a-file/sub"], "cannot create the output folder"),
        (["send", "127.0.0.1:9", "x.jpg", "--reconnect-for", "-1"], "--reconnect-for must be 0 or more"),
        (["receive", "--out", "rx", "--max-memory", "1M"], "--max-memory (1048576 bytes) must hold at least one image"),
    ]
    for argv, message in cases:
        result = _snip(*argv, cwd=tmp_path)
        assert result.returncode == 2, (argv, result.stderr)
        assert message in result.stderr, (argv, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr


def test_the_same_flow_runs_over_tcp(tmp_path: Path) -> None:
    """--via tcp on both ends: the registry wires in the TCP baseline (skipped when it is absent)."""
    import asyncio
    import json

    from tests.apps.conftest import image_bytes, run_send, start_receiver

    try:
        load("tcp")
    except TransportUnavailable as exc:
        pytest.skip(str(exc))
    for i in range(3):
        (tmp_path / f"t{i}.jpg").write_bytes(image_bytes(20 + i))

    async def scenario() -> tuple[int, str]:
        receiver = await start_receiver(tmp_path / "out", "--via", "tcp")
        code, out, _ = await run_send(receiver.address, *(str(tmp_path / f"t{i}.jpg") for i in range(3)),
                                      "--via", "tcp", "--json")
        await receiver.finish()
        return code, out

    code, out = asyncio.run(scenario())
    assert code == 0
    doc = json.loads(out)
    assert doc["transport"] == "tcp" and doc["totals"]["answered"] == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t0.jpg", "t1.jpg", "t2.jpg"]
