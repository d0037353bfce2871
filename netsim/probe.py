"""Small measurement programs to run inside the TUN emulator's namespaces (stdlib only).

    python -m netsim.probe ping HOST [--count N] [--interval S]       ICMP echo RTTs (needs root)
    python -m netsim.probe tcp-sink [--port P] [--warmup S]           count bytes of one connection
    python -m netsim.probe tcp-source HOST PORT [--seconds S] [--cc ALG]

Each prints one JSON line with its results (the sink first prints ``{"listening": PORT}`` so the
caller knows when to start the source). Tests and benchmarks use them through ``TunLink``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any

from netsim.pcap import internet_checksum

__all__ = ["icmp_ping", "main", "tcp_sink", "tcp_source"]


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def icmp_ping(host: str, count: int = 5, interval: float = 0.2, timeout: float = 2.0) -> dict[str, Any]:
    """Send ``count`` ICMP echo requests; return RTTs in ms of the replies (raw socket: root)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    rtts: list[float] = []
    sent_at: dict[int, float] = {}
    try:
        for seq in range(count):
            body = struct.pack("!d", time.monotonic()) + bytes(48)
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            csum = internet_checksum(header + body)
            sock.sendto(struct.pack("!BBHHH", 8, 0, csum, ident, seq) + body, (host, 0))
            sent_at[seq] = time.monotonic()
            wait_until = time.monotonic() + (interval if seq < count - 1 else timeout)
            while True:
                left = wait_until - time.monotonic()
                if left <= 0 or len(rtts) == count:
                    break
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    continue
                packet = sock.recv(65535)
                ihl = (packet[0] & 0x0F) * 4
                icmp_type, _, _, rid, rseq = struct.unpack_from("!BBHHH", packet, ihl)
                if icmp_type == 0 and rid == ident and rseq in sent_at:
                    rtts.append((time.monotonic() - sent_at.pop(rseq)) * 1000.0)
    finally:
        sock.close()
    return {"sent": count, "received": len(rtts), "rtt_ms": rtts}


def tcp_sink(
    port: int = 5201, bind: str = "0.0.0.0", warmup: float = 0.5, max_seconds: float | None = None
) -> dict[str, Any]:
    """Accept one connection, read until EOF (or ``max_seconds`` after the first byte);
    throughput overall and after ``warmup`` seconds."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(1)
    _emit({"listening": srv.getsockname()[1]})
    conn, peer = srv.accept()
    srv.close()
    buf = bytearray(1 << 20)
    total = 0
    first = last = 0.0
    warm_bytes, warm_at = 0, 0.0
    with conn:
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            now = time.monotonic()
            if not total:
                first = now
            total += n
            last = now
            if not warm_at and now - first >= warmup:
                warm_at, warm_bytes = now, total
            if max_seconds is not None and now - first >= max_seconds:
                break
        cc = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0")[0].decode()
    elapsed = last - first
    steady = (total - warm_bytes) * 8 / (last - warm_at) / 1e6 if warm_at and last > warm_at else None
    return {
        "bytes": total,
        "seconds": elapsed,
        "mbit_s": total * 8 / elapsed / 1e6 if elapsed > 0 else None,
        "steady_mbit_s": steady,
        "peer": peer[0],
        "cc": cc,
    }


def tcp_source(host: str, port: int, seconds: float = 3.0, cc: str | None = None) -> dict[str, Any]:
    """Connect and send as fast as TCP allows for ``seconds``."""
    sock = socket.create_connection((host, port), timeout=30)
    if cc:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    used = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0")[0].decode()
    chunk = bytes(256 * 1024)
    sent = 0
    start = time.monotonic()
    with sock:
        try:
            while time.monotonic() - start < seconds:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)  # wait for the sink to finish reading
        except OSError:  # the sink stopped early (max_seconds)
            pass
    return {"bytes_sent": sent, "seconds": time.monotonic() - start, "cc": used}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netsim.probe")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ping")
    p.add_argument("host")
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--interval", type=float, default=0.2)
    s = sub.add_parser("tcp-sink")
    s.add_argument("--port", type=int, default=5201)
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--warmup", type=float, default=0.5)
    s.add_argument("--max-seconds", type=float)
    c = sub.add_parser("tcp-source")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--seconds", type=float, default=3.0)
    c.add_argument("--cc")
    args = parser.parse_args(argv)
    if args.cmd == "ping":
        _emit(icmp_ping(args.host, args.count, args.interval))
    elif args.cmd == "tcp-sink":
        _emit(tcp_sink(args.port, args.bind, args.warmup, args.max_seconds))
    else:
        _emit(tcp_source(args.host, args.port, args.seconds, args.cc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
