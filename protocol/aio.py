"""asyncio binding: real UDP sockets (IPv4 and IPv6) around the sans-I/O endpoint.

This is the only module of protocol/ that reads a clock (the event loop's) or touches a socket.

    session = await connect("127.0.0.1", 9000)
    async with session:
        obj = session.send_object(data, name="cat.jpg", content_type="image/jpeg", want_reply=True)
        await obj.delivered()
        reply = await obj.reply()

    server = await serve("0.0.0.0", 9000, handler)   # handler: async (ReceivedObject) -> bytes | None
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from . import events as ev
from .codec import Announce, utf8_cut
from .config import SessionConfig
from .connection import Connection
from .constants import MAX_NAME_LEN, ErrorCode
from .endpoint import Endpoint
from .errors import InvalidObjectError, LocalProtocolError, SnipError
from .events import ConnectionClosed, Event, HandshakeCompleted, ObjectDelivered, ObjectReceived
from .params import SessionParams

__all__ = [
    "ClientSession",
    "InvalidObjectError",
    "ObjectFailed",
    "ObjectFailedError",
    "OutgoingObject",
    "ReceivedObject",
    "Server",
    "SessionConfig",
    "SessionError",
    "SnipError",
    "connect",
    "serve",
]

log = logging.getLogger("snip.aio")
SOCKET_BUFFER = 4 << 20  # bytes; the kernel caps it at net.core.rmem_max / wmem_max
READ_BATCH = 256  # datagrams read per wake-up before the endpoint is pumped
RECV_SIZE = 65535
# Linux's SO_TIMESTAMPNS (asm-generic value; Python does not name it): the kernel stamps each datagram
# with its arrival time, so a loop busy sending does not shift the ACK arrival times rate samples use.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
Addr = tuple[str, int]


class SessionError(SnipError):
    """The session could not be opened or ended abnormally."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ObjectFailedError(SnipError):
    """An object was not delivered (too large, refused, deadline, session closed...)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


ObjectFailed = ObjectFailedError  # the name the apps use




@dataclass(frozen=True)
class ReceivedObject:
    session_id: int
    peer: Addr
    object_id: int
    name: str
    content_type: str
    data: bytes
    want_reply: bool
    in_reply_to: int | None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IncomingInfo:
    """What a receiver knows when a transfer starts (for ``accept`` hooks and progress)."""

    session_id: int
    peer: Addr
    object_id: int
    name: str
    content_type: str
    size: int


Handler = Callable[[ReceivedObject], Awaitable[bytes | None]]
AcceptHook = Callable[[IncomingInfo], str | None]  # None accepts; a string refuses with that reason


def _norm(addr: Any) -> Addr:
    return (str(addr[0]), int(addr[1]))


class _UdpSocket:
    """A non-blocking UDP socket read in batches: asyncio's datagram transport wakes the loop once per
    datagram, and at tens of thousands of datagrams a second that wake-up is most of the cost."""

    def __init__(self, sock: socket.socket, driver: _Driver) -> None:
        self.sock = sock
        self._driver = driver
        self._loop = asyncio.get_running_loop()
        self._closing = False
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                # Room for a burst: a full receive buffer drops datagrams that then cost repairs.
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self._stamped = False
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self._stamped = True
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        batch: list[tuple[bytes, Any, float | None]] = []
        if self._stamped:
            # kernel stamps are wall-clock time: carried over to the loop's clock
            offset = self._loop.time() - time.time()
        for _ in range(READ_BATCH):
            try:
                if self._stamped:
                    data, ancillary, _flags, addr = self.sock.recvmsg(RECV_SIZE, 64)
                    arrival = None
                    for level, kind, value in ancillary:
                        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                            seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                            arrival = seconds + nanoseconds * 1e-9 + offset
                    batch.append((data, addr, arrival))
                else:
                    data, addr = self.sock.recvfrom(RECV_SIZE)
                    batch.append((data, addr, None))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ICMP errors surface here on a connected socket
                self._driver.socket_error = exc
                break
        if batch:
            self._driver.datagrams_received(batch)

    def sendto(self, data: bytes, addr: Addr | None) -> None:
        try:
            if addr is None:
                self.sock.send(data)
            else:
                self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._driver.send_dropped += 1  # a full send buffer drops, as the network would
        except OSError as exc:
            self._driver.socket_error = exc

    def get_extra_info(self, name: str) -> Any:
        return self.sock.getsockname() if name == "sockname" else None

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self._driver.connection_lost(None)


def _open_socket(host: str, port: int, family: int, *, remote: Addr | None = None) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        if remote is not None:
            sock.connect(remote)
    except OSError:
        sock.close()
        raise
    return sock


class _Driver:
    """Feeds the endpoint from the socket and the loop clock, and flushes what it wants to send."""

    def __init__(self, endpoint: Endpoint, on_event: Callable[[Event], None]) -> None:
        self.endpoint = endpoint
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self.transport: _UdpSocket | None = None
        self.send_dropped = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pump_scheduled = False
        self._last_now = float("-inf")  # the latest time given to the endpoint
        self.closed = asyncio.Event()
        self.socket_error: Exception | None = None
        self.connected = False

    def attach(self, sock: socket.socket) -> _UdpSocket:
        self.transport = _UdpSocket(sock, self)
        return self.transport

    def datagrams_received(self, batch: list[tuple[bytes, Any, float | None]]) -> None:
        now = self._loop.time()
        receive = self.endpoint.receive_datagram
        for data, addr, arrival in batch:
            # The kernel's arrival time where there is one, kept between the last time the endpoint
            # was given and now, so that its clock never runs backwards.
            at = now if arrival is None else min(max(arrival, self._last_now), now)
            self._last_now = at
            receive(data, _norm(addr), at)
        self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        if self._timer is not None:
            self._timer.cancel()

    def now(self) -> float:
        """The loop's time, noted as the latest the endpoint was given."""
        self._last_now = self._loop.time()
        return self._last_now

    # pumping
    def schedule_pump(self) -> None:
        """Coalesce: one pump per loop iteration, however many datagrams arrived in it."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self.pump)

    def pump(self) -> None:
        self._pump_scheduled = False
        if self.transport is None or self.transport.is_closing():
            return
        now = self._last_now = self._loop.time()
        timer = self.endpoint.get_timer()
        if timer is not None and timer <= now:
            self.endpoint.handle_timer(now)
        transport = self.transport
        for datagram, addr in self.endpoint.datagrams_to_send(now):
            # A connected (client) socket takes no address; its peer may be an IPv6 4-tuple.
            transport.sendto(datagram, None if self.connected else addr)
        while (event := self.endpoint.next_event()) is not None:
            self._on_event(event)
        self._arm_timer()

    def _arm_timer(self) -> None:
        timer = self.endpoint.get_timer()
        if timer == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = timer
        if timer is not None:
            self._timer = self._loop.call_at(max(timer, self._loop.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.pump()


class OutgoingObject:
    """Handle for an object being sent: await its delivery and, when asked for, its reply."""

    def __init__(
        self, session: ClientSession | _ServerSession, object_id: int, name: str, size: int, want_reply: bool
    ) -> None:
        self._session = session
        self.want_reply = want_reply
        self.object_id = object_id
        self.name = name
        self.size = size
        loop = asyncio.get_running_loop()
        self._delivered: asyncio.Future[None] = loop.create_future()
        self._reply: asyncio.Future[ReceivedObject] = loop.create_future()
        self._final_stats: dict[str, Any] | None = None

    async def delivered(self) -> None:
        await asyncio.shield(self._delivered)

    async def reply(self, timeout: float | None = None) -> ReceivedObject:
        return await asyncio.wait_for(asyncio.shield(self._reply), timeout)

    @property
    def done(self) -> bool:
        return self._delivered.done()

    @property
    def progress(self) -> tuple[int, int]:
        """(bytes sent at least once, total); the total once delivered."""
        if self._delivered.done() and self._delivered.exception() is None:
            return self.size, self.size
        obj = self._session.connection.outgoing.get(self.object_id)
        if obj is None:
            return 0, self.size
        return min(obj.next_new * obj.chunk_size, self.size), self.size

    def stats(self) -> dict[str, Any]:
        if self._final_stats is not None:
            return dict(self._final_stats)
        obj = self._session.connection.outgoing.get(self.object_id)
        return obj.stats() if obj is not None else {"object_id": self.object_id}

    def cancel(self) -> None:
        conn = self._session.connection
        if self.object_id in conn.outgoing:
            conn.cancel_object(self.object_id, self._session.driver.now())
            self._session.driver.schedule_pump()

    # fed by the session
    def _set_delivered(self, stats: dict[str, Any]) -> None:
        if self._final_stats is None or len(stats) >= len(self._final_stats):
            self._final_stats = stats
        if not self._delivered.done():
            self._delivered.set_result(None)

    def _set_failed(self, code: int, reason: str, stats: dict[str, Any]) -> None:
        self._final_stats = stats or self._final_stats
        error = ObjectFailedError(code, reason)
        for fut in (self._delivered, self._reply):
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # mark retrieved: not every caller awaits the reply

    def _set_reply(self, reply: ReceivedObject) -> None:
        if not self._reply.done():
            self._reply.set_result(reply)


class _SessionBase:
    connection: Connection
    driver: _Driver

    def __init__(self) -> None:
        self._objects: dict[int, OutgoingObject] = {}

    def send_object(
        self,
        data: bytes,
        *,
        name: str = "",
        content_type: str = "application/octet-stream",
        want_reply: bool = False,
        deadline: float | None = None,
        in_reply_to: int | None = None,
    ) -> OutgoingObject:
        """Queue an object; returns at once.

        Raises SessionError when the session can take no more objects, and InvalidObjectError (a
        ValueError) when this object cannot be sent (its name or content type), leaving the session be.
        """
        conn = self.connection
        if not conn.is_open and conn.state.value != "client_initial":
            raise SessionError(conn.close_code or ErrorCode.INTERNAL_ERROR, conn.close_reason or "session closed")
        now = self.driver.now()
        try:
            object_id = conn.send_object(
                data, now, name=name, content_type=content_type, want_reply=want_reply,
                in_reply_to=in_reply_to, deadline=deadline,
            )
        except InvalidObjectError:
            raise
        except LocalProtocolError as exc:  # the session's state or its object ids
            raise SessionError(ErrorCode.LIMIT_REACHED, str(exc)) from None
        handle = OutgoingObject(self, object_id, name, len(data), want_reply)  # type: ignore[arg-type]
        self._objects[object_id] = handle
        # The object may already have failed locally (too large for the peer).
        self.driver.pump()
        return handle

    def stats(self) -> dict[str, Any]:
        return self.connection.stats()

    @property
    def peer_limits(self) -> SessionParams:
        return self.connection.peer_params

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ObjectDelivered):
            handle = self._objects.get(event.object_id)
            if handle is not None:
                handle._set_delivered(event.stats)
                if not handle.want_reply or handle._reply.done():
                    self._objects.pop(event.object_id, None)
        elif isinstance(event, ev.ObjectFailed) and event.outgoing:
            handle = self._objects.pop(event.object_id, None)
            if handle is not None:
                handle._set_failed(event.error_code, event.reason, event.stats)

    def _deliver_reply(self, reply: ReceivedObject) -> bool:
        if reply.in_reply_to is None:
            return False
        handle = self._objects.get(reply.in_reply_to)
        if handle is None:
            return False
        handle._set_reply(reply)
        obj = self.connection.outgoing.get(reply.in_reply_to)
        if obj is not None:
            # The reply overtook the COMPLETE (lost or reordered): it proves the receiver verified
            # the whole object, so the object counts as delivered.
            handle._set_delivered(obj.stats())
        if handle.done:
            del self._objects[reply.in_reply_to]
        return True

    def _fail_all(self, code: int, reason: str) -> None:
        for handle in list(self._objects.values()):
            handle._set_failed(code, reason, {})
        self._objects.clear()


class ClientSession(_SessionBase):
    """A session opened by ``connect``. Use as an async context manager for a clean close."""

    def __init__(self, endpoint: Endpoint, driver: _Driver, connection: Connection, peer: Addr) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.driver = driver
        self.connection = connection
        self.peer = peer
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_object: Callable[[ReceivedObject], None] | None = None

    @property
    def session_id(self) -> int:
        return self.connection.session_id

    def _handle_event(self, event: Event) -> None:
        if isinstance(event, HandshakeCompleted):
            if not self._ready.done():
                self._ready.set_result(None)
        elif isinstance(event, ConnectionClosed):
            error = SessionError(event.error_code, event.reason)
            if not self._ready.done():
                self._ready.set_exception(error)
                self._ready.exception()
            self._fail_all(event.error_code or ErrorCode.CANCELLED, event.reason)
            if not self._closed.done():
                self._closed.set_result(None)
        elif isinstance(event, ObjectReceived):
            received = ReceivedObject(
                event.session_id, self.peer, event.object_id, event.name, event.content_type, event.data,
                event.want_reply, event.in_reply_to, event.stats,
            )
            if not self._deliver_reply(received) and self.on_object is not None:
                self.on_object(received)
        else:
            self._on_event(event)

    async def wait_idle(self) -> None:
        """Until every object sent so far is delivered or failed."""
        pending = [h._delivered for h in self._objects.values() if not h._delivered.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self, code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Wait for objects in flight (for a clean close), close the session and the socket."""
        if code == ErrorCode.NO_ERROR and self.connection.is_open:
            await self.wait_idle()
        now = self.driver.now()
        self.connection.close(now, code, reason)
        self.driver.pump()
        if self.driver.transport is not None:
            self.driver.transport.close()
        self._fail_all(code or ErrorCode.CANCELLED, reason or "session closed")

    close = aclose

    def abort(self, reason: str = "aborted") -> None:
        now = self.driver.now()
        self.connection.close(now, ErrorCode.APPLICATION_ERROR, reason)
        self.driver.pump()
        if self.driver.transport is not None:
            self.driver.transport.close()

    async def __aenter__(self) -> ClientSession:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            self.abort(f"sender failed: {exc_type.__name__}")


