"""Every case against the project's own endpoint, in netsim's simulator, in both roles."""

from __future__ import annotations

import pytest

from apps.conformance.model import Case, Verdict
from apps.conformance.runner import run_case
from apps.conformance.sim_target import sim_factory

from .conftest import ALL, IN_PROCESS, KNOWN_BUGS, params


@pytest.mark.parametrize("case", params(ALL, KNOWN_BUGS))
def test_case(case: Case) -> None:
    result = run_case(case, sim_factory(case.role, seed=1)(case), IN_PROCESS)
    assert result.verdict is Verdict.PASSED, f"{result.verdict.value}: {result.message}"


def test_runs_are_deterministic() -> None:
    """The same seed gives the same traffic: the transcript of a case is identical twice."""
    case = next(c for c in ALL if c.id == "9.1/R9.1-4/re-nack")
    transcripts = []
    for _ in range(2):
        target = sim_factory("receiver", seed=3)(case)
        run_case(case, target, IN_PROCESS)
        transcripts.append(target.stats()["sim"]["events"])
    assert transcripts[0] == transcripts[1] > 0


def test_a_lossy_delayed_link_between_tester_and_target() -> None:
    """Cases that wait and repair hold across a netsim link with delay and loss."""
    chosen = {"9.1/R9.1-4/re-nack", "8.2/R8.2-4/data-before-announce", "4.2/R4.2-3/bad-crc", "10.3/R10.3-2/digest-mismatch-twice-cancels"}
    make = sim_factory("receiver", link="delay=20ms loss=5%", seed=2)
    for case in (c for c in ALL if c.id in chosen):
        result = run_case(case, make(case), IN_PROCESS)
        assert result.verdict is Verdict.PASSED, f"{case.id}: {result.message}"
