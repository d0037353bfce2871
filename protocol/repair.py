"""Forward repair (spec 5.14, 9.6): REPAIR payloads and the receiver's decoder.

A REPAIR carries the XOR of some chunks of a window of one object; which ones is decided by a
pseudo-random bit stream (SplitMix64) from the REPAIR's seed, so both ends derive the same set from
four bytes. A receiver missing m chunks of a window and holding m REPAIRs over it solves for them
by Gaussian elimination over GF(2). Payloads and coefficient sets are Python ints: XOR of two ints
runs in C, which keeps both ends free of per-byte Python loops.
"""

from __future__ import annotations

from collections.abc import Callable

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def coefficients(seed: int, count: int) -> int:
    """Bit i set: the window's chunk i is in the XOR (spec 5.14).

    Bits come from SplitMix64 seeded with ``seed``: output k supplies bits 64k .. 64k + 63, least
    significant first.
    """
    bits = 0
    state = seed
    for word in range((count + 63) // 64):
        state = (state + _GOLDEN) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        bits |= (z ^ (z >> 31)) << (64 * word)
    return bits & ((1 << count) - 1)


def set_bits(mask: int) -> list[int]:
    """Positions of the set bits of ``mask``, ascending."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def chunk_value(chunk: bytes | memoryview) -> int:
    """A chunk as an int; a short (last) chunk reads as if padded with zero bytes (spec 5.14)."""
    return int.from_bytes(chunk, "little")


def encode_payload(value: int, chunk_size: int) -> bytes:
    return value.to_bytes(chunk_size, "little")


def repair_value(first: int, seed: int, count: int, chunk_at: Callable[[int], int]) -> int:
    """The XOR of the chosen chunks of window [first, first + count), as an int."""
    value = 0
    for offset in set_bits(coefficients(seed, count)):
        value ^= chunk_at(first + offset)
    return value


class RepairDecoder:
    """The REPAIRs received for one object, reduced to equations over the chunks still missing.

    Each row is (mask, value): the XOR of the chunks whose bits are set in ``mask`` (absolute chunk
    indices) equals ``value``. Known chunks are folded out when a row arrives and again before
    solving, so a row only ever names missing chunks.
    """

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.rows: list[tuple[int, int]] = []
        self.union = 0  # every chunk some row names (some may have arrived since)
        self.used = 0  # rows that went into a solution
        self.discarded = 0  # rows that named no missing chunk
        self.dependent = 0  # rows the last attempt found to add nothing (a random code's spares)

    def add(self, first: int, seed: int, count: int, payload: bytes, missing: int, known: Callable[[int], int]) -> bool:
        """Keep a REPAIR as a row over the missing chunks. False if it names none of them."""
        mask = coefficients(seed, count) << first
        value = chunk_value(payload)
        for index in set_bits(mask & ~missing):
            value ^= known(index)
        mask &= missing
        if not mask:
            self.discarded += 1
            return False
        self.rows.append((mask, value))
        self.union |= mask
        return True

    def unknowns(self, missing: int) -> int:
        return (self.union & missing).bit_count()

    def deficit(self, missing: int) -> int:
        """How many more equations (REPAIRs or chunks) the rows need before they can be solved."""
        return self.unknowns(missing) - (len(self.rows) - self.dependent)

    def solve(self, missing: int, known: Callable[[int], int]) -> dict[int, bytes] | None:
        """Every chunk the rows name, if they determine them all; None while they do not."""
        rows = []
        for mask, value in self.rows:
            for index in set_bits(mask & ~missing):
                value ^= known(index)
            mask &= missing
            if mask:
                rows.append((mask, value))
        self.rows = rows
        self.union &= missing
        wanted = self.union.bit_count()
        if not wanted or len(rows) < wanted:
            return None
        pivots: dict[int, tuple[int, int]] = {}
        for mask, value in rows:
            while mask:
                top = mask.bit_length() - 1
                pivot = pivots.get(top)
                if pivot is None:
                    pivots[top] = (mask, value)
                    break
                mask ^= pivot[0]
                value ^= pivot[1]
        if len(pivots) < wanted:
            self.dependent = len(rows) - len(pivots)
            return None  # not independent yet: wait for more
        solved: dict[int, int] = {}
        for top in sorted(pivots):
            mask, value = pivots[top]
            for index in set_bits(mask ^ (1 << top)):
                value ^= solved[index]
            solved[top] = value
        self.used += len(rows)
        self.rows = []
        self.union = 0
        self.dependent = 0
        return {index: encode_payload(value, self.chunk_size) for index, value in solved.items()}
