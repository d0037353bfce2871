"""The labelled "real vs animated" set the project builds for itself, seeded and offline.

Real: the photographs bundled in scikit-image's wheel (colour: astronaut, chelsea, coffee, rocket,
the stereo motorcycle pair, an immunohistochemistry slide, the Hubble deep field, a retina; gray:
camera, coins, moon, grass, gravel, brick, clock, text, cell), each turned into many variants by
random crops, rescales, flips, colour/gamma jitter, tints, noise or blur, and re-encodings (JPEG
at several qualities, PNG, WebP). Animated: procedural drawings (``apps.classifier.realanimated.drawing``) and
scikit-image's few graphics (logo, colour wheel, horse silhouette), re-encoded the same way.
With a corpus (``corpus.py``: photographs and drawings from Debian packages, labelled by hand), its
images join in the same way, a few variants each.

The held-out split is by *source*: every variant of a held-out photograph is held out, so a model
is never tested on a crop of a picture it was fitted on.

    python -m apps.classifier.realanimated.dataset --out DIR   # writes DIR/real/*, DIR/animated/* for --evaluate
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from apps.classifier.realanimated.corpus import ANIMATED as ANIMATED  # the labels, defined once, there
from apps.classifier.realanimated.corpus import CLIPART_FAMILY, CorpusImage, load_rgb
from apps.classifier.realanimated.corpus import REAL as REAL
from apps.classifier.realanimated.drawing import draw_animated

LABELS = (REAL, ANIMATED)
CORPUS_VARIANTS = 3
CORPUS_GROUP = "corpus:"  # + the image's name
CORPUS_STYLE = "corpus "  # + its family

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Sample:
    name: str  # file name, with the extension of its encoding
    label: str  # REAL or ANIMATED
    group: str  # the source it was derived from; the split never separates a group
    data: bytes  # the encoded file
    style: str  # "photo", "gray photo", "graphic" or the drawing style


def _skimage(name: str) -> Callable[[], list[Image]]:
    def load() -> list[Image]:
        import skimage.data

        value = getattr(skimage.data, name)()
        frames = list(value[:2]) if isinstance(value, tuple) else [value]
        out = []
        for frame in frames:
            arr = np.asarray(frame)
            if arr.dtype == bool:
                arr = arr.astype(np.uint8) * 255
            if arr.ndim == 3 and arr.shape[2] == 4:  # the logo: composite over white
                alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
                arr = (arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
            if arr.ndim == 2:
                arr = np.repeat(arr[:, :, None], 3, axis=2)
            out.append(np.ascontiguousarray(arr.astype(np.uint8)))
        return out

    return load


COLOR_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "immunohistochemistry",
    "hubble_deep_field", "retina",
)  # fmt: skip
GRAY_PHOTOS = ("camera", "coins", "moon", "grass", "gravel", "brick", "clock", "text", "cell")
GRAPHICS = ("logo", "colorwheel", "horse")


def _photo_variant(rng: np.random.Generator, base: Image, gray: bool, camera: bool = True) -> Image:
    """A crop, rescale, flip and tone change of ``base``; with ``camera``, sometimes sensor noise or
    blur as well (not for a drawing from elsewhere: that would make it part photograph)."""
    import cv2

    h, w = base.shape[:2]
    area = rng.uniform(0.3, 1.0)
    aspect = rng.uniform(0.7, 1.4)
    ch = min(h, max(16, round(h * float(np.sqrt(area / aspect)))))
    cw = min(w, max(16, round(w * float(np.sqrt(area * aspect)))))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    img = base[y : y + ch, x : x + cw]
    longest = int(rng.integers(160, 1200))
    factor = min(1.5, longest / max(ch, cw))  # upscaling a photo past 1.5x would make it a blur
    size = (max(8, round(cw * factor)), max(8, round(ch * factor)))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    img = np.asarray(cv2.resize(img, size, interpolation=interp), dtype=np.uint8)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    f = img.astype(np.float32) / 255.0
    f = np.clip(f * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08), 0.0, 1.0) ** rng.uniform(0.8, 1.25)
    if gray and rng.random() < 0.35:
        f = f * np.array([1.0, 0.85, 0.65], dtype=np.float32)  # sepia-like tint of an old print
    img = (f * 255.0 + 0.5).astype(np.uint8)
    if camera and rng.random() < 0.2:
        img = np.clip(img + rng.normal(0.0, rng.uniform(2, 6), img.shape), 0, 255).astype(np.uint8)
    if camera and rng.random() < 0.1:
        img = cv2.GaussianBlur(img, (5, 5), 0)
    return np.ascontiguousarray(img)


def _drawing(rng: np.random.Generator) -> tuple[Image, str]:
    import cv2

    longest = int(rng.integers(160, 1200))
    aspect = rng.uniform(0.6, 1.8)
    w, h = (longest, max(32, int(longest / aspect))) if aspect >= 1 else (max(32, int(longest * aspect)), longest)
    if rng.random() < 0.3:
        # Drawn big and shrunk, like most clip art on the web: blended edge colours.
        img, style = draw_animated(rng, int(w * 1.6), int(h * 1.6))
        img = np.asarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), dtype=np.uint8)
        return np.ascontiguousarray(img), style
    return draw_animated(rng, w, h)


def _encode(rng: np.random.Generator, img: Image, label: str) -> tuple[bytes, str]:
    from PIL import Image as PILImage

    # Photographs mostly travel as JPEG, drawings about as often as JPEG as PNG. A stronger split
    # (an earlier 65/25 against 35/55) let the models learn the format instead of the picture.
    weights = [0.70, 0.15, 0.15] if label == REAL else [0.50, 0.40, 0.10]
    kind = str(rng.choice(["jpg", "png", "webp"], p=weights))
    buffer = io.BytesIO()
    pil = PILImage.fromarray(img)
    if kind == "jpg":
        pil.save(buffer, "JPEG", quality=int(rng.integers(55, 96)))
    elif kind == "png":
        pil.save(buffer, "PNG", compress_level=int(rng.integers(1, 10)))
    else:
        pil.save(buffer, "WEBP", quality=int(rng.integers(60, 95)))
    return buffer.getvalue(), kind


def build_dataset(
    seed: int = 0,
    per_photo: int = 24,
    drawings: int | None = None,
    sources: Collection[str] | None = None,
    corpus: Sequence[CorpusImage] = (),
    per_corpus: int = CORPUS_VARIANTS,
) -> list[Sample]:
    """``per_photo`` variants of each photograph (half as many of each graphic), ``per_corpus``
    variants of each corpus image (one of each clip art) and ``drawings`` procedural pictures
    (default: enough to balance the classes). ``sources`` limits the photographs and graphics to
    those names (e.g. the held-out ones)."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []

    def add(label: str, group: str, style: str, img: Image, index: int) -> None:
        data, ext = _encode(rng, img, label)
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", group)  # corpus groups hold a package path
        samples.append(Sample(f"{stem}-{index:04d}.{ext}", label, group, data, style))

    for names, gray in ((COLOR_PHOTOS, False), (GRAY_PHOTOS, True)):
        for name in names:
            if sources is not None and name not in sources:
                continue
            frames = _skimage(name)()
            for i in range(per_photo):
                base = frames[i % len(frames)]
                add(REAL, name, "gray photo" if gray else "photo", _photo_variant(rng, base, gray), i)
    for name in GRAPHICS:
        if sources is not None and name not in sources:
            continue
        frames = _skimage(name)()
        for i in range(max(1, per_photo // 2)):
            add(ANIMATED, name, "graphic", _photo_variant(rng, frames[0], False), i)
    for item in corpus:
        base = load_rgb(item.path)
        count = 1 if item.family == CLIPART_FAMILY else per_corpus
        for i in range(count):
            variant = _photo_variant(rng, base, False, camera=item.label == REAL)
            add(item.label, CORPUS_GROUP + item.name, CORPUS_STYLE + item.family, variant, i)
    real_count = sum(1 for s in samples if s.label == REAL)
    graphic_count = len(samples) - real_count
    for i in range(drawings if drawings is not None else max(0, real_count - graphic_count)):
        img, style = _drawing(rng)
        add(ANIMATED, f"drawing{i:04d}", style, img, 0)
    return samples


def corpus_family(sample: Sample) -> str | None:
    """The corpus family a sample was derived from; None for a generated one."""
    return sample.style.removeprefix(CORPUS_STYLE) if sample.style.startswith(CORPUS_STYLE) else None


def split_heldout(samples: Sequence[Sample], seed: int = 0, fraction: float = 0.25) -> tuple[list[Sample], list[Sample]]:
    """(train, held_out): a seeded share of the sources of each kind, never splitting a source."""
    rng = np.random.default_rng(seed + 7919)
    held: set[str] = set()
    kinds: dict[str, list[str]] = {}
    for sample in samples:
        kind = "drawing" if sample.group.startswith("drawing") else sample.style
        members = kinds.setdefault(kind, [])
        if sample.group not in members:
            members.append(sample.group)
    for groups in kinds.values():
        count = max(1, round(len(groups) * fraction)) if len(groups) > 1 else 0
        held.update(str(g) for g in rng.choice(groups, size=count, replace=False))
    train = [s for s in samples if s.group not in held]
    test = [s for s in samples if s.group in held]
    return train, test


def write_folders(samples: Sequence[Sample], out: Path) -> None:
    for label in LABELS:
        (out / label).mkdir(parents=True, exist_ok=True)
    for sample in samples:
        (out / sample.label / sample.name).write_bytes(sample.data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.classifier.realanimated.dataset",
        description="Write the generated real-vs-animated set as DIR/real and DIR/animated.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-photo", type=int, default=24, help="variants of each source photo (default 24, as fitted)")
    parser.add_argument("--split", choices=("all", "train", "heldout"), default="all")
    args = parser.parse_args(argv)
    samples = build_dataset(args.seed, args.per_photo)
    train, test = split_heldout(samples, args.seed)
    chosen = {"all": samples, "train": train, "heldout": test}[args.split]
    write_folders(chosen, args.out)
    counts = {label: sum(1 for s in chosen if s.label == label) for label in LABELS}
    print(f"wrote {len(chosen)} images to {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
