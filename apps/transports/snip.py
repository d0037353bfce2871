"""The snip transport: the apps' images carried by the SNIP protocol (protocol.aio).

A sender opens one session and keeps many objects in flight on it; the receiver serves many
sessions at once. protocol.aio is imported when a transport is built, not when this module is, so
`snip --help` works in any checkout and a missing binding is one clear message.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from apps.transport import (
    JSON,
    ImageHandler,
    OutgoingImage,
    Progress,
    ProgressCallback,
    ReceivedImage,
    SendOutcome,
    TransportError,
)
from apps.transports import Role, TransportUnavailable, join_host_port, split_host_port
from apps.transports.units import size_arg

DEFAULT_PORT = 9000
PROGRESS_INTERVAL_S = 0.1
# After a session falls silent: how long the sender keeps trying to open a new one, and the pause
# between attempts the receiver refused at once.
DEFAULT_RECONNECT_FOR_S = 300.0
# The sender waits longer for its first handshake than the protocol's 10 s: an outage of 8 s at the
# start of a path with a 1.5 s RTT leaves no INITIAL time to be answered within 10 s.
DEFAULT_CONNECT_TIMEOUT_S = 30.0
RECONNECT_PAUSE_S = 1.0
# Accepted for --rate besides the protocol's own names.
RATE_ALIASES = {"bbr": "snipbbr"}


# The parts of protocol.aio used here (its documented API), typed so that this module type-checks
# on its own and states exactly what it relies on.
class _PeerLimits(Protocol):
    @property
    def max_object_size(self) -> int: ...


class _ReceivedObject(Protocol):
    @property
    def session_id(self) -> int: ...
    @property
    def peer(self) -> tuple[str, int]: ...
    @property
    def object_id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def want_reply(self) -> bool: ...
    @property
    def stats(self) -> dict[str, Any]: ...


class _OutgoingObject(Protocol):
    @property
    def progress(self) -> tuple[int, int]: ...

    async def delivered(self) -> None: ...

    async def reply(self) -> _ReceivedObject: ...

    def stats(self) -> dict[str, Any]: ...


class _Session(Protocol):
    @property
    def peer_limits(self) -> _PeerLimits: ...

    def send_object(
        self, data: bytes, *, name: str, content_type: str, want_reply: bool, deadline: float | None
    ) -> _OutgoingObject: ...

    def stats(self) -> dict[str, Any]: ...

    async def __aenter__(self) -> _Session: ...

    async def __aexit__(self, *exc: object) -> None: ...


class _IncomingInfo(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...


class _Server(Protocol):
    @property
    def sockname(self) -> tuple[str, int]: ...

    def stats(self) -> dict[str, Any]: ...

    async def close(self, grace: float = 0.0) -> None: ...


_ObjectHandler = Callable[[_ReceivedObject], Awaitable[bytes | None]]
Admission = Callable[[str, int], str | None]  # (name, size) -> None to accept, or why not


class _Aio(Protocol):
    SnipError: type[Exception]
    ObjectFailed: type[Exception]
    InvalidObjectError: type[Exception]

    def SessionConfig(self, **settings: Any) -> Any: ...

    async def connect(self, host: str, port: int, *, config: Any) -> _Session: ...

    async def serve(self, host: str, port: int, handler: _ObjectHandler, *, config: Any,
                    accept: Callable[[_IncomingInfo], str | None] | None = None) -> _Server: ...


def load_aio() -> _Aio:
    """protocol.aio, or TransportUnavailable when this checkout lacks it."""
    try:
        module = importlib.import_module("protocol.aio")
    except ModuleNotFoundError as exc:
        if exc.name in ("protocol", "protocol.aio"):
            raise TransportUnavailable(
                "the snip transport needs the protocol's asyncio binding (protocol.aio), which this "
                "checkout does not have"
            ) from exc
        raise
    return cast(_Aio, module)


def _connect_failure(where: str, exc: Exception) -> str:
    """What to tell the user when a session could not be opened: a receiver that answered and
    refused (spec 7.3, 5.4) is not one that never answered."""
    from protocol.constants import ErrorCode  # there once protocol.aio loaded (load_aio)

    code = getattr(exc, "code", None)
    if code in (ErrorCode.SERVER_BUSY, ErrorCode.VERSION_MISMATCH):
        return f"the snip receiver at {where} refused the session ({ErrorCode(code).name}): {exc}"
    return f"no snip receiver answered at {where}: {exc}"


def session_config(**settings: Any) -> Any:
    """A validated protocol.aio SessionConfig; TransportError naming a bad setting."""
    settings = {key: value for key, value in settings.items() if value is not None}
    if "rate" in settings:
        settings["rate"] = RATE_ALIASES.get(settings["rate"], settings["rate"])
    config = load_aio().SessionConfig(**settings)
    validate = getattr(config, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise TransportError(f"bad snip setting: {exc}") from None
    return config


# --- options -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, role: Role) -> None:
    group = parser.add_argument_group("snip transport (--via snip)")
    group.add_argument("--chunk-size", type=int, metavar="BYTES", help="payload bytes per datagram (default 1024)")
    group.add_argument("--rate", metavar="CONTROL",
                       help='rate control: "snipbbr" (the default; "bbr" also works) or a fixed rate such as '
                       '"fixed:20mbit"')
    group.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                       help="give a session up after this long without hearing from the peer (default 30)")
    if role == "receiver":
        group.add_argument("--max-memory", type=size_arg, metavar="SIZE",
                           help="bytes of images held at once across all senders, arriving or being handled; "
                           "an image beyond it is refused as 'receiver busy' (default a quarter of the "
                           "machine's memory, at least --max-size)")
    if role == "sender":
        group.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                           help="how long to keep trying to open the session before giving up "
                           f"(default {DEFAULT_CONNECT_TIMEOUT_S:g})")
        group.add_argument("--max-in-flight", type=int, default=64, metavar="N",
                           help="images in flight at once on the session (default 64)")
        group.add_argument("--reply-timeout", type=float, default=120.0, metavar="SECONDS",
                           help="how long to wait for a reply after delivery (default 120)")
        group.add_argument("--reconnect-for", type=float, default=DEFAULT_RECONNECT_FOR_S, metavar="SECONDS",
                           help="after the receiver falls silent for the idle timeout (a long outage), keep "
                           "trying to reopen the session this long and send the unfinished images again "
                           f"(default {DEFAULT_RECONNECT_FOR_S:g}; 0 gives up at once)")


def _positive(value: float | None, option: str) -> float | None:
    if value is not None and value <= 0:
        raise TransportError(f"{option} must be positive")
    return value


def _not_negative(value: float, option: str) -> float:
    if not value >= 0:  # also NaN
        raise TransportError(f"{option} must be 0 or more")
    return value


def sender_from_args(args: argparse.Namespace, target: str) -> SnipSender:
    try:
        host, port = split_host_port(target, DEFAULT_PORT)
    except ValueError as exc:
        raise TransportError(f"bad target: {exc}") from None
    config = session_config(
        chunk_size=args.chunk_size, rate=args.rate, idle_timeout=_positive(args.idle_timeout, "--idle-timeout"),
        handshake_timeout=_positive(args.connect_timeout, "--connect-timeout") or DEFAULT_CONNECT_TIMEOUT_S,
        max_datagram_size=max(1472, args.chunk_size + 30) if args.chunk_size else None,
    )
    return SnipSender(host, port, config=config, max_in_flight=max(1, args.max_in_flight),
                      reply_timeout=_positive(args.reply_timeout, "--reply-timeout") or 120.0,
                      reconnect_for=_not_negative(args.reconnect_for, "--reconnect-for"))


def receiver_from_args(args: argparse.Namespace, listen: str) -> SnipReceiver:
    """A receiver on ``listen`` honouring the apps' generic ``max_size``, ``max_transfers`` and ``grace``."""
    try:
        host, port = split_host_port(listen, DEFAULT_PORT)
    except ValueError as exc:
        raise TransportError(f"bad listen address: {exc}") from None
    max_size = getattr(args, "max_size", None)
    max_memory = getattr(args, "max_memory", None)
    if max_memory is not None and max_size is not None and max_memory < max_size:
        raise TransportError(f"--max-memory ({max_memory} bytes) must hold at least one image of --max-size "
                             f"({max_size} bytes)")
    config = session_config(
        chunk_size=args.chunk_size, rate=args.rate, idle_timeout=_positive(args.idle_timeout, "--idle-timeout"),
        max_object_size=max_size, max_concurrent_objects=getattr(args, "max_transfers", None),
        # A receiver told of a chunk size accepts datagrams that large (spec 6: max_datagram_size).
        max_datagram_size=max(1472, args.chunk_size + 30) if args.chunk_size else None,
        # The protocol insists the buffer holds at least one whole object.
        max_buffered_bytes=max(256 << 20, max_size) if max_size else None,
        max_receiving_bytes=max_memory,
    )
    return SnipReceiver(host, port, config=config, grace=getattr(args, "grace", None) or 5.0)


