"""The runner's verdicts: passed, failed, skipped, retried, harness errors and crashes."""

from __future__ import annotations

from collections.abc import Callable

from apps.conformance.context import Context, Options
from apps.conformance.model import Case, CaseFailed, Unsupported, Verdict
from apps.conformance.runner import run_case, select
from apps.conformance.sim_target import SimTarget
from apps.conformance.target import TargetCrashed

from .conftest import ALL


def _case(func: object, **kwargs: object) -> Case:
    assert callable(func)
    return Case(id="4.2/R4.2-1/x", section="4.2", label="R4.2-1", text="t", role="receiver", level="MUST",
                title="T", func=func, **kwargs)  # type: ignore[arg-type]


def _failing(failure: CaseFailed, times: int | None = None) -> tuple[Callable[[Context], None], list[int]]:
    """A case that raises ``failure`` on its first ``times`` runs (every run without), and its runs."""
    calls: list[int] = []

    def func(ctx: Context) -> None:
        calls.append(1)
        if times is None or len(calls) <= times:
            raise failure

    return func, calls


def test_a_missing_answer_is_retried_a_wrong_one_is_not() -> None:
    lost_once, calls = _failing(CaseFailed("an ACK", "nothing within 1 s", absent=True), times=1)
    result = run_case(_case(lost_once), SimTarget(), Options(attempts=3))
    assert result.verdict is Verdict.PASSED and len(calls) == 2
    assert "attempt 2 of 3" in result.notes[0]

    wrong, calls = _failing(CaseFailed("no answer", "an ACK"))
    result = run_case(_case(wrong), SimTarget(), Options(attempts=3))
    assert result.verdict is Verdict.FAILED and len(calls) == 1 and result.message == "expected no answer; got an ACK"


def test_a_late_answer_is_retried_and_fails_if_late_every_time() -> None:
    """A late answer may have waited on a busy host (CI once saw an ACK 440 ms late from a sender
    in the tester's own process); a target that answers late does so on every attempt."""
    late_once, calls = _failing(CaseFailed("the ACK within 60 ms", "after 440.0 ms", late=True), times=1)
    result = run_case(_case(late_once), SimTarget(), Options(attempts=2))
    assert result.verdict is Verdict.PASSED and len(calls) == 2
    assert "attempt 1 failed: expected the ACK within 60 ms; got after 440.0 ms" in result.notes[0]

    always_late, calls = _failing(CaseFailed("the ACK within 60 ms", "after 80.0 ms", late=True))
    result = run_case(_case(always_late), SimTarget(), Options(attempts=2))
    assert result.verdict is Verdict.FAILED and len(calls) == 2 and result.late


def test_skips_crashes_and_tester_errors() -> None:
    def unsupported(ctx: Context) -> None:
        raise Unsupported("no RETRY here")

    def crash(ctx: Context) -> None:
        raise TargetCrashed("ValueError: boom")

    def bug(ctx: Context) -> None:
        raise KeyError("oops")

    assert run_case(_case(unsupported), SimTarget(), Options()).reason == "unsupported: no RETRY here"
    crashed = run_case(_case(crash), SimTarget(), Options())
    assert crashed.verdict is Verdict.FAILED and "raised ValueError: boom" in crashed.got
    broken = run_case(_case(bug), SimTarget(), Options())
    assert broken.verdict is Verdict.FAILED and "tester error KeyError" in broken.got and broken.notes


def test_slow_cases_wait_for_slow_on_wall_clock_targets() -> None:
    class WallClock(SimTarget):
        virtual = False

    case = _case(lambda ctx: None, slow=True)
    assert run_case(case, WallClock(), Options()).verdict is Verdict.SKIPPED
    assert run_case(case, WallClock(), Options(slow=True)).verdict is Verdict.PASSED
    assert run_case(case, SimTarget(), Options()).verdict is Verdict.PASSED  # virtual time: no cost


def test_malformed_output_fails_whatever_the_case_checked() -> None:
    def sloppy(ctx: Context) -> None:
        ctx.violation("R4.1-3", "the target sent a datagram that does not decode")

    result = run_case(_case(sloppy), SimTarget(), Options())
    assert result.verdict is Verdict.FAILED and result.got.startswith("R4.1-3:")


def test_selection_by_section_role_and_id() -> None:
    assert {c.section for c in select(ALL, sections=["9.1"])} == {"9.1"}
    assert all(c.section == "5" or c.section.startswith("5.") for c in select(ALL, sections=["5"]))
    assert not select(ALL, sections=["5.1"], match=["re-nack"])
    assert [c.id for c in select(ALL, match=["re-nack"])] == ["9.1/R9.1-4/re-nack"]
    assert {c.role for c in select(ALL, role="sender")} == {"sender"}
