"""In-process targets: the project's sans-I/O Endpoint driven by netsim's virtual-time simulator.

Fast and deterministic: a case that waits for an idle timeout costs no wall-clock time, and the
same seed gives the same run. The tester's sockets are mailboxes bound to addresses of a
``tester`` host; the endpoint under test sits on host ``sut``; a netsim link joins the two.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from netsim.simulator import SimulationStalled, SimulationTimeout, Simulator
from netsim.spec import LinkSpec
from protocol.config import SessionConfig
from protocol.connection import Connection
from protocol.endpoint import Endpoint
from protocol.events import Event

from .model import Case, Role
from .target import Addr, Arrival, Channel, Target, TargetCrashed, link_path_delay

TESTER_HOST = "tester"
SUT_HOST = "sut"
SUT_ADDR: Addr = (SUT_HOST, 9000)
LISTEN_ADDR: Addr = (TESTER_HOST, 9000)
DEFAULT_LINK = "delay=1ms"  # a LAN: answers take a round trip, as on a real network

#: Builds the endpoint under test: (config, is_server, random_bytes) -> Endpoint.
EndpointFactory = Callable[[SessionConfig, bool, Callable[[int], bytes]], Endpoint]


def default_endpoint(config: SessionConfig, server: bool, random_bytes: Callable[[int], bytes]) -> Endpoint:
    return Endpoint(config, server=server, random_bytes=random_bytes)


class _Mailbox:
    """A tester socket as the simulator sees it: it keeps what arrives and sends nothing itself."""

    def __init__(self) -> None:
        self.inbox: deque[Arrival] = deque()

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.inbox.append(Arrival(data, addr, now))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        return []

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


class _Application:
    """The endpoint under test plus the little application around it.

    It collects the endpoint's events (the fuzzer checks delivered objects bit for bit) and, with
    ``push``, sends that object to every new session at once, as a server that pushes data does:
    the only way a receiver has something to send to an address it has not validated yet.
    """

    def __init__(self, endpoint: Endpoint, push: bytes | None) -> None:
        self.endpoint = endpoint
        self.events: list[Event] = []
        self._push = push
        self._greeted: set[int] = set()

    def _after(self, now: float) -> None:
        if self._push is not None:
            for sid, conn in list(self.endpoint.sessions.items()):
                if sid not in self._greeted and conn.is_open:
                    self._greeted.add(sid)
                    conn.send_object(self._push, now, name="greeting")
        while (event := self.endpoint.next_event()) is not None:
            self.events.append(event)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.endpoint.receive_datagram(data, addr, now)
        self._after(now)

    def datagrams_to_send(self, now: float) -> Iterable[tuple[bytes, Addr]]:
        out = self.endpoint.datagrams_to_send(now)
        self._after(now)
        return out

    def get_timer(self) -> float | None:
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self._after(now)


class _SimChannel(Channel):
    def __init__(self, target: SimTarget, local: Addr, peer: Addr, box: _Mailbox) -> None:
        self._target = target
        self.local = local
        self.peer = peer
        self._box = box

    def send(self, data: bytes, to: Addr | None = None) -> None:
        self._target.sim.inject(data, self.local, to or self.peer)

    def recv(self, timeout: float) -> Arrival | None:
        box = self._box.inbox
        if not box:
            self._target.run_until(lambda: bool(box), timeout)
        return box.popleft() if box else None


class SimTarget(Target):
    """The project's endpoint in netsim's simulator, as a receiver or as a sender.

    ``config`` is the endpoint's; ``link`` a netsim link string between tester and target;
    ``push`` (receiver role) an object sent to every new session; ``sender_object`` and
    ``sender_deadline`` (sender role) what the sender under test sends in each session.
    ``endpoint_factory`` builds the endpoint (tests pass deliberately broken ones).
    """

    virtual = True

    def __init__(
        self,
        role: Role = "receiver",
        *,
        config: SessionConfig | None = None,
        link: str = DEFAULT_LINK,
        seed: int = 0,
        push: bytes | None = None,
        sender_object: bytes | None = None,
        sender_deadline: float | None = 8.0,
        endpoint_factory: EndpointFactory = default_endpoint,
    ) -> None:
        self.role = role
        self.config = config or SessionConfig()
        self.sim = Simulator(seed=seed)
        self.link = self.sim.connect(TESTER_HOST, SUT_HOST, link)
        spec = LinkSpec.coerce(link)
        self.path_delay = link_path_delay(spec)
        self.slack = 2 * self.path_delay + 0.001
        self._rng = random.Random(seed)
        self._factory = endpoint_factory
        self._ports = iter(range(10_000, 60_000))
        self.apps: list[_Application] = []
        self.description = f"in-process {role} (netsim link {spec})"
        if role == "receiver":
            self.app = self._add_app(SUT_ADDR, server=True, push=push)
        else:
            self._listen_box = _Mailbox()
            self.sim.add_endpoint(self._listen_box, LISTEN_ADDR)
            size = 20 * 1024 + 100
            self.sender_object = sender_object if sender_object is not None else self._rng.randbytes(size)
            self.sender_deadline = sender_deadline
            self.connections: list[Connection] = []

    # -- plumbing ---------------------------------------------------------------------------------

    def _add_app(self, addr: Addr, *, server: bool, push: bytes | None = None) -> _Application:
        rand = random.Random(self._rng.getrandbits(64)).randbytes
        app = _Application(self._factory(self.config, server, rand), push)
        self.sim.add_endpoint(app, addr)
        self.apps.append(app)
        return app

    @property
    def endpoint(self) -> Endpoint:
        return self.apps[0].endpoint

    def events(self) -> list[Event]:
        return [e for app in self.apps for e in app.events]

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Advance virtual time until ``predicate`` holds or ``timeout`` passes."""
        deadline = self.sim.now + max(timeout, 0.0)
        try:
            self.sim.run_until(predicate, timeout=max(timeout, 0.0))
        except SimulationStalled:
            self.sim.run(until=deadline)  # nothing scheduled: time still passes
        except SimulationTimeout:
            pass
        except Exception as exc:  # the endpoint under test raised: a finding, not a harness error
            raise TargetCrashed(f"{type(exc).__name__}: {exc}") from exc

    # -- Target -----------------------------------------------------------------------------------

    def clock(self) -> float:
        return self.sim.now

    def sleep(self, seconds: float) -> None:
        self.run_until(lambda: False, seconds)

    def open_channel(self, peer: Addr | None = None) -> Channel:
        box = _Mailbox()
        addr = (TESTER_HOST, next(self._ports))
        self.sim.add_endpoint(box, addr)
        return _SimChannel(self, addr, peer or SUT_ADDR, box)

    def await_sender(self, timeout: float) -> tuple[Channel, Arrival] | None:
        if self.role != "sender":
            raise NotImplementedError("this target is a receiver")
        addr = (SUT_HOST, next(self._ports))
        app = self._add_app(addr, server=False)
        now = self.sim.now
        conn = app.endpoint.connect(LISTEN_ADDR, now)
        conn.send_object(self.sender_object, now, name="conformance.bin", deadline=self.sender_deadline)
        self.connections.append(conn)
        self.sim.poke()
        box = self._listen_box.inbox
        box.clear()  # leftovers of an earlier session are not this one's
        # Nor are those still on their way: an earlier attempt's INITIAL went in copies.
        self.run_until(lambda: any(arrival.src == addr for arrival in box), timeout)
        first = next((arrival for arrival in box if arrival.src == addr), None)
        if first is None:
            return None
        rest = [arrival for arrival in box if arrival.src == addr and arrival is not first]
        box.clear()
        box.extend(rest)
        return _SimChannel(self, LISTEN_ADDR, first.src, self._listen_box), first

    def stats(self) -> dict[str, Any]:
        return {"sim": self.sim.stats(), "endpoints": [app.endpoint.stats() for app in self.apps]}


