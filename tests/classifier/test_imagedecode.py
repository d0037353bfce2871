"""Bad and odd input: every case decodes correctly or fails with a clear ImageDecodeError."""

from __future__ import annotations

import io
import resource
import struct
import zlib
from typing import Any

import cv2
import numpy as np
import pytest

from apps.classifier.imagedecode import ImageDecodeError, decode_image
from tests.classifier.conftest import encode, flat_gray_jpeg


def test_jpeg_and_png_decode_to_the_same_rgb(photo: np.ndarray[Any, Any]) -> None:
    png = decode_image(encode(photo, "PNG"))
    assert png.format == "PNG" and png.rgb.dtype == np.uint8 and png.rgb.shape == photo.shape
    assert np.array_equal(png.rgb, photo)  # lossless, and RGB order kept (not BGR)
    jpg = decode_image(encode(photo, "JPEG", quality=95))
    assert jpg.format == "JPEG"
    assert float(np.abs(jpg.rgb.astype(int) - photo).mean()) < 4.0


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP"])
def test_other_formats(photo: np.ndarray[Any, Any], fmt: str) -> None:
    decoded = decode_image(encode(photo, fmt))
    assert decoded.rgb.shape == photo.shape and decoded.format == fmt


def test_grayscale_becomes_three_equal_channels(photo: np.ndarray[Any, Any]) -> None:
    gray = photo[:, :, 1]
    rgb = decode_image(encode(gray, "PNG")).rgb
    assert rgb.shape == (*gray.shape, 3)
    assert np.array_equal(rgb[:, :, 0], gray) and np.array_equal(rgb[:, :, 2], gray)


def test_rgba_is_composited_over_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:, :, 0] = 200  # red channel
    rgba[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    rgb = decode_image(encode(rgba, "PNG")).rgb
    assert rgb[0, 0].tolist() == [200, 0, 0]
    assert rgb[3, 3].tolist() == [255, 255, 255]


def test_palette_with_transparency() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = [0, 0, 255, 255]
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba).convert("P").save(buffer, "PNG", transparency=0)
    rgb = decode_image(buffer.getvalue()).rgb
    assert rgb.shape == (8, 8, 3)


def test_16_bit_gray_keeps_the_high_byte() -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    ok, png = cv2.imencode(".png", ramp)
    assert ok
    rgb = decode_image(png.tobytes()).rgb
    assert rgb.dtype == np.uint8 and np.array_equal(rgb[:, :, 0], (ramp >> 8).astype(np.uint8))


def test_16_bit_dark_image_is_not_mistaken_for_8_bit() -> None:
    dark = np.full((8, 8), 200, np.uint16)  # 200/65535: nearly black
    ok, png = cv2.imencode(".png", dark)
    assert ok
    assert int(decode_image(png.tobytes()).rgb.max()) == 0


