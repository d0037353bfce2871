"""netsim's speed: the model, the simulator, the UDP relay and the TUN emulator.

    python -m benchmarks.netsim_bench [--seconds 3] [--no-tun] [--json]

- model: microseconds to decide one packet's fate on a typical impaired link;
- simulator: a 100 MB transfer (1 KB datagrams, paced at 1 Gbit/s) over a 100 ms RTT link with
  1% loss, in virtual time: wall seconds and events per second;
- relay: datagrams per second the relay forwards (its own process; a blasting source and a
  counting sink in two more), and the relay's CPU use;
- TUN (root only): TCP (BBR) throughput through a paced 200 Mbit/s link with 10 ms delay and 1%
  loss, and through an unpaced link, with the forwarder's CPU use.

``run()`` returns the rows for ``snip bench``; ``render()`` makes the table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from netsim.model import LinkModel
from netsim.simulator import Simulator
from netsim.spec import parse_link

REPO = Path(__file__).resolve().parent.parent
Address = tuple[str, int]
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Row:
    face: str
    link: str
    value: float
    unit: str
    cpu_percent: float | None  # of one core, for the process doing the forwarding
    note: str


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# --------------------------------------------------------------------------- model


def bench_model(packets: int = 200_000) -> Row:
    text = "loss=5% delay=50ms jitter=10ms rate=20mbit queue=100kb"
    direction = LinkModel(parse_link(text), seed=1, header_overhead=28).fwd
    payload = bytes(1052)
    transmit = direction.transmit
    started = time.perf_counter()
    for i in range(packets):
        transmit(payload, i * 0.0005)
    per_packet = (time.perf_counter() - started) / packets * 1e6
    return Row("model", text, round(per_packet, 3), "us/packet", None, f"{packets} packets, one direction")


# --------------------------------------------------------------------------- simulator


class _Sender:
    """Paced sender of ``count`` numbered 1 KB datagrams that resends what the receiver NACKs."""

    def __init__(self, peer: Address, count: int, rate: float) -> None:
        self.peer, self.count = peer, count
        self.interval = (1024 + 28) * 8 / rate
        self.next_new, self.next_at = 0, 0.0
        self.resend: list[int] = []
        self.done = False

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if data == b"done":
            self.done = True
        else:
            self.resend.extend(int.from_bytes(data[i : i + 4], "big") for i in range(0, len(data), 4))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = []
        while self.next_at <= now and (self.resend or self.next_new < self.count):
            seq = self.resend.pop(0) if self.resend else self.next_new
            if seq == self.next_new:
                self.next_new += 1
            out.append((seq.to_bytes(4, "big") + bytes(1020), self.peer))
            self.next_at = max(self.next_at, now) + self.interval
        return out

    def get_timer(self) -> float | None:
        return self.next_at if (self.resend or self.next_new < self.count) and not self.done else None

    def handle_timer(self, now: float) -> None:
        pass


class _Receiver:
    """Counts distinct datagrams; every 200 ms (two RTTs) NACKs the gaps, and the tail when idle."""

    def __init__(self, peer: Address, count: int) -> None:
        self.peer, self.count = peer, count
        self.have = bytearray(count)
        self.unique, self.highest, self.low = 0, -1, 0
        self.arrived_since_timer = 0
        self.timer: float | None = None
        self.out: list[tuple[bytes, Address]] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        seq = int.from_bytes(data[:4], "big")
        self.arrived_since_timer += 1
        if not self.have[seq]:
            self.have[seq] = 1
            self.unique += 1
        self.highest = max(self.highest, seq)
        if self.unique == self.count:
            self.out.append((b"done", self.peer))
            self.timer = None
        elif self.timer is None:
            self.timer = now + 0.2

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        end = self.highest if self.arrived_since_timer else self.count  # idle: the tail is lost too
        self.arrived_since_timer = 0
        while self.low < self.count and self.have[self.low]:
            self.low += 1
        missing = [i for i in range(self.low, end) if not self.have[i]]
        for start in range(0, len(missing), 256):
            self.out.append((b"".join(i.to_bytes(4, "big") for i in missing[start : start + 256]), self.peer))
        self.timer = now + 0.2


def bench_simulator(megabytes: int = 100) -> Row:
    count = megabytes * 1000 * 1000 // 1024
    link = "loss=1% rtt=100ms rate=1gbit queue=2000p"
    sim = Simulator(seed=1)
    sender = _Sender(("b", 2), count, 1e9)
    sim.add_endpoint(sender, ("a", 1))
    sim.add_endpoint(_Receiver(("a", 1), count), ("b", 2))
    sim.connect("a", "b", link)
    started = time.perf_counter()
    virtual = sim.run_until(lambda: sender.done, timeout=600)
    wall = time.perf_counter() - started
    return Row(
        "simulator", link, round(wall, 2), "wall s", None,
        f"{megabytes} MB in {virtual:.2f} virtual s, {sim.events / wall:,.0f} events/s",
    )


# --------------------------------------------------------------------------- relay

_SINK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1], flush=True)
s.settimeout(1.0); n = 0
try:
    while True:
        s.recv(2048); n += 1
except TimeoutError:
    pass
print(n, flush=True)
"""

