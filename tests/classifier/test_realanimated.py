"""The real-vs-animated features, fitting tools, shipped parameters and classifiers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.classifier.realanimated.classifier import RealAnimatedClassifier
from apps.classifier.realanimated.dataset import ANIMATED, REAL, build_dataset, split_heldout, write_folders
from apps.classifier.realanimated.features import (
    bilateral_stats,
    byte_lengths,
    color_stats,
    encode_png,
    extract,
    texture_stats,
)
from apps.classifier.realanimated.fitting import MODEL_NAMES, fit_models, sample_features, score
from apps.classifier.realanimated.linear import fit_logistic, fit_slope, fit_threshold, one_hot, quantile_edges
from apps.classifier.realanimated.models import PARAMS_PATH, FittedParams

# --- features ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 1000, 1001])
def test_byte_lengths_match_the_strings_the_original_built(n: int) -> None:
    data = bytes(range(256)) * (n // 256) + bytes(n % 256)
    assert byte_lengths(data) == (len(data), len(data.hex()), len(base64.b64encode(data)))


def test_colour_share_counts_exact_colours() -> None:
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (600, 3), dtype=np.uint8)
    few = palette[rng.integers(0, 5, (64, 64))]
    share, distinct = color_stats(few)
    assert share == 1.0 and distinct == 5
    many = palette[np.arange(600 * 4).reshape(40, 60) % 600]  # 600 colours, equally common
    share, distinct = color_stats(many)
    assert distinct == 600 and share == pytest.approx(512 / 600, abs=0.01)
    noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert color_stats(noise)[0] < 0.05


def test_bilateral_leaves_flat_images_alone_and_moves_noisy_ones() -> None:
    flat = np.full((100, 100, 3), 120, np.uint8)
    assert bilateral_stats(flat) == (0.0, 0.0)
    rng = np.random.default_rng(1)
    noisy = np.clip(120 + rng.normal(0, 8, (100, 100, 3)), 0, 255).astype(np.uint8)
    distance, residual = bilateral_stats(noisy)
    assert distance > 0.01 and residual > 1.0


def test_extract_fills_every_feature_for_a_photo(photo_jpeg: bytes) -> None:
    import skimage.data

    big = np.ascontiguousarray(skimage.data.astronaut())  # 512x512
    values = extract(big, photo_jpeg, (512, 512)).as_dict()
    assert all(np.isfinite(v) for v in values.values()), values
    assert values["smooth_noise_mean"] > 0 and values["laplacian_kurtosis"] > 0 and values["edge_share"] > 0
    skipped = extract(big, photo_jpeg, (512, 512), need_texture=False)
    assert skipped.flat_share == skipped.smooth_noise == skipped.edge_share == 0.0


def test_texture_tells_flat_paint_from_grain() -> None:
    rng = np.random.default_rng(2)
    flat = np.zeros((200, 300, 3), np.uint8)
    flat[:, :150] = (200, 40, 40)
    flat[:, 150:] = (30, 90, 220)
    painted = texture_stats(flat)
    assert painted.flat_share > 0.95 and painted.smooth_noise == 0.0
    assert painted.vivid_share > 0.95 and painted.mean_saturation > 0.7
    grain = np.clip(flat.astype(np.float64) + rng.normal(0, 4, flat.shape), 0, 255).astype(np.uint8)
    photo_like = texture_stats(grain)
    assert photo_like.flat_share < 0.05 and photo_like.near_flat_share < painted.near_flat_share
    assert photo_like.smooth_noise > 2.0


def test_smooth_noise_ignores_shading() -> None:
    # A linear ramp is shading, not grain: the noise operator is zero on it.
    ramp = np.repeat(np.repeat(np.linspace(0, 250, 256)[None, :, None], 128, axis=0), 3, axis=2).astype(np.uint8)
    measured = texture_stats(ramp)
    assert measured.smooth_noise == 0.0 and measured.smooth_noise_mean < 1.0
    assert measured.flat_share < 0.5  # a ramp is not flat paint either


def test_texture_of_one_colour_has_no_kurtosis_to_divide_by_zero() -> None:
    assert texture_stats(np.full((50, 50, 3), 7, np.uint8)).laplacian_kurtosis == 0.0


# --- fitting tools -------------------------------------------------------------------------------


def test_logistic_regression_separates_and_is_deterministic() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(float)
    model = fit_logistic(x, y, l2=0.01)
    assert ((model.probability(x) >= 0.5) == (y > 0.5)).mean() > 0.97
    assert fit_logistic(x, y, l2=0.01) == model
    assert model.weights[0] > model.weights[1] > 0


def test_logistic_handles_a_constant_feature() -> None:
    x = np.column_stack([np.arange(10.0), np.ones(10)])
    model = fit_logistic(x, (np.arange(10) >= 5).astype(float))
    assert np.isfinite(model.weights).all() and model.scale[1] == 1.0


def test_threshold_and_slope() -> None:
    x = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    assert fit_threshold(x, y, positive_above=True) == pytest.approx(0.5)
    assert fit_threshold(x, 1 - y, positive_above=False) == pytest.approx(0.5)
    assert fit_slope(x - 0.5, y) > 10  # separable: steep


def test_one_hot_bins() -> None:
    edges = quantile_edges(np.arange(100.0), 4)
    assert edges == pytest.approx((24.75, 49.5, 74.25))
    encoded = one_hot([0.0, 30.0, 99.0], edges)
    assert encoded.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]


# --- dataset ---------------------------------------------------------------------------------------


def test_dataset_is_seeded_and_split_by_source() -> None:
    first = build_dataset(seed=5, per_photo=1, drawings=4)
    again = build_dataset(seed=5, per_photo=1, drawings=4)
    assert [s.data for s in first] == [s.data for s in again]
    assert {s.label for s in first} == {REAL, ANIMATED}
    train, test = split_heldout(first, seed=5)
    assert {s.group for s in train}.isdisjoint({s.group for s in test})
    assert len(train) + len(test) == len(first) and test


def test_write_folders(tmp_path: Path) -> None:
    samples = build_dataset(seed=1, per_photo=1, drawings=2, sources={"coffee", "logo"})
    write_folders(samples, tmp_path)
    assert [p.stem for p in (tmp_path / "real").iterdir()] == ["coffee-0000"]
    assert len(list((tmp_path / "animated").iterdir())) == 3


# --- shipped parameters and the held-out claim --------------------------------------------------


def test_shipped_parameters_round_trip(tmp_path: Path) -> None:
    params = FittedParams.load()
    path = tmp_path / "params.json"
    params.save(path)
    assert FittedParams.load(path) == params
    assert json.loads(PARAMS_PATH.read_text())["provenance"]["heldout"]["combined"]["accuracy"] > 0.85


def test_missing_or_bad_parameter_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not found.*python -m apps.classifier.fit"):
        FittedParams.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"format": 1, "models": {}}')
    with pytest.raises(ValueError, match="cannot read fitted parameters"):
        FittedParams.load(tmp_path / "bad.json")


def test_parameter_files_of_another_shape_are_refused(tmp_path: Path) -> None:
    data = json.loads(PARAMS_PATH.read_text())
    logistic = data["models"]["combined"]["logistic"]
    for key in ("weights", "mean", "scale"):
        logistic[key].pop()
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="combined model: 13 weights for 14 columns"):
        FittedParams.load(tmp_path / "short.json")
    data = json.loads(PARAMS_PATH.read_text()) | {"format": 1}  # the byte-bin combined model
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"unsupported parameter format 1 \(expected 2\)"):
        FittedParams.load(tmp_path / "old.json")


@pytest.fixture(scope="module")
def fresh_heldout() -> tuple[list[Any], list[str]]:
    """New variants of the sources the shipped parameters never saw, plus new drawings."""
    held = FittedParams.load().provenance["heldout_sources"]
    samples = build_dataset(seed=101, per_photo=6, drawings=36, sources=set(held))
    return sample_features(samples), [s.label for s in samples]


def test_combined_beats_every_single_model_on_unseen_sources(fresh_heldout: tuple[list[Any], list[str]]) -> None:
    features, labels = fresh_heldout
    accuracy = {name: report.accuracy for name, report in score(FittedParams.load(), features, labels).items()}
    for name in ("bytes", "bilateral", "colors"):
        assert accuracy["combined"] > accuracy[name], accuracy
    assert accuracy["combined"] > 0.85 and accuracy["bilateral"] > 0.7, accuracy


def test_fitting_learns_from_a_small_set() -> None:
    samples = build_dataset(seed=7, per_photo=2, drawings=40)
    train, _ = split_heldout(samples, seed=7)
    features = sample_features(train)
    params = fit_models(features, [s.label for s in train])
    train_scores = score(params, features, [s.label for s in train])
    assert all(train_scores[name].accuracy > 0.6 for name in MODEL_NAMES), train_scores
    assert params.colors.animated_above  # more of the pixels in few colours: a drawing
    assert train_scores["combined"].accuracy >= max(train_scores[n].accuracy for n in ("bytes", "colors"))


# --- classifiers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_classifier_results(model: str, photo_jpeg: bytes, drawing_png: bytes) -> None:
    classifier = RealAnimatedClassifier(model)
    results = classifier.classify_batch([photo_jpeg, drawing_png, b"not an image"])
    for result in results[:2]:
        assert list(result)[:4] == ["classifier", "answer", "confidence", "elapsed_ms"]
        assert result["classifier"] == model and result["answer"] in (REAL, ANIMATED)
        assert 0.5 <= result["confidence"] <= 1.0 and result["elapsed_ms"] > 0
        assert result["p_animated"] == pytest.approx(
            result["confidence"] if result["answer"] == ANIMATED else 1 - result["confidence"], abs=1e-5
        )
        json.dumps(result)
    assert results[2] == {"classifier": model, "error": "not a recognised image format (12 bytes starting 6e 6f 74 20 61 6e 20 69)"}
    assert results[0] == classifier.classify(photo_jpeg) | {"elapsed_ms": results[0]["elapsed_ms"]}


def test_combined_gets_the_easy_cases_right(photo_jpeg: bytes, drawing_png: bytes) -> None:
    classifier = RealAnimatedClassifier("combined")
    assert classifier.classify(photo_jpeg)["answer"] == REAL
    assert classifier.classify(drawing_png)["answer"] == ANIMATED


def test_array_input_is_measured_on_a_png_encoding(photo: np.ndarray[Any, Any]) -> None:
    result = RealAnimatedClassifier("bytes").classify(photo)
    assert result["encoded_for_features"] == "png"
    assert result["features"]["byte_length"] == len(encode_png(photo))


def test_device_is_accepted_and_reported_as_cpu(photo_jpeg: bytes) -> None:
    assert RealAnimatedClassifier("colors", device="cuda").classify(photo_jpeg)["device"] == "cpu"


def test_odd_images_get_answers_not_crashes() -> None:
    classifier = RealAnimatedClassifier("combined")
    odd = [np.zeros((1, 1, 3), np.uint8), np.full((5, 3000), 7, np.uint16), np.zeros((2, 2, 4), np.uint8)]
    for result in classifier.classify_batch(odd):
        assert result["answer"] in (REAL, ANIMATED), result
