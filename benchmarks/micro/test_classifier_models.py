"""Microbenchmarks of each registry classifier on one image, decode included, on the CPU.

The animal model runs with a random initialisation of its architecture saved into a temporary
torch hub cache (no weights can be downloaded here): the cost is the real one, the answers are not.
Run with ``.venv/bin/pytest benchmarks/micro --benchmark-enable``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from apps.classifier import registry
from apps.classifier.animal.vision import ensure_torchvision_importable

REAL_VS_ANIMATED = ("bytes", "bilateral", "colors", "combined")


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    import skimage.data
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(getattr(skimage.data, "chelsea")()).save(buffer, "JPEG", quality=88)  # noqa: B009 (untyped in skimage)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def random_animal_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import torch
    ensure_torchvision_importable()
    from torchvision.models import get_model

    from apps.classifier.animal.weights import DEFAULT_ARCH, imagenet_spec

    home = tmp_path_factory.mktemp("torch_home")
    target = home / "hub" / "checkpoints" / imagenet_spec(DEFAULT_ARCH).filename
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(get_model(DEFAULT_ARCH, weights=None).state_dict(), target)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        registry.clear_cache()
        yield home
    registry.clear_cache()


@pytest.mark.parametrize("name", REAL_VS_ANIMATED)
def test_real_vs_animated(benchmark: BenchmarkFixture, name: str, jpeg: bytes) -> None:
    classifier = registry.create(name)
    result = benchmark(classifier.classify, jpeg)
    assert result["answer"] in ("real", "animated")


def test_animal_one_image(benchmark: BenchmarkFixture, jpeg: bytes, random_animal_weights: Path) -> None:
    classifier = registry.create("animal", device="cpu", download=False)
    result = benchmark(classifier.classify, jpeg)
    assert isinstance(result["answer"], str)


def test_animal_batch_of_8(benchmark: BenchmarkFixture, jpeg: bytes, random_animal_weights: Path) -> None:
    classifier = registry.create("animal", device="cpu", download=False)
    results = benchmark(classifier.classify_batch, [jpeg] * 8)
    assert len(results) == 8 and all("answer" in r for r in results)
