"""The emulated link a run crosses: the TUN link between namespaces (root), or the UDP relay.

Both faces take the same link spec and seed. With the TUN link the receiver runs in namespace B
(10.77.0.2) and the sender in namespace A, and any transport crosses it (kernel TCP, the mail
server, snip). Without root only UDP can be impaired, through the relay in this process: the
receiver listens on loopback and the sender is pointed at the relay instead.

``counters()`` gives bytes and packets offered to the link in each direction, IP headers
included (the relay, which sees UDP payloads, adds 28 bytes of IPv4 + UDP headers per datagram).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from netsim.relay import UdpRelay
from netsim.spec import LinkSpec
from netsim.tun import TunLink, python_env

__all__ = ["BenchLink", "RelayLink", "TunBenchLink"]

JSON = dict[str, Any]
_UDP_IPV4_HEADERS = 28


def _direction(stats: JSON, extra_per_packet: int = 0) -> JSON:
    sent = int(stats.get("sent", 0))
    return {
        "packets": sent,
        "bytes": int(stats.get("sent_bytes", 0)) + extra_per_packet * sent,
        "dropped": int(stats.get("dropped", 0)),
    }


class BenchLink:
    """What the runner needs from a link; see the two faces below."""

    mode = ""
    listen_host = ""  # where receivers listen
    started_at = 0.0  # monotonic time the link model's clock started (blackouts count from it)

    def popen(self, side: str, argv: Sequence[str], stdout: int, stderr: IO[str]) -> subprocess.Popen[str]:
        raise NotImplementedError

    def route(self, port: int) -> tuple[str, int]:
        """Where a sender reaches a receiver listening on ``port``."""
        raise NotImplementedError

    def counters(self) -> dict[str, JSON]:
        raise NotImplementedError

    def describe(self) -> JSON:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class TunBenchLink(BenchLink):
    mode = "tun"

    def __init__(self, spec: LinkSpec, seed: int, cc: str | None, mtu: int = 1500) -> None:
        self.link = TunLink(spec, seed=seed, cc=cc, mtu=mtu)
        self.link.start()
        self.started_at = time.monotonic()
        self.listen_host = self.link.addr_b

    def popen(self, side: str, argv: Sequence[str], stdout: int, stderr: IO[str]) -> subprocess.Popen[str]:
        # Receivers in B, senders in A: the data direction is the link's fwd (A -> B).
        proc: subprocess.Popen[str] = self.link.popen(
            "b" if side == "receiver" else "a", [sys.executable, *argv], stdin=subprocess.PIPE, stdout=stdout,
            stderr=stderr, text=True, env=python_env(),
        )
        return proc

    def route(self, port: int) -> tuple[str, int]:
        return self.link.addr_b, port

    def counters(self) -> dict[str, JSON]:
        link = self.link.stats().get("link", {})
        return {"fwd": _direction(link.get("fwd", {})), "rev": _direction(link.get("rev", {}))}

    def describe(self) -> JSON:
        return {"mode": self.mode, "mtu": self.link.mtu, "namespace_cc": dict(self.link.cc)}

    def close(self) -> None:
        self.link.close()


class RelayLink(BenchLink):
    mode = "relay"
    listen_host = "127.0.0.1"

    def __init__(self, spec: LinkSpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        self.relay: UdpRelay | None = None
        self.started_at = time.monotonic()

    def popen(self, side: str, argv: Sequence[str], stdout: int, stderr: IO[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, text=True, env=python_env()
        )

    def route(self, port: int) -> tuple[str, int]:
        relay = UdpRelay("127.0.0.1:0", ("127.0.0.1", port), self.spec, seed=self.seed)
        relay.start()
        self.relay = relay
        self.started_at = time.monotonic()
        return relay.listen_addr

    def counters(self) -> dict[str, JSON]:
        if self.relay is None:
            return {"fwd": _direction({}), "rev": _direction({})}
        link = self.relay.stats().get("link", {})
        return {
            "fwd": _direction(link.get("fwd", {}), _UDP_IPV4_HEADERS),
            "rev": _direction(link.get("rev", {}), _UDP_IPV4_HEADERS),
        }

    def describe(self) -> JSON:
        return {"mode": self.mode, "mtu": None, "namespace_cc": {}}

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
