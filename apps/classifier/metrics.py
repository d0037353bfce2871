"""Accuracy, per-class precision and recall, and the confusion matrix, over string labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Report:
    labels: tuple[str, ...]  # row/column order of the matrix: true labels first, then others predicted
    matrix: tuple[tuple[int, ...], ...]  # matrix[i][j]: true labels[i] predicted as labels[j]
    total: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def precision(self, label: str) -> float:
        j = self.labels.index(label)
        predicted = sum(row[j] for row in self.matrix)
        return self.matrix[j][j] / predicted if predicted else 0.0

    def recall(self, label: str) -> float:
        i = self.labels.index(label)
        actual = sum(self.matrix[i])
        return self.matrix[i][i] / actual if actual else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "accuracy": round(self.accuracy, 4),
            "per_class": {
                label: {
                    "precision": round(self.precision(label), 4),
                    "recall": round(self.recall(label), 4),
                    "support": sum(self.matrix[i]),
                }
                for i, label in enumerate(self.labels)
            },
            "confusion": {
                "labels": list(self.labels),
                "matrix": [list(row) for row in self.matrix],
            },
        }

    def render(self) -> str:
        lines = [f"images: {self.total}   accuracy: {self.accuracy:.1%}", ""]
        width = max(12, *(len(label) + 2 for label in self.labels))
        lines.append(f"{'class':<{width}}{'precision':>10}{'recall':>10}{'support':>10}")
        for i, label in enumerate(self.labels):
            support = sum(self.matrix[i])
            lines.append(f"{label:<{width}}{self.precision(label):>10.1%}{self.recall(label):>10.1%}{support:>10}")
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        lines.append(" " * width + "".join(f"{label:>{width}}" for label in self.labels))
        for label, row in zip(self.labels, self.matrix, strict=True):
            lines.append(f"{label:<{width}}" + "".join(f"{count:>{width}}" for count in row))
        return "\n".join(lines)


def evaluate(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = ()) -> Report:
    """Compare label lists of equal length; ``labels`` fixes the order of the known classes."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predictions differ in length")
    order: list[str] = list(labels)
    for label in (*truth, *predicted):
        if label not in order:
            order.append(label)
    index = {label: i for i, label in enumerate(order)}
    matrix = [[0] * len(order) for _ in order]
    for t, p in zip(truth, predicted, strict=True):
        matrix[index[t]][index[p]] += 1
    correct = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p)
    return Report(tuple(order), tuple(tuple(row) for row in matrix), len(truth), correct)
