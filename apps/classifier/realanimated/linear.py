"""Small, deterministic fitting tools in numpy: logistic regression, thresholds, one-hot bins.

Logistic regression is fitted by Newton's method (iteratively reweighted least squares) with an L2
penalty on the weights (not the bias); with a handful of features it converges in a few dozen
steps and gives the same answer every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def sigmoid(z: npt.ArrayLike) -> Array:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=np.float64), -40.0, 40.0))))


@dataclass(frozen=True)
class Logistic:
    """p(positive | x) = sigmoid(((x - mean) / scale) . weights + bias)."""

    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def decision(self, x: npt.ArrayLike) -> Array:
        z = (np.atleast_2d(np.asarray(x, dtype=np.float64)) - np.asarray(self.mean)) / np.asarray(self.scale)
        return np.asarray(z @ np.asarray(self.weights) + self.bias)

    def probability(self, x: npt.ArrayLike) -> Array:
        return sigmoid(self.decision(x))

    def to_json(self) -> dict[str, Any]:
        return {"weights": list(self.weights), "bias": self.bias, "mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Logistic:
        weights = tuple(float(v) for v in data["weights"])
        mean = tuple(float(v) for v in data["mean"])
        scale = tuple(float(v) for v in data["scale"])
        if not (len(weights) == len(mean) == len(scale)):
            raise ValueError("logistic model: weights, mean and scale differ in length")
        return cls(weights, float(data["bias"]), mean, scale)


def fit_logistic(x: npt.ArrayLike, y: npt.ArrayLike, l2: float = 1.0, iterations: int = 100) -> Logistic:
    """Fit on standardised features; ``y`` holds 0/1 labels."""
    features = np.atleast_2d(np.asarray(x, dtype=np.float64))
    labels = np.asarray(y, dtype=np.float64)
    if features.shape[0] != labels.shape[0] or features.shape[0] == 0:
        raise ValueError("need as many labels as feature rows, and at least one")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-12] = 1.0  # a constant feature stays at 0 after centring
    z = (features - mean) / scale
    design = np.hstack([z, np.ones((z.shape[0], 1))])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    theta = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = sigmoid(design @ theta)
        gradient = design.T @ (p - labels) + penalty * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(design.shape[1])
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return Logistic(
        weights=tuple(float(v) for v in theta[:-1]),
        bias=float(theta[-1]),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
    )


def fit_threshold(x: npt.ArrayLike, y: npt.ArrayLike, positive_above: bool) -> float:
    """The cut that maximises training accuracy; ties go to the middle of the best run."""
    values = np.asarray(x, dtype=np.float64)
    labels = np.asarray(y, dtype=np.int64)
    unique = np.unique(values)
    if unique.size < 2:
        return float(unique[0]) if unique.size else 0.0
    cuts = (unique[:-1] + unique[1:]) / 2.0
    above = values[None, :] > cuts[:, None]
    predicted = above if positive_above else ~above
    accuracy = (predicted == labels[None, :].astype(bool)).mean(axis=1)
    best = np.flatnonzero(accuracy == accuracy.max())
    return float(cuts[best[len(best) // 2]])


def fit_slope(margin: npt.ArrayLike, y: npt.ArrayLike, l2: float = 1e-3, iterations: int = 100) -> float:
    """k >= 0 for p = sigmoid(k * margin): turns a fitted threshold into a probability."""
    m = np.asarray(margin, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    k = 1.0 / max(1e-12, float(np.std(m)) or 1.0)
    for _ in range(iterations):
        p = sigmoid(k * m)
        gradient = float(m @ (p - labels)) + l2 * k
        curvature = float((m * m) @ (p * (1 - p))) + l2
        step = gradient / max(curvature, 1e-12)
        k = max(0.0, k - step)
        if abs(step) < 1e-10:
            break
    return k


def quantile_edges(values: npt.ArrayLike, bins: int) -> tuple[float, ...]:
    """Interior bin edges at training quantiles (deduplicated, so bins may be fewer)."""
    data = np.asarray(values, dtype=np.float64)
    edges = np.quantile(data, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return tuple(float(e) for e in np.unique(edges))


def one_hot(values: npt.ArrayLike, edges: tuple[float, ...]) -> Array:
    """Row i has a single 1 in the column of the range values[i] falls into."""
    data = np.asarray(values, dtype=np.float64).ravel()
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), data, side="right")
    out = np.zeros((data.size, len(edges) + 1))
    out[np.arange(data.size), index] = 1.0
    return out
