"""The case table itself: every case quotes spec.md verbatim, under the right label and module."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from apps.conformance.model import Case, section_of

from .conftest import ALL

SPEC = (Path(__file__).resolve().parents[2] / "protocol" / "spec.md").read_text()


def _flat(text: str) -> str:
    """Whitespace collapsed, Markdown emphasis and code marks dropped: quotes are of the prose."""
    return " ".join(re.sub(r"[*`]", "", text).split())


FLAT_SPEC = _flat(SPEC)
LABELS = set(re.findall(r"\*\*(R\d+(?:\.\d+)?-\d+)\.?\*\*", SPEC))


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_case_quotes_the_spec(case: Case) -> None:
    assert _flat(case.text) in FLAT_SPEC, f"{case.id} does not quote spec.md verbatim"
    if case.label.startswith("R"):
        assert case.label in LABELS, f"{case.label} is not a requirement label of spec.md"
    assert case.section == section_of(case.label)
    top = case.section.split(".")[0]
    assert case.func.__module__.split(".")[-1].startswith(f"s{int(top):02d}_"), "cases live in the module of their section"
    assert case.title and not case.title[0].islower()


def test_ids_are_unique_and_ordered_by_section() -> None:
    ids = [c.id for c in ALL]
    assert len(ids) == len(set(ids))
    keys = [tuple(int(p) for p in c.section.split(".")) for c in ALL]
    assert keys == sorted(keys)


def test_the_issue_s_coverage() -> None:
    """The requirements issue 7 names all have cases, in the roles it names."""
    by_label = Counter((c.label, c.role) for c in ALL)
    wanted = [
        ("R7.3-1", "receiver"), ("5.3 header", "receiver"), ("R5.1-2", "receiver"),  # handshake, cookie
        ("R7.4-2", "receiver"),  # anti-amplification
        ("R3-3", "receiver"), ("R3-7", "receiver"),  # version handling
        ("R4.2-2", "receiver"), ("R4.2-3", "receiver"), ("R4.2-4", "receiver"),  # validation
        ("R9.1-1", "receiver"), ("R9.1-4", "receiver"),  # NACK on gaps, reordering, re-NACK
        ("R9.4-4", "sender"), ("R9.1-7", "receiver"),  # tail loss, both roles
        ("R10.3-2", "receiver"), ("R11.3-5", "receiver"), ("R11.3-3", "receiver"), ("R8.1-4", "receiver"),
        ("R12.4-4", "receiver"), ("R12.1-1", "receiver"),
    ]
    missing = [w for w in wanted if not by_label[w]]
    assert not missing
    assert sum(1 for c in ALL if c.role == "sender") >= 30
    assert len(ALL) >= 170
    for case in ALL:
        assert case.level in ("MUST", "SHOULD")
        assert case.needs <= {"retry", "push", "big-object"}


def test_the_readme_counts_cases_and_labels_as_they_are() -> None:
    """The README's figures for the suite follow the table: a case or a label added updates them."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(r"runs (\d+) black-box cases, covering (\d+) of the (\d+) labelled", " ".join(readme.split()))
    assert found is not None, "the README no longer states the suite's coverage"
    covered = {c.label for c in ALL} & LABELS
    assert tuple(int(n) for n in found.groups()) == (len(ALL), len(covered), len(LABELS))
