"""Re-encode images before sending: change format, quality, or shrink to a maximum dimension.

Files go through Pillow (it applies EXIF orientation and handles palette/alpha modes); camera and
video frames, which arrive as OpenCV BGR arrays, go through OpenCV's encoder, which is faster.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from apps.media.formats import JPEG, PNG, WEBP, ImageFormat, by_name, sniff

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# The formats the sender can re-encode to.
WRITABLE: tuple[ImageFormat, ...] = (JPEG, PNG, WEBP)
WRITABLE_NAMES: tuple[str, ...] = tuple(fmt.name for fmt in WRITABLE)
DEFAULT_QUALITY = 90


class EncodeError(Exception):
    """The image could not be decoded or re-encoded."""


@dataclass(frozen=True)
class EncodeOptions:
    format: str | None = None  # a WRITABLE name; None keeps the source's format when it is writable
    quality: int | None = None  # 1-100, for JPEG and WebP
    max_dim: int | None = None  # longest side in pixels after resizing

    def __post_init__(self) -> None:
        if self.format is not None and by_name(self.format) not in WRITABLE:
            raise ValueError(f"cannot encode to {self.format}; choose one of {', '.join(WRITABLE_NAMES)}")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ValueError("quality must be between 1 and 100")
        if self.max_dim is not None and self.max_dim < 1:
            raise ValueError("max-dim must be a positive number of pixels")

    @property
    def active(self) -> bool:
        return self.format is not None or self.quality is not None or self.max_dim is not None

    def target(self, source: ImageFormat | None) -> ImageFormat:
        if self.format is not None:
            return by_name(self.format)
        if source is not None and source in WRITABLE:
            return source
        return PNG  # lossless, and it reads everything Pillow reads


@dataclass(frozen=True)
class Encoded:
    data: bytes
    format: ImageFormat


def renamed(name: str, fmt: ImageFormat) -> str:
    """``name`` with its extension replaced by ``fmt``'s (kept when it already fits)."""
    path = PurePosixPath(name)
    if path.suffix.lower() in {fmt.extension, f".{fmt.name}"}:
        return name
    return str(path.with_suffix(fmt.extension)) if path.suffix else name + fmt.extension


def reencode(data: bytes, options: EncodeOptions) -> Encoded:
    """Re-encode image file bytes; returns them untouched when nothing would change."""
    from PIL import Image, ImageOps

    source = sniff(data[:16])
    target = options.target(source)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            img = ImageOps.exif_transpose(opened)
            img.load()
    except Exception as exc:
        raise EncodeError(f"cannot decode the image to re-encode it ({type(exc).__name__}: {exc})") from exc
    limit = options.max_dim
    too_big = limit is not None and max(img.size) > limit
    if target == source and options.quality is None and not too_big:
        return Encoded(data, target)
    if limit is not None and too_big:
        img.thumbnail((limit, limit), Image.Resampling.LANCZOS)
    img = _convert_mode(img, target)
    save_args: dict[str, Any] = {}
    if target in (JPEG, WEBP):
        save_args["quality"] = options.quality or DEFAULT_QUALITY
    if target is JPEG:
        save_args["optimize"] = True
    out = io.BytesIO()
    try:
        img.save(out, format=target.name.upper(), **save_args)
    except Exception as exc:
        raise EncodeError(f"cannot encode as {target.name} ({type(exc).__name__}: {exc})") from exc
    return Encoded(out.getvalue(), target)


def _convert_mode(img: Any, target: ImageFormat) -> Any:
    from PIL import Image

    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if target is JPEG:
        if has_alpha:
            # JPEG has no alpha: flatten onto white rather than the black that a plain convert gives.
            rgba = img.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return img if img.mode in ("RGB", "L") else img.convert("RGB")
    if target is WEBP:
        return img if img.mode in ("RGB", "RGBA") else img.convert("RGBA" if has_alpha else "RGB")
    # PNG stores most modes; the odd ones (CMYK, YCbCr, float) become RGB(A).
    if img.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        return img
    return img.convert("RGBA" if has_alpha else "RGB")


def encode_array(
    bgr: npt.NDArray[np.uint8], fmt: ImageFormat = JPEG, quality: int | None = None, max_dim: int | None = None
) -> bytes:
    """Encode an OpenCV BGR (or grey) frame."""
    import cv2
    import numpy as np

    if fmt not in WRITABLE:
        raise EncodeError(f"cannot encode frames as {fmt.name}")
    if max_dim is not None:
        height, width = bgr.shape[:2]
        scale = max_dim / max(height, width)
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            bgr = np.asarray(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    params: list[int] = []
    if fmt is JPEG:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality or DEFAULT_QUALITY]
    elif fmt is WEBP:
        params = [cv2.IMWRITE_WEBP_QUALITY, quality or DEFAULT_QUALITY]
    ok, buf = cv2.imencode(fmt.extension, bgr, params)
    if not ok:
        raise EncodeError(f"OpenCV could not encode a {bgr.shape} frame as {fmt.name}")
    return bytes(buf.tobytes())


def encode_frame(bgr: npt.NDArray[np.uint8], options: EncodeOptions) -> Encoded:
    """Encode a captured frame with the sender's options (JPEG unless a format was asked for)."""
    fmt = by_name(options.format) if options.format else JPEG
    return Encoded(encode_array(bgr, fmt, options.quality, options.max_dim), fmt)
