"""ImageNet-style input: resize the shorter side, centre-crop, scale to 0..1, normalise.

The same steps as torchvision's ``ImageClassification`` preset, applied to uint8 RGB arrays and
stacked into one batch tensor so several images share a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from apps.classifier.animal.vision import ensure_torchvision_importable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessor:
    resize_size: int
    crop_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    @classmethod
    def for_input(cls, crop_size: int, mean: Sequence[float], std: Sequence[float]) -> Preprocessor:
        """The common recipe for a model trained at ``crop_size``: resize to 8/7 of it, then crop."""
        return cls(
            resize_size=round(crop_size * 256 / 224),
            crop_size=crop_size,
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
        )

    def one(self, rgb: npt.NDArray[np.uint8]) -> Any:
        import torch
        ensure_torchvision_importable()
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as tf

        # Decoded arrays are often read-only views of Pillow's buffer; torch wants writable memory.
        array = rgb if rgb.flags.writeable and rgb.flags.c_contiguous else np.array(rgb, order="C")
        tensor = torch.from_numpy(array).permute(2, 0, 1)
        mode = InterpolationMode(self.interpolation)
        tensor = tf.resize(tensor, [self.resize_size], interpolation=mode, antialias=True)
        tensor = tf.center_crop(tensor, [self.crop_size, self.crop_size])
        tensor = tensor.to(torch.float32).div_(255.0)
        return tf.normalize(tensor, list(self.mean), list(self.std))

    def batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> Any:
        import torch

        return torch.stack([self.one(rgb) for rgb in images])
