"""Deliberately broken endpoints: the cases that check what they break fail, and only those."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from apps.conformance.model import Verdict
from apps.conformance.runner import run, select
from apps.conformance.sim_target import EndpointFactory, default_endpoint, sim_factory
from protocol import codec, congestion, connection, endpoint, receiving, rtt, sending
from protocol.config import SessionConfig
from protocol.endpoint import Endpoint

from .conftest import ALL, IN_PROCESS, KNOWN_BUGS

Addr = tuple[str, int]


class CrcBlind(Endpoint):
    """(a) skips the CRC32C check: every datagram gets a matching trailer before it is read."""

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if len(data) >= 22 and data[:2] == b"SN":
            data = data[:-4] + codec.crc32c(data[:-4]).to_bytes(4, "big")
        super().receive_datagram(data, addr, now)


def crc_blind(config: SessionConfig, server: bool, random_bytes: Callable[[int], bytes]) -> Endpoint:
    return CrcBlind(config, server=server, random_bytes=random_bytes)


class NackOnce(receiving.IncomingObject):
    """(b) reports each missing chunk once and never again."""

    def _mark_reported(self, chunks: list[int], now: float, renack: float, largest_pn: int, gap_time: float) -> None:
        for index in chunks:
            if index not in self.last_nacked:
                self.nacked += 1
                self.nacked_at_pn[index] = largest_pn
                self.gap_seen[index] = gap_time
            self.last_nacked[index] = now


class DeafToSilence(connection.Connection):
    """(h) holds an ANNOUNCE and waits, however long its sender stays silent, for a PROBE."""

    def _silence_deadline(self, obj_in: receiving.IncomingObject, pto: float) -> float:
        return math.inf


class TrustsItsAnnounce(sending.OutgoingObject):
    """(d) takes every ANNOUNCE for arrived: a probe timeout never sends it again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.announce_confirmed = True