#: Limits of the in-process endpoint: small, so that cases announcing up to the limits stay light; the
#: bytes held across sessions (R14.4-1) too, a few sessions' worth.
LIGHT_CONFIG = SessionConfig(max_object_size=1 << 20, max_buffered_bytes=4 << 20, max_receiving_bytes=16 << 20)
#: What a sender sends to cases that need "big-object": more chunks (1025 of 1024 bytes) than any
#: sane congestion window holds before its first ACK (R11.1-4 RECOMMENDS 64 datagrams).
BIG_OBJECT = (1 << 20) + 100


def sim_factory(
    role: Role, *, config: SessionConfig = LIGHT_CONFIG, link: str = DEFAULT_LINK, seed: int = 0,
    endpoint_factory: EndpointFactory = default_endpoint,
) -> Callable[[Case], Target]:
    """A fresh simulated target per case, with what the case needs: a RETRY-demanding server for
    cases that need one, a server that pushes an object to new sessions for the amplification case,
    a sender of an object bigger than its congestion window for the cases that watch the window."""

    made = itertools.count()

    def make(case: Case) -> Target:
        cfg = replace(config, retry="always") if "retry" in case.needs else config
        push = bytes(range(256)) * 120 if "push" in case.needs else None
        # each target its own seed: a case run again meets other losses on a lossy link
        own = seed + next(made)
        big = random.Random(own).randbytes(BIG_OBJECT) if "big-object" in case.needs else None
        return SimTarget(
            role, config=cfg, link=link, seed=own, push=push, sender_object=big, endpoint_factory=endpoint_factory
        )

    return make
