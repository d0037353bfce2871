"""The real-time UDP relay on loopback."""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netsim.model import LinkModel
from netsim.pcap import internet_checksum, read_pcap
from netsim.relay import UdpRelay, parse_hostport


class UdpServer:
    """A loopback UDP server in a thread: counts what arrives and optionally echoes it."""

    def __init__(self, echo: bool) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.addr = self.sock.getsockname()
        self.echo = echo
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.received.append((data, addr))
            if self.echo:
                self.sock.sendto(data, addr)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def echo_server() -> Iterator[UdpServer]:
    server = UdpServer(echo=True)
    yield server
    server.close()


@pytest.fixture
def sink_server() -> Iterator[UdpServer]:
    server = UdpServer(echo=False)
    yield server
    server.close()


def wait_for(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait for in-flight datagrams to settle (a safety limit, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    return sock


def send_numbered(sock: socket.socket, dest: tuple[str, int], n: int, size: int = 200) -> None:
    for i in range(n):
        sock.sendto(i.to_bytes(4, "big") + bytes(size - 4), dest)
        if i % 50 == 49:
            time.sleep(0.001)  # keep socket buffers from overflowing: only the link may drop


def test_relay_applies_the_configured_loss(sink_server: UdpServer) -> None:
    n, p = 3000, 0.2
    with UdpRelay("127.0.0.1:0", sink_server.addr, "loss=20%", seed=11) as relay:
        client = client_socket()
        send_numbered(client, relay.listen_addr, n)
        wait_for(lambda: relay.stats()["link"]["fwd"]["sent"] == n)
        wait_for(lambda: len(sink_server.received) == relay.stats()["link"]["fwd"]["passed"])
        stats = relay.stats()
        client.close()
    lost = 1 - len(sink_server.received) / n
    assert abs(lost - p) <= 4 * math.sqrt(p * (1 - p) / n), lost
    assert stats["link"]["fwd"]["dropped_by_cause"]["loss"] == n - len(sink_server.received)
    assert stats["send_errors"] == 0 and stats["clients_total"] == 1
    # The server sees one peer: the relay's upstream socket for this client.
    assert len({addr for _, addr in sink_server.received}) == 1

    # Same seed, same fates: the model alone predicts exactly which datagrams got through.
    model = LinkModel("loss=20%", seed=11).fwd
    predicted = {i for i in range(n) if model.transmit(b"", 0.0)}
    assert {int.from_bytes(d[:4], "big") for d, _ in sink_server.received} == predicted


def test_echo_exchange_both_directions_and_never_early(echo_server: UdpServer) -> None:
    with UdpRelay(("127.0.0.1", 0), echo_server.addr, "delay=30ms | rev: loss=50%", seed=2) as relay:
        client = client_socket()
        sent_at: dict[bytes, float] = {}
        for i in range(40):
            msg = b"ping %d" % i
            sent_at[msg] = time.monotonic()
            client.sendto(msg, relay.listen_addr)
            time.sleep(0.002)
        wait_for(lambda: relay.stats()["link"]["rev"]["sent"] == 40)
        client.settimeout(0.5)
        rtts: dict[bytes, float] = {}
        try:
            while len(rtts) < 40:
                reply = client.recv(100)
                rtts[reply] = time.monotonic() - sent_at[reply]
        except TimeoutError:
            pass
        stats = relay.stats()
        client.close()
    assert len(echo_server.received) == 40  # fwd has no loss
    assert len(rtts) == stats["link"]["rev"]["passed"] and 5 < len(rtts) < 35
    assert min(rtts.values()) >= 0.060  # two one-way delays; the relay never delivers early


def test_many_clients_each_get_their_own_replies(echo_server: UdpServer) -> None:
    with UdpRelay("127.0.0.1:0", echo_server.addr, "delay=5ms") as relay:
        clients = [client_socket() for _ in range(8)]
        for round_ in range(10):
            for k, c in enumerate(clients):
                c.sendto(f"client {k} msg {round_}".encode(), relay.listen_addr)
        for k, c in enumerate(clients):
            c.settimeout(2.0)
            got = sorted(c.recv(100).decode() for _ in range(10))
            assert got == sorted(f"client {k} msg {r}" for r in range(10))
        stats = relay.stats()
        for c in clients:
            c.close()
    assert stats["clients_total"] == 8 and stats["clients_active"] == 8
    assert len({addr for _, addr in echo_server.received}) == 8


def test_async_context_manager(echo_server: UdpServer) -> None:
    async def main() -> tuple[list[bytes], dict[str, object]]:
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                replies.put_nowait(data)

        async with UdpRelay("127.0.0.1:0", echo_server.addr, "delay=10ms", seed=1) as relay:
            transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=relay.listen_addr)
            for i in range(5):
                transport.sendto(b"hello %d" % i)
            got = [await asyncio.wait_for(replies.get(), 5) for _ in range(5)]
            transport.close()
        # Read once the relay's thread has stopped: while it runs, the last reply can reach the
        # client before the thread counts it (CI read 4 of 5 once).
        return got, relay.stats()

    got, stats = asyncio.run(main())
    assert sorted(got) == [b"hello %d" % i for i in range(5)]
    assert stats["to_clients"] == 5


def test_pcap_records_what_crossed(echo_server: UdpServer, tmp_path: Path) -> None:
    pcap = tmp_path / "relay.pcap"
    with UdpRelay("127.0.0.1:0", echo_server.addr, "loss=10%", seed=3, pcap=pcap) as relay:
        client = client_socket()
        send_numbered(client, relay.listen_addr, 200, size=100)

        def settled() -> bool:
            link = relay.stats()["link"]
            return bool(link["fwd"]["sent"] == 200 and link["rev"]["sent"] == link["fwd"]["passed"])

        wait_for(settled)
        client_port = client.getsockname()[1]
        client.close()
    stats = relay.stats()  # after stop: nothing is still being written
    linktype, packets = read_pcap(pcap)
    assert linktype == 101
    assert len(packets) == stats["to_server"] + stats["to_clients"]
    for _, pkt in packets:
        assert pkt[0] == 0x45 and internet_checksum(pkt[:20]) == 0
        total, proto = struct.unpack_from("!H", pkt, 2)[0], pkt[9]
        assert total == len(pkt) and proto == 17
        sport, dport, ulen = struct.unpack_from("!HHH", pkt, 20)
        assert ulen == len(pkt) - 20 and len(pkt) - 28 == 100
        assert {sport, dport} == {client_port, echo_server.addr[1]}


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_hostport("[::1]:53") == ("::1", 53)
    assert parse_hostport("9001") == ("127.0.0.1", 9001)
    for bad in ("host:port", "1.2.3.4:70000", "[::1]"):
        with pytest.raises(ValueError, match="bad address"):
            parse_hostport(bad)


def test_idle_clients_expire_and_the_client_limit_holds(echo_server: UdpServer) -> None:
    with UdpRelay("127.0.0.1:0", echo_server.addr, idle_timeout=0.2, max_clients=2) as relay:
        clients = [client_socket() for _ in range(3)]
        for c in clients:
            c.sendto(b"hi", relay.listen_addr)
        wait_for(lambda: relay.stats()["from_clients"] == 3)
        stats = relay.stats()
        assert stats["clients_total"] == 2 and stats["clients_rejected"] == 1
        wait_for(lambda: relay.stats()["clients_expired"] == 2)
        assert relay.stats()["clients_active"] == 0
        clients[2].sendto(b"again", relay.listen_addr)  # room again: a fresh upstream socket
        clients[2].settimeout(2)
        assert clients[2].recv(100) == b"again"
        for c in clients:
            c.close()
