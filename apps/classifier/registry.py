"""Classifiers by name: list them, create them once, run several on one image.

    available()                  -> ["animal", "bilateral", "bytes", "colors", "combined"]
    create("animal", top_k=3)    -> a Classifier, cached per (name, options): models load once
    classify_with(["animal", "combined"], image_bytes) -> {"results": [result, result]}

``create`` raises ``UnknownClassifierError`` / ``ClassifierError`` with a message for the user;
``classify_with`` never raises: a classifier that cannot be created or run contributes
``{"classifier": name, "error": message}``. A failed creation is remembered for
``RETRY_AFTER_S`` seconds, so a receiver without weights does not retry a download for every image,
and is retried after that, so weights put in place later are picked up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.classifier.base import Classifier, ClassifierError, ImageInput, UnknownClassifierError, error_result


@dataclass(frozen=True)
class Entry:
    description: str
    options: frozenset[str]  # keyword options the factory accepts
    factory: Callable[..., Classifier]


def _animal(**options: Any) -> Classifier:
    from apps.classifier.animal.classifier import AnimalClassifier

    return AnimalClassifier("animal", **options)


def _real_vs_animated(model: str) -> Callable[..., Classifier]:
    def factory(**options: Any) -> Classifier:
        from apps.classifier.realanimated.classifier import RealAnimatedClassifier

        return RealAnimatedClassifier(model, **options)

    return factory


_RVA_OPTIONS = frozenset({"device", "params_path", "max_pixels"})
_ANIMAL_OPTIONS = frozenset(
    ["device", "arch", "top_k", "threshold", "download", "model_path", "labels_path", "trust_pickle", "input_size", "max_pixels"]
)
_ENTRIES: dict[str, Entry] = {
    "animal": Entry(
        "ImageNet animal describer (torchvision ConvNeXt-Tiny by default, or your own model)",
        _ANIMAL_OPTIONS,
        _animal,
    ),
    "bytes": Entry("real vs animated from the file's byte, hex and base64 lengths", _RVA_OPTIONS, _real_vs_animated("bytes")),
    "bilateral": Entry(
        "real vs animated from RGB histograms before/after a bilateral filter",
        _RVA_OPTIONS,
        _real_vs_animated("bilateral"),
    ),
    "colors": Entry(
        "real vs animated from the share of pixels in the 512 most common colours",
        _RVA_OPTIONS,
        _real_vs_animated("colors"),
    ),
    "combined": Entry(
        "real vs animated: logistic regression over the measurements above and texture (flatness, grain, edges, saturation)",
        _RVA_OPTIONS,
        _real_vs_animated("combined"),
    ),
}
ALIASES = {"colours": "colors", "color": "colors", "colour": "colors", "byte": "bytes", "animals": "animal"}

RETRY_AFTER_S = 30.0
_Key = tuple[str, tuple[tuple[str, str], ...]]
_cache: dict[_Key, Classifier] = {}
_failures: dict[_Key, tuple[float, str]] = {}  # key -> (monotonic time, message)
_lock = threading.Lock()


def available() -> list[str]:
    return sorted(_ENTRIES)


def canonical(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in _ENTRIES:
        raise UnknownClassifierError(f"unknown classifier {name!r}; available: {', '.join(available())}")
    return key


def describe(name: str) -> str:
    return _ENTRIES[canonical(name)].description


def accepted_options(name: str) -> frozenset[str]:
    return _ENTRIES[canonical(name)].options


def create(name: str, **options: Any) -> Classifier:
    key_name = canonical(name)
    entry = _ENTRIES[key_name]
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - entry.options)
    if unknown:
        raise ClassifierError(
            f"classifier {key_name!r} takes no option {', '.join(map(repr, unknown))} (it takes {', '.join(sorted(entry.options))})"
        )
    key = (key_name, tuple(sorted((k, repr(v)) for k, v in given.items())))
    cached = _cache.get(key)  # the common case takes no lock
    if cached is not None:
        return cached
    with _lock:  # one load per model even when several receiver threads ask at once
        cached = _cache.get(key)
        if cached is not None:
            return cached
        failed = _failures.get(key)
        if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_S:
            raise ClassifierError(failed[1])
        try:
            cached = entry.factory(**given)
        except ClassifierError as exc:
            _failures[key] = (time.monotonic(), str(exc))
            raise
        _failures.pop(key, None)
        _cache[key] = cached
        return cached


def clear_cache() -> None:
    """Forget loaded classifiers and remembered failures."""
    with _lock:
        _cache.clear()
        _failures.clear()


def classify_with(
    names: Sequence[str] | str,
    image: ImageInput,
    *,
    device: str | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run each named classifier on ``image``; ``options`` maps a name to its create() options."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    results = []
    for name in names:
        try:
            key_name = canonical(name)
            chosen = dict((options or {}).get(name, (options or {}).get(key_name, {})))
            if device is not None:
                chosen.setdefault("device", device)
            classifier = create(key_name, **chosen)
            results.append(classifier.classify(image))
        except ClassifierError as exc:
            results.append(error_result(name, str(exc)))
        except MemoryError:
            results.append(error_result(name, "out of memory while loading the classifier"))
        except Exception as exc:  # the receiver must keep serving whatever a classifier does
            results.append(error_result(name, f"classifier failed: {type(exc).__name__}: {exc}"))
    return {"results": results}