def test_16_bit_colour_png() -> None:
    colour = np.zeros((8, 8, 3), np.uint16)
    colour[:, :, 2] = 65535  # BGR for OpenCV: red
    ok, png = cv2.imencode(".png", colour)
    assert ok
    assert decode_image(png.tobytes()).rgb[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_one_pixel(fmt: str) -> None:
    decoded = decode_image(encode(np.full((1, 1, 3), 77, np.uint8), fmt))
    assert decoded.rgb.shape == (1, 1, 3)


def test_huge_baseline_jpeg_is_reduced_while_decoding_with_bounded_memory() -> None:
    data = flat_gray_jpeg(20000, 20000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decoded = decode_image(data)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert decoded.original_size == (20000, 20000)
    assert decoded.scale == 4 and decoded.rgb.shape == (5000, 5000, 3)  # 25 Mpx, under the 50 Mpx cap
    assert int(decoded.rgb.min()) == int(decoded.rgb.max()) == 128
    assert grown_mb < 400  # the full image would be 1.2 GB as RGB


def test_needed_side_lets_a_large_jpeg_decode_small() -> None:
    decoded = decode_image(flat_gray_jpeg(4000, 3000), needed_side=300)
    assert decoded.scale == 8 and decoded.size == (500, 375)


def test_pixel_limit_applies_to_jpeg_too() -> None:
    with pytest.raises(ImageDecodeError, match="even at 1/8 scale"):
        decode_image(flat_gray_jpeg(4000, 4000), max_pixels=100_000)


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_huge_png_is_refused_from_its_header() -> None:
    with pytest.raises(ImageDecodeError, match=r"20000x20000 \(400 Mpx\).*downscale it first"):
        decode_image(_png_header_only(20000, 20000))


def test_huge_progressive_jpeg_is_refused() -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, "JPEG", progressive=True)
    with pytest.raises(ImageDecodeError, match="progressive JPEG"):
        decode_image(buffer.getvalue(), max_pixels=1000)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_truncated_files(photo_jpeg: bytes, photo: np.ndarray[Any, Any], fraction: float) -> None:
    png = encode(photo, "PNG")
    for data in (photo_jpeg, png):
        with pytest.raises(ImageDecodeError, match=r"corrupt|truncated"):
            decode_image(data[: int(len(data) * fraction)])


def test_corrupt_png_data(photo: np.ndarray[Any, Any]) -> None:
    png = bytearray(encode(photo, "PNG"))
    middle = len(png) // 2
    png[middle : middle + 64] = bytes(64)
    with pytest.raises(ImageDecodeError, match="corrupt"):
        decode_image(bytes(png))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty input"),
        (b"%PDF-1.7 not an image at all", "not a recognised image format"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "corrupt|not a recognised"),
        (b"\xff\xd8\xff\xe0garbage", "corrupt"),
        (bytes(range(256)) * 4, "not a recognised image format"),
    ],
)
def test_non_images(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data)


def test_wrong_type() -> None:
    with pytest.raises(ImageDecodeError, match="expected image bytes or a numpy array"):
        decode_image("picture.png")


def test_bytearray_and_memoryview(photo_jpeg: bytes) -> None:
    assert decode_image(bytearray(photo_jpeg)).rgb.shape == decode_image(memoryview(photo_jpeg)).rgb.shape


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((3, 3), 9, np.uint8), [9, 9, 9]),
        (np.full((3, 3, 1), 9, np.uint8), [9, 9, 9]),
        (np.full((3, 3), True), [255, 255, 255]),
        (np.full((3, 3, 3), 0.5, np.float32), [128, 128, 128]),
        (np.full((3, 3, 3), np.nan, np.float64), [0, 0, 0]),
        (np.full((3, 3, 3), 65535, np.uint16), [255, 255, 255]),
        (np.dstack([np.full((3, 3, 3), 10, np.uint8), np.zeros((3, 3), np.uint8)]), [255, 255, 255]),
    ],
)
def test_arrays(array: np.ndarray[Any, Any], expected: list[int]) -> None:
    decoded = decode_image(array)
    assert decoded.format == "array" and decoded.encoded is None
    assert decoded.rgb[1, 1].tolist() == expected


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 5, 5), (5,), (2, 2, 2, 2)])
def test_bad_arrays(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(np.zeros(shape, np.uint8))


def test_complex_arrays_are_refused() -> None:
    with pytest.raises(ImageDecodeError, match="unsupported pixel type"):
        decode_image(np.zeros((4, 4), np.complex64))


def test_huge_array_is_strided_under_the_limit() -> None:
    big = np.zeros((3000, 3000, 3), np.uint8)
    decoded = decode_image(big, max_pixels=1_000_000)
    assert decoded.rgb.shape[0] * decoded.rgb.shape[1] <= 1_000_000
    assert decoded.original_size == (3000, 3000)


def test_exif_orientation_is_applied(photo: np.ndarray[Any, Any]) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", exif=exif.tobytes())
    decoded = decode_image(buffer.getvalue())
    assert decoded.rgb.shape == (photo.shape[1], photo.shape[0], 3)
