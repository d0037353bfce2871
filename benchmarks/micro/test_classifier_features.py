"""Microbenchmarks of the real-vs-animated building blocks on a 512x512 photo.

Run with ``.venv/bin/pytest benchmarks/micro --benchmark-enable``; a plain run checks each case once.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from apps.classifier.imagedecode import decode_image
from apps.classifier.realanimated.features import bilateral_stats, byte_lengths, color_stats, extract


@pytest.fixture(scope="module")
def photo() -> np.ndarray[Any, Any]:
    import skimage.data

    return np.ascontiguousarray(getattr(skimage.data, "astronaut")())  # noqa: B009 (untyped in skimage)


@pytest.fixture(scope="module")
def jpeg(photo: np.ndarray[Any, Any]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def test_decode_jpeg(benchmark: BenchmarkFixture, jpeg: bytes) -> None:
    assert benchmark(decode_image, jpeg).rgb.shape == (512, 512, 3)


def test_byte_lengths(benchmark: BenchmarkFixture, jpeg: bytes) -> None:
    assert benchmark(byte_lengths, jpeg)[0] == len(jpeg)


def test_bilateral_histogram_distance(benchmark: BenchmarkFixture, photo: np.ndarray[Any, Any]) -> None:
    distance, residual = benchmark(bilateral_stats, photo)
    assert 0.0 < distance < 1.0 and residual > 0.0


def test_top_colour_share(benchmark: BenchmarkFixture, photo: np.ndarray[Any, Any]) -> None:
    share, distinct = benchmark(color_stats, photo)
    assert 0.0 < share < 1.0 and distinct > 512


def test_all_features(benchmark: BenchmarkFixture, photo: np.ndarray[Any, Any], jpeg: bytes) -> None:
    features = benchmark(extract, photo, jpeg, (512, 512))
    assert features.byte_length == len(jpeg)
