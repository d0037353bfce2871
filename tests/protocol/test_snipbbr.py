"""The snipbbr controller's bandwidth estimate (spec 11.4), fed rate samples directly."""

from __future__ import annotations

import pytest

from protocol.congestion import BW_WINDOW_ROUNDS, Phase, SnipBbr
from protocol.delivery import RateSample

MSS = 1064


def _sample(
    delivered: int, rate: float = 0.0, train: float = 0.0, app_limited: bool = False, train_id: int = 0
) -> RateSample:
    # Each sample is its own round: prior_delivered is what the previous one delivered.
    return RateSample(
        delivery_rate=rate,
        app_limited=app_limited,
        prior_delivered=delivered - 1,
        delivered=delivered,
        rtt=0.05,
        loss_rate=0.0,
        inflight=0,
        train_rate=train,
        train_id=train_id if train else -1,
    )


def _controller() -> SnipBbr:
    bbr = SnipBbr(MSS, 128, 0.05)
    bbr.on_rtt_sample(0.0, 0.05)
    return bbr


def test_a_later_train_reading_replaces_an_early_high_one() -> None:
    # A train's first readings span little and run high; its later ones are better. The estimate
    # follows the later reading down, where a max filter would keep the first for ten rounds.
    bbr = _controller()
    bbr.on_rate_sample(0.01, _sample(1, rate=1e5, train=9.2e6, app_limited=True))
    assert bbr.phase is not Phase.STARTUP
    assert bbr.bw == pytest.approx(9.2e6)
    bbr.on_rate_sample(0.02, _sample(2, rate=2e5, train=6.1e6, app_limited=True))
    assert bbr.bw == pytest.approx(6.1e6)


def test_delivery_samples_still_rule_when_above_the_train() -> None:
    bbr = _controller()
    bbr.on_rate_sample(0.01, _sample(1, rate=1e5, train=6e6, app_limited=True))
    bbr.on_rate_sample(0.02, _sample(2, rate=7e6))
    bbr.on_rate_sample(0.03, _sample(3, rate=1e5, train=5e6, app_limited=True))
    assert bbr.bw == pytest.approx(7e6)


def test_a_train_reading_ages_out_like_any_sample() -> None:
    bbr = _controller()
    bbr.on_rate_sample(0.01, _sample(1, rate=1e5, train=9e6, app_limited=True))
    for k in range(2, BW_WINDOW_ROUNDS + 3):
        bbr.on_rate_sample(0.01 * k, _sample(k, rate=5e6))
    assert bbr.bw == pytest.approx(5e6)



def test_another_trains_lower_reading_does_not_displace_the_held_one() -> None:
    # A later train's readings, taken while the path's jitter may weigh on them, lower the
    # estimate only once the held reading has aged out; a higher one takes its place at once.
    bbr = _controller()
    bbr.on_rate_sample(0.01, _sample(1, rate=1e5, train=6e6, train_id=0, app_limited=True))
    bbr.on_rate_sample(0.02, _sample(2, rate=1e5, train=3e6, train_id=500, app_limited=True))
    assert bbr.bw == pytest.approx(6e6)
    bbr.on_rate_sample(0.03, _sample(3, rate=1e5, train=7e6, train_id=900, app_limited=True))
    assert bbr.bw == pytest.approx(7e6)
    for k in range(4, BW_WINDOW_ROUNDS + 4):
        bbr.on_rate_sample(0.01 * k, _sample(k, rate=1e5, app_limited=True))
    bbr.on_rate_sample(0.5, _sample(BW_WINDOW_ROUNDS + 4, rate=1e5, train=3e6, train_id=1500, app_limited=True))
    assert bbr.bw == pytest.approx(3e6)
