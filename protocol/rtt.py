"""Round-trip time estimation (spec 9.5; the smoothing of RFC 6298 / RFC 9002 section 5)."""

from __future__ import annotations

GRANULARITY = 0.001  # 1 ms: the floor under rttvar terms, as in RFC 9002
SETTLED_SAMPLES = 8
JITTER_KNOWN_VALUES = 2  # jitter values (each from three samples) before the estimate is trusted


class RttEstimator:
    def __init__(self, initial_rtt: float = 0.1) -> None:
        self.initial_rtt = initial_rtt
        self.has_sample = False
        self.latest = initial_rtt
        self.smoothed = initial_rtt
        self.variance = initial_rtt / 2
        self.min_rtt = float("inf")
        self.samples = 0
        # Delay variation that is not a trend: half the mean change, from one sample to the next,
        # of the change from the sample before (about the standard deviation of the samples for a
        # path whose delay varies at random per packet). A queue that builds or drains at a steady
        # rate changes each sample by the same step, and adds nothing. 0 before three samples.
        self.jitter = 0.0
        self.jitter_samples = 0
        self._last_step = 0.0

    def update(self, sample: float, ack_delay: float = 0.0) -> None:
        if sample <= 0:
            return
        self.samples += 1
        self.min_rtt = min(self.min_rtt, sample)
        # Subtract the peer's ack delay only when that keeps the sample plausible (RFC 9002 5.3).
        adjusted = sample - ack_delay if sample - ack_delay >= self.min_rtt else sample
        if self.samples >= 2:
            step = adjusted - self.latest
            if self.samples >= 3:
                change = abs(step - self._last_step) / 2
                self.jitter = change if not self.jitter_samples else 0.75 * self.jitter + 0.25 * change
                self.jitter_samples += 1
            self._last_step = step
        self.latest = adjusted
        if not self.has_sample:
            self.has_sample = True
            self.smoothed = adjusted
            self.variance = adjusted / 2
            return
        self.variance = 0.75 * self.variance + 0.25 * abs(self.smoothed - adjusted)
        self.smoothed = 0.875 * self.smoothed + 0.125 * adjusted

    @property
    def settled_variance(self) -> float:
        """rttvar once it has had samples enough to mean something (it starts at half the RTT)."""
        return self.variance if self.samples >= SETTLED_SAMPLES else 0.0

    @property
    def known_jitter(self) -> float:
        """jitter once it has had values enough to trust; infinite before (spec 9.5, 11.4)."""
        return self.jitter if self.jitter_samples >= JITTER_KNOWN_VALUES else float("inf")

    @property
    def min_or_smoothed(self) -> float:
        return self.min_rtt if self.has_sample else self.smoothed

    def pto(self, peer_max_ack_delay: float) -> float:
        """spec 9.4: probe timeout before backoff."""
        return self.smoothed + max(4 * self.variance, GRANULARITY) + peer_max_ack_delay
