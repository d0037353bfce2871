"""Small helpers on chunk index lists, shared by the tester's receiver and the cases."""

from __future__ import annotations

from collections.abc import Iterable


def missing_ranges(indices: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """[1, 2, 3, 7] -> ((1, 3), (7, 1)): merged (first, count) runs, as a NACK lists them."""
    out: list[tuple[int, int]] = []
    for index in sorted(set(indices)):
        if out and out[-1][0] + out[-1][1] == index:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((index, 1))
    return tuple(out)


def listed(ranges: Iterable[tuple[int, int]]) -> set[int]:
    """The chunk indices a NACK's missing list names."""
    return {i for first, count in ranges for i in range(first, first + count)}
