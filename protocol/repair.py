"""Forward repair (spec 5.14, 9.6): REPAIR payloads and the receiver's decoder.

A REPAIR carries the XOR of some chunks of a window of one object; which ones is decided by a
pseudo-random bit stream (SplitMix64) from the REPAIR's seed, so both ends derive the same set from
four bytes. A receiver missing m chunks of a window and holding m REPAIRs over it solves for them
by Gaussian elimination over GF(2). Coefficient sets and the rows being solved are Python ints (XOR
of two ints runs in C); the XOR of many stored chunks, which every REPAIR needs at both ends, is one
numpy gather-and-reduce over the object's bytes, about ten times faster than a loop of int XORs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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


def positions(mask: int) -> np.ndarray:
    """Positions of the set bits of ``mask`` as an index array, ascending."""
    raw = mask.to_bytes((mask.bit_length() + 7) // 8, "little")
    return np.flatnonzero(np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little"))


def xor_chunks(data: bytes | bytearray | memoryview, chunk_size: int, mask: int) -> int:
    """The XOR of the chunks of ``data`` whose indices are set in ``mask``, as an int; a short last
    chunk reads as if padded with zero bytes."""
    indices = positions(mask)
    whole = len(data) // chunk_size
    value = 0
    if indices.size and indices[-1] >= whole:
        value = chunk_value(memoryview(data)[whole * chunk_size :])
        indices = indices[:-1]
    if indices.size:
        # uint64 words where the chunk size allows: fewer, wider XORs
        dtype = np.dtype(np.uint64 if chunk_size % 8 == 0 else np.uint8)
        rows = np.frombuffer(data, dtype=dtype, count=whole * chunk_size // dtype.itemsize).reshape(whole, -1)
        value ^= int.from_bytes(np.bitwise_xor.reduce(rows[indices], axis=0).tobytes(), "little")
    return value


def chunk_value(chunk: bytes | bytearray | memoryview) -> int:
    """A chunk as an int; a short (last) chunk reads as if padded with zero bytes (spec 5.14)."""
    return int.from_bytes(chunk, "little")


def encode_payload(value: int, chunk_size: int) -> bytes:
    return value.to_bytes(chunk_size, "little")


def repair_value(first: int, seed: int, count: int, xor_of: Callable[[int], int]) -> int:
    """The XOR of the chosen chunks of window [first, first + count), as an int; ``xor_of`` gives
    the XOR of the chunks whose absolute indices a mask names."""
    return xor_of(coefficients(seed, count) << first)


class RepairDecoder:
    """The REPAIRs received for one object, reduced to equations over the chunks still missing.

    Each row is (mask, value): the XOR of the chunks whose bits are set in ``mask`` (absolute chunk
    indices) equals ``value``. Held chunks stay in a row until it is solved, when they are folded
    out of its value (one gather of their bytes); the rank is reckoned from masks alone, each
    masked to the chunks still missing.

    Beside the rows, an echelon basis of their masks over the chunks still missing (each basis row
    under its highest chunk, which no other basis row has as its highest) tells the rank, and so the
    deficit and the chunks to ask for, without an elimination per question. A new row is reduced
    into it in O(rank); a chunk that arrives moves only the basis row it heads. The bits of chunks
    that arrived since are left in the other basis rows and masked off wherever a row is reduced:
    they do not change which chunk heads a row. That bounds the work per datagram, which a peer
    sending dependent REPAIRs could otherwise make a full elimination each time.
    """

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.rows: list[tuple[int, int]] = []
        self.union = 0  # every chunk some row names (some may have arrived since)
        self.used = 0  # rows that went into a solution
        self.discarded = 0  # rows that named no missing chunk
        self._basis: dict[int, int] = {}  # highest chunk -> basis row
        self._basis_missing = 0  # the missing chunks the basis was last brought up to date with
        self._basis_rows = 0  # rows reduced into the basis so far

    def add(self, first: int, seed: int, count: int, payload: bytes, missing: int) -> bool:
        """Keep a REPAIR as a row. False if it names none of the missing chunks, or adds nothing
        to what the rows already determine.

        The held chunks it names are folded out only when the rows are solved: a REPAIR costs bit
        operations on its mask until then, however many held chunks it names. Rows that never go
        into a solution (the chunks came as DATA, or a hostile peer sent REPAIRs that can never
        reach full rank) never cost the XOR of the object's bytes."""
        mask = coefficients(seed, count) << first
        if not mask & missing:
            self.discarded += 1
            return False
        rank = len(self._synced_basis(missing))
        self.rows.append((mask, chunk_value(payload)))
        if len(self._synced_basis(missing)) == rank:
            # What the rows already say about the missing chunks, and will whichever arrive: a
            # copy kept would take a place that the object's bounded rows keep for new equations.
            self.rows.pop()
            self._basis_rows -= 1
            self.discarded += 1
            return False
        self.union |= mask & missing
        return True

    def unknowns(self, missing: int) -> int:
        return (self.union & missing).bit_count()

    def deficit(self, missing: int) -> int:
        """How many more equations (REPAIRs or chunks) the rows need before they can be solved: the
        unknowns less the rank of the rows over the chunks still missing."""
        return self.unknowns(missing) - len(self._synced_basis(missing))

    def free_chunks(self, missing: int) -> int:
        """The missing chunks the rows leave undetermined, as a mask: once these arrive (by NACK),
        the rows give all the others. Asking for any other chunk would not shrink the deficit: a
        chunk the rows already pin down takes an unknown and an equation away together."""
        heads = 0
        for top in self._synced_basis(missing):
            heads |= 1 << top
        return self.union & missing & ~heads

    def _reset_basis(self) -> None:
        self._basis.clear()
        self._basis_missing = 0
        self._basis_rows = 0

    def _synced_basis(self, missing: int) -> dict[int, int]:
        basis = self._basis
        if missing & ~self._basis_missing:
            # A chunk missing again (rebuilt chunks distrusted), or a basis reset: start afresh.
            self._reset_basis()
        else:
            arrived = self._basis_missing & ~missing
            while arrived:
                top = arrived.bit_length() - 1
                arrived ^= 1 << top
                row = basis.pop(top, None)
                if row is not None:
                    self._reduce_into_basis(row, missing)
        self._basis_missing = missing
        for mask, _ in self.rows[self._basis_rows :]:
            self._reduce_into_basis(mask, missing)
        self._basis_rows = len(self.rows)
        return basis

    def _reduce_into_basis(self, mask: int, missing: int) -> None:
        basis = self._basis
        mask &= missing
        while mask:
            top = mask.bit_length() - 1
            pivot = basis.get(top)
            if pivot is None:
                basis[top] = mask
                return
            mask = (mask ^ pivot) & missing

    def solve(self, missing: int, known_xor: Callable[[int], int]) -> dict[int, bytes] | None:
        """Every chunk the rows name, if they determine them all; None while they do not."""
        rows = []
        for mask, value in self.rows:
            arrived = mask & ~missing
            if arrived:
                value ^= known_xor(arrived)
            mask &= missing
            if mask:
                rows.append((mask, value))
        self.rows = rows
        self.union &= missing
        wanted = self.union.bit_count()
        self._reset_basis()  # the rows were rewritten
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
        return {index: encode_payload(value, self.chunk_size) for index, value in solved.items()}
