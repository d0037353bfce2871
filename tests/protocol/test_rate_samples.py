"""Rate and loss samples the sender's controller is fed (spec 11.2, 11.4), in virtual time."""

from __future__ import annotations

import random

import pytest

from protocol.delivery import RateSample, SentLog, WindowedMax
from protocol.rtt import RttEstimator

PACKET = 1000


def _send_train(log: SentLog, count: int, start: float, spacing: float) -> None:
    for i in range(count):
        log.on_sent(start + i * spacing, PACKET)


def _ack(log: SentLog, now: float, largest: int, received: int) -> RateSample | None:
    return log.on_ack(now, largest, received * PACKET, received, rtt=None)


@pytest.mark.parametrize("first_ack_late_ms", [0.0, 1.0, 3.0])
def test_a_trains_rate_is_the_bottlenecks_even_when_its_first_ack_comes_late(first_ack_late_ms: float) -> None:
    # 48 packets leave within 2.4 ms; a 5 MB/s bottleneck spreads them to 0.2 ms apart and the
    # peer acknowledges every 8th. The first ACK can also carry the peer's work on a new object.
    log = SentLog()
    _send_train(log, 48, 0.0, 0.00005)
    bottleneck = 5e6
    rates = []
    for k in range(1, 7):
        largest = 8 * k - 1
        arrival = 0.050 + 8 * k * PACKET / bottleneck + (first_ack_late_ms / 1000 if k == 1 else 0.0)
        sample = _ack(log, arrival, largest, 8 * k)
        assert sample is not None
        if sample.train_rate:
            rates.append(sample.train_rate)
    assert rates, "the train was spread by the path: it must give a sample"
    for rate in rates:
        assert rate == pytest.approx(bottleneck, rel=0.02)


def test_small_sends_while_a_train_is_on_its_way_do_not_push_it_out() -> None:
    # A slow path: 48 packets leave within 2.4 ms and arrive 2 ms apart. Before the first ACK,
    # five PROBE-sized datagrams go out 12 ms apart, each a train of its own; only the last few
    # trains are kept, and these can never be read, so they must not displace the one that can.
    log = SentLog()
    _send_train(log, 48, 0.0, 0.00005)
    for k in range(1, 6):
        log.on_sent(0.012 * k, 60)
    bottleneck = 0.5e6
    rates = []
    for k in range(1, 7):
        sample = _ack(log, 0.1 + 8 * k * PACKET / bottleneck, 8 * k - 1, 8 * k)
        assert sample is not None
        if sample.train_rate:
            rates.append(sample.train_rate)
    assert rates, "the first train must still be read"
    assert rates[-1] == pytest.approx(bottleneck, rel=0.02)


def test_a_train_the_path_did_not_spread_gives_no_sample() -> None:
    log = SentLog()
    _send_train(log, 48, 0.0, 0.0005)  # sent at 2 MB/s, under the 5 MB/s bottleneck
    for k in range(1, 7):
        sample = _ack(log, 0.050 + k * 8 * 0.0005, 8 * k - 1, 8 * k)
        assert sample is not None and sample.train_rate == 0.0


def test_a_train_whose_acks_count_more_than_it_sent_gives_no_sample() -> None:
    # Per-packet jitter: a few datagrams of a burst arrive well ahead of the rest. Each ACK names
    # one of those, a step past the last, while it counts 8 more of the older ones as they come.
    # Read as a train, the span measures the jitter: 2 MB/s here, whatever the bottleneck.
    log = SentLog()
    _send_train(log, 128, 0.0, 0.00001)
    rates = []
    for k in range(1, 13):
        sample = _ack(log, 0.050 + k * 0.004, 100 + k, 8 * k)
        assert sample is not None
        rates.append(sample.train_rate)
    assert rates == [0.0] * 12


def _ack_interval(log: SentLog, size: int, received: int, now: float, step: float) -> RateSample | None:
    """Send ``size`` packets at ``now``; the peer's ACK of them, ``step`` later, counting ``received``
    packets over the session."""
    _send_train(log, size, now, 0.0001)
    return _ack(log, now + step, log.next_pn - 1, received)


