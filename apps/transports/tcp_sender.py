"""Sender side of the TCP baseline: pipelined images on one kernel TCP connection, replies matched by seq.

Images are written back to back (up to ``max_inflight`` unanswered); a reader task matches the
receiver's ACK/REPLY/ERROR frames to images by their per-connection sequence number. If the
connection dies before an image was acknowledged, the image is sent once more on a fresh
connection (the receiver handles frames in order and stops reading after a fatal error, so an
unacknowledged image was, at worst, received but not answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apps.transport import JSON, OutgoingImage, Progress, ProgressCallback, SendOutcome, TransportError
from apps.transports import join_host_port
from apps.transports.tcp_frame import (
    FIXED_SIZE,
    MAX_SEQ,
    Flags,
    FrameError,
    FrameKind,
    decode_json_body,
    decode_meta,
    decode_prefix,
    encode_header,
)
from apps.transports.tcp_socket import (
    congestion_control,
    set_congestion_control,
    tcp_info,
)
from apps.transports.windowed import WindowedSender

log = logging.getLogger("snip.tcp")

MAX_REPLY_BYTES = 16 << 20


class _ImageRefused(Exception):
    """The receiver answered this image with an ERROR frame: final, never retried."""


class _ConnectionLost(Exception):
    """The connection ended before this image was answered."""


@dataclass
class _Pending:
    want_reply: bool
    acked: asyncio.Future[JSON] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    replied: asyncio.Future[JSON | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def fail(self, exc: Exception) -> None:
        # Only the future someone will await gets the exception, so none is left unretrieved.
        if not self.acked.done():
            self.acked.set_exception(exc)
            self.replied.cancel()
        elif not self.replied.done():
            self.replied.set_exception(exc)


class _Connection:
    """One TCP connection: a write side used under a lock, and a reader task dispatching answers."""

    def __init__(self, ident: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.ident = ident
        self.reader = reader
        self.writer = writer
        self.sock: Any = writer.get_extra_info("socket")
        self.congestion = congestion_control(self.sock)
        self.error: str | None = None  # set once the connection can carry nothing more
        self.writable = True  # false once a frame was abandoned mid-way: new images need a new connection
        self._pending: dict[int, _Pending] = {}
        self._next_seq = 0
        self._write_lock = asyncio.Lock()
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"tcp-sender-read-{ident}")

    def expect(self, want_reply: bool) -> tuple[int, _Pending]:
        seq = self._next_seq
        self._next_seq += 1
        if self._next_seq >= MAX_SEQ:  # MAX_SEQ is reserved for connection-level errors
            self.writable = False
        pending = _Pending(want_reply)
        self._pending[seq] = pending
        return seq, pending

    def forget(self, seq: int) -> None:
        self._pending.pop(seq, None)

    async def write_image(
        self,
        seq: int,
        pending: _Pending,
        header: bytes,
        data: bytes,
        *,
        chunk_size: int,
        io_timeout: float,
        on_chunk: Callable[[int], None],
    ) -> None:
        """Write one image frame; _ConnectionLost or _ImageRefused if it cannot be completed."""
        async with self._write_lock:
            if self.error is not None or not self.writable:
                raise _ConnectionLost(self.error or "connection retired")
            view = memoryview(data)
            try:
                self.writer.write(header)
                on_chunk(0)
                for offset in range(0, len(view), chunk_size):
                    if pending.acked.done():  # refused while still being written (too large)
                        self.retire()
                        raise _ImageRefused(self._refusal(pending))
                    if not self.writable:
                        raise _ConnectionLost("the receiver is closing the connection")
                    end = min(offset + chunk_size, len(view))
                    self.writer.write(view[offset:end])
                    async with asyncio.timeout(io_timeout):
                        await self.writer.drain()
                    on_chunk(end)
                async with asyncio.timeout(io_timeout):
                    await self.writer.drain()
            except TimeoutError:
                self.fail(f"receiver accepted no data for {io_timeout:g} s")
                raise _ConnectionLost(self.error) from None
            except OSError as exc:
                self.fail(f"connection lost while sending: {exc}")
                raise _ConnectionLost(self.error) from None

    def retire(self) -> None:
        """Send nothing more on this connection (the stream may be mid-frame), but keep reading:
        answers to earlier images may still come. Half-closing tells the receiver to stop waiting."""
        if self.writable:
            self.writable = False
            with contextlib.suppress(OSError, RuntimeError):
                self.writer.write_eof()

    @staticmethod
    def _refusal(pending: _Pending) -> str:
        exc = pending.acked.exception() if not pending.acked.cancelled() else None
        return str(exc) if exc is not None else "refused by receiver"

    async def _read_loop(self) -> None:
        reason = "connection closed"
        try:
            while True:
                prefix = decode_prefix(await self.reader.readexactly(FIXED_SIZE))
                if prefix.kind is FrameKind.IMAGE or prefix.body_len > MAX_REPLY_BYTES:
                    raise FrameError(f"unexpected {prefix.kind.name} frame of {prefix.body_len} bytes")
                header = decode_meta(prefix, await self.reader.readexactly(prefix.meta_len))
                body = await self.reader.readexactly(header.body_len)
                self._dispatch(header.kind, header.seq, decode_json_body(header, body))
        except asyncio.IncompleteReadError as exc:
            reason = "receiver closed the connection" + (" mid-frame" if exc.partial else "")
        except FrameError as exc:
            reason = f"bad frame from receiver: {exc}"
        except OSError as exc:
            reason = f"connection lost: {exc}"
        finally:
            self.fail(reason)

    def _dispatch(self, kind: FrameKind, seq: int, value: Any) -> None:
        if kind is FrameKind.ERROR:
            message = str(value.get("error")) if isinstance(value, dict) else str(value)
            if isinstance(value, dict) and value.get("closing"):
                self.retire()  # the receiver reads nothing more from this connection
            pending = self._pending.pop(seq, None)
            if pending is not None:
                pending.fail(_ImageRefused(message))
            elif seq == MAX_SEQ:
                self.fail(f"receiver closed the connection: {message}")
            return
        pending = self._pending.get(seq)
        if pending is None:
            log.debug("tcp: %s for unknown or expired seq %d ignored", kind.name, seq)
            return
        if kind is FrameKind.ACK:
            if not pending.acked.done():
                pending.acked.set_result(value if isinstance(value, dict) else {})
            if not pending.want_reply:
                self._pending.pop(seq, None)
        elif kind is FrameKind.REPLY:
            self._pending.pop(seq, None)
            if not pending.acked.done():
                pending.acked.set_result({})
            if not pending.replied.done():
                pending.replied.set_result(value if isinstance(value, dict) else None)

    def fail(self, reason: str) -> None:
        """Mark the connection dead and fail every image still waiting on it."""
        if self.error is None:
            self.error = reason
        self.writable = False
        pending, self._pending = self._pending, {}
        for item in pending.values():
            item.fail(_ConnectionLost(reason))
        self.writer.close()

    async def close(self) -> None:
        self.fail("sender closed the connection")
        self._reader_task.cancel()
        try:
            await self._reader_task
        except asyncio.CancelledError:
            pass
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


class TcpSender(WindowedSender):
    """Sends images to one TCP receiver at ``host:port``.

    ``chunk_size`` is the write size (the original project wrote 2048-byte chunks; progress is
    reported per chunk). ``congestion`` pins the kernel algorithm (cubic, bbr, ...) on the socket;
    by default the namespace's default is used. Either way the algorithm in force is reported in
    each outcome's stats.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        chunk_size: int = 64 * 1024,
        congestion: str | None = None,
        connect_timeout: float = 10.0,
        io_timeout: float = 30.0,
        reply_timeout: float = 120.0,
        max_inflight: int = 16,
        retries: int = 1,
    ) -> None:
        if chunk_size <= 0 or max_inflight <= 0 or retries < 0:
            raise ValueError("chunk_size and max_inflight must be positive, retries non-negative")
        self.host = host
        self.port = port
        self.chunk_size = chunk_size
        self.congestion = congestion
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.reply_timeout = reply_timeout
        super().__init__(max_inflight)
        self.retries = retries
        self._conn: _Connection | None = None
        self._old: list[_Connection] = []
        self._conn_lock = asyncio.Lock()
        self._connections_opened = 0

    @property
    def target(self) -> str:
        return join_host_port(self.host, self.port)

    async def _prepare(self, want_reply: bool) -> None:
        await self._connection()  # an unreachable receiver fails the whole run up front

    async def aclose(self) -> None:
        conns = [*self._old, *([self._conn] if self._conn else [])]
        self._conn, self._old = None, []
        for conn in conns:
            await conn.close()

    async def _connection(self) -> _Connection:
        async with self._conn_lock:
            conn = self._conn
            if conn is not None and conn.error is None and conn.writable:
                return conn
            if conn is not None:
                # A retired connection may still be delivering replies to earlier images.
                self._old = [c for c in [*self._old, conn] if c.error is None]
            self._conn = await self._open()
            return self._conn

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        where = self.target
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TransportError(f"cannot resolve {self.host!r}: {exc}") from None
        last: str = "no address"
        for family, kind, proto, _name, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.congestion:
                    set_congestion_control(sock, self.congestion)
                async with asyncio.timeout(self.connect_timeout):
                    await loop.sock_connect(sock, addr)
                reader, writer = await asyncio.open_connection(sock=sock, limit=max(self.chunk_size, 1 << 18))
            except TimeoutError:
                sock.close()
                last = f"no answer within {self.connect_timeout:g} s"
                continue
            except OSError as exc:
                sock.close()
                last = exc.strerror or str(exc)
                continue
            except BaseException:
                sock.close()
                raise
            self._connections_opened += 1
            conn = _Connection(self._connections_opened, reader, writer)
            log.debug("tcp: connected to %s (connection %d, %s)", where, conn.ident, conn.congestion)
            return conn
        raise TransportError(f"cannot connect to TCP receiver {where}: {last}")

    async def _deliver_one(
        self,
        index: int,
        image: OutgoingImage,
        want_reply: bool,
        submitted: float,
        on_progress: ProgressCallback | None,
    ) -> SendOutcome:
        loop = asyncio.get_running_loop()
        size = len(image.data)
        stats: JSON = {"transport": "tcp", "attempts": 0, "bytes_sent": 0}

        def outcome(
            delivered: bool,
            error: str | None = None,
            *,
            elapsed: float | None = None,
            reply: JSON | None = None,
            reply_elapsed: float | None = None,
        ) -> SendOutcome:
            return SendOutcome(
                image.name,
                index,
                size,
                delivered,
                reply=reply,
                error=error,
                elapsed_s=loop.time() - submitted if elapsed is None else elapsed,
                reply_elapsed_s=reply_elapsed,
                stats=stats,
            )

        flags = Flags.WANT_REPLY if want_reply else Flags.NONE

        def progress(done: int) -> None:
            if on_progress is not None:
                on_progress(Progress(image.name, index, done, size))

        while True:
            stats["attempts"] += 1
            expires = None if image.deadline is None else submitted + image.deadline
            if expires is not None and loop.time() >= expires:
                stats["expired"] = True
                return outcome(False, f"deadline of {image.deadline:g} s passed before sending")
            conn = await self._connection()
            seq, pending = conn.expect(want_reply)
            try:
                header = encode_header(
                    FrameKind.IMAGE, seq, image.data, name=image.name,
                    content_type=image.content_type, flags=flags,
                )
            except ValueError as exc:
                conn.forget(seq)
                return outcome(False, f"cannot send: {exc}")
            stats.update(connection=conn.ident, seq=seq, congestion_control=conn.congestion)
            stats["bytes_sent"] += len(header) + size
            delivered_at: float | None = None
            budget = self.reply_timeout
            try:
                await conn.write_image(
                    seq, pending, header, image.data,
                    chunk_size=self.chunk_size, io_timeout=self.io_timeout, on_chunk=progress,
                )
                if expires is not None:
                    budget = min(budget, max(expires - loop.time(), 0.0))
                async with asyncio.timeout(budget):
                    await pending.acked
                    delivered_at = loop.time() - submitted
                    reply = await pending.replied if want_reply else None
            except _ImageRefused as exc:
                return outcome(False, f"receiver refused {image.name!r}: {exc}")
            except _ConnectionLost as exc:
                if delivered_at is not None:
                    return outcome(True, f"reply lost: {exc}", elapsed=delivered_at)
                if stats["attempts"] <= self.retries:
                    log.info("tcp: %s: %s; sending it again", image.name, exc)
                    continue
                return outcome(False, str(exc))
            except TimeoutError:
                conn.forget(seq)
                if expires is not None and loop.time() >= expires:
                    stats["expired"] = True
                if delivered_at is not None:
                    return outcome(True, f"no reply within {budget:g} s", elapsed=delivered_at)
                return outcome(False, f"no acknowledgement within {budget:g} s")
            finally:
                if not pending.replied.done():
                    pending.replied.cancel()
            stats.update(tcp_info(conn.sock))
            total = loop.time() - submitted
            return outcome(
                True, elapsed=delivered_at, reply=reply, reply_elapsed=total if want_reply else None
            )
