"""One object on its way out: which chunks to send next, and what the receiver said (spec 9.3, 9.4)."""

from __future__ import annotations

import bisect
import hashlib
from array import array
from collections import deque
from enum import Enum
from typing import Any

from . import repair
from .codec import Announce, Probe, Repair

# A lost ANNOUNCE stalls its object for a round trip and may cost every chunk the receiver could not
# buffer meanwhile (a large object then goes out twice); the ANNOUNCE is therefore sent again after
# these chunks (or after the last one, in a smaller object): up to five copies, spread so that a
# short burst of loss does not take them all. At 20 % loss, three copies all go one object in 125.
ANNOUNCE_ECHO_AFTER = (8, 32, 128, 256)


class OutState(Enum):
    QUEUED = "queued"  # waiting for the handshake or for the peer's flow-control credit
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


class OutgoingObject:
    def __init__(
        self,
        object_id: int,
        data: bytes,
        *,
        name: str,
        content_type: str,
        chunk_size: int,
        want_reply: bool,
        in_reply_to: int | None,
        deadline: float | None,
        created: float,
    ) -> None:
        self.object_id = object_id
        self.data = memoryview(data)
        self.size = len(data)
        self.name = name
        self.content_type = content_type
        self.chunk_size = chunk_size
        self.chunk_count = -(-self.size // chunk_size)
        self.digest = hashlib.sha256(data).digest()
        self.want_reply = want_reply
        self.in_reply_to = in_reply_to
        self.deadline = deadline  # absolute time, or None
        self.created = created
        self.finished_at: float | None = None
        self.state = OutState.QUEUED
        self.announce_pending = False
        self.next_new = 0  # lowest chunk index never sent
        self.progress_sent_at = created  # when a chunk or REPAIR of it last left (from its ANNOUNCE on)
        self.retx: deque[int] = deque()
        self._queued = bytearray(self.chunk_count)  # 1 while the chunk waits in retx
        self.last_sent = array("d", bytes(8 * self.chunk_count))
        self.last_pn = array("q", bytes(8 * self.chunk_count))  # packet number of the last copy
        self.tail_probe_pending = False
        self.probe_after_announce = False  # the ANNOUNCE is repeated because the peer lost it
        self.lead_probe: Probe | None = None  # a PROBE to go ahead of the ANNOUNCE sent again with it
        # A NACK that does not ask for the ANNOUNCE shows the peer has it; until one comes, a probe
        # timeout repeats the ANNOUNCE (R9.4-2): its loss and that of every answer asking for it
        # would otherwise leave the object waiting on the probe timer alone.
        self.announce_confirmed = False
        self.announce_lost = False  # going again because the peer may lack it: in copies
        self.last_feedback = created
        self.feedback_pn = -1  # the largest Largest PN a NACK about the object has reported
        # What the NACK with that Largest PN listed: the freshest word on what the receiver lacks,
        # which a probe timeout sends again with its PROBE (R9.4-4).
        self.last_missing: tuple[tuple[int, int], ...] = ()
        self.probe_count = 0
        self.chunks_sent = 0
        self.retransmitted = 0
        self.nacked = 0
        self.extra_copies_left = max(4, self.chunk_count // 50)  # tail redundancy budget (2%)
        # Chunks whose last retransmission went as several copies: asked for again, they all were
        # lost, and they go in copies again whatever is left of the budget (R9.3-6).
        self.copied: set[int] = set()
        # Forward repair (spec 9.6): the window the tail's REPAIRs cover, how many are still to go,
        # and the packet numbers of those sent (a NACK written before they arrived is premature).
        self.repair_first = 0
        self.repair_count = 0
        # Bit i: the window's chunk i is one whose fate the sender cannot yet know; a REPAIR that
        # chooses none of them rebuilds nothing the receiver lacks.
        self.repair_uncertain = 0
        self.repairs_pending = 0
        self.repair_pns: list[int] = []
        self.repairs_sent = 0
        self.repair_planned_at = float("-inf")
        # Chunks that premature NACKs written as of one packet number listed, left to the REPAIRs
        # their writer had not seen (R9.6-6): no more than those can be expected to rebuild. The
        # rest go again at once; whether any did since the batch was planned.
        self._left_to_repairs: set[int] = set()
        self._left_as_of_pn = -1
        self.outran_repairs = False
        self._announce_echoes = sorted({min(after, self.chunk_count) for after in ANNOUNCE_ECHO_AFTER} - {0})
        # Further copies of the ANNOUNCE, one behind each first copy of a chunk or REPAIR until
        # none is owed: on a path losing many datagrams the echoes alone leave it at risk.
        self.announces_owed = 0
        # An echo of R8.2-10 fell due with the chunk just picked: it goes right behind that chunk,
        # or, behind the last one, after the tail's REPAIRs and PROBE. Queued with the control
        # packets instead, the echoes of a first flight sent in one burst all went after it, as one.
        self.echo_due = False

    @property
    def announce_echoes_left(self) -> int:
        return len(self._announce_echoes)

    def announce(self) -> Announce:
        return Announce(
            object_id=self.object_id,
            total_length=self.size,
            chunk_size=self.chunk_size,
            chunk_count=self.chunk_count,
            digest=self.digest,
            content_type=self.content_type,
            name=self.name,
            want_reply=self.want_reply,
            in_reply_to=self.in_reply_to,
            deadline_ms=0 if self.deadline is None else max(1, int((self.deadline - self.created) * 1000)),
        )

    def chunk(self, index: int) -> bytes:
        start = index * self.chunk_size
        return bytes(self.data[start : start + self.chunk_size])

    def is_queued(self, index: int) -> bool:
        return bool(self._queued[index])

    def plan_repairs(self, first: int, count: int, uncertain: int, repairs: int, now: float) -> None:
        self.repair_planned_at = now
        self.repair_first = first
        self.repair_count = count
        self.repair_uncertain = uncertain
        self.repairs_pending = repairs
        self._left_to_repairs.clear()
        self._left_as_of_pn = -1
        self.outran_repairs = False

    def repair_packet(self, seed: int) -> Repair:
        """The next REPAIR over the planned window; ``seed`` must choose at least one chunk."""
        value = repair.repair_value(self.repair_first, seed, self.repair_count, self._xor_of)
        return Repair(self.object_id, self.repair_first, seed, self.repair_count, repair.encode_payload(value, self.chunk_size))

    def on_repair_sent(self, pn: int, now: float) -> None:
        self.progress_sent_at = now
        self.repairs_pending -= 1
        self.repairs_sent += 1
        self.repair_pns.append(pn)

    def _xor_of(self, mask: int) -> int:
        return repair.xor_chunks(self.data, self.chunk_size, mask)

    def covered_by_repairs(self, index: int, largest_pn: int, loss: float) -> bool:
        """A NACK written before the peer could have seen this chunk's REPAIRs speaks too soon
        (R9.6-6): the chunk is left to them, but to no more chunks than the REPAIRs the writer had
        not seen can be expected to rebuild, counted over the NACKs written as of one packet number
        (a receiver spreads first reports over several NACKs as they fall due, and lists only what
        the REPAIRs it holds leave undetermined, R9.6-5). The chunks beyond are losses that outran
        the batch: they go again now, not a round trip later."""
        if not self.repair_first <= index < self.repair_first + self.repair_count:
            if self.repair_count and index < self.repair_first:
                self.outran_repairs = True  # below the batch's window: nothing of it covers this
            return False
        unseen = self.repairs_pending + len(self.repair_pns) - bisect.bisect_right(self.repair_pns, largest_pn)
        if unseen <= 0:
            return False
        if largest_pn != self._left_as_of_pn:
            self._left_to_repairs.clear()
            self._left_as_of_pn = largest_pn
        if index in self._left_to_repairs:
            return True
        if len(self._left_to_repairs) < unseen * (1 - loss):
            self._left_to_repairs.add(index)
            return True
        self.outran_repairs = True
        return False

    @property
    def has_data_to_send(self) -> bool:
        return bool(self.retx) or self.next_new < self.chunk_count or self.repairs_pending > 0

    def next_chunk(self) -> tuple[int, bool] | None:
        """(chunk index, is retransmission) to send next; retransmissions first."""
        while self.retx:
            index = self.retx.popleft()
            if self._queued[index]:
                self._queued[index] = 0
                return index, True
        if self.next_new < self.chunk_count:
            index = self.next_new
            self.next_new += 1
            if self.next_new == self.chunk_count:
                self.tail_probe_pending = True
            if self._announce_echoes and self.next_new == self._announce_echoes[0]:
                self._announce_echoes.pop(0)
                self.echo_due = True
            return index, False
        return None

    def on_chunk_sent(self, index: int, pn: int, now: float, retransmission: bool) -> None:
        self.last_sent[index] = now
        self.progress_sent_at = now
        self.last_pn[index] = pn
        self.chunks_sent += 1
        if retransmission:
            self.retransmitted += 1

    def on_nack(
        self,
        ranges: tuple[tuple[int, int], ...],
        largest_pn: int,
        now: float,
        wait: float,
        loss: float,
    ) -> int:
        """Queue the NACKed chunks whose last copy is really lost; returns how many were queued.

        The NACK's writer had seen our packet ``largest_pn``: a copy sent after that packet cannot
        be judged yet. A copy sent less than ``wait`` (a round trip plus the reordering allowance)
        ago may still be on its way (spec 9.3, R9.3-4): the time the receiver already waited before
        writing the NACK counts, which a comparison of send times alone would not credit. ``loss`` is
        the rate REPAIRs in flight are expected to be lost at.
        """
        if largest_pn > self.feedback_pn:
            # Only a NACK written after something newer of ours arrived is news: one that repeats
            # an old Largest PN says nothing we sent since got through (a burst may have taken all
            # of it), and must not keep putting off the PROBE that would find out (R9.4-2).
            self.feedback_pn = largest_pn
            self.last_feedback = now
            self.probe_count = 0
        if largest_pn >= self.feedback_pn:
            self.last_missing = ranges
        queued = 0
        for first, count in ranges:
            for index in range(first, min(first + count, self.next_new)):
                if self._queued[index]:
                    continue
                if self.last_pn[index] >= largest_pn or now - self.last_sent[index] < wait:
                    continue
                if self.covered_by_repairs(index, largest_pn, loss):
                    continue
                self._queued[index] = 1
                self.retx.append(index)
                queued += 1
        self.nacked += queued
        return queued

    def probe_chunks(self, sent_before: float, limit: int) -> list[int]:
        """Up to ``limit`` chunks, lowest first, that the freshest NACK listed, that are not queued
        to go again, and whose last copy left before ``sent_before``: those a probe timeout sends
        with its PROBE (R9.4-4). A return path that loses every NACK for a while would otherwise
        leave them unsent until one gets through, however many PROBEs reach the receiver."""
        picked: list[int] = []
        for first, count in self.last_missing:
            for index in range(first, min(first + count, self.next_new)):
                if len(picked) >= limit:
                    return picked
                if not self._queued[index] and self.last_sent[index] <= sent_before:
                    picked.append(index)
        return picked

    def requeue_all(self) -> None:
        """The receiver discarded everything (digest mismatch): send every chunk again."""
        for index in range(self.next_new):
            if not self._queued[index]:
                self._queued[index] = 1
                self.retx.append(index)

    def stats(self) -> dict[str, Any]:
        elapsed = (self.finished_at or self.last_feedback) - self.created
        return {
            "object_id": self.object_id,
            "name": self.name,
            "size": self.size,
            "chunks": self.chunk_count,
            "chunks_sent": self.chunks_sent,
            "retransmitted": self.retransmitted,
            "nacked": self.nacked,
            "repairs_sent": self.repairs_sent,
            "state": self.state.value,
            "elapsed_s": round(max(elapsed, 0.0), 6),
        }
