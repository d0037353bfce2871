"""The TCP baseline (``--via tcp``): the app flow over one kernel TCP connection per sender.

Framing is in ``tcp_frame`` (length-prefixed header with name, content type and SHA-256, the
reply on the same connection); the two ends are ``tcp_sender.TcpSender`` and
``tcp_receiver.TcpReceiver``. The kernel's congestion control is used as configured in the network
namespace unless ``--tcp-congestion`` pins one per socket; the algorithm in force is recorded in
the stats either way.

Example (tests, benchmarks)::

    receiver = TcpReceiver("127.0.0.1", 0, max_image_bytes=8 << 20)
    task = asyncio.create_task(receiver.serve(handler, stop))
    address = await receiver.wait_listening()            # "127.0.0.1:40123"
    sender = TcpSender("127.0.0.1", receiver.address[1], congestion="cubic")
    outcomes = await sender.send_all(images, want_reply=True)
    await sender.aclose()
"""

from __future__ import annotations

import argparse

from apps.transport import TransportError
from apps.transports import split_host_port
from apps.transports.tcp_receiver import TcpReceiver
from apps.transports.tcp_sender import TcpSender
from apps.transports.units import count_arg, seconds_arg, size_arg

__all__ = [
    "DEFAULT_PORT",
    "TcpReceiver",
    "TcpSender",
    "add_arguments",
    "receiver_from_args",
    "sender_from_args",
]

DEFAULT_PORT = 9001
DEFAULT_MAX_IMAGE_BYTES = 64 << 20


def add_arguments(parser: argparse.ArgumentParser, role: str) -> None:
    """The TCP options, all prefixed ``--tcp-``; ``role`` is "sender"/"send" or "receiver"/"receive"."""
    group = parser.add_argument_group("TCP baseline (--via tcp)")
    group.add_argument("--tcp-chunk-size", type=size_arg, default=64 * 1024, metavar="BYTES",
                       help="bytes per write (the original project used 2048; default 64K)")
    group.add_argument("--tcp-congestion", metavar="NAME",
                       help="pin the kernel's congestion control on each socket (cubic, bbr, ...); "
                       "default: the namespace's (/proc/sys/net/ipv4/tcp_congestion_control)")
    group.add_argument("--tcp-io-timeout", type=seconds_arg, default=30.0, metavar="SECONDS",
                       help="give a connection up when a read or write makes no progress this long "
                       "(default 30)")
    if role.startswith("send"):
        group.add_argument("--tcp-connect-timeout", type=seconds_arg, default=10.0, metavar="SECONDS",
                           help="how long to wait for the connection (default 10)")
        group.add_argument("--tcp-reply-timeout", type=seconds_arg, default=120.0, metavar="SECONDS",
                           help="how long to wait for the acknowledgement and reply of a sent image "
                           "(default 120)")
        group.add_argument("--tcp-max-inflight", type=count_arg, default=16, metavar="N",
                           help="images sent but not yet answered, pipelined on the connection (default 16)")
    else:
        group.add_argument("--tcp-idle-timeout", type=seconds_arg, default=300.0, metavar="SECONDS",
                           help="close a connection idle between images this long (default 300)")
        group.add_argument("--tcp-max-connections", type=count_arg, default=256, metavar="N",
                           help="connections served at once (default 256)")


def sender_from_args(args: argparse.Namespace, target: str) -> TcpSender:
    """A sender to ``target`` ("host:port"; the port defaults to 9001)."""
    try:
        host, port = split_host_port(target, DEFAULT_PORT)
    except ValueError as exc:
        raise TransportError(f"bad TCP target: {exc}") from None
    return TcpSender(
        host,
        port,
        chunk_size=args.tcp_chunk_size,
        congestion=args.tcp_congestion,
        connect_timeout=args.tcp_connect_timeout,
        io_timeout=args.tcp_io_timeout,
        reply_timeout=args.tcp_reply_timeout,
        max_inflight=args.tcp_max_inflight,
    )


def receiver_from_args(args: argparse.Namespace, listen: str) -> TcpReceiver:
    """A receiver on ``listen`` ("host:port", port 0 for any), honouring the apps' generic limits
    ``max_size``, ``max_transfers`` and ``grace`` when present on ``args``."""
    try:
        host, port = split_host_port(listen, DEFAULT_PORT)
    except ValueError as exc:
        raise TransportError(f"bad TCP listen address: {exc}") from None
    max_image = getattr(args, "max_size", None) or DEFAULT_MAX_IMAGE_BYTES
    max_transfers = getattr(args, "max_transfers", None) or 64
    grace = getattr(args, "grace", None)
    return TcpReceiver(
        host,
        port,
        max_image_bytes=max_image,
        max_buffered_bytes=max(256 << 20, max_image * 4),
        max_transfers=max_transfers,
        max_connections=args.tcp_max_connections,
        chunk_size=args.tcp_chunk_size,
        congestion=args.tcp_congestion,
        idle_timeout=args.tcp_idle_timeout,
        io_timeout=args.tcp_io_timeout,
        shutdown_grace=5.0 if grace is None else grace,
    )
