"""Fetching a weights file: bounded in time, retried when the failure may pass, checked, atomic.

torch.hub's own download waits on a silent network without limit and gives up at the first reset
connection. Here every connect and read has a timeout, transient failures (timeouts, refused or
reset connections, HTTP 429 and 5xx) are tried again after a growing pause, and a permanent one (a
404, a bad hash) is reported at once. The file is written under a temporary name beside the target
and renamed only once complete and checked, so an interrupted fetch never leaves a file that looks
like the weights.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

DEFAULT_ATTEMPTS = 3
DEFAULT_TIMEOUT_S = 30.0  # per connect and per read, not for the whole file
DEFAULT_BACKOFF_S = 2.0  # pause before the second attempt; doubled before each later one
_BLOCK = 1 << 20
# torchvision (and torch.hub's check_hash) name a weights file "<name>-<first hex digits of its sha256>.<ext>".
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.")


class DownloadError(Exception):
    """The file could not be fetched; the message says why, in one line."""


def expected_hash_prefix(filename: str) -> str | None:
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    # http.client.HTTPException: the connection ended inside the body (IncompleteRead) and the like.
    return isinstance(exc, urllib.error.URLError | TimeoutError | ConnectionError | http.client.HTTPException)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _fetch_once(url: str, target: Path, timeout: float) -> None:
    want = expected_hash_prefix(target.name)
    digest = hashlib.sha256()
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            received = 0
            while block := response.read(_BLOCK):
                out.write(block)
                digest.update(block)
                received += len(block)
            # http.client ends a body cut short by a closed connection quietly when read in blocks.
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and received != int(length):
                raise http.client.IncompleteRead(b"", int(length) - received)
        if want is not None and not digest.hexdigest().startswith(want):
            raise DownloadError(f"the file from {url} is not the one expected (sha256 {digest.hexdigest()[:len(want)]}..., "
                                f"the name says {want}...)")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def fetch(
    url: str,
    target: Path,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    timeout: float = DEFAULT_TIMEOUT_S,
    backoff: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Download ``url`` to ``target``. Raises DownloadError, naming the last failure and the tries.
    ``backoff`` (default DEFAULT_BACKOFF_S) is the pause before the second try."""
    target.parent.mkdir(parents=True, exist_ok=True)
    pause = DEFAULT_BACKOFF_S if backoff is None else backoff
    for attempt in range(1, attempts + 1):
        try:
            _fetch_once(url, target, timeout)
            return
        except DownloadError:
            raise
        except (OSError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts, resets
            if not _transient(exc) or attempt == attempts:
                tries = f" (after {attempt} tries)" if attempt > 1 else ""
                raise DownloadError(f"{_describe(exc)}{tries}") from None
        sleep(pause)
        pause *= 2
