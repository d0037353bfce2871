"""The snipbbr controller's bandwidth estimate (spec 11.4), fed rate samples directly."""

from __future__ import annotations

import dataclasses
import itertools
import random
from pathlib import Path

import pytest

from protocol import codec
from protocol.congestion import BW_WINDOW_ROUNDS, Phase, SnipBbr, _RoundLoss, least_loss
from protocol.delivery import RateSample
from tests.protocol.harness import Pair

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



def test_the_best_sample_holds_for_half_a_second_however_short_the_rounds() -> None:
    # A path that reorders much ends a round whenever a datagram that skipped the queue is
    # acknowledged, every few ms; ten such rounds aged the best sample out within 40 ms, and at
    # 40 % loss the estimate then followed each dip down (spec 11.4).
    bbr = _controller()
    bbr.on_rate_sample(0.010, _sample(1, rate=8e6))
    for k in range(2, 3 * BW_WINDOW_ROUNDS):
        bbr.on_rate_sample(0.010 + 0.004 * k, _sample(k, rate=2e6))
    assert bbr.bw == pytest.approx(8e6)  # 30 rounds, 0.13 s
    bbr.on_rate_sample(0.6, _sample(3 * BW_WINDOW_ROUNDS, rate=2e6))
    assert bbr.bw == pytest.approx(2e6)


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


def _feed_rounds(bbr: SnipBbr, rounds: list[tuple[int, int, float, float]]) -> list[Phase]:
    """One rate sample per round: (datagrams counted, of those lost, delivery rate, smoothed loss),
    the sample carrying the session's loss count so far. The phase after each round."""
    counted = lost = delivered = 0
    phases = []
    for k, (round_counted, round_lost, rate, loss_rate) in enumerate(rounds, start=1):
        counted += round_counted
        lost += round_lost
        prior, delivered = delivered, delivered + max(round_counted - round_lost, 1) * MSS
        sample = RateSample(
            delivery_rate=rate,
            app_limited=False,
            prior_delivered=prior,
            delivered=delivered,
            rtt=0.05,
            loss_rate=loss_rate,
            inflight=0,
            counted=counted,
            lost=lost,
        )
        bbr.on_rate_sample(0.05 * k, sample)
        phases.append(bbr.phase)
    return phases


def test_drops_from_a_queue_we_overran_are_not_compensated() -> None:
    # Rounds of 2% random loss, then one round in which a short queue dropped 30% of what we sent
    # too fast. Compensating a bandwidth sample for those 30% would raise the rate that overran
    # the queue; the least loss of the recent rounds is the random loss.
    bbr = _controller()
    _feed_rounds(bbr, [(100, 2, 1e6, 0.02)] * 5 + [(100, 30, 1e6, 0.3), (100, 2, 4e6, 0.3)])
    # corrected by about the random 2-3% (the rounds' counts are read cautiously), not by 30%
    assert bbr.bw == pytest.approx(4e6 / (1 - 0.03), rel=0.02)


def test_random_loss_in_every_round_is_compensated() -> None:
    bbr = _controller()
    _feed_rounds(bbr, [(400, 80, 4e6, 0.2)] * 7)
    assert bbr.bw == pytest.approx(4e6 / 0.8, rel=0.02)




@pytest.mark.parametrize("loss", [0.7, 0.85])
def test_loss_beyond_half_is_compensated_once_calm_rounds_lose_as_much(loss: float) -> None:
    # Spec 11.4. Startup's rounds lose 70 % (or 85 %): that may be a queue it overran, so their
    # samples count as they are. The drain and the probe cycle's calm phases pace at the estimate
    # or below and lose as much: the loss is the path's, and what left would have arrived but for
    # it. Taken as they were, the samples paced the next rounds at what arrived, 30 % (15 %) of
    # it, and the estimate fell round after round.
    bbr = _controller()
    _feed_rounds(bbr, [(400, round(400 * loss), 1e6, loss)] * 2)
    assert bbr.phase is Phase.STARTUP and bbr.bw == pytest.approx(1e6)
    _feed_rounds(bbr, [(400, round(400 * loss), 1e6, loss)] * 12)
    assert bbr.phase is not Phase.STARTUP
    assert bbr.bw == pytest.approx(1e6 / (1 - loss), rel=0.03)


def _searches(phases: list[Phase]) -> int:
    return sum(1 for before, after in itertools.pairwise(phases) if after is Phase.STARTUP and before is not Phase.STARTUP)


def test_an_estimate_taken_raw_searches_again_once_the_loss_is_known_to_be_the_paths() -> None:
    # Spec 11.4. Startup and the drain took their samples as they came, 70 % loss being past the
    # bound: the estimate is what arrived, 30 % of what left. The rounds after are sent at that
    # estimate, and 30 % of it arrives: compensated, the estimate again, no growth for a probe to
    # find. Once calm rounds show the loss is the path's, the estimate is searched for as startup
    # does, once: not at every small rise of the bound after.
    bbr = _controller()
    phases = _feed_rounds(bbr, [(400, 280, 1e6, 0.7)] * 4 + [(400, 280, 0.3e6, 0.7)] * 15)
    assert phases[3] is Phase.PROBE_BW and _searches(phases[:4]) == 0
    assert _searches(phases) == 1
    assert bbr.phase is Phase.PROBE_BW


def test_no_search_again_when_the_least_loss_falls_under_the_bound() -> None:
    # The first rounds lost 60 % (startup's own drops behind a short queue, say), the calm rounds
    # after 40 %: samples are compensated again, but the bound did not rise, so nothing showed the
    # early loss was the path's, and a search would overrun the queue again.
    bbr = _controller()
    phases = _feed_rounds(bbr, [(400, 240, 1e6, 0.6)] * 4 + [(400, 160, 0.6e6, 0.4)] * 15)
    assert bbr._least_round_loss is not None and bbr._least_round_loss < 0.45
    assert _searches(phases) == 0


def test_no_search_again_while_the_loss_is_past_any_bound() -> None:
    # At 95 % loss the bound rises to its cap, 90 %, and samples are still taken as they come:
    # searching again would find what the estimate already says. (Past the cap, sending slower
    # losing as much says more of a receiver or queue that takes almost nothing than of the path:
    # compensating would multiply the rate by 20 and more.)
    bbr = _controller()
    phases = _feed_rounds(bbr, [(400, 380, 1e6, 0.95)] * 30)
    assert _searches(phases) == 0
    assert bbr.bw == pytest.approx(1e6)


def _rounds_with_rtts(bbr: SnipBbr, rounds: list[tuple[float, float]], first: int = 1) -> None:
    """One round per (RTT of every sample in it, delivery rate), at 20 % random loss."""
    for k, (rtt, rate) in enumerate(rounds, start=first):
        bbr.on_rtt_sample(0.05 * k, rtt)
        sample = RateSample(
            delivery_rate=rate, app_limited=False, prior_delivered=k - 1, delivered=k, rtt=rtt,
            loss_rate=0.2, inflight=0, counted=400 * k, lost=80 * k,
        )
        bbr.on_rate_sample(0.05 * k, sample)


def test_one_round_at_the_full_delay_is_not_a_standing_queue() -> None:
    # On a reordering path a round can be a few datagrams, all of which took the path's full
    # delay while the path RTT reads short. Reading that as a queue stopped loss compensation,
    # and at 40 % loss the estimate fell round after round. A queue stands for several rounds.
    bbr = SnipBbr(MSS, 128, 0.05)
    _rounds_with_rtts(bbr, [(0.05, 4e6)] * 7)
    assert bbr.bw == pytest.approx(4e6 / 0.8, rel=0.02)
    _rounds_with_rtts(bbr, [(0.1, 4.4e6)], first=8)
    assert bbr.bw == pytest.approx(4.4e6 / 0.8, rel=0.02)  # compensated: no queue yet
    _rounds_with_rtts(bbr, [(0.1, 4.4e6)] * 3 + [(0.1, 6e6)], first=9)
    assert bbr.bw == pytest.approx(6e6)  # four rounds at +50 ms: a queue, and no compensation

