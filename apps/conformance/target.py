"""The target abstraction: what the tester needs from an implementation under test.

A ``Target`` hands out ``Channel``s, each one tester socket with its own address, so that every
case talks to the target from fresh addresses with fresh ids. Receiver-role targets are reached
by opening channels towards them; sender-role targets come to the tester (``await_sender``).
Time is the target's: wall-clock for live endpoints, virtual for simulated ones, so that cases
written once run both ways.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from netsim.spec import LinkSpec

from .model import Role

Addr = tuple[str, int]

# A datagram's delay across a jittery link: past this many times the jitter (a standard deviation)
# beyond the link's delay only one datagram in tens of thousands goes, on the normal distribution.
# One jitter alone was too little: an ACK due 121 ms after the chunk came 125.8 ms after it across
# 50 ms each way with 5 ms of jitter.
JITTER_SPREAD = 4


def link_path_delay(link: str | LinkSpec | None) -> float:
    """The longest one-way delay the link is likely to give a datagram, the slower direction's."""
    if not link:
        return 0.0
    spec = LinkSpec.coerce(link)
    return max(d.delay + JITTER_SPREAD * d.jitter for d in (spec.fwd, spec.rev))


@dataclass(frozen=True)
class Arrival:
    """A datagram that reached a tester socket: its bytes, its source and when it arrived."""

    data: bytes
    src: Addr
    at: float


class TargetCrashed(Exception):
    """The in-process endpoint raised instead of dropping bad input (spec R4.2-10)."""


class Channel(ABC):
    """One tester socket. ``peer`` is where ``send`` goes unless told otherwise."""

    local: Addr
    peer: Addr

    @abstractmethod
    def send(self, data: bytes, to: Addr | None = None) -> None: ...

    @abstractmethod
    def recv(self, timeout: float) -> Arrival | None:
        """The next datagram for this socket, or None once ``timeout`` seconds pass."""

    def close(self) -> None:  # noqa: B027 - most channels have nothing to release
        pass


class Target(ABC):
    """An implementation under test; see the module docstring."""

    role: Role
    #: True when time is simulated: long waits cost nothing, so slow cases always run.
    virtual: bool = False
    #: How late an answer "at once" may come: scheduling and path delay, in seconds.
    slack: float = 0.05
    #: One-way delay of the path to the target (its link), in seconds.
    path_delay: float = 0.0
    description: str = ""

    @abstractmethod
    def clock(self) -> float: ...

    @abstractmethod
    def sleep(self, seconds: float) -> None:
        """Let time pass; datagrams arriving meanwhile wait in their channels."""

    @abstractmethod
    def open_channel(self, peer: Addr | None = None) -> Channel:
        """A fresh tester socket; its ``peer`` is the target unless given."""

    def await_sender(self, timeout: float) -> tuple[Channel, Arrival] | None:
        """Sender role: wait for a new INITIAL; returns a channel bound to its source and it."""
        raise NotImplementedError("this target is not a sender")

    def end_case(self) -> None:  # noqa: B027 - a hook; most targets keep nothing per case
        """Called after every case (stop a sender started for it, ...)."""

    def close(self) -> None:  # noqa: B027
        pass
