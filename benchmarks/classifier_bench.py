"""Latency per image and batch throughput of every registry classifier, on the CPU and on CUDA.

    python -m benchmarks.classifier_bench [--images 16] [--batch 8] [--devices cpu,cuda] [--json]

The images are real photographs (scikit-image's) saved as ~512 px JPEGs and procedural drawings as
PNGs, the kind of file the receiver gets. Latency is one ``classify`` call per image (decode
included), median and 90th percentile; throughput is images per second through
``classify_batch``. The animal model uses the real ImageNet weights when they are in the torch
hub cache, otherwise a random initialisation of the same architecture (same cost, meaningless
answers); the output says which. The real-vs-animated models run on the CPU whatever the device.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from apps.classifier import registry
from apps.classifier.animal.vision import ensure_torchvision_importable


@dataclass(frozen=True)
class Row:
    classifier: str
    device: str
    median_ms: float
    p90_ms: float
    batch: int
    images_per_s: float
    note: str


def sample_images(count: int, seed: int = 0) -> list[bytes]:
    """Alternating ~512 px JPEG photos and PNG drawings."""
    import skimage.data
    from PIL import Image

    from apps.classifier.realanimated.drawing import draw_animated

    photos = [getattr(skimage.data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        if i % 2 == 0:
            Image.fromarray(photos[(i // 2) % len(photos)]).save(buffer, "JPEG", quality=88)
        else:
            drawing, _ = draw_animated(rng, 512, 384)
            Image.fromarray(drawing).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


@contextlib.contextmanager
def animal_weights() -> Iterator[str]:
    """Yield a note; when the real weights are absent, point TORCH_HOME at random ones meanwhile."""
    import torch
    ensure_torchvision_importable()
    from torchvision.models import get_model

    from apps.classifier.animal.weights import DEFAULT_ARCH, imagenet_spec

    spec = imagenet_spec(DEFAULT_ARCH)
    if spec.path.is_file():
        yield f"{DEFAULT_ARCH}, ImageNet weights"
        return
    previous = os.environ.get("TORCH_HOME")
    with tempfile.TemporaryDirectory(prefix="snip-bench-") as home:
        target = os.path.join(home, "hub", "checkpoints", spec.filename)
        os.makedirs(os.path.dirname(target))
        torch.manual_seed(0)
        torch.save(get_model(DEFAULT_ARCH, weights=None).state_dict(), target)
        os.environ["TORCH_HOME"] = home
        try:
            yield f"{DEFAULT_ARCH}, RANDOM weights (real ones absent: same cost, meaningless answers)"
        finally:
            if previous is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = previous


def measure(name: str, device: str, images: Sequence[bytes], batch: int, note: str) -> Row:
    classifier = registry.create(name, device=device)
    classifier.classify_batch(list(images[: min(2, len(images))]))  # warm-up: lazy init, allocator, cuDNN
    latencies = []
    for image in images:
        started = time.perf_counter()
        result = classifier.classify(image)
        latencies.append((time.perf_counter() - started) * 1000.0)
        if "error" in result:
            raise RuntimeError(f"{name} failed on a benchmark image: {result['error']}")
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        classifier.classify_batch(list(images[start : start + batch]))
    throughput = len(images) / (time.perf_counter() - started)
    ordered = sorted(latencies)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return Row(name, device, round(statistics.median(latencies), 2), round(p90, 2), batch, round(throughput, 1), note)


def devices_present(requested: Sequence[str] | None) -> list[str]:
    import torch

    if requested:
        return list(requested)
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def run(images: int = 16, batch: int = 8, devices: Sequence[str] | None = None) -> list[Row]:
    data = sample_images(images)
    rows = []
    for device in devices_present(devices):
        for name in registry.available():
            if name != "animal":
                if device == "cpu":  # OpenCV/numpy models: the device does not apply
                    rows.append(measure(name, "cpu", data, batch, "OpenCV/numpy"))
                continue
            with animal_weights() as note:
                rows.append(measure(name, device, data, batch, note))
                registry.clear_cache()  # the next run may use other weights
    return rows


def render(rows: Sequence[Row]) -> str:
    import torch

    lines = [
        f"classifier latency and throughput: torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{os.cpu_count()} CPUs" + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""),
        "",
        f"{'classifier':<11}{'device':<8}{'median ms':>10}{'p90 ms':>9}{'batch':>7}{'images/s':>10}  note",
    ]
    for r in rows:
        lines.append(f"{r.classifier:<11}{r.device:<8}{r.median_ms:>10.1f}{r.p90_ms:>9.1f}{r.batch:>7}{r.images_per_s:>10.1f}  {r.note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.classifier_bench",
        description="Latency per image and batch throughput of every registry classifier.",
    )
    parser.add_argument("--images", type=int, default=16, help="images per measurement (default 16)")
    parser.add_argument("--batch", type=int, default=8, help="batch size for the throughput run (default 8)")
    parser.add_argument("--devices", help="comma-separated torch devices (default: cpu, and cuda when present)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args(argv)
    rows = run(args.images, args.batch, args.devices.split(",") if args.devices else None)
    out: Any = [asdict(r) for r in rows]
    print(json.dumps(out, indent=2) if args.json else render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