def test_the_window_covers_the_rtt_most_packets_take_not_an_outlier() -> None:
    # A reordering path (netem's reorder lets a packet skip the delay) gives the odd RTT sample
    # near zero. A window of 2 x bw x that would hold the flow to a fraction of the path; the
    # window covers the smoothed RTT the rounds see instead.
    bbr = SnipBbr(MSS, 128, 0.1)
    now = 0.0
    for k in range(1, 40):
        now += 0.1
        for j in range(10):
            bbr.on_rtt_sample(now, 0.001 if (k == 5 and j == 3) else 0.1)
        bbr.on_rate_sample(now, _sample(k, rate=1e6))
    assert bbr.min_rtt == pytest.approx(0.001)
    assert bbr.cwnd >= 1.5 * bbr.bw * 0.1


def _probing_controller() -> tuple[SnipBbr, float]:
    """A controller in PROBE_BW at 1 MB/s, just after the phase that probes at gain 1.25."""
    bbr = _controller()
    bbr.on_rate_sample(0.01, _sample(1, rate=1e5, train=1e6, app_limited=True))
    bbr.on_rate_sample(0.02, _sample(2, rate=1e6))  # drained: inflight 0
    assert bbr.phase is Phase.PROBE_BW
    now = 0.02
    k = 3
    while bbr.pacing_rate <= 1e6:  # through the cycle to the probe at 1.25
        now += 0.051
        bbr.on_rate_sample(now, _sample(k, rate=1e6))
        k += 1
    now += 0.051
    bbr.on_rate_sample(now, _sample(k, rate=1e6))  # the next phase: the probe's samples follow
    assert bbr.phase is Phase.PROBE_BW and bbr.pacing_rate < 1e6
    return bbr, now


def test_a_probe_that_finds_the_path_far_wider_starts_the_search_again() -> None:
    bbr, now = _probing_controller()
    bbr.on_rate_sample(now + 0.01, _sample(100, rate=1.24e6))
    assert bbr.phase is Phase.STARTUP
    # doubling from the estimate, not from the first flight's floor
    assert bbr.pacing_rate == pytest.approx(2.885 * 1.24e6, rel=0.01)


def test_a_probe_the_path_barely_takes_keeps_probing_bw() -> None:
    bbr, now = _probing_controller()
    bbr.on_rate_sample(now + 0.01, _sample(100, rate=1.05e6))
    assert bbr.phase is Phase.PROBE_BW


def test_a_restarted_search_that_found_the_path_settles_in_probe_bw() -> None:
    # The search found 2.4x the old estimate. Its end is no new probe: measured against the
    # estimate from before the search, that finding would start the search again, and a shallow
    # queue would be overrun at startup's gain round after round.
    bbr, now = _probing_controller()
    k = 100
    bbr.on_rate_sample(now + 0.01, _sample(k, rate=1.24e6))
    assert bbr.phase is Phase.STARTUP
    for _ in range(6):  # the path's 2.4 MB/s, then no more growth: the search ends
        k += 1
        now += 0.051
        bbr.on_rate_sample(now, _sample(k, rate=2.4e6))
    assert bbr.phase is not Phase.STARTUP
    for _ in range(4):  # drained, then the first phases of the cycle
        k += 1
        now += 0.051
        bbr.on_rate_sample(now, _sample(k, rate=2.4e6))
        assert bbr.phase is not Phase.STARTUP
    assert bbr.phase is Phase.PROBE_BW


def _restarted_startup() -> SnipBbr:
    """A controller searching again (no initial floors) after 2% random loss in every round."""
    bbr, now = _probing_controller()
    bbr.on_rate_sample(now + 0.01, _sample(100, rate=1.24e6))
    assert bbr.phase is Phase.STARTUP
    return bbr


def test_startup_ends_when_two_rounds_lose_far_more_than_the_random_loss() -> None:
    # Random loss is the same at any rate; a short queue drops more the faster startup sends.
    # Startup ends on two rounds of such drops, without waiting three rounds for bw to stall.
    growing = [(100, 2, 1e6 * 1.5**k, 0.02) for k in range(4)]
    overrun = [(200, 60, 8e6, 0.02), (300, 120, 9e6, 0.02)]
    phases = []
    for rounds in ([*growing, *overrun[:1]], [*growing, *overrun]):
        bbr = SnipBbr(MSS, 128, 0.05)
        bbr.on_rtt_sample(0.0, 0.05)
        bbr._restarted = True  # past the first startup's floors (the last test covers those)
        _feed_rounds(bbr, rounds)
        phases.append(bbr.phase)
    # one round could be reordering that the loss count misread for a while
    assert phases[0] is Phase.STARTUP
    assert phases[1] is not Phase.STARTUP


def test_random_loss_alone_does_not_end_startup() -> None:
    bbr = SnipBbr(MSS, 128, 0.05)
    bbr.on_rtt_sample(0.0, 0.05)
    bbr._restarted = True
    _feed_rounds(bbr, [(100 * 2**k, 30 * 2**k, 1e6 * 2**k, 0.3) for k in range(6)])
    assert bbr.phase is Phase.STARTUP


def test_the_pacing_rate_is_never_under_one_datagram_per_path_rtt() -> None:
    # An endpoint that mostly receives reads its rate from its own few small packets: one read
    # 5 kbit/s on a 10 Mbit/s path and sent a small reply's REPAIRs 1.6 s apart. One datagram per
    # path RTT is never too fast for a path: the RTT holds the datagram's own transmission.
    bbr = SnipBbr(MSS, 128, 0.05)
    bbr.on_rtt_sample(0.0, 0.05)
    bbr._restarted = True
    bbr.on_rate_sample(0.01, _sample(1, rate=600.0))
    assert bbr.bw == pytest.approx(600.0)
    assert bbr.pacing_rate == pytest.approx(MSS / 0.05)
    bbr.on_rate_sample(0.02, _sample(2, rate=1e6))
    assert bbr.pacing_rate == pytest.approx(2.885 * 1e6, rel=0.01)


def test_an_overrun_first_startup_searches_again_paced_by_its_estimate() -> None:
    # The first startup keeps a whole initial window leaving within 10 ms. A queue too short for
    # that burst drops most of it, round after round, and the rounds read what survived: far
    # below the path. Startup begins again without the floors, doubling from the estimate.
    bbr = SnipBbr(MSS, 128, 0.05)
    bbr.on_rtt_sample(0.0, 0.05)
    floor = bbr.pacing_rate
    _feed_rounds(bbr, [(128, 100, 2e5, 0.6), (128, 100, 3e5, 0.6)])
    assert bbr.phase is Phase.STARTUP
    assert bbr.pacing_rate == pytest.approx(2.885 * bbr.bw, rel=0.01)
    assert bbr.pacing_rate < floor / 10