def test_loss_compensation_is_not_raised_by_a_burst_of_drops() -> None:
    # A long clean history, then one ACK interval in which half of 64 packets were dropped (a queue
    # the sender overran): the smoothed rate jumps, but the rate bandwidth samples are corrected
    # for stays near the session's count.
    log = SentLog()
    counts = [63] * 50 + [32]  # 1.6% loss, then the burst
    sample = None
    for k in range(len(counts)):
        sample = _ack_interval(log, 64, sum(counts[: k + 1]), k * 0.01, 0.01)
    assert sample is not None
    assert log.loss_rate > 0.1  # the smoothed rate saw the burst (1.6 % before it)
    # the first ACK only starts the count: 49 intervals of 1 lost in 64, then 32 of 64
    assert sample.loss_rate == pytest.approx((49 + 32 + 1) / (50 * 64 + 2), rel=1e-6)
    assert sample.loss_rate < 0.05


def test_reordering_does_not_read_as_loss() -> None:
    # In every other ACK interval one packet is overtaken and arrives in the next one: that
    # interval looks one short, the next one over. Nothing is lost, and the estimates must say so.
    log = SentLog()
    _send_train(log, 8 * 100, 0.0, 0.0001)
    received = 0
    for k in range(1, 101):
        received += 8 if k == 1 else (7 if k % 2 else 9)
        sample = _ack(log, 0.05 + k * 0.001, 8 * k - 1, received)
        assert sample is not None
    assert log.loss_rate < 0.01
    assert log.loss_for_planning < 0.02  # (lost + 1) / (sent + 2) with nothing lost but the late one


def test_a_large_late_correction_cancels_what_it_read_as_loss() -> None:
    # A jittery path holds back many datagrams at once: five ACK intervals of 8 count none of
    # theirs, and the next counts all 40 with its own 8. Nothing was lost; the smoothed rate must
    # be back near zero at once, not weigh the correction as one short interval's sample.
    log = SentLog()
    counts = [8] * 30 + [0] * 5 + [48]
    for k in range(len(counts)):
        _ack_interval(log, 8, sum(counts[: k + 1]), k * 0.002, 0.002)
        if k == 34:
            assert log.loss_rate > 0.1  # read as loss while they were missing
    assert sum(counts) == log.next_pn
    assert log.loss_rate < 0.02


def test_an_ack_the_peer_held_back_does_not_slow_a_train() -> None:
    # The last ACK of a train often waits for the peer's ack timer (fewer than 8 packets left).
    # Timed by arrival alone, it reads as a path at half the rate; the ack delay it reports puts
    # it back where the packet arrived.
    log = SentLog()
    _send_train(log, 44, 0.0, 0.00005)
    bottleneck = 5e6
    last = None
    for largest in (7, 15, 23, 31, 39, 43):
        arrival = 0.050 + (largest + 1) * PACKET / bottleneck
        held = 0.010 if largest == 43 else 0.0
        last = log.on_ack(arrival + held, largest, (largest + 1) * PACKET, largest + 1, rtt=None, ack_delay=held)
    assert last is not None and last.train_rate == pytest.approx(bottleneck, rel=0.02)


def test_a_claimed_ack_delay_cannot_place_an_arrival_before_the_send() -> None:
    # A peer reporting an absurd delay must not make a train look infinitely fast.
    log = SentLog()
    _send_train(log, 48, 0.0, 0.00005)
    rates = []
    for k in range(1, 7):
        largest = 8 * k - 1
        arrival = 0.050 + 8 * k * PACKET / 5e6
        sample = log.on_ack(arrival, largest, 8 * k * PACKET, 8 * k, rtt=None, ack_delay=1000.0 if k == 6 else 0.0)
        assert sample is not None
        rates.append(sample.train_rate)
    assert max(rates) < 5e6 * 2


def test_packets_sent_after_the_sender_ran_dry_are_app_limited_until_the_gap_is_acknowledged() -> None:
    # spec 11.2: only samples that measure a gap in our own sending are application-limited;
    # a sender held back by pacing with data to send is not.
    log = SentLog()
    _send_train(log, 10, 0.0, 0.001)
    assert not log.app_limited
    log.mark_app_limited()  # out of data with packets 0-9 in flight
    _send_train(log, 5, 0.02, 0.001)  # 10-14 follow the gap
    _ack(log, 0.06, 5, 6)
    assert log.app_limited
    sample = _ack(log, 0.07, 12, 13)  # packet 12 was sent while the gap was in flight
    assert sample is not None and sample.app_limited
    assert not log.app_limited  # packet 9, the last before the gap, is now acknowledged
    _send_train(log, 5, 0.08, 0.001)  # 15-19
    sample = _ack(log, 0.13, 19, 20)
    assert sample is not None and not sample.app_limited


