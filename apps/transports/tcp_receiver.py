"""Receiver side of the TCP baseline: many connections, pipelined frames, handler replies by seq.

Each connection is read frame by frame. An image is read fully, its SHA-256 checked, acknowledged
(ACK), then handed to the handler in a task so that the next pipelined image can be read meanwhile;
the handler's JSON goes back as a REPLY with the image's seq. A bad digest or a failing handler is
an ERROR for that image only. A malformed header or an image beyond the size limit ends the
connection: the receiver answers with an ERROR, stops reading, lets the images it already took
finish their replies, then closes. The server keeps serving other connections throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from apps.transport import JSON, ImageHandler, ReceivedImage, TransportError
from apps.transports import join_host_port
from apps.transports.tcp_frame import (
    FIXED_SIZE,
    MAX_SEQ,
    Flags,
    FrameError,
    FrameHeader,
    FrameKind,
    decode_meta,
    decode_prefix,
    encode_json_frame,
)
from apps.transports.tcp_socket import (
    congestion_control,
    default_congestion_control,
    set_congestion_control,
)

log = logging.getLogger("snip.tcp")


class _Fatal(Exception):
    """This connection must end (after an ERROR frame carrying ``seq``)."""

    def __init__(self, kind: str, message: str, seq: int = MAX_SEQ) -> None:
        super().__init__(message)
        self.kind = kind
        self.seq = seq


class _ByteBudget:
    """Bounds the image bytes held in memory across all connections."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + n <= self.limit)
            self.used += n

    async def release(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


@dataclass
class _Conn:
    ident: int
    peer: str
    writer: asyncio.StreamWriter
    congestion: str | None
    idle: bool = True  # waiting for the next frame (safe to cancel at shutdown)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: bytes, io_timeout: float) -> None:
        async with self.write_lock:
            self.writer.write(frame)
            async with asyncio.timeout(io_timeout):
                await self.writer.drain()


class TcpReceiver:
    """Serves the TCP baseline on ``host:port`` (port 0 picks a free one; see ``address`` once ``ready``).

    Limits: ``max_image_bytes`` per image; over all connections at once, ``max_transfers``
    images being read or handled, ``max_buffered_bytes`` of image data held and
    ``max_connections``. Timeouts: ``idle_timeout`` between frames, ``io_timeout`` for any read or
    write that makes no progress inside a frame, ``shutdown_grace`` for handlers still running
    when ``stop`` is set, ``linger`` to drain a refused sender's bytes before closing.
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 0,
        *,
        max_image_bytes: int = 64 << 20,
        max_buffered_bytes: int = 256 << 20,
        max_connections: int = 256,
        max_transfers: int = 64,
        max_pending_per_connection: int = 16,
        chunk_size: int = 64 * 1024,
        congestion: str | None = None,
        idle_timeout: float = 300.0,
        io_timeout: float = 30.0,
        shutdown_grace: float = 5.0,
        linger: float = 2.0,
    ) -> None:
        if max_image_bytes > max_buffered_bytes:
            raise ValueError("max_image_bytes cannot exceed max_buffered_bytes")
        self.host = host
        self.port = port
        self.max_image_bytes = max_image_bytes
        self.max_connections = max_connections
        self.max_pending_per_connection = max_pending_per_connection
        self._transfers = asyncio.Semaphore(max_transfers)
        self.chunk_size = chunk_size
        self.congestion = congestion
        self.idle_timeout = idle_timeout
        self.io_timeout = io_timeout
        self.shutdown_grace = shutdown_grace
        self.linger = linger
        self.ready = asyncio.Event()
        self._budget = _ByteBudget(max_buffered_bytes)
        self._bound: tuple[str, int] | None = None
        self._conns: dict[int, _Conn] = {}
        self._conn_tasks: dict[int, asyncio.Task[None]] = {}
        self._next_conn = 0
        self._counts: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound; valid once ``ready`` is set."""
        if self._bound is None:
            raise RuntimeError("the receiver is not listening yet")
        return self._bound

    async def wait_listening(self) -> str:
        """"host:port" once the receiver is bound (port 0 picks a free port)."""
        await self.ready.wait()
        return join_host_port(*self.address)

    def stats(self) -> JSON:
        return {
            "transport": "tcp",
            "listen": join_host_port(*self._bound) if self._bound else None,
            "congestion_control": self.congestion or default_congestion_control(),
            "connections_active": len(self._conns),
            **dict(self._counts),
            "errors": dict(self._errors),
        }

    async def serve(self, handler: ImageHandler, stop: asyncio.Event) -> None:
        try:
            sock = socket.create_server(
                (self.host, self.port), family=_family(self.host), backlog=128, reuse_port=False
            )
        except OSError as exc:
            raise TransportError(
                f"cannot listen on {join_host_port(self.host, self.port)}: {exc.strerror or exc}"
            ) from None
        try:
            if self.congestion:
                set_congestion_control(sock, self.congestion)
        except TransportError:
            sock.close()
            raise
        server = await asyncio.start_server(
            lambda r, w: self._accept(r, w, handler), sock=sock, limit=max(self.chunk_size, 1 << 18)
        )
        bound = sock.getsockname()
        self._bound = (bound[0], bound[1])
        self.ready.set()
        log.info("tcp: listening on %s", join_host_port(*self._bound))
        try:
            async with server:
                await stop.wait()
                server.close()
                await self._shutdown()
        finally:
            self.ready.clear()

    async def _shutdown(self) -> None:
        for ident, conn in list(self._conns.items()):
            task = self._conn_tasks.get(ident)
            if task is not None and conn.idle and not conn.tasks:
                task.cancel()  # waiting for a next image that will not be read
        pending = list(self._conn_tasks.values())
        if pending:
            _done, late = await asyncio.wait(pending, timeout=self.shutdown_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: ImageHandler
    ) -> None:
        self._next_conn += 1
        ident = self._next_conn
        task = asyncio.create_task(self._connection(ident, reader, writer, handler), name=f"tcp-conn-{ident}")
        self._conn_tasks[ident] = task
        task.add_done_callback(lambda _t: self._conn_tasks.pop(ident, None))

    async def _connection(
        self, ident: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: ImageHandler
    ) -> None:
        peer_addr = writer.get_extra_info("peername")
        peer = join_host_port(peer_addr[0], peer_addr[1]) if peer_addr else "?"
        if len(self._conns) >= self.max_connections:
            self._counts["connections_refused"] += 1
            log.warning("tcp: refusing %s: %d connections already open", peer, len(self._conns))
            writer.close()
            return
        sock: Any = writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.congestion:
            with contextlib.suppress(TransportError):
                set_congestion_control(sock, self.congestion)
        conn = _Conn(ident, peer, writer, congestion_control(sock))
        self._conns[ident] = conn
        self._counts["connections_accepted"] += 1
        slots = asyncio.Semaphore(self.max_pending_per_connection)
        try:
            await self._read_frames(conn, reader, handler, slots)
        except _Fatal as exc:
            self._errors[exc.kind] += 1
            log.warning("tcp: %s (connection %d): %s; closing it", peer, ident, exc)
            with contextlib.suppress(OSError, TimeoutError):
                farewell = {"error": str(exc), "closing": True}
                await conn.send(encode_json_frame(FrameKind.ERROR, exc.seq, farewell), 1.0)
                # Closing with unread input would reset the connection and could destroy the
                # ERROR frame in flight; drain until the sender half-closes (or for `linger`).
                await self._discard(reader)
        except TimeoutError:
            self._errors["timeout"] += 1
            log.warning("tcp: %s (connection %d): stalled for %g s mid-frame; closing it", peer, ident,
                        self.io_timeout)
        except (OSError, asyncio.IncompleteReadError) as exc:
            self._errors["reset"] += 1
            log.warning("tcp: %s (connection %d): connection lost mid-frame: %s", peer, ident, exc)
        finally:
            try:
                if conn.tasks:  # answer what was already taken before closing
                    await asyncio.gather(*conn.tasks, return_exceptions=True)
            finally:
                for task in conn.tasks:
                    task.cancel()
                self._conns.pop(ident, None)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _read_frames(
        self, conn: _Conn, reader: asyncio.StreamReader, handler: ImageHandler, slots: asyncio.Semaphore
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn.idle = True
            try:
                async with asyncio.timeout(self.idle_timeout):
                    fixed = await reader.readexactly(FIXED_SIZE)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise _Fatal("malformed", "connection closed inside a frame header") from None
                return  # clean close between frames
            except TimeoutError:
                log.info("tcp: %s (connection %d) idle for %g s; closing it", conn.peer, conn.ident,
                         self.idle_timeout)
                return
            conn.idle = False
            started = loop.time()
            try:
                prefix = decode_prefix(fixed)
                if prefix.kind is not FrameKind.IMAGE:
                    raise FrameError(f"a sender may only send IMAGE frames, got {prefix.kind.name}")
                async with asyncio.timeout(self.io_timeout):
                    header = decode_meta(prefix, await reader.readexactly(prefix.meta_len))
            except FrameError as exc:
                raise _Fatal("malformed", f"malformed header: {exc}") from None
            if header.body_len > self.max_image_bytes:
                raise _Fatal(
                    "oversized",
                    f"image {header.name!r} is {header.body_len} bytes; this receiver accepts at most "
                    f"{self.max_image_bytes}",
                    header.seq,
                )
            # Waiting here leaves the rest of the frame in the socket: TCP flow control pushes back.
            await slots.acquire()
            await self._transfers.acquire()
            await self._budget.acquire(header.body_len)
            try:
                data = await self._read_body(reader, header.body_len)
            except BaseException:
                await self._budget.release(header.body_len)
                self._transfers.release()
                slots.release()
                raise
            elapsed = loop.time() - started
            self._counts["bytes_received"] += len(data)
            task = asyncio.create_task(self._handle(conn, header, data, elapsed, handler, slots))
            conn.tasks.add(task)
            task.add_done_callback(conn.tasks.discard)

    async def _discard(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.linger):
                while await reader.read(1 << 16):
                    pass

    async def _read_body(self, reader: asyncio.StreamReader, size: int) -> bytes:
        # Grown as bytes arrive, never preallocated from the header's claim.
        data = bytearray()
        while len(data) < size:
            async with asyncio.timeout(self.io_timeout):
                chunk = await reader.read(min(size - len(data), self.chunk_size))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(data), size)
            data += chunk
        return bytes(data)

    async def _handle(
        self,
        conn: _Conn,
        header: FrameHeader,
        data: bytes,
        elapsed: float,
        handler: ImageHandler,
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            if hashlib.sha256(data).digest() != header.digest:
                self._errors["digest_mismatch"] += 1
                log.warning("tcp: %s: %r failed its SHA-256 check", conn.peer, header.name)
                await conn.send(
                    encode_json_frame(FrameKind.ERROR, header.seq, {"error": "SHA-256 mismatch"}),
                    self.io_timeout,
                )
                return
            ack = encode_json_frame(FrameKind.ACK, header.seq, {"size": len(data)})
            await conn.send(ack, self.io_timeout)
            self._counts["images_received"] += 1
            image = ReceivedImage(
                name=header.name,
                content_type=header.content_type,
                data=data,
                peer=conn.peer,
                transfer_id=f"tcp-{conn.ident}-{header.seq}",
                stats={
                    "transport": "tcp",
                    "connection": conn.ident,
                    "seq": header.seq,
                    "receive_s": elapsed,
                    "congestion_control": conn.congestion,
                },
            )
            del data
            kind, body = await self._run_handler(handler, image, conn.peer)
            if kind is FrameKind.REPLY and not header.flags & Flags.WANT_REPLY:
                return
            await conn.send(encode_json_frame(kind, header.seq, body), self.io_timeout)
            if kind is FrameKind.REPLY:
                self._counts["replies_sent"] += 1
        except (OSError, TimeoutError) as exc:
            log.warning("tcp: %s: could not answer %r: %s", conn.peer, header.name, exc)
        finally:
            await self._budget.release(header.body_len)
            self._transfers.release()
            slots.release()

    async def _run_handler(
        self, handler: ImageHandler, image: ReceivedImage, peer: str
    ) -> tuple[FrameKind, Any]:
        """The frame kind and JSON body answering ``image``: the handler's reply, or an error."""
        try:
            reply = await handler(image)
        except Exception as exc:
            self._errors["handler"] += 1
            log.exception("tcp: handler failed on %r from %s", image.name, peer)
            return FrameKind.ERROR, {"error": f"handler failed: {type(exc).__name__}: {exc}"}
        try:
            encode_json_frame(FrameKind.REPLY, 0, reply)
        except (TypeError, ValueError) as exc:
            self._errors["handler"] += 1
            return FrameKind.ERROR, {"error": f"handler reply is not JSON: {exc}"}
        return FrameKind.REPLY, reply


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
