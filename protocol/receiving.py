"""One object on its way in: reassembly, gap detection and NACK scheduling (spec 9.1, 10)."""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
from array import array
from typing import Any

from .codec import Announce
from .repair import RepairDecoder, xor_chunks

# Re-reports due within this share of a re-NACK interval join a NACK that goes out now (spec 9.1).
RENACK_PULL = 0.5


class IncomingObject:
    def __init__(self, announce: Announce, now: float) -> None:
        self.object_id = announce.object_id
        self.size = announce.total_length
        self.chunk_size = announce.chunk_size
        self.chunk_count = announce.chunk_count
        self.digest = announce.digest
        self.name = announce.name
        self.content_type = announce.content_type
        self.want_reply = announce.want_reply
        self.in_reply_to = announce.in_reply_to
        self.announce = announce
        self.buffer = bytearray(self.size)
        self.received = bytearray(self.chunk_count)
        self.received_count = 0
        self.high = 0  # one past the highest chunk index seen
        # (due time, first, last): chunk ranges to report if still missing when due
        self.nack_queue: list[tuple[float, int, int]] = []  # a heap
        self.last_nacked: dict[int, float] = {}  # missing chunk -> when we last reported it
        self.nacked_at_pn: dict[int, int] = {}  # missing chunk -> our largest pn seen at first report
        self.gap_seen: dict[int, float] = {}  # missing chunk -> when it was first reported
        # Each gap a chunk opened, in index order: its first index, its end (the opener's index),
        # when the opener arrived and its packet number. A gap chunk that turns up in an older
        # datagram before it was reported shows reordering too, before any report was spurious.
        # Typed arrays: a peer that opens a gap with every chunk costs 32 bytes a chunk, not 150.
        self._gap_starts = array("q")
        self._gap_ends = array("q")
        self._gap_times = array("d")
        self._gap_pns = array("q")
        self.started = now
        self.last_progress = now
        # Reports of the unseen tail to a silent sender (R9.1-11): how many in a row with nothing
        # heard from it between them, and when the last went.
        self.silence_reports = 0
        self.silence_last = now
        self.digest_failures = 0
        self.chunks_received = 0
        self.duplicates = 0
        self.nacked = 0
        self.recovered = 0
        self.late_arrivals = 0
        # Forward repair (spec 9.6): bit i set while chunk i is missing; the decoder, once a REPAIR
        # came; the chunks it produced (provisional: a digest mismatch sends them back to ARQ).
        self.missing_mask = (1 << self.chunk_count) - 1
        self.decoder: RepairDecoder | None = None
        self.repair_disabled = False
        self.repaired: set[int] = set()
        self.repairs_received = 0

    def expected_len(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    @property
    def complete(self) -> bool:
        return self.received_count == self.chunk_count

    def add_chunk(self, index: int, chunk: bytes, pn: int, now: float, reorder: float) -> tuple[float, float] | None:
        """Store a chunk. None: a duplicate. Otherwise how much reordering its arrival shows, in
        seconds (spec R9.1-2): (late, overtaken). Late: it had been reported missing although it
        was sent before our report. Overtaken: it filled a gap before any report, but the chunk
        that opened the gap had been sent after it. Each is 0 when it does not apply."""
        if self.received[index]:
            self.duplicates += 1
            return None
        self._keep(index, chunk, now)
        self.chunks_received += 1
        late = 0.0
        overtaken = 0.0
        if index in self.last_nacked:
            del self.last_nacked[index]
            first_pn = self.nacked_at_pn.pop(index, None)
            gap_seen = self.gap_seen.pop(index, now)
            if first_pn is not None and pn < first_pn:
                late = max(now - gap_seen, 1e-6)  # how far behind the packets that overtook it
                self.late_arrivals += 1
            else:
                self.recovered += 1
        elif index < self.high:
            overtaken = self._overtaken_for(index, pn, now)
        if index > self.high:
            heapq.heappush(self.nack_queue, (now + reorder, self.high, index - 1))
            self._gap_starts.append(self.high)
            self._gap_ends.append(index)
            self._gap_times.append(now)
            self._gap_pns.append(pn)
        if index >= self.high:
            self.high = index + 1
        return late, overtaken

    def _gap_of(self, index: int) -> tuple[int, float, int] | None:
        """The gap a chunk opened that ``index`` lies in: (end, when opened, opener's pn)."""
        k = bisect.bisect_right(self._gap_starts, index) - 1
        if k < 0 or index >= self._gap_ends[k]:
            return None
        return self._gap_ends[k], self._gap_times[k], self._gap_pns[k]

    def _gap_opened(self, index: int) -> float:
        gap = self._gap_of(index)
        return gap[1] if gap is not None else float("-inf")

    def _overtaken_for(self, index: int, pn: int, now: float) -> float:
        gap = self._gap_of(index)
        if gap is None or pn >= gap[2]:
            return 0.0  # not in a gap a chunk opened, or sent after the opener: not reordering
        return max(now - gap[1], 1e-6)

    def _keep(self, index: int, chunk: bytes, now: float) -> None:
        start = index * self.chunk_size
        self.buffer[start : start + len(chunk)] = chunk
        self.received[index] = 1
        self.received_count += 1
        self.missing_mask ^= 1 << index
        self.last_progress = now

    # -- forward repair --------------------------------------------------------------------------
    def known_xor(self, mask: int) -> int:
        """The XOR of the held chunks ``mask`` names (chunks not yet held read as zeros)."""
        return xor_chunks(self.buffer, self.chunk_size, mask)

    def add_repair(self, first: int, seed: int, count: int, payload: bytes, now: float) -> dict[int, bytes] | None:
        """Take a REPAIR over chunks [first, first + count); chunks it lets us rebuild, if any."""
        self.repairs_received += 1
        if self.repair_disabled or not (self.missing_mask >> first) & ((1 << count) - 1):
            return None  # nothing missing there: the REPAIR came too late to matter
        if self.decoder is None:
            self.decoder = RepairDecoder(self.chunk_size)
        elif len(self.decoder.rows) > self.chunk_count - self.received_count + 8:
            return None  # more equations than unknowns already: this one cannot help
        if not self.decoder.add(first, seed, count, payload, self.missing_mask):
            return None
        # A new equation is progress as much as a chunk is (R12.3-1): at heavy loss an object's
        # REPAIRs can arrive for longer than the idle timeout before they are enough to solve.
        self.last_progress = now
        return self.try_decode()

    def try_decode(self) -> dict[int, bytes] | None:
        decoder = self.decoder
        if decoder is None or not decoder.rows or decoder.deficit(self.missing_mask) > 0:
            return None
        return decoder.solve(self.missing_mask, self.known_xor)

    def covers(self, index: int) -> bool:
        return self.decoder is not None and bool((self.decoder.union >> index) & 1)

    def store_recovered(self, index: int, chunk: bytes, now: float) -> bool:
        """A chunk the decoder rebuilt. False (and no more decoding) if its padding is not zero,
        which only a wrong REPAIR can cause."""
        length = self.expected_len(index)
        if self.received[index]:
            return True
        if any(chunk[length:]):
            self._disable_repair()
            return False
        self._keep(index, chunk[:length], now)
        self.repaired.add(index)
        if index in self.last_nacked:
            del self.last_nacked[index]
            self.nacked_at_pn.pop(index, None)
            self.gap_seen.pop(index, None)
        return True

    def undo_repairs(self, now: float) -> None:
        """The digest failed with rebuilt chunks in the object: distrust them, not the chunks that
        came as DATA, and fetch them again by NACK."""
        for index in self.repaired:
            self.received[index] = 0
            self.received_count -= 1
            self.missing_mask |= 1 << index
        for first, count in to_ranges(sorted(self.repaired)):
            heapq.heappush(self.nack_queue, (now, first, first + count - 1))
        self.repaired.clear()
        self._disable_repair()

    def _disable_repair(self) -> None:
        self.repair_disabled = True
        self.decoder = None

    def _hold_for_repair(self, due: list[int]) -> tuple[list[int], list[int]]:
        """Split due reports into those to send and those REPAIRs already held will answer: of the
        chunks the REPAIRs name, only those they leave undetermined are asked for (spec R9.6-5)."""
        decoder = self.decoder
        if decoder is None or not decoder.rows:
            return due, []
        if not any((decoder.union >> index) & 1 for index in due):
            return due, []
        answered = decoder.union & ~decoder.free_chunks(self.missing_mask)
        return ([index for index in due if not (answered >> index) & 1],
                [index for index in due if (answered >> index) & 1])

    def next_due(self) -> float | None:
        return self.nack_queue[0][0] if self.nack_queue else None

    def due_missing(
        self, now: float, renack: float, largest_pn: int, reorder: float = 0.0, reordering_seen: float = 0.0
    ) -> list[int]:
        """Chunks whose report is due now; schedules their next report.

        Repeated reports due within the next RENACK_PULL of a re-NACK interval go out now as well:
        every chunk reported once keeps its own cadence, and without this each lost chunk would be
        re-reported in a NACK of its own. First reports still wait for their reordering allowance:
        ``reorder`` as it was when their gap opened, or ``reordering_seen`` (the part of it that
        reordering observations set) if that has grown past it since.
        """
        out: list[int] = []
        received = self.received
        last = self.last_nacked
        horizon = now + renack * RENACK_PULL
        ripe = renack * (1 - RENACK_PULL)
        not_yet: list[tuple[float, int]] = []
        while self.nack_queue and self.nack_queue[0][0] <= horizon:
            due, first, end = heapq.heappop(self.nack_queue)
            for index in range(first, end + 1):
                if received[index]:
                    continue
                previous = last.get(index)
                if previous is None:
                    # Reordering seen since the gap opened holds its first report back too: on a
                    # jittery path the first flight shows it before any report is due (R9.1-1).
                    wait_until = max(due, self._gap_opened(index) + reordering_seen) if reordering_seen else due
                    if wait_until > now:
                        not_yet.append((wait_until, index))
                        continue
                elif now - previous < ripe:
                    # Reported lately (pulled into an earlier NACK, or a PROBE's answer). It stays
                    # scheduled: dropped here, it would go unreported whenever the interval grew.
                    not_yet.append((max(due, previous + renack), index))
                    continue
                out.append(index)
        # Back on the schedule as ranges: a long gap stays one entry, not one per chunk.
        for due, run in itertools.groupby(sorted(not_yet), key=lambda item: item[0]):
            for first, count in to_ranges([index for _, index in run]):
                heapq.heappush(self.nack_queue, (due, first, first + count - 1))
        if out:
            out = sorted(set(out))  # overlapping queue entries may name a chunk twice
            out, held = self._hold_for_repair(out)
            for index in held:  # looked at again later, in case the REPAIRs fall short
                heapq.heappush(self.nack_queue, (now + renack, index, index))
            self._mark_reported(out, now, renack, largest_pn, now - reorder)
        return out

    def unseen_tail(self) -> list[int]:
        """The chunks from high to the end, less those the REPAIRs held determine (R9.6-5): what to
        ask a sender that went silent for (R9.1-11). They are not reported at the re-NACK interval,
        as chunks it may not have sent yet."""
        tail = list(range(self.high, self.chunk_count))
        return self._hold_for_repair(tail)[0]

    def on_probe(self, sent_through: int, now: float, renack: float, largest_pn: int, reorder: float) -> list[int]:
        """A PROBE says every chunk below ``sent_through`` was sent. Chunks beyond what we have seen
        become a gap like any other, reported after the reordering allowance; chunks already reported
        missing are reported again at once (returned), so the answer goes out without delay."""
        limit = min(sent_through, self.chunk_count)
        if limit > self.high:
            heapq.heappush(self.nack_queue, (now + reorder, self.high, limit - 1))
            self.high = limit
        received = self.received
        out, _ = self._hold_for_repair(sorted(i for i in self.last_nacked if i < limit and not received[i]))
        if out:
            self._mark_reported(out, now, renack, largest_pn, now)
        return out

    def _mark_reported(self, chunks: list[int], now: float, renack: float, largest_pn: int, gap_time: float) -> None:
        for index in chunks:
            if index not in self.last_nacked:
                self.nacked += 1
                self.nacked_at_pn[index] = largest_pn
                opened = self._gap_opened(index)  # known unless a PROBE or a reset opened it
                self.gap_seen[index] = opened if opened > float("-inf") else gap_time
            self.last_nacked[index] = now
        for first, count in to_ranges(chunks):
            heapq.heappush(self.nack_queue, (now + renack, first, first + count - 1))

    def verify(self) -> bool:
        return hashlib.sha256(self.buffer).digest() == self.digest

    def reset_after_digest_failure(self, now: float) -> None:
        self.digest_failures += 1
        self.received = bytearray(self.chunk_count)
        self.received_count = 0
        self.missing_mask = (1 << self.chunk_count) - 1
        self.repaired.clear()
        self._disable_repair()
        self.last_nacked.clear()
        self.nacked_at_pn.clear()
        self.gap_seen.clear()
        for gaps in (self._gap_starts, self._gap_ends, self._gap_times, self._gap_pns):
            del gaps[:]
        self.nack_queue.clear()
        self.high = self.chunk_count
        if self.chunk_count:
            heapq.heappush(self.nack_queue, (now, 0, self.chunk_count - 1))

    def stats(self) -> dict[str, Any]:
        return {
            "object_id": self.object_id,
            "name": self.name,
            "size": self.size,
            "chunks": self.chunk_count,
            "chunks_received": self.chunks_received,
            "duplicates": self.duplicates,
            # lost: reported missing and really lost (not merely overtaken by later chunks)
            "nacked": self.nacked - self.late_arrivals,
            "reported_missing": self.nacked,
            "recovered": self.recovered,
            "late_arrivals": self.late_arrivals,
            "repairs_received": self.repairs_received,
            "chunks_repaired": len(self.repaired),
            "digest_failures": self.digest_failures,
            "elapsed_s": round(self.last_progress - self.started, 6),
        }


def to_ranges(sorted_indices: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7] -> [(1, 3), (7, 1)]: (first, count) runs of a sorted list."""
    ranges: list[tuple[int, int]] = []
    if not sorted_indices:
        return ranges
    first = prev = sorted_indices[0]
    for index in sorted_indices[1:]:
        if index == prev + 1:
            prev = index
            continue
        ranges.append((first, prev - first + 1))
        first = prev = index
    ranges.append((first, prev - first + 1))
    return ranges
