"""Receiver storage: safe names, unique names, temp+rename, stale clean-up, disk margin."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from apps.media.formats import JPEG, PNG
from apps.receiver.app import storage_name
from apps.receiver.storage import MAX_NAME_BYTES, TEMP_PREFIX, ImageStore, StorageError, numbered, safe_name


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../etc/passwd", "passwd.jpg"),
        ("/abs", "abs.jpg"),
        ("/etc/cron.d/evil.png", "evil.png"),
        ("a\x00b.jpg", "ab.jpg"),
        ("..\\..\\windows\\x.png", "x.png"),
        ("..", "image.jpg"),
        (".", "image.jpg"),
        ("", "image.jpg"),
        ("   ", "image.jpg"),
        (".bashrc", "bashrc.jpg"),
        ("dir/", "image.jpg"),
        ("con.jpg", "_con.jpg"),
        ("a:b*c?.png", "a_b_c_.png"),
        ("line\nbreak.jpg", "linebreak.jpg"),
        ("\u202egpj.exe", "gpj.exe"),
        ("photo.jpeg", "photo.jpeg"),
    ],
)
def test_safe_name(given: str, expected: str) -> None:
    assert safe_name(given, ".jpg") == expected


def test_safe_name_never_leaves_the_folder(tmp_path: Path) -> None:
    for hostile in ("../x", "../../../../tmp/x", "/tmp/x", "a/../../b", "\\\\server\\share\\x", "..\x00/x"):
        name = safe_name(hostile, ".jpg")
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_long_names_are_cut_on_character_boundaries_keeping_the_extension() -> None:
    ascii_name = safe_name("x" * 1000 + ".jpg")
    assert ascii_name.endswith(".jpg") and len(ascii_name.encode()) == MAX_NAME_BYTES
    wide = safe_name("é" * 300 + ".png")
    assert wide.endswith(".png") and len(wide.encode()) <= MAX_NAME_BYTES
    wide.encode().decode("utf-8")  # no half character left at the cut
    numbered_long = numbered(ascii_name, 123)
    assert numbered_long.endswith("-123.jpg") and len(numbered_long.encode()) <= MAX_NAME_BYTES


def test_storage_name_makes_the_extension_match_the_content() -> None:
    assert storage_name("cat.jpg", JPEG) == "cat.jpg"
    assert storage_name("cat.JPEG", JPEG) == "cat.JPEG"
    assert storage_name("cat", PNG) == "cat.png"
    assert storage_name("evil.exe", JPEG) == "evil.exe.jpg"
    assert storage_name("x.png", None) == "x.png"
    assert storage_name("noext", None) == "noext.bin"


def test_duplicates_get_numbered_and_never_overwrite(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    paths = [store.save("cat.jpg", bytes([i]) * 10) for i in range(3)]
    assert [p.name for p in paths] == ["cat.jpg", "cat-1.jpg", "cat-2.jpg"]
    assert [p.read_bytes() for p in paths] == [bytes([i]) * 10 for i in range(3)]
    (tmp_path / "dog.png").write_bytes(b"existing")
    assert store.save("dog.png", b"new").name == "dog-1.png"
    assert (tmp_path / "dog.png").read_bytes() == b"existing"


def test_concurrent_saves_get_distinct_names(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    saved: dict[int, Path] = {}

    def save(i: int) -> None:
        saved[i] = store.save("same.jpg", f"payload {i}".encode() * 100)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({p.name for p in saved.values()}) == 16
    for i, path in saved.items():
        assert path.read_bytes() == f"payload {i}".encode() * 100
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(tmp_path)

    def broken_link(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", broken_link)
    with pytest.raises(StorageError, match="disk full"):
        store.save("x.jpg", b"data")
    assert list(tmp_path.iterdir()) == []


def test_without_hard_links_the_fallback_still_refuses_to_overwrite(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    store = ImageStore(tmp_path)
    first, second = store.save("a.jpg", b"one"), store.save("a.jpg", b"two")
    assert (first.name, second.name) == ("a.jpg", "a-1.jpg")
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-1.jpg", "a.jpg"]


def test_disk_margin_refuses_before_writing(tmp_path: Path) -> None:
    store = ImageStore(tmp_path, min_free_bytes=1 << 62)
    with pytest.raises(StorageError, match="not enough disk space"):
        store.save("x.jpg", b"data")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_receivers_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / f"{TEMP_PREFIX}999999999-abc"
    mine = tmp_path / f"{TEMP_PREFIX}{os.getpid()}-def"
    dead.write_bytes(b"partial")
    mine.write_bytes(b"in progress")
    store = ImageStore(tmp_path)
    assert store.remove_stale() == [dead]
    assert not dead.exists() and mine.exists()


def test_unusable_output_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot create the output folder"):
        ImageStore(blocker / "sub")
