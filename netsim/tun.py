"""TUN link emulator: two network namespaces joined by an impaired link at the IP level (root).

Any program crosses it (kernel TCP with CUBIC or BBR, SMTP/POP3 servers, snip), which is what makes
transport comparisons fair. The recipe (DESIGN.md section 5): open /dev/net/tun twice
(IFF_TUN | IFF_NO_PI) in the root namespace, move one device into each of two fresh namespaces,
give them point-to-point /32 addresses, disable IPv6, and forward packets in userspace through the
link model (``netsim.tunfwd``, a separate process, so the caller's GIL never slows the link).

Addressing (fixed, the same for every link; each link has its own namespaces)::

    namespace A: 10.77.0.1  (peer 10.77.0.2)      fwd direction: A -> B
    namespace B: 10.77.0.2  (peer 10.77.0.1)      rev direction: B -> A

MTU 1500, IPv6 off, loopback up. The TCP congestion control of each namespace is pinned when asked
(``cc="cubic"``) and always recorded in ``link.cc``.

    with TunLink("rate=50mbit delay=20ms loss=1%", seed=1, cc="cubic") as link:
        server = link.popen_b(["python3", "-m", "http.server", "8000"])
        link.run_a(["curl", f"http://{link.addr_b}:8000/"])
        print(link.stats()["link"]["fwd"])

Teardown kills every process in both namespaces and deletes them, on normal exit, exceptions and
Ctrl-C; after a crash of the owner (even SIGKILL) a watchdog does it (see ``netsim.netns``).
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from netsim import netns
from netsim.spec import DirectionSpec, LinkSpec
from netsim.tunfwd import LAUNCH, ForwarderConfig

__all__ = ["ADDR_A", "ADDR_B", "TunLink", "TunUnavailable", "check_available", "python_env"]

ADDR_A = "10.77.0.1"
ADDR_B = "10.77.0.2"
SUBNET = "10.77.0.0/30"

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000

# So that `python -m netsim...` finds this package from the helper processes, installed or not.
_PKG_ROOT = str(Path(__file__).resolve().parent.parent)


class TunUnavailable(RuntimeError):
    """The TUN emulator cannot run here (not root, no /dev/net/tun, no iproute2)."""


def check_available() -> None:
    """Raise TunUnavailable with the reason when the emulator cannot run on this machine."""
    if sys.platform != "linux":
        raise TunUnavailable("the TUN link emulator needs Linux (network namespaces)")
    if os.geteuid() != 0:
        raise TunUnavailable(
            "the TUN link emulator needs root (network namespaces and /dev/net/tun); "
            "run as root, or use the UDP relay (snip netsim relay), which needs none"
        )
    if shutil.which("ip") is None:
        raise TunUnavailable("the TUN link emulator needs the 'ip' command (Debian package iproute2)")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as exc:
        raise TunUnavailable(f"/dev/net/tun is not usable: {exc.strerror} (load the tun module?)") from None
    os.close(fd)


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def python_env() -> dict[str, str]:
    """The environment for a Python child that must import netsim (installed or not)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _PKG_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class TunLink:
    """A pair of namespaces joined through the link model; a context manager (see module docstring).

    ``cc`` pins the TCP congestion control in both namespaces (``cc_a``/``cc_b`` per namespace);
    ``pcap`` records every packet the forwarder delivers; ``fix_checksums`` recomputes TCP/UDP
    checksums of corrupted packets so the corruption reaches the application.
    """

    addr_a = ADDR_A
    addr_b = ADDR_B

    def __init__(
        self,
        spec: LinkSpec | DirectionSpec | str | None = None,
        *,
        seed: int = 0,
        cc: str | None = None,
        cc_a: str | None = None,
        cc_b: str | None = None,
        pcap: str | Path | None = None,
        fix_checksums: bool = False,
        mtu: int = 1500,
    ) -> None:
        self.spec = LinkSpec.coerce(spec)
        self.seed = seed
        self._cc_want = {"a": cc_a or cc, "b": cc_b or cc}
        self.pcap = str(pcap) if pcap is not None else None
        self.fix_checksums = fix_checksums
        self.mtu = mtu
        self.ns_a = self.ns_b = ""
        self.if_a = self.if_b = ""
        self.cc: dict[str, str] = {}
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._forwarder: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._ctl_buf = b""
        self._procs: list[subprocess.Popen[Any]] = []
        self._last_stats: dict[str, Any] = {}
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> TunLink:
        """Create the namespaces, the devices and the forwarder. Raises TunUnavailable/NetnsError."""
        if self._started:
            return self
        check_available()
        self._started = True
        netns.reap_stale()
        self.ns_a, self.ns_b, stem = netns.make_names()
        self.if_a, self.if_b = stem + "a", stem + "b"
        try:
            # The watchdog comes first so that even a crash halfway through setup cleans up.
            self._watchdog = netns.start_watchdog([self.ns_a, self.ns_b], env=python_env())
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def _setup(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            netns.ip("netns", "add", ns)
        for side, ns in (("a", self.ns_a), ("b", self.ns_b)):
            self.cc[side] = self._configure_sysctls(ns, self._cc_want[side])
        fd_a, fd_b = _open_tun(self.if_a), _open_tun(self.if_b)
        try:
            for ns, ifname, local, peer in (
                (self.ns_a, self.if_a, ADDR_A, ADDR_B),
                (self.ns_b, self.if_b, ADDR_B, ADDR_A),
            ):
                netns.ip("link", "set", ifname, "netns", ns)
                netns.ip("-n", ns, "link", "set", "lo", "up")
                netns.ip("-n", ns, "addr", "add", local, "peer", peer, "dev", ifname)
                netns.ip("-n", ns, "link", "set", ifname, "mtu", str(self.mtu), "up")
            self._start_forwarder(fd_a, fd_b)
        finally:
            # The forwarder holds its own copies; once it exits the devices disappear with it.
            os.close(fd_a)
            os.close(fd_b)

    def _configure_sysctls(self, ns: str, cc: str | None) -> str:
        settings = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
        if cc is not None:
            _allow_congestion_control(cc)
            settings.append(f"net.ipv4.tcp_congestion_control={cc}")
        netns.ip("netns", "exec", ns, "sysctl", "-q", "-w", *settings)
        return netns.ip("netns", "exec", ns, "sysctl", "-n", "net.ipv4.tcp_congestion_control").strip()

    def _start_forwarder(self, fd_a: int, fd_b: int) -> None:
        parent, child = socket.socketpair()
        try:
            cfg = ForwarderConfig(
                self.spec, self.seed, fd_a, fd_b, child.fileno(), self.pcap, self.fix_checksums
            )
            self._forwarder = subprocess.Popen(
                [sys.executable, "-c", LAUNCH],
                stdin=subprocess.PIPE,
                pass_fds=(fd_a, fd_b, child.fileno()),
                start_new_session=True,
                env=python_env(),
            )
        finally:
            child.close()
        self._ctl = parent
        stdin = self._forwarder.stdin
        if stdin is None:
            raise RuntimeError("forwarder started without a stdin pipe")
        stdin.write(pickle.dumps(cfg))
        stdin.close()
        reply = self._read_reply(timeout=20.0)
        if not reply.get("ready"):
            raise TunUnavailable(f"the TUN forwarder did not start: {reply}")

    def close(self) -> None:
        """Stop everything and delete the namespaces. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for proc in self._procs:
            _terminate(proc)
        for ns in (self.ns_a, self.ns_b):
            if ns:
                netns.kill_namespace_processes(ns, grace=0.5)
        self._stop_forwarder()
        for ns in (self.ns_a, self.ns_b):
            if ns:
                netns.ip("netns", "delete", ns, check=False)
        if self._watchdog is not None:
            if self._watchdog.stdin is not None:
                self._watchdog.stdin.close()
            try:
                self._watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()

    def _stop_forwarder(self) -> None:
        fwd, ctl = self._forwarder, self._ctl
        if ctl is not None:
            try:
                if fwd is not None and fwd.poll() is None:
                    ctl.sendall(b"stop\n")
                    self._last_stats = self._read_reply(timeout=5.0) or self._last_stats
            except (OSError, TimeoutError, ValueError):
                pass
            ctl.close()
            self._ctl = None
        if fwd is not None:
            try:
                fwd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                fwd.kill()
                fwd.wait()

    def __enter__(self) -> TunLink:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ running programs

    def netns_argv(self, side: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside namespace ``side`` ("a" or "b")."""
        return ["ip", "netns", "exec", self._ns(side), *argv]

    def popen(self, side: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` inside a namespace; the process is stopped when the link closes."""
        proc: subprocess.Popen[Any] = subprocess.Popen(self.netns_argv(side, argv), **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, side: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` inside a namespace."""
        return subprocess.run(self.netns_argv(side, argv), **kwargs)

    def popen_a(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return self.popen("a", argv, **kwargs)

    def popen_b(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return self.popen("b", argv, **kwargs)

    def run_a(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return self.run("a", argv, **kwargs)

    def run_b(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return self.run("b", argv, **kwargs)

    def _ns(self, side: str) -> str:
        if not self._started or self._closed:
            raise RuntimeError("the TUN link is not running (use it inside `with TunLink(...)`)")
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', not {side!r}")
        return self.ns_a if side == "a" else self.ns_b

    # ------------------------------------------------------------------ observing

    @property
    def forwarder_pid(self) -> int | None:
        return self._forwarder.pid if self._forwarder is not None else None

    def forwarder_alive(self) -> bool:
        return self._forwarder is not None and self._forwarder.poll() is None

    def stats(self) -> dict[str, Any]:
        """Forwarder counters: ``link`` (per-direction model counters), reads/writes, ``cpu_s``.

        After close (or if the forwarder died) the last counters seen are returned.
        """
        if self._ctl is not None and self.forwarder_alive():
            try:
                self._ctl.sendall(b"stats\n")
                self._last_stats = self._read_reply(timeout=5.0)
            except (OSError, TimeoutError, ValueError):
                pass
        out = dict(self._last_stats)
        out["cc"] = dict(self.cc)
        out["namespaces"] = {"a": self.ns_a, "b": self.ns_b}
        out["addresses"] = {"a": ADDR_A, "b": ADDR_B}
        return out

    def _read_reply(self, timeout: float) -> dict[str, Any]:
        ctl = self._ctl
        if ctl is None:
            raise OSError("no control connection")
        deadline = time.monotonic() + timeout
        while b"\n" not in self._ctl_buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the TUN forwarder did not answer")
            ready, _, _ = select.select([ctl], [], [], left)
            if ready:
                chunk = ctl.recv(65536)
                if not chunk:
                    raise OSError("the TUN forwarder exited")
                self._ctl_buf += chunk
        line, self._ctl_buf = self._ctl_buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply


def _allow_congestion_control(cc: str) -> None:
    """Make ``cc`` one a namespace may default to.

    The kernel lets a namespace other than the initial one set tcp_congestion_control only to an
    algorithm in net.ipv4.tcp_allowed_congestion_control (a host-wide list, "reno bbr" on this VM),
    so pinning CUBIC adds it there. Only ever adds; nothing is removed.
    """
    proc = Path("/proc/sys/net/ipv4")
    available = (proc / "tcp_available_congestion_control").read_text().split()
    if cc not in available:
        raise TunUnavailable(
            f"TCP congestion control {cc!r} is not available here (available: {', '.join(available)})"
        )
    allowed = (proc / "tcp_allowed_congestion_control").read_text().split()
    if cc not in allowed:
        (proc / "tcp_allowed_congestion_control").write_text(" ".join([*allowed, cc]))


def _terminate(proc: subprocess.Popen[Any], grace: float = 1.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass
