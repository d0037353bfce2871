"""Run cases, each in isolation, and turn what happens into verdicts."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Sequence

from .context import Context, Options
from .model import Case, CaseFailed, Result, Role, Summary, Unsupported, Verdict
from .target import Target, TargetCrashed

#: Makes the target a case runs against: a fresh simulation per case, or the one live target.
TargetFactory = Callable[[Case], Target]


def select(
    cases: Iterable[Case],
    *,
    role: Role | None = None,
    sections: Sequence[str] = (),
    match: Sequence[str] = (),
) -> list[Case]:
    """Cases of ``role`` in any of ``sections`` (a section includes its subsections: "5" has
    "5.12") whose id contains any of ``match``."""

    def in_section(case: Case) -> bool:
        return not sections or any(case.section == s or case.section.startswith(s + ".") for s in sections)

    return [
        case
        for case in cases
        if (role is None or case.role == role) and in_section(case) and (not match or any(m in case.id for m in match))
    ]


def run_case(case: Case, target: Target | TargetFactory, options: Options) -> Result:
    """Run one case; a failing one again, up to ``options.attempts`` times, where it failed for an
    answer missing or late (a lossy link may have eaten what it waited for, a busy host held it
    up). A factory gives every attempt a fresh target."""
    start = time.monotonic()
    result = _attempt(case, target(case) if callable(target) else target, options, 1)
    for attempt in range(2, options.attempts + 1):
        if result.verdict is not Verdict.FAILED or not (result.absent or result.late):
            break  # a wrong answer is a wrong answer, however lossy the path
        first = result
        result = _attempt(case, target(case) if callable(target) else target, options, attempt)
        result.notes.insert(0, f"attempt {attempt} of {options.attempts}; attempt 1 failed: {first.message}")
    result.duration = time.monotonic() - start
    return result


def _attempt(case: Case, target: Target, options: Options, attempt: int) -> Result:
    if case.slow and not options.slow and not target.virtual:
        return Result(case, Verdict.SKIPPED, 0.0, reason="slow: waits for a long timer; run with --slow")
    ctx = Context(case, target, options, attempt)
    result: Result
    try:
        case.func(ctx)
    except CaseFailed as failure:
        result = Result(case, Verdict.FAILED, 0.0, expected=failure.expected, got=failure.got, absent=failure.absent,
                        late=failure.late)
    except Unsupported as why:
        result = Result(case, Verdict.SKIPPED, 0.0, reason=f"unsupported: {why}")
    except TargetCrashed as crash:
        result = Result(
            case,
            Verdict.FAILED,
            0.0,
            expected="the endpoint under test to keep running: no exception, no timer that never lets time pass (R4.2-10)",
            got=f"it raised {crash}",
        )
    except Exception as exc:  # a harness bug must show up as a failure, with its traceback
        result = Result(
            case,
            Verdict.FAILED,
            0.0,
            expected="the case to run to its end",
            got=f"tester error {type(exc).__name__}: {exc}",
            notes=traceback.format_exc().splitlines()[-6:],
        )
    else:
        result = Result(case, Verdict.PASSED, 0.0)
    finally:
        ctx.cleanup()
        target.end_case()
    if ctx.violations and result.verdict is not Verdict.FAILED:
        # Whatever the case looked at, the target sent something no endpoint may send.
        result = Result(
            case,
            Verdict.FAILED,
            0.0,
            expected="every datagram from the target well-formed and within the rules of spec 4.1",
            got="; ".join(ctx.violations),
        )
    result.notes = ctx.notes + result.notes
    return result


def run(
    cases: Iterable[Case],
    make_target: TargetFactory,
    options: Options,
    on_result: Callable[[Result], None] | None = None,
) -> Summary:
    start = time.monotonic()
    results: list[Result] = []
    for case in cases:
        result = run_case(case, make_target, options)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return Summary(results, time.monotonic() - start)
