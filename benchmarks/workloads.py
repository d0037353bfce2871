"""The benchmark's images: deterministic, incompressible, valid PNG or JPEG files of exact sizes.

Every transport carries the same bytes. The pixels are seeded random noise (so no transport
gains from compression, TLS included), and the file is padded to the stated size with a private
PNG chunk (``snIp``) or JPEG comment segments, which decoders skip: the classifier still decodes
the image. Sender and receiver build the workload independently from the same settings, so the
receiver can verify each image against its SHA-256 without being told it.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FORMATS",
    "BenchImage",
    "ImageFormat",
    "Workload",
    "format_size",
    "make_image",
    "parse_size",
    "parse_sizes",
]

ImageFormat = Literal["png", "jpeg"]
FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg")
CONTENT_TYPES: dict[ImageFormat, str] = {"png": "image/png", "jpeg": "image/jpeg"}
# The warm-up image opens connections and logins before timing starts; it is not measured.
WARMUP_SIZE = 2048
WARMUP_PREFIX = "warmup-"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK_OVERHEAD = 12  # length, type, CRC
_JPEG_SEGMENT_MAX = 65535 - 2  # payload of one COM segment
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000_000, "mb": 1000_000, "mib": 1 << 20}


@dataclass(frozen=True)
class BenchImage:
    name: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Workload:
    """The images of one run, in sending order."""

    sizes: tuple[int, ...]
    fmt: ImageFormat = "png"
    seed: int = 1

    def images(self) -> list[BenchImage]:
        out = []
        for index, size in enumerate(self.sizes):
            rng = random.Random(f"{self.seed}-{index}-{size}")
            name = f"img{index:02d}-{format_size(size)}.{_extension(self.fmt)}"
            out.append(BenchImage(name, CONTENT_TYPES[self.fmt], make_image(size, rng, self.fmt)))
        return out

    def warmup(self) -> BenchImage:
        rng = random.Random(f"{self.seed}-warmup")
        return BenchImage(f"{WARMUP_PREFIX}{self.seed}.png", "image/png", make_image(WARMUP_SIZE, rng, "png"))

    def digests(self) -> dict[str, str]:
        """name -> SHA-256 hex of every measured image (what the receiver verifies against)."""
        return {image.name: image.sha256 for image in self.images()}

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)

    def to_args(self) -> list[str]:
        """Command-line options that rebuild this workload in a worker process."""
        return ["--sizes", ",".join(str(s) for s in self.sizes), "--format", self.fmt, "--workload-seed", str(self.seed)]


def _extension(fmt: ImageFormat) -> str:
    return "jpg" if fmt == "jpeg" else "png"


def make_image(size: int, rng: random.Random, fmt: ImageFormat = "png") -> bytes:
    """A valid image file of exactly ``size`` bytes with random pixels."""
    if fmt == "png":
        return _png(size, rng)
    if fmt == "jpeg":
        return _jpeg(size, rng)
    raise ValueError(f"unknown image format {fmt!r} (use {', '.join(FORMATS)})")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(size: int, rng: random.Random) -> bytes:
    fixed = len(_PNG_SIGNATURE) + (_PNG_CHUNK_OVERHEAD + 13) + _PNG_CHUNK_OVERHEAD * 2  # IHDR, IDAT, IEND
    if size < fixed + 64:
        raise ValueError(f"a PNG cannot be as small as {size} bytes here (minimum {fixed + 64})")
    budget = size - fixed - _PNG_CHUNK_OVERHEAD  # leave room for a padding chunk
    width = max(1, min(256, int((budget / 3) ** 0.5)))
    stride = 1 + 3 * width
    height = max(1, budget // stride)
    while True:
        raw = b"".join(b"\0" + rng.randbytes(3 * width) for _ in range(height))
        # Level 0 (stored blocks): random pixels do not compress, and the size is predictable.
        idat = zlib.compress(raw, 0)
        pad = size - fixed - len(idat)
        if pad == 0 or pad >= _PNG_CHUNK_OVERHEAD:
            break
        height -= 1
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    parts = [_PNG_SIGNATURE, _png_chunk(b"IHDR", ihdr), _png_chunk(b"IDAT", idat)]
    if pad:
        parts.append(_png_chunk(b"snIp", rng.randbytes(pad - _PNG_CHUNK_OVERHEAD)))
    parts.append(_png_chunk(b"IEND", b""))
    return b"".join(parts)


def _jpeg(size: int, rng: random.Random) -> bytes:
    from PIL import Image  # only the JPEG workload needs Pillow

    side = max(8, int((size / 2.5) ** 0.5))  # noise at quality 90 takes about 2.5 bytes a pixel
    for _ in range(40):
        pixels = rng.randbytes(side * side * 3)
        buffer = io.BytesIO()
        Image.frombytes("RGB", (side, side), pixels).save(buffer, "JPEG", quality=90)
        encoded = buffer.getvalue()
        pad = size - len(encoded)
        if pad == 0 or pad >= 4:
            return _pad_jpeg(encoded, pad, rng)
        side = max(8, int(side * min(0.97, (size / len(encoded)) ** 0.5)))
    raise ValueError(f"cannot make a {size}-byte JPEG")


def _pad_jpeg(encoded: bytes, pad: int, rng: random.Random) -> bytes:
    segments = []
    while pad:
        body = min(pad - 4, _JPEG_SEGMENT_MAX)
        if 0 < pad - 4 - body < 4:  # never leave a remainder too small for a segment of its own
            body -= 4
        segments.append(b"\xff\xfe" + struct.pack(">H", body + 2) + rng.randbytes(body))
        pad -= body + 4
    return encoded[:2] + b"".join(segments) + encoded[2:]  # right after SOI


def parse_size(text: str) -> int:
    """``64k`` -> 64000, ``64kib`` -> 65536, ``1mib`` -> 1048576, ``4096`` -> 4096."""
    clean = text.strip().lower()
    number = clean.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = clean[len(number) :]
    if unit not in _SIZE_UNITS or not number:
        raise ValueError(f"bad size {text!r}: write e.g. 65536, 64kib, 256kib, 1mib")
    value = int(float(number) * _SIZE_UNITS[unit])
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return value


def parse_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(parse_size(part) for part in text.split(",") if part.strip())
    if not sizes:
        raise ValueError("no image sizes given")
    return sizes


def format_size(size: int) -> str:
    """65536 -> '64KiB', 1048576 -> '1MiB', 1000 -> '1000B'."""
    if size % (1 << 20) == 0:
        return f"{size >> 20}MiB"
    if size % 1024 == 0:
        return f"{size >> 10}KiB"
    return f"{size}B"
