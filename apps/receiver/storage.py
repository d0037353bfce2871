"""Saving received images: safe names, no overwrites, and never a partial file under a real name.

Each image is written to a hidden temporary file in the output folder, flushed to disk, and then
hard-linked under its final name (link fails instead of overwriting, which makes picking a unique
name race-free even with several receivers on one folder), and the temporary name removed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path

# Longest file name written, in UTF-8 bytes (most filesystems allow 255).
MAX_NAME_BYTES = 200
# Temporary files are "<prefix><pid>-<random>": the pid lets a restart clean up after a crash
# without touching files of another receiver that is still running on the same folder.
TEMP_PREFIX = ".snip-partial-"
# Characters Windows forbids in names; replaced too, so received folders copy anywhere.
_RESERVED = re.compile(r'[<>:"|?*\\/]')
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                    *(f"lpt{i}" for i in range(1, 10))}


class StorageError(Exception):
    """The image cannot be stored (no space, output folder unusable)."""


def safe_name(name: str, extension: str = "") -> str:
    """A file name derived from the sender's ``name`` that stays inside the output folder.

    Only the last path component survives (both / and \\ separate); control characters go,
    reserved ones become "_", leading dots go (no hidden files, no "."/".."), and the result is
    cut to MAX_NAME_BYTES keeping the extension. ``extension`` (".jpg") is added when the name
    has none.
    """
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # controls, NUL, format chars
    name = _RESERVED.sub("_", name).strip(" .")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16 or not ext.isalnum():
        stem, ext = name, ""
    if not stem:
        stem = "image"
    if stem.split(".")[0].lower() in _WINDOWS_DEVICES:
        stem = "_" + stem
    ext = ("." + ext) if ext else extension
    return _fit(stem, ext)


def _fit(stem: str, ext: str, limit: int = MAX_NAME_BYTES) -> str:
    budget = limit - len(ext.encode())
    encoded = stem.encode()
    if len(encoded) > budget:
        # Cut on a character boundary: decode what fits, dropping a split trailing character.
        stem = encoded[:budget].decode("utf-8", errors="ignore").rstrip(". ")
    return (stem or "image") + ext


def numbered(name: str, number: int) -> str:
    """``name`` with "-N" before its extension, still within MAX_NAME_BYTES."""
    if number == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    else:
        ext = "." + ext
    return _fit(stem, f"-{number}{ext}")


class ImageStore:
    """The receiver's output folder."""

    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        self.root = root
        self.min_free_bytes = min_free_bytes
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the output folder {root}: {exc.strerror or exc}") from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise StorageError(f"the output folder {root} is not writable")

    def remove_stale(self) -> list[Path]:
        """Delete temporary files left by receivers that died mid-write; returns what was removed."""
        removed = []
        for path in self.root.glob(TEMP_PREFIX + "*"):
            pid_text = path.name[len(TEMP_PREFIX):].split("-", 1)[0]
            if pid_text.isdigit() and _alive(int(pid_text)):
                continue
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
        return removed

    def check_space(self, size: int) -> None:
        """StorageError when writing ``size`` bytes would leave less than the free-space margin."""
        free = shutil.disk_usage(self.root).free
        if free - size < self.min_free_bytes:
            raise StorageError(
                f"not enough disk space: {size} bytes would leave {max(0, free - size)} bytes free, "
                f"the margin is {self.min_free_bytes}"
            )

    def save(self, name: str, data: bytes) -> Path:
        """Store ``data`` under a unique name derived from ``name`` (already made safe); return the path."""
        self.check_space(len(data))
        fd, temp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=self.root)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)
            return self._publish(temp, name)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageError("disk full while writing the image") from None
            raise StorageError(f"cannot write to {self.root}: {exc.strerror or exc}") from None
        finally:
            temp.unlink(missing_ok=True)

    def _publish(self, temp: Path, name: str) -> Path:
        for number in range(100_000):
            final = self.root / numbered(name, number)
            try:
                os.link(temp, final)
                return final
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # No hard links here (some network or FAT filesystems): claim the name with an
                # exclusive create, then move the complete file over the empty placeholder.
                try:
                    os.close(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                except FileExistsError:
                    continue
                os.replace(temp, final)
                return final
        raise StorageError(f"no free name for {name} in {self.root}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
