"""The helpers the cases share, on packets made up here."""

from __future__ import annotations

from apps.conformance.cases.common import about_silence
from apps.conformance.peer import Rx
from protocol.codec import Decoded, Nack

# Chunks 0, 64, 128 and 192 went in packets 3 to 6.
PNS = {0: 3, 64: 4, 128: 5, 192: 6}


def _nack(missing: tuple[tuple[int, int], ...], largest_pn: int) -> Rx:
    return Rx(0.0, b"", ("127.0.0.1", 9000), Decoded(2, 1, 7, Nack(0, missing, largest_pn=largest_pn)))


def test_a_nack_about_gaps_below_what_arrived_is_a_gap_report() -> None:
    assert not about_silence(_nack(((1, 63), (65, 63), (129, 63)), 6), PNS)
    assert not about_silence(_nack(((1, 63),), 4), PNS)  # written when chunk 64 had arrived


def test_a_nack_listing_chunks_beyond_what_arrived_is_about_silence() -> None:
    # Written when the target had chunk 128 (packet 5) and nothing after: chunks 129-192 were asked
    # for because the sender fell silent (spec R9.1-11), not because a later chunk showed a gap.
    assert about_silence(_nack(((129, 64),), 5), PNS)
    assert about_silence(_nack(((1, 63),), 2), PNS)  # before any chunk arrived


def test_an_empty_nack_is_not_about_silence() -> None:
    assert not about_silence(_nack((), 6), PNS)
