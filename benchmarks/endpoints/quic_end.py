"""QUIC (aioquic, from PyPI) as an optional peer: one bidirectional stream per image.

The client writes a small header (name, size) and the image, then ends the stream; the server
reads it, runs the handler and answers with the JSON on the same stream. TLS uses a throw-away CA
made like the mail server's (apps.mail.certs), verification on. Flow-control windows are raised
to 64 MiB so they never limit a transfer, and datagrams use the path's 1472 bytes of UDP
payload; the congestion control is aioquic's default (Reno) unless ``--option
congestion_control_algorithm=cubic`` says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.endpoints import JSON, EndpointOptions, Handler, Sent, free_port
from benchmarks.workloads import BenchImage

_ALPN = ["snip-bench"]
_WINDOW = 64 << 20
_DATAGRAM = 1472
_HEADER = struct.Struct(">HQ")  # name length, data length


def unavailable() -> str | None:
    return None if importlib.util.find_spec("aioquic") is not None else "aioquic is not installed"


def _aioquic(module: str) -> Any:
    # Imported by name: aioquic is optional, and the type checker must not need it either.
    return importlib.import_module(f"aioquic.{module}")


def _configuration(options: EndpointOptions, *, is_client: bool) -> Any:
    return _aioquic("quic.configuration").QuicConfiguration(
        alpn_protocols=_ALPN, is_client=is_client, max_data=_WINDOW, max_stream_data=_WINDOW,
        max_datagram_size=_DATAGRAM, idle_timeout=max(60.0, options.timeout * 2),
        congestion_control_algorithm=options.extra.get("congestion_control_algorithm", "reno"),
    )


class QuicReceiver:
    def __init__(self, server: Any, info: JSON, folder: tempfile.TemporaryDirectory[str]) -> None:
        self._server = server
        self.info = info
        self._folder = folder
        self.served = 0

    async def stop(self) -> None:
        self._server.close()
        self._folder.cleanup()

    def stats(self) -> JSON:
        return {"streams_served": self.served, "congestion_control": self.info.get("congestion_control")}


async def start_receiver(options: EndpointOptions, handler: Handler) -> QuicReceiver:
    from apps.mail.certs import make_certificate

    folder = tempfile.TemporaryDirectory(prefix="snip-bench-quic-")
    cert = await asyncio.to_thread(make_certificate, Path(folder.name), [options.host, "127.0.0.1", "localhost"])
    configuration = _configuration(options, is_client=False)
    configuration.load_cert_chain(str(cert.cert_file), str(cert.key_file))
    port = options.port or free_port(socket.SOCK_DGRAM, options.host)
    receiver: QuicReceiver | None = None
    tasks: set[asyncio.Task[None]] = set()

    def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(serve_stream(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def serve_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name_len, size = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        name = (await reader.readexactly(name_len)).decode()
        data = await reader.readexactly(size)
        reply = await handler(name, data, "quic")
        if receiver is not None:
            receiver.served += 1
        writer.write(json.dumps(reply).encode())
        writer.write_eof()

    server = await _aioquic("asyncio.server").serve(options.host, port, configuration=configuration, stream_handler=on_stream)
    info: JSON = {"host": options.host, "port": port, "ca_file": str(cert.ca_file),
                  "congestion_control": configuration.congestion_control_algorithm}
    receiver = QuicReceiver(server, info, folder)
    return receiver


class QuicSender:
    def __init__(self, options: EndpointOptions, peer: JSON) -> None:
        self.options = options
        self.configuration = _configuration(options, is_client=True)
        self.configuration.load_verify_locations(str(peer["ca_file"]))
        self.configuration.server_name = str(peer.get("host") or options.host)
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        self._client = await self._stack.enter_async_context(
            _aioquic("asyncio.client").connect(self.options.host, self.options.port, configuration=self.configuration)
        )

    async def send(self, image: BenchImage) -> Sent:
        if self._client is None:
            raise RuntimeError("open() first")
        started = time.monotonic()
        reader, writer = await self._client.create_stream()
        name = image.name.encode()
        writer.write(_HEADER.pack(len(name), image.size) + name + image.data)
        writer.write_eof()
        raw = await reader.read()
        elapsed = time.monotonic() - started
        try:
            reply = json.loads(raw)
        except ValueError:
            return Sent(None, None, f"bad reply after {elapsed:.3f} s: {raw[:80]!r}")
        return Sent(None, reply)

    def stats(self) -> JSON:
        return {"congestion_control": self.configuration.congestion_control_algorithm}

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stack.aclose(), 3.0)


def make_sender(options: EndpointOptions, peer: JSON) -> QuicSender:
    return QuicSender(options, peer)
