"""The registry face of the four real-vs-animated models ("bytes", "bilateral", "colors", "combined").

Result fields beyond the registry's: ``p_animated`` (0..1), ``features`` (the measurements the
model used) and, for the threshold models, ``threshold`` in the feature's own units. ``answer`` is
"real" or "animated"; ``confidence`` is the probability of that answer. They run on the CPU
(OpenCV); ``device`` is accepted for a uniform registry and reported as "cpu".

The byte model needs the encoded file. Given a numpy array instead, every model measures bytes on
a lossless PNG encoding of it and says so (``"encoded_for_features": "png"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apps.classifier.base import BaseClassifier, ClassifierError
from apps.classifier.imagedecode import DEFAULT_MAX_PIXELS, DecodedImage
from apps.classifier.realanimated.dataset import ANIMATED, REAL
from apps.classifier.realanimated.features import Features, encode_png, extract
from apps.classifier.realanimated.models import PARAMS_PATH, FittedParams, ThresholdModel

MODELS = ("bytes", "bilateral", "colors", "combined")
DESCRIPTIONS = {
    "bytes": "real vs animated from the file's byte, hex and base64 lengths (one-hot, logistic)",
    "bilateral": "real vs animated from RGB histograms before/after a bilateral filter",
    "colors": "real vs animated from the share of pixels in the 512 most common colours",
    "combined": "real vs animated: logistic regression over the measurements above and texture (flatness, grain, edges, saturation)",
}
# (needs the bilateral filter, needs the colour count)
# (bilateral, colours, texture) measurements each model reads
_NEEDS = {
    "bytes": (False, False, False),
    "bilateral": (True, False, False),
    "colors": (False, True, False),
    "combined": (True, True, True),
}
_SHOWN = {
    "bytes": ("byte_length", "hex_length", "base64_length"),
    "bilateral": ("histogram_distance",),
    "colors": ("top_color_share", "distinct_colors"),
    "combined": tuple(Features.__dataclass_fields__),
}


def load_params(path: str | Path | None) -> FittedParams:
    try:
        return FittedParams.load(Path(path) if path else PARAMS_PATH)
    except ValueError as exc:
        raise ClassifierError(str(exc)) from None


class RealAnimatedClassifier(BaseClassifier):
    def __init__(
        self,
        model: str,
        *,
        params: FittedParams | None = None,
        params_path: str | Path | None = None,
        device: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if model not in MODELS:
            raise ClassifierError(f"unknown real-vs-animated model {model!r}; choose one of {', '.join(MODELS)}")
        # ``device`` is not an error: the same --device goes to every classifier a receiver runs.
        del device
        super().__init__(model, max_pixels=max_pixels)
        self.params = params if params is not None else load_params(params_path)
        self.model = self.params.model(model)

    def _predict(self, images: Sequence[DecodedImage]) -> list[tuple[str, float, dict[str, Any]]]:
        need_bilateral, need_colors, need_texture = _NEEDS[self.name]
        features: list[Features] = []
        notes: list[dict[str, Any]] = []
        for image in images:
            if image.encoded is not None:
                encoded, stored, note = image.encoded, image.original_size, {}
            else:
                encoded, stored, note = encode_png(image.rgb), image.size, {"encoded_for_features": "png"}
            features.append(
                extract(
                    image.rgb,
                    encoded,
                    stored,
                    need_bilateral=need_bilateral,
                    need_colors=need_colors,
                    need_texture=need_texture,
                )
            )
            notes.append(note)
        probabilities = self.model.p_animated(features)
        out = []
        for p_value, feature, note in zip(probabilities, features, notes, strict=True):
            p = float(p_value)
            answer = ANIMATED if p >= 0.5 else REAL
            fields: dict[str, Any] = {
                "p_animated": round(p, 6),
                "features": {k: _rounded(getattr(feature, k)) for k in _SHOWN[self.name]},
                "device": "cpu",
            }
            if isinstance(self.model, ThresholdModel):
                fields["threshold"] = _rounded(_raw_threshold(self.model))
            fields.update(note)
            out.append((answer, p if answer == ANIMATED else 1.0 - p, fields))
        return out


def _raw_threshold(model: ThresholdModel) -> float:
    return math.exp(model.threshold) - 1e-4 if model.log_scale else model.threshold


def _rounded(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value