def test_running_dry_with_nothing_in_flight_marks_nothing() -> None:
    # A new sending period measures from its own start (spec 11.2), so there is no gap to mark.
    log = SentLog()
    _send_train(log, 4, 0.0, 0.001)
    _ack(log, 0.05, 3, 4)
    log.mark_app_limited()
    _send_train(log, 4, 0.1, 0.001)
    sample = _ack(log, 0.15, 7, 8)
    assert sample is not None and not sample.app_limited


def test_a_flight_that_cannot_fill_the_window_is_app_limited_from_its_first_packet() -> None:
    # spec 11.2: the application queued less than the window holds. Marked only once the sender
    # ran dry, the packets before that measured the object's size, not the path: after a pause,
    # a 500-byte object read as a path of a few kbit/s, and enough of those set the estimate.
    log = SentLog()
    _send_train(log, 4, 0.0, 0.001)
    _ack(log, 0.05, 3, 4)
    log.expect_app_limited(True)
    _send_train(log, 2, 1.0, 0.001)
    sample = _ack(log, 1.05, 5, 6)
    assert sample is not None and sample.app_limited
    log.expect_app_limited(False)
    _send_train(log, 2, 2.0, 0.001)
    sample = _ack(log, 2.05, 7, 8)
    assert sample is not None and not sample.app_limited


def test_running_dry_ends_the_expectation_and_marks_the_gap_instead() -> None:
    log = SentLog()
    log.expect_app_limited(True)
    _send_train(log, 2, 0.0, 0.001)
    log.mark_app_limited()
    _ack(log, 0.05, 1, 2)
    _send_train(log, 2, 0.1, 0.001)
    sample = _ack(log, 0.15, 3, 4)
    assert sample is not None and not sample.app_limited


def test_datagrams_overtaken_throughout_a_transfer_do_not_read_as_loss() -> None:
    # A jittery path: at every ACK the 40 datagrams before the largest are still on their way
    # (they arrive, later). Shortfalls net of reordering still show those 40 at every ACK; the
    # count over the reordering window, and the ACKs that come after the transfer with nothing
    # newer, must not take them for loss.
    log = SentLog()
    _send_train(log, 8 * 100, 0.0, 0.0002)
    lost = 0
    for k in range(1, 101):
        largest = 8 * k - 1
        counted = max(8 * k - 40, 0) - lost
        if k % 10 == 0:
            lost += 1  # one in 80 really is lost
        log.on_ack(0.05 + k * 0.0016, largest, counted * PACKET, counted, rtt=None, reorder_window=0.02)
    # the stragglers arrive; the peer's next ACKs acknowledge nothing newer
    log.on_ack(0.25, 799, (800 - lost) * PACKET, 800 - lost, rtt=None, reorder_window=0.02)
    log.on_ack(0.3, 799, (800 - lost) * PACKET, 800 - lost, rtt=None, reorder_window=0.02)
    # (the first ACK only starts the count, so its 8 datagrams arrive as a surplus: 10 - 8 lost)
    assert log.loss_for_planning == pytest.approx((lost - 8 + 1) / (800 - 8 + 2))
    assert log.loss_rate < 0.03  # the smoothed rate too; 40 stragglers in 800 would read as 5%


def test_an_ack_with_nothing_newer_cannot_count_more_than_was_sent() -> None:
    # A peer claiming more datagrams than we sent (or a counter gone backwards) changes nothing.
    log = SentLog()
    _send_train(log, 16, 0.0, 0.001)
    _ack(log, 0.05, 15, 12)
    before = log.loss_for_planning
    log.on_ack(0.06, 15, 0, 12 - 5, rtt=None)  # backwards
    assert log.loss_for_planning == before
    log.on_ack(0.07, 15, 0, 10_000, rtt=None)  # far more than sent: loss is held at 0, not below
    assert 0.0 <= log.loss_for_planning <= before