def test_a_round_of_a_few_datagrams_does_not_set_how_much_an_overrun_loses() -> None:
    # 2 Mbit/s behind a 2-datagram queue, 20 % loss (stress seed 56500), a 30 kB image. After the
    # first burst a round of 4 datagrams lost 2, and its (2 + 1) / (4 + 2) = 0.5 made an overrun a
    # round losing more than 0.5 + 0.5: the floors then lost 90 % of each round for a second, 16.7
    # times the image's bytes on the wire. Too few datagrams to read the path by, it is left out.
    bbr = SnipBbr(MSS, 128, 0.05)
    bbr.on_rtt_sample(0.0, 0.05)
    floor = bbr.pacing_rate
    _feed_rounds(bbr, [(4, 2, 2e5, 0.5), (111, 104, 2e5, 0.9), (75, 68, 2e5, 0.9)])
    assert bbr.phase is Phase.STARTUP
    assert bbr.pacing_rate < floor / 10
    # A round of 8 datagrams or more still speaks for the path: one losing half of 20 leaves 0.9
    # and 0.91 below what an overrun must lose.
    calm = SnipBbr(MSS, 128, 0.05)
    calm.on_rtt_sample(0.0, 0.05)
    _feed_rounds(calm, [(20, 10, 2e5, 0.5), (111, 100, 2e5, 0.9), (75, 68, 2e5, 0.9)])
    assert calm.pacing_rate > floor / 2  # still the floors


def test_a_round_too_small_to_end_startup_by_does_not_set_how_much_an_overrun_loses() -> None:
    # 2 Mbit/s behind a 3 kB queue and no loss at all (stress seed 57032). The first burst's round
    # counted 10 datagrams and lost 6: too few lost (under 8) to count towards ending startup, it
    # still set the loss later rounds were judged against, 0.58, and no round could lose more than
    # twice that. Past the limit (0.5 while no round sets one), it no longer does: two rounds
    # losing 90 % end the floors.
    floor = 2.885 * 128 * MSS / 0.05  # the initial window per path RTT, after the first round
    for rounds, ended in (
        ([(10, 6, 2e5, 0.6), (56, 51, 2e5, 0.9)], False),  # the small round counts towards nothing
        ([(10, 6, 2e5, 0.6), (56, 51, 2e5, 0.9), (62, 57, 2e5, 0.9)], True),
        # Within the limit a round that small still speaks for the path: 5 lost of 10 (0.5) leaves
        # rounds of 0.9 under what an overrun must lose, as random loss of half would.
        ([(10, 5, 2e5, 0.5), (56, 51, 2e5, 0.9), (62, 57, 2e5, 0.9)], False),
    ):
        bbr = SnipBbr(MSS, 128, 0.05)
        bbr.on_rtt_sample(0.0, 0.05)
        _feed_rounds(bbr, rounds)
        assert bbr.phase is Phase.STARTUP
        if ended:
            assert bbr.pacing_rate == pytest.approx(2.885 * bbr.bw, rel=0.01) and bbr.pacing_rate < floor / 10
        else:
            assert bbr.pacing_rate == pytest.approx(floor)


def test_rounds_of_control_packets_alone_do_not_end_the_first_startup() -> None:
    # An endpoint that mostly receives sends NACKs, COMPLETEs and PINGs of some tens of bytes, in
    # copies on a lossy path (stress seed 57189: 50 Mbit/s, 1.5 s, 65 % loss and 30 % corrupted).
    # Rounds of them lost 65-80 %, which ended its first startup as an overrun; its estimate, read
    # from those few bytes, was 1 kbit/s, and its replies went at one datagram per round trip.
    floor = 2.885 * 128 * MSS / 0.05  # the initial window per path RTT, after the first round

    def rounds(bytes_per_round: int) -> SnipBbr:
        bbr = SnipBbr(MSS, 128, 0.05)
        bbr.on_rtt_sample(0.0, 0.05)
        for k in range(1, 4):  # 20 datagrams counted a round, 15 of them lost
            sample = RateSample(
                delivery_rate=bytes_per_round / 0.05, app_limited=True, prior_delivered=(k - 1) * bytes_per_round,
                delivered=k * bytes_per_round, rtt=0.05, loss_rate=0.75, inflight=0, counted=20 * k, lost=15 * k,
            )
            bbr.on_rate_sample(0.05 * k, sample)
        return bbr

    control = rounds(5 * 40)  # five control packets of 40 bytes arrived
    assert control.phase is Phase.STARTUP and control.pacing_rate == pytest.approx(floor)
    data = rounds(5 * MSS)  # five datagrams of data: a queue the floors overran, search again
    assert data.phase is Phase.STARTUP and data.pacing_rate < floor / 10


def test_small_images_over_a_two_datagram_queue_are_not_sent_ten_times_over() -> None:
    # Stress seed 57032's link and images, one after another: every flight fits the window, so the
    # first startup never ends by its rate, and its floors (the initial window per path RTT, 30
    # Mbit/s here) overran the queue in every round. With the first round's loss taken for the
    # path's, 1614 datagrams were dropped at the queue and the images cost 9.97 times their bytes.
    pair = Pair("rate=2mbit queue=3000b rtt=100ms", seed=1)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=30)
    before = pair.conn.counters["bytes_sent"]
    images = [random.Random(size).randbytes(size) for size in (30000, 65536, 5000, 65536, 30000)]
    for image in images:
        oid = pair.send(image)
        pair.run_until(lambda: pair.finished([oid]), timeout=60)  # noqa: B023 (called at once)
    assert [event.data for event in pair.server_log.received()] == images
    assert pair.conn.counters["bytes_sent"] - before < 4 * sum(map(len, images))
    assert pair.link.stats()["fwd"]["dropped_by_cause"]["queue"] < 500


def test_the_floors_do_not_refill_the_window_within_a_round_that_shows_them_overrunning() -> None:
    # Stress --slow seed 12's link: 32 kbit/s, no random loss, 3 kB of queue. The first flight
    # (an initial window within 10 ms) reaches the receiver at one datagram per 0.26 s, and its
    # round lasts seconds. Each report freed the window, and the floors (the initial window, at the
    # train's rate) filled it again at once: three initial windows within 3 s, and 7.6 times the
    # images' bytes on a path that loses nothing. Once a round that delivered data has lost 8
    # datagrams, more than three quarters of what it counted, with half an initial window in
    # flight, the floors end (spec 11.4).
    pair = Pair("rate=32kbit queue=3000b rtt=200ms", seed=1)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=30)
    sent = pair.record_client_packets()
    images = [random.Random(size).randbytes(size) for size in (65536, 1)]
    ids = [pair.send(image) for image in images]
    pair.run_until(lambda: pair.finished(ids), timeout=120)
    assert {event.object_id: event.data for event in pair.server_log.received()} == dict(zip(ids, images, strict=True))
    start = sent[0][0]
    later = [t for t, packet in sent if t > start + 0.5 and not isinstance(packet, codec.Ack)]
    assert len([t for t in later if t < start + 5]) < 64  # no second initial window (278 before)
    assert pair.conn.counters["bytes_sent"] < 7 * sum(map(len, images))  # 8.1 times before


@pytest.mark.parametrize("seed", [1, 2])
def test_a_cold_transfer_stops_overrunning_a_five_datagram_queue(seed: int) -> None:
    # 10 Mbit/s behind a 5-datagram queue, 5% random loss, in virtual time. Startup's first
    # bursts overrun the queue; once two rounds show it, the flow is paced from its estimate.
    # Before that rule the queue dropped about 1.8 datagrams per chunk of the image (each drop
    # compensated for and sent again faster); now it drops fewer than three quarters of one.
    pair = Pair("rate=10mbit queue=5p rtt=50ms loss=5%", seed=seed)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=10)
    oid = pair.send(bytes(range(256)) * 4096)  # 1 MiB: 1024 chunks
    pair.run_until(lambda: pair.finished([oid]), timeout=30)
    assert pair.server_log.received()[0].data == bytes(range(256)) * 4096
    assert pair.link.stats()["fwd"]["dropped_by_cause"]["queue"] < 1024 * 3 / 4


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_loss_of_half_the_datagrams_is_compensated(seed: int) -> None:
    """Spec 11.4: up to 50% measured loss a bandwidth sample is divided by (1 - loss). With the bound
    at 35%, three of these four seeds settled at 5-6 Mbit/s on a 10 Mbit/s path losing 50%: what
    arrived, not what the bottleneck carries."""
    pair = Pair("rate=10mbit queue=250kb rtt=100ms loss=50%", seed=seed)
    oid = pair.send(bytes(1 << 20))
    pair.run_until(lambda: pair.finished([oid]), timeout=60)
    assert pair.conn.counters["objects_delivered"] == 1
    assert pair.conn.controller.stats()["bw_estimate_bps"] >= 9e6



