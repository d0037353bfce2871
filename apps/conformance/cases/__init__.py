"""The case table: one module per spec section registers its cases; ``ALL`` lists them in spec order."""

from __future__ import annotations

from importlib import import_module

from ..model import Case
from ..registry import registered

MODULES = (
    "s03_version",
    "s04_datagram",
    "s05_packets",
    "s06_params",
    "s07_handshake",
    "s08_objects",
    "s09_reliability",
    "s10_integrity",
    "s11_limits",
    "s12_close",
    "s13_errors",
    "s14_security",
)

for _name in MODULES:
    import_module(f"{__name__}.{_name}")

ALL: tuple[Case, ...] = registered()
