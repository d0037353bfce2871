"""Small typed helpers the microbenchmarks share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from pytest_benchmark.fixture import BenchmarkFixture


def pedantic(benchmark: BenchmarkFixture) -> Callable[..., Any]:
    """``benchmark.pedantic``, typed (pytest-benchmark leaves it unannotated)."""
    return cast(Callable[..., Any], benchmark.pedantic)
