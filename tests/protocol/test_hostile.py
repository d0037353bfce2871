"""Bad input never escapes the core and never makes it allocate beyond its limits (issue 2, spec 4.2, 14).

Each case crafts datagrams with the codec, delivers them to a live endpoint through the simulator,
and checks the treatment the spec gives them: drop and count, or abort with a specific code.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.codec import Announce, Data, Nack
from protocol.config import SessionConfig
from protocol.connection import Connection
from protocol.constants import ErrorCode
from protocol.endpoint import Endpoint
from protocol.events import ConnectionClosed, ObjectFailed

from .harness import CLIENT, SERVER, Pair


def established(seed: int = 1, **server_kwargs: object) -> Pair:
    pair = Pair("rtt=20ms", seed=seed, server_config=SessionConfig(**server_kwargs) if server_kwargs else None)  # type: ignore[arg-type]
    pair.run_until(lambda: bool(pair.server.sessions) and pair.conn.is_open, timeout=5)
    pair.sim.run_for(0.1)
    return pair


def inject(pair: Pair, packet: codec.Packet, *, to_server: bool = True, session_id: int | None = None,
           run_for: float = 0.05) -> None:
    """Send ``packet`` as if from the client (or the server), with the packet number it would use,
    and run the simulator ``run_for`` seconds."""
    sid = pair.conn.session_id if session_id is None else session_id
    sender = pair.conn if to_server else server_conn(pair)
    size = len(codec.encode(packet, sid, 0))
    pn = sender.sent.on_sent(pair.sim.now, size)
    data = codec.encode(packet, sid, pn)
    src, dst = (CLIENT, SERVER) if to_server else (SERVER, CLIENT)
    pair.sim.inject(data, src, dst, through_link=False)
    if run_for:
        pair.sim.run_for(run_for)


def server_conn(pair: Pair):  # type: ignore[no-untyped-def]
    return next(iter(pair.server.sessions.values()))


def test_announcement_claiming_4gb_is_refused_without_allocation() -> None:
    pair = established(max_object_size=1 << 20, max_buffered_bytes=1 << 20)
    big = Announce(0, 4 << 30, 1024, 4 << 20, hashlib.sha256(b"").digest(), "image/jpeg", "huge")
    inject(pair, big)
    conn = server_conn(pair)
    assert 0 not in conn.incoming  # nothing allocated
    failed = pair.server_log.of(ObjectFailed)
    assert failed and failed[0].error_code == ErrorCode.OBJECT_TOO_LARGE


def test_chunk_index_beyond_the_count_aborts_with_protocol_violation() -> None:
    pair = established()
    inject(pair, Announce(0, 3000, 1024, 3, hashlib.sha256(bytes(3000)).digest(), "image/png", "a"))
    inject(pair, Data(0, 7, bytes(1024)))
    [closed] = pair.server_log.of(ConnectionClosed)
    assert closed.error_code == ErrorCode.PROTOCOL_VIOLATION and not closed.by_peer


def test_nack_for_chunks_that_do_not_exist_aborts() -> None:
    pair = established()
    oid = pair.send(bytes(5000), name="x")
    pair.run_until(lambda: pair.finished([oid]), timeout=5)
    pair.send(bytes(5000), name="y")  # object 1 in flight
    pair.sim.run_for(0.001)
    inject(pair, Nack(1, ((100, 5),), largest_pn=0), to_server=False, session_id=pair.conn.session_id)
    closed = pair.client_log.of(ConnectionClosed)
    assert closed and closed[0].error_code == ErrorCode.PROTOCOL_VIOLATION


def test_spoofed_session_id_is_dropped_and_counted() -> None:
    pair = established()
    before = pair.server.drops["unknown_session"]
    inject(pair, Data(0, 0, b"x"), session_id=0xDEADBEEF)
    assert pair.server.drops["unknown_session"] == before + 1
    assert pair.conn.is_open


def test_wrong_source_address_is_dropped() -> None:
    pair = established()
    pair.sim.add_endpoint(Endpoint(), ("client", 4999))
    data = codec.encode(Data(0, 0, b"x"), pair.conn.session_id, 5)
    pair.sim.inject(data, ("client", 4999), SERVER, through_link=False)
    pair.sim.run_for(0.05)
    assert pair.server.drops["address_mismatch"] == 1


def test_truncated_and_oversized_datagrams_are_dropped() -> None:
    ep = Endpoint(SessionConfig(), server=True)
    good = codec.encode(Data(0, 0, b"abc"), 1, 1)
    ep.receive_datagram(good[:-1], CLIENT, 0.0)
    ep.receive_datagram(good + b"\0", CLIENT, 0.0)
    ep.receive_datagram(bytes(70_000), CLIENT, 0.0)
    assert ep.drops["truncated"] == 1 and ep.drops["trailing_bytes"] == 1 and ep.drops["oversized"] == 1


def test_spoofed_initials_cannot_make_the_server_hold_unbounded_state() -> None:
    ep = Endpoint(SessionConfig(max_pending_handshakes=16), server=True)
    rng = random.Random(3)
    for i in range(1000):
        initial = codec.encode(codec.Initial(), rng.getrandbits(63) + 1, 0)
        ep.receive_datagram(initial, (f"10.0.{i // 250}.{i % 250}", 1000 + i), float(i) / 1000)
    assert len(ep.sessions) <= 16
    assert ep.counters["retries_sent"] >= 1000 - 16


def test_a_datagram_for_one_session_leaves_the_others_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood's half-open sessions must not make each datagram cost a poll of every session: only
    the session that a datagram, a timer or the application wakes is asked for output and for its
    next timer. The untouched ones still time out on their own clock."""
    polled: Counter[int] = Counter()
    for name in ("next_timer", "datagrams_to_send"):
        original = getattr(Connection, name)

        def counting(self: Connection, *args: float, _original: Any = original) -> Any:
            polled[id(self)] += 1
            return _original(self, *args)

        monkeypatch.setattr(Connection, name, counting)
    ep = Endpoint(SessionConfig(retry="never", handshake_timeout=2.0), server=True)
    rng = random.Random(5)
    for i in range(100):
        ep.receive_datagram(codec.encode(codec.Initial(), rng.getrandbits(63) | 1, 0), ("10.0.0.1", 1000 + i), 0.0)
    ep.datagrams_to_send(0.0)
    ep.get_timer()
    [(sid, kept)] = [(s, c) for s, c in ep.sessions.items() if c.peer == ("10.0.0.1", 1000)]

    def pump(now: float) -> None:
        timer = ep.get_timer()
        if timer is not None and timer <= now:
            ep.handle_timer(now)
        ep.datagrams_to_send(now)
        ep.get_timer()

    polled.clear()
    pn = 0
    for step in range(1, 51):
        pn += 1
        ep.receive_datagram(codec.encode(codec.Ping(), sid, pn), kept.peer, step * 0.01)
        pump(step * 0.01)
    assert set(polled) == {id(kept)}
    for step in range(6, 31):  # to 3 s, past the others' handshake timeout
        pn += 1
        ep.receive_datagram(codec.encode(codec.Ping(), sid, pn), kept.peer, step * 0.1)
        pump(step * 0.1)
    assert list(ep.sessions.values()) == [kept]
    assert kept.is_open