def test_a_train_after_a_pause_is_judged_against_the_ack_before_the_pause() -> None:
    # A first object, fully acknowledged; a pause longer than the reordering window; then a second
    # train on a jittery path: its first ACK names the train's last datagram while 60 of the 100
    # before it are still on their way. They arrive within the window. Counted against that first
    # ACK alone, they would read as 60 % loss and plan REPAIRs for losses that never happened.
    log = SentLog()
    _send_train(log, 64, 0.0, 0.0002)
    log.on_ack(0.055, 31, 32 * PACKET, 32, rtt=None, reorder_window=0.02)
    log.on_ack(0.06, 63, 64 * PACKET, 64, rtt=None, reorder_window=0.02)
    _send_train(log, 100, 0.3, 0.0002)
    log.on_ack(0.36, 163, 104 * PACKET, 104, rtt=None, reorder_window=0.02)
    assert log.loss_rate < 0.05
    assert log.loss_for_planning < 0.05
    log.on_ack(0.37, 163, 164 * PACKET, 164, rtt=None, reorder_window=0.02)  # the stragglers
    assert log.loss_rate < 0.05


def test_stragglers_that_arrive_after_a_transfer_ends_are_taken_off_the_loss_at_once() -> None:
    # A flight of 128 on a jittery path: the ACK that names its last datagram comes while 40 of
    # those before it are still on their way, and reads them as lost. The flight ends; the next
    # ACKs name nothing newer but count the 40 (spec 11.2: they add to the count). No newer
    # datagram moves the reordering window on, yet the rate must drop now, not stay at its high
    # through the pause and into the planning of the next object's REPAIRs.
    log = SentLog()
    _send_train(log, 128, 0.0, 0.0002)
    log.on_ack(0.05, 63, 64 * PACKET, 64, rtt=None)
    log.on_ack(0.06, 127, 88 * PACKET, 88, rtt=None)
    read_high = log.loss_rate
    assert read_high > 0.2  # 40 of the 64 datagrams after the first ACK, missing for now
    log.on_ack(0.07, 127, 110 * PACKET, 110, rtt=None)
    assert log.loss_rate < read_high
    log.on_ack(0.08, 127, 128 * PACKET, 128, rtt=None)
    assert log.loss_rate == 0.0
    assert log.loss_for_planning < 0.02  # (0 + 1) / (64 + 2): the count is as of the first ACK


def test_a_train_a_short_queue_dropped_reads_the_bottleneck_not_the_drops() -> None:
    # 96 packets leave 0.1 ms apart (10 MB/s) into a 5 MB/s bottleneck whose queue holds almost
    # nothing: every other packet is dropped, and those that get through arrive as they were sent,
    # not spread out. Half of the train lost is as sure a sign as a spread train that we sent
    # faster than the path carries: the rate that arrived is the bottleneck's, and the train's own
    # drops, ours, are not random loss to correct it for.
    log = SentLog()
    _send_train(log, 96, 0.0, 0.0001)
    readings = []
    for k in range(1, 7):
        largest = 16 * k - 1
        sample = _ack(log, 0.050 + largest * 0.0001, largest, 8 * k)
        assert sample is not None
        if sample.train_rate:
            readings.append(sample)
    assert readings, "a train that lost half of itself at a short queue must give a reading"
    for sample in readings:
        assert sample.train_rate == pytest.approx(5e6, rel=0.1)
        assert sample.train_loss == 0.0  # the loss before the train, not the train's
        assert sample.loss_rate > 0.3  # what the smoothed loss made of the drops


@pytest.mark.parametrize(("after_reference", "spacing", "read"), [(4, 0.137, True), (4, 0.010, False), (12, 0.010, True)])
def test_a_slow_path_reads_a_train_from_the_few_datagrams_a_short_queue_lets_through(
    after_reference: int, spacing: float, read: bool
) -> None:
    # Spec 11.4, trains: 32 packets leave within 3 ms into a queue of a few datagrams; the peer
    # acknowledges each survivor as it arrives. At 64 kbit/s (0.137 s apart) four datagrams after
    # the reference ACK span 0.55 s, and ACK timing weighs on that little: read, though under
    # 10,000 bytes. As fast as 0.8 Mbit/s the same four span 40 ms: not read, until 10,000 bytes.
    log = SentLog()
    _send_train(log, 32, 0.0, 0.0001)
    readings = []
    for k in range(1, after_reference + 3):
        sample = _ack(log, 0.3 + k * spacing, 2 * k - 1, k)
        assert sample is not None
        if sample.train_rate:
            readings.append(sample.train_rate)
    assert bool(readings) is read
    if read:
        assert readings[-1] == pytest.approx(PACKET / spacing, rel=0.01)