# --- stats and errors ----------------------------------------------------------------------------

# protocol.aio's names -> the apps' (see apps.transports).
_RENAMES = {"nacked": "chunks_lost", "elapsed": "elapsed_s"}


def _normalise(stats: dict[str, Any]) -> JSON:
    return {_RENAMES.get(key, key): value for key, value in stats.items()}


def _rtt_ms(session_stats: dict[str, Any]) -> float | None:
    rtt = session_stats.get("srtt_ms", session_stats.get("rtt_ms"))
    if isinstance(rtt, dict):
        rtt = rtt.get("srtt")
    return float(rtt) if isinstance(rtt, int | float) else None


def _decode_reply(data: bytes) -> JSON:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"text": data.decode("utf-8", errors="replace")}
    return value if isinstance(value, dict) else {"value": value}


# spec 13 error codes (protocol.constants.ErrorCode) by what they mean to the user.
_TOO_LARGE, _DEADLINE, _REFUSED, _BUSY, _IDLE_TIMEOUT, _LIMIT = 0x04, 0x07, 0x08, 0x09, 0x0A, 0x0E
_OBJECT_LEVEL = {0x03, _TOO_LARGE, 0x05, _DEADLINE, _REFUSED, _BUSY, 0x0C, _LIMIT}


def describe_failure(code: int | None, reason: str) -> tuple[str, bool]:
    """(a message for the user, whether the whole session is over) for an object's failure."""
    if code == _TOO_LARGE:
        return f"too large for the receiver ({reason})", False
    if code == _DEADLINE:
        return f"deadline passed before delivery ({reason})", False
    if code == _REFUSED:
        return f"refused by the receiver: {reason}", False
    if code in (_BUSY, _LIMIT):
        return f"the receiver is busy: {reason}", False
    if code in _OBJECT_LEVEL:
        return f"failed: {reason} (error {code:#04x})", False
    if code == _IDLE_TIMEOUT:
        return "connection lost: the receiver stopped answering (idle timeout)", True
    return f"connection lost: {reason}", True


