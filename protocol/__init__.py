"""SNIP/2: the wire protocol (spec.md), its sans-I/O core and the asyncio binding."""