def reply_name(name: str) -> str:
    """The name of the reply to an object named ``name`` (spec Appendix C): ``reply:`` and the name,
    cut to the 255 bytes of UTF-8 a name may take, on a character boundary. A name of many
    multi-byte characters would otherwise not fit, and its reply could not be sent at all."""
    return utf8_cut(f"reply:{name}", MAX_NAME_LEN)


async def connect(
    host: str,
    port: int,
    *,
    config: SessionConfig | None = None,
    local_addr: Addr | None = None,
) -> ClientSession:
    """Open a session to a SNIP receiver. Raises SessionError when it cannot be opened."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise SessionError(ErrorCode.HANDSHAKE_TIMEOUT, f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    remote = _norm(sockaddr)
    endpoint = Endpoint(config)
    session_holder: list[ClientSession] = []

    def on_event(event: Event) -> None:
        if session_holder:
            session_holder[0]._handle_event(event)

    driver = _Driver(endpoint, on_event)
    try:
        bind_host = local_addr[0] if local_addr else ("::" if family == socket.AF_INET6 else "0.0.0.0")
        sock = _open_socket(bind_host, local_addr[1] if local_addr else 0, family, remote=remote)
        transport = driver.attach(sock)
    except OSError as exc:
        raise SessionError(ErrorCode.HANDSHAKE_TIMEOUT, f"cannot open a UDP socket to {host}:{port}: {exc}") from None
    driver.connected = True
    conn = endpoint.connect(remote, driver.now())
    session = ClientSession(endpoint, driver, conn, remote)
    session_holder.append(session)
    driver.pump()
    while True:
        try:
            await asyncio.wait_for(asyncio.shield(session._ready), 0.05)
            return session
        except TimeoutError:
            pass
        except SessionError:
            transport.close()
            raise
        if isinstance(driver.socket_error, ConnectionRefusedError):
            transport.close()
            raise SessionError(ErrorCode.HANDSHAKE_TIMEOUT, f"nothing is listening at {host}:{port} (connection refused)")


class _ServerSession(_SessionBase):
    def __init__(self, server: Server, connection: Connection) -> None:
        super().__init__()
        self.connection = connection
        self.driver = server._driver


class Server:
    """A SNIP receiver: accepts sessions, hands complete objects to ``handler``, sends its reply."""

    def __init__(self, endpoint: Endpoint, handler: Handler, accept: AcceptHook | None) -> None:
        self.endpoint = endpoint
        self._handler = handler
        self._accept = accept
        self._driver: _Driver
        self._sessions: dict[int, _ServerSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_event: Callable[[Event], None] | None = None
        self.completed = 0
        self.failed = 0

    @property
    def sockname(self) -> Addr:
        transport = self._driver.transport
        if transport is None:
            raise SessionError(ErrorCode.INTERNAL_ERROR, "server socket is not open")
        return _norm(transport.get_extra_info("sockname"))

    def stats(self) -> dict[str, Any]:
        return {
            **self.endpoint.stats(),
            "objects_completed": self.completed,
            "objects_failed": self.failed,
            "handlers_running": len(self._tasks),
        }

    def _session(self, session_id: int) -> _ServerSession | None:
        wrapper = self._sessions.get(session_id)
        if wrapper is None:
            conn = self.endpoint.sessions.get(session_id)
            if conn is None:
                return None
            wrapper = self._sessions[session_id] = _ServerSession(self, conn)
        return wrapper

    def _handle_event(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        if isinstance(event, ObjectReceived):
            session = self._session(event.session_id)
            if session is None:
                return
            self.completed += 1
            received = ReceivedObject(
                event.session_id, session.connection.peer, event.object_id, event.name, event.content_type,
                event.data, event.want_reply, event.in_reply_to, event.stats,
            )
            if session._deliver_reply(received):
                return
            # The object's bytes count against the endpoint's budget (spec R14.4-1) until its
            # handler is done with them: a peer must not fill memory faster than handlers drain it.
            held = len(event.data)
            self.endpoint.app_held_bytes += held
            task = asyncio.get_running_loop().create_task(self._run_handler(session, received))
            self._tasks.add(task)

            def handled(done: asyncio.Task[None]) -> None:
                self._tasks.discard(done)
                self.endpoint.app_held_bytes -= held

            task.add_done_callback(handled)
        elif isinstance(event, ev.ObjectFailed) and not event.outgoing:
            self.failed += 1
        elif isinstance(event, ConnectionClosed):
            session = self._sessions.pop(event.session_id, None)
            if session is not None:
                session._fail_all(event.error_code or ErrorCode.CANCELLED, event.reason)
        else:
            session = self._session(getattr(event, "session_id", 0))
            if session is not None:
                session._on_event(event)

    async def _run_handler(self, session: _ServerSession, received: ReceivedObject) -> None:
        try:
            reply = await self._handler(received)
        except Exception as exc:  # a failing handler must not take the receiver down
            log.exception("handler failed for %s", received.name)
            reply = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        if not received.want_reply:
            return
        conn = session.connection
        if not conn.is_open:
            return
        try:
            session.send_object(
                reply or b"", name=reply_name(received.name), content_type="application/json",
                in_reply_to=received.object_id,
            )
        except SnipError as exc:
            log.warning("could not send the reply for %s: %s", received.name, exc)

    def incoming_in_progress(self) -> int:
        return sum(len(c.incoming) for c in self.endpoint.sessions.values())

    def _work_in_progress(self) -> bool:
        sessions = self.endpoint.sessions.values()
        return bool(self._tasks) or any(c.incoming or (c.is_open and c.pending_outgoing()) for c in sessions)

    async def close(self, grace: float = 0.0) -> None:
        """Stop: refuse new sessions and objects, let transfers in progress (objects arriving, the
        handlers working on them, the replies they write) finish for up to ``grace`` seconds, then
        abort the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self.endpoint.stop_accepting()
        while grace > 0 and loop.time() < deadline and self._work_in_progress():
            await asyncio.sleep(0.02)
        now = self._driver.now()
        for conn in list(self.endpoint.sessions.values()):
            conn.close(now, ErrorCode.APPLICATION_ERROR, "receiver shutting down")
        self._driver.pump()
        for task in list(self._tasks):
            task.cancel()
        if self._driver.transport is not None:
            self._driver.transport.close()

    async def wait_closed(self) -> None:
        await self._driver.closed.wait()


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    config: SessionConfig | None = None,
    accept: AcceptHook | None = None,
) -> Server:
    """Listen for SNIP sessions on host:port (IPv4 or IPv6)."""
    endpoint = Endpoint(config, server=True)
    server = Server(endpoint, handler, accept)
    if accept is not None:
        hook = accept

        def admit(conn: Connection, announce: Announce) -> str | None:
            return hook(IncomingInfo(conn.session_id, conn.peer, announce.object_id, announce.name,
                                     announce.content_type, announce.total_length))

        endpoint.admit = admit
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    driver = _Driver(endpoint, server._handle_event)
    try:
        driver.attach(_open_socket(host, port, family))
    except OSError as exc:
        raise SessionError(ErrorCode.INTERNAL_ERROR, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server._driver = driver
    return server
