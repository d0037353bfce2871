"""netsim: one seeded link model driving a virtual-time simulator, a UDP relay and a TUN emulator.

- ``netsim.spec``: link strings and settings (``parse_link``, ``LinkSpec``, presets); the syntax is
  documented there.
- ``netsim.model``: the per-direction link model every face uses.
- ``netsim.simulator``: ``Simulator`` drives sans-I/O endpoints in virtual time.
- ``netsim.relay``: ``UdpRelay`` impairs any UDP program's traffic in real time (no root).
- ``netsim.tun``: ``TunLink`` joins two network namespaces through the model (root).
- ``netsim.cli``: ``snip netsim describe | presets | relay | shell | reap``.

Everything here uses the standard library only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netsim.model import DirectionModel, DirectionStats, LinkModel
    from netsim.relay import UdpRelay
    from netsim.simulator import (
        Endpoint,
        RoutingError,
        SimLink,
        SimulationError,
        SimulationStalled,
        SimulationTimeout,
        Simulator,
    )
    from netsim.spec import (
        PRESETS,
        Bernoulli,
        DirectionSpec,
        FourState,
        GilbertElliott,
        LinkSpec,
        LossTrace,
        RateTrace,
        SpecError,
        parse_link,
    )
    from netsim.tun import TunLink, TunUnavailable

# Loaded on first use, so that `snip --help` (which imports netsim.cli) stays fast.
_HOME = {
    "DirectionModel": "model", "DirectionStats": "model", "LinkModel": "model",
    "UdpRelay": "relay",
    "Endpoint": "simulator", "RoutingError": "simulator", "SimLink": "simulator",
    "SimulationError": "simulator", "SimulationStalled": "simulator", "SimulationTimeout": "simulator",
    "Simulator": "simulator",
    "PRESETS": "spec", "Bernoulli": "spec", "DirectionSpec": "spec", "FourState": "spec",
    "GilbertElliott": "spec", "LinkSpec": "spec", "LossTrace": "spec", "RateTrace": "spec",
    "SpecError": "spec", "parse_link": "spec",
    "TunLink": "tun", "TunUnavailable": "tun",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'netsim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"netsim.{module}"), name)


__all__ = [
    "PRESETS",
    "Bernoulli",
    "DirectionModel",
    "DirectionSpec",
    "DirectionStats",
    "Endpoint",
    "FourState",
    "GilbertElliott",
    "LinkModel",
    "LinkSpec",
    "LossTrace",
    "RateTrace",
    "RoutingError",
    "SimLink",
    "SimulationError",
    "SimulationStalled",
    "SimulationTimeout",
    "Simulator",
    "SpecError",
    "TunLink",
    "TunUnavailable",
    "UdpRelay",
    "parse_link",
]
