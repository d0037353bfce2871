"""Photographs and drawings from Debian packages, labelled by hand here, for fitting and scoring.

The generated set (``dataset.py``) has 17 photographed scenes and one drawing generator; a model fitted
on it alone learnt that set's habits (its file sizes, its drawing style) and scored 59-68% on
pictures from anywhere else (RESULTS.md). This corpus adds 54 more photographs (nature, streets,
people, objects, aerial views) and 173 drawings by other hands (clip art, game backgrounds, desktop
art), each chosen and labelled by looking at it; one photograph is matplotlib's sample portrait,
the rest come from Debian packages. The files are not copied into the project: they are
fetched from Debian's archive with ``apt-get download`` (no root needed) and unpacked with
``dpkg-deb -x`` into a cache folder: about 580 MB to download, 900 MB unpacked.

    python -m apps.classifier.realanimated.corpus fetch [--cache DIR]
    python -m apps.classifier.realanimated.corpus write --out DIR   # DIR/real, DIR/animated for --evaluate

Each image's *family* (the package, or the part of it with one kind of content) is what the
leave-one-family-out figures in ``apps.classifier.fit`` hold out.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from apps.classifier.base import ClassifierError

REAL = "real"
ANIMATED = "animated"
CACHE_ENV = "SNIP_CORPUS"
CLIPART_PACKAGE = "openclipart-png"
CLIPART_FAMILY = "clip art"  # one variant each in the fitted set: there are many, all alike in kind
CLIPART_ROOT = "openclipart/png"
CLIPART_COUNT = 120
CLIPART_MIN_SIDE = 200  # icons smaller than this say little about a picture
CLIPART_MAX_SIDE = 4000
CLIPART_SEED = 7

_PLASMA = "wallpapers/{}/contents/images/{}"
_OPENCV = "doc/opencv-doc/examples/"
_SUPERTUX = "games/supertux2/images/background/"

# (package, family, label, paths under /usr/share)
MANIFEST: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("mate-backgrounds", "mate photos", REAL, tuple(
        f"backgrounds/mate/nature/{n}.jpg" for n in (
            "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
            "Storm", "TwoWings", "Wood", "YellowFlower",
        )
    )),
    ("plasma-workspace-wallpapers", "plasma photos", REAL, tuple(
        _PLASMA.format(n, "2560x1600.jpg") for n in (
            "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
            "OneStandsOut", "Path", "summer_1am",
        )
    )),
    ("opencv-doc", "opencv photos", REAL, tuple(
        _OPENCV + p for p in (
            "data/aero1.jpg", "data/aero3.jpg", "data/aloeL.jpg", "data/apple.jpg", "data/baboon.jpg",
            "data/basketball1.png", "data/board.jpg", "data/box_in_scene.png", "data/building.jpg",
            "data/butterfly.jpg", "data/chicky_512.png", "data/ela_original.jpg", "data/fruits.jpg",
            "data/graf1.png", "data/home.jpg", "data/left.jpg", "data/leuvenA.jpg",
            "data/licenseplate_motion.jpg", "data/messi5.jpg", "data/orange.jpg", "data/right.jpg",
            "data/rubberwhale1.png", "data/squirrel_cls.jpg", "data/stuff.jpg", "data/box.png",
            "text/scenetext01.jpg", "text/scenetext02.jpg", "text/scenetext03.jpg", "text/scenetext04.jpg",
            "text/scenetext05.jpg", "text/scenetext06.jpg",
        )
    )),
    ("plasma-workspace-wallpapers", "plasma art", ANIMATED, tuple(
        _PLASMA.format(n, size) for n, size in (
            ("Altai", "1080x1920.png"), ("Autumn", "2560x1600.jpg"), ("Canopee", "3840x2160.png"),
            ("Cascade", "3840x2160.png"), ("Cluster", "3840x2160.png"), ("Elarun", "2560x1600.png"),
            ("Flow", "720x1440.jpg"), ("FlyingKonqui", "2560x1600.png"), ("Honeywave", "1080x1920.jpg"),
            ("IceCold", "5120x2880.png"), ("Kay", "1080x1920.png"), ("Kokkini", "3840x2160.png"),
            ("MilkyWay", "1080x1920.png"), ("Opal", "3840x2160.png"), ("PastelHills", "2560x1440.jpg"),
            ("Patak", "1080x1920.png"), ("SafeLanding", "1622x2880.jpg"), ("Shell", "720x1440.jpg"),
        )
    )),
    ("ukui-wallpapers", "desktop art", ANIMATED, tuple(
        f"backgrounds/{n}" for n in (
            "2004default.jpg", "calla.png", "city.png", "desert.png", "firstgeneration.jpg", "fluent-color.png",
            "focal-ubuntukylin.png", "goldfish.png", "rhythm.jpg", "rollpaper.png", "string.jpg", "the-mouse.jpg",
        )
    )),
    ("gnome-backgrounds", "desktop art", ANIMATED, tuple(
        f"backgrounds/gnome/{n}.webp" for n in ("adwaita-l", "pixels-d", "symbolic-l", "licorice-d", "truchet-l")
    )),
    ("supertux-data", "game art", ANIMATED, tuple(
        _SUPERTUX + p for p in (
            "christmas/intro.jpg", "christmas/outro.jpg", "halloween/intro.jpg", "halloween/outro.jpg",
            "misc/oiltux.jpg", "forest/nighthills.png", "antarctic/arctis2.png", "arcticskies/arcticskies1.png",
            "snowmountains/snowmountains.png", "antarctic/arcticmountains.png",
            "cloud_mountains/cloud-mountains-background.png", "ice_cave/darkcave-preview.png",
            "block_snow/block-snow-background.png", "halloween/sky.png", "bluemountain/bluemountain2.png",
            "forest/dawn_hill_para_blur.png",
        )
    )),
    ("opencv-doc", CLIPART_FAMILY, ANIMATED, (_OPENCV + "data/HappyFish.jpg", _OPENCV + "data/ml.png")),
)  # fmt: skip

Image = npt.NDArray[np.uint8]


class CorpusError(ClassifierError):
    """The corpus could not be fetched or read."""


@dataclass(frozen=True)
class CorpusImage:
    name: str  # package/path: unique, and the image's source group in a split
    family: str  # what a leave-one-family-out score holds out
    label: str
    path: Path


def packages() -> list[str]:
    return sorted({entry[0] for entry in MANIFEST} | {CLIPART_PACKAGE})


def default_cache() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "snip" / "corpus"


def _run(command: Sequence[str], cwd: Path) -> None:
    try:
        done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=1800, check=False)
    except FileNotFoundError:
        raise CorpusError(f"{command[0]} is not installed: the corpus comes from Debian's archive") from None
    except subprocess.TimeoutExpired:
        raise CorpusError(f"{' '.join(command)} took over 30 minutes") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CorpusError(f"{' '.join(command)} failed (exit {done.returncode}): {detail[0]}")


def fetch(cache: Path, log: bool = True) -> None:
    """Download and unpack every package not already in ``cache`` (a marker file says which are)."""
    cache.mkdir(parents=True, exist_ok=True)
    for package in packages():
        target = cache / package
        if (target / ".unpacked").exists():
            continue
        if log:
            print(f"fetching {package} ...", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            work = Path(scratch)
            _run(["apt-get", "download", package], work)
            debs = sorted(work.glob("*.deb"))
            if not debs:
                raise CorpusError(f"apt-get download {package} wrote no .deb file")
            shutil.rmtree(target, ignore_errors=True)
            _run(["dpkg-deb", "-x", str(debs[0]), str(target)], work)
        (target / ".unpacked").write_text("ok\n")


def _share(cache: Path, package: str) -> Path:
    root = cache / package / "usr" / "share"
    if not (cache / package / ".unpacked").exists():
        raise CorpusError(
            f"corpus package {package} is not in {cache}; run `python -m apps.classifier.realanimated.corpus fetch"
            f" --cache {cache}`"
        )
    return root


def images(cache: Path) -> list[CorpusImage]:
    """Every labelled image, in a fixed order; clip art is a seeded sample of the package."""
    out: list[CorpusImage] = []
    for package, family, label, paths in MANIFEST:
        root = _share(cache, package)
        for relative in paths:
            path = root / relative
            if not path.is_file():
                raise CorpusError(f"{path} is missing: the package's version differs from the one labelled here")
            out.append(CorpusImage(f"{package}/{relative}", family, label, path))
    out.append(_grace_hopper())
    out.extend(_clipart(_share(cache, CLIPART_PACKAGE) / CLIPART_ROOT))
    return out


def _grace_hopper() -> CorpusImage:
    """Matplotlib's sample photograph, which ships with the project's plotting library."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return CorpusImage("matplotlib/grace_hopper.jpg", "opencv photos", REAL, path)


