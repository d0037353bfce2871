"""What every result is recorded with: the machine, the software versions, the settings in force."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["machine_info"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _snip_version() -> str | None:
    """The installed package's version, else the checkout's pyproject.toml (a run from a checkout)."""
    installed = _version("snip")
    if installed is not None:
        return installed
    try:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        version = tomllib.loads(pyproject.read_text())["project"]["version"]
        return f"{version} (checkout)"
    except (OSError, KeyError, ValueError):
        return None


def _git_commit() -> str | None:
    """The checkout's commit, with "+changes" when protocol/, netsim/ or apps/ differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "protocol", "netsim", "apps"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if dirty else "")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, load, kernel, Python and package versions, and the host's TCP defaults."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "snip": _snip_version(),
        "git_commit": _git_commit(),
        "versions": {p: _version(p) for p in ("aiosmtpd", "aioquic", "matplotlib", "crc32c")},
        "host_tcp_congestion_control": _read("/proc/sys/net/ipv4/tcp_congestion_control"),
        "is_root": hasattr(os, "geteuid") and os.geteuid() == 0,
    }
