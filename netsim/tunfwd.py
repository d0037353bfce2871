"""The TUN forwarder process: moves IP packets between two TUN devices through the link model.

Started by ``TunLink`` as ``python -m netsim.tunfwd`` with the two TUN file descriptors and a
control socket passed down, and its settings pickled on stdin. Packets read from A's device cross
the fwd direction and are written to B's device; B's cross rev to A. A heap holds packets until
their delivery time; ``select`` gives microsecond wake-ups, so pacing follows the model closely.

Control protocol (one line per message on the control socket): the forwarder sends ``ready``
once running; ``stats`` is answered with one JSON line; ``stop`` with the final JSON line, and the
forwarder exits. It also exits when the control socket closes (its owner died).
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import pickle
import random
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from netsim.model import LinkModel
from netsim.pcap import PcapWriter, internet_checksum
from netsim.spec import LinkSpec

__all__ = ["ForwarderConfig", "corrupt_ip_packet", "fix_l4_checksum", "run_forwarder"]

_BATCH = 256
_TCP, _UDP = 6, 17


@dataclass(frozen=True)
class ForwarderConfig:
    spec: LinkSpec
    seed: int
    fd_a: int
    fd_b: int
    ctl_fd: int
    pcap: str | None = None
    fix_checksums: bool = False


def _l4_bounds(pkt: bytes) -> tuple[int, int, int] | None:
    """(IP header length, transport protocol, transport header length) of an unfragmented IPv4
    TCP/UDP packet, else None."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    proto = pkt[9]
    frag = int.from_bytes(pkt[6:8], "big")
    if frag & 0x3FFF:  # more fragments, or an offset: no whole transport header here
        return None
    if proto == _TCP and len(pkt) >= ihl + 20:
        return ihl, proto, (pkt[ihl + 12] >> 4) * 4
    if proto == _UDP and len(pkt) >= ihl + 8:
        return ihl, proto, 8
    return None


def fix_l4_checksum(pkt: bytes) -> bytes:
    """Recompute the TCP or UDP checksum of an IPv4 packet (unchanged if not TCP/UDP)."""
    bounds = _l4_bounds(pkt)
    if bounds is None:
        return pkt
    ihl, proto, _ = bounds
    total = min(len(pkt), int.from_bytes(pkt[2:4], "big"))
    seg = bytearray(pkt[ihl:total])
    off = 16 if proto == _TCP else 6
    if proto == _UDP and seg[off : off + 2] == b"\0\0":
        return pkt  # the sender used no UDP checksum
    seg[off : off + 2] = b"\0\0"
    pseudo = pkt[12:20] + bytes((0, proto)) + len(seg).to_bytes(2, "big")
    csum = internet_checksum(pseudo + bytes(seg))
    if proto == _UDP and csum == 0:
        csum = 0xFFFF
    seg[off : off + 2] = csum.to_bytes(2, "big")
    return pkt[:ihl] + bytes(seg) + pkt[total:]


def corrupt_ip_packet(pkt: bytes, rng: random.Random, *, fix_checksums: bool) -> bytes:
    """Flip one bit past the IP header (the kernel would drop a packet with a broken IP header).

    With ``fix_checksums`` the bit is flipped in the transport payload (headers intact; a packet
    without payload, like a pure ACK, gets it in its transport header) and the TCP/UDP checksum is
    recomputed, so the corruption reaches the application; without it the kernel's transport
    checksum catches it, as on a real link.
    """
    bounds = _l4_bounds(pkt)
    if bounds is None:
        lo = min(len(pkt), (pkt[0] & 0x0F) * 4) if pkt else 0
    else:
        ihl, _, l4len = bounds
        lo = ihl + l4len if fix_checksums and len(pkt) > ihl + l4len else ihl
    if lo >= len(pkt):
        return pkt
    pos = rng.randrange(lo * 8, len(pkt) * 8)
    buf = bytearray(pkt)
    buf[pos >> 3] ^= 1 << (pos & 7)
    out = bytes(buf)
    return fix_l4_checksum(out) if fix_checksums else out


