"""What the sender remembers about its packets, and the rate samples ACKs yield (spec 11.2).

Bytes in flight are the bytes sent after the largest acknowledged packet: a packet older than that
has either arrived or been lost, and the NACK machinery, not this log, repairs losses. That keeps
the log a plain sliding window indexed by packet number.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# A train tells the bottleneck's rate when it arrived this much slower than it was sent and is
# long enough to span more than one of the peer's ACK intervals (8 packets by default). No longer:
# a queue of one BDP on a slow path lets only 15-30 datagrams of a first flight through.
TRAIN_SPREAD = 1.25
TRAIN_MIN_BYTES = 10 * 1000
# On a slow path with a queue of a few datagrams fewer than that get through a train at all (at
# 64 kbit/s behind 8 kB, about six after the reference ACK), and it would never be read: startup's
# floors would then keep overrunning the queue for seconds. Over a span of 0.1 s or more, ACK timing
# (a few ms of ack delay) weighs on a reading little, and the peer's ack timer, not its count of 8,
# sends the ACKs of datagrams that far apart: 2,000 bytes over such a span do.
TRAIN_SLOW_MIN_BYTES = 2 * 1000
TRAIN_SLOW_SPAN = 0.1
# Or when far fewer bytes per second arrived than we sent, beyond the loss seen before the train:
# a queue too short to spread the train dropped the excess instead.
TRAIN_DROP_SPREAD = 1.5
LOSS_HALF_LIFE = 128  # datagrams: how fast the smoothed loss rate forgets (spec 11.2)
TRAIN_GAP = 0.010  # a pause this long in our sending starts a new train
# ACKs kept for the loss count's reordering window: enough for a second of ACKs at 100 Mbit/s.
SHORTFALL_HISTORY = 2048
# Each end of a train's span is timed by an ACK, and jitter moves each by about the path's jitter:
# a span shorter than this many times that is read mostly from the jitter.
TRAIN_NOISE_SPANS = 4
# A train is read only while its ACKs count no more than this share of what we sent between the
# packets they acknowledge: more means older datagrams of the train came late, behind newer ones
# that overtook them, and the span measures the path's reordering, not its bottleneck.
TRAIN_OVERCOUNT = 1.1
TRAIN_REFERENCE_ACK = 2  # the ACK of a train that its rate is measured from (the first may come late)


class WindowedMax:
    """The largest value offered over the last ``window`` seconds, give or take half of it (two
    halves, the older dropped as a new one starts, so that a figure costs nothing to keep). With
    nothing offered for that long, the last figure stands: an idle path has not become slower."""

    __slots__ = ("_half", "_newer", "_older", "_start")

    def __init__(self, window: float) -> None:
        self._half = window / 2
        self._start = 0.0
        self._older = 0.0
        self._newer = 0.0

    def update(self, now: float, value: float) -> None:
        if now - self._start >= self._half:
            self._older = self._newer if now - self._start < 2 * self._half else 0.0
            self._newer = 0.0
            self._start = now
        self._newer = max(self._newer, value)

    @property
    def value(self) -> float:
        return max(self._older, self._newer)


@dataclass(frozen=True, slots=True)
class RateSample:
    delivery_rate: float  # bytes/s the peer received over the sample's interval
    app_limited: bool
    prior_delivered: int  # peer's received_bytes when the acknowledged packet was sent
    delivered: int  # peer's received_bytes now
    rtt: float | None  # latest RTT sample, if this ACK gave one
    loss_rate: float  # fraction of our packets that did not arrive (SentLog.loss_for_compensation)
    inflight: int
    # Arrival rate of a train the path spread out: bytes/s between two ACKs of this sending
    # period, when those bytes left us markedly faster than they arrived. 0 when there is none.
    train_rate: float = 0.0
    train_id: int = -1  # the train's first packet number: readings of one train share it
    train_loss: float = 0.0  # the random loss rate the train reading is to be corrected for
    # The loss count so far (spec 11.2): datagrams it covers, and how many of those were lost.
    counted: int = 0
    lost: int = 0
    # Datagrams sent so far that the loss count will cover: the one sent next is the count's
    # datagram number ``sent_counted + 1``, so the loss of a stretch of sending can be read later.
    sent_counted: int = 0
    # How much the path's delay varies from one packet to the next (infinite while unknown): a
    # train's span must be TRAIN_NOISE_SPANS times that to be read.
    jitter: float = 0.0
    # The datagrams this ACK newly reported (those after the previous largest acknowledged, up to
    # its own): how many, and how long they had been in flight, summed (the ACK's arrival, as
    # trains time it, minus each one's send time). An ACK reports every datagram up to its
    # largest, so this, not the largest's RTT, is how long bytes stay counted in flight.
    reported: int = 0
    report_delay_sum: float = 0.0


class _Sent:
    __slots__ = (
        "app_limited", "cum_bytes", "cum_ignored", "cum_uncounted", "delivered", "delivered_time", "first_sent_time", "time"
    )

    def __init__(
        self,
        time: float,
        cum_bytes: int,
        delivered: int,
        delivered_time: float,
        first_sent_time: float,
        app_limited: bool,
        cum_uncounted: int,
        cum_ignored: int,
    ) -> None:
        self.time = time
        self.cum_bytes = cum_bytes
        self.cum_uncounted = cum_uncounted
        self.cum_ignored = cum_ignored
        self.delivered = delivered
        self.delivered_time = delivered_time
        self.first_sent_time = first_sent_time
        self.app_limited = app_limited


class _Train:
    """Datagrams we sent back to back, with no pause of TRAIN_GAP among them (spec 11.4, trains)."""

    __slots__ = ("first", "last", "loss_before", "reference", "replies", "start_bytes")

    def __init__(self, pn: int, loss_before: float, start_bytes: int) -> None:
        self.first = self.last = pn
        self.replies = 0  # ACKs seen that acknowledge one of its datagrams
        # (arrival, peer's received_bytes, send time, our cumulative sent bytes) as of the
        # TRAIN_REFERENCE_ACK-th of those ACKs; its rate is measured from there.
        self.reference: tuple[float, int, float, int] | None = None
        self.loss_before = loss_before  # the compensation loss rate when it started
        self.start_bytes = start_bytes  # our cumulative sent bytes before its first datagram


class SentLog:
    def __init__(self) -> None:
        self._log: deque[_Sent] = deque()
        self._base_pn = 0  # packet number of _log[0]
        self.next_pn = 0
        self.sent_bytes = 0
        self.largest_acked = -1
        self._acked_cum_bytes = 0
        # ACK-only datagrams are not in flight (spec 11.1): their bytes, cumulative, and as of the
        # newest packet the peer has reported receiving, by ACK or by NACK.
        self._uncounted_bytes = 0
        self._reported_pn = -1
        self._reported_cum_bytes = 0
        self._reported_uncounted = 0
        # Datagrams the peer leaves out of received_packets, cumulative, and as of the largest
        # acknowledged: a server's ACCEPTs, of which a client counts only the one that completed
        # its handshake (spec R9.2-4). On a long path a server answers each retransmitted INITIAL,
        # and the copies the client ignored read as lost, 5 of its first 15 datagrams at 800 ms.
        self._ignored_packets = 0
        self._count_base = (0, 0)  # next_pn and ignored packets when the loss count began (restart)
        self._acked_ignored = 0
        self.delivered = 0  # peer-reported received_bytes
        # The bytes we had sent by the handshake's end, until the first ACK since tells how many of
        # them reached the peer (_set_baseline); None otherwise.
        self._handshake_bytes: int | None = None
        self.delivered_time = 0.0
        self.first_sent_time = 0.0
        self._received_packets = 0
        self.loss_rate = 0.0
        self._counted_sent = 0  # datagrams the ACKs covered, and how many of those the peer did not count
        self._shortfall = 0
        # The shortfall (sent - counted) after each ACK of the last reordering window, with the time
        # and the datagrams sent. A datagram overtaken by newer ones is missing from the shortfall
        # of some of these ACKs but not of all, so the smallest of them is the loss, as of the
        # oldest of them (spec 11.2). With no reordering the window holds one ACK: the latest.
        self._shortfalls: deque[tuple[float, int, int]] = deque(maxlen=SHORTFALL_HISTORY)
        self._lagged_sent = 0
        self._lagged_lost = 0
        self._faded_sent = 0.0
        self._faded_lost = 0.0
        # The last few trains. A train's reference is taken from the second ACK of one of its
        # packets, not the first: that one may also carry the peer's work for a new object, and
        # arrive late. Several trains, because a later one may start (a probe, a reply) before the
        # ACKs of the one before come back.
        self._trains: deque[_Train] = deque(maxlen=4)
        self._last_send_time = float("-inf")
        self._last_flight_send_time = float("inf")  # the last packet in flight we sent: none yet
        # The last packet sent before the sender last ran out of data: packets sent before the
        # peer acknowledges it follow a gap in our sending and measure it, not the path.
        self._app_limited_until = -1
        # The application's data waiting to go fits in the window: the packets that carry it leave
        # faster than it can fill the path, and their samples measure the data, not the path.
        self._dry_ahead = False

    @property
    def loss_for_planning(self) -> float:
        """A loss rate to provision repair for: the smoothed rate, but not below what the session's
        whole count supports, (lost + 1) / (sent + 2), which is cautious while samples are few."""
        return min(max(self.loss_rate, self.counted_loss_rate), 0.9)

    @property
    def counted_loss_rate(self) -> float:
        """The session's whole count, (lost + 1) / (sent + 2): cautious while it is small."""
        return (self._lagged_lost + 1) / (self._lagged_sent + 2)

    @property
    def sent_counted(self) -> int:
        """Datagrams sent since the loss count began that it will cover (not those the peer
        does not count)."""
        next_pn, ignored = self._count_base
        return (self.next_pn - next_pn) - (self._ignored_packets - ignored)

    @property
    def loss_samples(self) -> int:
        """Datagrams the loss count covers."""
        return self._lagged_sent

    def _count_loss(self, now: float, sent_delta: int, recv_delta: int, reorder_window: float) -> None:
        self._counted_sent += sent_delta
        self._shortfall += sent_delta - recv_delta
        self._shortfalls.append((now, self._counted_sent, self._shortfall))
        # The reference is the last ACK at least one window old: the count as of then. Were it the
        # newest ACK whenever the one before is older than a window (a train after a pause), the
        # datagrams a jittery path reorders within that train would all count as lost.
        while len(self._shortfalls) > 1 and self._shortfalls[1][0] <= now - reorder_window:
            self._shortfalls.popleft()
        lagged_sent = self._shortfalls[0][1]
        lagged_lost = max(min(shortfall for _, _, shortfall in self._shortfalls), 0)
        span = lagged_sent - self._lagged_sent
        # The smoothed rate follows the same lagged count: datagrams lost over datagrams counted,
        # each count fading with a half-life of LOSS_HALF_LIFE datagrams. A loss counted earlier
        # that then arrived late is taken back from the same sum, so reordering cancels out (a
        # rate averaged sample by sample would take a large correction as a single sample of
        # -100 %, held to a weight of one interval, and keep most of the loss it had read). The
        # sum never goes below zero: a correction for a loss already faded must not hide new ones.
        if span > 0:
            fade = 0.5 ** (span / LOSS_HALF_LIFE)
            self._faded_sent = self._faded_sent * fade + span
            self._faded_lost *= fade
            self._lagged_sent = lagged_sent
        elif lagged_lost >= self._lagged_lost:
            return  # the window's oldest ACK is the same, and nothing of its count came late
        # With the same oldest ACK, a smaller count means stragglers arrived (after a transfer's end
        # no newer datagram moves the window on): taken back now, not after the pause. The faded
        # sent sum is > 0 here: a count can only fall once it has risen, in a span.
        self._faded_lost = max(self._faded_lost + (lagged_lost - self._lagged_lost), 0.0)
        self.loss_rate = min(self._faded_lost / self._faded_sent, 1.0)  # both sums are >= 0
        self._lagged_lost = lagged_lost

    @property
    def loss_for_compensation(self) -> float:
        """The loss rate bandwidth samples are corrected for (spec 11.4): the smoothed rate, but not
        above the session's whole count, so that a burst of drops from a queue we overran cannot
        raise the estimate that overruns it again."""
        return min(self.loss_rate, self.counted_loss_rate)

    @property
    def inflight(self) -> int:
        return (self.sent_bytes - self._reported_cum_bytes) - (self._uncounted_bytes - self._reported_uncounted)

    def on_reported(self, largest_pn: int) -> None:
        """The peer has received packet ``largest_pn`` (an ACK's or a NACK's Largest PN): it and
        every older packet have arrived or been lost, and are no longer in flight."""
        i = largest_pn - self._base_pn
        if largest_pn > self._reported_pn and 0 <= i < len(self._log):
            sent = self._log[i]
            self._reported_pn = largest_pn
            self._reported_cum_bytes = sent.cum_bytes
            self._reported_uncounted = sent.cum_uncounted

    def mark_app_limited(self) -> None:
        """The sender has nothing more to send now (spec 11.2): if anything is in flight, the
        samples of packets sent until it is acknowledged are application-limited."""
        self._dry_ahead = False
        if self.inflight > 0:
            self._app_limited_until = self.next_pn - 1

    def expect_app_limited(self, dry: bool) -> None:
        """Whether what the application has queued will run out before it fills the window (spec
        11.2): if so, the packets sent until the sender runs dry are application-limited too, as
        Linux marks a write that cannot fill the window."""
        self._dry_ahead = dry

    @property
    def app_limited(self) -> bool:
        return self.largest_acked < self._app_limited_until

    def on_sent(self, now: float, size: int, in_flight: bool = True, counted: bool = True) -> int:
        """Record a packet; returns its packet number. An ACK-only datagram is not ``in_flight``;
        one the peer does not count in received_packets (an ACCEPT) is not ``counted``."""
        pn = self.next_pn
        app_limited = self._dry_ahead or self.app_limited
        self.next_pn += 1
        if not self._log:
            self._base_pn = pn
        if self.sent_bytes == self._acked_cum_bytes:
            # Nothing in flight: a new sending period starts, and its samples measure from here.
            # Except on a reordering path, where packets older than the largest acknowledged may
            # still be on their way, and their bytes count in this period's first samples: the
            # send span of those starts at our last send, which bounds what the late bytes can add.
            self.delivered_time = now
            self.first_sent_time = min(now, self._last_flight_send_time)
        if now - self._last_send_time >= TRAIN_GAP or not self._trains:
            if self._trains and self.sent_bytes - self._trains[-1].start_bytes < TRAIN_MIN_BYTES:
                # Too short to be read but on a slow path (a PROBE, a few ANNOUNCEs): it must not
                # push a train that can be read out of the few kept.
                self._trains.pop()
            self._trains.append(_Train(pn, self.loss_for_compensation, self.sent_bytes))
        else:
            self._trains[-1].last = pn
        self._last_send_time = now
        if in_flight:
            self._last_flight_send_time = now
        self.sent_bytes += size
        if not in_flight:
            self._uncounted_bytes += size
        if not counted:
            self._ignored_packets += 1
        self._log.append(
            _Sent(now, self.sent_bytes, self.delivered, self.delivered_time, self.first_sent_time, app_limited,
                  self._uncounted_bytes, self._ignored_packets)
        )
        return pn

    def restart(self, now: float) -> None:
        """Handshake done: what was sent so far is settled, and rate sampling starts now."""
        self._log.clear()
        self._base_pn = self.next_pn
        self.largest_acked = self.next_pn - 1
        self._acked_cum_bytes = self.sent_bytes
        self._reported_pn = self.largest_acked
        self._reported_cum_bytes = self.sent_bytes
        self._reported_uncounted = self._uncounted_bytes
        self._acked_ignored = self._ignored_packets
        self._count_base = (self.next_pn, self._ignored_packets)
        self._handshake_bytes = self.sent_bytes
        self.delivered_time = now
        self.first_sent_time = now
        self._trains.clear()

    def _set_baseline(self, received_bytes: int, sent_since: int) -> None:
        """The first ACK since the handshake: its received_bytes counts the handshake's datagrams
        that reached the peer too. Counted from a baseline of 0 they would read as delivered in the
        first samples' interval (88 kbit/s on a 64 kbit/s path). Of what it counts, at most what we
        sent since the handshake, up to the acknowledged packet, can be ours: the rest is the
        baseline of every packet sent so far."""
        self._handshake_bytes = None
        baseline = received_bytes - sent_since
        if baseline > self.delivered:
            # Every packet in the log was sent since the handshake, before any ACK: each recorded
            # self.delivered.
            for record in self._log:
                record.delivered = baseline
            self.delivered = baseline

    def send_time(self, pn: int) -> float | None:
        i = pn - self._base_pn
        if 0 <= i < len(self._log):
            return self._log[i].time
        return None

    def on_ack(
        self,
        now: float,
        largest_pn: int,
        received_bytes: int,
        received_packets: int,
        rtt: float | None,
        ack_delay: float = 0.0,
        reorder_window: float = 0.0,
        jitter: float = 0.0,
    ) -> RateSample | None:
        """Process an ACK; a rate sample when it acknowledges a new largest packet.

        ``ack_delay`` is the peer's report of how long it held the ACK after the acknowledged
        packet arrived (spec 5.8); ``reorder_window`` how much later than newer ones our
        datagrams may arrive on this path, for the loss count; ``jitter`` how much the path's
        delay varies from one packet to the next (infinite while unknown), for train readings."""
        if largest_pn == self.largest_acked >= 0:
            # Nothing newer arrived, but older datagrams may have: those that newer ones overtook
            # are counted now, often at the end of a transfer, and must not stay counted as lost.
            recv_delta = (received_packets - self._received_packets) & 0xFFFFFFFF
            if 0 < recv_delta < 1 << 31:
                self._count_loss(now, 0, recv_delta, reorder_window)
                self._received_packets = received_packets
            return None
        if largest_pn <= self.largest_acked or largest_pn >= self.next_pn:
            return None
        i = largest_pn - self._base_pn
        if i < 0 or i >= len(self._log):
            return None
        sent = self._log[i]
        if self._handshake_bytes is not None:
            self._set_baseline(received_bytes, sent.cum_bytes - self._handshake_bytes)
        # Loss: packets we sent vs packets the peer counted, since the previous ACK (spec 11.2).
        sent_delta = largest_pn - self.largest_acked
        recv_delta = (received_packets - self._received_packets) & 0xFFFFFFFF
        if self.largest_acked >= 0 and sent_delta > 0:
            self._count_loss(now, sent_delta - (sent.cum_ignored - self._acked_ignored), recv_delta, reorder_window)
        self._acked_ignored = sent.cum_ignored
        self._received_packets = received_packets
        self.largest_acked = largest_pn
        self._acked_cum_bytes = sent.cum_bytes
        self.on_reported(largest_pn)
        delivered = max(received_bytes, self.delivered)
        send_elapsed = sent.time - sent.first_sent_time
        ack_elapsed = now - sent.delivered_time
        interval = max(send_elapsed, ack_elapsed)
        rate = (delivered - sent.delivered) / interval if interval > 0 else 0.0
        train_rate = 0.0
        train_id = -1
        train_loss = 0.0
        # Trains are timed by when the acknowledged packet reached the peer (shifted by the return
        # path's delay, which cancels): an ACK the peer held back, by its ack timer or because it
        # was busy, must not read as a slow path. The reported delay cannot place the arrival
        # before the packet was sent, whatever the peer claims.
        arrival = now - min(max(ack_delay, 0.0), max(now - sent.time, 0.0))
        # Datagrams sent long before the one acknowledged are reported only now because the ACKs
        # that would have reported them were lost (an outage of the return path): when they
        # arrived is unknown, and timed to this ACK they would read the outage as path delay. Only
        # those sent within two of this ACK's round trips before it are timed.
        horizon = sent.time - 2 * max(now - sent.time, reorder_window)
        first_reported = max(i + 1 - sent_delta, 0)
        while first_reported < i and self._log[first_reported].time < horizon:
            first_reported += 1
        reported = i + 1 - first_reported
        report_delay_sum = reported * arrival - sum(self._log[j].time for j in range(first_reported, i + 1))
        train = next((t for t in self._trains if t.first <= largest_pn <= t.last), None)
        reference = train.reference if train is not None else None
        if train is not None and reference is None:
            train.replies += 1
            if train.replies == TRAIN_REFERENCE_ACK:
                train.reference = (arrival, delivered, sent.time, sent.cum_bytes)
        elif train is not None and reference is not None:
            ref_time, ref_delivered, ref_sent, ref_cum_bytes = reference
            train_bytes = delivered - ref_delivered
            train_time = arrival - ref_time
            send_time = sent.time - ref_sent
            loss_before = train.loss_before
            reading_loss: float | None = None
            sent_bytes = sent.cum_bytes - ref_cum_bytes
            long_enough = train_bytes >= TRAIN_MIN_BYTES or (
                train_bytes >= TRAIN_SLOW_MIN_BYTES and train_time >= TRAIN_SLOW_SPAN
            )
            # With netem's per-packet jitter each ACK names one of the few datagrams that ran
            # ahead: a 50 Mbit/s path with 10 ms of jitter read 21 Mbit/s, and startup ended there.
            in_order = train_bytes <= TRAIN_OVERCOUNT * sent_bytes
            if long_enough and in_order and train_time > 0 and train_time >= TRAIN_NOISE_SPANS * jitter:
                if train_time > TRAIN_SPREAD * send_time:
                    # The path queued what we sent too fast: it arrived spread out.
                    reading_loss = self.loss_for_compensation
                elif train_bytes * send_time * TRAIN_DROP_SPREAD < sent_bytes * (1 - loss_before) * train_time:
                    # The path dropped what we sent too fast (a queue too short to spread it): far
                    # less arrived per second than we sent, more than the loss seen before the
                    # train explains. Only that earlier loss is random; the train's drops are ours.
                    reading_loss = loss_before
            if reading_loss is not None:
                train_rate = train_bytes / train_time
                train_id = train.first
                train_loss = reading_loss
        result = RateSample(
            delivery_rate=rate,
            app_limited=sent.app_limited,
            prior_delivered=sent.delivered,
            delivered=delivered,
            rtt=rtt,
            loss_rate=self.loss_for_compensation,
            inflight=self.inflight,
            train_rate=train_rate,
            train_id=train_id,
            train_loss=train_loss,
            counted=self._lagged_sent,
            lost=self._lagged_lost,
            sent_counted=self.sent_counted,
            jitter=jitter,
            reported=reported,
            report_delay_sum=report_delay_sum,
        )
        self.delivered = delivered
        self.delivered_time = now
        self.first_sent_time = sent.time
        # Forget everything up to and including the acknowledged packet.
        for _ in range(i + 1):
            self._log.popleft()
        self._base_pn = largest_pn + 1
        return result
