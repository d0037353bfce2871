"""Turn untrusted image bytes (or an array) into an RGB uint8 array, with bounded memory.

Every classifier decodes through here, so every odd input gets the same treatment: the size is
read from the header before any pixel is decoded; a baseline JPEG over the pixel limit is decoded
at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling (it never holds the full image), anything else
over the limit is refused with a clear message. Grayscale, palette, RGBA (composited over white),
16-bit and float images become 8-bit RGB. Corrupt, truncated and non-image input raises
``ImageDecodeError`` with a one-line message.
"""

from __future__ import annotations

import io
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# 50 Mpx covers 48 MP phone sensors and 8K frames; RGBA at this size is 200 MB while decoding.
DEFAULT_MAX_PIXELS = 50_000_000
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DRAFT_SCALES = (2, 4, 8)


class ImageDecodeError(ValueError):
    """The input is not an image we can decode safely; the message says why."""


@dataclass(frozen=True)
class DecodedImage:
    rgb: npt.NDArray[np.uint8]  # height x width x 3, RGB order, C-contiguous
    encoded: bytes | None  # the file as received; None when the caller passed pixels
    format: str  # PIL format name ("JPEG", "PNG", ...) or "array"
    original_size: tuple[int, int]  # (width, height) as stored in the file
    scale: int = 1  # the file was decoded at 1/scale of its size

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def decode_image(image: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS, needed_side: int | None = None) -> DecodedImage:
    """Decode bytes or normalise an array; ``needed_side`` lets big JPEGs decode at reduced scale."""
    if isinstance(image, np.ndarray):
        return _from_array(image, max_pixels)
    if isinstance(image, bytes | bytearray | memoryview):
        return _from_bytes(bytes(image), max_pixels, needed_side)
    raise ImageDecodeError(f"expected image bytes or a numpy array, got {type(image).__name__}")


