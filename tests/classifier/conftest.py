"""Shared fixtures: small encoded images, a hand-made huge JPEG, and a torch hub cache with weights.

No network: the animal model's weights are a seeded random initialisation of the real
architecture, saved under the exact file name torchvision's URL uses, in a temporary TORCH_HOME.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.classifier import registry
from apps.classifier.animal.vision import ensure_torchvision_importable

# Tests import torchvision directly too; beside a CPU-only torch that needs this first (see vision.py).
ensure_torchvision_importable()


def encode(array: np.ndarray[Any, Any], fmt: str, **options: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def flat_gray_jpeg(width: int, height: int) -> bytes:
    """A valid baseline grayscale JPEG whose every 8x8 block is mid-gray (value 128).

    One-symbol Huffman tables make each block two zero bits, so even 20000x20000 is 1.5 MB and
    is built in milliseconds instead of encoding 400 million pixels.
    """

    def segment(marker: int, payload: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload

    one_code = bytes([1] + [0] * 15)
    blocks = -(-width // 8) * -(-height // 8)
    return (
        b"\xff\xd8"
        + segment(0xDB, b"\x00" + b"\x01" * 64)
        + segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + segment(0xC4, b"\x00" + one_code + b"\x00")
        + segment(0xC4, b"\x10" + one_code + b"\x00")
        + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + b"\x00" * -(-blocks * 2 // 8)
        + b"\xff\xd9"
    )


@pytest.fixture(scope="session")
def photo() -> np.ndarray[Any, Any]:
    import skimage.data

    return np.ascontiguousarray(skimage.data.chelsea()[::2, ::2])  # 150x226, the cat


@pytest.fixture(scope="session")
def photo_jpeg(photo: np.ndarray[Any, Any]) -> bytes:
    return encode(photo, "JPEG", quality=90)


@pytest.fixture(scope="session")
def drawing_png() -> bytes:
    from apps.classifier.realanimated.drawing import draw_animated

    img, _ = draw_animated(np.random.default_rng(3), 240, 180)
    return encode(img, "PNG")


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    # Tests change TORCH_HOME and options; a cached model from another test must not leak in.
    registry.clear_cache()
    yield
    registry.clear_cache()


@pytest.fixture(scope="session")
def hub_with_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """(TORCH_HOME, the in-memory model whose state_dict was saved there)."""
    import torch
    from torchvision.models import get_model

    from apps.classifier.animal.weights import DEFAULT_ARCH, imagenet_spec

    home = tmp_path_factory.mktemp("torch_home")
    spec = imagenet_spec(DEFAULT_ARCH)
    torch.manual_seed(0)
    model = get_model(DEFAULT_ARCH, weights=None).eval()
    target = home / "hub" / "checkpoints" / spec.filename
    target.parent.mkdir(parents=True)
    torch.save(model.state_dict(), target)
    return home, model


@pytest.fixture
def torch_home(hub_with_weights: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(hub_with_weights[0]))
    return hub_with_weights[0]


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    return tmp_path / "empty_home"
