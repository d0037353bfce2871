"""The registry: names, cached creation, options, and classify_with never raising."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.classifier import registry
from apps.classifier.base import Classifier, ClassifierError, UnknownClassifierError


def test_available_names() -> None:
    assert registry.available() == ["animal", "bilateral", "bytes", "colors", "combined"]
    assert registry.canonical("Colours") == "colors"
    for name in registry.available():
        assert registry.describe(name)


def test_create_is_cached_per_options() -> None:
    first = registry.create("colors")
    assert registry.create("colors") is first
    assert registry.create("colours") is first
    assert registry.create("colors", device="cpu") is not first
    assert isinstance(first, Classifier)


def test_concurrent_create_loads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    entry = registry._ENTRIES["bytes"]
    original = entry.factory

    def counting(**options: Any) -> Classifier:
        made.append(1)
        return original(**options)

    monkeypatch.setitem(registry._ENTRIES, "bytes", registry.Entry(entry.description, entry.options, counting))
    got: list[Classifier] = []
    threads = [threading.Thread(target=lambda: got.append(registry.create("bytes"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len({id(c) for c in got}) == 1


def test_create_errors() -> None:
    with pytest.raises(UnknownClassifierError, match="unknown classifier 'cat'; available: animal, bilateral"):
        registry.create("cat")
    with pytest.raises(ClassifierError, match="takes no option 'top_k'"):
        registry.create("colors", top_k=3)
    with pytest.raises(ClassifierError, match="fitted parameters not found"):
        registry.create("combined", params_path="/nonexistent/params.json")


def test_classify_with_runs_several(photo_jpeg: bytes) -> None:
    out = registry.classify_with(["colors", "combined"], photo_jpeg)
    assert [r["classifier"] for r in out["results"]] == ["colors", "combined"]
    assert all(r["answer"] == "real" for r in out["results"])
    assert registry.classify_with("colors,combined", photo_jpeg)["results"][1]["answer"] == "real"
    json.dumps(out)


def test_classify_with_never_raises(empty_torch_home: Path, photo_jpeg: bytes) -> None:
    out = registry.classify_with(["bytes", "no-such-model", "animal"], photo_jpeg, options={"animal": {"download": False}})
    bytes_result, unknown, animal = out["results"]
    assert bytes_result["answer"] in ("real", "animated")
    assert unknown == {"classifier": "no-such-model", "error": unknown["error"]} and "unknown classifier" in unknown["error"]
    assert set(animal) == {"classifier", "error"} and "convnext_tiny-983f1562.pth" in animal["error"]
    for bad in (b"", b"\x89PNG\r\n\x1a\n", np.zeros((0, 0)), "not bytes"):
        results = registry.classify_with(["colors", "bilateral"], bad)["results"]  # type: ignore[arg-type]
        assert all(set(r) == {"classifier", "error"} for r in results), results


def test_classify_with_animal_and_device(torch_home: Path, photo_jpeg: bytes) -> None:
    out = registry.classify_with(["animal", "colors"], photo_jpeg, device="cpu", options={"animal": {"top_k": 2}})
    animal, colors = out["results"]
    assert animal["device"] == "cpu" and len(animal["top_k"]) == 2
    assert colors["device"] == "cpu"


def test_failed_creation_is_remembered_then_retried(
    empty_torch_home: Path, hub_with_weights: tuple[Path, Any], photo_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"animal": {"download": False}}
    first = registry.classify_with(["animal"], photo_jpeg, options=options)["results"][0]
    assert "error" in first
    monkeypatch.setenv("TORCH_HOME", str(hub_with_weights[0]))  # the user puts the weights in place
    soon = registry.classify_with(["animal"], photo_jpeg, options=options)["results"][0]
    assert soon == first  # remembered: no reload attempt per image
    monkeypatch.setattr(registry, "RETRY_AFTER_S", 0.0)
    later = registry.classify_with(["animal"], photo_jpeg, options=options)["results"][0]
    assert "answer" in later
