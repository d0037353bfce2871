"""The four fitted "real vs animated" models and their JSON parameter file.

All of them output p(animated). The parameters ship in ``apps/classifier/data/real_vs_animated.json``
and are refitted by ``python -m apps.classifier.fit``.

* bytes: byte length, hex length and base64 length, each one-hot encoded over ranges fitted at
  training quantiles (of the log length), then logistic regression;
* bilateral: the histogram distance against a fitted threshold (below it: animated);
* colors: the top-512-colour share against a fitted threshold (above it: animated);
* combined: logistic regression over the file size, bits per pixel, the histogram distance, the
  top-512 share, the number of distinct colours, the bilateral filter's mean per-pixel residual and
  the texture measurements (flatness, grain in smooth areas, Laplacian kurtosis, edges,
  saturation). Format 1 also fed it the byte one-hot bins; on pictures from sources it had not seen
  they taught it the training set's file sizes more than anything about pictures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from apps.classifier.realanimated.features import Features
from apps.classifier.realanimated.linear import Array, Logistic, one_hot, sigmoid

PARAMS_PATH = Path(__file__).resolve().parent.parent / "data" / "real_vs_animated.json"
FORMAT_VERSION = 2
BYTE_FEATURES = ("byte_length", "hex_length", "base64_length")


def log_lengths(features: Sequence[Features]) -> Array:
    """(n, 3): natural log of the three lengths (ranges over sizes are multiplicative)."""
    return np.log1p(np.array([[getattr(f, k) for k in BYTE_FEATURES] for f in features], dtype=np.float64))


def byte_one_hot(features: Sequence[Features], edges: Sequence[Sequence[float]]) -> Array:
    logs = log_lengths(features)
    return np.hstack([one_hot(logs[:, i], tuple(edges[i])) for i in range(len(BYTE_FEATURES))])


def combined_design(features: Sequence[Features]) -> Array:
    return np.array(
        [
            [
                math.log1p(f.byte_length),
                math.log(f.bits_per_pixel + 1e-3),
                math.log(f.histogram_distance + 1e-4),
                f.top_color_share,
                math.log1p(f.distinct_colors),
                math.log(f.bilateral_residual + 1e-3),
                f.flat_share,
                f.near_flat_share,
                f.smooth_noise,
                f.smooth_noise_mean,
                math.log1p(f.laplacian_kurtosis),
                f.edge_share,
                f.mean_saturation,
                f.vivid_share,
            ]
            for f in features
        ],
        dtype=np.float64,
    ).reshape(len(features), len(COMBINED_COLUMNS))


COMBINED_COLUMNS = (
    "log bytes", "log bits per pixel", "log histogram distance", "top-512 share", "log colours",
    "log bilateral residual", "flat share", "near-flat share", "smooth-area noise (median)",
    "smooth-area noise (mean)", "log(1 + Laplacian kurtosis)", "edge share", "mean saturation",
    "vivid share",
)  # fmt: skip


@dataclass(frozen=True)
class BytesModel:
    edges: tuple[tuple[float, ...], ...]  # per byte feature: interior edges over log1p(length)
    logistic: Logistic

    def p_animated(self, features: Sequence[Features]) -> Array:
        return self.logistic.probability(byte_one_hot(features, self.edges))

    def to_json(self) -> dict[str, Any]:
        return {"edges": [list(e) for e in self.edges], "logistic": self.logistic.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BytesModel:
        edges = tuple(tuple(float(v) for v in e) for e in data["edges"])
        if len(edges) != len(BYTE_FEATURES):
            raise ValueError("bytes model: need one edge list per byte feature")
        return cls(edges, Logistic.from_json(data["logistic"]))


@dataclass(frozen=True)
class ThresholdModel:
    """p(animated) = sigmoid(slope * (x - threshold)), with x negated when animated is below."""

    feature: str  # a Features field
    threshold: float
    slope: float
    animated_above: bool
    log_scale: bool  # compare log(x) rather than x (the distance spans decades)

    def value(self, f: Features) -> float:
        x = float(getattr(f, self.feature))
        return math.log(x + 1e-4) if self.log_scale else x

    def p_animated(self, features: Sequence[Features]) -> Array:
        x = np.array([self.value(f) for f in features], dtype=np.float64)
        margin = (x - self.threshold) if self.animated_above else (self.threshold - x)
        return sigmoid(self.slope * margin)

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "threshold": self.threshold,
            "slope": self.slope,
            "animated_above": self.animated_above,
            "log_scale": self.log_scale,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ThresholdModel:
        feature = str(data["feature"])
        if feature not in Features.__dataclass_fields__:
            raise ValueError(f"threshold model: unknown feature {feature!r}")
        return cls(
            feature,
            float(data["threshold"]),
            float(data["slope"]),
            bool(data["animated_above"]),
            bool(data["log_scale"]),
        )


@dataclass(frozen=True)
class CombinedModel:
    logistic: Logistic

    def p_animated(self, features: Sequence[Features]) -> Array:
        return self.logistic.probability(combined_design(features))

    def to_json(self) -> dict[str, Any]:
        return {"columns": list(COMBINED_COLUMNS), "logistic": self.logistic.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CombinedModel:
        logistic = Logistic.from_json(data["logistic"])
        if len(logistic.weights) != len(COMBINED_COLUMNS):
            raise ValueError(f"combined model: {len(logistic.weights)} weights for {len(COMBINED_COLUMNS)} columns")
        return cls(logistic)


@dataclass(frozen=True)
class FittedParams:
    bytes: BytesModel
    bilateral: ThresholdModel
    colors: ThresholdModel
    combined: CombinedModel
    provenance: dict[str, Any] = field(default_factory=dict)  # seed, sizes, held-out figures

    def model(self, name: str) -> BytesModel | ThresholdModel | CombinedModel:
        models: dict[str, BytesModel | ThresholdModel | CombinedModel] = {
            "bytes": self.bytes,
            "bilateral": self.bilateral,
            "colors": self.colors,
            "combined": self.combined,
        }
        return models[name]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "models": {
                "bytes": self.bytes.to_json(),
                "bilateral": self.bilateral.to_json(),
                "colors": self.colors.to_json(),
                "combined": self.combined.to_json(),
            },
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FittedParams:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported parameter format {data.get('format')!r} (expected {FORMAT_VERSION})")
        models = data["models"]
        return cls(
            bytes=BytesModel.from_json(models["bytes"]),
            bilateral=ThresholdModel.from_json(models["bilateral"]),
            colors=ThresholdModel.from_json(models["colors"]),
            combined=CombinedModel.from_json(models["combined"]),
            provenance=dict(data.get("provenance", {})),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path = PARAMS_PATH) -> FittedParams:
        """Raises ValueError with the path in the message for a missing or malformed file."""
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ValueError(f"fitted parameters not found at {path}; run `python -m apps.classifier.fit`") from None
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"cannot read fitted parameters from {path}: {exc}") from None
