"""Animal descriptions and the original project's answer schema.

Two sources of descriptions:

* ``apps/classifier/data/animals.json``: the 398 animal classes of ImageNet-1k (indices 0-397),
  written for this project: scientific and common name, one-sentence description, habitat, IUCN
  conservation status and the dangerous / poisonous / venomous flags;
* a user's labels file in the original email project's format, for a model they bring: a JSON
  object keyed by scientific name, in class-index order, each value holding ``commonName``,
  ``description``, ``habitat``, ``isEndangered``, ``isDangerous``, ``poisonous``, ``venomous``.

Answers use the original schema: ``scientific_name, common_name, description, habitat,
endangered, dangerous, poisonous, venomous, probability`` (probability in percent, 2 decimals).

"Could not identify" (top class under the confidence threshold, or not an animal) keeps that
schema: ``scientific_name`` and ``common_name`` are "Could not identify", ``description`` says why
(naming the best guess), ``habitat`` is "Unknown", and the four flags are null: a false would claim
an unidentified animal is harmless. ``probability`` is the best guess's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "animals.json"
ANIMAL_CLASSES = 398  # ImageNet-1k indices 0..397 are animals
COULD_NOT_IDENTIFY = "Could not identify"
# IUCN categories counted as "endangered" in the original yes/no field: the threatened ones.
THREATENED = frozenset({"CR", "EN", "VU", "EW"})
STATUSES = {
    "EX": "extinct",
    "EW": "extinct in the wild",
    "CR": "critically endangered",
    "EN": "endangered",
    "VU": "vulnerable",
    "NT": "near threatened",
    "LC": "least concern",
    "DD": "data deficient",
    "NE": "not evaluated",
    "DOM": "domesticated",
}
ORIGINAL_KEYS = (
    "scientific_name", "common_name", "description", "habitat", "endangered", "dangerous", "poisonous",
    "venomous", "probability",
)  # fmt: skip


class TableError(ValueError):
    """A description table or labels file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class AnimalInfo:
    scientific_name: str
    common_name: str
    description: str
    habitat: str
    endangered: bool
    dangerous: bool
    poisonous: bool
    venomous: bool
    conservation_status: str | None = None  # IUCN code, or None where the labels file has none
    label: str = ""  # the model's own class name (ImageNet category or the labels file's key)

    def answer(self, probability: float) -> dict[str, Any]:
        """The original schema for this animal at ``probability`` (0..1)."""
        out: dict[str, Any] = {
            "scientific_name": self.scientific_name,
            "common_name": self.common_name,
            "description": self.description,
            "habitat": self.habitat,
            "endangered": self.endangered,
            "dangerous": self.dangerous,
            "poisonous": self.poisonous,
            "venomous": self.venomous,
            "probability": percent(probability),
        }
        if self.conservation_status is not None:
            out["conservation_status"] = STATUSES.get(self.conservation_status, self.conservation_status)
        out["label"] = self.label
        return out


def percent(probability: float) -> float:
    return round(100.0 * float(probability), 2)


def could_not_identify(probability: float, best_guess: str, reason: str) -> dict[str, Any]:
    return {
        "scientific_name": COULD_NOT_IDENTIFY,
        "common_name": COULD_NOT_IDENTIFY,
        "description": f"Best guess: {best_guess} ({percent(probability):.2f}%), {reason}.",
        "habitat": "Unknown",
        "endangered": None,
        "dangerous": None,
        "poisonous": None,
        "venomous": None,
        "probability": percent(probability),
    }


def not_an_animal(label: str, probability: float) -> dict[str, Any]:
    """A top-k alternative that is not an animal class (same keys, nothing to describe)."""
    return {
        "scientific_name": None,
        "common_name": None,
        "description": f"Not an animal: {label}.",
        "habitat": None,
        "endangered": None,
        "dangerous": None,
        "poisonous": None,
        "venomous": None,
        "probability": percent(probability),
        "label": label,
    }


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TableError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TableError(f"{what} {path} is not readable JSON: {exc}") from None


def _flag(entry: Mapping[str, Any], key: str, where: str) -> bool:
    value = entry.get(key)
    if not isinstance(value, bool):
        raise TableError(f"{where}: {key!r} must be true or false, got {value!r}")
    return value


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TableError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def load_imagenet_table(path: Path = TABLE_PATH) -> dict[int, AnimalInfo]:
    """ImageNet class index -> description, for the animal classes."""
    data = _read_json(path, "animal description table")
    rows = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise TableError(f"{path}: expected an object with a 'classes' list")
    table: dict[int, AnimalInfo] = {}
    for row in rows:
        where = f"{path}: class {row.get('index') if isinstance(row, dict) else row!r}"
        if not isinstance(row, dict) or not isinstance(row.get("index"), int):
            raise TableError(f"{where}: each class needs an integer 'index'")
        status = _text(row, "conservation_status", where)
        if status not in STATUSES:
            raise TableError(f"{where}: unknown conservation status {status!r}")
        table[row["index"]] = AnimalInfo(
            scientific_name=_text(row, "scientific_name", where),
            common_name=_text(row, "common_name", where),
            description=_text(row, "description", where),
            habitat=_text(row, "habitat", where),
            endangered=status in THREATENED,
            dangerous=_flag(row, "dangerous", where),
            poisonous=_flag(row, "poisonous", where),
            venomous=_flag(row, "venomous", where),
            conservation_status=status,
            label=_text(row, "imagenet_label", where),
        )
    return table


def load_original_labels(path: Path) -> list[AnimalInfo]:
    """A labels file in the original project's format; list position = class index."""
    data = _read_json(path, "labels file")
    if not isinstance(data, dict) or not data:
        raise TableError(f"labels file {path}: expected a non-empty JSON object keyed by scientific name")
    out = []
    for scientific, entry in data.items():
        where = f"labels file {path}: {scientific!r}"
        if not isinstance(entry, dict):
            raise TableError(f"{where}: expected an object with commonName, description, ...")
        status = entry.get("conservationStatus")
        out.append(
            AnimalInfo(
                scientific_name=str(scientific),
                common_name=_text(entry, "commonName", where),
                description=str(entry.get("description", "")),
                habitat=str(entry.get("habitat", "Unknown")),
                endangered=_flag(entry, "isEndangered", where),
                dangerous=_flag(entry, "isDangerous", where),
                poisonous=_flag(entry, "poisonous", where),
                venomous=_flag(entry, "venomous", where),
                conservation_status=str(status) if isinstance(status, str) else None,
                label=str(scientific),
            )
        )
    return out
