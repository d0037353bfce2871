"""Kernel TCP knobs the TCP baseline pins and records: congestion control, and counters from TCP_INFO."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

from apps.transport import TransportError

_PROC = Path("/proc/sys/net/ipv4")
# Linux's TCP_CONGESTION and TCP_INFO option numbers, for Pythons built without the constants.
_TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
# struct tcp_info (linux/tcp.h) up to tcpi_total_retrans; later fields vary with kernel versions.
_TCP_INFO_HEAD = struct.Struct("=8B 24I")


def default_congestion_control() -> str | None:
    """The namespace's default algorithm (what a socket gets when nothing is set)."""
    try:
        return (_PROC / "tcp_congestion_control").read_text().strip()
    except OSError:
        return None


def set_congestion_control(sock: socket.socket, algorithm: str) -> None:
    """Pin ``algorithm`` (cubic, bbr, ...) on ``sock``; TransportError naming the choices if refused."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, algorithm.encode("ascii"))
    except (OSError, UnicodeEncodeError) as exc:
        try:
            allowed = (_PROC / "tcp_allowed_congestion_control").read_text().split()
            available = (_PROC / "tcp_available_congestion_control").read_text().split()
        except OSError:
            allowed = available = []
        raise TransportError(
            f"TCP congestion control {algorithm!r} refused ({exc}); available: {' '.join(available) or '?'},"
            f" allowed without privileges: {' '.join(allowed) or '?'}"
        ) from None


def congestion_control(sock: socket.socket) -> str | None:
    """The algorithm ``sock`` actually uses (read back, not assumed)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, 16)
    except OSError:
        return None
    return raw.split(b"\0", 1)[0].decode("ascii", "replace") or None


def tcp_info(sock: socket.socket) -> dict[str, Any]:
    """A few TCP_INFO counters of ``sock`` (empty where the kernel does not offer them)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_HEAD.size)
    except OSError:
        return {}
    if len(raw) < _TCP_INFO_HEAD.size:
        return {}
    fields = _TCP_INFO_HEAD.unpack(raw)
    ints = fields[8:]
    # Offsets into the u32 block: rto 0, snd_mss 2, lost 6, retrans 7, rtt 15, rttvar 16,
    # snd_cwnd 18, total_retrans 23.
    return {
        "rtt_ms": ints[15] / 1000.0,
        "rttvar_ms": ints[16] / 1000.0,
        "rto_ms": ints[0] / 1000.0,
        "snd_mss": ints[2],
        "snd_cwnd": ints[18],
        "total_retrans": ints[23],
    }
