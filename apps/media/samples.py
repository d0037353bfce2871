"""Sample images for the demo, tests and benchmarks: real photos and generated cartoon drawings.

The photos ship inside scikit-image's wheel (no download). The drawings are flat-coloured scenes
with black outlines, the kind of picture the real-vs-animated classifiers should call animated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apps.media.encode import encode_array
from apps.media.formats import JPEG, PNG, ImageFormat

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SampleImage:
    name: str
    content_type: str
    data: bytes
    kind: str  # "photo" or "drawing"


def _motorcycle() -> Any:
    import skimage.data

    stereo_pair: Any = skimage.data.stereo_motorcycle  # untyped in scikit-image
    return stereo_pair()[0]  # the left view


def _photo_loader(name: str) -> Callable[[], Any]:
    def load() -> Any:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


# name -> loader of an RGB uint8 array; all are bundled with scikit-image.
PHOTOS: dict[str, Callable[[], Any]] = {
    "astronaut": _photo_loader("astronaut"),
    "chelsea": _photo_loader("chelsea"),
    "coffee": _photo_loader("coffee"),
    "rocket": _photo_loader("rocket"),
    "motorcycle": _motorcycle,
    "hubble": _photo_loader("hubble_deep_field"),
}


def photo(name: str) -> Array:
    """The bundled photo ``name`` as an RGB array."""
    import numpy as np

    rgb = np.asarray(PHOTOS[name](), dtype=np.uint8)
    return rgb


def cartoon(seed: int, width: int = 480, height: int = 360) -> Array:
    """A generated cartoon scene (RGB): flat colours, thick outlines, a sun, hills, a house or a face."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)

    def colour() -> tuple[int, int, int]:
        r, g, b = (int(v) for v in rng.integers(40, 256, size=3))
        return (r, g, b)

    black = (0, 0, 0)
    line = max(2, width // 160)
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = colour()  # sky
    sun = (int(rng.integers(width // 8, width - width // 8)), int(rng.integers(height // 8, height // 3)))
    radius = int(rng.integers(height // 14, height // 7))
    cv2.circle(img, sun, radius, (255, 215, 40), -1)
    cv2.circle(img, sun, radius, black, line)
    for _ in range(int(rng.integers(1, 4))):  # clouds: a few overlapping white ellipses
        cx, cy = int(rng.integers(0, width)), int(rng.integers(height // 10, height // 3))
        for dx in (-30, 0, 30):
            cv2.ellipse(img, (cx + dx * width // 480, cy), (width // 16, height // 20), 0, 0, 360,
                        (250, 250, 250), -1)
    hills = np.array(
        [[0, height]]
        + [[x, int(height * rng.uniform(0.55, 0.75))] for x in np.linspace(0, width, 6, dtype=int)]
        + [[width, height]],
        dtype=np.int32,
    )
    cv2.fillPoly(img, [hills], colour())
    cv2.polylines(img, [hills], True, black, line)
    if rng.random() < 0.5:
        _house(img, rng, colour(), colour(), line)
    else:
        _face(img, rng, colour(), line)
    return img


def _house(img: Array, rng: Any, wall: tuple[int, int, int], roof: tuple[int, int, int], line: int) -> None:
    import cv2
    import numpy as np

    height, width = img.shape[:2]
    w = int(width * rng.uniform(0.2, 0.3))
    x = int(rng.integers(width // 10, width - w - width // 10))
    y = int(height * 0.55)
    h = int(height * 0.3)
    black = (0, 0, 0)
    cv2.rectangle(img, (x, y), (x + w, y + h), wall, -1)
    cv2.rectangle(img, (x, y), (x + w, y + h), black, line)
    roof_pts = np.array([[x - w // 8, y], [x + w // 2, y - h // 2], [x + w + w // 8, y]], dtype=np.int32)
    cv2.fillPoly(img, [roof_pts], roof)
    cv2.polylines(img, [roof_pts], True, black, line)
    door = (x + w // 2 - w // 10, y + h // 2)
    cv2.rectangle(img, door, (door[0] + w // 5, y + h), (120, 70, 30), -1)
    cv2.rectangle(img, door, (door[0] + w // 5, y + h), black, line)
    cv2.rectangle(img, (x + w // 8, y + h // 5), (x + w // 3, y + h // 2), (170, 220, 255), -1)
    cv2.rectangle(img, (x + w // 8, y + h // 5), (x + w // 3, y + h // 2), black, line)


def _face(img: Array, rng: Any, skin: tuple[int, int, int], line: int) -> None:
    import cv2

    height, width = img.shape[:2]
    r = int(height * rng.uniform(0.14, 0.2))
    centre = (int(rng.integers(r + 10, width - r - 10)), int(height * 0.62))
    black = (0, 0, 0)
    cv2.circle(img, centre, r, skin, -1)
    cv2.circle(img, centre, r, black, line)
    for side in (-1, 1):
        eye = (centre[0] + side * r // 3, centre[1] - r // 4)
        cv2.circle(img, eye, r // 6, (255, 255, 255), -1)
        cv2.circle(img, eye, r // 6, black, line)
        cv2.circle(img, eye, r // 14 + 1, black, -1)
    cv2.ellipse(img, (centre[0], centre[1] + r // 8), (r // 2, r // 3), 0, 20, 160, black, line)


def _to_bgr(rgb: Array) -> Array:
    import cv2
    import numpy as np

    if rgb.ndim == 2:
        return rgb
    code = cv2.COLOR_RGBA2BGR if rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR
    return np.asarray(cv2.cvtColor(rgb, code), dtype=np.uint8)


def encode_rgb(rgb: Array, fmt: ImageFormat, quality: int | None = None) -> bytes:
    return encode_array(_to_bgr(rgb), fmt, quality)


def sample_images(count: int, seed: int = 0) -> list[SampleImage]:
    """``count`` images alternating photos (JPEG, then PNG once each JPEG was used) and drawings (PNG).

    Deterministic for a given seed, so demo runs and benchmarks are comparable.
    """
    photos = list(PHOTOS)
    # Each photo once as JPEG, then once as PNG (a bigger object, like a camera's raw export).
    photo_slots = [(name, JPEG) for name in photos] + [(name, PNG) for name in photos]
    out: list[SampleImage] = []
    drawings = 0
    for index in range(count):
        if index % 2 == 0 and photo_slots:
            name, fmt = photo_slots.pop(0)
            data = encode_rgb(photo(name), fmt, 90)
            out.append(SampleImage(f"{name}{fmt.extension}", fmt.content_type, data, "photo"))
        else:
            data = encode_rgb(cartoon(seed * 1000 + drawings), PNG)
            out.append(SampleImage(f"drawing-{drawings + 1:02d}.png", PNG.content_type, data, "drawing"))
            drawings += 1
    return out
