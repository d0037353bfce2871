"""Real-time UDP relay: forwards datagrams between clients and one server through the link model.

No root needed and any UDP program works: point the client at the relay's listen address instead of
the server. Client -> server is the link's fwd direction. Every client address gets its own upstream
socket (so the server sees one peer per client and replies find their way back); all clients share
the link, i.e. one bottleneck queue and one set of random streams per direction.

The relay runs one event loop in its own thread (or in the caller's thread with
``serve_forever``): epoll, reads drained in batches, a heap of datagrams waiting for their delivery
time, no per-packet tasks or allocations beyond the datagram itself.

    with UdpRelay("127.0.0.1:0", "127.0.0.1:9000", "loss=5% delay=20ms", seed=1) as relay:
        port = relay.listen_addr[1]          # send here instead of to port 9000
        ...
        print(relay.stats())

    async with UdpRelay(("127.0.0.1", 9001), ("127.0.0.1", 9000), "satellite") as relay: ...
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from netsim.model import LinkModel
from netsim.pcap import PcapWriter
from netsim.spec import DirectionSpec, LinkSpec

__all__ = ["AddressLike", "UdpRelay", "parse_hostport"]

Address = tuple[str, int]
AddressLike = str | tuple[str, int]

_BATCH = 256  # datagrams read from one socket before looking at the others
_SOCK_BUFFER = 4 << 20
_SWEEP_INTERVAL = 1.0


def parse_hostport(value: AddressLike, *, default_host: str = "127.0.0.1") -> Address:
    """``"127.0.0.1:9000"``, ``"[::1]:9000"``, ``"9000"`` or a tuple -> (host, port)."""
    if isinstance(value, tuple):
        host, port = value
        return str(host), int(port)
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {value!r}: write [v6addr]:port")
        port_text = rest[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    else:
        host, port_text = default_host, text
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad address {value!r}: the port must be a number from 0 to 65535")
    return host or default_host, int(port_text)


def _resolve(addr: Address) -> tuple[socket.AddressFamily, Address]:
    try:
        infos = socket.getaddrinfo(addr[0], addr[1], type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {addr[0]!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


def _udp_socket(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, _SOCK_BUFFER)
        except OSError:
            pass
    sock.setblocking(False)
    return sock


class _Client:
    __slots__ = ("addr", "fd", "last_seen", "sock")

    def __init__(self, addr: Address, sock: socket.socket, now: float) -> None:
        self.addr = addr
        self.sock = sock
        self.fd = sock.fileno()
        self.last_seen = now


class UdpRelay:
    """A UDP relay through the link model. Sync and async context manager; see the module docstring.

    ``listen`` is where clients send (port 0 picks a free port: read ``listen_addr``), ``to`` the
    server. ``pcap`` records every datagram as it leaves the link (with IPv4/IPv6 + UDP headers).
    Upstream sockets idle for ``idle_timeout`` seconds are closed; at most ``max_clients`` clients
    are served at once (datagrams from more are dropped and counted).
    """

    def __init__(
        self,
        listen: AddressLike,
        to: AddressLike,
        spec: LinkSpec | DirectionSpec | str | None = None,
        *,
        seed: int = 0,
        pcap: str | Path | None = None,
        idle_timeout: float = 300.0,
        max_clients: int = 4096,
    ) -> None:
        self.spec = LinkSpec.coerce(spec)
        self.seed = seed
        self._listen_req = parse_hostport(listen)
        self._to_req = parse_hostport(to)
        self.pcap_path = Path(pcap) if pcap is not None else None
        if idle_timeout <= 0 or max_clients < 1:
            raise ValueError("idle_timeout must be > 0 seconds and max_clients >= 1")
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self.model: LinkModel | None = None
        self.listen_addr: Address = self._listen_req
        self.to_addr: Address = self._to_req
        self._sock: socket.socket | None = None
        self._clients: dict[Address, _Client] = {}
        self._by_fd: dict[int, _Client] = {}
        self._heap: list[tuple[float, int, _Client, bytes, bool]] = []
        self._seq = itertools.count()
        self._pcap: PcapWriter | None = None
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._running = False
        self._started_at = 0.0
        self._wall_offset = 0.0
        self._error: BaseException | None = None
        # Set by open(); the loop uses them without None checks.
        self._listen_sock: socket.socket
        self._poller: select.epoll
        self._to_family: socket.AddressFamily
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "from_clients",
                "from_server",
                "to_server",
                "to_clients",
                "send_errors",
                "recv_errors",
                "clients_total",
                "clients_rejected",
                "clients_expired",
            ),
            0,
        )

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> UdpRelay:
        """Bind the listening socket and build the model (done by start/serve_forever)."""
        if self._sock is not None:
            return self
        family, listen = _resolve(self._listen_req)
        self._to_family, self.to_addr = _resolve(self._to_req)
        sock = _udp_socket(family)
        try:
            sock.bind(listen)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}") from None
        self._sock = self._listen_sock = sock
        self._poller = select.epoll()
        bound = sock.getsockname()
        self.listen_addr = (str(bound[0]), int(bound[1]))
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._started_at = time.monotonic()
        self._wall_offset = time.time() - self._started_at
        overhead = 28 if self._to_family == socket.AF_INET else 48
        self.model = LinkModel(self.spec, self.seed, epoch=self._started_at, header_overhead=overhead)
        self._fwd_transmit = self.model.fwd.transmit
        self._rev_transmit = self.model.rev.transmit
        if self.pcap_path is not None:
            self._pcap = PcapWriter(self.pcap_path)
        return self

    def start(self) -> UdpRelay:
        """Open and run the relay in a background thread; returns self."""
        if self._thread is not None:
            return self
        self.open()
        self._running = True
        self._thread = threading.Thread(target=self._run_guarded, name="netsim-relay", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self, on_tick: Callable[[UdpRelay], None] | None = None, tick: float = 1.0) -> None:
        """Run the relay in the calling thread until ``stop()`` or KeyboardInterrupt."""
        self.open()
        self._running = True
        try:
            self._loop(on_tick, tick)
        finally:
            self._running = False
            self._close_sockets()

    def stop(self) -> None:
        """Stop the loop, close every socket and the pcap file. Safe to call twice."""
        self._stopping = True
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        elif self._running:
            return  # serve_forever() runs in another thread and closes everything as it returns
        self._close_sockets()
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"the relay loop failed: {err!r}") from err

    close = stop

    def __enter__(self) -> UdpRelay:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> UdpRelay:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def running(self) -> bool:
        return self._running and not self._stopping

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """Relay counters, active clients and the link's per-direction counters. Read while the
        relay runs, a counter may trail the datagram it counts by a moment (the relay's thread
        sends, then counts); after stop() they are final."""
        out: dict[str, Any] = dict(self.counters)
        out["clients_active"] = len(self._clients)
        out["queued"] = len(self._heap)
        out["uptime_s"] = time.monotonic() - self._started_at if self._started_at else 0.0
        out["link"] = self.model.stats() if self.model is not None else {}
        return out

    # ------------------------------------------------------------------ loop

    def _run_guarded(self) -> None:
        try:
            self._loop(None, 1.0)
        except BaseException as exc:  # reported by stop(); a thread must not die silently
            self._error = exc
        finally:
            self._running = False

    def _loop(self, on_tick: Callable[[UdpRelay], None] | None, tick: float) -> None:
        sock, model, poller = self._sock, self.model, self._poller
        if sock is None or model is None:
            raise RuntimeError("relay not opened")
        listen_fd = sock.fileno()
        poller.register(listen_fd, select.EPOLLIN)
        poller.register(self._wake_r, select.EPOLLIN)
        heap = self._heap
        clock = time.monotonic
        sweep_every = max(0.01, min(_SWEEP_INTERVAL, self.idle_timeout / 2))
        next_sweep = clock() + sweep_every
        next_tick = clock() + tick
        try:
            while not self._stopping:
                timeout = sweep_every
                if heap:
                    timeout = min(timeout, max(0.0, heap[0][0] - clock()))
                if on_tick is not None:
                    timeout = min(timeout, max(0.0, next_tick - clock()))
                events = poller.poll(timeout)
                now = clock()
                for fd, _ in events:
                    if fd == listen_fd:
                        self._from_clients(sock, now)
                    elif fd == self._wake_r:
                        try:
                            os.read(self._wake_r, 4096)
                        except BlockingIOError:
                            pass
                    else:
                        client = self._by_fd.get(fd)
                        if client is not None:
                            self._from_server(client, now)
                if heap:
                    self._release(clock())
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + sweep_every
                if on_tick is not None and now >= next_tick:
                    on_tick(self)
                    next_tick = now + tick
        finally:
            poller.close()

    def _client_for(self, addr: Address, now: float) -> _Client | None:
        client = self._clients.get(addr)
        if client is not None:
            client.last_seen = now
            return client
        if len(self._clients) >= self.max_clients:
            self.counters["clients_rejected"] += 1
            return None
        up = _udp_socket(self._to_family)
        up.connect(self.to_addr)
        client = _Client(addr, up, now)
        self._clients[addr] = client
        self._by_fd[client.fd] = client
        self._poller.register(client.fd, select.EPOLLIN)
        self.counters["clients_total"] += 1
        return client

    def _from_clients(self, sock: socket.socket, now: float) -> None:
        transmit = self._fwd_transmit
        heap, seq = self._heap, self._seq
        counters = self.counters
        for _ in range(_BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                counters["recv_errors"] += 1
                return
            counters["from_clients"] += 1
            client = self._client_for((addr[0], addr[1]), now)
            if client is None:
                continue
            for t, d in transmit(data, now):
                if t <= now:
                    self._deliver(client, d, True)
                else:
                    heapq.heappush(heap, (t, next(seq), client, d, True))

    def _from_server(self, client: _Client, now: float) -> None:
        transmit = self._rev_transmit
        heap, seq = self._heap, self._seq
        counters = self.counters
        client.last_seen = now
        recv = client.sock.recv
        for _ in range(_BATCH):
            try:
                data = recv(65535)
            except BlockingIOError:
                return
            except OSError:  # e.g. ECONNREFUSED from an earlier datagram: the server is not there
                counters["recv_errors"] += 1
                continue
            counters["from_server"] += 1
            for t, d in transmit(data, now):
                if t <= now:
                    self._deliver(client, d, False)
                else:
                    heapq.heappush(heap, (t, next(seq), client, d, False))

    def _deliver(self, client: _Client, data: bytes, to_server: bool) -> None:
        try:
            if to_server:
                client.sock.send(data)
                self.counters["to_server"] += 1
            else:
                self._listen_sock.sendto(data, client.addr)
                self.counters["to_clients"] += 1
        except OSError:  # full buffer or unreachable: UDP drops it
            self.counters["send_errors"] += 1
            return
        if self._pcap is not None:
            ts = time.monotonic() + self._wall_offset
            if to_server:
                self._pcap.write_udp(client.addr, self.to_addr, data, ts)
            else:
                self._pcap.write_udp(self.to_addr, client.addr, data, ts)

    def _release(self, now: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        deliver = self._deliver
        while heap and heap[0][0] <= now:
            _, _, client, data, to_server = pop(heap)
            if client.fd >= 0:
                deliver(client, data, to_server)

    def _sweep(self, now: float) -> None:
        cutoff = now - self.idle_timeout
        for addr, client in list(self._clients.items()):
            if client.last_seen < cutoff:
                self._drop_client(addr, client)
                self.counters["clients_expired"] += 1

    def _drop_client(self, addr: Address, client: _Client) -> None:
        self._clients.pop(addr, None)
        self._by_fd.pop(client.fd, None)
        try:
            self._poller.unregister(client.fd)
        except (OSError, ValueError):
            pass
        client.sock.close()
        client.fd = -1

    def _close_sockets(self) -> None:
        for client in list(self._clients.values()):
            client.sock.close()
            client.fd = -1
        self._clients.clear()
        self._by_fd.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._pcap is not None:
            self._pcap.close()
            self._pcap = None
