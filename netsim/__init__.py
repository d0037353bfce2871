"""netsim: one seeded link model driving a virtual-time simulator, a UDP relay and a TUN emulator."""