# --- sender --------------------------------------------------------------------------------------


class SnipSender:
    """Sends images to one snip receiver, over one session at a time.

    A session that falls silent (the receiver unheard for the idle timeout: a long outage) is
    opened again for up to ``reconnect_for`` seconds, and the images it left unfinished are sent
    again on the new one; the receiver recognises a second copy of an image it already kept and
    answers it with the first copy's reply. A session the receiver closed is not reopened.
    """

    def __init__(self, host: str, port: int, *, config: Any = None, max_in_flight: int = 64,
                 reply_timeout: float = 120.0, reconnect_for: float = DEFAULT_RECONNECT_FOR_S) -> None:
        self.host = host
        self.port = port
        self._config = config if config is not None else session_config()
        self._max_in_flight = max_in_flight
        self._reply_timeout = reply_timeout
        self._reconnect_for = reconnect_for
        self.session_stats: JSON = {}
        # Told of reconnects, for the user (the CLI prints them on stderr).
        self.on_notice: Callable[[str], None] | None = None

    async def send_all(
        self,
        images: AsyncIterator[OutgoingImage],
        *,
        want_reply: bool,
        on_progress: ProgressCallback | None = None,
    ) -> list[SendOutcome]:
        aio = load_aio()
        where = join_host_port(self.host, self.port)
        try:
            session = await aio.connect(self.host, self.port, config=self._config)
        except aio.SnipError as exc:
            raise TransportError(_connect_failure(where, exc)) from None
        queue = _Queue(images)
        outcomes: dict[int, SendOutcome] = {}
        sessions = 0
        while True:
            sessions += 1
            run = _SendRun(aio, session, want_reply, on_progress, self._max_in_flight, self._reply_timeout)
            try:
                async with session:
                    await run.run(queue)
            except aio.SnipError:
                pass  # closing a session whose peer is gone fails; every image has its outcome already
            self.session_stats = {**_normalise(session.stats()), "sessions": sessions}
            outcomes.update((outcome.index, outcome) for outcome in run.outcomes())
            if not run.went_silent or self._reconnect_for <= 0:
                break
            # Live frames are not sent again: newer ones from the source are worth more.
            retry = [item for item in run.unfinished if item.image.deadline is None]
            if not retry and queue.exhausted:
                break
            reopened = await self._reconnect(aio, where, len(retry))
            if reopened is None:
                break
            session = reopened
            queue.put_back(retry)
        return [outcomes[index] for index in sorted(outcomes)]

    async def _reconnect(self, aio: _Aio, where: str, unfinished: int) -> _Session | None:
        """A new session within ``reconnect_for`` seconds, or None."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._reconnect_for
        self._notice(f"the receiver at {where} went silent; reopening the session for up to "
                     f"{self._reconnect_for:g} s ({unfinished} image(s) to send again)")
        while loop.time() < give_up:
            started = loop.time()
            try:
                session = await aio.connect(self.host, self.port, config=self._config)
            except aio.SnipError:
                # Refused at once (nothing listening yet): wait a little rather than spin.
                await asyncio.sleep(max(0.0, min(RECONNECT_PAUSE_S - (loop.time() - started),
                                                 give_up - loop.time())))
                continue
            self._notice(f"session to {where} reopened")
            return session
        self._notice(f"gave up reopening the session to {where} after {self._reconnect_for:g} s")
        return None

    def _notice(self, message: str) -> None:
        if self.on_notice is not None:
            self.on_notice(message)

    async def aclose(self) -> None:
        return None


# An image's counters that add up over the sessions it was sent in: what a silent session spent
# on it is on the wire too.
_COUNTERS_OVER_SESSIONS = ("chunks_sent", "retransmitted", "chunks_lost", "repairs_sent")


@dataclass(frozen=True)
class _Item:
    """An image with its place in the run, when it was first submitted (loop time), and what the
    sessions that failed to finish it spent on it."""

    index: int
    image: OutgoingImage
    first_submitted: float | None = None
    earlier: Mapping[str, int] = field(default_factory=dict)
    attempts: int = 0  # sessions it was sent in before

    def again(self, first_submitted: float, stats: JSON) -> _Item:
        """The item to send in the next session, after this session spent ``stats`` on it."""
        spent = {key: self.earlier.get(key, 0) + _count(stats, key) for key in _COUNTERS_OVER_SESSIONS}
        return _Item(self.index, self.image, first_submitted, spent, self.attempts + 1)

    def total(self, stats: JSON) -> JSON:
        """``stats`` of this session's attempt with the earlier sessions' counters added."""
        if not self.attempts:
            return stats
        summed = {key: _count(stats, key) + spent for key, spent in self.earlier.items()}
        return {**stats, **summed, "sessions": self.attempts + 1}


def _count(stats: JSON, key: str) -> int:
    value = stats.get(key)
    return int(value) if isinstance(value, int | float) else 0


class _Queue:
    """The images still to send: those put back after a lost session first, then the source's."""

    def __init__(self, images: AsyncIterator[OutgoingImage]) -> None:
        self._source = aiter(images)
        self._again: deque[_Item] = deque()
        self._next_index = 0
        self.exhausted = False  # the source has nothing more

    def put_back(self, items: list[_Item]) -> None:
        self._again.extend(sorted(items, key=lambda item: item.index))

    async def next(self) -> _Item | None:
        if self._again:
            return self._again.popleft()
        try:
            image = await anext(self._source)
        except StopAsyncIteration:
            self.exhausted = True
            return None
        item = _Item(self._next_index, image)
        self._next_index += 1
        return item