@pytest.mark.parametrize("seed", [1, 4])
def test_random_loss_of_two_thirds_of_the_datagrams_is_compensated(seed: int) -> None:
    """Spec 11.4: past 50 % loss, samples are compensated once calm rounds lose as much. Without
    it these two seeds ended at 0.7 and 1.2 Mbit/s on a 10 Mbit/s path losing 65 % each way."""
    pair = Pair("rate=10mbit queue=250kb rtt=100ms loss=65%", seed=seed)
    oid = pair.send(bytes(1 << 20))
    pair.run_until(lambda: pair.finished([oid]), timeout=60)
    assert pair.conn.counters["objects_delivered"] == 1
    assert pair.conn.controller.stats()["bw_estimate_bps"] >= 5e6

@pytest.mark.parametrize(
    ("link", "rate_bps", "by_s"),
    [
        # The queue holds 27 datagrams: the rest of the 128-datagram first flight is dropped. In
        # this seed the first ANNOUNCE is lost too, and while the survivors drain (half a second)
        # the receiver's repeated NACKs draw ANNOUNCE copies and PROBEs, each a train of its own.
        # Four of them pushed the first train out of the four kept before it was read: startup
        # went on until 1.3 s, pacing the retransmissions at its initial floor, 7 Mbit/s.
        ("rate=512kbit queue=30kb rtt=200ms loss=5%", 512e3, 0.7),
        # 18 datagrams survive: 12 kB between the second ACK and the last, read since the minimum
        # is 10,000 bytes (it was 24,000, more than a short queue lets through).
        ("rate=1mbit queue=20kb rtt=100ms loss=2%", 1e6, 0.35),
        # 8 kB holds 7 datagrams: 6 arrive after the reference ACK, 0.137 s apart, read though under
        # 10,000 bytes. Unread, startup's floors overran the queue for 6 s (3.6x the image bytes
        # on the wire); and the first sample, counting the handshake's bytes as delivered, read
        # 88 kbit/s, held by the max filter for ten 1.3 s rounds.
        ("rate=64kbit queue=8kb rtt=300ms loss=2%", 64e3, 1.5),
    ],
)
def test_a_slow_path_with_a_short_queue_is_read_from_the_first_train(link: str, rate_bps: float, by_s: float) -> None:
    """Spec 11.4, trains: the first flight overruns a queue of about one BDP; what gets through
    tells the bottleneck's rate, and startup ends on it within the first round trips."""
    pair = Pair(link, seed=1)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=10)
    pair.send(bytes(64 << 10))
    start = pair.sim.now
    pair.sim.run_until(lambda: pair.sim.now >= start + by_s, timeout=by_s + 1)
    controller = pair.conn.controller
    assert isinstance(controller, SnipBbr)
    assert controller.phase is not Phase.STARTUP
    assert 0.8 * rate_bps <= controller.stats()["bw_estimate_bps"] <= 1.2 * rate_bps


def test_the_initial_windows_10_ms_floor_lasts_one_round() -> None:
    # Spec 11.4: the floor sends the initial window as a train to read the bottleneck by. Kept
    # through startup, it sent a 1 MiB image at 105 Mbit/s into a 50 Mbit/s path while startup
    # was still looking (300 drops from a 250 KB queue): after the first round only 2.885
    # initial windows per path RTT remain.
    bbr = _controller()
    window = 128 * MSS
    assert bbr.pacing_rate == pytest.approx(window / 0.010)
    bbr.on_rate_sample(0.06, _sample(10, rate=1e5))
    assert bbr.pacing_rate == pytest.approx(window / 0.010)
    bbr.on_rate_sample(0.12, _sample(20, rate=1.2e5))
    assert bbr.phase is Phase.STARTUP
    assert bbr.pacing_rate == pytest.approx(2.885 * window / 0.05)


def test_no_10_ms_floor_where_jitter_would_hide_the_train() -> None:
    # 1 MB/s already measured and 50 ms of jitter: a bottleneck fast enough to be worth finding
    # spreads the initial window over less than four times the jitter, so no train can read it.
    bbr = _controller()
    window = 128 * MSS
    bbr.on_rate_sample(0.06, dataclasses.replace(_sample(10, rate=1e6), jitter=0.050))
    assert bbr.phase is Phase.STARTUP
    assert bbr.pacing_rate == pytest.approx(max(2.885 * window / 0.05, 2.885 * 1e6))
    calm = _controller()
    calm.on_rate_sample(0.06, dataclasses.replace(_sample(10, rate=1e6), jitter=0.002))
    assert calm.pacing_rate == pytest.approx(window / 0.010)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_reordering_path_is_not_flooded(seed: int) -> None:
    # 50 Mbit/s, 60 ms, netem-style reordering of a quarter of the datagrams (each way), no loss;
    # three images in a row. The second image's first ACK once counted the first image's late
    # datagrams as delivered within 0.5 ms: a 1 Gbit/s sample, and 5,700 drops from the queue
    # (seed 1, 5.8 bytes on the wire per image byte). The path drops nothing by itself.
    pair = Pair("rate=50mbit queue=250kb rtt=60ms jitter=5ms reorder=25%", seed=seed)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=10)
    total = 0
    for size in (64 << 10, 256 << 10, 1 << 20):
        oid = pair.send(bytes(size))
        pair.run_until(lambda oid=oid: pair.finished([oid]), timeout=30)
        total += size
    assert pair.conn.counters["objects_delivered"] == 3
    assert pair.conn.counters["bytes_sent"] < 1.6 * total
    assert pair.link.stats()["fwd"]["dropped_by_cause"]["queue"] < 400


def _reordering_rounds(bbr: SnipBbr, sample_rtt: float, report_delay: float, rounds: int = 40, first: int = 1) -> None:
    """Rounds of 0.1 s at 10 MB/s, each with RTT samples of ``sample_rtt`` and 64 datagrams
    reported after ``report_delay`` in flight on average."""
    for k in range(first, first + rounds):
        now = 0.1 * k
        for _ in range(8):
            bbr.on_rtt_sample(now, sample_rtt)
        sample = dataclasses.replace(_sample(k, rate=1e7), reported=64, report_delay_sum=64 * report_delay)
        bbr.on_rate_sample(now, sample)


def _past_startup(sample_rtt: float, report_delay: float = 0.0) -> tuple[SnipBbr, int]:
    """A controller whose first startup and drain, rounds at a steady 10 MB/s as in
    _reordering_rounds, have ended, with the round of the datagrams sent until then acknowledged
    too; and the round to go on from."""
    bbr = SnipBbr(MSS, 128, 0.1)
    k = 1
    while bbr.phase in (Phase.STARTUP, Phase.DRAIN):
        _reordering_rounds(bbr, sample_rtt, report_delay, rounds=1, first=k)
        k += 1
    _reordering_rounds(bbr, sample_rtt, report_delay, rounds=1, first=k)
    return bbr, k + 1


