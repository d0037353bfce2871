"""The TUN link emulator between namespaces (root and /dev/net/tun; skipped otherwise)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netsim import netns
from netsim.pcap import read_pcap
from netsim.tun import ADDR_A, ADDR_B, TunLink, TunUnavailable, check_available, python_env


def _unavailable_reason() -> str | None:
    try:
        check_available()
    except TunUnavailable as exc:
        return str(exc)
    return None


_REASON = _unavailable_reason()
pytestmark = [pytest.mark.root, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

PROBE = [sys.executable, "-m", "netsim.probe"]
REPO = Path(__file__).resolve().parents[2]


def ours() -> list[str]:
    """Namespaces owned by this test process."""
    return [n for n in netns.list_namespaces() if n.startswith(f"{netns.PREFIX}{os.getpid()}-")]


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    yield
    assert ours() == []


def wait_for(condition: Callable[[], bool], limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed but not yet reaped by its parent) is not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def tcp_transfer(link: TunLink, seconds: float, max_seconds: float) -> dict[str, Any]:
    sink = link.popen_b(
        [*PROBE, "tcp-sink", "--warmup", "0.5", "--max-seconds", str(max_seconds)],
        stdout=subprocess.PIPE, text=True, env=python_env(),
    )
    assert sink.stdout is not None
    assert "listening" in json.loads(sink.stdout.readline())
    source = link.run_a([*PROBE, "tcp-source", ADDR_B, "5201", "--seconds", str(seconds)],
                        capture_output=True, text=True, env=python_env(), timeout=60)
    result: dict[str, Any] = json.loads(sink.stdout.readline())
    result["source"] = json.loads(source.stdout)
    sink.wait(timeout=10)
    return result


def test_ping_rtt_matches_the_configured_delay(tmp_path: Path) -> None:
    pcap = tmp_path / "tun.pcap"
    with TunLink("delay=20ms", seed=1, pcap=pcap) as link:
        out = link.run_a([*PROBE, "ping", ADDR_B, "--count", "5", "--interval", "0.05"],
                         capture_output=True, text=True, env=python_env(), timeout=30)
        stats = link.stats()
    result = json.loads(out.stdout)
    assert result["received"] == 5
    assert min(result["rtt_ms"]) >= 40.0  # never early
    # Nothing added: the fastest ping, since the forwarder and the probe are Python processes whose
    # wake-ups a loaded two-core machine delays (the median read 50+ ms once beside two CPU hogs).
    assert min(result["rtt_ms"]) < 40.0 + 10.0
    assert stats["link"]["fwd"]["passed"] == 5 and stats["link"]["rev"]["passed"] == 5
    linktype, packets = read_pcap(pcap)
    assert linktype == 101 and len(packets) == 10
    assert all(p[0] >> 4 == 4 and p[9] == 1 for _, p in packets)  # IPv4 ICMP
    assert {bytes(p[12:16]) for _, p in packets} == {bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2])}


def test_tcp_reaches_the_configured_rate_without_loss() -> None:
    with TunLink("rate=50mbit delay=10ms queue=150kb", seed=1, cc="cubic") as link:
        assert link.cc == {"a": "cubic", "b": "cubic"}
        result = tcp_transfer(link, seconds=3.0, max_seconds=2.5)
    assert result["source"]["cc"] == "cubic"
    # Goodput after slow start, in Mbit/s of TCP payload (headers take ~3.5% of the link).
    assert result["steady_mbit_s"] >= 0.85 * 50, result


def test_tcp_cubic_collapses_at_5_percent_loss() -> None:
    with TunLink("rate=50mbit delay=20ms queue=250kb loss=5%", seed=1, cc="cubic") as link:
        result = tcp_transfer(link, seconds=2.5, max_seconds=2.0)
        stats = link.stats()
    assert result["mbit_s"] < 0.3 * 50, result
    assert stats["link"]["fwd"]["dropped_by_cause"]["loss"] > 0


def test_corruption_reaches_the_application_only_with_fixed_checksums() -> None:
    receiver = textwrap.dedent("""
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7000)); s.settimeout(1.0)
        print("ready", flush=True)
        got = []
        try:
            while len(got) < 20:
                got.append(s.recv(2000).hex())
        except TimeoutError:
            pass
        print(" ".join(got), flush=True)
    """)
    sender = textwrap.dedent(f"""
        import socket, time
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(20):
            s.sendto(bytes(range(200)), ("{ADDR_B}", 7000)); time.sleep(0.005)
    """)
    results = {}
    for fix in (False, True):
        with TunLink("corrupt=100%", seed=4, fix_checksums=fix) as link:
            recv = link.popen_b([sys.executable, "-c", receiver], stdout=subprocess.PIPE, text=True)
            assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
            link.run_a([sys.executable, "-c", sender], check=True, timeout=30)
            datagrams = [bytes.fromhex(h) for h in recv.stdout.readline().split()]
            recv.wait(timeout=10)
            results[fix] = (datagrams, link.stats()["link"]["fwd"]["corrupted"])
    dropped_by_kernel, corrupted = results[False]
    assert dropped_by_kernel == [] and corrupted == 20
    delivered, corrupted = results[True]
    assert len(delivered) == 20 and corrupted == 20
    original = int.from_bytes(bytes(range(200)), "big")
    assert all((int.from_bytes(d, "big") ^ original).bit_count() == 1 for d in delivered)


def test_killing_the_forwarder_still_cleans_up() -> None:
    link = TunLink("delay=5ms", seed=1).start()
    try:
        pid = link.forwarder_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not link.forwarder_alive())
        assert link.stats()["cc"]  # still answers, from what it knows
    finally:
        link.close()
    assert not alive(pid)


def test_sigkilled_owner_leaves_nothing_behind() -> None:
    owner_script = textwrap.dedent("""
        import json, sys, time
        from netsim.tun import TunLink
        link = TunLink("delay=5ms").start()
        sleeper = link.popen_b(["sleep", "300"])
        print(json.dumps({"ns": [link.ns_a, link.ns_b], "sleeper": sleeper.pid,
                          "forwarder": link.forwarder_pid}), flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", owner_script], stdout=subprocess.PIPE, text=True,
                             cwd=REPO, env=python_env())
    assert owner.stdout is not None
    info = json.loads(owner.stdout.readline())
    assert set(info["ns"]) <= set(netns.list_namespaces())
    assert alive(info["sleeper"]) and alive(info["forwarder"])
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    # The watchdog notices at once; give it a moment to kill and delete.
    wait_for(lambda: not set(info["ns"]) & set(netns.list_namespaces()))
    wait_for(lambda: not alive(info["sleeper"]) and not alive(info["forwarder"]))


