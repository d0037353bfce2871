"""Delta debugging (Zeller's ddmin): the smallest sublist of inputs that still fails."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def ddmin(items: Sequence[T], fails: Callable[[list[T]], bool], *, max_tests: int = 200) -> list[T]:
    """A 1-minimal failing sublist of ``items`` (which must fail), within ``max_tests`` runs.

    Tries each of n chunks alone, then each complement, refining n while nothing smaller fails.
    When the budget runs out it returns the smallest failing list found so far.
    """
    tests = 0

    def check(candidate: list[T]) -> bool:
        nonlocal tests
        tests += 1
        return fails(candidate)

    current = list(items)
    if check([]):
        return []  # the failure needs none of the inputs
    n = 2
    while len(current) >= 2 and tests < max_tests:
        size, extra = divmod(len(current), n)
        bounds = [i * size + min(i, extra) for i in range(n + 1)]
        chunks = [current[bounds[i] : bounds[i + 1]] for i in range(n)]
        for chunk in chunks:
            if tests >= max_tests:
                return current
            if check(chunk):
                current, n = chunk, 2
                break
        else:
            for i in range(n if n > 2 else 0):
                if tests >= max_tests:
                    return current
                complement = [x for j, c in enumerate(chunks) if j != i for x in c]
                if check(complement):
                    current, n = complement, max(n - 1, 2)
                    break
            else:
                if n >= len(current):
                    return current
                n = min(2 * n, len(current))
    return current