class _SendRun:
    """One session's share of a send_all call: submits images, tracks each to delivery and reply."""

    def __init__(self, aio: _Aio, session: _Session, want_reply: bool, on_progress: ProgressCallback | None,
                 max_in_flight: int, reply_timeout: float) -> None:
        self._aio = aio
        self._session = session
        self._want_reply = want_reply
        self._on_progress = on_progress
        self._slots = asyncio.Semaphore(max_in_flight)
        self._reply_timeout = reply_timeout
        self._tasks: list[asyncio.Task[SendOutcome]] = []
        self._active: dict[int, tuple[str, _OutgoingObject]] = {}
        self._session_error: str | None = None
        # Set when the session ended because the receiver fell silent (idle timeout).
        self.went_silent = False
        # Images the silent session left without a delivery (or, when a reply is wanted, without one).
        self.unfinished: list[_Item] = []

    async def run(self, queue: _Queue) -> None:
        ticker = asyncio.create_task(self._tick()) if self._on_progress else None
        try:
            # A slot is taken before the next image is pulled, so a live source hands over its
            # newest frame when there is room for it, not one that waited.
            while self._session_error is None:  # once the receiver is gone, stop taking images
                await self._slots.acquire()
                item = await queue.next()
                if item is None:
                    self._slots.release()
                    break
                self._tasks.append(asyncio.create_task(self._send_one(item)))
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            if ticker is not None:
                ticker.cancel()
            for task in self._tasks:
                task.cancel()

    def outcomes(self) -> list[SendOutcome]:
        return [task.result() for task in self._tasks if task.done() and not task.cancelled()]

    async def _send_one(self, item: _Item) -> SendOutcome:
        loop = asyncio.get_running_loop()
        image, index = item.image, item.index
        start = loop.time() if item.first_submitted is None else item.first_submitted
        size = len(image.data)

        def failed(error: str, stats: JSON | None = None) -> SendOutcome:
            return SendOutcome(image.name, index, size, False, error=error, elapsed_s=loop.time() - start,
                               stats=item.total(stats or {}))

        obj: _OutgoingObject | None = None
        try:
            limit = self._session.peer_limits.max_object_size
            if size > limit:
                return failed(f"too large for the receiver: {size} bytes, its limit is {limit} bytes")
            if self._session_error is not None:
                if self.went_silent:  # not sent in this session: nothing to add
                    self.unfinished.append(replace(item, first_submitted=start))
                return failed(f"not sent: {self._session_error}")
            obj = self._session.send_object(image.data, name=image.name, content_type=image.content_type,
                                            want_reply=self._want_reply, deadline=image.deadline)
            self._active[index] = (image.name, obj)
            await obj.delivered()
        except self._aio.InvalidObjectError as exc:  # this image only: the session goes on
            return failed(f"not sent: {exc}")
        except self._aio.SnipError as exc:
            message, expired = self._failure(exc)
            stats = self._stats(obj) if obj is not None else {}
            if expired:
                stats["expired"] = True
            elif self.went_silent:
                self.unfinished.append(item.again(start, stats))
            return failed(message, stats)
        finally:
            self._active.pop(index, None)
            self._slots.release()
        delivered_s = loop.time() - start
        if self._on_progress is not None:
            self._on_progress(Progress(image.name, index, size, size))
        reply: JSON | None = None
        reply_s: float | None = None
        error: str | None = None
        if self._want_reply:
            try:
                answer = await asyncio.wait_for(obj.reply(), self._reply_timeout)
                reply = _decode_reply(answer.data)
                reply_s = loop.time() - start
            except TimeoutError:
                error = f"delivered, but no reply within {self._reply_timeout:g} s"
            except self._aio.SnipError as exc:
                error = f"delivered, but no reply ({self._failure(exc)[0]})"
                if self.went_silent:
                    # Sent again, the receiver answers with its first reply.
                    self.unfinished.append(item.again(start, self._stats(obj)))
        return SendOutcome(image.name, index, size, True, reply=reply, error=error, elapsed_s=delivered_s,
                           reply_elapsed_s=reply_s, stats=item.total(self._stats(obj)))

    def _failure(self, exc: Exception) -> tuple[str, bool]:
        """The user's message for a failure, and whether it was a passed deadline."""
        code = raw_code = getattr(exc, "code", None)
        reason = str(getattr(exc, "reason", None) or exc)
        if not isinstance(exc, self._aio.ObjectFailed):
            code = None  # the session itself failed
        message, session_over = describe_failure(code, reason)
        if session_over and self._session_error is None:
            self._session_error = message
            self.went_silent = raw_code == _IDLE_TIMEOUT
        return message, code == _DEADLINE

    def _stats(self, obj: _OutgoingObject) -> JSON:
        stats = _normalise(obj.stats())
        rtt = _rtt_ms(self._session.stats())
        if rtt is not None:
            stats["rtt_ms"] = rtt
        return stats

    async def _tick(self) -> None:
        callback = self._on_progress
        if callback is None:
            return
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            for index, (name, obj) in list(self._active.items()):
                done, total = obj.progress
                callback(Progress(name, index, done, total))


