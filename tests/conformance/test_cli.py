"""`snip conformance` and `snip fuzz` as a user meets them: usage errors, listings, reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from apps.cli import main
from apps.conformance.model import Result, Summary, Verdict
from apps.conformance.report import junit

from .conftest import ALL


@pytest.mark.parametrize(
    "argv,message",
    [
        (["conformance"], "say what to test"),
        (["conformance", "--target", "nowhere.invalid:9000"], "cannot resolve"),
        (["conformance", "--target", "127.0.0.1:notaport"], "port must be a number"),
        (["conformance", "--role", "sender", "--target", "127.0.0.1:9"], "--target names a receiver"),
        (["conformance", "--listen", "127.0.0.1:0", "--role", "receiver"], "--listen is for the sender role"),
        (["conformance", "--in-process", "--section", "99"], "no case matches"),
        (["conformance", "--in-process", "--link", "loss=lots"], "--link"),
        (["conformance", "--in-process", "--timeout", "0"], "--timeout must be positive"),
        (["conformance", "--target", "127.0.0.1:9", "--exec", "true"], "--exec starts a sender"),
        (["conformance", "--target", "127.0.0.1:9", "--timeout", "0.3"], "no SNIP receiver answers at 127.0.0.1:9"),
        (["fuzz"], "say what to fuzz"),
        (["fuzz", "--target", "127.0.0.1:9", "--timeout", "0.3"], "cannot open sessions with the target"),
        (["fuzz", "--in-process", "--count", "0"], "must be positive"),
        (["fuzz", "--in-process", "--replay", "/nonexistent/repro.json"], "cannot read"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_file_that_is_not_a_reproducer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"hello": 1}))
    assert main(["fuzz", "--replay", str(path), "--in-process"]) == 2
    assert "not a snip fuzz reproducer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "link,reorders", [("delay=20ms jitter=5ms", True), ("delay=20ms reorder=5%", True), ("delay=20ms jitter=5ms fifo", False)]
)
def test_a_link_that_reorders_is_named_in_the_report(link: str, reorders: bool, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--in-process", "--section", "3", "--seed", "1", "--link", link]) in (0, 1)
    assert ("the link reorders datagrams" in capsys.readouterr().out) is reorders


def test_list_the_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in listed] == [c.id for c in ALL]
    assert main(["conformance", "--list", "--section", "9.4", "--role", "sender"]) == 0
    out = capsys.readouterr().out
    assert "9.4/R9.4-4/tail-loss" in out and out.strip().endswith("cases")


def test_in_process_run_prints_sections_and_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--in-process", "--section", "10", "--seed", "1", "-v"]) == 0
    out = capsys.readouterr().out
    assert "10. Integrity" in out and "requirement (R10.2-2, MUST)" in out
    assert out.rstrip().splitlines()[-1].startswith("6 passed, 0 failed, 0 skipped")


def test_in_process_sender_role_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--in-process", "--role", "sender", "--section", "9.4", "--json", "--seed", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["role"] == "sender" and report["summary"]["failed"] == 0
    assert {r["role"] for r in report["results"]} == {"sender"}


def test_junit_of_every_verdict() -> None:
    cases = list(ALL[:3])
    summary = Summary(
        [
            Result(cases[0], Verdict.PASSED, 0.1),
            Result(cases[1], Verdict.FAILED, 0.2, expected="an ACK", got="nothing <&> within 1 s"),
            Result(cases[2], Verdict.SKIPPED, 0.0, reason="unsupported: no RETRY"),
        ],
        0.3,
    )
    root = ET.fromstring(ET.tostring(junit(summary, "suite").getroot()))
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("3", "1", "1")
    failure = root.find(".//failure")
    assert failure is not None and failure.get("message") == "expected an ACK; got nothing <&> within 1 s"
    assert failure.get("type") == cases[1].label
    skipped = root.find(".//skipped")
    assert skipped is not None and skipped.get("message") == "unsupported: no RETRY"
    assert summary.line() == "1 passed, 1 failed, 1 skipped" and not summary.ok
