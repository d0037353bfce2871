"""The measurements behind the three "real vs animated" models, vectorised with numpy and OpenCV.

* byte lengths: the encoded file's length, and the lengths of its hex and base64 renderings (the
  original project compared all three; hex and base64 are fixed functions of the byte length, so
  they are computed from it rather than by building the strings);
* bilateral histogram distance: the Bhattacharyya distance between each RGB channel's 256-bin
  histogram before and after a bilateral filter. A drawing's histogram is a few sharp spikes (its
  palette), so the few pixels the filter moves (anti-aliased edges, compression ringing) leave the
  spikes and show up as a large distance; a photo's histogram is smooth, so the filter shifting
  every pixel by a few levels barely changes its shape. The mean per-pixel change (the filter's
  residual) comes with it for free and feeds the combined model;
* top-colour share: the fraction of pixels covered by the 512 most common exact colours after a
  nearest-neighbour resize to 1024x1024 (nearest, because interpolation would invent colours);
* texture (for the combined model): how much of the picture is exactly flat, how much sensor-like
  noise its smooth parts carry, how peaked its Laplacian is, how much of it is strong edges, and how
  saturated its colours are. A drawing is flat areas split by sharp edges; a photograph has no
  truly flat area and noise even in its sky. These carried the combined model from 59-68% to
  about 80% on photographs and drawings it never saw (RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# Chosen on the training split (RESULTS.md): of work sizes 256/384/512, diameters 5-9 and colour
# sigmas 35-75, the smallest and cheapest separated best (about 0.6 ms per image).
BILATERAL_SIDE = 256  # work size: the filter costs O(pixels * d^2)
BILATERAL_DIAMETER = 5
BILATERAL_SIGMA_COLOR = 50.0
BILATERAL_SIGMA_SPACE = 5.0
HISTOGRAM_BINS = 256
COLOR_SIDE = 1024
TOP_COLORS = 512
TEXTURE_SIDE = 512  # large enough to keep a photo's grain, small enough for ~20 ms per image
FLAT_RANGE = 1  # a pixel is flat when its 3x3 neighbourhood spans at most this many levels per channel
NEAR_FLAT_RANGE = 4
SMOOTH_GRADIENT = 20.0  # Sobel magnitude under which a pixel counts as part of a smooth area
VIVID_SATURATION = 0.6
VIVID_VALUE = 0.4
# Immerkaer's noise operator (the difference of two Laplacians): zero on any linear ramp, so what it
# measures in smooth areas is grain, not shading.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


@dataclass(frozen=True)
class Features:
    """Everything the four models look at, for one image."""

    byte_length: int
    hex_length: int
    base64_length: int
    bits_per_pixel: float  # 8 * bytes / stored pixels: size normalised by resolution
    histogram_distance: float  # mean Bhattacharyya distance: 0 (identical histograms) .. 1 (disjoint)
    bilateral_residual: float  # mean |image - filtered| per channel value, 0..255
    top_color_share: float  # 0..1
    distinct_colors: int
    flat_share: float = 0.0  # 0..1: pixels whose 3x3 neighbourhood spans <= FLAT_RANGE levels
    near_flat_share: float = 0.0  # 0..1: the same with NEAR_FLAT_RANGE
    smooth_noise: float = 0.0  # median noise-operator response in smooth areas (grey levels)
    smooth_noise_mean: float = 0.0  # its mean: a few textured patches move it, not the median
    laplacian_kurtosis: float = 0.0  # kurtosis of the Laplacian: high for flat areas and sharp edges
    edge_share: float = 0.0  # 0..1: Canny edge pixels
    mean_saturation: float = 0.0  # 0..1, HSV saturation
    vivid_share: float = 0.0  # 0..1: saturated and bright pixels

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def byte_lengths(encoded: bytes) -> tuple[int, int, int]:
    """(bytes, hex characters, base64 characters) of the encoded file."""
    n = len(encoded)
    return n, 2 * n, 4 * math.ceil(n / 3)


def fit_within(rgb: Array, side: int) -> Array:
    """Shrink (never enlarge) so the longer side is at most ``side``; INTER_AREA avoids aliasing."""
    import cv2

    height, width = rgb.shape[:2]
    longest = max(height, width)
    if longest <= side:
        return rgb
    factor = side / longest
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def bilateral_stats(rgb: Array) -> tuple[float, float]:
    """(mean Bhattacharyya distance of the channel histograms before/after a bilateral filter,
    mean absolute per-pixel change)."""
    import cv2

    small = np.ascontiguousarray(fit_within(rgb, BILATERAL_SIDE))
    smooth = cv2.bilateralFilter(small, BILATERAL_DIAMETER, BILATERAL_SIGMA_COLOR, BILATERAL_SIGMA_SPACE)
    total = 0.0
    for channel in range(3):
        before = cv2.calcHist([small], [channel], None, [HISTOGRAM_BINS], [0, 256])
        after = cv2.calcHist([smooth], [channel], None, [HISTOGRAM_BINS], [0, 256])
        total += float(cv2.compareHist(before, after, cv2.HISTCMP_BHATTACHARYYA))
    residual = float(cv2.absdiff(small, smooth).mean())
    return max(0.0, total / 3.0), residual


def color_stats(rgb: Array) -> tuple[float, int]:
    """(share of pixels in the TOP_COLORS most common colours, number of distinct colours)."""
    import cv2

    square = np.asarray(cv2.resize(rgb, (COLOR_SIDE, COLOR_SIDE), interpolation=cv2.INTER_NEAREST), dtype=np.uint8)
    channels = square.astype(np.uint32)
    keys = ((channels[:, :, 0] << 16) | (channels[:, :, 1] << 8) | channels[:, :, 2]).ravel()
    # Sorting 1M keys is faster here than a 16M-bin bincount.
    ordered = np.sort(keys)
    starts = np.flatnonzero(np.diff(ordered)) + 1
    counts = np.diff(np.concatenate(([0], starts, [ordered.size])))
    top = np.partition(counts, counts.size - TOP_COLORS)[-TOP_COLORS:] if counts.size > TOP_COLORS else counts
    return float(top.sum()) / float(ordered.size), int(counts.size)


@dataclass(frozen=True)
class Texture:
    flat_share: float
    near_flat_share: float
    smooth_noise: float
    smooth_noise_mean: float
    laplacian_kurtosis: float
    edge_share: float
    mean_saturation: float
    vivid_share: float


def texture_stats(rgb: Array) -> Texture:
    """Flatness, grain in smooth areas, Laplacian kurtosis, edges and saturation, at TEXTURE_SIDE."""
    import cv2

    small = np.ascontiguousarray(fit_within(rgb, TEXTURE_SIDE))
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    kernel = np.ones((3, 3), np.uint8)
    spread = (cv2.dilate(small, kernel).astype(np.int16) - cv2.erode(small, kernel)).max(axis=2)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    smooth = (cv2.magnitude(gx, gy) < SMOOTH_GRADIENT)[1:-1, 1:-1]
    noise = np.abs(cv2.filter2D(gray.astype(np.float32), -1, _NOISE_KERNEL))[1:-1, 1:-1][smooth]
    laplacian = cv2.Laplacian(gray, cv2.CV_32F).ravel().astype(np.float64)
    centred = laplacian - laplacian.mean()
    variance = float((centred**2).mean())
    kurtosis = float((centred**4).mean()) / (variance * variance) if variance > 1e-9 else 0.0
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    saturation = hsv[:, :, 1].astype(np.float32) / 255.0
    value = hsv[:, :, 2].astype(np.float32) / 255.0
    return Texture(
        flat_share=float((spread <= FLAT_RANGE).mean()),
        near_flat_share=float((spread <= NEAR_FLAT_RANGE).mean()),
        smooth_noise=float(np.median(noise)) if noise.size else 0.0,
        smooth_noise_mean=float(noise.mean()) if noise.size else 0.0,
        laplacian_kurtosis=kurtosis,
        edge_share=float((cv2.Canny(gray, 100, 200) > 0).mean()),
        mean_saturation=float(saturation.mean()),
        vivid_share=float(((saturation > VIVID_SATURATION) & (value > VIVID_VALUE)).mean()),
    )


def encode_png(rgb: Array) -> bytes:
    """A lossless file for byte features when the caller handed over pixels, not a file."""
    import cv2

    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError("could not PNG-encode the array")
    return bytes(buffer.tobytes())


def extract(
    rgb: Array,
    encoded: bytes,
    stored_size: tuple[int, int],
    *,
    need_bilateral: bool = True,
    need_colors: bool = True,
    need_texture: bool = True,
) -> Features:
    """Compute the features; the ones a model does not need are left at 0 to save time."""
    n, hex_len, b64_len = byte_lengths(encoded)
    pixels = max(1, stored_size[0] * stored_size[1])
    distance, residual = bilateral_stats(rgb) if need_bilateral else (0.0, 0.0)
    share, distinct = color_stats(rgb) if need_colors else (0.0, 0)
    texture = asdict(texture_stats(rgb)) if need_texture else {}
    return Features(
        byte_length=n,
        hex_length=hex_len,
        base64_length=b64_len,
        bits_per_pixel=8.0 * n / pixels,
        histogram_distance=distance,
        bilateral_residual=residual,
        top_color_share=share,
        distinct_colors=distinct,
        **texture,
    )