def _lapse(ep: Endpoint, clients: list[tuple[str, int]], now: float) -> list[tuple[int, int]]:
    """Open an unvalidated session from each client and let them all pass the handshake timeout;
    their session ids, from the ACCEPTs, with the highest packet number of those."""
    rng = random.Random(7)
    for addr in clients:
        ep.receive_datagram(codec.encode(codec.Initial(), rng.getrandbits(63) | 1, 0), addr, now)
    accepts: dict[tuple[str, int], tuple[int, int]] = {}
    for data, addr in ep.datagrams_to_send(now):
        decoded = codec.decode(data)
        assert isinstance(decoded.packet, codec.Accept)
        accepts[addr] = (decoded.packet.session_id, max(decoded.packet_number, accepts.get(addr, (0, 0))[1]))
    ep.handle_timer(now + ep.config.handshake_timeout + 0.001)
    assert not ep.sessions
    return [accepts[addr] for addr in clients]


def test_a_lapsed_session_is_restored_only_for_its_own_address_and_within_the_idle_timeout() -> None:
    """R7.4-6: the record of a session discarded unvalidated speaks only for the address its ACCEPT
    went to; from anywhere else the session id is unknown, as it is once an idle timeout passed."""
    ep = Endpoint(SessionConfig(retry="never"), server=True)
    a, b = ("10.0.0.1", 1000), ("10.0.0.2", 1000)
    (sid_a, last_pn), (sid_b, _) = _lapse(ep, [a, b], 0.0)
    ep.receive_datagram(codec.encode(codec.Ping(), sid_a, 3), b, 11.0)
    assert ep.drops["unknown_session"] == 1 and not ep.sessions
    ep.receive_datagram(codec.encode(codec.Ping(), sid_a, 3), a, 11.0)
    assert list(ep.sessions) == [sid_a] and ep.sessions[sid_a].state.value == "established"
    # The PING's ACK, numbered on from the ACCEPT: the client sees no packet number twice.
    answer = [codec.decode(data) for data, addr in ep.datagrams_to_send(11.0) if addr == a]
    assert [(d.session_id, type(d.packet)) for d in answer] == [(sid_a, codec.Ack)]
    assert answer[0].packet_number == last_pn + 1
    ep.receive_datagram(codec.encode(codec.Ping(), sid_b, 3), b, 10.0 + 30.0 + 0.01)
    assert sid_b not in ep.sessions and ep.drops["unknown_session"] == 2


