"""The animal describer: an ImageNet classifier (or your own model) answering in the original schema.

Result: the registry fields (``answer`` is the common name or "Could not identify", ``confidence``
the top class's probability), then the original keys ``scientific_name, common_name,
description, habitat, endangered, dangerous, poisonous, venomous, probability`` (percent),
``conservation_status`` and ``label`` (the model's class name) where known, ``top_k`` (the K most
likely classes, same keys; non-animal ImageNet classes have null names and flags), ``model`` and
``device``. Under ``threshold`` (default 20%) or when the top class is not an animal, the answer is
the original's "Could not identify" (see ``apps.classifier.animal.table``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apps.classifier.animal.byo import load_custom_model
from apps.classifier.animal.preprocess import Preprocessor
from apps.classifier.animal.table import (
    COULD_NOT_IDENTIFY,
    AnimalInfo,
    TableError,
    could_not_identify,
    load_imagenet_table,
    load_original_labels,
    not_an_animal,
)
from apps.classifier.animal.weights import DEFAULT_ARCH, build_imagenet_model, imagenet_spec
from apps.classifier.base import BaseClassifier, ClassifierError
from apps.classifier.device import resolve_device
from apps.classifier.imagedecode import DEFAULT_MAX_PIXELS, DecodedImage

DEFAULT_TOP_K = 5
DEFAULT_THRESHOLD = 0.20  # the original: below 20% confidence, "Could not identify"


class AnimalClassifier(BaseClassifier):
    def __init__(
        self,
        name: str = "animal",
        *,
        device: str | None = None,
        arch: str | None = None,
        top_k: int = DEFAULT_TOP_K,
        threshold: float = DEFAULT_THRESHOLD,
        download: bool = True,
        model_path: str | Path | None = None,
        labels_path: str | Path | None = None,
        trust_pickle: bool = False,
        input_size: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(name, max_pixels=max_pixels)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ClassifierError(f"top_k must be a positive integer, got {top_k!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ClassifierError(f"threshold must be between 0 and 1, got {threshold!r}")
        self.threshold = float(threshold)
        self.device = resolve_device(device)
        self.entries: list[AnimalInfo | None]
        self.labels: list[str]
        module: Any
        if model_path is not None:
            if labels_path is None:
                raise ClassifierError("a custom model needs its labels file (--labels / labels_path=)")
            try:
                infos = load_original_labels(Path(labels_path))
            except TableError as exc:
                raise ClassifierError(str(exc)) from None
            custom = load_custom_model(model_path, num_classes=len(infos), arch=arch, input_size=input_size, trust_pickle=trust_pickle)
            module, self.preprocessor = custom.module, custom.preprocessor
            self.entries = list(infos)
            self.labels = [info.scientific_name for info in infos]
            self.model_name = f"{custom.kind} {Path(model_path).name}" + (f" ({custom.arch})" if custom.arch else "")
        else:
            spec = imagenet_spec(arch or DEFAULT_ARCH)
            module = build_imagenet_model(spec, download=download)
            try:
                table = load_imagenet_table()
            except TableError as exc:
                raise ClassifierError(str(exc)) from None
            self.entries = [table.get(i) for i in range(len(spec.categories))]
            self.labels = list(spec.categories)
            self.preprocessor = Preprocessor(spec.resize_size, spec.crop_size, spec.mean, spec.std, spec.interpolation)
            self.model_name = f"{spec.arch} (ImageNet-1k)"
        self.module = module.to(self.device).eval()
        self.top_k = min(top_k, len(self.labels))
        self.needed_side = self.preprocessor.resize_size

    def _predict(self, images: Sequence[DecodedImage]) -> list[tuple[str, float, dict[str, Any]]]:
        import torch

        batch = self.preprocessor.batch([image.rgb for image in images]).to(self.device)
        with torch.inference_mode():
            logits = self.module(batch)
        probabilities = torch.softmax(logits.float(), dim=1).cpu()
        values, indices = torch.topk(probabilities, self.top_k, dim=1)
        return [self._describe(v.tolist(), i.tolist()) for v, i in zip(values, indices, strict=True)]

    def _entry(self, index: int, probability: float) -> dict[str, Any]:
        info = self.entries[index]
        return info.answer(probability) if info is not None else not_an_animal(self.labels[index], probability)

    def _describe(self, probabilities: list[float], indices: list[int]) -> tuple[str, float, dict[str, Any]]:
        best, p = indices[0], probabilities[0]
        info = self.entries[best]
        fields: dict[str, Any]
        if info is None:
            fields = could_not_identify(p, self.labels[best], "which is not an animal")
            answer = COULD_NOT_IDENTIFY
        elif p < self.threshold:
            fields = could_not_identify(p, info.common_name, f"under the {self.threshold:.0%} confidence threshold")
            answer = COULD_NOT_IDENTIFY
        else:
            fields = info.answer(p)
            answer = info.common_name
        fields["top_k"] = [self._entry(i, q) for i, q in zip(indices, probabilities, strict=True)]
        fields["model"] = self.model_name
        fields["device"] = self.device
        return answer, p, fields