class Amplifier(connection.Connection):
    """(c) ignores the anti-amplification limit: every client address counts as validated."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.address_validated = True


class ClosesOnceSent(connection.Connection):
    """(e) closes cleanly once every chunk has gone out, COMPLETE or not."""

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out = super().datagrams_to_send(now)
        sent = [obj.next_new >= obj.chunk_count for obj in self.outgoing.values()]
        if self.is_open and sent and all(sent):
            self.close(now)
            out += super().datagrams_to_send(now)
        return out


class NeverPingsAFullWindow(connection.Connection):
    """(f) waits for ever, its window full, for an ACK that may have been lost: no PING asks for one."""

    def handle_timer(self, now: float) -> None:
        self._last_ack_time = now  # the window's PING is due a PTO after the last ACK: never, then
        super().handle_timer(now)


class NeverLearnsReordering(connection.Connection):
    """(g) keeps its reordering allowance at its base: chunks that came late teach it nothing."""

    @property  # type: ignore[override]
    def _reorder_observed(self) -> float:
        return 0.0

    @_reorder_observed.setter
    def _reorder_observed(self, value: float) -> None:
        pass


class AcksWaitForTheWindow(connection.Connection):
    """(i) counts its ACKs against the congestion window: none goes out while the window is full."""

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out = super().datagrams_to_send(now)
        if self.is_open and self.sent.inflight >= self.controller.cwnd:
            out = [d for d in out if not isinstance(codec.decode(d).packet, codec.Ack)]
        return out


class NackFreesTheWindow(connection.Connection):
    """(k) takes every NACK for a report of every datagram sent: a loss report opens the whole window."""

    def _on_nack(self, packet: codec.Nack, now: float) -> None:
        super()._on_nack(packet, now)
        self.sent.on_reported(self.sent.next_pn - 1)


def counting_ids(config: SessionConfig, server: bool, random_bytes: Callable[[int], bytes]) -> Endpoint:
    """(j) takes its "random" bytes from a counter shared by every endpoint it makes."""
    return Endpoint(config, server=server, random_bytes=_count_bytes)


_COUNT = itertools.count(1)


def _count_bytes(n: int) -> bytes:
    return next(_COUNT).to_bytes(n, "big")


def _failures(factory: EndpointFactory = default_endpoint, role: str = "receiver") -> dict[str, str]:
    summary = run(select(ALL, role=role), sim_factory(role, seed=1, endpoint_factory=factory), IN_PROCESS)
    assert summary.count(Verdict.PASSED) > (130 if role == "receiver" else 25)
    return {r.case.id: r.message for r in summary.results if r.verdict is Verdict.FAILED}


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch


def test_the_correct_endpoint_fails_only_the_known_bugs() -> None:
    assert set(_failures()) == set(KNOWN_BUGS)


def test_skipping_the_crc_check_is_caught() -> None:
    failed = _failures(crc_blind)
    assert set(failed) - set(KNOWN_BUGS) == {
        "3/R3-9/unknown-version-bad-crc",
        "4.2/R4.2-1/bad-initial-not-answered",
        "4.2/R4.2-3/bad-crc",
        "4.2/R4.2-3/bad-crc-close-ignored",
        "4.2/R4.2-10/junk-flood",
        "10.1/R10.1-1/corrupted-chunk-dropped",
    }


def test_never_re_nacking_is_caught(patched: pytest.MonkeyPatch) -> None:
    patched.setattr(connection, "IncomingObject", NackOnce)
    failed = _failures()
    assert set(failed) - set(KNOWN_BUGS) == {"9.1/R9.1-4/re-nack"}
    assert "1 NACK(s) naming it" in failed["9.1/R9.1-4/re-nack"]


def test_waiting_for_a_probe_from_a_silent_sender_is_caught(patched: pytest.MonkeyPatch) -> None:
    patched.setattr(endpoint, "Connection", DeafToSilence)
    failed = _failures()
    assert set(failed) - set(KNOWN_BUGS) == {"9.1/R9.1-11/silent-sender-asked"}


def test_an_allowance_that_never_grows_is_caught(patched: pytest.MonkeyPatch) -> None:
    patched.setattr(endpoint, "Connection", NeverLearnsReordering)
    failed = _failures()
    assert set(failed) - set(KNOWN_BUGS) == {"9.1/R9.1-2/allowance-grows"}
    assert "after chunk 3 came 100 ms late" in failed["9.1/R9.1-2/allowance-grows"]


def test_ignoring_the_amplification_limit_is_caught(patched: pytest.MonkeyPatch) -> None:
    patched.setattr(endpoint, "Connection", Amplifier)
    failed = _failures()
    # Taken for validated, an address also escapes the handshake timeout that discards unproven ones,
    # which no case can see: a session kept looks on the wire like one discarded and restored (R7.4-6).
    assert set(failed) - set(KNOWN_BUGS) == {"7.4/R7.4-2/anti-amplification"}
    # The limit itself is what fails, by the bytes sent to an unvalidated address.
    assert "at most 3600 bytes before the address is validated; got" in failed["7.4/R7.4-2/anti-amplification"]


def test_delivering_without_the_digest_check_is_caught(patched: pytest.MonkeyPatch) -> None:
    patched.setattr(receiving.IncomingObject, "verify", lambda self: True)
    failed = _failures()
    assert set(failed) - set(KNOWN_BUGS) == {
        "5.9/R5.9-2/digest-off-by-one-bit",
        "9.6/R9.6-4/wrong-repair-refetched",
        "10.2/R10.2-2/digest-mismatch-never-complete",
        "10.2/R10.2-3/empty-object-wrong-digest",
        "10.3/R10.3-1/digest-mismatch-nacks-all",
        "10.3/R10.3-2/digest-mismatch-twice-cancels",
    }
    assert all("COMPLETE" in failed[case] for case in set(failed) - set(KNOWN_BUGS))


def test_counting_duplicates_is_caught(patched: pytest.MonkeyPatch) -> None:
    # No packet number remembered: every duplicate is counted again, as the SHOULD of R9.2-4 advises against.
    patched.setattr(connection, "PN_MEMORY", 0)
    failed = _failures()
    assert set(failed) - set(KNOWN_BUGS) == {"9.2/R9.2-4/ack-counts-a-duplicate-once"}
    assert "got +66 and +3" in failed["9.2/R9.2-4/ack-counts-a-duplicate-once"]


def test_a_client_whose_initial_ids_count_up_is_caught() -> None:
    failed = _failures(counting_ids, role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"7.2/R7.2-1/initial-ids-fresh"}
    assert "not from a counter" in failed["7.2/R7.2-1/initial-ids-fresh"]


def test_a_client_that_takes_version_1_for_its_own_is_caught(patched: pytest.MonkeyPatch) -> None:
    # A SNIP/1 leftover in a version-2 client: it ignores a VERSION listing 1 and gives up on one listing 2.
    patched.setattr(connection, "VERSION", 1)
    failed = _failures(role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"3/R3-10/version-listing-own-ignored", "3/R3-11/version-mismatch-abandons"}


def test_a_sender_that_takes_its_announce_for_arrived_is_caught(patched: pytest.MonkeyPatch) -> None:
    # Unanswered, it probes for ever without the ANNOUNCE: were the ANNOUNCE lost, so would the object be.
    patched.setattr(connection, "OutgoingObject", TrustsItsAnnounce)
    failed = _failures(role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"9.4/R9.4-2/probe-timer-repeats-announce"}


def test_a_sender_that_closes_before_complete_is_caught(patched: pytest.MonkeyPatch) -> None:
    patched.setattr(endpoint, "Connection", ClosesOnceSent)
    failed = _failures(role="sender")
    # Many sender cases fail with it (the session ends early); this one names the clean close.
    assert "no clean CLOSE while the object awaits COMPLETE" in failed["12.4/R12.4-1/sender-no-clean-close-before-complete"]


def test_a_sender_without_a_congestion_window_is_caught(patched: pytest.MonkeyPatch) -> None:
    # Nothing in flight ever holds it back: the whole object goes out to a receiver that acknowledges nothing.
    patched.setattr(congestion.SnipBbr, "cwnd", property(lambda self: 1 << 40))
    failed = _failures(role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"11.1/R11.1-2/window-bounds-data", "11.1/R11.1-4/initial-window"}
    assert "got 1024 DATA/REPAIR datagrams of the 1025-chunk object" in failed["11.1/R11.1-2/window-bounds-data"]


def test_a_sender_that_holds_acks_behind_its_window_is_caught(patched: pytest.MonkeyPatch) -> None:
    patched.setattr(endpoint, "Connection", AcksWaitForTheWindow)
    failed = _failures(role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"11.1/R11.1-3/ack-with-window-full"}
    assert "an ACK for the tester's PING while the window is full" in failed["11.1/R11.1-3/ack-with-window-full"]


def test_a_sender_with_an_oversized_first_flight_is_caught(patched: pytest.MonkeyPatch) -> None:
    # A window, but twice the recommended initial one: only the SHOULD of R11.1-4 notices.
    make = connection.make_controller
    patched.setattr(connection, "make_controller", lambda rate, mss, window, rtt: make(rate, mss, 2 * window, rtt))
    failed = _failures(role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"11.1/R11.1-4/initial-window"}
    assert "got 256 DATA/REPAIR datagrams" in failed["11.1/R11.1-4/initial-window"]


def test_a_sender_that_never_pings_a_full_window_is_caught(patched: pytest.MonkeyPatch) -> None:
    patched.setattr(endpoint, "Connection", NeverPingsAFullWindow)
    failed = _failures(role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"9.4/R9.4-5/window-full-ping"}


def test_a_server_whose_session_ids_count_up_is_caught() -> None:
    failed = _failures(counting_ids)
    assert set(failed) - set(KNOWN_BUGS) == {"7.3/R7.3-2/session-ids-distinct", "14.2/R14.2-1/session-ids-not-derived"}
    assert "not from a counter" in failed["14.2/R14.2-1/session-ids-not-derived"]


def test_a_server_that_honours_only_its_latest_token_is_caught(patched: pytest.MonkeyPatch) -> None:
    # It remembers the token it issued last to each client address and initial id: per-client state (R7.4-5).
    issued: dict[tuple[Addr, int], bytes] = {}
    make, check = endpoint.make_token, endpoint.check_token

    def remembered(secret: bytes, addr: Addr, initial_id: int, now: float) -> bytes:
        issued[(addr, initial_id)] = token = make(secret, addr, initial_id, now)
        return token

    def latest_only(secret: bytes, token: bytes, addr: Addr, initial_id: int, now: float) -> bool:
        return issued.get((addr, initial_id)) == token and check(secret, token, addr, initial_id, now)

    patched.setattr(endpoint, "make_token", remembered)
    patched.setattr(endpoint, "check_token", latest_only)
    failed = _failures()
    assert set(failed) - set(KNOWN_BUGS) == {"7.4/R7.4-5/earlier-token-still-valid"}


def test_a_sender_that_ignores_the_ack_delay_is_caught(patched: pytest.MonkeyPatch) -> None:
    # Every sample the raw round trip: an ACK held by its receiver reads as a slow path, and the PTO grows.
    update = rtt.RttEstimator.update
    patched.setattr(rtt.RttEstimator, "update", lambda self, sample, ack_delay=0.0: update(self, sample, 0.0))
    failed = _failures(role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"9.5/R9.5-1/ack-delay-subtracted"}
    assert "got 1329 ms" in failed["9.5/R9.5-1/ack-delay-subtracted"]


def test_a_sender_whose_srtt_is_its_latest_sample_is_caught(patched: pytest.MonkeyPatch) -> None:
    update = rtt.RttEstimator.update

    def unsmoothed(self: rtt.RttEstimator, sample: float, ack_delay: float = 0.0) -> None:
        update(self, sample, ack_delay)
        self.smoothed = self.latest

    patched.setattr(rtt.RttEstimator, "update", unsmoothed)
    failed = _failures(role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"9.5/R9.5-2/rtt-estimator"}


def test_a_sender_that_takes_a_nack_for_room_is_caught(patched: pytest.MonkeyPatch) -> None:
    patched.setattr(endpoint, "Connection", NackFreesTheWindow)
    failed = _failures(role="sender")
    assert set(failed) - set(KNOWN_BUGS) == {"11.1/R11.1-5/loss-report-opens-no-window", "11.1/R11.1-6/window-bounds-repair"}
    assert "of them REPAIR" in failed["11.1/R11.1-6/window-bounds-repair"]
