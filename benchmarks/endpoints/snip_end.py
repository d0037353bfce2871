"""snip over protocol.aio directly (the benchmark measures the protocol, not an app built on it).

``--snip-option KEY=VALUE`` settings go to ``SessionConfig`` on both ends (e.g. ``rate=fixed:45mbit``,
``initial_window=256``), so the protocol can be tuned from the benchmark's command line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

from benchmarks.endpoints import JSON, EndpointOptions, Handler, Sent
from benchmarks.workloads import BenchImage
from protocol import aio
from protocol.constants import ErrorCode

_CLOSE_S = 3.0
_REOPEN_PAUSE_S = 1.0


def unavailable() -> str | None:
    return None


def session_config(extra: dict[str, str]) -> aio.SessionConfig:
    """SessionConfig from KEY=VALUE strings, each converted to the field's type."""
    defaults = aio.SessionConfig()
    settings: dict[str, Any] = {}
    for key, text in extra.items():
        if key not in {f.name for f in dataclasses.fields(defaults)} or key == "extra":
            raise ValueError(f"--snip-option {key}: SessionConfig has no such setting")
        current = getattr(defaults, key)
        if isinstance(current, bool):
            settings[key] = text.lower() in ("1", "true", "yes", "on")
        elif isinstance(current, int):
            settings[key] = int(text)
        elif isinstance(current, float):
            settings[key] = float(text)
        else:
            settings[key] = text
    config = dataclasses.replace(defaults, **settings)
    config.validate()
    return config


class SnipReceiver:
    def __init__(self, server: aio.Server, config: aio.SessionConfig) -> None:
        self._server = server
        host, port = server.sockname
        self.info: JSON = {"host": host, "port": port, "rate_control": config.rate}

    async def stop(self) -> None:
        await self._server.close()

    def stats(self) -> JSON:
        return self._server.stats()


async def start_receiver(options: EndpointOptions, handler: Handler) -> SnipReceiver:
    config = session_config(options.extra)

    async def on_object(obj: aio.ReceivedObject) -> bytes | None:
        reply = await handler(obj.name, obj.data, f"{obj.peer[0]}:{obj.peer[1]}")
        return json.dumps(reply).encode()

    server = await aio.serve(options.host, options.port, on_object, config=config)
    return SnipReceiver(server, config)


class SnipSender:
    def __init__(self, options: EndpointOptions, peer: JSON) -> None:
        self.options = options
        self.port = options.port  # where the runner routed us (the relay, in relay mode)
        self.config = session_config(options.extra)
        self.session: aio.ClientSession | None = None
        self.sessions = 1

    async def open(self) -> None:
        self.session = await aio.connect(self.options.host, self.port, config=self.config)

    async def send(self, image: BenchImage) -> Sent:
        """One image; after an outage past the idle timeout, again on a new session, as `snip send` does.

        The worker's per-image timeout bounds the whole, reopening included.
        """
        start = time.monotonic()
        while True:
            sent, went_silent = await self._send_once(image, start)
            if not went_silent:
                return sent
            self.sessions += 1
            if self.session is not None:
                self.session.abort("session went silent")  # frees its socket; the peer heard nothing
            while True:
                try:
                    await self.open()
                    break
                except aio.SnipError:
                    await asyncio.sleep(_REOPEN_PAUSE_S)  # refused at once: nothing listening yet

    async def _send_once(self, image: BenchImage, start: float) -> tuple[Sent, bool]:
        """The image's fate on the current session, and whether that session died of silence."""
        if self.session is None:
            raise RuntimeError("open() first")
        obj = self.session.send_object(image.data, name=image.name, content_type=image.content_type, want_reply=True)
        acked: list[float] = []

        async def confirmed() -> None:
            await obj.delivered()
            acked.append(time.monotonic() - start)

        # Wait for the reply, not for the delivery confirmation first: a reply can overtake the
        # confirmation (and protocol.aio before d4ab5d9 then never resolved delivered()).
        confirmation = asyncio.create_task(confirmed())
        try:
            reply = await obj.reply()
        except aio.SnipError as exc:
            went_silent = getattr(exc, "code", None) == ErrorCode.IDLE_TIMEOUT
            return Sent(None, None, f"{type(exc).__name__}: {exc}", obj.stats()), went_silent
        finally:
            if not confirmation.done():
                confirmation.cancel()
        if not acked and obj.done:
            acked.append(time.monotonic() - start)  # the reply itself was the confirmation
        return Sent(acked[0] if acked else None, json.loads(reply.data), None, obj.stats()), False

    def stats(self) -> JSON:
        out: JSON = {"rate_control": self.config.rate, "sessions": self.sessions}
        if self.session is not None:
            out.update(self.session.stats())
        return out

    async def close(self) -> None:
        if self.session is not None:
            try:
                await asyncio.wait_for(self.session.aclose(), _CLOSE_S)
            except (TimeoutError, aio.SnipError):
                self.session.abort("benchmark over")


def make_sender(options: EndpointOptions, peer: JSON) -> SnipSender:
    return SnipSender(options, peer)
