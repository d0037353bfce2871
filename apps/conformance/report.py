"""Reports of a conformance run: readable text, JSON, and JUnit XML for CI systems."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from .model import Case, Result, Summary, Verdict

SECTION_NAMES = {
    "3": "Versioning",
    "4": "Datagram format",
    "5": "Packet types",
    "6": "Session parameters",
    "7": "Handshake and session identity",
    "8": "Objects and sequencing",
    "9": "Reliability",
    "10": "Integrity",
    "11": "Rate and flow control",
    "12": "Timers, close and abort",
}
_MARK = {Verdict.PASSED: "PASS", Verdict.FAILED: "FAIL", Verdict.SKIPPED: "SKIP"}
_COLOUR = {Verdict.PASSED: "\033[32m", Verdict.FAILED: "\033[31;1m", Verdict.SKIPPED: "\033[33m"}


def _use_colour(out: TextIO) -> bool:
    return out.isatty() and "NO_COLOR" not in os.environ


class TextReport:
    """Prints results as they come, grouped under their spec section, then the summary line."""

    def __init__(self, out: TextIO = sys.stdout, *, verbose: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self.colour = _use_colour(out)
        self._section: str | None = None

    def header(self, title: str) -> None:
        print(title, file=self.out)

    def result(self, result: Result) -> None:
        case = result.case
        top = case.section.split(".")[0]
        if top != self._section:
            self._section = top
            print(f"\n{top}. {SECTION_NAMES.get(top, '')}", file=self.out)
        mark = _MARK[result.verdict]
        if self.colour:
            mark = f"{_COLOUR[result.verdict]}{mark}\033[0m"
        print(f"  {mark}  {case.id}  {case.title}", file=self.out)
        if result.verdict is Verdict.FAILED or self.verbose:
            print(f"        requirement ({case.label}, {case.level}): \"{case.text}\"", file=self.out)
        if result.verdict is Verdict.FAILED:
            print(f"        expected: {result.expected}", file=self.out)
            print(f"        got:      {result.got}", file=self.out)
        elif result.verdict is Verdict.SKIPPED:
            print(f"        {result.reason}", file=self.out)
        for note in result.notes if (self.verbose or result.verdict is Verdict.FAILED) else ():
            print(f"        note: {note}", file=self.out)
        self.out.flush()

    def summary(self, summary: Summary) -> None:
        failed = [r for r in summary.results if r.verdict is Verdict.FAILED]
        if failed:
            print("\nFailed:", file=self.out)
            for r in failed:
                print(f"  {r.case.id}: {r.message}", file=self.out)
        print(f"\n{summary.line()} ({summary.duration:.1f} s)", file=self.out)


def as_json(summary: Summary, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        **meta,
        "summary": {
            "passed": summary.count(Verdict.PASSED),
            "failed": summary.count(Verdict.FAILED),
            "skipped": summary.count(Verdict.SKIPPED),
            "duration_s": round(summary.duration, 3),
            "line": summary.line(),
        },
        "results": [r.as_dict() for r in summary.results],
    }


def case_list(cases: Iterable[Case]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "section": c.section,
            "label": c.label,
            "level": c.level,
            "role": c.role,
            "title": c.title,
            "requirement": c.text,
            "slow": c.slow,
            "needs": sorted(c.needs),
        }
        for c in cases
    ]


def junit(summary: Summary, suite_name: str) -> ET.ElementTree:
    """JUnit XML: one testsuite, one testcase per case (classname = its section)."""
    counts = {
        "tests": str(len(summary.results)),
        "failures": str(summary.count(Verdict.FAILED)),
        "errors": "0",
        "skipped": str(summary.count(Verdict.SKIPPED)),
        "time": f"{summary.duration:.3f}",
    }
    root = ET.Element("testsuites", {"name": suite_name, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": suite_name, **counts})
    for result in summary.results:
        case = result.case
        element = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"snip.conformance.section_{case.section}", "name": case.id, "time": f"{result.duration:.3f}"},
        )
        requirement = f"{case.label} ({case.level}): {case.text}"
        if result.verdict is Verdict.FAILED:
            failure = ET.SubElement(element, "failure", {"message": result.message, "type": case.label})
            failure.text = f"{requirement}\nexpected: {result.expected}\ngot: {result.got}"
        elif result.verdict is Verdict.SKIPPED:
            ET.SubElement(element, "skipped", {"message": result.reason})
        out = ET.SubElement(element, "system-out")
        out.text = "\n".join([case.title, requirement, *result.notes])
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(summary: Summary, path: Path, suite_name: str = "snip conformance") -> None:
    junit(summary, suite_name).write(path, encoding="utf-8", xml_declaration=True)