def test_the_window_covers_how_long_datagrams_stay_in_flight_when_rtt_samples_read_short() -> None:
    # netem-style reordering (a quarter of the datagrams skip the 60 ms delay) with heavy loss:
    # every RTT sample is one that skipped it, 3 ms, while the ACKs report most datagrams 50 ms
    # after they left. A window of 2 x bw x 3 ms starved the flow, whose rate samples, and the
    # window after them, fell round after round (1 MiB took 12 s in the simulator).
    bbr = SnipBbr(MSS, 128, 0.1)
    _reordering_rounds(bbr, sample_rtt=0.003, report_delay=0.050)
    assert bbr.cwnd >= 2 * bbr.bw * 0.75 * 0.050


def test_report_delays_at_the_rtt_leave_the_window_to_the_rtt() -> None:
    # On a path without reordering datagrams stay in flight a little longer than the RTT (until
    # the ACK of the next few): that must not size the window, the RTT does.
    plain = SnipBbr(MSS, 128, 0.1)
    _reordering_rounds(plain, sample_rtt=0.050, report_delay=0.055)
    reference = SnipBbr(MSS, 128, 0.1)
    _reordering_rounds(reference, sample_rtt=0.050, report_delay=0.0)
    assert plain.cwnd == reference.cwnd


def test_a_few_datagrams_reported_at_once_do_not_set_the_window() -> None:
    # A round of datagrams that skipped the delay, reported within a few ms, is not an average of
    # many datagrams: the report delay counts once 128 datagrams are in it (two rounds of 64).
    bbr, k = _past_startup(sample_rtt=0.003)
    _reordering_rounds(bbr, sample_rtt=0.003, report_delay=0.050, rounds=1, first=k)
    assert bbr.cwnd < 2 * bbr.bw * 0.75 * 0.050
    _reordering_rounds(bbr, sample_rtt=0.003, report_delay=0.050, rounds=1, first=k + 1)
    assert bbr.cwnd >= 2 * bbr.bw * 0.75 * 0.050


def test_the_initial_windows_reports_do_not_set_the_window() -> None:
    # 20 Mbit/s, 400 ms, a tenth of the datagrams reordered each way: the initial window leaves
    # within 10 ms, and one ACK that skipped the delay reports most of it a few ms after it left.
    # That reading (32 ms) held for 10 s as the least report delay while the window sized from it
    # starved the paced flow, whose datagrams an ACK reported 0.2-0.4 s after they left: the
    # estimate fell from 5 to 0.4 Mbit/s and 1 MiB took 12 s. Only the readings of datagrams sent
    # until the first startup and its drain were over are left out: later, the datagrams are paced.
    bbr, k = _past_startup(sample_rtt=0.003, report_delay=0.003)
    _reordering_rounds(bbr, sample_rtt=0.003, report_delay=0.050, rounds=2, first=k)
    assert bbr.cwnd >= 2 * bbr.bw * 0.75 * 0.050
    # Once paced, a short reading is the least, as before.
    _reordering_rounds(bbr, sample_rtt=0.003, report_delay=0.010, rounds=2, first=k + 2)
    assert bbr.cwnd < 2 * bbr.bw * 0.75 * 0.050


def test_datagrams_queued_behind_the_initial_window_do_not_set_the_window() -> None:
    # 64 kbit/s, 300 ms, a 16 kB queue, ten 12 kB images at once: the initial window (128
    # datagrams within 10 ms) filled the queue, and what left until the drain was over waited up to
    # 2 s behind it. Their report delay, 2.2 s on average, had made the path RTT 1.7 s for ten
    # seconds (its RTT samples said 0.34 s): a window of 35 kB where the path holds 2.4 kB, and no
    # queue of ours could show against a path RTT that already held one.
    bbr = SnipBbr(MSS, 128, 0.3)
    bbr.on_rtt_sample(1.2, 0.34)
    bbr.on_rate_sample(1.2, dataclasses.replace(_sample(1, rate=8000, train=8000), rtt=0.34, inflight=100_000))
    assert bbr.phase is Phase.DRAIN
    k, now = 2, 1.2
    while k < 6:  # still draining: 64 datagrams reported after 2.2 s in flight in each round
        now += 0.5
        bbr.on_rtt_sample(now, 0.34)
        queued = dataclasses.replace(_sample(k, rate=8000), inflight=100_000, reported=64, report_delay_sum=64 * 2.2)
        bbr.on_rate_sample(now, queued)
        k += 1
    assert bbr.phase is Phase.DRAIN
    for _ in range(2):  # drained; the round after reports what the drain sent, at 2.2 s again
        now += 0.5
        bbr.on_rtt_sample(now, 0.34)
        bbr.on_rate_sample(now, dataclasses.replace(_sample(k, rate=8000), reported=64, report_delay_sum=64 * 2.2))
        k += 1
    assert bbr.phase is Phase.PROBE_BW
    assert bbr.cwnd < 2 * 8000 * 0.5 + 4 * MSS  # about 2 x bw x 0.34 s, not x 1.7 s


def _acks(bbr: SnipBbr, now: float, delivered: int, period: float, count: int, rate: float = 1e7) -> tuple[float, int]:
    """``count`` ACKs ``period`` apart, each reporting what ``rate`` delivers in that time; the time
    and the peer's received_bytes after them."""
    for _ in range(count):
        now += period
        delivered += int(rate * period)
        bbr.on_rate_sample(now, dataclasses.replace(_sample(delivered, rate=rate), rtt=None))
    return now, delivered


def test_the_window_keeps_room_for_acks_that_come_in_bursts() -> None:
    # A path that reorders (an ACK that skipped the delay reports at once what the others report
    # later) or a jittery hop: the same rate, reported in bursts 40 ms apart instead of every ms.
    # Without room for a burst's worth the sender waits for the next one with its window full.
    bbr, _ = _past_startup(sample_rtt=0.05)
    now, delivered = _acks(bbr, 10.0, 10**7, 0.001, 3 * BW_WINDOW_ROUNDS)
    assert bbr.bw == pytest.approx(1e7)
    smooth = bbr.cwnd
    now, delivered = _acks(bbr, now, delivered, 0.040, 3)
    assert bbr.cwnd - smooth == pytest.approx(1e7 * (0.040 - 0.001), rel=0.05)
    # At most 0.1 s at bw, however far apart the bursts.
    now, delivered = _acks(bbr, now, delivered, 0.300, 3)
    assert bbr.cwnd - smooth == pytest.approx(1e7 * (0.100 - 0.001), rel=0.05)
    # A burst is remembered for ten rounds, then smooth ACKs give the room back.
    _acks(bbr, now, delivered, 0.001, BW_WINDOW_ROUNDS + 1)
    assert bbr.cwnd == smooth


@pytest.mark.parametrize("seed", [4, 10])
def test_a_reordering_lossy_path_keeps_its_estimate(seed: int) -> None:
    # The same path end to end, in the simulator: 50 Mbit/s, 60 ms, a quarter of the datagrams
    # reordered each way, 40 % loss each way, three images. The 1 MiB image took 11.9 s (seed 4)
    # and 18.2 s (seed 10) while the estimate fell to under 1 Mbit/s; the path's limit is 0.3 s.
    pair = Pair("rate=50mbit queue=250kb rtt=60ms jitter=5ms reorder=25% loss=40%", seed=seed)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=10)
    for size in (64 << 10, 256 << 10, 1 << 20):
        oid = pair.send(bytes(size))
        start = pair.sim.now
        pair.run_until(lambda oid=oid: pair.finished([oid]), timeout=30)
    assert pair.conn.counters["objects_delivered"] == 3
    assert pair.sim.now - start < 3.0


