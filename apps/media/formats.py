"""Recognise image formats from their leading bytes, and check that a whole image decodes.

Sniffing is cheap (a few bytes) and is what the sender uses to refuse files that are not images;
a full decode is what the receiver's --verify-image pays for.
"""

from __future__ import annotations

import io
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageFormat:
    name: str
    content_type: str
    extension: str


JPEG = ImageFormat("jpeg", "image/jpeg", ".jpg")
PNG = ImageFormat("png", "image/png", ".png")
GIF = ImageFormat("gif", "image/gif", ".gif")
WEBP = ImageFormat("webp", "image/webp", ".webp")
BMP = ImageFormat("bmp", "image/bmp", ".bmp")
TIFF = ImageFormat("tiff", "image/tiff", ".tif")
AVIF = ImageFormat("avif", "image/avif", ".avif")
HEIC = ImageFormat("heic", "image/heic", ".heic")
JXL = ImageFormat("jxl", "image/jxl", ".jxl")
JP2 = ImageFormat("jp2", "image/jp2", ".jp2")

ALL_FORMATS: tuple[ImageFormat, ...] = (JPEG, PNG, GIF, WEBP, BMP, TIFF, AVIF, HEIC, JXL, JP2)
OCTET_STREAM = "application/octet-stream"

# How many leading bytes sniff() looks at.
SIGNATURE_BYTES = 16

_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def sniff(head: bytes) -> ImageFormat | None:
    """The image format whose signature ``head`` starts with, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    # "BM" alone matches plenty of text files; the four reserved header bytes are zero in real BMPs.
    if head[:2] == b"BM" and len(head) >= 10 and head[6:10] == b"\0\0\0\0":
        return BMP
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return TIFF
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return AVIF
        if brand in _HEIC_BRANDS:
            return HEIC
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return JXL
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"):
        return JP2
    return None


def by_name(name: str) -> ImageFormat:
    """The format called ``name`` ("jpeg", "jpg", "png", ...); KeyError when unknown."""
    key = name.lower().lstrip(".")
    if key == "jpg":
        key = "jpeg"
    if key == "tif":
        key = "tiff"
    for fmt in ALL_FORMATS:
        if fmt.name == key:
            return fmt
    raise KeyError(name)


def by_content_type(content_type: str) -> ImageFormat | None:
    wanted = content_type.split(";", 1)[0].strip().lower()
    return next((fmt for fmt in ALL_FORMATS if fmt.content_type == wanted), None)


def decode_problem(data: bytes) -> str | None:
    """None when ``data`` decodes completely as an image; otherwise a short reason why not."""
    if not data:
        return "empty"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            # load() decodes every pixel, so a truncated or corrupt body is caught, not just the header.
            img.load()
        return None
    except Image.DecompressionBombError as exc:
        return f"refused by the decompression-bomb guard ({exc})"
    except UnidentifiedImageError as exc:
        pillow_reason = str(exc)
    except Exception as exc:
        # Pillow knows the format but the body is broken (truncated, corrupt): that is final.
        return f"does not decode as an image ({type(exc).__name__}: {exc})"
    # A format Pillow has no codec for may still be one OpenCV reads.
    import cv2
    import numpy as np

    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        decoded = None
    if decoded is not None:
        return None
    return f"does not decode as an image ({pillow_reason})"