def test_the_handshakes_bytes_do_not_read_as_delivered_in_the_first_sample() -> None:
    # Spec 11.2: the peer's received_bytes counts the INITIAL copies that reached it (here two of
    # 1,200 bytes). Counted from 0, the first ACK, for one 1,000-byte packet 0.3 s after the
    # handshake, read 11,333 bytes/s; the packet alone is 3,333.
    log = SentLog()
    for i in range(3):
        log.on_sent(0.001 * i, 1200)
    log.restart(0.3)
    _send_train(log, 4, 0.3, 0.001)
    sample = log.on_ack(0.6, 3, 2400 + PACKET, 1, rtt=0.3)
    assert sample is not None
    assert sample.delivery_rate == pytest.approx(PACKET / 0.3)
    # Later samples count from the same baseline: two more packets in 0.1 s.
    later = log.on_ack(0.7, 5, 2400 + 3 * PACKET, 3, rtt=0.4)
    assert later is not None
    assert later.delivered - later.prior_delivered == 3 * PACKET


def test_random_loss_the_session_already_showed_is_not_read_as_drops() -> None:
    # The same half of a train lost, on a path that lost half of everything before it: that is
    # the path's loss, and the train gives no reading.
    log = SentLog()
    now = 0.0
    received = 0
    for _ in range(40):
        _send_train(log, 16, now, 0.001)  # trains 50 ms apart, far below the bottleneck
        received += 8
        _ack(log, now + 0.066, log.next_pn - 1, received)
        now += 0.1
    assert log.loss_for_compensation > 0.45
    first = log.next_pn
    _send_train(log, 96, now, 0.0001)
    for k in range(1, 7):
        largest = first + 16 * k - 1
        received += 8
        sample = _ack(log, now + 0.050 + (largest - first) * 0.0001, largest, received)
        assert sample is not None and sample.train_rate == 0.0


def test_bytes_in_flight_leave_out_ack_only_datagrams_and_end_at_the_largest_reported() -> None:
    """Spec 11.1: a datagram carrying an ACK is never in flight; an ACK's or a NACK's Largest PN
    takes every datagram up to it out of flight; a report of an older or unsent number changes nothing."""
    log = SentLog()
    first = log.on_sent(0.000, PACKET)
    second = log.on_sent(0.001, PACKET)
    log.on_sent(0.002, 40, in_flight=False)
    third = log.on_sent(0.003, PACKET)
    assert log.inflight == 3 * PACKET
    log.on_reported(first)  # a NACK's Largest PN
    assert log.inflight == 2 * PACKET
    log.on_reported(first - 1)
    log.on_reported(third + 5)
    assert log.inflight == 2 * PACKET
    _ack(log, 0.05, second, 2)
    assert log.inflight == PACKET
    log.on_reported(third)
    assert log.inflight == 0
    log.on_sent(0.06, 40, in_flight=False)
    assert log.inflight == 0


def test_a_train_shorter_than_the_paths_jitter_allows_gives_no_reading() -> None:
    # The train of the first test, but on a path whose delay varies by 5 ms per packet: its
    # 8-10 ms span, timed by two jittered ACKs, says more about the jitter than the bottleneck.
    def readings(jitter: float) -> list[float]:
        log = SentLog()
        _send_train(log, 48, 0.0, 0.00005)
        found = []
        for k in range(1, 7):
            arrival = 0.050 + 8 * k * PACKET / 5e6
            sample = log.on_ack(arrival, 8 * k - 1, 8 * k * PACKET, 8 * k, rtt=None, jitter=jitter)
            assert sample is not None
            if sample.train_rate:
                found.append(sample.train_rate)
        return found

    assert readings(0.0005)  # 0.5 ms of jitter: the 8 ms span reads the bottleneck
    assert readings(0.005) == []
    assert readings(float("inf")) == []  # jitter not yet known