# --- receiver ------------------------------------------------------------------------------------


class SnipReceiver:
    """Serves snip sessions; hands each verified object to the app's handler and returns its reply."""

    def __init__(self, host: str, port: int, *, config: Any = None, grace: float = 5.0) -> None:
        self.host = host
        self.port = port
        self._config = config if config is not None else session_config()
        self._grace = grace
        self._server: _Server | None = None
        self._listening = asyncio.Event()
        self._address = ""
        self._admission: Admission | None = None

    def set_admission(self, check: Admission) -> None:
        """Check each transfer when it is announced (name, size), before any data is accepted."""
        self._admission = check

    async def wait_listening(self) -> str:
        await self._listening.wait()
        return self._address

    @property
    def server(self) -> _Server | None:
        return self._server

    def stats(self) -> JSON:
        return _normalise(self._server.stats()) if self._server is not None else {}

    async def serve(self, handler: ImageHandler, stop: asyncio.Event) -> None:
        aio = load_aio()

        async def on_object(obj: _ReceivedObject) -> bytes | None:
            image = ReceivedImage(
                name=obj.name, content_type=obj.content_type, data=obj.data,
                peer=join_host_port(str(obj.peer[0]), int(obj.peer[1])),
                transfer_id=f"{obj.session_id:x}/{obj.object_id}", stats=_normalise(dict(obj.stats)),
            )
            reply = await handler(image)
            if not obj.want_reply or reply is None:
                return None
            return json.dumps(reply, default=str).encode()

        def accept(info: _IncomingInfo) -> str | None:
            return self._admission(info.name, info.size) if self._admission is not None else None

        try:
            server = await aio.serve(self.host, self.port, on_object, config=self._config, accept=accept)
        except (aio.SnipError, OSError) as exc:
            raise TransportError(str(exc)) from None
        self._server = server
        self._address = join_host_port(str(server.sockname[0]), int(server.sockname[1]))
        self._listening.set()
        try:
            await stop.wait()
        finally:
            # Transfers in progress get the grace period to finish; the rest are aborted, and the
            # senders told so.
            await server.close(self._grace)
