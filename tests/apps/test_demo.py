"""`snip demo` with STAND-INs: the in-memory protocol.aio, a pass-through relay and a registry
without the animal model's weights. This checks the demo's own logic (images, classifier
fallback, what it prints); test_e2e.py runs the real thing when protocol.aio and netsim exist.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import types
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from apps import demo


class PassThroughRelay:
    """STAND-IN for netsim.relay.UdpRelay: the in-memory transport needs no forwarding."""

    def __init__(self, listen: Any, to: tuple[str, int], spec: Any, seed: int) -> None:
        self.listen_addr = to
        self.spec = spec

    async def __aenter__(self) -> PassThroughRelay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"link": {"fwd": {"sent": 100, "dropped": 10, "reordered": 3}, "rev": {"sent": 20, "dropped": 2}}}


def _registry(animal_error: str | None) -> ModuleType:
    """STAND-IN for apps.classifier.registry with the same functions the demo calls."""
    registry = types.ModuleType("apps.classifier.registry")

    def classify_with(names: list[str], data: bytes, options: Any = None) -> dict[str, Any]:
        results = []
        for name in names:
            if name == "animal" and animal_error:
                results.append({"classifier": name, "error": animal_error})
            else:
                kind = "animated" if data.startswith(b"\x89PNG") else "real"
                results.append({"classifier": name, "answer": kind, "confidence": 0.9})
        return {"results": results}

    registry.classify_with = classify_with  # type: ignore[attr-defined]
    registry.available = lambda: ["animal", "colors", "combined"]  # type: ignore[attr-defined]
    registry.canonical = lambda name: name  # type: ignore[attr-defined]
    return registry


def _run(monkeypatch: pytest.MonkeyPatch, fake_snip: ModuleType, tmp_path: Path, animal_error: str | None,
         *argv: str) -> tuple[int, str]:
    relay_module = types.ModuleType("netsim.relay")
    relay_module.UdpRelay = PassThroughRelay  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "netsim.relay", relay_module)
    monkeypatch.setitem(sys.modules, "apps.classifier.registry", _registry(animal_error))
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers())
    args = parser.parse_args(["demo", "--out", str(tmp_path / "out"), *argv])
    out = io.StringIO()
    code = asyncio.run(demo.demo_command(args, stdout=out, stderr=io.StringIO()))
    return code, out.getvalue()


def test_demo_falls_back_to_real_vs_animated_and_says_so(tmp_path: Path, fake_snip: ModuleType,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run(monkeypatch, fake_snip, tmp_path, "weights for the animal model are not available: put x in y",
                     "--images", "4")
    assert code == 0, out
    fallback = [line for line in out.splitlines() if "animal model unavailable" in line]
    assert fallback == ["animal model unavailable (weights for the animal model are not available); using the "
                        "real-vs-animated classifiers: colors, combined"]
    assert "4/4 delivered, 4 answered" in out
    assert "astronaut.jpg (photo): colors: real (90%); combined: real (90%)" in out
    assert "drawing-01.png (drawing): colors: animated (90%); combined: animated (90%)" in out
    assert "sender->receiver 100 packets, 10 dropped (10.0%)" in out
    assert len(list((tmp_path / "out").iterdir())) == 4


def test_demo_uses_the_animal_model_when_it_works(tmp_path: Path, fake_snip: ModuleType,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run(monkeypatch, fake_snip, tmp_path, None, "--images", "2")
    assert code == 0
    assert "unavailable" not in out and "astronaut.jpg (photo): animal: real (90%)" in out


def test_demo_rejects_a_bad_link(tmp_path: Path, fake_snip: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.cli import CommandError

    with pytest.raises(CommandError, match="--link"):
        _run(monkeypatch, fake_snip, tmp_path, None, "--link", "loss=5")
