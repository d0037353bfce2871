"""SRT as an optional peer: Haivision's libsrt (Debian's libsrt1.5) driven through ctypes, in file mode.

One SRT connection carries the images one after another: a small header (name length, size),
the name and the image, then the receiver's JSON reply framed by its length. The sockets are
file mode (``SRTO_TRANSTYPE = SRTT_FILE``: reliable, in order, no too-late drop, SRT's file
congestion control) and otherwise keep libsrt's defaults; ``--peer-option srt:KEY=VALUE`` sets
an integer socket option on both ends (``fc``, ``sndbuf``, ``rcvbuf``, ``mss``, ``maxbw``, ...).

libsrt's calls block, so each connection is served on its own thread. libsrt 1.5.1 (Debian 12)
sometimes wakes a blocking ``srt_recv`` with nothing to read and returns 0, which its own
``srt-tunnel`` takes for the end of the stream and drops the connection (seen here under loss);
a stream socket reports a closed peer as an error, so 0 is read again here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import socket
import struct
import threading
import time
from typing import Any

from benchmarks.endpoints import JSON, EndpointOptions, Handler, Sent
from benchmarks.workloads import BenchImage

_HEADER = struct.Struct(">HQ")  # name length, image length
_REPLY = struct.Struct(">I")
_MAX_IMAGE = 256 << 20
_MAX_REPLY = 1 << 20
_READ = 256 << 10
_LIBRARIES = ("srt-gnutls", "srt-openssl", "srt")
_SONAMES = ("libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", "libsrt.so.1.5")

SRTO_TRANSTYPE, SRTT_FILE = 50, 1
# Integer socket options a run may set (srt.h, SRT_SOCKOPT); maxbw and inputbw are 64-bit.
OPTIONS: dict[str, tuple[int, str]] = {
    "mss": (0, "i"), "fc": (4, "i"), "sndbuf": (5, "i"), "rcvbuf": (6, "i"), "udp_sndbuf": (8, "i"),
    "udp_rcvbuf": (9, "i"), "maxbw": (16, "q"), "inputbw": (24, "q"), "oheadbw": (25, "i"),
    "conntimeo": (36, "i"), "lossmaxttl": (42, "i"), "payloadsize": (49, "i"), "peeridletimeo": (55, "i"),
}
_SPURIOUS_LIMIT = 100_000  # zero-byte reads in a row before the connection counts as dead


class SrtError(Exception):
    pass


_lib: Any = None
_lib_lock = threading.Lock()


def _load() -> Any:
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        candidates = [ctypes.util.find_library(name) for name in _LIBRARIES] + list(_SONAMES)
        for candidate in candidates:
            if not candidate:
                continue
            try:
                lib = ctypes.CDLL(candidate)
            except OSError:
                continue
            lib.srt_getlasterror_str.restype = ctypes.c_char_p
            lib.srt_getversion.restype = ctypes.c_uint32
            if lib.srt_startup() < 0:
                raise SrtError("srt_startup failed")
            lib.srt_setloglevel(2)  # LOG_CRIT: libsrt's error lines are not ours to print
            _lib = lib
            return lib
        raise SrtError("libsrt not found")


def unavailable() -> str | None:
    try:
        _load()
    except SrtError as exc:
        return f"{exc} (Debian: apt install libsrt1.5-gnutls, or srt-tools)"
    return None


def version() -> str:
    number = int(_load().srt_getversion())
    return f"{number >> 16}.{(number >> 8) & 0xFF}.{number & 0xFF}"


def _check(result: int, what: str) -> int:
    if result < 0:
        raise SrtError(f"{what}: {_load().srt_getlasterror_str().decode(errors='replace')}")
    return result


def _address(host: str, port: int) -> bytes:
    # struct sockaddr_in: family (host order), port (network order), IPv4 address, 8 zero bytes.
    return struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton(host) + bytes(8)


def _socket(options: dict[str, str]) -> int:
    lib = _load()
    sock = _check(lib.srt_create_socket(), "srt_create_socket")
    try:
        _set(sock, SRTO_TRANSTYPE, "i", SRTT_FILE)
        for key, value in options.items():
            if key not in OPTIONS:
                raise SrtError(f"unknown SRT option {key!r}; choose from {', '.join(OPTIONS)}")
            number, kind = OPTIONS[key]
            _set(sock, number, kind, int(value))
    except (SrtError, ValueError):
        lib.srt_close(sock)  # a refused setting must not leak the socket
        raise
    return sock


def _set(sock: int, option: int, kind: str, value: int) -> None:
    raw = struct.pack("=" + kind, value)
    _check(_load().srt_setsockflag(sock, option, raw, len(raw)), f"srt_setsockflag({option})")


def _send_all(sock: int, data: bytes) -> None:
    lib = _load()
    view = memoryview(data)
    while view:
        chunk = bytes(view[: 1 << 20])
        sent = _check(lib.srt_send(sock, chunk, len(chunk)), "srt_send")
        view = view[sent:]


def _recv_exactly(sock: int, size: int) -> bytes:
    lib = _load()
    out = bytearray()
    buffer = ctypes.create_string_buffer(_READ)
    idle = 0
    while len(out) < size:
        got = _check(lib.srt_recv(sock, buffer, min(_READ, size - len(out))), "srt_recv")
        if got == 0:  # libsrt 1.5.1's spurious wake-up (see the module's note)
            idle += 1
            if idle > _SPURIOUS_LIMIT:
                raise SrtError("srt_recv keeps returning nothing")
            time.sleep(0.0005)
            continue
        idle = 0
        out += buffer.raw[:got]
    return bytes(out)


def _close(sock: int) -> None:
    with contextlib.suppress(Exception):
        _load().srt_close(sock)


class SrtReceiver:
    def __init__(self, listener: int, handler: Handler, info: JSON, loop: asyncio.AbstractEventLoop) -> None:
        self._listener = listener
        self._handler = handler
        self.info = info
        self._loop = loop
        self._stopping = threading.Event()
        self._connections: set[int] = set()
        self.served = 0
        self.errors: list[str] = []
        threading.Thread(target=self._accept_loop, name="srt-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        lib = _load()
        while not self._stopping.is_set():
            peer = ctypes.create_string_buffer(16)
            length = ctypes.c_int(16)
            sock = lib.srt_accept(self._listener, peer, ctypes.byref(length))
            if sock < 0:
                return  # the listener was closed
            self._connections.add(sock)
            threading.Thread(target=self._serve, args=(sock,), name=f"srt-{sock}", daemon=True).start()

    def _serve(self, sock: int) -> None:
        try:
            while not self._stopping.is_set():
                name_len, size = _HEADER.unpack(_recv_exactly(sock, _HEADER.size))
                if size > _MAX_IMAGE:
                    raise SrtError(f"image of {size} bytes refused (limit {_MAX_IMAGE})")
                name = _recv_exactly(sock, name_len).decode(errors="replace")
                data = _recv_exactly(sock, size)
                reply = asyncio.run_coroutine_threadsafe(self._handle(name, data), self._loop).result()
                body = json.dumps(reply).encode()
                _send_all(sock, _REPLY.pack(len(body)) + body)
                self.served += 1
        except SrtError as exc:
            if not self._stopping.is_set():
                self.errors.append(str(exc))
        finally:
            self._connections.discard(sock)
            _close(sock)

    async def _handle(self, name: str, data: bytes) -> JSON:
        return await self._handler(name, data, "srt")

    async def stop(self) -> None:
        self._stopping.set()
        _close(self._listener)
        for sock in list(self._connections):
            _close(sock)

    def stats(self) -> JSON:
        return {"images_served": self.served, "errors": self.errors[-5:],
                "congestion_control": self.info.get("congestion_control")}


async def start_receiver(options: EndpointOptions, handler: Handler) -> SrtReceiver:
    settings = dict(options.extra)
    listener = _socket(settings)
    address = _address(options.host, options.port)
    lib = _load()
    try:
        _check(lib.srt_bind(listener, address, len(address)), "srt_bind")
        _check(lib.srt_listen(listener, 4), "srt_listen")
        name = ctypes.create_string_buffer(16)
        length = ctypes.c_int(16)
        _check(lib.srt_getsockname(listener, name, ctypes.byref(length)), "srt_getsockname")
    except SrtError:
        _close(listener)
        raise
    port = struct.unpack(">H", name.raw[2:4])[0]
    info: JSON = {"host": options.host, "port": port, "options": settings, "libsrt": version(),
                  "congestion_control": "SRT file mode (FileCC)"}
    return SrtReceiver(listener, handler, info, asyncio.get_running_loop())


class SrtSender:
    def __init__(self, options: EndpointOptions, peer: JSON) -> None:
        self.options = options
        self.settings = {str(k): str(v) for k, v in (peer.get("options") or {}).items()}
        self.sock: int | None = None

    def _connect(self) -> int:
        sock = _socket(self.settings)
        address = _address(self.options.host, self.options.port)
        try:
            _check(_load().srt_connect(sock, address, len(address)), "srt_connect")
        except SrtError:
            _close(sock)
            raise
        return sock

    async def open(self) -> None:
        self.sock = await asyncio.to_thread(self._connect)

    def _exchange(self, sock: int, image: BenchImage) -> JSON:
        name = image.name.encode()
        _send_all(sock, _HEADER.pack(len(name), image.size) + name + image.data)
        (length,) = _REPLY.unpack(_recv_exactly(sock, _REPLY.size))
        if length > _MAX_REPLY:
            raise SrtError(f"reply of {length} bytes refused")
        reply: JSON = json.loads(_recv_exactly(sock, length))
        return reply

    async def send(self, image: BenchImage) -> Sent:
        if self.sock is None:
            raise RuntimeError("open() first")
        try:
            reply = await asyncio.to_thread(self._exchange, self.sock, image)
        except (SrtError, ValueError) as exc:
            return Sent(None, None, str(exc))
        return Sent(None, reply)

    def stats(self) -> JSON:
        return {"congestion_control": "SRT file mode (FileCC)", "libsrt": version(), "options": self.settings}

    async def close(self) -> None:
        if self.sock is not None:
            _close(self.sock)
            self.sock = None


def make_sender(options: EndpointOptions, peer: JSON) -> SrtSender:
    return SrtSender(options, peer)
