"""Two (or more) SNIP endpoints in netsim's virtual-time simulator, for the protocol tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from netsim.simulator import Observed, Simulator
from protocol import codec
from protocol.config import SessionConfig
from protocol.connection import Connection
from protocol.endpoint import Endpoint
from protocol.events import (
    ConnectionClosed,
    Event,
    ObjectDelivered,
    ObjectFailed,
    ObjectReceived,
)

CLIENT = ("client", 4000)
SERVER = ("server", 5000)


def seeded_random(seed: int) -> Any:
    rng = random.Random(seed)
    return rng.randbytes


@dataclass
class Recorder:
    """Collects an endpoint's events as the simulation runs."""

    endpoint: Endpoint
    events: list[tuple[float, Event]] = field(default_factory=list)

    def drain(self, now: float) -> None:
        while (event := self.endpoint.next_event()) is not None:
            self.events.append((now, event))

    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def received(self) -> list[ObjectReceived]:
        return self.of(ObjectReceived)


class Pair:
    """A client and a server endpoint joined by one netsim link."""

    def __init__(
        self,
        link: str = "",
        *,
        seed: int = 1,
        client_config: SessionConfig | None = None,
        server_config: SessionConfig | None = None,
    ) -> None:
        self.sim = Simulator(seed=seed)
        self.client = Endpoint(client_config, random_bytes=seeded_random(seed + 100))
        self.server = Endpoint(server_config, server=True, random_bytes=seeded_random(seed + 200))
        self.client_log = Recorder(self.client)
        self.server_log = Recorder(self.server)
        # Events are recorded the moment they happen.
        self.sim.add_endpoint(Observed(self.client, self.client_log.drain), CLIENT)
        self.sim.add_endpoint(Observed(self.server, self.server_log.drain), SERVER)
        self.link = self.sim.connect(CLIENT[0], SERVER[0], link)
        self.conn: Connection = self.client.connect(SERVER, self.sim.now)

    def send(self, data: bytes, **kwargs: Any) -> int:
        object_id = self.conn.send_object(data, self.sim.now, **kwargs)
        self.sim.poke()
        return object_id

    def record_client_packets(self) -> list[tuple[float, codec.Packet]]:
        """From now on, every packet the client sends, with the time it left, decoded."""
        sent: list[tuple[float, codec.Packet]] = []

        def tap(now: float, src: tuple[str, int], dst: tuple[str, int], datagram: bytes) -> bytes:
            if src == CLIENT:
                sent.append((now, codec.decode(datagram).packet))
            return datagram

        self.sim.add_tap(tap)
        return sent

    def run_until(self, predicate: Any, timeout: float = 120.0) -> float:
        return self.sim.run_until(predicate, timeout=timeout)

    def finished(self, object_ids: list[int]) -> bool:
        done = {e.object_id for e in self.client_log.of(ObjectDelivered)}
        done |= {e.object_id for e in self.client_log.of(ObjectFailed) if e.outgoing}
        return set(object_ids) <= done

    def closed(self) -> bool:
        return bool(self.client_log.of(ConnectionClosed))