def test_a_flood_of_lapsed_handshakes_keeps_a_bounded_number_of_records() -> None:
    """R7.4-6: spoofed INITIALs lapse like real ones, and each leaves a record; the records are
    bounded (4 per allowed pending handshake), the oldest going first."""
    ep = Endpoint(SessionConfig(retry="never", max_pending_handshakes=4), server=True)
    clients = [(f"10.0.1.{i}", 2000) for i in range(40)]
    ids = [sid for sid, _ in _lapse(ep, clients, 0.0)]
    for addr, sid in zip(clients, ids, strict=True):
        ep.receive_datagram(codec.encode(codec.Ping(), sid, 3), addr, 11.0)
    restored = [sid for sid in ids if sid in ep.sessions]
    assert restored == ids[-16:]
    assert ep.drops["unknown_session"] == 24


def test_server_never_sends_more_than_three_times_what_an_unvalidated_client_sent() -> None:
    ep = Endpoint(SessionConfig(), server=True)
    initial = codec.encode(codec.Initial(), 77, 0)
    ep.receive_datagram(initial, CLIENT, 0.0)
    sent = 0
    for step in range(200):
        now = step * 0.05
        ep.handle_timer(now)
        sent += sum(len(d) for d, _ in ep.datagrams_to_send(now))
    assert 0 < sent <= 3 * len(initial)


def test_unknown_version_initial_gets_version_negotiation() -> None:
    ep = Endpoint(SessionConfig(), server=True)
    raw = bytearray(codec.encode(codec.Initial(), 55, 0))
    raw[2] = 9  # version 9
    body = bytes(raw[:-4])
    raw = bytearray(body + codec.crc32c(body).to_bytes(4, "big"))
    ep.receive_datagram(bytes(raw), CLIENT, 0.0)
    [(reply, addr)] = ep.datagrams_to_send(0.0)
    decoded = codec.decode(reply)
    assert addr == CLIENT and decoded.session_id == 55
    assert decoded.packet == codec.VersionNegotiation((codec.VERSION,))
    assert len(reply) <= len(raw)


def _client_answered_with_version(versions: tuple[int, ...]) -> tuple[Endpoint, list[object]]:
    """A client whose INITIAL draws a VERSION listing ``versions``; its events after that."""
    ep = Endpoint(SessionConfig(), server=False)
    ep.connect(SERVER, 0.0)
    initial_id = codec.decode(ep.datagrams_to_send(0.0)[0][0]).session_id
    ep.receive_datagram(codec.encode(codec.VersionNegotiation(versions), initial_id, 0), SERVER, 0.01)
    events = []
    while (event := ep.next_event()) is not None:
        events.append(event)
    return ep, events


def test_a_version_listing_our_own_version_is_ignored() -> None:
    # spec R3-10: a genuine server that speaks our version would have answered, not negotiated.
    ep, events = _client_answered_with_version((7, codec.VERSION))
    assert not any(isinstance(e, ConnectionClosed) for e in events)
    later = ep.get_timer()
    assert later is not None
    ep.handle_timer(later)
    assert any(isinstance(codec.decode(d).packet, codec.Initial) for d, _ in ep.datagrams_to_send(later))