def test_small_objects_one_after_another_leave_the_estimate_where_it_was() -> None:
    # 500-byte objects one after another at 50 % loss: each flight, timed from the last one, read
    # as a path of a few kbit/s and counted as a full sample; after a dozen objects the estimate
    # had fallen from 800 to 1 kbit/s, and each REPAIR of the next object waited seconds.
    pair = Pair("rate=10mbit rtt=100ms loss=50%", seed=1)
    first = pair.send(bytes(500))
    pair.run_until(lambda: pair.finished([first]), timeout=30)
    estimate = pair.conn.controller.stats()["bw_estimate_bps"]
    start = pair.sim.now
    for k in range(30):
        oid = pair.send(bytes([k]) * 500)
        pair.run_until(lambda oid=oid: pair.finished([oid]), timeout=30)
    assert pair.conn.controller.stats()["bw_estimate_bps"] >= estimate
    assert pair.sim.now - start < 30 * 0.5


def _rounds(loss: float, datagrams: int, count: int, seed: int, *, calm: bool = True) -> list[_RoundLoss]:
    rng = random.Random(seed)
    rounds = []
    for _ in range(count):
        lost = sum(rng.random() < loss for _ in range(datagrams))
        rounds.append(_RoundLoss(lost, datagrams, overran=False, calm=calm))
    return rounds


def test_the_least_loss_of_small_noisy_rounds_is_near_the_rate_they_share() -> None:
    """Spec 11.4: ten rounds of 30 datagrams at 70 % loss. Their plainly least rate averages about
    0.57, and compensating for that let the estimate sink (1 MiB took up to 28 s at 70 % loss)."""
    plain, least = [], []
    for seed in range(1, 51):
        rounds = _rounds(0.7, 30, 10, seed)
        plain.append(min(r.rate for r in rounds))
        least.append(least_loss(rounds))
        assert least[-1] <= (sum(r.lost for r in rounds) + 1) / (sum(r.counted for r in rounds) + 2)
    assert sum(plain) / len(plain) < 0.60
    assert 0.64 <= sum(least) / len(least) <= 0.70


def test_rounds_that_overran_a_queue_do_not_raise_the_least_loss() -> None:
    """Random loss of 1 % shows in every round; rounds that overran a shallow queue lost 30 %.
    The least loss is the path's 1 %, not the mix."""
    calm = _rounds(0.01, 300, 5, 1)
    overrun = _rounds(0.30, 300, 5, 2, calm=False)
    assert least_loss(calm + overrun) <= 0.02
    # And with no calm round at all, one markedly quieter round still speaks for the path.
    noisy = [calm[0]._replace(calm=False)]
    assert least_loss(noisy + overrun) <= 0.03


def test_a_round_of_a_few_datagrams_does_not_speak_for_the_path() -> None:
    """Spec 11.4: behind a queue of two datagrams at 256 kbit/s, startup's rounds lost 90-95 %, and
    one round cut to 5 datagrams lost 1 of them: raised by its error it read 0.46, under the 50 %
    bound, and every sample was doubled for it (an estimate of 1.8 times the path)."""
    overrun = [_RoundLoss(126, 133, overran=False, calm=False), _RoundLoss(125, 137, overran=False, calm=False)]
    tiny = _RoundLoss(1, 5, overran=False, calm=False)
    assert least_loss([*overrun, tiny]) > 0.85
    # Where every round is that small (a slow path's), they are all there is to read.
    slow = _rounds(0.03, 5, 10, 3)
    assert least_loss(slow) < 0.35


@pytest.mark.parametrize("seed", [2, 5])
def test_a_slow_path_behind_a_short_queue_is_not_overdriven(seed: int) -> None:
    """1 Mbit/s, 200 ms, 2 % loss, a queue of about four datagrams: the initial window overruns it
    whatever the controller does, but the estimate after must not. With a 5-datagram round's loss
    taken for the path's (above), the image cost 4.4 times its bytes on the wire on these seeds; it
    now costs about 3.4."""
    pair = Pair("rate=1mbit queue=4kb rtt=200ms loss=2%", seed=seed)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=30)
    data = random.Random(seed).randbytes(256 << 10)
    before = pair.conn.counters["bytes_sent"]
    oid = pair.send(data)
    pair.run_until(lambda: pair.finished([oid]), timeout=120)
    assert pair.conn.counters["objects_delivered"] == 1
    assert pair.conn.counters["bytes_sent"] - before < 3.8 * len(data)


@pytest.mark.parametrize(("link", "rate_bps", "seed"), [
    ("rate=2mbit rtt=50ms queue=4p", 2e6, 1),
    ("rate=1mbit rtt=100ms queue=3p loss=2%", 1e6, 3),
    ("rate=1mbit rtt=100ms queue=3p loss=2%", 1e6, 4),
])
def test_drops_from_a_queue_too_short_to_show_delay_are_not_compensated_for_long(link: str, rate_bps: float, seed: int) -> None:
    """Spec 11.4, loss test: a queue of a few datagrams drops what we send too fast in every round
    we do, as random loss would, and compensating for those drops had the estimate at 1.5-2 times
    the link through most of a megabyte. A round paced below what the path delivered shows the
    drops stop: the estimate starts again from there."""
    pair = Pair(link, seed=seed)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=30)
    oid = pair.send(random.Random(seed).randbytes(1_000_000))
    start = pair.sim.now
    estimates: list[float] = []

    def sample_estimate() -> bool:
        if pair.sim.now - start > 2 and (not estimates or len(estimates) < 10 * (pair.sim.now - start - 2)):
            estimates.append(pair.conn.controller.bw * 8 / rate_bps)
        return pair.finished([oid])

    pair.run_until(sample_estimate, timeout=120)
    assert pair.conn.counters["objects_delivered"] == 1
    assert sorted(estimates)[len(estimates) // 2] < 1.45


def test_images_at_70_percent_loss_each_way_are_not_starved_by_their_own_estimate() -> None:
    """Spec 11.4: with each round's loss read low, the compensated samples fell round after round
    and the megabyte took 28.6 s on this seed (about 1.2 s on most). And the 256 KiB image before
    it took 2.64 s (the limit, 30 % of 10 Mbit/s, is 0.8 s) while the estimate, taken raw in the
    first rounds, was probed up 25 % a cycle, before a search started once the loss was known to be
    the path's."""
    pair = Pair("rate=10mbit queue=250kb rtt=100ms loss=70%", seed=23)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=30)
    rng = random.Random(23)
    for size in (64 << 10, 256 << 10):
        oid = pair.send(rng.randbytes(size))
        start = pair.sim.now
        pair.run_until(lambda: pair.finished([oid]), timeout=60)  # noqa: B023 (called at once)
    assert pair.sim.now - start < 2.0
    oid = pair.send(rng.randbytes(1 << 20))
    start = pair.sim.now
    pair.run_until(lambda: pair.finished([oid]), timeout=60)
    assert pair.sim.now - start < 5.0


def test_a_megabyte_at_85_percent_loss_each_way_is_not_starved_by_its_own_estimate() -> None:
    """Spec 11.4: with the bound on compensated loss at 80 %, the samples at 85 % were taken as they
    came, each round paced at what arrived of the last, and on this seed the megabyte took 121 s
    after its two smaller images (the limit, 15 % of 10 Mbit/s, is 5.6 s)."""
    pair = Pair("rate=10mbit queue=250kb rtt=100ms loss=85%", seed=3)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=30)
    rng = random.Random(3)
    for size in (64 << 10, 256 << 10):
        oid = pair.send(rng.randbytes(size))
        pair.run_until(lambda: pair.finished([oid]), timeout=120)  # noqa: B023 (called at once)
    oid = pair.send(rng.randbytes(1 << 20))
    start = pair.sim.now
    pair.run_until(lambda: pair.finished([oid]), timeout=200)
    assert pair.sim.now - start < 15.0


