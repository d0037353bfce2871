"""Black-box conformance and fuzz runners for SNIP/2 (``snip conformance``, ``snip fuzz``).

The tester speaks SNIP on the wire, knowing nothing of the implementation under test: it crafts
datagrams with the project's codec (and wrong ones by hand), sends them through a ``Target`` and
judges what comes back against protocol/spec.md. A target is either a live endpoint over real UDP
or the project's own sans-I/O endpoint inside netsim's virtual-time simulator.
"""
