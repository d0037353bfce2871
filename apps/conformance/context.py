"""What a case function gets: the target, timeouts, seeded ids, and ways to open conversations."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import NoReturn

from protocol.params import SessionParams

from .client import Client
from .model import Case, CaseFailed, Unsupported
from .peer import Peer
from .server import SenderPeer, initial_rx
from .target import Addr, Channel, Target


@dataclass(frozen=True)
class Options:
    """How cases run. Times are the target's (virtual seconds for a simulated target)."""

    timeout: float = 3.0  # the longest wait for an answer a case expects
    quiet: float = 0.3  # how long silence must last to mean "no answer"
    sender_wait: float = 30.0  # sender role: how long to wait for the sender under test to connect
    slow: bool = False  # run cases that wait for long timers in real time
    seed: int | None = None  # ids and payloads from this seed (None: fresh randomness)
    attempts: int = 1  # runs of a failing case before it counts as failed (for lossy links)


class Context:
    def __init__(self, case: Case, target: Target, options: Options, attempt: int = 1) -> None:
        self.case = case
        self.target = target
        self.options = options
        seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(8), "big")
        self.rng = random.Random(f"{seed}:{case.id}:{attempt}")
        self.timeout = options.timeout
        self.quiet = options.quiet + 2 * target.path_delay
        self.notes: list[str] = []
        self.violations: list[str] = []
        self._channels: list[Channel] = []
        self._peers: list[Peer] = []

    # -- verdict helpers --------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.notes.append(text)

    def violation(self, label: str, text: str) -> None:
        """Something the target sent breaks a rule, whatever the case checks (``label`` names it)."""
        entry = f"{label}: {text}"
        if entry not in self.violations:
            self.violations.append(entry)

    @staticmethod
    def fail(expected: str, got: str) -> NoReturn:
        raise CaseFailed(expected, got)

    @staticmethod
    def unsupported(reason: str) -> NoReturn:
        raise Unsupported(reason)

    # -- randomness -------------------------------------------------------------------------------

    def new_id(self) -> int:
        """A non-zero 64-bit id (initial ids, session ids), from the case's seed."""
        return self.rng.getrandbits(64) or 1

    def payload(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    # -- conversations ----------------------------------------------------------------------------

    def channel(self, peer: Addr | None = None) -> Channel:
        channel = self.target.open_channel(peer)
        self._channels.append(channel)
        return channel

    def client(self, params: SessionParams | None = None, channel: Channel | None = None) -> Client:
        """A client on a fresh socket with a fresh initial id; nothing sent yet."""
        client = Client(self, channel or self.channel(), params or SessionParams(), self.new_id())
        self._peers.append(client)
        return client

    def session(self, params: SessionParams | None = None) -> Client:
        """A validated session, quiet (everything the tester sent is acknowledged)."""
        return self.client(params).establish()

    def sender(self, params: SessionParams | None = None) -> SenderPeer:
        """Sender role: the next handshake attempt of the sender under test (its first INITIAL)."""
        got = self.target.await_sender(self.options.sender_wait)
        if got is None:
            raise CaseFailed(
                "a new INITIAL from the sender under test",
                f"none within {self.options.sender_wait:.3g} s (start the sender, pointed at the tester)",
                absent=True,
            )
        channel, arrival = got
        self._channels.append(channel)
        first = initial_rx(arrival)
        peer = SenderPeer(self, channel, first, params or SessionParams())
        self._peers.append(peer)
        return peer

    def cleanup(self) -> None:
        """End what the case left open, so the target does not carry it into the next case."""
        for peer in self._peers:
            try:
                peer.finish()
            except OSError:
                pass
        for channel in self._channels:
            channel.close()
