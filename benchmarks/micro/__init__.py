"""Microbenchmarks (pytest-benchmark): run with `pytest benchmarks/micro --benchmark-enable`."""
