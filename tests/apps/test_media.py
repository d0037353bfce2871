"""Image formats, decode checks, re-encoding and the sample images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from apps.media.describe import classification_answers, human_bytes
from apps.media.encode import EncodeError, EncodeOptions, encode_frame, reencode, renamed
from apps.media.formats import GIF, JPEG, PNG, WEBP, by_name, decode_problem, sniff
from apps.media.samples import PHOTOS, cartoon, sample_images


def _pil_bytes(mode: str, size: tuple[int, int], fmt: str, **save: object) -> bytes:
    rng = np.random.default_rng(7)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(array.squeeze() if channels == 1 else array, mode)
    out = io.BytesIO()
    img.save(out, format=fmt, **save)
    return out.getvalue()


def test_sniff_recognises_real_files_and_refuses_others() -> None:
    assert sniff(_pil_bytes("RGB", (8, 8), "JPEG")) is JPEG
    assert sniff(_pil_bytes("RGBA", (8, 8), "PNG")) is PNG
    assert sniff(_pil_bytes("RGB", (8, 8), "WEBP")) is WEBP
    assert sniff(_pil_bytes("L", (8, 8), "GIF")) is GIF
    assert sniff(_pil_bytes("RGB", (8, 8), "BMP")).name == "bmp"  # type: ignore[union-attr]
    assert sniff(_pil_bytes("RGB", (8, 8), "TIFF")).name == "tiff"  # type: ignore[union-attr]
    assert sniff(b"\x00\x00\x00\x1cftypavif\x00\x00") .name == "avif"  # type: ignore[union-attr]
    for junk in (b"", b"hello world", b"BM is also how this text starts", b"%PDF-1.7", b"\x00" * 16):
        assert sniff(junk) is None


def test_by_name_accepts_aliases() -> None:
    assert by_name("JPG") is JPEG and by_name(".png") is PNG
    with pytest.raises(KeyError):
        by_name("exe")


def test_decode_problem_catches_truncation_but_accepts_whole_images() -> None:
    good = _pil_bytes("RGB", (64, 64), "JPEG", quality=90)
    assert decode_problem(good) is None
    assert decode_problem(_pil_bytes("RGBA", (16, 16), "PNG")) is None
    assert decode_problem(good[: len(good) // 2]) is not None
    assert decode_problem(b"\xff\xd8\xff" + b"\x00" * 100) is not None
    assert decode_problem(b"") == "empty"


def test_reencode_changes_format_quality_and_size() -> None:
    source = _pil_bytes("RGB", (400, 200), "PNG")
    out = reencode(source, EncodeOptions(format="jpeg", quality=50, max_dim=100))
    assert out.format is JPEG and sniff(out.data) is JPEG
    with Image.open(io.BytesIO(out.data)) as img:
        assert img.size == (100, 50)  # aspect ratio kept
    low = reencode(source, EncodeOptions(format="jpeg", quality=10)).data
    high = reencode(source, EncodeOptions(format="jpeg", quality=95)).data
    assert len(low) < len(high)
    webp = reencode(source, EncodeOptions(format="webp"))
    assert webp.format is WEBP and decode_problem(webp.data) is None


def test_reencode_keeps_small_images_untouched_and_flattens_alpha_for_jpeg() -> None:
    small = _pil_bytes("RGB", (50, 40), "JPEG")
    assert reencode(small, EncodeOptions(max_dim=100)).data is small
    transparent = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    buf = io.BytesIO()
    transparent.save(buf, format="PNG")
    flat = reencode(buf.getvalue(), EncodeOptions(format="jpeg"))
    with Image.open(io.BytesIO(flat.data)) as img:
        assert img.mode == "RGB"
        r, g, b = img.getpixel((1, 1))  # type: ignore[misc]
        assert min(r, g, b) > 240  # transparent became white, not black


def test_reencode_applies_exif_orientation() -> None:
    img = Image.new("RGB", (40, 20), (0, 128, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    out = reencode(buf.getvalue(), EncodeOptions(format="png"))
    with Image.open(io.BytesIO(out.data)) as shown:
        assert shown.size == (20, 40)


def test_reencode_rejects_broken_input_and_bad_options() -> None:
    with pytest.raises(EncodeError):
        reencode(b"\xff\xd8\xff not really", EncodeOptions(format="png"))
    with pytest.raises(ValueError):
        EncodeOptions(format="gif")
    with pytest.raises(ValueError):
        EncodeOptions(quality=0)
    with pytest.raises(ValueError):
        EncodeOptions(max_dim=0)


def test_encode_frame_and_renamed() -> None:
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    frame[:, :80] = (0, 0, 255)
    encoded = encode_frame(frame, EncodeOptions(format="png", max_dim=80))
    assert encoded.format is PNG
    with Image.open(io.BytesIO(encoded.data)) as img:
        assert img.size == (80, 60)
        assert img.getpixel((5, 5)) == (255, 0, 0)  # BGR red came out as RGB red
    assert renamed("a/cat.png", JPEG) == "a/cat.jpg"
    assert renamed("cat.jpeg", JPEG) == "cat.jpeg"
    assert renamed("cat", WEBP) == "cat.webp"


def test_samples_are_real_decodable_and_deterministic() -> None:
    first = sample_images(4, seed=3)
    again = sample_images(4, seed=3)
    assert [s.data for s in first] == [s.data for s in again]
    assert [s.kind for s in first] == ["photo", "drawing", "photo", "drawing"]
    assert first[0].name == f"{next(iter(PHOTOS))}.jpg"
    for sample in first:
        assert decode_problem(sample.data) is None
        assert sniff(sample.data) is not None and sniff(sample.data).content_type == sample.content_type  # type: ignore[union-attr]
    assert not np.array_equal(cartoon(1), cartoon(2))
    # Drawings are flat: few distinct colours compared with a photo.
    assert len(np.unique(cartoon(5).reshape(-1, 3), axis=0)) < 200


def test_describe_helpers() -> None:
    assert human_bytes(999) == "999 B" and human_bytes(1500) == "1.5 kB" and human_bytes(2_500_000) == "2.5 MB"
    reply = {"classification": {"results": [{"classifier": "colors", "answer": "animated", "confidence": 0.8},
                                            {"classifier": "animal", "error": "no weights"}]}}
    assert classification_answers(reply["classification"]) == ["colors: animated (80%)", "animal: error: no weights"]
