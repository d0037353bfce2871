"""The sender's still-image sources: files, folders (walked with glob filters) and stdin.

Everything the user named is checked before any connection is made, so a typo or a stray text file
fails at once with one clear line instead of half-way through a transfer.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from apps.media.formats import OCTET_STREAM, SIGNATURE_BYTES, ImageFormat, sniff


class SourceError(Exception):
    """An input the user gave cannot be sent (missing, empty, not an image, unreadable)."""


@dataclass(frozen=True)
class SourceItem:
    """Bytes ready to send."""

    name: str
    data: bytes
    content_type: str
    origin: str  # where it came from, for messages: a path, "stdin", "camera 0 frame 12"


@dataclass(frozen=True)
class PlannedFile:
    """A file that passed the checks; it is read only when its turn comes."""

    path: Path
    size: int
    format: ImageFormat | None  # None only when any file is allowed

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def content_type(self) -> str:
        if self.format is not None:
            return self.format.content_type
        return mimetypes.guess_type(self.path.name)[0] or OCTET_STREAM


def check_file(path: Path, *, allow_any: bool) -> PlannedFile:
    """Check one file: it exists, is a readable regular file, and is a non-empty image unless
    ``allow_any`` (then any file goes, an empty one too)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SourceError(f"{path}: not a regular file")
    if info.st_size == 0:
        if not allow_any:
            raise SourceError(f"{path}: empty file (0 bytes), not an image; --any-file sends it anyway")
        return PlannedFile(path, 0, None)  # an empty object is valid: copying tools send it too
    try:
        with path.open("rb") as handle:
            head = handle.read(SIGNATURE_BYTES)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    fmt = sniff(head)
    if fmt is None and not allow_any:
        raise SourceError(f"{path}: not an image (no known image signature); --any-file sends it anyway")
    return PlannedFile(path, info.st_size, fmt)


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    # Case-insensitive so that *.jpg also finds the .JPG files cameras write.
    name = relative.rsplit("/", 1)[-1].lower()
    rel = relative.lower()
    return any(fnmatch.fnmatchcase(name, p.lower()) or fnmatch.fnmatchcase(rel, p.lower()) for p in patterns)


def walk_folder(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    """Regular files under ``root``, sorted, hidden ones skipped, filtered by the glob patterns.

    A pattern matches either a file's name or its path relative to ``root``.
    """
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file_name in sorted(files):
            if file_name.startswith("."):
                continue
            path = Path(folder, file_name)
            relative = path.relative_to(root).as_posix()
            if include and not _matches(relative, include):
                continue
            if exclude and _matches(relative, exclude):
                continue
            found.append(path)
    return found


def plan_files(
    arguments: Sequence[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    allow_any: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> list[PlannedFile]:
    """Resolve files and folders into the files to send, in order, each once.

    A file named on the command line must pass every check (else SourceError); a file found while
    walking a folder that fails one is skipped with a warning, since folders hold other things too.
    """
    planned: list[PlannedFile] = []
    seen: set[Path] = set()

    def add(item: PlannedFile) -> None:
        key = item.path.resolve()
        if key not in seen:
            seen.add(key)
            planned.append(item)

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            candidates = walk_folder(path, include, exclude)
            if not candidates:
                warn(f"{path}: no files to send in this folder")
            for candidate in candidates:
                try:
                    add(check_file(candidate, allow_any=allow_any))
                except SourceError as exc:
                    warn(f"skipped {exc}")
        else:
            add(check_file(path, allow_any=allow_any))
    return planned


def read_planned(item: PlannedFile) -> SourceItem:
    """Read a planned file; SourceError if it vanished or emptied since it was checked."""
    try:
        data = item.path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{item.path}: cannot read ({exc.strerror or exc})") from None
    if not data and item.size:
        raise SourceError(f"{item.path}: became empty before it was sent")
    return SourceItem(item.name, data, item.content_type, str(item.path))


def read_stdin(stream: BinaryIO, *, name: str | None, allow_any: bool) -> SourceItem:
    """Read one image from a byte stream (stdin); named ``name`` or "stdin" plus the format's extension."""
    data = stream.read()
    if not data and not allow_any:
        raise SourceError("stdin: no data (0 bytes), not an image; --any-file sends it anyway")
    fmt = sniff(data[:SIGNATURE_BYTES])
    if fmt is None and not allow_any:
        raise SourceError("stdin: not an image (no known image signature); --any-file sends it anyway")
    if name is None:
        name = "stdin" + (fmt.extension if fmt else ".bin")
    content_type = fmt.content_type if fmt else (mimetypes.guess_type(name)[0] or OCTET_STREAM)
    return SourceItem(name, data, content_type, "stdin")
