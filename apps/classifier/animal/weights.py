"""The ImageNet model behind the animal describer, and where its weights live.

Default architecture: ConvNeXt-Tiny. Measured here (2-core CPU, 2 torch threads, one 224x224 image,
forward pass only, random weights; top-1 on ImageNet-1k from torchvision's weight tables):

    architecture          top-1    GFLOPs   CPU ms/image
    mobilenet_v3_large    75.3%     0.22       12
    regnet_y_1_6gf        80.9%     1.6        32
    resnet50 (V2)         80.9%     4.1        49
    regnet_y_3_2gf        82.0%     3.2        47
    convnext_tiny         82.5%     4.5        47
    efficientnet_b3       82.0%     1.8        58   (300x300 input)
    efficientnet_v2_s     84.2%     8.4       129   (384x384 input)

ConvNeXt-Tiny is the most accurate of the ~50 ms group: a receiver classifying images from many
senders gets about 20 images/s from two cores. EfficientNet-V2-S is 1.7 points better at 2.7x
the cost; pass ``arch="efficientnet_v2_s"`` (``--arch``) to trade speed for it. Any torchvision
ImageNet-1k classifier name works.

Weights: torchvision's URL for the architecture, fetched on first use (with timeouts, retries and
the hash check of ``download.py``) into the standard torch hub cache (``$TORCH_HOME/hub/checkpoints``,
by default ``~/.cache/torch/hub/checkpoints``) and loaded from there afterwards, always with
``weights_only=True``. Without network the error names the exact file and folder to put it in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from apps.classifier.animal.download import DownloadError, fetch
from apps.classifier.animal.vision import ensure_torchvision_importable
from apps.classifier.base import ClassifierError

DEFAULT_ARCH = "convnext_tiny"


class WeightsMissingError(ClassifierError):
    """The weights file is not in the cache and could not be fetched."""


@dataclass(frozen=True)
class ImageNetSpec:
    arch: str
    url: str
    filename: str
    categories: tuple[str, ...]
    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # "bilinear" or "bicubic"

    @property
    def cache_dir(self) -> Path:
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints"

    @property
    def path(self) -> Path:
        return self.cache_dir / self.filename


def imagenet_spec(arch: str = DEFAULT_ARCH) -> ImageNetSpec:
    """What torchvision says about the default ImageNet-1k weights of ``arch``."""
    ensure_torchvision_importable()
    from torchvision.models import get_model_weights, list_models

    if arch not in list_models():
        raise ClassifierError(f"unknown torchvision architecture {arch!r} (e.g. convnext_tiny, efficientnet_v2_s)")
    try:
        weights: Any = get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise ClassifierError(f"torchvision has no pretrained weights for {arch!r}") from None
    categories = tuple(weights.meta.get("categories") or ())
    if len(categories) != 1000:
        raise ClassifierError(f"{arch!r} is not an ImageNet-1k classifier ({len(categories)} classes)")
    preset = weights.transforms()
    return ImageNetSpec(
        arch=arch,
        url=str(weights.url),
        filename=os.path.basename(urlparse(str(weights.url)).path),
        categories=categories,
        resize_size=int(preset.resize_size[0]),
        crop_size=int(preset.crop_size[0]),
        mean=(float(preset.mean[0]), float(preset.mean[1]), float(preset.mean[2])),
        std=(float(preset.std[0]), float(preset.std[1]), float(preset.std[2])),
        interpolation=str(getattr(preset.interpolation, "value", preset.interpolation)),
    )


def missing_message(spec: ImageNetSpec, cause: str | None = None) -> str:
    text = (
        f"weights for the {spec.arch} animal model are not available: put {spec.filename} into "
        f"{spec.cache_dir}/ (that is $TORCH_HOME/hub/checkpoints; it comes from {spec.url})"
    )
    return f"{text}; download failed: {cause}" if cause else text


def load_imagenet_state_dict(spec: ImageNetSpec, *, download: bool = True) -> dict[str, Any]:
    """The state_dict from the hub cache, fetching it first when allowed."""
    import torch

    if not spec.path.is_file():
        if not download:
            raise WeightsMissingError(missing_message(spec))
        try:
            fetch(spec.url, spec.path)
        except DownloadError as exc:
            raise WeightsMissingError(missing_message(spec, str(exc))) from None
    try:
        state = torch.load(spec.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors from a damaged or foreign file
        raise ClassifierError(f"cannot read weights file {spec.path}: {type(exc).__name__}: {exc}; delete it and fetch it again") from None
    if not isinstance(state, dict):
        raise ClassifierError(f"weights file {spec.path} does not hold a state_dict")
    return state


def build_imagenet_model(spec: ImageNetSpec, *, download: bool = True) -> Any:
    """The architecture with the cached weights loaded, in eval mode, on the CPU."""
    ensure_torchvision_importable()
    from torchvision.models import get_model

    state = load_imagenet_state_dict(spec, download=download)
    model = get_model(spec.arch, weights=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ClassifierError(f"weights file {spec.path} does not fit {spec.arch}: {first}") from None
    return model.eval()
