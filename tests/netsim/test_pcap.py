"""pcap files: format, synthesized headers and checksums."""

from __future__ import annotations

import struct
from pathlib import Path

from netsim.pcap import LINKTYPE_RAW, PcapWriter, internet_checksum, read_pcap
from netsim.simulator import Simulator
from netsim.tunfwd import corrupt_ip_packet, fix_l4_checksum

from .toys import Blaster, Counter


def slow_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_internet_checksum_matches_the_rfc1071_definition() -> None:
    # RFC 1071's example words 0001 f203 f4f5 f6f7: sum ddf2, checksum 220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    for n in (0, 1, 2, 3, 20, 1499, 1500):
        data = bytes((i * 37 + 11) & 0xFF for i in range(n))
        assert internet_checksum(data) == slow_checksum(data)
    assert internet_checksum(b"\xff\xff") == slow_checksum(b"\xff\xff") == 0


def test_global_header_and_records(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    with PcapWriter(path) as w:
        w.write_packet(b"\x45" + bytes(19), 1.25)
        w.write_udp(("10.0.0.1", 1000), ("10.0.0.2", 2000), b"hello", 2.5)
        w.write_udp(("::1", 1000), ("::2", 2000), b"hello6", 3.0)
    raw = path.read_bytes()
    assert struct.unpack_from("<IHHiIII", raw) == (0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW)
    linktype, packets = read_pcap(path)
    assert linktype == 101 and [t for t, _ in packets] == [1.25, 2.5, 3.0]
    v4 = packets[1][1]
    assert internet_checksum(v4[:20]) == 0 and v4[-5:] == b"hello"
    assert struct.unpack_from("!HHH", v4, 20) == (1000, 2000, 13)
    v6 = packets[2][1]
    assert v6[0] >> 4 == 6 and v6[6] == 17 and v6[-6:] == b"hello6"
    pseudo = v6[8:40] + (8 + 6).to_bytes(4, "big") + b"\0\0\0\x11"
    assert internet_checksum(pseudo + v6[40:]) == 0  # a valid UDP checksum sums to zero


def test_simulator_capture_uses_virtual_time(tmp_path: Path) -> None:
    sim = Simulator()
    sim.add_endpoint(Blaster(("b", 2), 5, size=100, rate=8e3), ("a", 1))
    sim.add_endpoint(Counter(), ("b", 2))
    sim.connect("a", "b", "delay=50ms")
    writer = sim.capture(tmp_path / "sim.pcap")
    sim.run()
    writer.close()
    _, packets = read_pcap(tmp_path / "sim.pcap")
    assert [round(t, 6) for t, _ in packets] == [0.05, 0.15, 0.25, 0.35, 0.45]
    assert all(p[12:16] == bytes([10, 99, 0, 1]) and p[16:20] == bytes([10, 99, 0, 2]) for _, p in packets)


def _udp_packet(payload: bytes) -> bytes:
    src, dst = bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2])
    udp = struct.pack("!HHHH", 5000, 7000, 8 + len(payload), 0)
    pseudo = src + dst + b"\0\x11" + (8 + len(payload)).to_bytes(2, "big")
    csum = internet_checksum(pseudo + udp + payload)
    udp = udp[:6] + csum.to_bytes(2, "big")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + internet_checksum(ip).to_bytes(2, "big") + ip[12:]
    return ip + udp + payload


def test_tun_corruption_keeps_headers_and_fixes_the_checksum() -> None:
    import random

    rng = random.Random(1)
    packet = _udp_packet(bytes(range(100)))
    assert fix_l4_checksum(packet) == packet
    for _ in range(200):
        fixed = corrupt_ip_packet(packet, rng, fix_checksums=True)
        diff = (int.from_bytes(fixed[28:], "big") ^ int.from_bytes(packet[28:], "big")).bit_count()
        assert fixed[:26] == packet[:26] and diff == 1  # IP + UDP header (ports, length) intact
        pseudo = fixed[12:20] + b"\0\x11" + fixed[24:26]
        assert internet_checksum(pseudo + fixed[20:]) == 0
        broken = corrupt_ip_packet(packet, rng, fix_checksums=False)
        assert broken[:20] == packet[:20] and broken != packet