def test_late_bytes_of_a_reordered_flight_do_not_inflate_the_next_periods_first_sample() -> None:
    # Spec 11.2: a flight of 64 packets whose last one overtook the rest (netem-style reordering):
    # its ACK leaves nothing "in flight" while 40 older packets are still on their way. The next
    # object starts 30 ms later; its first packet overtakes too, and its ACK, 0.5 ms later, counts
    # the 40 late packets as well. Measured from that packet's own send time they read as 80 MB/s
    # on a path that carries 5.
    log = SentLog()
    _send_train(log, 64, 0.0, 0.0002)
    assert log.on_ack(0.020, 63, 24 * PACKET, 24, rtt=None) is not None
    assert log.inflight == 0
    log.on_sent(0.050, PACKET)
    sample = log.on_ack(0.0505, 64, 65 * PACKET, 65, rtt=None)
    assert sample is not None
    assert sample.delivery_rate < 5e6


def test_jitter_is_the_randomness_of_rtt_samples_not_their_trend() -> None:
    ramp = RttEstimator()
    for k in range(20):
        ramp.update(0.050 + 0.002 * k)  # a queue building steadily: 2 ms more per sample
    assert ramp.jitter_samples == 18
    assert ramp.jitter < 1e-9
    noisy = RttEstimator()
    rng = random.Random(7)
    for _ in range(200):
        noisy.update(0.050 + rng.gauss(0.0, 0.010))
    assert 0.006 < noisy.jitter < 0.014  # about the samples' 10 ms standard deviation
    fresh = RttEstimator()
    fresh.update(0.05)
    fresh.update(0.06)
    assert fresh.jitter_samples == 0  # two samples give one step: no change of step yet


def test_an_ack_reports_how_long_each_datagram_it_newly_covers_was_in_flight() -> None:
    # Ten datagrams 1 ms apart; an ACK of the fourth, then one of the tenth. Each reports the
    # datagrams after the previous largest: the second covers the fifth to the tenth, whose
    # in-flight times run from 0.075 - 0.004 down to 0.075 - 0.009.
    log = SentLog()
    _send_train(log, 10, 0.0, 0.001)
    first = _ack(log, 0.060, 3, 4)
    assert first is not None
    assert first.reported == 4
    assert first.report_delay_sum == pytest.approx(4 * 0.060 - (0.0 + 0.001 + 0.002 + 0.003))
    second = _ack(log, 0.075, 9, 10)
    assert second is not None
    assert second.reported == 6
    assert second.report_delay_sum == pytest.approx(sum(0.075 - 0.001 * k for k in range(4, 10)))
    # An ACK the peer held back is timed by its arrival, as trains are: its delay is not in flight.
    log.on_sent(0.080, PACKET)
    held = log.on_ack(0.140, 10, 11 * PACKET, 11, rtt=None, ack_delay=0.010)
    assert held is not None and held.reported == 1
    assert held.report_delay_sum == pytest.approx(0.050)


def test_datagrams_whose_acks_an_outage_swallowed_are_not_timed_to_the_ack_after_it() -> None:
    # A flight of ten at 0-9 ms; every ACK of it is lost in a 1 s outage of the return path. A
    # PROBE at 1.10 s is acknowledged at 1.16 s, and that ACK newly reports all eleven. When the ten
    # arrived is unknown: timed to this ACK, they read the outage as 1.1 s of path delay (the path
    # RTT, floored at 0.75 times such readings, held the next image to a window per 0.7 s).
    log = SentLog()
    _send_train(log, 10, 0.0, 0.001)
    log.on_sent(1.100, PACKET)
    late = log.on_ack(1.160, 10, 11 * PACKET, 11, rtt=0.060, ack_delay=0.0)
    assert late is not None
    assert late.reported == 1
    assert late.report_delay_sum == pytest.approx(0.060)


def test_the_delivery_peak_forgets_old_figures_but_not_on_an_idle_path() -> None:
    peak = WindowedMax(10.0)
    assert peak.value == 0.0
    peak.update(0.0, 5000.0)
    peak.update(3.0, 2000.0)
    assert peak.value == 5000.0
    peak.update(6.0, 1000.0)  # a new half began at 6 s: the first half's figure stays for one more
    assert peak.value == 5000.0
    peak.update(11.0, 1500.0)  # and is gone at 11 s, with the half it was in
    assert peak.value == 1500.0
    # Nothing offered for a minute (an idle path, not a slower one): the figure stood until now,
    # and the first new one replaces it.
    peak.update(71.0, 800.0)
    assert peak.value == 800.0
