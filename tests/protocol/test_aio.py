"""The asyncio binding over real UDP sockets on loopback (issue 2): IPv4 and IPv6."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import sys
import time

import pytest

from protocol.aio import InvalidObjectError, ObjectFailedError, ReceivedObject, SessionConfig, SessionError, _UdpSocket, connect, serve
from protocol.constants import ErrorCode


async def digest_handler(obj: ReceivedObject) -> bytes:
    return json.dumps({"name": obj.name, "sha256": hashlib.sha256(obj.data).hexdigest()}).encode()


async def round_trip(host: str) -> None:
    server = await serve(host, 0, digest_handler)
    try:
        _, port = server.sockname
        session = await connect(host, port)
        objects = [random.Random(i).randbytes(size) for i, size in enumerate((1, 1024, 50_000, 1_500_000))]
        async with session:
            handles = [session.send_object(d, name=f"o{i}", content_type="image/jpeg", want_reply=True)
                       for i, d in enumerate(objects)]
            for handle, data in zip(handles, objects, strict=True):
                await asyncio.wait_for(handle.delivered(), 20)
                reply = await handle.reply(timeout=20)
                assert json.loads(reply.data) == {"name": handle.name, "sha256": hashlib.sha256(data).hexdigest()}
                assert handle.progress == (len(data), len(data))
            stats = session.stats()
            assert stats["objects_delivered"] == len(objects)
            assert stats["srtt_ms"] > 0
        assert server.stats()["objects_completed"] == len(objects)
    finally:
        await server.close()


def test_loopback_ipv4() -> None:
    asyncio.run(round_trip("127.0.0.1"))


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback on this machine")
def test_loopback_ipv6() -> None:
    asyncio.run(round_trip("::1"))


def test_nothing_listening_is_a_clear_error() -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(SessionError, match=r"nothing is listening|handshake"):
            await connect("127.0.0.1", port, config=SessionConfig(handshake_timeout=2.0))

    asyncio.run(main())


def test_object_over_the_receivers_limit_fails_with_its_code() -> None:
    async def main() -> None:
        server = await serve("127.0.0.1", 0, digest_handler,
                             config=SessionConfig(max_object_size=10_000, max_buffered_bytes=10_000))
        try:
            session = await connect(*server.sockname)
            handle = session.send_object(bytes(20_000), name="big")
            with pytest.raises(ObjectFailedError) as info:
                await asyncio.wait_for(handle.delivered(), 5)
            assert info.value.code == ErrorCode.OBJECT_TOO_LARGE
            await session.aclose()
        finally:
            await server.close()

    asyncio.run(main())


def test_receiver_refusal_reaches_the_sender() -> None:
    async def main() -> None:
        server = await serve("127.0.0.1", 0, digest_handler, accept=lambda info: "no PNGs here"
                             if info.content_type == "image/png" else None)
        try:
            session = await connect(*server.sockname)
            ok = session.send_object(bytes(3000), name="a.jpg", content_type="image/jpeg")
            refused = session.send_object(bytes(3000), name="b.png", content_type="image/png")
            await asyncio.wait_for(ok.delivered(), 5)
            with pytest.raises(ObjectFailedError) as info:
                await asyncio.wait_for(refused.delivered(), 5)
            assert info.value.code == ErrorCode.REFUSED and "no PNGs" in info.value.reason
            await session.aclose()
        finally:
            await server.close()

    asyncio.run(main())


def test_an_object_that_cannot_be_described_is_refused_alone() -> None:
    """A name over 255 bytes or a content type with a space fails that object, not the session."""

    async def main() -> None:
        server = await serve("127.0.0.1", 0, digest_handler)
        try:
            session = await connect(*server.sockname)
            with pytest.raises(InvalidObjectError, match="name longer than 255 bytes"):
                session.send_object(bytes(10), name="é" * 128)
            with pytest.raises(InvalidObjectError, match="content type"):
                session.send_object(bytes(10), name="a.jpg", content_type="image/jpeg; q=1")
            ok = session.send_object(bytes(3000), name="b.jpg", content_type="image/jpeg")
            await asyncio.wait_for(ok.delivered(), 5)
            assert session.connection.is_open
            await session.aclose()
        finally:
            await server.close()

    asyncio.run(main())


def test_objects_a_handler_still_holds_count_against_the_receiving_budget() -> None:
    """spec R14.4-1 over real sockets: two sessions, and an object whose handler has not returned
    still counts, so a second sender is refused as busy until the handler lets go of it."""

    async def main() -> None:
        release = asyncio.Event()

        async def slow_handler(obj: ReceivedObject) -> bytes:
            await release.wait()
            return await digest_handler(obj)

        config = SessionConfig(max_object_size=600_000, max_buffered_bytes=600_000, max_receiving_bytes=1_000_000)
        server = await serve("127.0.0.1", 0, slow_handler, config=config)
        try:
            first, second = await connect(*server.sockname), await connect(*server.sockname)
            held = first.send_object(bytes(600_000), name="a.png", want_reply=True)
            await asyncio.wait_for(held.delivered(), 10)
            refused = second.send_object(bytes(500_000), name="b.png")
            with pytest.raises(ObjectFailedError) as info:
                await asyncio.wait_for(refused.delivered(), 10)
            assert info.value.code == ErrorCode.REFUSED and "receiver busy" in info.value.reason
            release.set()
            await held.reply(timeout=10)
            again = second.send_object(bytes(500_000), name="b.png")
            await asyncio.wait_for(again.delivered(), 10)
            await first.aclose()
            await second.aclose()
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel receive timestamps are read on Linux only")
def test_datagrams_read_late_keep_the_time_they_arrived() -> None:
    # Rate samples need ACK arrival times, not the time a loop busy sending got round to reading
    # them: three datagrams arrive 30 ms apart while the loop is blocked, and are read in one batch.
    class Collector:
        def __init__(self) -> None:
            self.batches: list[list[tuple[bytes, object, float | None]]] = []
            self.socket_error: Exception | None = None

        def datagrams_received(self, batch: list[tuple[bytes, object, float | None]]) -> None:
            self.batches.append(batch)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        collector = Collector()
        transport = _UdpSocket(receiver, collector)  # type: ignore[arg-type]
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            before = loop.time()
            for i in range(3):
                sender.sendto(bytes([i]), receiver.getsockname())
                time.sleep(0.03)  # blocks the loop: nothing is read yet
            await asyncio.sleep(0.01)
            read_at = loop.time()
            arrivals = [arrival for batch in collector.batches for _, _, arrival in batch]
            assert [data for batch in collector.batches for data, _, _ in batch] == [b"\x00", b"\x01", b"\x02"]
            assert all(arrival is not None for arrival in arrivals)
            stamps = [a for a in arrivals if a is not None]
            assert before - 0.005 <= stamps[0] < stamps[1] < stamps[2] <= read_at
            assert stamps[1] - stamps[0] > 0.02 and stamps[2] - stamps[1] > 0.02
        finally:
            sender.close()
            transport._loop.remove_reader(receiver.fileno())
            receiver.close()

    asyncio.run(scenario())


def test_close_with_grace_sends_the_replies_handlers_are_still_writing() -> None:
    """A reply queued by a handler that finishes during the grace period still reaches the client,
    while new objects and sessions are refused.

    The reply is 2 MB, so it needs many round trips even on loopback: a close that stopped waiting
    once the handler returned would abort it half-sent."""
    reply_data = random.Random(5).randbytes(2_000_000)
    handler_started = asyncio.Event()

    async def slow_handler(obj: ReceivedObject) -> bytes:
        handler_started.set()
        await asyncio.sleep(0.3)
        return reply_data

    async def main() -> None:
        server = await serve("127.0.0.1", 0, slow_handler)
        session = await connect(*server.sockname)
        try:
            handle = session.send_object(b"question", name="q", want_reply=True)
            await asyncio.wait_for(handler_started.wait(), 5)
            closing = asyncio.create_task(server.close(grace=10))
            await asyncio.sleep(0.05)
            # While it winds down, the server takes nothing new, and says so.
            late = session.send_object(b"too late", name="late")
            with pytest.raises(ObjectFailedError) as refused:
                await asyncio.wait_for(late.delivered(), 5)
            assert refused.value.code == ErrorCode.REFUSED and "shutting down" in refused.value.reason
            with pytest.raises(SessionError, match="shutting down"):
                await connect(*server.sockname, config=SessionConfig(handshake_timeout=3.0))
            reply = await handle.reply(timeout=10)
            assert reply.data == reply_data
            await asyncio.wait_for(closing, 10)
        finally:
            await session.aclose()
            await server.close()

    asyncio.run(main())


def test_an_object_whose_name_fills_255_bytes_is_answered() -> None:
    """Appendix C: the reply's name is "reply:" and the name, cut to 255 bytes on a character
    boundary. Cut to 200 characters instead, 85 three-byte characters made 261 bytes, the reply
    could not be sent, and the client waited for it until its timeout."""
    name = "日" * 85  # 255 bytes of UTF-8, the most a name may take

    async def scenario() -> None:
        server = await serve("127.0.0.1", 0, digest_handler)
        try:
            session = await connect("127.0.0.1", server.sockname[1])
            async with session:
                handle = session.send_object(b"picture", name=name, want_reply=True)
                reply = await handle.reply(timeout=10)
                assert json.loads(reply.data)["name"] == name
                assert reply.name == "reply:" + "日" * 83  # 6 + 249 bytes: the next character would not fit
        finally:
            await server.close()

    asyncio.run(scenario())
