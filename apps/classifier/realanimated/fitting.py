"""Fit the four real-vs-animated models on labelled features and score them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from apps.classifier.imagedecode import decode_image
from apps.classifier.metrics import Report, evaluate
from apps.classifier.realanimated.dataset import ANIMATED, LABELS, REAL, Sample
from apps.classifier.realanimated.features import Features, extract
from apps.classifier.realanimated.linear import fit_logistic, fit_slope, fit_threshold, quantile_edges
from apps.classifier.realanimated.models import (
    BytesModel,
    CombinedModel,
    FittedParams,
    ThresholdModel,
    byte_one_hot,
    combined_design,
    log_lengths,
)

MODEL_NAMES = ("bytes", "bilateral", "colors", "combined")
BYTE_BINS = 8
COMBINED_L2 = 3.0


def sample_features(samples: Sequence[Sample]) -> list[Features]:
    out = []
    for sample in samples:
        decoded = decode_image(sample.data)
        out.append(extract(decoded.rgb, sample.data, decoded.original_size))
    return out


def animated_targets(labels: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array([1.0 if label == ANIMATED else 0.0 for label in labels])


def _threshold_model(features: Sequence[Features], y: np.ndarray[Any, Any], feature: str, log_scale: bool) -> ThresholdModel:
    """Fit the cut and which side of it is animated, then a slope for the probability."""
    probe = ThresholdModel(feature, 0.0, 1.0, True, log_scale)
    x = np.array([probe.value(f) for f in features])
    candidates = []
    for above in (True, False):
        cut = fit_threshold(x, y, positive_above=above)
        predicted = (x > cut) if above else (x <= cut)
        candidates.append((float((predicted == (y > 0.5)).mean()), above, cut))
    _, above, threshold = max(candidates)
    margin = (x - threshold) if above else (threshold - x)
    return ThresholdModel(feature, threshold, fit_slope(margin, y), above, log_scale)


def fit_models(features: Sequence[Features], labels: Sequence[str], provenance: dict[str, Any] | None = None) -> FittedParams:
    y = animated_targets(labels)
    logs = log_lengths(features)
    edges = tuple(quantile_edges(logs[:, i], BYTE_BINS) for i in range(logs.shape[1]))
    bytes_model = BytesModel(edges, fit_logistic(byte_one_hot(features, edges), y, l2=1.0))
    bilateral = _threshold_model(features, y, "histogram_distance", log_scale=True)
    colors = _threshold_model(features, y, "top_color_share", log_scale=False)
    # The texture columns are correlated; on families left out of the fit (RESULTS.md) penalties of
    # 1 to 10 scored alike (79-80% mean) and 30 fell to 77%; 3 sits in the middle.
    combined = CombinedModel(fit_logistic(combined_design(features), y, l2=COMBINED_L2))
    return FittedParams(bytes_model, bilateral, colors, combined, dict(provenance or {}))


def predict_labels(params: FittedParams, name: str, features: Sequence[Features]) -> list[str]:
    p = params.model(name).p_animated(features)
    return [ANIMATED if v >= 0.5 else REAL for v in p]


def score(params: FittedParams, features: Sequence[Features], labels: Sequence[str]) -> dict[str, Report]:
    return {name: evaluate(labels, predict_labels(params, name, features), LABELS) for name in MODEL_NAMES}
