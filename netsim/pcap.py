"""Classic pcap files (what tcpdump writes) of what crossed a link.

The files use LINKTYPE_RAW (101): every record is a bare IPv4 or IPv6 packet, which tshark and
Wireshark open directly. The TUN emulator writes the IP packets it forwards as they are; the relay
and the simulator carry UDP payloads, so ``write_udp`` wraps each one in synthesized IPv4 (or IPv6)
and UDP headers with the datagram's real (or, in the simulator, made-up) addresses and ports.
Format: https://www.tcpdump.org/manpages/pcap-savefile.5.html
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = ["LINKTYPE_RAW", "PcapWriter", "internet_checksum", "read_pcap"]

LINKTYPE_RAW = 101
_MAGIC_US = 0xA1B2C3D4
_GLOBAL_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")


def internet_checksum(data: bytes, start: int = 0) -> int:
    """RFC 1071 checksum of ``data`` (plus a partial sum ``start``), as stored in headers.

    Uses 2**16 = 1 (mod 0xFFFF): the ones'-complement sum of 16-bit words equals the whole buffer,
    read as one big integer, modulo 0xFFFF; Python's big integers do that in C.
    """
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") + start
    folded = total % 0xFFFF
    if folded == 0 and total:
        folded = 0xFFFF
    return ~folded & 0xFFFF


class PcapWriter:
    """Writes packets to a pcap file; use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path, *, snaplen: int = 65535) -> None:
        self.path = Path(path)
        self.snaplen = snaplen
        self.packets = 0
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()/__exit__
        self._file.write(_GLOBAL_HEADER.pack(_MAGIC_US, 2, 4, 0, 0, snaplen, LINKTYPE_RAW))
        self._ip_id = 0

    def write_packet(self, packet: bytes, timestamp: float) -> None:
        """One raw IP packet seen at ``timestamp`` (seconds since the epoch, or virtual time)."""
        sec = int(timestamp)
        usec = round((timestamp - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        caplen = min(len(packet), self.snaplen)
        self._file.write(_RECORD_HEADER.pack(sec, usec, caplen, len(packet)))
        self._file.write(packet[:caplen])
        self.packets += 1

    def write_udp(self, src: tuple[str, int], dst: tuple[str, int], payload: bytes, timestamp: float) -> None:
        """A UDP datagram from ``src`` to ``dst`` (IP literals) with synthesized headers."""
        sa, da = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
        udp_len = 8 + len(payload)
        if sa.version == 4 and da.version == 4:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            # UDP checksum 0 means "none" over IPv4 (RFC 768); the payload is recorded as carried.
            udp = _UDP.pack(src[1], dst[1], udp_len, 0)
            header = _IPV4.pack(0x45, 0, 20 + udp_len, self._ip_id, 0x4000, 64, 17, 0, sa.packed, da.packed)
            header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
            self.write_packet(header + udp + payload, timestamp)
            return
        s6 = sa.packed if sa.version == 6 else ipaddress.IPv6Address(f"::ffff:{sa}").packed
        d6 = da.packed if da.version == 6 else ipaddress.IPv6Address(f"::ffff:{da}").packed
        # IPv6 requires the UDP checksum: pseudo-header (addresses, length, next header) + datagram.
        pseudo = s6 + d6 + udp_len.to_bytes(4, "big") + b"\0\0\0\x11"
        csum = internet_checksum(pseudo + _UDP.pack(src[1], dst[1], udp_len, 0) + payload) or 0xFFFF
        udp = _UDP.pack(src[1], dst[1], udp_len, csum)
        header = struct.pack("!IHBB16s16s", 6 << 28, udp_len, 17, 64, s6, d6)
        self.write_packet(header + udp + payload, timestamp)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_pcap(path: str | Path) -> tuple[int, list[tuple[float, bytes]]]:
    """Read a classic pcap file: (linktype, [(timestamp, packet), ...]). For tests and tools."""
    data = Path(path).read_bytes()
    magic, _vmaj, _vmin, _zone, _sig, _snap, linktype = _GLOBAL_HEADER.unpack_from(data, 0)
    if magic != _MAGIC_US:
        raise ValueError(f"{path}: not a little-endian microsecond pcap file")
    out: list[tuple[float, bytes]] = []
    pos = _GLOBAL_HEADER.size
    while pos < len(data):
        sec, usec, caplen, _orig = _RECORD_HEADER.unpack_from(data, pos)
        pos += _RECORD_HEADER.size
        out.append((sec + usec / 1e6, data[pos : pos + caplen]))
        pos += caplen
    return linktype, out
