"""`snip classify`: JSON output, --list, --evaluate, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from apps.classifier.evaluate import collect, evaluate_folder, normalise
from apps.classifier.metrics import evaluate
from apps.classifier.realanimated.classifier import RealAnimatedClassifier
from apps.classifier.realanimated.dataset import build_dataset, write_folders
from apps.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["classify", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def images(tmp_path: Path, photo_jpeg: bytes, drawing_png: bytes) -> dict[str, Path]:
    paths = {"photo": tmp_path / "cat.jpg", "drawing": tmp_path / "drawing.png", "text": tmp_path / "notes.txt"}
    paths["photo"].write_bytes(photo_jpeg)
    paths["drawing"].write_bytes(drawing_png)
    paths["text"].write_text("not an image")
    return paths


def test_list(capsys: pytest.CaptureFixture[str], empty_torch_home: Path) -> None:
    code, out, _ = run(["--list"], capsys)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == [
        "animal", "bilateral", "bytes", "colors", "combined",
    ]  # fmt: skip
    assert "convnext_tiny-983f1562.pth" in out
    code, out, _ = run(["--list", "--json"], capsys)
    assert json.loads(out)[0]["name"] == "animal"


def test_one_image_one_model(capsys: pytest.CaptureFixture[str], images: dict[str, Path]) -> None:
    code, out, err = run([str(images["photo"]), "--model", "combined"], capsys)
    result = json.loads(out)
    assert code == 0 and err == ""
    assert result["image"] == str(images["photo"]) and result["classifier"] == "combined"
    assert result["answer"] == "real"


def test_several_images_and_models_with_a_bad_one(capsys: pytest.CaptureFixture[str], images: dict[str, Path]) -> None:
    paths = [str(images[k]) for k in ("photo", "drawing", "text")]
    code, out, _ = run([*paths, "--model", "colors,combined", "--batch-size", "2"], capsys)
    results = json.loads(out)
    assert code == 1  # an image failed; the JSON says which
    assert [r["image"] for r in results] == paths
    assert [x["classifier"] for x in results[0]["results"]] == ["colors", "combined"]
    assert results[1]["results"][1]["answer"] == "animated"
    assert "not a recognised image format" in results[2]["results"][0]["error"]


def test_animal_with_options(capsys: pytest.CaptureFixture[str], images: dict[str, Path], torch_home: Path) -> None:
    code, out, _ = run([str(images["photo"]), "--model", "animal", "--device", "cpu", "--top-k", "4", "--no-download"], capsys)
    result = json.loads(out)
    assert code == 0 and len(result["top_k"]) == 4 and result["device"] == "cpu"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x.jpg"], "choose a classifier with --model"),
        (["--model", "colors"], "no images given"),
        (["/nonexistent/x.jpg", "--model", "colors"], "cannot read /nonexistent/x.jpg"),
        (["x.jpg", "--model", "unicorn"], "unknown classifier 'unicorn'"),
        (["x.jpg", "--model", "colors", "--top-k", "3"], "--top-k only apply to --model animal"),
        (["--evaluate", "/nonexistent", "--model", "colors"], "is not a folder"),
        (["--evaluate", ".", "--model", "colors,bytes"], "one classifier at a time"),
        (["x.jpg", "--model", "animal", "--params", "p.json"], "--params only applies"),
        (["x.jpg", "--model", "animal", "--no-download"], "put convnext_tiny-983f1562.pth into"),
        (["x.jpg", "--model", "animal", "--device", "cuda:7"], "cuda:7"),
        (["x.jpg", "--model", "animal", "--weights", "w.pt"], "needs its labels file"),
    ],
)
def test_user_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str],
    empty_torch_home: Path,
    args: list[str],
    message: str,
    photo_jpeg: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jpg").write_bytes(photo_jpeg)
    code, out, err = run(args, capsys)
    assert code == 2 and out == ""
    assert err.startswith("snip classify: error: ") and message in err and err.count("\n") == 1


def test_trust_pickle_flag(capsys: pytest.CaptureFixture[str], images: dict[str, Path], tmp_path: Path) -> None:
    from torchvision.models import get_model

    torch.save(get_model("mobilenet_v3_small", weights=None, num_classes=2), tmp_path / "whole.pth")
    labels = tmp_path / "labels.json"
    entry = {"commonName": "A", "description": "", "habitat": "", "isEndangered": False, "isDangerous": False}
    labels.write_text(
        json.dumps(
            {
                "A a": entry | {"poisonous": False, "venomous": False},
                "B b": entry | {"commonName": "B", "poisonous": False, "venomous": False},
            }
        )
    )
    base = [str(images["photo"]), "--model", "animal", "--weights", str(tmp_path / "whole.pth"), "--labels", str(labels)]
    code, _, err = run([*base, "--device", "cpu"], capsys)
    assert code == 2 and "--trust-pickle" in err
    code, out, _ = run([*base, "--device", "cpu", "--trust-pickle", "--input-size", "64"], capsys)
    assert code == 0 and json.loads(out)["answer"] in ("A", "B", "Could not identify")


def test_evaluate_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_folders(build_dataset(seed=3, per_photo=2, drawings=6, sources={"astronaut", "coffee", "camera"}), tmp_path)
    (tmp_path / "real" / ".hidden").write_text("skip me")
    (tmp_path / "animated" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    code, out, _ = run(["--evaluate", str(tmp_path), "--model", "combined"], capsys)
    assert code == 0
    assert "accuracy:" in out and "confusion matrix (rows: true, columns: predicted)" in out
    assert "1 image(s) could not be classified" in out and "broken.png" in out
    code, out, _ = run(["--evaluate", str(tmp_path), "--model", "combined", "--json"], capsys)
    report = json.loads(out)
    assert report["total"] == 12 and report["confusion"]["labels"] == ["animated", "real"]
    assert sum(map(sum, report["confusion"]["matrix"])) == 12 and len(report["errors"]) == 1
    assert report["accuracy"] >= 0.75


def test_evaluate_matches_synonyms_and_names(tmp_path: Path, photo_jpeg: bytes, drawing_png: bytes) -> None:
    (tmp_path / "Photos").mkdir()
    (tmp_path / "Photos" / "a.jpg").write_bytes(photo_jpeg)
    (tmp_path / "cartoons").mkdir()
    (tmp_path / "cartoons" / "b.png").write_bytes(drawing_png)
    assert [label for label, _ in collect(tmp_path)] == ["Photos", "cartoons"]
    score = evaluate_folder(RealAnimatedClassifier("combined"), tmp_path)
    assert score.report.accuracy == 1.0 and score.report.labels == ("Photos", "cartoons")
    assert normalise("Golden_Retriever") == "golden retriever"


def test_metrics() -> None:
    report = evaluate(["a", "a", "a", "b", "b"], ["a", "b", "a", "b", "c"], ["a", "b"])
    assert report.labels == ("a", "b", "c") and report.accuracy == pytest.approx(0.6)
    assert report.matrix == ((2, 1, 0), (0, 1, 1), (0, 0, 0))
    assert report.precision("b") == pytest.approx(0.5) and report.recall("a") == pytest.approx(2 / 3)
    assert report.precision("c") == 0.0
    assert report.to_json()["per_class"]["a"] == {"precision": 1.0, "recall": 0.6667, "support": 3}


def test_help_does_not_import_torch_or_opencv() -> None:
    code = (
        "import argparse, sys; from apps.classifier.cli import register; "
        "parser = argparse.ArgumentParser(); register(parser.add_subparsers()); parser.format_help(); "
        "print(sorted(m for m in ('torch', 'cv2', 'torchvision', 'numpy', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fit_command_writes_loadable_parameters(tmp_path: Path) -> None:
    from apps.classifier.fit import run as fit_run
    from apps.classifier.realanimated.models import FittedParams

    table = fit_run(seed=2, per_photo=2, splits=1, out=tmp_path / "p.json")
    assert "| combined |" in table and "53% / 58%" in table
    params = FittedParams.load(tmp_path / "p.json")
    assert params.provenance["command"].startswith("python -m apps.classifier.fit --seed 2")
    assert set(params.provenance["heldout"]) == {"bytes", "bilateral", "colors", "combined"}
