"""The transports the sender and receiver apps can run over, chosen with ``--via``.

Each transport is a module offering three functions:

- ``add_arguments(parser, role)``: add its own options; ``role`` is ``"sender"`` or ``"receiver"``.
  Options of different transports share one parser, so transports other than snip prefix theirs
  (``--tcp-...``, ``--mail-...``).
- ``sender_from_args(args, target) -> SenderTransport``
- ``receiver_from_args(args, listen) -> ReceiverTransport``; the receiver's generic limits are on
  ``args`` for every transport to honour: ``max_size`` (bytes), ``max_transfers``, ``grace`` (seconds).

Modules are imported only when used, so a checkout without one of them (or without its extra
dependencies) still offers the others and says clearly what is missing.

Stats keys the apps display when a transport provides them (``SendOutcome.stats`` and
``ReceivedImage.stats``): ``chunks``, ``chunks_sent``, ``chunks_received``, ``chunks_lost``,
``recovered``, ``duplicates``, ``retransmitted``, ``repairs_sent``, ``rtt_ms``, ``bytes_sent``; ``expired: True`` marks
an image dropped because its live-mode deadline passed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Callable
from typing import Literal, Protocol, cast, runtime_checkable

from apps.transport import ReceiverTransport, SenderTransport, TransportError

Role = Literal["sender", "receiver"]

# name -> module; the first is the default.
TRANSPORT_MODULES: dict[str, str] = {
    "snip": "apps.transports.snip",
    "tcp": "apps.transports.tcp",
    "email": "apps.transports.email",
}
DEFAULT_TRANSPORT = "snip"


class TransportModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser, role: Role) -> None: ...

    def sender_from_args(self, args: argparse.Namespace, target: str) -> SenderTransport: ...

    def receiver_from_args(self, args: argparse.Namespace, listen: str) -> ReceiverTransport: ...


@runtime_checkable
class Listening(Protocol):
    """Optional for receiver transports: say where they listen once bound (port 0 picks one)."""

    async def wait_listening(self) -> str: ...


@runtime_checkable
class Admitting(Protocol):
    """Optional for receiver transports: vet each transfer by (name, size) before its data flows.

    The check returns None to accept or the reason for refusing, which the sender is told.
    """

    def set_admission(self, check: Callable[[str, int], str | None]) -> None: ...


async def listening_address(transport: object, serving: asyncio.Task[None], configured: str) -> str:
    """Where a receiver transport listens once it does (port 0 picks one); ``configured`` when it
    cannot say. Raises what ``serving`` failed with (address in use...) if it ends first."""
    if not isinstance(transport, Listening):
        return configured
    listening = asyncio.create_task(transport.wait_listening())
    try:
        await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():
            serving.result()
            raise TransportError("the receiver stopped before it listened")
        return listening.result()
    finally:
        listening.cancel()


class TransportUnavailable(Exception):
    """The chosen transport cannot be used in this installation."""


def load(name: str) -> TransportModule:
    """Import the transport called ``name``, or raise TransportUnavailable saying why not."""
    module_name = TRANSPORT_MODULES.get(name)
    if module_name is None:
        raise TransportUnavailable(f"unknown transport {name!r}; choose one of {', '.join(TRANSPORT_MODULES)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise TransportUnavailable(
                f"the {name} transport is not part of this installation ({module_name} is missing)"
            ) from exc
        raise TransportUnavailable(
            f"the {name} transport needs the Python package {exc.name!r}, which is not installed"
        ) from exc
    return cast(TransportModule, module)


def add_transport_arguments(parser: argparse.ArgumentParser, role: Role) -> list[str]:
    """Let every importable transport add its options; returns the names of those that could."""
    present: list[str] = []
    for name in TRANSPORT_MODULES:
        try:
            module = load(name)
        except TransportUnavailable:
            continue
        module.add_arguments(parser, role)
        present.append(name)
    return present


def split_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``[IPv6]:PORT``, a bare IPv6 address or ``HOST`` (with a default port)."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    # More than one ':' and no brackets: a bare IPv6 address.
    if not host:
        raise ValueError(f"{text!r}: missing host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r}: missing port (HOST:PORT)")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port must be a number from 0 to 65535")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