def test_stale_namespaces_of_dead_owners_are_reaped() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{netns.PREFIX}{dead.pid}-1-dead00-a"
    netns.ip("netns", "add", name)
    sleeper = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "300"])
    try:
        wait_for(lambda: sleeper.pid in netns.namespace_pids(name))
        assert not netns.owner_alive(name)
        assert name in netns.reap_stale()
        assert name not in netns.list_namespaces()
        sleeper.wait(timeout=10)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        netns.ip("netns", "delete", name, check=False)
    # Live owners (this process) are never touched; foreign names never at all.
    assert netns.owner_alive(f"{netns.PREFIX}{os.getpid()}-{netns.process_start_ticks(os.getpid())}-x-a")
    assert netns.owner_alive("someone-elses-namespace")
    with pytest.raises(ValueError, match="refusing"):
        netns.delete_namespace("someone-elses-namespace")


def test_shell_command_runs_in_namespace_a_and_returns_its_code() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from apps.cli import main; sys.exit(main())",
         "netsim", "shell", "--cc", "bbr", "rtt=10ms", "--",
         "sh", "-c", f'test "$SNIP_PEER" = {ADDR_B} && ip -4 addr | grep -q {ADDR_A} && exit 7'],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 7, proc.stderr
    assert "tcp cc A=bbr B=bbr" in proc.stderr


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_shell_cleans_up_when_interrupted(how: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from apps.cli import main; sys.exit(main())",
         "netsim", "shell", "--server", "sleep 300", "--server-wait", "0.1", "delay=5ms", "--", "sleep", "300"],
        cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        ns_b = banner.split("ip netns exec ")[1].split()[0]
        ns_a = ns_b[:-1] + "a"
        wait_for(lambda: bool(netns.namespace_pids(ns_a)) and bool(netns.namespace_pids(ns_b)))
        pids = netns.namespace_pids(ns_a) + netns.namespace_pids(ns_b)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not {ns_a, ns_b} & set(netns.list_namespaces())
    wait_for(lambda: not any(alive(p) for p in pids))
