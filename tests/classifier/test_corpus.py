"""The hand-labelled Debian corpus: fetching, reading, and joining the fitted set.

The tests cannot reach Debian's archive, so ``apt-get`` is replaced by a script on PATH that builds
the requested package locally with the real ``dpkg-deb``; everything after the download is the
real code path. The images are small stand-ins written at the manifest's paths.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from apps.classifier import fit
from apps.classifier.realanimated import corpus
from apps.classifier.realanimated.corpus import ANIMATED, REAL, CorpusError, fetch, images, load_rgb
from apps.classifier.realanimated.dataset import build_dataset, split_heldout, write_folders
from apps.classifier.realanimated.fitting import sample_features

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is Debian's; not on this machine")

FAKE_APT_GET = """#!/bin/sh
# Stand-in for Debian's archive: builds the requested package here with the real dpkg-deb.
echo "$2" >> "{log}"
case "$2" in
  missing-package) echo "E: Unable to locate package $2" >&2; exit 100;;
esac
mkdir -p root/DEBIAN root/usr/share/snip-test
printf 'Package: %s\\nVersion: 1\\nArchitecture: all\\nMaintainer: t <t@example.org>\\nDescription: t\\n' "$2" > root/DEBIAN/control
echo "$2" > "root/usr/share/snip-test/$2.txt"
dpkg-deb --build root "$2_1_all.deb" > /dev/null
rm -rf root
"""


@pytest.fixture
def fake_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt-get.log"
    script = bin_dir / "apt-get"
    script.write_text(FAKE_APT_GET.format(log=log))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


@needs_dpkg
def test_fetch_unpacks_each_package_once(tmp_path: Path, fake_archive: Path) -> None:
    cache = tmp_path / "cache"
    fetch(cache, log=False)
    for package in corpus.packages():
        assert (cache / package / "usr/share/snip-test" / f"{package}.txt").read_text().strip() == package
    assert sorted(fake_archive.read_text().split()) == corpus.packages()
    fetch(cache, log=False)  # everything is there: no second download
    assert len(fake_archive.read_text().split()) == len(corpus.packages())
    assert not list(cache.glob("tmp*")) and not list(cache.rglob("*.deb"))


@needs_dpkg
def test_fetch_reports_the_archive_s_refusal(tmp_path: Path, fake_archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus, "packages", lambda: ["missing-package"])
    with pytest.raises(CorpusError, match=r"apt-get download missing-package failed \(exit 100\): E: Unable to locate"):
        fetch(tmp_path / "cache", log=False)
    assert not (tmp_path / "cache" / "missing-package" / ".unpacked").exists()


def test_fetch_without_apt_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get anywhere
    with pytest.raises(CorpusError, match="apt-get is not installed"):
        fetch(tmp_path / "cache", log=False)


def _write_image(path: Path, size: tuple[int, int], alpha: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    pixels = rng.integers(0, 256, (size[1], size[0], 4 if alpha else 3), dtype=np.uint8)
    image = PILImage.fromarray(pixels)
    if path.suffix == ".jpg":
        image.save(path, "JPEG")
    else:
        image.save(path)


@pytest.fixture
def fake_cache(tmp_path: Path) -> Path:
    """Every manifest path as a small image, clip art of several sizes, and the unpacked markers."""
    cache = tmp_path / "cache"
    for package, _family, _label, paths in corpus.MANIFEST:
        for relative in paths:
            _write_image(cache / package / "usr/share" / relative, (64, 48))
    clip = cache / corpus.CLIPART_PACKAGE / "usr/share" / corpus.CLIPART_ROOT
    for i in range(corpus.CLIPART_COUNT + 5):
        _write_image(clip / f"set{i % 3}" / f"big{i}.png", (220, 210), alpha=True)
    for i in range(30):
        _write_image(clip / f"icon{i}.png", (64, 64), alpha=True)  # too small to count
    (clip / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for package in corpus.packages():
        (cache / package).mkdir(parents=True, exist_ok=True)
        (cache / package / ".unpacked").write_text("ok\n")
    return cache


def test_images_follow_the_manifest_and_sample_clip_art(fake_cache: Path) -> None:
    found = images(fake_cache)
    listed = sum(len(paths) for *_, paths in corpus.MANIFEST)
    assert len(found) == listed + 1 + corpus.CLIPART_COUNT  # + matplotlib's photograph
    assert len({item.name for item in found}) == len(found)
    clip = [item for item in found if item.name.startswith(corpus.CLIPART_PACKAGE)]
    assert all(item.label == ANIMATED and "big" in item.name for item in clip)
    assert [item.name for item in images(fake_cache)] == [item.name for item in found]  # seeded
    assert {item.label for item in found} == {REAL, ANIMATED}
    hopper = next(item for item in found if item.name == "matplotlib/grace_hopper.jpg")
    assert hopper.label == REAL and load_rgb(hopper.path).shape[2] == 3


def test_transparency_is_composited_over_white(tmp_path: Path) -> None:
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[:2, :, :] = (10, 20, 30, 255)  # top half opaque, bottom half fully transparent
    PILImage.fromarray(pixels).save(tmp_path / "clip.png")
    rgb = load_rgb(tmp_path / "clip.png")
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[3, 3].tolist() == [255, 255, 255]


def test_a_missing_package_or_file_is_named(fake_cache: Path) -> None:
    (fake_cache / "supertux-data" / ".unpacked").unlink()
    with pytest.raises(CorpusError, match=r"supertux-data is not in .*corpus fetch --cache"):
        images(fake_cache)
    (fake_cache / "supertux-data" / ".unpacked").write_text("ok\n")
    next(fake_cache.glob("mate-backgrounds/usr/share/backgrounds/mate/nature/*.jpg")).unlink()
    with pytest.raises(CorpusError, match="is missing: the package's version differs"):
        images(fake_cache)


def test_corpus_images_join_the_set_split_by_family(fake_cache: Path, tmp_path: Path) -> None:
    found = images(fake_cache)
    chosen = [item for item in found if item.family in ("opencv photos", "game art")] + found[-3:]
    samples = build_dataset(seed=3, per_photo=1, drawings=2, sources={"coffee"}, corpus=chosen, per_corpus=2)
    from_corpus = [s for s in samples if s.group.startswith("corpus:")]
    clip_count = sum(1 for item in chosen if item.family == "clip art")
    assert len(from_corpus) == 2 * (len(chosen) - clip_count) + clip_count
    assert {s.style for s in from_corpus} == {"corpus opencv photos", "corpus game art", "corpus clip art"}
    train, test = split_heldout(samples, seed=3)
    for style in ("corpus opencv photos", "corpus game art"):
        held = {s.group for s in test if s.style == style}
        kept = {s.group for s in train if s.style == style}
        assert held and kept and held.isdisjoint(kept)
    write_folders(samples, tmp_path / "out")  # package paths became file-safe names
    assert len(list((tmp_path / "out").rglob("*.*"))) == len(samples)


def test_leave_family_out_scores_every_family(fake_cache: Path) -> None:
    found = images(fake_cache)
    chosen = [item for item in found if item.family in ("opencv photos", "game art")]
    samples = build_dataset(seed=4, per_photo=2, drawings=6, sources={"coffee", "camera"}, corpus=chosen, per_corpus=1)
    scores = fit.leave_family_out(samples, sample_features(samples))
    assert set(scores) == {"generated photos", "generated drawings", "opencv photos", "game art"}
    assert scores["game art"]["label"] == ANIMATED and scores["opencv photos"]["label"] == REAL
    assert scores["opencv photos"]["images"] == sum(1 for item in chosen if item.family == "opencv photos")
    assert all(0.0 <= row["combined"] <= 1.0 for row in scores.values())


def test_fit_without_apt_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert fit.main(["--corpus", str(tmp_path / "cache"), "--dry-run"]) == 1
    assert "apt-get is not installed" in capsys.readouterr().err