def _clipart(root: Path) -> list[CorpusImage]:
    from PIL import Image as PILImage

    files = sorted(p for p in root.rglob("*.png") if p.is_file())
    chosen: list[CorpusImage] = []
    for path in random.Random(CLIPART_SEED).sample(files, len(files)):
        try:
            with PILImage.open(path) as im:
                if min(im.size) < CLIPART_MIN_SIDE or max(im.size) > CLIPART_MAX_SIDE:
                    continue
        except (OSError, PILImage.DecompressionBombError):
            continue  # a few files in the package are broken or enormous
        chosen.append(CorpusImage(f"{CLIPART_PACKAGE}/{path.relative_to(root)}", CLIPART_FAMILY, ANIMATED, path))
        if len(chosen) == CLIPART_COUNT:
            break
    return chosen


def load_rgb(path: Path) -> Image:
    """8-bit RGB; transparency is composited over white, as a page shows clip art."""
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P", "PA") or "transparency" in im.info:
            rgba = im.convert("RGBA")
            canvas = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
            canvas.alpha_composite(rgba)
            rgb = canvas.convert("RGB")
        else:
            rgb = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.classifier.realanimated.corpus",
        description="Fetch the hand-labelled Debian corpus, or write it as DIR/real and DIR/animated.",
    )
    parser.add_argument("action", choices=("fetch", "write"))
    parser.add_argument("--cache", type=Path, default=None, help=f"cache folder (default ${CACHE_ENV} or ~/.cache/snip/corpus)")
    parser.add_argument("--out", type=Path, help="write: folder to create")
    args = parser.parse_args(argv)
    cache = args.cache or default_cache()
    try:
        fetch(cache)
        if args.action == "write":
            if args.out is None:
                parser.error("write needs --out DIR")
            found = images(cache)
            for item in found:
                folder = args.out / item.label
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item.path, folder / item.name.replace("/", "__"))
            print(f"wrote {len(found)} images to {args.out}")
        else:
            print(f"corpus ready in {cache}: {len(images(cache))} images")
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
