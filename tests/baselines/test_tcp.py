"""The TCP baseline end to end on loopback: round trips, pipelining, limits, faults and bad input."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from apps.transport import OutgoingImage, TransportError
from apps.transports import tcp
from apps.transports.tcp import TcpReceiver, TcpSender
from apps.transports.tcp_frame import FIXED_SIZE, FrameKind, decode_json_body, decode_meta, decode_prefix
from apps.transports.tcp_frame import encode_header as frame_header
from apps.transports.tcp_socket import default_congestion_control

from .conftest import DigestHandler, aiter_images, make_images, random_bytes, run, serving, sha


def receiver(**options: object) -> TcpReceiver:
    return TcpReceiver("127.0.0.1", 0, **options)  # type: ignore[arg-type]


def sender_for(rx: TcpReceiver, **options: object) -> TcpSender:
    return TcpSender("127.0.0.1", rx.address[1], **options)  # type: ignore[arg-type]


async def read_frame(reader: asyncio.StreamReader) -> tuple[FrameKind, int, object]:
    prefix = decode_prefix(await reader.readexactly(FIXED_SIZE))
    header = decode_meta(prefix, await reader.readexactly(prefix.meta_len))
    return header.kind, header.seq, decode_json_body(header, await reader.readexactly(header.body_len))


def test_one_mebibyte_image_round_trip_is_bit_exact() -> None:
    handler = DigestHandler()
    data = random_bytes(1 << 20)

    async def main() -> None:
        rx = receiver()
        async with serving(rx, handler):
            tx = sender_for(rx)
            try:
                [outcome] = await tx.send_all(
                    aiter_images([OutgoingImage("big.jpg", "image/jpeg", data)]), want_reply=True
                )
            finally:
                await tx.aclose()
        assert outcome.delivered and outcome.error is None
        assert outcome.reply == {"sha256": sha(data), "size": len(data), "name": "big.jpg"}
        assert outcome.reply_elapsed_s is not None and outcome.reply_elapsed_s >= outcome.elapsed_s > 0
        assert outcome.stats["congestion_control"] in (default_congestion_control(), None)
        assert outcome.stats["bytes_sent"] > len(data)
        [seen] = handler.seen
        assert sha(seen.data) == sha(data) and seen.content_type == "image/jpeg"
        assert seen.transfer_id.startswith("tcp-") and seen.peer.startswith("127.0.0.1:")
        assert rx.stats()["images_received"] == 1

    run(main())


def test_pipelined_images_get_their_own_replies() -> None:
    images = make_images(5, size=50_000)

    async def main() -> None:
        rx = receiver()
        progress: list[int] = []
        async with serving(rx, DigestHandler()):
            tx = sender_for(rx, max_inflight=5, chunk_size=2048)
            try:
                outcomes = await tx.send_all(
                    aiter_images(images), want_reply=True, on_progress=lambda p: progress.append(p.index)
                )
            finally:
                await tx.aclose()
        assert [o.index for o in outcomes] == list(range(5))
        for image, outcome in zip(images, outcomes, strict=True):
            assert outcome.delivered, outcome.error
            assert outcome.reply is not None and outcome.reply["sha256"] == sha(image.data)
            assert outcome.stats["connection"] == 1  # all on one connection
        assert sorted(set(progress)) == list(range(5))

    run(main())


def test_without_reply_the_ack_confirms_delivery() -> None:
    async def main() -> None:
        handler = DigestHandler()
        rx = receiver()
        async with serving(rx, handler):
            tx = sender_for(rx)
            try:
                outcomes = await tx.send_all(aiter_images(make_images(3)), want_reply=False)
            finally:
                await tx.aclose()
        assert all(o.delivered and o.reply is None and o.reply_elapsed_s is None for o in outcomes)
        assert len(handler.seen) == 3

    run(main())


def test_many_clients_at_once() -> None:
    async def main() -> None:
        rx = receiver()
        async with serving(rx, DigestHandler()):
            senders = [sender_for(rx) for _ in range(6)]
            try:
                results = await asyncio.gather(*(
                    s.send_all(aiter_images(make_images(3, seed=n)), want_reply=True)
                    for n, s in enumerate(senders)
                ))
            finally:
                for s in senders:
                    await s.aclose()
        for n, outcomes in enumerate(results):
            expected = make_images(3, seed=n)
            assert [o.reply and o.reply["sha256"] for o in outcomes] == [sha(i.data) for i in expected]
        assert rx.stats()["connections_accepted"] == 6

    run(main())


def test_pinned_congestion_control_is_used_and_recorded() -> None:
    allowed = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")
    if not allowed.exists() or "cubic" not in allowed.read_text().split():
        pytest.skip("cubic is not available in this kernel")

    async def main() -> None:
        rx = receiver(congestion="cubic")
        async with serving(rx, DigestHandler()):
            tx = sender_for(rx, congestion="cubic")
            try:
                [outcome] = await tx.send_all(aiter_images(make_images(1)), want_reply=True)
            finally:
                await tx.aclose()
        assert outcome.stats["congestion_control"] == "cubic"
        assert "rtt_ms" in outcome.stats
        assert rx.stats()["congestion_control"] == "cubic"

    run(main())


def test_unknown_congestion_control_is_a_clear_error() -> None:
    async def main() -> None:
        rx = receiver()
        async with serving(rx, DigestHandler()):
            tx = sender_for(rx, congestion="no-such-algorithm")
            with pytest.raises(TransportError, match="congestion control 'no-such-algorithm'"):
                await tx.send_all(aiter_images(make_images(1)), want_reply=True)

    run(main())


def test_unreachable_receiver_raises_transport_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> None:
        tx = TcpSender("127.0.0.1", port, connect_timeout=2)
        with pytest.raises(TransportError, match=f"cannot connect to TCP receiver 127.0.0.1:{port}"):
            await tx.send_all(aiter_images(make_images(1)), want_reply=True)
        await tx.aclose()

    run(main())


def test_oversized_image_is_refused_and_the_rest_still_arrive() -> None:
    images = [*make_images(1, prefix="a"), OutgoingImage("huge.png", "image/png", bytes(3 << 20)),
              *make_images(2, prefix="b")]

    async def main() -> None:
        handler = DigestHandler()
        rx = receiver(max_image_bytes=1 << 20, linger=1.0)
        async with serving(rx, handler):
            tx = sender_for(rx, max_inflight=4)
            try:
                outcomes = await tx.send_all(aiter_images(images), want_reply=True)
                # The receiver still serves new work afterwards.
                [later] = await tx.send_all(aiter_images(make_images(1, prefix="c")), want_reply=True)
            finally:
                await tx.aclose()
        assert [o.delivered for o in outcomes] == [True, False, True, True]
        assert outcomes[1].error is not None and "accepts at most 1048576" in outcomes[1].error
        for image, outcome in zip(images, outcomes, strict=True):
            if outcome.delivered:
                assert outcome.reply is not None and outcome.reply["sha256"] == sha(image.data)
        assert later.delivered
        assert rx.stats()["errors"]["oversized"] == 1
        assert sorted(i.name for i in handler.seen) == ["a0.png", "b0.png", "b1.png", "c0.png"]

    run(main())


def test_handler_failure_is_an_outcome_error_not_a_dead_connection() -> None:
    async def main() -> None:
        rx = receiver()
        async with serving(rx, DigestHandler(fail_on="img1.png")):
            tx = sender_for(rx)
            try:
                outcomes = await tx.send_all(aiter_images(make_images(3)), want_reply=True)
            finally:
                await tx.aclose()
        assert [o.delivered for o in outcomes] == [True, False, True]
        assert outcomes[1].error is not None and "classifier exploded" in outcomes[1].error

    run(main())


async def _raw_connect(rx: TcpReceiver) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", rx.address[1])


async def _still_serves(rx: TcpReceiver) -> None:
    tx = sender_for(rx)
    try:
        [outcome] = await tx.send_all(aiter_images(make_images(1, prefix="after")), want_reply=True)
    finally:
        await tx.aclose()
    assert outcome.delivered and outcome.reply is not None


def test_malformed_header_drops_that_connection_only() -> None:
    async def main() -> None:
        rx = receiver()
        async with serving(rx, DigestHandler()):
            reader, writer = await _raw_connect(rx)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(FIXED_SIZE))
            kind, _seq, body = await read_frame(reader)
            assert kind is FrameKind.ERROR and "bad magic" in str(body)
            writer.write_eof()
            assert await reader.read() == b""  # closed by the receiver
            writer.close()
            await _still_serves(rx)
        assert rx.stats()["errors"]["malformed"] == 1

    run(main())


def test_corrupted_image_gets_an_error_for_that_image() -> None:
    async def main() -> None:
        rx = receiver()
        async with serving(rx, DigestHandler()):
            reader, writer = await _raw_connect(rx)
            header = frame_header(FrameKind.IMAGE, 0, b"good bytes", name="x.png", content_type="image/png")
            writer.write(header + b"evil bytes")
            kind, seq, body = await read_frame(reader)
            assert (kind, seq) == (FrameKind.ERROR, 0) and "SHA-256" in str(body)
            # The framing is intact, so the same connection carries on.
            good = b"fine bytes"
            writer.write(frame_header(FrameKind.IMAGE, 1, good, name="y.png", content_type="image/png") + good)
            kind, seq, body = await read_frame(reader)
            assert (kind, seq, body) == (FrameKind.ACK, 1, {"size": len(good)})
            writer.close()
        assert rx.stats()["errors"]["digest_mismatch"] == 1

    run(main())


def test_sender_vanishing_mid_image_leaves_the_receiver_serving() -> None:
    async def main() -> None:
        handler = DigestHandler()
        rx = receiver()
        async with serving(rx, handler):
            _reader, writer = await _raw_connect(rx)
            data = bytes(100_000)
            writer.write(frame_header(FrameKind.IMAGE, 0, data, name="cut.png", content_type="image/png"))
            writer.write(data[:40_000])
            await writer.drain()
            writer.transport.abort()  # reset mid-transfer
            await _still_serves(rx)
            for _ in range(100):  # bounded wait for the receiver to notice
                if rx.stats()["errors"].get("reset"):
                    break
                await asyncio.sleep(0.01)
        assert rx.stats()["errors"]["reset"] == 1
        assert [i.name for i in handler.seen] == ["after0.png"]

    run(main())


def test_stalled_sender_times_out() -> None:
    async def main() -> None:
        rx = receiver(io_timeout=0.2)
        async with serving(rx, DigestHandler()):
            reader, writer = await _raw_connect(rx)
            writer.write(frame_header(FrameKind.IMAGE, 0, bytes(10), name="slow.png", content_type="image/png"))
            assert await reader.read() == b""  # the receiver gives up on it
            writer.close()
            await _still_serves(rx)
        assert rx.stats()["errors"]["timeout"] == 1

    run(main())


@contextlib.asynccontextmanager
async def dropping_server(after_bytes: int) -> AsyncIterator[int]:
    """A fake receiver that reads ``after_bytes`` of each connection, then resets it."""

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readexactly(after_bytes)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def test_connection_reset_mid_transfer_is_an_outcome_error_after_one_retry() -> None:
    async def main() -> None:
        async with dropping_server(after_bytes=FIXED_SIZE + 1000) as port:
            tx = TcpSender("127.0.0.1", port, chunk_size=4096, reply_timeout=5)
            try:
                [outcome] = await tx.send_all(
                    aiter_images([OutgoingImage("x.png", "image/png", bytes(200_000))]), want_reply=True
                )
            finally:
                await tx.aclose()
        assert not outcome.delivered
        assert outcome.stats["attempts"] == 2
        assert outcome.error is not None and ("connection" in outcome.error or "closed" in outcome.error)

    run(main())


def test_reply_timeout_and_deadline() -> None:
    async def slow(image: object) -> dict[str, str]:
        await asyncio.sleep(5)
        return {}

    async def main() -> None:
        rx = receiver(shutdown_grace=0.1)
        async with serving(rx, slow):
            tx = sender_for(rx, reply_timeout=0.3)
            try:
                [late] = await tx.send_all(aiter_images(make_images(1)), want_reply=True)
                live = OutgoingImage("live.png", "image/png", b"x" * 100, deadline=0.2)
                [expired] = await tx.send_all(aiter_images([live]), want_reply=True)
            finally:
                await tx.aclose()
        assert late.delivered and late.error == "no reply within 0.3 s"
        assert not expired.delivered or expired.error is not None
        assert expired.stats.get("expired") is True

    run(main())


def test_factories_build_from_command_line_options() -> None:
    parser = argparse.ArgumentParser()
    tcp.add_arguments(parser, "sender")
    args = parser.parse_args(["--tcp-chunk-size", "2K", "--tcp-congestion", "bbr", "--tcp-max-inflight", "3"])
    tx = tcp.sender_from_args(args, "10.1.2.3")
    assert (tx.host, tx.port, tx.chunk_size, tx.congestion, tx.max_inflight) == ("10.1.2.3", 9001, 2048, "bbr", 3)

    parser = argparse.ArgumentParser()
    tcp.add_arguments(parser, "receiver")
    args = parser.parse_args(["--tcp-idle-timeout", "5"])
    args.max_size, args.max_transfers, args.grace = 1 << 20, 4, 1.0
    rx = tcp.receiver_from_args(args, "0.0.0.0:0")
    assert (rx.host, rx.port, rx.max_image_bytes, rx.idle_timeout, rx.shutdown_grace) == (
        "0.0.0.0", 0, 1 << 20, 5.0, 1.0
    )
    with pytest.raises(TransportError, match="bad TCP target"):
        tcp.sender_from_args(parser.parse_args([]), "host:notaport")
    with pytest.raises(SystemExit):
        parser.parse_args(["--tcp-chunk-size", "lots"])
