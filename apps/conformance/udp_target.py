"""Live targets over real UDP: a receiver the tester connects to, or a sender that comes to it.

With a link string, netsim's UDP relay (its link model, in this process) sits between the tester
and the target, so a live implementation can be judged across loss, delay and reordering.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import time
from collections import deque

from netsim.relay import UdpRelay
from protocol import codec
from protocol.constants import PacketType
from protocol.errors import DecodeError

from .model import Unsupported
from .target import Addr, Arrival, Channel, Target, link_path_delay

_MAX_DATAGRAM = 65535
_SOCK_BUFFER = 4 << 20


def resolve(host: str, port: int) -> tuple[socket.AddressFamily, Addr]:
    """Raises ValueError naming the host when it cannot be resolved."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


def _socket(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, _SOCK_BUFFER)
    return sock


def _loopback(family: socket.AddressFamily) -> str:
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def _recv(sock: socket.socket, timeout: float) -> tuple[bytes, Addr] | None:
    sock.settimeout(max(timeout, 0.0) or 1e-6)
    try:
        data, src = sock.recvfrom(_MAX_DATAGRAM)
    except (TimeoutError, BlockingIOError):
        return None
    except ConnectionRefusedError:  # ICMP port unreachable from an earlier send: nobody there yet
        return None
    return data, (str(src[0]), int(src[1]))


class _UdpChannel(Channel):
    def __init__(self, sock: socket.socket, peer: Addr) -> None:
        self._sock = sock
        self.peer = peer
        name = sock.getsockname()
        self.local = (str(name[0]), int(name[1]))

    def send(self, data: bytes, to: Addr | None = None) -> None:
        with contextlib.suppress(OSError):  # UDP: a send that fails is a datagram lost
            self._sock.sendto(data, to or self.peer)

    def recv(self, timeout: float) -> Arrival | None:
        deadline = time.monotonic() + timeout
        while True:
            got = _recv(self._sock, deadline - time.monotonic())
            if got is not None:
                return Arrival(got[0], got[1], time.monotonic())
            if time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        self._sock.close()


class _WallClock(Target):
    def __init__(self, link: str | None) -> None:
        self.path_delay = link_path_delay(link)
        self.slack = 0.05 + 2 * self.path_delay

    def clock(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))


class UdpTarget(_WallClock):
    """A live receiver at ``address``; every channel is a new socket (a new source address)."""

    role = "receiver"

    def __init__(self, host: str, port: int, *, link: str | None = None, seed: int = 0) -> None:
        super().__init__(link)
        self.family, self.address = resolve(host, port)
        self._relay: UdpRelay | None = None
        self._entry = self.address
        if link:
            listen = (_loopback(self.family), 0)
            self._relay = UdpRelay(listen, self.address, link, seed=seed).start()
            self._entry = self._relay.listen_addr
        self.description = f"receiver at {self.address[0]}:{self.address[1]}" + (f" across {link!r}" if link else "")

    def open_channel(self, peer: Addr | None = None) -> Channel:
        sock = _socket(self.family)
        sock.bind(("::" if self.family == socket.AF_INET6 else "0.0.0.0", 0))
        return _UdpChannel(sock, peer or self._entry)

    def close(self) -> None:
        if self._relay is not None:
            self._relay.stop()
            self._relay = None


class _ListenChannel(Channel):
    """The listening socket, seen by one case: only its sender's datagrams."""

    def __init__(self, listener: UdpListener, peer: Addr) -> None:
        self._listener = listener
        self.peer = peer
        self.local = listener.local

    def send(self, data: bytes, to: Addr | None = None) -> None:
        with contextlib.suppress(OSError):
            self._listener.sock.sendto(data, to or self.peer)

    def recv(self, timeout: float) -> Arrival | None:
        deadline = time.monotonic() + timeout
        while True:
            arrival = self._listener.pull(deadline - time.monotonic())
            if arrival is None:
                return None
            if arrival.src == self.peer:
                return arrival
            self._listener.keep_if_new_initial(arrival)


class UdpListener(_WallClock):
    """The tester as the receiver a live sender connects to, at ``listen``.

    Each sender-role case waits for a new INITIAL (an initial id not seen before): run the sender
    under test in a loop, or give ``exec_cmd``, a command started for every case ({host}, {port}
    and {addr} are replaced by where it should send) and stopped after it.
    """

    role = "sender"

    def __init__(
        self, host: str, port: int, *, link: str | None = None, seed: int = 0, exec_cmd: str | None = None
    ) -> None:
        super().__init__(link)
        self.family, listen = resolve(host, port)
        self.sock = _socket(self.family)
        self._relay: UdpRelay | None = None
        if link:
            # The relay owns the public address; the tester listens behind it, on loopback.
            self.sock.bind((_loopback(self.family), 0))
            behind = self.sock.getsockname()
            self._relay = UdpRelay(listen, (str(behind[0]), int(behind[1])), link, seed=seed).start()
            self.public = self._relay.listen_addr
        else:
            try:
                self.sock.bind(listen)
            except OSError as exc:
                self.sock.close()
                raise ValueError(f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}") from None
            name = self.sock.getsockname()
            self.public = (str(name[0]), int(name[1]))
        name = self.sock.getsockname()
        self.local = (str(name[0]), int(name[1]))
        self._backlog: deque[Arrival] = deque()
        self._seen: set[int] = set()
        self._exec = exec_cmd
        self._process: subprocess.Popen[bytes] | None = None
        self.description = f"sender connecting to {self.public[0]}:{self.public[1]}" + (
            f" across {link!r}" if link else ""
        )

    def pull(self, timeout: float) -> Arrival | None:
        got = _recv(self.sock, timeout)
        return None if got is None else Arrival(got[0], got[1], time.monotonic())

    def _new_initial_id(self, arrival: Arrival) -> int | None:
        data = arrival.data
        if len(data) < 22 or data[:2] != b"SN" or data[3] != PacketType.INITIAL:
            return None
        try:
            decoded = codec.decode(data)
        except DecodeError:
            return None
        return None if decoded.session_id in self._seen else decoded.session_id

    def keep_if_new_initial(self, arrival: Arrival) -> None:
        if self._new_initial_id(arrival) is not None:
            self._backlog.append(arrival)

    def _start_sender(self) -> None:
        if self._exec is None or (self._process is not None and self._process.poll() is None):
            return
        host, port = self.public
        addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        argv = shlex.split(self._exec.format(host=host, port=port, addr=addr))
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def await_sender(self, timeout: float) -> tuple[Channel, Arrival] | None:
        self._start_sender()
        deadline = time.monotonic() + timeout
        while True:
            arrival = self._backlog.popleft() if self._backlog else self.pull(deadline - time.monotonic())
            if arrival is None:
                return None
            initial_id = self._new_initial_id(arrival)
            if initial_id is not None:
                self._seen.add(initial_id)
                return _ListenChannel(self, arrival.src), arrival

    def open_channel(self, peer: Addr | None = None) -> Channel:
        if peer is None:
            raise ValueError("a sender-role channel needs the sender's address")
        if self._relay is not None:
            # The sender only hears the relay's upstream socket, which is connected to ours.
            raise Unsupported("a second tester address cannot reach the sender through the relay")
        sock = _socket(self.family)
        sock.bind(("::" if self.family == socket.AF_INET6 else "0.0.0.0", 0))
        return _UdpChannel(sock, peer)

    def end_case(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        self.end_case()
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        self.sock.close()
