"""Score a classifier on a folder of labelled images: DIR/<label>/<image files>.

Folder names are the true labels. A prediction matches a folder when its answer (or, for the
animal describer, its scientific name or model class) equals the folder name, ignoring case, "_"
and "-"; real-vs-animated folders may also be called photo(s)/cartoon(s)/drawing(s). Images a
classifier cannot read are listed as errors and left out of the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.classifier.base import Classifier, Result
from apps.classifier.metrics import Report, evaluate

SYNONYMS = {
    "photo": "real", "photos": "real", "photograph": "real", "photographs": "real", "natural": "real",
    "cartoon": "animated", "cartoons": "animated", "drawing": "animated", "drawings": "animated",
    "anime": "animated", "synthetic": "animated", "clipart": "animated",
}  # fmt: skip


@dataclass(frozen=True)
class FolderScore:
    report: Report
    errors: tuple[tuple[str, str], ...]  # (path, message)

    def to_json(self) -> dict[str, Any]:
        out = self.report.to_json()
        out["errors"] = [{"image": path, "error": message} for path, message in self.errors]
        return out

    def render(self) -> str:
        text = self.report.render()
        if self.errors:
            text += f"\n\n{len(self.errors)} image(s) could not be classified:\n"
            text += "\n".join(f"  {path}: {message}" for path, message in self.errors)
        return text


def normalise(label: str) -> str:
    key = " ".join(label.lower().replace("_", " ").replace("-", " ").split())
    return SYNONYMS.get(key, key)


def collect(root: Path) -> list[tuple[str, Path]]:
    """(label, file) for every non-hidden file under each non-hidden subfolder of ``root``."""
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
                pairs.append((folder.name, path))
    if not pairs:
        raise ValueError(f"{root} has no labelled images: expected {root}/<label>/<image files>")
    return pairs


def _predicted(result: Result, known: dict[str, str]) -> str:
    for key in ("answer", "scientific_name", "label"):
        value = result.get(key)
        if isinstance(value, str) and normalise(value) in known:
            return known[normalise(value)]
    return str(result.get("answer"))


def evaluate_folder(
    classifier: Classifier,
    root: Path,
    *,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> FolderScore:
    pairs = collect(root)
    known: dict[str, str] = {}
    for label, _ in pairs:
        known.setdefault(normalise(label), label)
    truth: list[str] = []
    predicted: list[str] = []
    errors: list[tuple[str, str]] = []
    for start in range(0, len(pairs), max(1, batch_size)):
        chunk: Sequence[tuple[str, Path]] = pairs[start : start + max(1, batch_size)]
        blobs: list[bytes] = []
        readable: list[tuple[str, Path]] = []
        for label, path in chunk:
            try:
                blobs.append(path.read_bytes())
                readable.append((label, path))
            except OSError as exc:
                errors.append((str(path), f"cannot read: {exc.strerror or exc}"))
        for (label, path), result in zip(readable, classifier.classify_batch(blobs), strict=True):
            if "error" in result:
                errors.append((str(path), str(result["error"])))
            else:
                truth.append(label)
                predicted.append(_predicted(result, known))
        if progress is not None:
            progress(min(start + len(chunk), len(pairs)), len(pairs))
    order = sorted({label for label, _ in pairs})
    return FolderScore(evaluate(truth, predicted, order), tuple(errors))
