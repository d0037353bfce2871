"""Small sans-I/O endpoints for testing the simulator (the real protocol lives in protocol/)."""

from __future__ import annotations

import hashlib

Address = tuple[str, int]


class StopAndWaitSender:
    """Sends ``payload`` in ``chunk``-byte pieces, one at a time, resending after ``rto`` seconds."""

    def __init__(self, peer: Address, payload: bytes, *, chunk: int = 1000, rto: float = 0.5) -> None:
        self.peer = peer
        self.chunks = [payload[i : i + chunk] for i in range(0, len(payload), chunk)] or [b""]
        self.rto = rto
        self.next = 0  # index of the chunk awaiting its ACK
        self.due: float | None = 0.0  # when to (re)send chunk `next`
        self.sent = 0
        self.done = False
        self.finished_at: float | None = None

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if data[:3] == b"ACK" and int.from_bytes(data[3:7], "big") == self.next:
            self.next += 1
            if self.next == len(self.chunks):
                self.done, self.due, self.finished_at = True, None, now
            else:
                self.due = now

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        if self.due is None or now < self.due:
            return []
        self.due = now + self.rto
        self.sent += 1
        last = b"L" if self.next == len(self.chunks) - 1 else b"D"
        return [(last + self.next.to_bytes(4, "big") + self.chunks[self.next], self.peer)]

    def get_timer(self) -> float | None:
        return self.due

    def handle_timer(self, now: float) -> None:
        pass  # datagrams_to_send resends when due


class StopAndWaitReceiver:
    """Acknowledges every chunk and reassembles the payload in order."""

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}
        self.last: int | None = None
        self.acks: list[tuple[bytes, Address]] = []
        self.duplicates = 0

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        seq = int.from_bytes(data[1:5], "big")
        if seq in self.parts:
            self.duplicates += 1
        self.parts[seq] = data[5:]
        if data[:1] == b"L":
            self.last = seq
        self.acks.append((b"ACK" + seq.to_bytes(4, "big"), addr))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self.acks = self.acks, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    @property
    def complete(self) -> bool:
        return self.last is not None and all(i in self.parts for i in range(self.last + 1))

    def payload(self) -> bytes:
        assert self.last is not None
        return b"".join(self.parts[i] for i in range(self.last + 1))


class Blaster:
    """Sends ``count`` numbered datagrams of ``size`` bytes at ``rate`` bits/s (paced by its timer)."""

    def __init__(self, peer: Address, count: int, *, size: int = 1000, rate: float = 10e6, start: float = 0.0) -> None:
        self.peer = peer
        self.count = count
        self.size = size
        self.interval = size * 8 / rate
        self.sent = 0
        self.next_at = start

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = []
        while self.sent < self.count and self.next_at <= now:
            out.append((self.sent.to_bytes(4, "big") + bytes(self.size - 4), self.peer))
            self.sent += 1
            self.next_at += self.interval
        return out

    def get_timer(self) -> float | None:
        return self.next_at if self.sent < self.count else None

    def handle_timer(self, now: float) -> None:
        pass


class Counter:
    """Counts arrivals per source and remembers when they came."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, Address, bytes]] = []
        self.by_source: dict[Address, int] = {}

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.arrivals.append((now, addr, data))
        self.by_source[addr] = self.by_source.get(addr, 0) + 1

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        return []

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


class TimerRecorder:
    """Records the times handle_timer is called; its timer list can be changed from outside."""

    def __init__(self, timers: list[float]) -> None:
        self.timers = sorted(timers)
        self.fired: list[float] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        return []

    def get_timer(self) -> float | None:
        return self.timers[0] if self.timers else None

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        while self.timers and self.timers[0] <= now:
            self.timers.pop(0)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