# --- the RTT probe (spec 11.4) -----------------------------------------------------------------


def _queued_rounds(bbr: SnipBbr, start: float, end: float, rtt: float, rate: float, first: int) -> int:
    """Rounds from ``start`` to ``end``, each as long as ``rtt``, with RTT samples of ``rtt``, a
    delivery rate of ``rate`` and 500 kB in flight. Returns the next round's number."""
    k = first
    now = start
    while now < end:
        bbr.on_rtt_sample(now, rtt)
        bbr.on_rate_sample(now, dataclasses.replace(_sample(k, rate=rate), rtt=rtt, inflight=500_000))
        k += 1
        now += rtt
    return k


def _two_seconds_at_1mb() -> tuple[SnipBbr, int]:
    """A controller past startup on a 1 MB/s, 50 ms path, after 2 s of rounds at that RTT; and
    the next round's number."""
    bbr = _controller()
    bbr.on_rate_sample(0.01, _sample(1, rate=1e5, train=1e6, app_limited=True))
    return bbr, _queued_rounds(bbr, 0.02, 2.0, rtt=0.05, rate=1e6, first=2)


def test_a_queue_that_stood_for_ten_seconds_is_drained_and_the_path_read_again() -> None:
    # A link that slowed from 2.5 to 0.25 MB/s behind a deep buffer: the estimate still held the
    # old rate, and the queue it built delayed every packet by 2 s. Once min_rtt had not been met
    # for 10 s, the window fell to half of what the last round delivered per path RTT, until the
    # queue was gone; what came back then set min_rtt, and what the queue delivered set bw, from
    # which startup searches again.
    bbr = _controller()
    bbr.on_rate_sample(0.01, _sample(1, rate=1e5, train=2.5e6, app_limited=True))
    k = _queued_rounds(bbr, 0.02, 2.0, rtt=0.05, rate=2.5e6, first=2)
    assert bbr.phase is Phase.PROBE_BW
    k = _queued_rounds(bbr, 2.0, 11.9, rtt=2.0, rate=2.5e5, first=k)
    assert bbr.phase is Phase.PROBE_BW and bbr.bw == pytest.approx(2.5e6, rel=0.05)  # rounds of a queue
    k = _queued_rounds(bbr, 12.0, 12.1, rtt=2.0, rate=2.5e5, first=k)
    assert bbr.phase is Phase.PROBE_RTT
    assert bbr.cwnd == max(4 * MSS, int(0.5 * 2.5e5 * 0.05))
    # Still draining: the samples of datagrams that waited in the queue are not the path's.
    k = _queued_rounds(bbr, 12.1, 13.0, rtt=0.3, rate=2.5e5, first=k)
    assert bbr.phase is Phase.PROBE_RTT and bbr.min_rtt == pytest.approx(0.05)
    # Drained: 0.2 s at the probe's window, and a datagram sent then acknowledged.
    now = 13.0
    for j in range(4):
        sample = dataclasses.replace(_sample(k + j, rate=1e5), rtt=0.06, inflight=5000)
        bbr.on_rtt_sample(now + 0.1 * j, 0.06)
        bbr.on_rate_sample(now + 0.1 * j, sample)
    assert bbr.min_rtt == pytest.approx(0.06)
    assert bbr.bw == pytest.approx(2.5e5)
    # The path's rate may have changed again while the queue drained: searched for from there.
    assert bbr.phase is Phase.STARTUP and bbr.pacing_rate == pytest.approx(2.885 * 2.5e5, rel=0.01)


def _open_round_sample(bbr: SnipBbr, now: float, k: int, sent_before: int, rtt: float, rate: float,
                       inflight: int) -> None:
    """An ACK within a round still in progress: the datagram it reports was sent when
    ``sent_before`` bytes had been delivered, less than the round ends at."""
    bbr.on_rtt_sample(now, rtt)
    bbr.on_rate_sample(now, dataclasses.replace(_sample(k, rate=rate), prior_delivered=sent_before, rtt=rtt,
                                                inflight=inflight))


def test_a_round_that_a_growing_queue_keeps_open_counts_towards_the_probe() -> None:
    # A link that slowed to a tenth behind a deep buffer, as in the test above, but the queue
    # holds up the rounds: one round at 1 s, then one that is still open when min_rtt runs out,
    # its samples 1-5 s, since the datagram that began it waits behind the queue. Judged by the
    # two rounds that ended (0.05 and 1 s), no queue stood: the stale min_rtt took the next sample
    # (9 s on a link varying around 2 Mbit/s at 800 ms), the window grew with it and the queue
    # reached 19 s.
    bbr, k = _two_seconds_at_1mb()
    k = _queued_rounds(bbr, 2.0, 2.5, rtt=1.0, rate=1e5, first=k)
    assert bbr.phase is Phase.PROBE_BW
    now, rtt, sent_before = 3.0, 1.0, k - 2
    while now < 12.5:
        rtt = min(rtt + 0.01, 5.0)
        _open_round_sample(bbr, now, k, sent_before, rtt, rate=1e5, inflight=500_000)
        assert bbr.min_rtt == pytest.approx(0.05)
        if bbr.phase is Phase.PROBE_RTT:
            break
        now += 0.01
        k += 1
    assert bbr.phase is Phase.PROBE_RTT
    assert bbr.cwnd < 0.5 * 1e6 * 0.1


def test_a_round_just_begun_does_not_speak_for_a_queue() -> None:
    # The round in progress counts only once it has lasted longer than the path RTT: a round of
    # samples late by jitter (0.3 s on a 55 ms path) and the first sample of the next say nothing
    # of a queue while the round before them read the path. Where min_rtt has gone stale then, it
    # takes its next value; no probe.
    bbr, k = _two_seconds_at_1mb()
    k = _queued_rounds(bbr, 2.0, 11.9, rtt=0.055, rate=1e6, first=k)
    k = _queued_rounds(bbr, 11.95, 11.97, rtt=0.3, rate=1e6, first=k)  # one round, late by jitter
    assert bbr.phase is Phase.PROBE_BW and bbr.min_rtt == pytest.approx(0.05)
    # 11.98 s: min_rtt (met last at 1.97 s) is stale, and the round that began at 11.95 s has
    # lasted 30 ms, less than the path RTT.
    sent_before = k - 2
    for now in (11.98, 11.99):
        _open_round_sample(bbr, now, k, sent_before, 0.3, rate=1e6, inflight=50_000)
        k += 1
        assert bbr.phase is not Phase.PROBE_RTT
    assert bbr.min_rtt == pytest.approx(0.3)  # the sample after the stale value gave way


def test_a_probe_through_no_queue_leaves_the_estimate() -> None:
    # A path whose RTT rose for good (a new route) with no queue of ours: the probe reads the new
    # RTT, and keeps the rate the path still carries.
    bbr, k = _two_seconds_at_1mb()
    k = _queued_rounds(bbr, 2.0, 12.1, rtt=0.08, rate=1e6, first=k)
    assert bbr.phase is Phase.PROBE_RTT
    for j in range(4):
        sample = dataclasses.replace(_sample(k + j, rate=5e5), rtt=0.08, inflight=5000)
        bbr.on_rtt_sample(12.1 + 0.1 * j, 0.08)
        bbr.on_rate_sample(12.1 + 0.1 * j, sample)
    assert bbr.phase is Phase.PROBE_BW
    assert bbr.min_rtt == pytest.approx(0.08)
    assert bbr.bw == pytest.approx(1e6)