_SOURCE = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("127.0.0.1", int(sys.argv[1])))
payload = bytes(int(sys.argv[3])); end = time.monotonic() + float(sys.argv[2]); n = 0
while time.monotonic() < end:
    for _ in range(64):
        try:
            s.send(payload); n += 1
        except OSError:
            pass
print(n, flush=True)
"""


def bench_relay(seconds: float = 3.0, link: str = "delay=1ms loss=1%", size: int = 1024) -> Row:
    sink = subprocess.Popen(_python(_SINK), stdout=subprocess.PIPE, text=True)
    relay: subprocess.Popen[str] | None = None
    try:
        assert sink.stdout is not None
        sink_port = int(sink.stdout.readline())
        relay = subprocess.Popen(
            [*_python("import sys; from apps.cli import main; sys.exit(main())"), "netsim", "relay",
             "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{sink_port}", "--stats-interval", "0", "--json",
             link],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert relay.stderr is not None
        banner = relay.stderr.readline()
        relay_port = int(banner.split()[2].rsplit(":", 1)[1])
        cpu0 = _cpu_seconds(relay.pid)
        started = time.monotonic()
        source = subprocess.run(
            [*_python(_SOURCE), str(relay_port), str(seconds), str(size)], capture_output=True, text=True
        )
        elapsed = time.monotonic() - started
        time.sleep(0.1)  # let the last delayed datagrams out
        cpu = _cpu_seconds(relay.pid) - cpu0
        relay.send_signal(signal.SIGTERM)
        out, _ = relay.communicate(timeout=10)
        stats = json.loads(out)
    finally:
        if relay is not None and relay.poll() is None:
            relay.kill()
        sink.wait(timeout=10)
    offered = int(source.stdout.strip() or 0)
    forwarded = stats["to_server"]
    return Row(
        "relay", link, round(forwarded / elapsed), "packets/s", round(100 * cpu / elapsed, 1),
        f"{size}-byte datagrams, offered {offered / elapsed:,.0f}/s (excess dropped by the socket buffer); "
        f"{os.cpu_count()} CPUs shared with source and sink",
    )


# --------------------------------------------------------------------------- TUN


def bench_tun(link: str, seconds: float = 3.0, cc: str = "bbr") -> Row:
    from netsim.tun import ADDR_B, TunLink, python_env

    probe = [sys.executable, "-m", "netsim.probe"]
    with TunLink(link, seed=1, cc=cc) as tun:
        sink = tun.popen_b([*probe, "tcp-sink", "--warmup", "0.5"], stdout=subprocess.PIPE, text=True,
                           env=python_env())
        assert sink.stdout is not None
        sink.stdout.readline()
        before = tun.stats()["cpu_s"]
        started = time.monotonic()
        tun.run_a([*probe, "tcp-source", ADDR_B, "5201", "--seconds", str(seconds)], capture_output=True,
                  env=python_env(), timeout=120)
        result = json.loads(sink.stdout.readline())
        elapsed = time.monotonic() - started
        stats = tun.stats()
    cpu = 100 * (stats["cpu_s"] - before) / elapsed
    fwd = stats["link"]["fwd"]
    return Row(
        "tun", link, round(result["steady_mbit_s"] or result["mbit_s"], 1), "Mbit/s", round(cpu, 1),
        f"TCP {cc} goodput after 0.5 s; {fwd['passed']:,} packets A->B, {fwd['dropped']:,} dropped",
    )


def tun_available() -> bool:
    from netsim.tun import TunUnavailable, check_available

    try:
        check_available()
    except TunUnavailable:
        return False
    return True


# --------------------------------------------------------------------------- driver


def run(seconds: float = 3.0, tun: bool | None = None) -> list[Row]:
    """All netsim measurements; TUN ones when ``tun`` (default: when root and TUN are present)."""
    rows = [bench_model(), bench_simulator(), bench_relay(seconds)]
    if tun if tun is not None else tun_available():
        rows.append(bench_tun("rate=200mbit delay=10ms loss=1% queue=500kb", seconds))
        rows.append(bench_tun("delay=5ms loss=0.1%", seconds))
    return rows


def render(rows: Sequence[Row]) -> str:
    lines = [
        f"netsim: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "",
        f"{'face':<10}{'value':>12} {'unit':<10}{'cpu %':>7}  link / note",
    ]
    for r in rows:
        cpu = f"{r.cpu_percent:.0f}" if r.cpu_percent is not None else "-"
        lines.append(f"{r.face:<10}{r.value:>12,} {r.unit:<10}{cpu:>7}  {r.link}")
        lines.append(f"{'':<40}{r.note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.netsim_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the relay and TUN runs (default 3)")
    parser.add_argument("--no-tun", action="store_true", help="skip the TUN emulator (needs root)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args(argv)
    rows = run(args.seconds, tun=False if args.no_tun else None)
    out: Any = [asdict(r) for r in rows]
    print(json.dumps(out, indent=2) if args.json else render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