class _Forwarder:
    def __init__(self, cfg: ForwarderConfig) -> None:
        self.cfg = cfg
        self.model = LinkModel(cfg.spec, cfg.seed, epoch=time.monotonic(), header_overhead=0)
        fix = cfg.fix_checksums
        for direction in (self.model.fwd, self.model.rev):
            direction.corrupter = lambda data, rng: corrupt_ip_packet(data, rng, fix_checksums=fix)
        self.ctl = socket.socket(fileno=cfg.ctl_fd)
        self.ctl.setblocking(False)
        self.pcap = PcapWriter(cfg.pcap) if cfg.pcap else None
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.seq = itertools.count()
        self.counters = {"read_a": 0, "read_b": 0, "written_a": 0, "written_b": 0}
        self.counters.update(read_errors=0, write_errors=0)
        self.ctl_buf = b""
        self.running = True

    def stats(self) -> dict[str, Any]:
        times = os.times()
        return {
            "link": self.model.stats(),
            **self.counters,
            "queued": len(self.heap),
            "cpu_s": times.user + times.system,
        }

    def _reply(self, obj: dict[str, Any]) -> None:
        self.ctl.setblocking(True)
        try:
            self.ctl.sendall(json.dumps(obj).encode() + b"\n")
        except OSError:
            self.running = False
        finally:
            self.ctl.setblocking(False)

    def _control(self) -> None:
        try:
            chunk = self.ctl.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # the owner is gone
            self.running = False
            return
        self.ctl_buf += chunk
        while b"\n" in self.ctl_buf:
            line, self.ctl_buf = self.ctl_buf.split(b"\n", 1)
            cmd = line.strip().decode(errors="replace")
            if cmd == "stats":
                self._reply(self.stats())
            elif cmd == "stop":
                self._flush_due(time.monotonic())
                self._reply(self.stats())
                self.running = False

    def _read(self, fd: int, now: float) -> None:
        fwd = fd == self.cfg.fd_a
        transmit = self.model.fwd.transmit if fwd else self.model.rev.transmit
        out_fd = self.cfg.fd_b if fwd else self.cfg.fd_a
        heap, seq = self.heap, self.seq
        n = 0
        for _ in range(_BATCH):
            try:
                pkt = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                self.counters["read_errors"] += 1
                break
            n += 1
            for t, d in transmit(pkt, now):
                if t <= now:
                    self._write(out_fd, d)
                else:
                    heapq.heappush(heap, (t, next(seq), out_fd, d))
        self.counters["read_a" if fwd else "read_b"] += n

    def _write(self, fd: int, pkt: bytes) -> None:
        try:
            os.write(fd, pkt)
        except OSError:
            self.counters["write_errors"] += 1
            return
        self.counters["written_b" if fd == self.cfg.fd_b else "written_a"] += 1
        if self.pcap is not None:
            self.pcap.write_packet(pkt, time.time())

    def _flush_due(self, now: float) -> None:
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, _, fd, pkt = heapq.heappop(heap)
            self._write(fd, pkt)

    def run(self) -> None:
        fds = [self.cfg.fd_a, self.cfg.fd_b, self.ctl.fileno()]
        ctl_fd = self.ctl.fileno()
        clock = time.monotonic
        self._reply({"ready": True})
        try:
            while self.running:
                timeout = max(0.0, self.heap[0][0] - clock()) if self.heap else 1.0
                readable, _, _ = select.select(fds, [], [], timeout)
                now = clock()
                for fd in readable:
                    if fd == ctl_fd:
                        self._control()
                    else:
                        self._read(fd, now)
                if self.heap:
                    self._flush_due(clock())
        finally:
            if self.pcap is not None:
                self.pcap.close()


def run_forwarder(cfg: ForwarderConfig) -> None:
    for fd in (cfg.fd_a, cfg.fd_b):
        os.set_blocking(fd, False)
    _Forwarder(cfg).run()


# How TunLink starts us: importing (not running as __main__) keeps pickle's class names right.
LAUNCH = "import sys; from netsim.tunfwd import main; sys.exit(main())"


def main() -> int:
    # The owner handles Ctrl-C and tells us to stop; a terminal signal must not kill us first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cfg = pickle.load(sys.stdin.buffer)
    if not isinstance(cfg, ForwarderConfig):
        print("netsim.tunfwd: bad configuration on stdin", file=sys.stderr)
        return 2
    run_forwarder(cfg)
    return 0


if __name__ == "__main__":
    print(f"netsim.tunfwd is started by TunLink: python -c {LAUNCH!r}", file=sys.stderr)
    sys.exit(2)
