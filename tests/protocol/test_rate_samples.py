"""Rate and loss samples the sender's controller is fed (spec 11.2, 11.4), in virtual time."""

from __future__ import annotations

import pytest

from protocol.delivery import RateSample, SentLog

PACKET = 1000


def _send_train(log: SentLog, count: int, start: float, spacing: float) -> None:
    for i in range(count):
        log.on_sent(start + i * spacing, PACKET, app_limited=False)


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


def test_a_train_the_path_did_not_spread_gives_no_sample() -> None:
    log = SentLog()
    _send_train(log, 48, 0.0, 0.0005)  # sent at 2 MB/s, under the 5 MB/s bottleneck
    for k in range(1, 7):
        sample = _ack(log, 0.050 + k * 8 * 0.0005, 8 * k - 1, 8 * k)
        assert sample is not None and sample.train_rate == 0.0


def test_loss_compensation_is_not_raised_by_a_burst_of_drops() -> None:
    # A long clean history, then one ACK interval in which half of 64 packets were dropped (a queue
    # the sender overran): the smoothed rate jumps, but the rate bandwidth samples are corrected
    # for stays near the session's count.
    log = SentLog()
    sent = received = 0
    now = 0.0
    for _ in range(50):
        _send_train(log, 64, now, 0.0001)
        sent += 64
        received += 63  # 1.6% loss
        now += 0.01
        _ack(log, now, sent - 1, received)
    _send_train(log, 64, now, 0.0001)
    sent += 64
    received += 32
    now += 0.01
    sample = _ack(log, now, sent - 1, received)
    assert sample is not None
    assert log.loss_rate > 0.3  # the smoothed rate saw the burst
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
