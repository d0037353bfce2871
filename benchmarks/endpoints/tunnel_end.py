"""Peers that ship as TCP tunnels (KCP's ``kcptun``), driven as real processes.

Only the tunnel's UDP datagrams cross the emulated link; TCP runs on loopback at both ends:

    TcpSender -> 127.0.0.1:L [tunnel client] ~~UDP over the link~~ [tunnel server] -> 127.0.0.1:T TcpReceiver

The receiver worker starts the apps' TCP receiver on loopback and the tunnel's server on the
link address; the sender worker starts the tunnel's client on loopback and points the apps'
TCP sender at it. The images, their framing, replies and verification are the TCP baseline's
own, so the rows differ from TCP only by what carries the bytes across the link. The tunnel
processes are the workers' children (their CPU counts in the figures) and die with them.

SRT's ``srt-tunnel`` would fit the same shape, but with Debian's libsrt 1.5.1 it drops the
connection under loss (see ``srt_end``), so SRT has a driver of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.endpoints import JSON, EndpointOptions, Handler, Sent, free_port
from benchmarks.endpoints.tcp_end import TcpBenchReceiver, TcpBenchSender
from benchmarks.endpoints.tcp_end import start_receiver as start_tcp_receiver
from benchmarks.workloads import BenchImage

__all__ = ["Tunnel", "TunnelReceiver", "TunnelSender", "make_tunnel_sender", "start_tunnel_receiver"]

_LOOPBACK = "127.0.0.1"
_START_S = 10.0  # a tunnel that has not bound its port by then will not
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Tunnel:
    """How to run one tunnel tool. The two commands get (listen address, target address)."""

    binaries: tuple[str, str]  # (server, client)
    server_argv: Callable[[str, int, int, dict[str, str]], list[str]]  # (udp host, udp port, tcp port, options)
    client_argv: Callable[[int, str, int, dict[str, str]], list[str]]  # (local tcp port, udp host, udp port, options)
    settings: Callable[[dict[str, str]], JSON]  # what the run records about the tunnel
    install_hint: str = ""
    defaults: dict[str, str] = field(default_factory=dict)

    def unavailable(self) -> str | None:
        missing = [b for b in self.binaries if shutil.which(b) is None]
        if missing:
            return f"{', '.join(dict.fromkeys(missing))} not found ({self.install_hint})"
        return None

    def options(self, extra: dict[str, str]) -> dict[str, str]:
        return {**self.defaults, **extra}


def _die_with_parent() -> None:
    # A worker that is killed must not leave its tunnel running inside the namespace.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _bound(proto: str, port: int, *, listening: bool) -> bool:
    """Whether this network namespace has a socket on ``port`` (TCP: in LISTEN), from /proc/net."""
    try:
        lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or int(fields[1].rsplit(":", 1)[1], 16) != port:
            continue
        if not listening or fields[3] == "0A":  # 0A: TCP_LISTEN
            return True
    return False


class _Process:
    """One tunnel process: started, waited for until its port is bound, stopped."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, proto: str, port: int) -> None:
        # stdout and stderr go to the worker's stderr, which the runner keeps as the run's log.
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=2, stderr=2, preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + _START_S
        while not _bound(proto, port, listening=proto == "tcp"):
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.argv[0]} exited with status {self.proc.returncode} before binding {port}")
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"{self.argv[0]} did not bind port {port} within {_START_S:g} s")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 3.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class TunnelReceiver:
    def __init__(self, tcp: TcpBenchReceiver, server: _Process, info: JSON) -> None:
        self._tcp = tcp
        self._server = server
        self.info = info

    async def stop(self) -> None:
        await self._tcp.stop()
        await self._server.stop()

    def stats(self) -> JSON:
        return {**self._tcp.stats(), "tunnel": self.info["tunnel"]}


async def start_tunnel_receiver(tunnel: Tunnel, options: EndpointOptions, handler: Handler) -> TunnelReceiver:
    tcp = await start_tcp_receiver(EndpointOptions(_LOOPBACK, 0, timeout=options.timeout), handler)
    settings = tunnel.options(options.extra)
    udp_port = options.port or free_port(socket.SOCK_DGRAM, options.host)
    server = _Process(tunnel.server_argv(options.host, udp_port, int(tcp.info["port"]), settings))
    try:
        await server.start("udp", udp_port)
    except BaseException:
        await tcp.stop()
        raise
    described = {"server": server.argv, **tunnel.settings(settings)}
    info: JSON = {"host": options.host, "port": udp_port, "tunnel": described, "options": settings,
                  "congestion_control": described.get("congestion_control")}
    return TunnelReceiver(tcp, server, info)


class TunnelSender:
    def __init__(self, tunnel: Tunnel, options: EndpointOptions, peer: JSON) -> None:
        self._tunnel = tunnel
        self._options = options
        self._settings = tunnel.options({str(k): str(v) for k, v in (peer.get("options") or {}).items()})
        self._client: _Process | None = None
        self._tcp: TcpBenchSender | None = None

    async def open(self) -> None:
        local = free_port(socket.SOCK_STREAM, _LOOPBACK)
        self._client = _Process(self._tunnel.client_argv(local, self._options.host, self._options.port, self._settings))
        await self._client.start("tcp", local)
        self._tcp = TcpBenchSender(EndpointOptions(_LOOPBACK, local, timeout=self._options.timeout), {})
        await self._tcp.open()

    async def send(self, image: BenchImage) -> Sent:
        if self._tcp is None:
            raise RuntimeError("open() first")
        return await self._tcp.send(image)

    def stats(self) -> JSON:
        described = self._tunnel.settings(self._settings)
        client = self._client.argv if self._client else None
        return {"congestion_control": described.get("congestion_control"), "tunnel": {"client": client, **described}}

    async def close(self) -> None:
        if self._tcp is not None:
            await self._tcp.close()
        if self._client is not None:
            await self._client.stop()


def make_tunnel_sender(tunnel: Tunnel, options: EndpointOptions, peer: JSON) -> TunnelSender:
    return TunnelSender(tunnel, options, peer)
