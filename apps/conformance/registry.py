"""The one table of cases: each case module registers its functions with ``@case``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .model import Case, Level, Role, section_of

if TYPE_CHECKING:
    from .context import Context

CaseFunc = Callable[["Context"], None]

_TABLE: list[Case] = []
_IDS: set[str] = set()


def case(
    label: str,
    text: str,
    *,
    slug: str,
    role: Role = "receiver",
    level: Level = "MUST",
    slow: bool = False,
    needs: Iterable[str] = (),
) -> Callable[[CaseFunc], CaseFunc]:
    """Register ``func`` as the check of requirement ``label``, quoting ``text`` from spec.md.

    The case's title is the first line of the function's docstring: what the tester does.
    """

    def register(func: CaseFunc) -> CaseFunc:
        section = section_of(label)
        case_id = f"{section}/{label.replace(' ', '-')}/{slug}"
        if case_id in _IDS:
            raise ValueError(f"conformance case {case_id} registered twice")
        doc = inspect.getdoc(func) or ""
        title = doc.splitlines()[0] if doc else slug.replace("-", " ")
        _IDS.add(case_id)
        _TABLE.append(
            Case(
                id=case_id,
                section=section,
                label=label,
                text=" ".join(text.split()),
                role=role,
                level=level,
                title=title,
                func=func,
                slow=slow,
                needs=frozenset(needs),
            )
        )
        return func

    return register


def _section_key(section: str) -> tuple[int, ...]:
    return tuple(int(part) for part in section.split("."))


def registered() -> tuple[Case, ...]:
    """Every registered case, in spec order (section, then registration order)."""
    order = {id(c): i for i, c in enumerate(_TABLE)}
    return tuple(sorted(_TABLE, key=lambda c: (_section_key(c.section), order[id(c)])))
