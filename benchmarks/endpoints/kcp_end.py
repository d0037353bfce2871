"""KCP (Debian's kcptun) as an optional peer: ``kcptun-client``/``kcptun-server`` carry the TCP baseline.

kcptun is KCP's reference tunnel: KCP (an ARQ with selective repeat and fast retransmit) under
smux, with Reed-Solomon forward error correction (10 data + 3 parity shards by default) below
KCP. Every kcptun profile turns KCP's congestion window off (``nc=1``), so the send window is
its only brake. The settings here are kcptun's except: no encryption and no compression (the
other transports' payloads are not compressed either, and TCP runs without TLS), the ``fast3``
profile (the most aggressive), and 512-packet send and receive windows on both ends: of 128
(the client's default), 256, 512 and 1024, 512 delivered 1 MiB soonest at 50 and 300 ms on the
standard links, and 1024 overran the 250 kB queue (4x the image bytes on the wire). ``--peer-option kcp:KEY=VALUE``
sets any kcptun flag on both ends (``sndwnd=2048``, ``ds=0``, ``mode=normal``...).
"""

from __future__ import annotations

from benchmarks.endpoints import JSON, EndpointOptions, Handler
from benchmarks.endpoints.tunnel_end import (
    Tunnel,
    TunnelReceiver,
    TunnelSender,
    make_tunnel_sender,
    start_tunnel_receiver,
)

DEFAULTS = {"mode": "fast3", "crypt": "none", "sndwnd": "512", "rcvwnd": "512", "ds": "10", "ps": "3"}


def _flags(options: dict[str, str]) -> list[str]:
    flags = ["--nocomp", "--quiet"]
    for key, value in sorted(options.items()):
        flags += [f"--{key}", value]
    return flags


def _server(host: str, port: int, tcp_port: int, options: dict[str, str]) -> list[str]:
    return ["kcptun-server", "--listen", f"{host}:{port}", "--target", f"127.0.0.1:{tcp_port}", *_flags(options)]


def _client(local: int, host: str, port: int, options: dict[str, str]) -> list[str]:
    return ["kcptun-client", "--localaddr", f"127.0.0.1:{local}", "--remoteaddr", f"{host}:{port}", *_flags(options)]


def _settings(options: dict[str, str]) -> JSON:
    return {"congestion_control": f"none (kcptun {options.get('mode', 'fast')}: nc=1, window {options.get('sndwnd')})",
            "fec": f"{options.get('ds')}+{options.get('ps')}", "kcptun_options": options}


TUNNEL = Tunnel(("kcptun-server", "kcptun-client"), _server, _client, _settings,
                install_hint="Debian: apt install kcptun", defaults=DEFAULTS)


def unavailable() -> str | None:
    return TUNNEL.unavailable()


async def start_receiver(options: EndpointOptions, handler: Handler) -> TunnelReceiver:
    return await start_tunnel_receiver(TUNNEL, options, handler)


def make_sender(options: EndpointOptions, peer: JSON) -> TunnelSender:
    return make_tunnel_sender(TUNNEL, options, peer)