def _from_bytes(data: bytes, max_pixels: int, needed_side: int | None) -> DecodedImage:
    from PIL import Image

    if not data:
        raise ImageDecodeError("empty input: no image bytes")
    png_size = _png_header_size(data)
    if png_size is not None:
        _check_pixels("PNG", *png_size, max_pixels)
    im = _open(data)
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    fmt = str(im.format or "unknown")
    scale = 1
    if fmt == "JPEG":
        scale = _jpeg_scale(im, max_pixels, needed_side)
        if scale > 1:
            im.draft(im.mode, (width // scale, height // scale))
    else:
        _check_pixels(fmt, width, height, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
            im = _apply_orientation(im)
            rgb = pil_to_rgb(im)
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, zlib.error, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"corrupt or truncated {fmt} image: {exc}") from None
    return DecodedImage(rgb=rgb, encoded=data, format=fmt, original_size=(width, height), scale=scale)


def _png_header_size(data: bytes) -> tuple[int, int] | None:
    # Pillow's own bomb check fires at 179 Mpx with a generic message; ours reads IHDR first.
    if len(data) >= 24 and data.startswith(PNG_MAGIC) and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _check_pixels(fmt: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{fmt} image is {width}x{height} ({width * height / 1e6:.0f} Mpx), over the "
            f"{max_pixels / 1e6:.0f} Mpx decode limit; only baseline JPEG can be reduced while "
            "decoding, so downscale it first"
        )


def _open(data: bytes) -> Any:
    """Read only the header; JPEG skips Pillow's bomb check since we bound its decode size ourselves."""
    from PIL import Image, JpegImagePlugin, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if data.startswith(JPEG_MAGIC):
                return JpegImagePlugin.JpegImageFile(io.BytesIO(data))
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        head = data[:8].hex(" ")
        raise ImageDecodeError(f"not a recognised image format ({len(data)} bytes starting {head})") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, zlib.error) as exc:
        raise ImageDecodeError(f"corrupt image header: {exc}") from None
    except Exception as exc:  # struct.error and friends from truncated headers
        raise ImageDecodeError(f"corrupt image header: {type(exc).__name__}: {exc}") from None


def _jpeg_scale(im: Any, max_pixels: int, needed_side: int | None) -> int:
    width, height = im.size
    if width * height > max_pixels:
        if im.info.get("progressive") or im.info.get("progression"):
            # Progressive JPEG keeps every DCT coefficient of the full image while decoding,
            # whatever the output scale: no bounded way to decode it.
            raise ImageDecodeError(
                f"progressive JPEG is {width}x{height} ({width * height / 1e6:.0f} Mpx), over the "
                f"{max_pixels / 1e6:.0f} Mpx decode limit; re-save it as baseline JPEG or downscale it"
            )
        for scale in _DRAFT_SCALES:
            if -(-width // scale) * -(-height // scale) <= max_pixels:
                return scale
        raise ImageDecodeError(
            f"JPEG is {width}x{height} ({width * height / 1e6:.0f} Mpx): even at 1/8 scale it is over "
            f"the {max_pixels / 1e6:.0f} Mpx decode limit"
        )
    if needed_side:
        for scale in reversed(_DRAFT_SCALES):
            if min(width, height) // scale >= needed_side:
                return scale
    return 1


def _apply_orientation(im: Any) -> Any:
    from PIL import ImageOps

    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is no reason to reject the pixels
        return im
    return ImageOps.exif_transpose(im) if orientation not in (None, 1) else im


def pil_to_rgb(im: Any) -> npt.NDArray[np.uint8]:
    """Any Pillow mode to RGB uint8; transparency is composited over white."""
    mode = str(im.mode)
    if mode.startswith("I;16"):
        # Known 16-bit samples: keep the top byte even when the image is dark.
        return array_to_rgb((np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8))
    if mode in ("I", "F"):
        return array_to_rgb(np.asarray(im))
    if mode in ("1", "L", "RGB"):
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        return array_to_rgb(np.asarray(im.convert("RGBA")))
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _from_array(array: npt.NDArray[Any], max_pixels: int) -> DecodedImage:
    if array.ndim not in (2, 3) or array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageDecodeError(f"expected an image array of shape HxW or HxWxC, got shape {array.shape}")
    height, width = int(array.shape[0]), int(array.shape[1])
    if height * width > max_pixels:
        # Already in memory; an integer stride view gets under the limit without a full copy.
        step = int(np.ceil(np.sqrt(height * width / max_pixels)))
        array = array[::step, ::step]
    return DecodedImage(rgb=array_to_rgb(array), encoded=None, format="array", original_size=(width, height))


def array_to_rgb(array: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """HxW, HxWx1, HxWx3 or HxWx4 of bool/int/uint/float to HxWx3 uint8 (arrays are taken as RGB)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ImageDecodeError(f"expected 1, 2 (gray+alpha), 3 or 4 channels, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageDecodeError(f"image array has no pixels (shape {array.shape})")
    channels = _to_uint8(array)
    alpha: npt.NDArray[np.uint8] | None = None
    if channels.shape[2] in (2, 4):
        alpha = channels[:, :, -1]
        channels = channels[:, :, :-1]
    if channels.shape[2] == 1:
        channels = np.repeat(channels, 3, axis=2)
    if alpha is not None:
        a = alpha.astype(np.uint16)[:, :, None]
        # over white: c*a + 255*(255-a), rounded, in integer arithmetic
        channels = ((channels.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(channels, dtype=np.uint8)


def _to_uint8(array: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind == "b":
        return array.astype(np.uint8) * np.uint8(255)
    if kind in "iu":
        peak = int(array.max(initial=0))
        if peak <= 255:
            return np.asarray(np.clip(array, 0, 255), dtype=np.uint8)
        # Anything wider than 8 bits is taken as 16-bit data (PNG/TIFF "I;16", "I").
        return np.asarray(np.clip(array, 0, 65535) >> 8, dtype=np.uint8)
    if kind == "f":
        clean = np.nan_to_num(array.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
        peak_f = float(clean.max(initial=0.0))
        factor = 255.0 if peak_f <= 1.0 else 1.0
        return np.asarray(np.clip(np.rint(clean * factor), 0, 255), dtype=np.uint8)
    raise ImageDecodeError(f"unsupported pixel type {array.dtype}")
