"""Virtual-time discrete-event simulator driving sans-I/O endpoints through impaired links.

Nothing sleeps: an event heap holds datagram arrivals, endpoint timers and scheduled calls, and
the clock jumps from one event to the next. Runs are bit-reproducible: the same seed, endpoints and
calls give the same events in the same order (ties break by insertion order).

Usage::

    sim = Simulator(seed=7)
    sim.add_endpoint(sender, ("a", 1000))
    sim.add_endpoint(receiver, ("b", 2000))
    link = sim.connect("a", "b", "loss=20% rtt=200ms")    # a -> b is the link's fwd direction
    sender.start(("b", 2000))                               # whatever the endpoint's own API is
    t = sim.run_until(lambda: receiver.done, timeout=60)    # virtual seconds; raises on timeout
    print(t, link.stats())

Contract with endpoints (``Endpoint``): after every event that touches an endpoint (a datagram
arrives, its timer fires) and after ``poke()`` / the start of every ``run*`` call (which touch all
endpoints), the simulator calls ``datagrams_to_send(now)`` once and sends everything returned,
then re-reads ``get_timer()``. Endpoints therefore return everything they may send at that instant
(pacing endpoints return what is due and set a timer for the rest). ``handle_timer(now)`` is called
once ``now >= get_timer()``; a timer in the past fires at the current time.

Routing: an endpoint is bound to ``(host, port)``; a datagram from host X to ``(Y, port)`` crosses
the link connecting X and Y (X -> Y is fwd when the link was made by ``connect(X, Y)``). Many
endpoints may share a host; a star of links to one host models many senders to one receiver.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

from netsim.model import DirectionModel, LinkModel
from netsim.pcap import PcapWriter
from netsim.spec import DirectionSpec, LinkSpec

__all__ = [
    "Address",
    "Endpoint",
    "LateWakeups",
    "RoutingError",
    "SimLink",
    "SimulationError",
    "SimulationStalled",
    "SimulationTimeout",
    "Simulator",
    "Tap",
]

Address = tuple[str, int]
# A tap sees (now, src, dst, data) and returns the datagram to carry on with (possibly changed),
# or None to drop it.
Tap = Callable[[float, Address, Address, bytes], "bytes | None"]

# Event kinds (third element of a heap entry).
_ARRIVAL = 0
_TIMER = 1
_CALL = 2
# An endpoint whose timer fires this many times at one instant without moving on is spinning.
_MAX_SAME_INSTANT_TIMERS = 10_000


class Endpoint(Protocol):
    """The sans-I/O interface the simulator drives (aioquic's connection shape)."""

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> Iterable[tuple[bytes, Address]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class Observed:
    """An endpoint that calls ``after(now)`` whenever it has taken in a datagram or a timer: the
    moment an application reads the events those produced, and perhaps answers them."""

    def __init__(self, endpoint: Endpoint, after: Callable[[float], None]) -> None:
        self.endpoint = endpoint
        self.after = after

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.endpoint.receive_datagram(data, addr, now)
        self.after(now)

    def datagrams_to_send(self, now: float) -> Iterable[tuple[bytes, Address]]:
        return self.endpoint.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self.after(now)


class LateWakeups:
    """An endpoint driven by an event loop that wakes late, as a real one on a busy machine does.

    The simulator fires every timer on the dot; asyncio waits in epoll, whose timeout counts whole
    milliseconds rounded up, and a machine with more busy processes than cores wakes a process
    later still. Each timer is taken at the next multiple of ``granularity`` plus a delay drawn
    from 0 to ``delay`` (always ``delay`` without ``rng``). Datagrams still arrive on time.
    """

    def __init__(self, endpoint: Endpoint, *, granularity: float = 0.001, delay: float = 0.002,
                 rng: Any = None) -> None:
        self.endpoint = endpoint
        self._granularity = granularity
        self._delay = delay
        self._rng = rng
        self._asked: float | None = None  # the endpoint's timer the last wake-up time was drawn for
        self._wake: float | None = None

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.endpoint.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> Iterable[tuple[bytes, Address]]:
        return self.endpoint.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        timer = self.endpoint.get_timer()
        if timer is None:
            return None
        if timer != self._asked:  # one draw per timer, however often it is read
            self._asked = timer
            delay = self._delay if self._rng is None else self._rng.uniform(0.0, self._delay)
            self._wake = math.ceil(timer / self._granularity) * self._granularity + delay
        return self._wake

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)


class SimulationError(RuntimeError):
    """The simulation cannot go on (misconfiguration or a misbehaving endpoint)."""


class SimulationTimeout(SimulationError, TimeoutError):
    """``run_until`` reached its virtual-time limit before the predicate held."""


class SimulationStalled(SimulationTimeout):
    """``run_until`` ran out of events (no timers, nothing in flight) before the predicate held."""


class RoutingError(SimulationError):
    """An endpoint sent to a host no link reaches (only raised with ``strict=True``)."""


class SimLink:
    """A link between two hosts of a simulator; ``host_a -> host_b`` is its fwd direction."""

    def __init__(self, host_a: str, host_b: str, model: LinkModel, index: int) -> None:
        self.host_a = host_a
        self.host_b = host_b
        self.model = model
        self.index = index

    @property
    def spec(self) -> LinkSpec:
        return self.model.spec

    @property
    def fwd(self) -> DirectionModel:
        return self.model.fwd

    @property
    def rev(self) -> DirectionModel:
        return self.model.rev

    def direction(self, src_host: str, dst_host: str) -> DirectionModel:
        if (src_host, dst_host) == (self.host_a, self.host_b):
            return self.model.fwd
        if (src_host, dst_host) == (self.host_b, self.host_a):
            return self.model.rev
        raise KeyError(f"link {self.host_a}<->{self.host_b} does not carry {src_host}->{dst_host}")

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-direction counters: ``{"fwd": {...}, "rev": {...}}`` (see DirectionStats.as_dict)."""
        return self.model.stats()

    def __repr__(self) -> str:
        return f"SimLink({self.host_a!r} <-> {self.host_b!r}: {self.spec})"


class _Bound:
    """An endpoint and the simulator's bookkeeping for it."""

    __slots__ = ("addr", "endpoint", "host", "spin_time", "spins", "timer_at", "timer_gen")

    def __init__(self, endpoint: Endpoint, addr: Address) -> None:
        self.endpoint = endpoint
        self.addr = addr
        self.host = addr[0]
        self.timer_at: float | None = None
        self.timer_gen = 0
        self.spins = 0
        self.spin_time = -math.inf


class Simulator:
    """Event-heap simulator; see the module docstring.

    ``seed`` is the master seed: link k (in ``connect`` order) gets its streams from it unless
    ``connect`` is given its own seed. ``header_overhead`` (default 28, IPv4 + UDP) is added to each
    datagram's size for the links' rate, queue and mtu. With ``strict`` (default) a datagram to a
    host no link reaches raises RoutingError; otherwise it is counted in ``stats()["unroutable"]``.
    """

    def __init__(self, seed: int = 0, *, header_overhead: int = 28, strict: bool = True) -> None:
        self.seed = seed
        self.header_overhead = header_overhead
        self.strict = strict
        self._now = 0.0
        self._heap: list[tuple[Any, ...]] = []
        self._seq = itertools.count()
        self._endpoints: dict[Address, _Bound] = {}
        self._links: list[SimLink] = []
        # (src host, dst host) -> direction model
        self._routes: dict[tuple[str, str], DirectionModel] = {}
        self._send_taps: list[Tap] = []
        self._deliver_taps: list[Tap] = []
        self.events = 0
        self.arrivals = 0
        self.timers_fired = 0
        self.undeliverable = 0  # arrived where no endpoint is bound
        self.unroutable = 0  # no link to the destination host (strict=False)
        self.tapped_out = 0  # dropped by a tap

    # ------------------------------------------------------------------ setup

    @property
    def now(self) -> float:
        """Current virtual time in seconds."""
        return self._now

    def add_endpoint(self, endpoint: Endpoint, addr: Address) -> Endpoint:
        """Bind ``endpoint`` to ``addr = (host, port)``; returns it."""
        addr = (str(addr[0]), int(addr[1]))
        if addr in self._endpoints:
            raise SimulationError(f"address {addr} already has an endpoint")
        # Not polled yet: its first datagrams go out at the next run*() or poke(), once links exist.
        self._endpoints[addr] = _Bound(endpoint, addr)
        return endpoint

    def remove_endpoint(self, addr: Address) -> None:
        """Unbind an endpoint; datagrams still in flight to it become undeliverable."""
        bound = self._endpoints.pop((str(addr[0]), int(addr[1])))
        bound.timer_gen += 1  # invalidates its pending timer

    def endpoint(self, addr: Address) -> Endpoint:
        return self._endpoints[(str(addr[0]), int(addr[1]))].endpoint

    def connect(
        self,
        host_a: str,
        host_b: str,
        spec: LinkSpec | DirectionSpec | str | None = None,
        *,
        seed: int | None = None,
    ) -> SimLink:
        """Join two hosts by a link (``host_a -> host_b`` is fwd); ``spec`` as for ``parse_link``."""
        if host_a == host_b:
            raise SimulationError("a link joins two different hosts")
        if (host_a, host_b) in self._routes:
            raise SimulationError(f"{host_a} and {host_b} are already connected")
        index = len(self._links)
        model = LinkModel(
            LinkSpec.coerce(spec),
            self.seed if seed is None else seed,
            epoch=self._now,
            header_overhead=self.header_overhead,
            link_index=index,
        )
        link = SimLink(host_a, host_b, model, index)
        self._links.append(link)
        self._routes[(host_a, host_b)] = model.fwd
        self._routes[(host_b, host_a)] = model.rev
        return link

    def link(self, host_a: str, host_b: str) -> SimLink:
        """The link joining two hosts (either order)."""
        for link in self._links:
            if {link.host_a, link.host_b} == {host_a, host_b}:
                return link
        raise KeyError(f"no link between {host_a} and {host_b}")

    @property
    def links(self) -> list[SimLink]:
        return list(self._links)

    def add_tap(self, tap: Tap, *, on: Literal["send", "deliver"] = "send") -> Callable[[], None]:
        """Observe or alter datagrams: ``on="send"`` before the link, ``"deliver"`` on arrival.

        Returns a function that removes the tap.
        """
        if on not in ("send", "deliver"):
            raise ValueError("on must be 'send' or 'deliver'")
        taps = self._send_taps if on == "send" else self._deliver_taps
        taps.append(tap)
        return lambda: taps.remove(tap)

    def capture(self, path: str | Path) -> PcapWriter:
        """Record every datagram as it arrives (virtual timestamps) in a pcap file; close() it after.

        Host names that are not IP addresses get made-up ones, 10.99.x.y in order of appearance.
        """
        writer = PcapWriter(path)
        addresses: dict[str, str] = {}

        def ip_of(host: str) -> str:
            if host not in addresses:
                try:
                    addresses[host] = str(ipaddress.ip_address(host))
                except ValueError:
                    n = len(addresses) + 1
                    addresses[host] = f"10.99.{n >> 8 & 255}.{n & 255}"
            return addresses[host]

        def tap(now: float, src: Address, dst: Address, data: bytes) -> bytes:
            writer.write_udp((ip_of(src[0]), src[1]), (ip_of(dst[0]), dst[1]), data, now)
            return data

        self.add_tap(tap, on="deliver")
        return writer

    # ------------------------------------------------------------------ driving

    def poke(self) -> None:
        """Collect datagrams and timers from every endpoint now (after changing one from outside)."""
        for bound in list(self._endpoints.values()):
            self._after(bound, self._now)

    def call_at(self, when: float, fn: Callable[[], object]) -> None:
        """Run ``fn()`` at virtual time ``when`` (now if in the past); all endpoints are polled after."""
        heapq.heappush(self._heap, (max(when, self._now), next(self._seq), _CALL, fn, None, None))

    def call_later(self, delay: float, fn: Callable[[], object]) -> None:
        self.call_at(self._now + delay, fn)

    def inject(
        self,
        data: bytes,
        src: Address,
        dst: Address,
        *,
        at: float | None = None,
        through_link: bool = True,
    ) -> None:
        """Put a datagram on the wire as if ``src`` sent it (at ``at``, default now).

        With ``through_link=False`` it skips the link model and arrives exactly at ``at``.
        """
        when = self._now if at is None else max(at, self._now)
        src = (str(src[0]), int(src[1]))
        dst = (str(dst[0]), int(dst[1]))
        if through_link:
            if when > self._now:
                self.call_at(when, lambda: self._send(src, data, dst, self._now))
            else:
                self._send(src, data, dst, when)
        else:
            heapq.heappush(self._heap, (when, next(self._seq), _ARRIVAL, dst, data, src))

    def run(self, until: float | None = None, *, max_events: int | None = None) -> float:
        """Process events up to virtual time ``until`` (all of them if None); returns ``now``."""
        self.poke()
        limit = math.inf if until is None else until
        self._loop(limit, None, max_events)
        if until is not None and until > self._now:
            self._now = until
        return self._now

    def run_for(self, duration: float, *, max_events: int | None = None) -> float:
        return self.run(self._now + duration, max_events=max_events)

    def run_until(
        self, predicate: Callable[[], bool], timeout: float, *, max_events: int | None = None
    ) -> float:
        """Run until ``predicate()`` holds (checked after every event); return the virtual time.

        Raises SimulationTimeout when ``timeout`` virtual seconds pass first, SimulationStalled
        when nothing is left to happen.
        """
        self.poke()
        if predicate():
            return self._now
        deadline = self._now + timeout
        if self._loop(deadline, predicate, max_events):
            return self._now
        if self._heap and self._heap[0][0] > deadline:
            self._now = deadline
            raise SimulationTimeout(
                f"condition not met after {timeout:g} virtual seconds (now t={self._now:.6f}s, "
                f"{self.events} events); links: {self._link_summary()}"
            )
        if not self._heap:
            raise SimulationStalled(
                f"condition not met and nothing left to happen at t={self._now:.6f}s "
                f"(no timers, nothing in flight); links: {self._link_summary()}"
            )
        raise SimulationTimeout(f"stopped after max_events={max_events} at t={self._now:.6f}s")

    # ------------------------------------------------------------------ internals

    def _loop(self, limit: float, predicate: Callable[[], bool] | None, max_events: int | None) -> bool:
        heap = self._heap
        endpoints = self._endpoints
        deliver_taps = self._deliver_taps
        pop = heapq.heappop
        after = self._after
        budget = math.inf if max_events is None else max_events
        count = 0
        try:
            while heap and heap[0][0] <= limit and count < budget:
                t, _, kind, a, b, c = pop(heap)
                self._now = t
                count += 1
                if kind == _ARRIVAL:
                    bound = endpoints.get(a)
                    if deliver_taps:
                        for tap in deliver_taps:
                            b = tap(t, c, a, b)
                            if b is None:
                                break
                        if b is None:
                            self.tapped_out += 1
                            continue
                    if bound is None:
                        self.undeliverable += 1
                        continue
                    self.arrivals += 1
                    bound.endpoint.receive_datagram(b, c, t)
                    after(bound, t)
                elif kind == _TIMER:
                    if b != a.timer_gen:
                        continue  # superseded
                    a.timer_at = None
                    self.timers_fired += 1
                    if t == a.spin_time:
                        a.spins += 1
                        if a.spins > _MAX_SAME_INSTANT_TIMERS:
                            raise SimulationError(
                                f"endpoint at {a.addr} keeps its timer at t={t:.6f}s after handle_timer "
                                f"({a.spins} times); it would never let time advance"
                            )
                    else:
                        a.spin_time, a.spins = t, 0
                    a.endpoint.handle_timer(t)
                    after(a, t)
                else:
                    a()
                    self.poke()
                if predicate is not None and predicate():
                    return True
            return False
        finally:
            self.events += count

    def _after(self, bound: _Bound, now: float) -> None:
        """Send what the endpoint has to send, then (re)arm its timer."""
        endpoint = bound.endpoint
        out = endpoint.datagrams_to_send(now)
        if out:
            src = bound.addr
            send = self._send
            for data, dst in out:
                send(src, data, dst, now)
        timer = endpoint.get_timer()
        if timer != bound.timer_at:
            bound.timer_gen += 1
            bound.timer_at = timer
            if timer is not None:
                heapq.heappush(
                    self._heap,
                    (timer if timer > now else now, next(self._seq), _TIMER, bound, bound.timer_gen, None),
                )

    def _send(self, src: Address, data: bytes, dst: Address, now: float) -> None:
        if self._send_taps:
            for tap in self._send_taps:
                result = tap(now, src, dst, data)
                if result is None:
                    self.tapped_out += 1
                    return
                data = result
        model = self._routes.get((src[0], dst[0]))
        if model is None:
            if self.strict:
                raise RoutingError(
                    f"{src[0]} sent to {dst[0]}:{dst[1]} but no link joins {src[0]} and {dst[0]}; "
                    f"call sim.connect({src[0]!r}, {dst[0]!r}, spec)"
                )
            self.unroutable += 1
            return
        heap = self._heap
        seq = self._seq
        for t, d in model.transmit(data, now):
            heapq.heappush(heap, (t, next(seq), _ARRIVAL, dst, d, src))

    def _link_summary(self) -> str:
        parts = []
        for link in self._links:
            f, r = link.fwd.stats, link.rev.stats
            parts.append(
                f"{link.host_a}->{link.host_b} {f.passed}/{f.sent} passed, "
                f"{link.host_b}->{link.host_a} {r.passed}/{r.sent} passed"
            )
        return "; ".join(parts) or "none"

    def stats(self) -> dict[str, Any]:
        """Simulator counters and every link's per-direction counters."""
        return {
            "now": self._now,
            "events": self.events,
            "arrivals": self.arrivals,
            "timers_fired": self.timers_fired,
            "undeliverable": self.undeliverable,
            "unroutable": self.unroutable,
            "tapped_out": self.tapped_out,
            "in_flight": sum(1 for e in self._heap if e[2] == _ARRIVAL),
            "links": {f"{link.host_a}<->{link.host_b}": link.stats() for link in self._links},
        }
