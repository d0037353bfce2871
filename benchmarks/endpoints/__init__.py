"""What each transport looks like to the benchmark worker: one receiver and one sender shape.

Each transport module (``snip_end``, ``tcp_end``, ``mail_end``, ``quic_end``, ``srt_end``, ``kcp_end``) offers
``unavailable() -> str | None`` (why it cannot run here, or None), ``start_receiver(options,
handler) -> Receiver`` and ``make_sender(options, peer) -> Sender``. The worker measures time
itself; senders only carry one image at a time and return the receiver's reply.

The registry below says, per benchmark transport name, which module drives it, which TCP
congestion control its namespaces are pinned to, and whether it can cross the UDP relay (only
UDP transports can; kernel TCP needs the TUN link).
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from benchmarks.workloads import BenchImage

__all__ = [
    "CORE_TRANSPORTS",
    "DEFAULT_TRANSPORTS",
    "TRANSPORTS",
    "EndpointModule",
    "EndpointOptions",
    "Handler",
    "Receiver",
    "Sender",
    "Sent",
    "TransportInfo",
    "free_port",
    "load",
]

JSON = dict[str, Any]
# (name, data, peer) -> the reply to send back (JSON).
Handler = Callable[[str, bytes, str], Awaitable[JSON]]


@dataclass(frozen=True)
class EndpointOptions:
    host: str  # receiver: where to listen; sender: where the receiver is
    port: int
    timeout: float = 60.0  # per image: the transport's own timeouts must not fire first
    cc: str | None = None  # TCP congestion control to pin on sockets
    extra: dict[str, str] = field(default_factory=dict)  # transport-specific settings (--snip-option)


@dataclass(frozen=True)
class Sent:
    """One image's fate as the sender saw it. Times are seconds since ``send`` was called."""

    acked_s: float | None  # the transport confirmed delivery (snip DONE, TCP ACK frame, SMTP accept)
    reply: JSON | None
    error: str | None = None
    stats: JSON = field(default_factory=dict)


class Receiver(Protocol):
    info: JSON  # what the sender needs (port chosen, mail server ports and logins, ...)

    async def stop(self) -> None: ...

    def stats(self) -> JSON: ...


class Sender(Protocol):
    async def open(self) -> None: ...

    async def send(self, image: BenchImage) -> Sent: ...

    def stats(self) -> JSON: ...

    async def close(self) -> None: ...


class EndpointModule(Protocol):
    def unavailable(self) -> str | None: ...

    async def start_receiver(self, options: EndpointOptions, handler: Handler) -> Receiver: ...

    def make_sender(self, options: EndpointOptions, peer: JSON) -> Sender: ...


@dataclass(frozen=True)
class TransportInfo:
    name: str
    label: str
    module: str
    link_cc: str | None = None  # pin the namespaces' default TCP congestion control
    udp: bool = False  # crosses the UDP relay too (no root needed)
    optional: bool = False
    install_hint: str = ""


TRANSPORTS: dict[str, TransportInfo] = {
    t.name: t
    for t in (
        TransportInfo("snip", "snip", "benchmarks.endpoints.snip_end", udp=True),
        TransportInfo("tcp-cubic", "TCP CUBIC", "benchmarks.endpoints.tcp_end", link_cc="cubic"),
        TransportInfo("tcp-bbr", "TCP BBR", "benchmarks.endpoints.tcp_end", link_cc="bbr"),
        # Mail servers run the kernel's default, which is CUBIC on most Linux systems; --email-cc changes it.
        TransportInfo("email", "email (SMTP/POP3)", "benchmarks.endpoints.mail_end", link_cc="cubic"),
        TransportInfo("quic", "QUIC (aioquic)", "benchmarks.endpoints.quic_end", udp=True, optional=True,
                      install_hint="pip install aioquic"),
        TransportInfo("srt", "SRT (libsrt)", "benchmarks.endpoints.srt_end", udp=True, optional=True,
                      install_hint="Debian: apt install srt-tools"),
        TransportInfo("kcp", "KCP (kcptun)", "benchmarks.endpoints.kcp_end", udp=True, optional=True,
                      install_hint="Debian: apt install kcptun"),
    )
}
# Everything: the optional peers run when installed and are a "not installed" row otherwise.
DEFAULT_TRANSPORTS = tuple(TRANSPORTS)
CORE_TRANSPORTS = ("snip", "tcp-cubic", "tcp-bbr", "email")


def free_port(kind: socket.SocketKind, host: str) -> int:
    """A port the kernel reports free on ``host`` for ``kind`` (SOCK_DGRAM or SOCK_STREAM), for a
    program that must be told its port rather than pick one."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def load(name: str) -> EndpointModule:
    """The endpoint module of a transport (raises ValueError for unknown names)."""
    info = TRANSPORTS.get(name)
    if info is None:
        raise ValueError(f"unknown transport {name!r}; choose from {', '.join(TRANSPORTS)}")
    return cast(EndpointModule, importlib.import_module(info.module))