def test_a_version_listing_only_snip_1_abandons_the_handshake() -> None:
    # spec R3-11: a version-2 client does not speak SNIP/1.
    _, events = _client_answered_with_version((1,))
    [closed] = [e for e in events if isinstance(e, ConnectionClosed)]
    assert closed.error_code == ErrorCode.VERSION_MISMATCH and "not 2" in closed.reason


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=0, max_size=1500), min_size=1, max_size=30), st.integers(0, 2**32))
def test_arbitrary_datagrams_never_raise_and_never_break_a_transfer(junk: list[bytes], seed: int) -> None:
    pair = Pair("loss=5% rtt=30ms", seed=seed % 1000)
    data = random.Random(seed).randbytes(60_000)
    oid = pair.send(data, name="legit", content_type="image/jpeg")
    pair.sim.run_for(0.03)
    sid = pair.conn.session_id
    for i, blob in enumerate(junk):
        # half raw junk, half junk dressed as a well-formed SNIP datagram of a random type
        if i % 2 and len(blob) >= 1:
            blob = codec.encode(Data(blob[0] + 5, 0, blob or b"x"), sid, 50_000 + i) if blob[0] % 3 == 0 else blob
        pair.sim.inject(blob, CLIENT, SERVER, through_link=False)
        pair.sim.inject(blob, SERVER, CLIENT, through_link=False)
    pair.run_until(lambda: pair.finished([oid]), timeout=60)
    received = pair.server_log.received()
    assert all(r.data == data for r in received if r.name == "legit")


def test_tiny_chunks_and_repairs_for_unannounced_objects_hold_few_entries() -> None:
    # R9.1-6, R9.6-3: what waits for an ANNOUNCE is bounded in bytes, each entry counted with the
    # cost of its keeping; a flood of 1-byte chunks and REPAIRs cannot turn the bound into
    # thousands of entries.
    pair = established(unannounced_buffer=8 << 10)
    conn = server_conn(pair)
    sid = pair.conn.session_id
    for k in range(2000):
        packet: codec.Packet = Data(k % 4, k, b"x") if k % 2 else codec.Repair(k % 4, 0, k + 1, 1, b"y")
        pn = pair.conn.sent.on_sent(pair.sim.now, 40)
        pair.sim.inject(codec.encode(packet, sid, pn), CLIENT, SERVER, through_link=False)
    pair.sim.run_for(0.2)
    held = sum(map(len, conn._unannounced.values())) + sum(map(len, conn._unannounced_repairs.values()))
    assert 0 < held <= (8 << 10) // 128
    assert conn.counters["unannounced_dropped"] >= 2000 - (8 << 10) // 128
    # (Our own client, which never sent those, then closes the session on the server's requests
    # for their ANNOUNCEs: that is the client's business, R9.3-1.)


def test_announcements_past_the_servers_receiving_budget_are_refused_without_allocation() -> None:
    # spec R14.4-1: every session may announce max_buffered_bytes, and a peer can open many
    # sessions; what the server holds across them stays within max_receiving_bytes. Past it an
    # ANNOUNCE is refused (CANCEL, REFUSED) and nothing is allocated; once an object is done with,
    # its bytes count no more.
    pair = established(max_object_size=1 << 20, max_buffered_bytes=8 << 20, max_receiving_bytes=2 << 20)
    conn = server_conn(pair)
    first = bytes(range(256)) * 4096  # 1 MiB in 1024 chunks
    digest = hashlib.sha256(first).digest()
    # (Within a few ms: our own client, which never sent these, closes the session when the
    # server's NACKs for them reach it, 10 ms away.)
    for oid in (0, 1, 2):
        inject(pair, Announce(oid, len(first), 1024, 1024, digest, "image/png", f"o{oid}"), run_for=0)
    pair.sim.run_for(0.001)
    assert sorted(conn.incoming) == [0, 1] and conn.incoming_bytes == 2 << 20
    assert pair.server.receiving_bytes() == 2 << 20
    [refused] = pair.server_log.of(ObjectFailed)
    assert refused.object_id == 2 and refused.error_code == ErrorCode.REFUSED and "receiver busy" in refused.reason
    for index in range(1024):
        inject(pair, Data(0, index, first[index * 1024:(index + 1) * 1024]), run_for=0)
    pair.sim.run_for(0.001)
    assert 0 not in conn.incoming and pair.server_log.received()[0].data == first
    assert conn.incoming_bytes == 1 << 20
    inject(pair, Announce(3, len(first), 1024, 1024, digest, "image/png", "o3"), run_for=0)
    pair.sim.run_for(0.001)
    assert sorted(conn.incoming) == [1, 3]

