"""``python -m benchmarks.micro [PYTEST ARGS]``: every microbenchmark, results in results/microbench.json.

The same as ``./run microbench``: pytest-benchmark over benchmarks/micro with benchmarking on
(the project's pytest defaults turn it off), keeping the last run's figures in the results folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

RESULTS = Path("results") / "microbench.json"


def main(argv: list[str] | None = None) -> int:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    args = [str(here), "--benchmark-enable", "--benchmark-only", f"--benchmark-json={RESULTS}", "-p", "no:cacheprovider"]
    return int(pytest.main([*args, *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
