"""The animal describer: description table, weights loading, the answer schema, bring-your-own models."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apps.classifier.animal import classifier as animal_classifier
from apps.classifier.animal import download
from apps.classifier.animal.classifier import AnimalClassifier
from apps.classifier.animal.table import (
    ANIMAL_CLASSES,
    COULD_NOT_IDENTIFY,
    ORIGINAL_KEYS,
    TableError,
    load_imagenet_table,
    load_original_labels,
)
from apps.classifier.animal.weights import DEFAULT_ARCH, imagenet_spec
from apps.classifier.base import ClassifierError
from apps.classifier.device import resolve_device
from tests.classifier.conftest import encode, flat_gray_jpeg

# --- the description table ---------------------------------------------------------------------------


def test_table_covers_exactly_the_398_imagenet_animals() -> None:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    table = load_imagenet_table()
    assert sorted(table) == list(range(ANIMAL_CLASSES))
    for index, info in table.items():
        assert info.label == _IMAGENET_CATEGORIES[index]
        assert info.description.endswith(".") and len(info.description) > 30
        assert info.habitat and info.common_name and info.scientific_name[0].isupper()


def test_table_facts_are_sensible() -> None:
    table = load_imagenet_table()
    by_label = {info.label: info for info in table.values()}
    cobra = by_label["Indian cobra"]
    assert (cobra.scientific_name, cobra.venomous, cobra.dangerous) == ("Naja naja", True, True)
    assert by_label["giant panda"].endangered and by_label["giant panda"].conservation_status == "VU"
    assert by_label["axolotl"].conservation_status == "CR"
    assert by_label["puffer"].poisonous and not by_label["puffer"].venomous
    assert by_label["golden retriever"].scientific_name == "Canis lupus familiaris"
    assert not by_label["golden retriever"].endangered
    assert by_label["triceratops"].conservation_status == "EX"
    dogs = [info for index, info in table.items() if 151 <= index <= 268]
    assert len(dogs) == 118 and all(d.conservation_status == "DOM" and not d.dangerous for d in dogs)
    assert len({info.description for info in table.values()}) == ANIMAL_CLASSES  # no copy-paste rows


def test_table_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="not found"):
        load_imagenet_table(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"classes": [{"index": 0, "scientific_name": "X"}]}))
    with pytest.raises(TableError, match=str(bad)):
        load_imagenet_table(bad)


def _original_labels(path: Path, n: int = 3) -> Path:
    names = [("Panthera leo", "Lion", True, True), ("Vulpes vulpes", "Red fox", False, False)]
    names += [(f"Species {i}", f"Animal {i}", False, False) for i in range(n - 2)]
    data = {
        sci: {
            "commonName": common,
            "description": f"About the {common.lower()}.",
            "habitat": "Somewhere",
            "isEndangered": endangered,
            "isDangerous": dangerous,
            "poisonous": False,
            "venomous": False,
        }
        for sci, common, endangered, dangerous in names[:n]
    }
    path.write_text(json.dumps(data))
    return path


def test_original_labels_format(tmp_path: Path) -> None:
    infos = load_original_labels(_original_labels(tmp_path / "labels.json"))
    assert [i.scientific_name for i in infos] == ["Panthera leo", "Vulpes vulpes", "Species 0"]
    assert infos[0].answer(0.5) == {
        "scientific_name": "Panthera leo",
        "common_name": "Lion",
        "description": "About the lion.",
        "habitat": "Somewhere",
        "endangered": True,
        "dangerous": True,
        "poisonous": False,
        "venomous": False,
        "probability": 50.0,
        "label": "Panthera leo",
    }
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"Panthera leo": {"commonName": "Lion", "isEndangered": "yes"}}))
    with pytest.raises(TableError, match="'isEndangered' must be true or false"):
        load_original_labels(broken)


# --- weights: location, missing, damaged ------------------------------------------------------------------


def test_missing_weights_message_names_file_and_folder(empty_torch_home: Path) -> None:
    spec = imagenet_spec(DEFAULT_ARCH)
    assert spec.filename == "convnext_tiny-983f1562.pth"
    with pytest.raises(ClassifierError) as caught:
        AnimalClassifier(download=False, device="cpu")
    message = str(caught.value)
    assert "convnext_tiny-983f1562.pth" in message
    assert f"{empty_torch_home / 'hub' / 'checkpoints'}/" in message
    assert "https://download.pytorch.org/models/convnext_tiny-983f1562.pth" in message
    assert "\n" not in message


def test_failed_download_says_so(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torchvision's URL, moved to a loopback port where nothing listens: a real refused connection.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    real = animal_classifier.imagenet_spec(DEFAULT_ARCH)
    moved = dataclasses.replace(real, url=f"http://127.0.0.1:{port}/models/{real.filename}")
    monkeypatch.setattr(animal_classifier, "imagenet_spec", lambda arch: moved)
    monkeypatch.setattr(download, "DEFAULT_BACKOFF_S", 0.0)
    with pytest.raises(ClassifierError, match=r"put convnext_tiny-983f1562\.pth into .*download failed: "
                       r"ConnectionRefusedError.*after 3 tries"):
        AnimalClassifier(device="cpu")
    assert not (empty_torch_home / "hub" / "checkpoints" / real.filename).exists()


def test_damaged_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = imagenet_spec(DEFAULT_ARCH).path
    target.parent.mkdir(parents=True)
    target.write_bytes(b"half a download")
    with pytest.raises(ClassifierError, match=r"cannot read weights file .*delete it"):
        AnimalClassifier(download=False, device="cpu")


def test_weights_of_another_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = imagenet_spec(DEFAULT_ARCH).path
    target.parent.mkdir(parents=True)
    torch.save({"fc.weight": torch.zeros(2, 2)}, target)
    with pytest.raises(ClassifierError, match="does not fit convnext_tiny"):
        AnimalClassifier(download=False, device="cpu")


def test_unknown_architecture() -> None:
    with pytest.raises(ClassifierError, match="unknown torchvision architecture"):
        AnimalClassifier(arch="convnext_gigantic", device="cpu")


def test_devices() -> None:
    assert resolve_device(None) == resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ClassifierError, match="invalid device"):
        resolve_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ClassifierError, match="CUDA is not available"):
            resolve_device("cuda")


# --- the built-in model, loaded through the real path ------------------------------------------------------


@pytest.fixture(scope="module")
def animal(hub_with_weights: tuple[Path, Any]) -> Iterator[AnimalClassifier]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(hub_with_weights[0]))
        yield AnimalClassifier(download=False, device="cpu", top_k=3)


def test_loads_exactly_the_saved_weights(animal: AnimalClassifier, hub_with_weights: tuple[Path, Any], photo: Any) -> None:
    original = hub_with_weights[1]
    saved = original.state_dict()
    loaded_state = animal.module.state_dict()
    assert loaded_state.keys() == saved.keys()
    assert all(torch.equal(loaded_state[k], saved[k]) for k in saved)
    batch = animal.preprocessor.batch([photo])
    with torch.inference_mode():
        assert torch.equal(animal.module(batch), original(batch))


def test_preprocessing_matches_torchvision(animal: AnimalClassifier, photo: Any) -> None:
    from torchvision.models import get_model_weights

    preset = get_model_weights(DEFAULT_ARCH).DEFAULT.transforms()
    expected = preset(torch.from_numpy(photo).permute(2, 0, 1))
    assert torch.allclose(animal.preprocessor.one(photo), expected, atol=1e-5)


def test_result_schema(animal: AnimalClassifier, photo_jpeg: bytes) -> None:
    result = animal.classify(photo_jpeg)
    assert list(result)[:4] == ["classifier", "answer", "confidence", "elapsed_ms"]
    assert all(key in result for key in ORIGINAL_KEYS)
    assert result["classifier"] == "animal" and result["model"] == "convnext_tiny (ImageNet-1k)"
    assert len(result["top_k"]) == 3
    assert result["top_k"][0]["probability"] == result["probability"] == round(100 * result["confidence"], 2)
    assert all(set(ORIGINAL_KEYS) <= set(entry) for entry in result["top_k"])
    json.dumps(result)


def test_described_animal(animal: AnimalClassifier) -> None:
    lion = 291
    answer, confidence, fields = animal._describe([0.85, 0.1, 0.05], [lion, 292, 817])
    assert (answer, confidence) == ("Lion", 0.85)
    assert {k: fields[k] for k in ORIGINAL_KEYS} == {
        "scientific_name": "Panthera leo",
        "common_name": "Lion",
        "description": fields["description"],
        "habitat": fields["habitat"],
        "endangered": True,
        "dangerous": True,
        "poisonous": False,
        "venomous": False,
        "probability": 85.0,
    }
    assert fields["conservation_status"] == "vulnerable"
    assert fields["top_k"][1]["common_name"] == "Tiger"
    assert fields["top_k"][2]["scientific_name"] is None and fields["top_k"][2]["label"] == "sports car"


def test_below_threshold_could_not_identify(animal: AnimalClassifier) -> None:
    answer, _, fields = animal._describe([0.19, 0.1, 0.05], [291, 292, 288])
    assert answer == COULD_NOT_IDENTIFY == fields["scientific_name"] == fields["common_name"]
    assert fields["probability"] == 19.0 and fields["dangerous"] is None
    assert "Lion" in fields["description"] and "20%" in fields["description"]


def test_non_animal_could_not_identify(animal: AnimalClassifier) -> None:
    answer, _, fields = animal._describe([0.9, 0.05, 0.05], [817, 291, 292])
    assert answer == COULD_NOT_IDENTIFY
    assert "sports car" in fields["description"] and "not an animal" in fields["description"]


def test_batch_equals_one_by_one(animal: AnimalClassifier, photo_jpeg: bytes, drawing_png: bytes) -> None:
    batch = animal.classify_batch([photo_jpeg, b"junk", drawing_png])
    assert batch[1]["error"].startswith("not a recognised image format")
    for result, image in ((batch[0], photo_jpeg), (batch[2], drawing_png)):
        single = animal.classify(image)
        assert [e["label"] for e in single["top_k"]] == [e["label"] for e in result["top_k"]]
        assert single["confidence"] == pytest.approx(result["confidence"], abs=1e-4)


def test_odd_images(animal: AnimalClassifier, photo: Any) -> None:
    odd = [
        encode(np.full((1, 1, 3), 50, np.uint8), "PNG"),
        encode(photo[:, :, 0], "PNG"),
        encode(np.dstack([photo, np.full(photo.shape[:2], 90, np.uint8)]), "PNG"),
        flat_gray_jpeg(20000, 20000),
        np.zeros((10, 4000), np.float32),
    ]
    for result in animal.classify_batch(odd):
        assert isinstance(result.get("answer"), str), result


def test_bad_options(hub_with_weights: tuple[Path, Any]) -> None:
    with pytest.raises(ClassifierError, match="top_k"):
        AnimalClassifier(top_k=0)
    with pytest.raises(ClassifierError, match="threshold"):
        AnimalClassifier(threshold=2.0)


# --- bring your own model ----------------------------------------------------------------------------


def _tiny_torchvision(seed: int) -> Any:
    from torchvision.models import get_model

    torch.manual_seed(seed)
    model = get_model("mobilenet_v3_small", weights=None, num_classes=3).eval()
    with torch.no_grad():  # torchvision's tiny head init gives near-uniform outputs: spread them
        model.classifier[-1].weight.normal_(0.0, 0.5)
        model.classifier[-1].bias.normal_(0.0, 1.0)
    return model


class FixedLogits(torch.nn.Module):
    """A model whose answer is known in advance: the same probabilities for any image."""

    def __init__(self, probabilities: list[float]) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.log(torch.tensor([probabilities])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1) + 0.0 * x.mean()


def _expected_top(model: Any, classifier: AnimalClassifier, image: Any) -> list[float]:
    with torch.inference_mode():
        p = torch.softmax(model(classifier.preprocessor.batch([image])), dim=1)[0]
    return [round(100 * v, 2) for v in sorted(p.tolist(), reverse=True)]


def test_byo_state_dict_checkpoint_with_normalisation(tmp_path: Path, photo: Any) -> None:
    model = _tiny_torchvision(3)
    checkpoint = {
        "arch": "mobilenet_v3_small",
        "state_dict": model.state_dict(),
        "mean": [0.5, 0.5, 0.5],
        "std": [0.2, 0.2, 0.2],
        "input_size": 64,
    }
    torch.save(checkpoint, tmp_path / "model.pth")
    classifier = AnimalClassifier(
        model_path=tmp_path / "model.pth", labels_path=_original_labels(tmp_path / "l.json"), threshold=0.0, device="cpu"
    )
    assert classifier.preprocessor.mean == (0.5, 0.5, 0.5) and classifier.preprocessor.crop_size == 64
    result = classifier.classify(photo)
    assert [e["probability"] for e in result["top_k"]] == _expected_top(model, classifier, photo)
    assert result["model"] == "state_dict model.pth (mobilenet_v3_small)"
    assert _expected_top(_tiny_torchvision(4), classifier, photo) != _expected_top(model, classifier, photo)


def test_byo_plain_state_dict_needs_an_architecture(tmp_path: Path, photo: Any) -> None:
    model = _tiny_torchvision(5)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "sd.pt")
    labels = _original_labels(tmp_path / "l.json")
    with pytest.raises(ClassifierError, match="--arch"):
        AnimalClassifier(model_path=tmp_path / "sd.pt", labels_path=labels, device="cpu")
    classifier = AnimalClassifier(model_path=tmp_path / "sd.pt", labels_path=labels, arch="mobilenet_v3_small", input_size=64, device="cpu")
    assert [e["probability"] for e in classifier.classify(photo)["top_k"]] == _expected_top(model, classifier, photo)


def test_byo_safetensors_with_metadata(tmp_path: Path, photo: Any) -> None:
    from safetensors.torch import save_file

    model = _tiny_torchvision(6)
    metadata = {"arch": "mobilenet_v3_small", "mean": "[0.4, 0.4, 0.4]", "std": "[0.3, 0.3, 0.3]", "input_size": "64"}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors", metadata=metadata)
    classifier = AnimalClassifier(model_path=tmp_path / "m.safetensors", labels_path=_original_labels(tmp_path / "l.json"), device="cpu")
    assert classifier.preprocessor.std == (0.3, 0.3, 0.3)
    assert [e["probability"] for e in classifier.classify(photo)["top_k"]] == _expected_top(model, classifier, photo)


def test_byo_torchscript_answers_in_the_original_schema(tmp_path: Path, photo_jpeg: bytes) -> None:
    scripted = torch.jit.script(FixedLogits([0.7, 0.2, 0.1]))
    torch.jit.save(scripted, str(tmp_path / "fixed.pt"), _extra_files={"meta.json": json.dumps({"input_size": 32})})
    labels = _original_labels(tmp_path / "l.json")
    classifier = AnimalClassifier(model_path=tmp_path / "fixed.pt", labels_path=labels, top_k=2, device="cpu")
    result = classifier.classify(photo_jpeg)
    assert (result["answer"], result["scientific_name"], result["probability"]) == ("Lion", "Panthera leo", 70.0)
    assert (result["endangered"], result["dangerous"], result["description"]) == (True, True, "About the lion.")
    assert [e["common_name"] for e in result["top_k"]] == ["Lion", "Red fox"]
    assert result["model"] == "torchscript fixed.pt" and classifier.preprocessor.crop_size == 32

    low = torch.jit.script(FixedLogits([0.15, 0.45, 0.40]))
    torch.jit.save(low, str(tmp_path / "low.pt"))
    result = AnimalClassifier(model_path=tmp_path / "low.pt", labels_path=labels, device="cpu", threshold=0.5).classify(photo_jpeg)
    assert result["answer"] == COULD_NOT_IDENTIFY and result["probability"] == 45.0
    assert "Red fox" in result["description"]


def test_byo_pickled_model_needs_trust(tmp_path: Path, photo: Any) -> None:
    model = _tiny_torchvision(7)
    torch.save(model, tmp_path / "whole.pth")
    labels = _original_labels(tmp_path / "l.json")
    with pytest.raises(ClassifierError, match=r"pickled .*arbitrary code.*--trust-pickle"):
        AnimalClassifier(model_path=tmp_path / "whole.pth", labels_path=labels, device="cpu")
    trusted = AnimalClassifier(model_path=tmp_path / "whole.pth", labels_path=labels, trust_pickle=True, input_size=64, device="cpu")
    assert [e["probability"] for e in trusted.classify(photo)["top_k"]] == _expected_top(model, trusted, photo)


def test_byo_mistakes(tmp_path: Path) -> None:
    labels4 = _original_labels(tmp_path / "l4.json", n=4)
    scripted = torch.jit.script(FixedLogits([0.7, 0.2, 0.1]))
    torch.jit.save(scripted, str(tmp_path / "fixed.pt"))
    with pytest.raises(ClassifierError, match=r"outputs shape \(1, 3\).*4 classes"):
        AnimalClassifier(model_path=tmp_path / "fixed.pt", labels_path=labels4, device="cpu")
    with pytest.raises(ClassifierError, match="needs its labels file"):
        AnimalClassifier(model_path=tmp_path / "fixed.pt", device="cpu")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ClassifierError, match="not a model file"):
        AnimalClassifier(model_path=tmp_path / "junk.pt", labels_path=labels4, device="cpu")
    with pytest.raises(ClassifierError, match="cannot read model file"):
        AnimalClassifier(model_path=tmp_path / "absent.pt", labels_path=labels4, device="cpu")
    torch.save(_tiny_torchvision(8).state_dict(), tmp_path / "three.pt")
    with pytest.raises(ClassifierError, match="does not fit mobilenet_v3_small with 4 classes"):
        AnimalClassifier(model_path=tmp_path / "three.pt", labels_path=labels4, arch="mobilenet_v3_small", device="cpu")
