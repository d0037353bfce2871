"""What a conformance case is and what running one yields (h2spec's model: one case per requirement)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .context import Context

Role = Literal["receiver", "sender"]
Level = Literal["MUST", "SHOULD"]
ROLES: tuple[Role, ...] = ("receiver", "sender")

# "R5.12-1" (a labelled requirement), or "4.2 step 7" / "5.3 header" (normative text the spec left
# without a label: the section and where in it)
_LABEL = re.compile(r"^(?:R(\d+(?:\.\d+)?)-\d+|(\d+(?:\.\d+)?) [a-z]+(?: \d+)?)$")


class Verdict(Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class CaseFailed(Exception):
    """The target did not do what the requirement says.

    ``absent`` marks a failure for want of an answer (rather than for a wrong one): on a lossy path
    the answer, or what asked for it, may have been lost, so such a case is worth running again.
    ``late`` marks an answer that came after the time the requirement allows: a busy host (the
    tester's or the target's) may have held it up, and a target that answers late does so every
    time, so such a case is worth running again too.
    """

    def __init__(self, expected: str, got: str, *, absent: bool = False, late: bool = False) -> None:
        super().__init__(f"expected {expected}; got {got}")
        self.expected = expected
        self.got = got
        self.absent = absent
        self.late = late


class Unsupported(Exception):
    """The case cannot judge this target (e.g. it never demands a RETRY token)."""


@dataclass(frozen=True)
class Case:
    """One testable requirement of protocol/spec.md and the function that checks it.

    ``needs`` names target behaviours a case can only exercise where the target has them
    ("retry": the target demands address validation; "push": the target sends objects unasked;
    "big-object": the sender's object is far larger than a congestion window).
    A live target simply lacks or has them; the in-process tests pick a target that has them.
    """

    id: str
    section: str
    label: str
    text: str
    role: Role
    level: Level
    title: str
    func: Callable[[Context], None]
    slow: bool = False
    needs: frozenset[str] = frozenset()

    @property
    def requirement(self) -> str:
        return f"{self.label} ({self.level})"


def section_of(label: str) -> str:
    """'R5.12-1' -> '5.12'; 'R3-9' -> '3'; '4.2 step 7' -> '4.2'. Raises ValueError otherwise."""
    match = _LABEL.match(label)
    if match is None:
        raise ValueError(f"bad requirement label {label!r} (expected e.g. R5.12-1 or '4.2 step 7')")
    return match.group(1) or match.group(2)


@dataclass
class Result:
    case: Case
    verdict: Verdict
    duration: float
    expected: str = ""
    got: str = ""
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    absent: bool = False  # failed for want of an answer (see CaseFailed)
    late: bool = False  # failed for an answer that came too late (see CaseFailed)

    @property
    def message(self) -> str:
        if self.verdict is Verdict.FAILED:
            return f"expected {self.expected}; got {self.got}"
        return self.reason

    def as_dict(self) -> dict[str, object]:
        case = self.case
        return {
            "id": case.id,
            "section": case.section,
            "label": case.label,
            "level": case.level,
            "role": case.role,
            "title": case.title,
            "requirement": case.text,
            "verdict": self.verdict.value,
            "expected": self.expected,
            "got": self.got,
            "reason": self.reason,
            "notes": list(self.notes),
            "duration_s": round(self.duration, 4),
        }


@dataclass
class Summary:
    results: list[Result]
    duration: float

    def count(self, verdict: Verdict) -> int:
        return sum(1 for r in self.results if r.verdict is verdict)

    @property
    def ok(self) -> bool:
        return self.count(Verdict.FAILED) == 0

    def line(self) -> str:
        return (
            f"{self.count(Verdict.PASSED)} passed, {self.count(Verdict.FAILED)} failed, "
            f"{self.count(Verdict.SKIPPED)} skipped"
        )