def test_sending_again_after_a_pause_needs_no_probe() -> None:
    # Nothing to send for 20 s: the first sample after the pause, app-limited with little in
    # flight, shows the path without a queue of ours, and the window stays open.
    bbr, k = _two_seconds_at_1mb()
    bbr.on_rtt_sample(22.0, 0.07)
    bbr.on_rate_sample(22.0, dataclasses.replace(_sample(k, rate=1e5, app_limited=True), rtt=0.07, inflight=3000))
    assert bbr.phase is Phase.PROBE_BW
    assert bbr.min_rtt == pytest.approx(0.07)


def test_a_link_that_slows_behind_a_deep_buffer_does_not_keep_its_queue(tmp_path: Path) -> None:
    # 8 Mbit/s for 3 s, then 1 Mbit/s, behind a 1 MB buffer (8 s at the slower rate), 100 ms.
    # The estimate held 8 Mbit/s for ten rounds, seconds each behind the queue it built; when
    # min_rtt then ran out, the next sample (1.9 s) became the path RTT, the window grew with it,
    # and RTTs reached 8 s while the queue overflowed (1.26 bytes on the wire per image byte).
    trace = tmp_path / "slows.trace"
    times, t = [], 0.0
    while t < 60_000:
        t += 12.0 / (8 if t < 3000 else 1)  # ms between 1500-byte opportunities
        times.append(int(t))
    trace.write_text("\n".join(map(str, times)) + "\n")
    pair = Pair(f"ratetrace={trace} rtt=100ms queue=1000kb", seed=1)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=10)
    data = random.Random(1).randbytes(5 << 20)
    oid = pair.send(data)
    start = pair.sim.now
    late_rtts: list[float] = []

    def done() -> bool:
        if pair.sim.now - start > 15:
            late_rtts.append(pair.conn.rtt.latest)
        return pair.finished([oid])

    pair.run_until(done, timeout=60)
    assert pair.server_log.received()[0].data == data
    assert late_rtts and max(late_rtts) < 1.0
    assert pair.conn.counters["bytes_sent"] < 1.1 * len(data)


def test_no_probe_where_loss_would_starve_its_few_datagrams_of_acks() -> None:
    # 70 % loss: a probe's window must hold 4 / 0.3^2 = 44 datagrams for one ACK a round trip to be
    # likely, more than the window of a 0.8 Mbit/s, 50 ms path. With 4 in flight, no ACK came for
    # seconds, nor was there room to send anything that would draw one.
    bbr = _controller()
    bbr.on_rate_sample(0.01, _sample(1, rate=1e5, train=1e5, app_limited=True))
    now, k = 0.02, 2
    while now < 25.0:
        rtt = 0.05 if now < 2.0 else 0.08  # a queue of 30 ms from 2 s on
        bbr.on_rtt_sample(now, rtt)
        bbr.on_rate_sample(now, dataclasses.replace(_sample(k, rate=1e5), rtt=rtt, inflight=8000,
                                                    counted=100 * k, lost=70 * k))
        assert bbr.phase is not Phase.PROBE_RTT
        now += 0.06
        k += 1
    # No probe could read the path better: the next sample replaced the stale one, as it would
    # without probes (held instead, a value read low once stood for good).
    assert bbr.min_rtt == pytest.approx(0.08)


def test_no_probe_without_a_standing_queue() -> None:
    # RTTs a little above the first one, as jitter gives: no queue to drain. A probe would only
    # shrink the window, and its few datagrams' ACKs can all be lost (bursts of ten at 1.5 s RTT:
    # 8 s without one, sending nothing). The stale min_rtt gives way to the next sample.
    bbr = _controller()
    bbr.on_rate_sample(0.01, _sample(1, rate=1e5, train=1e6, app_limited=True))
    rng = random.Random(3)
    now, k = 0.02, 2
    while now < 25.0:
        rtt = 0.05 if now < 2.0 else 0.051 + 0.004 * rng.random()
        bbr.on_rtt_sample(now, rtt)
        bbr.on_rate_sample(now, dataclasses.replace(_sample(k, rate=1e6), rtt=rtt, inflight=50_000))
        assert bbr.phase is not Phase.PROBE_RTT
        now += 0.05
        k += 1
    assert 0.051 <= bbr.min_rtt < 0.055


def test_the_first_startup_s_drops_counted_after_it_are_not_taken_for_the_path_s_loss() -> None:
    # 20 kbit/s behind a 10-datagram queue, no random loss. The 64 KiB image leaves in the first
    # flight and the queue drops most of it, but those losses are counted only in the round after
    # startup's, paced by the estimate by then. Taken for a calm round's (131 lost of 144), they
    # raised the bound on compensated loss to 0.9: the estimate rose to 150 kbit/s, 7.5 times the
    # link, and the image cost 7 times its bytes.
    pair = Pair("rate=20kbit queue=10p rtt=200ms", seed=1)
    pair.run_until(lambda: pair.conn.state.name == "ESTABLISHED", timeout=30)
    before = pair.conn.counters["bytes_sent"]
    image = random.Random(1).randbytes(65536)
    oid = pair.send(image)
    estimates: list[float] = []

    def done() -> bool:
        estimates.append(float(pair.conn.controller.stats()["bw_estimate_bps"]))
        return pair.finished([oid])

    pair.run_until(done, timeout=300)
    assert pair.server_log.received()[0].data == image
    assert max(estimates) < 2 * 20_000
    assert pair.conn.counters["bytes_sent"] - before < 4 * len(image)


def test_an_rtt_probe_does_not_put_off_the_loss_test() -> None:
    # Spec 11.4: the loss test is due some rounds into the probe cycle. An RTT probe used to start
    # the count towards it from zero. On a path of 0.8 s rounds whose RTT no sample renews, a probe
    # comes every 10 s, 12 rounds, and the test never came: drops from a queue of a few datagrams
    # were compensated for as random loss all along (benchmarks.stress --slow --varying, seed
    # 98554: 90 % of what went was dropped, the estimate up to 8 times the link). Here a queue
    # stands when min_rtt runs out at 10 s; the test is due at round 17, about 13 s.
    rtt, rate = 0.8, 1e5
    bbr = SnipBbr(MSS, 128, rtt)
    bbr.on_rtt_sample(0.0, rtt)
    bbr.on_rate_sample(0.01, _sample(1, rate=rate / 10, train=rate, app_limited=True))
    now, k, sent, probes = 0.02, 2, 0, 0
    tested: float | None = None
    while now < 40.0 and tested is None:
        sample_rtt = 1.3 if now > 5 and (now - 8.5) % 10 < 3 else rtt + 0.01  # a queue, now and then
        counted = int(sent * 0.9)  # ACKs report up to what left a tenth of the traffic ago
        sample = dataclasses.replace(
            _sample(k, rate=rate), rtt=sample_rtt, inflight=20_000, loss_rate=0.3,
            counted=counted, lost=int(counted * 0.3), sent_counted=sent,
        )
        was_probing = bbr.phase is Phase.PROBE_RTT
        bbr.on_rtt_sample(now, sample_rtt)
        bbr.on_rate_sample(now, sample)
        probes += bbr.phase is Phase.PROBE_RTT and not was_probing
        if bbr.phase is Phase.PROBE_BW and bbr.pacing_rate < rate:
            tested = now  # the test paces below what the path delivered
        k, sent, now = k + 1, sent + 20, now + sample_rtt
    assert probes == 1
    assert tested is not None and tested < 15.0, f"the loss test came at {tested} s"  # 26 s before
