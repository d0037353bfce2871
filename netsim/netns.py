"""Network-namespace housekeeping for the TUN emulator: naming, creation, reaping, the watchdog.

Every namespace netsim creates is named ``snipns-<pid>-<start>-<random>-<side>``: the owner's pid
and its start time (clock ticks since boot, /proc/<pid>/stat field 22), so a namespace whose owner
is gone is recognised even after the pid is reused. Only names with this prefix are ever deleted.

A crashed owner (even SIGKILL) leaves nothing behind for long: the owner starts a watchdog
(``python -m netsim.netns watch NAME...``) in its own session, holding the read end of a pipe;
when the owner dies the pipe closes and the watchdog kills what runs in the namespaces and deletes
them. ``reap_stale()`` (run at every start and by ``snip netsim reap``) catches anything left.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = [
    "PREFIX",
    "NetnsError",
    "delete_namespace",
    "kill_namespace_processes",
    "list_namespaces",
    "make_names",
    "namespace_pids",
    "owner_alive",
    "reap_stale",
]

PREFIX = "snipns-"


class NetnsError(RuntimeError):
    """An `ip` command failed."""


def ip(*args: str, check: bool = True, timeout: float = 10.0) -> str:
    """Run ``ip ARGS`` and return its stdout; raise NetnsError with its stderr on failure."""
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise NetnsError("the 'ip' command (iproute2) is not installed") from None
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc.stdout


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot, None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


def make_names() -> tuple[str, str, str]:
    """(namespace A, namespace B, interface stem) for a new link owned by this process."""
    pid = os.getpid()
    tag = f"{pid}-{process_start_ticks(pid) or 0}-{secrets.token_hex(3)}"
    return f"{PREFIX}{tag}-a", f"{PREFIX}{tag}-b", f"snip{secrets.token_hex(4)}"


def parse_owner(name: str) -> tuple[int, int] | None:
    """(pid, start ticks) of the owner encoded in a netsim namespace name, None if not ours."""
    if not name.startswith(PREFIX):
        return None
    parts = name[len(PREFIX) :].split("-")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1])


def owner_alive(name: str) -> bool:
    """Whether the process that created namespace ``name`` still runs (True for foreign names)."""
    owner = parse_owner(name)
    if owner is None:
        return True
    pid, start = owner
    ticks = process_start_ticks(pid)
    return ticks is not None and (start == 0 or ticks == start)


def list_namespaces() -> list[str]:
    """All named network namespaces (``ip netns list``)."""
    out = ip("netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(name: str) -> list[int]:
    out = ip("netns", "pids", name, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def kill_namespace_processes(name: str, *, grace: float = 0.5) -> None:
    """SIGTERM everything running in the namespace, then SIGKILL what is left after ``grace``."""
    pids = namespace_pids(name)
    if not pids:
        return
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        pids = [p for p in pids if _exists(p)]
        if not pids:
            return
        time.sleep(0.02)
    for pid in namespace_pids(name):
        _signal(pid, signal.SIGKILL)


def delete_namespace(name: str) -> None:
    """Kill its processes and delete one of *our* namespaces; missing ones are fine."""
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to delete namespace {name!r}: not created by netsim")
    kill_namespace_processes(name)
    ip("netns", "delete", name, check=False)


def reap_stale() -> list[str]:
    """Delete netsim namespaces whose owner is dead; returns their names."""
    reaped = []
    for name in list_namespaces():
        if name.startswith(PREFIX) and not owner_alive(name):
            delete_namespace(name)
            reaped.append(name)
    return reaped


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_watchdog(names: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start the watchdog that deletes ``names`` once the returned process's stdin closes."""
    return subprocess.Popen(
        [sys.executable, "-m", "netsim.netns", "watch", *names],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the owner's terminal must not kill it before it cleans
        env=env,
    )


def _watch(names: Sequence[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    for name in names:
        if name.startswith(PREFIX):
            delete_namespace(name)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "watch":
        sys.exit(_watch(sys.argv[2:]))
    print("usage: python -m netsim.netns watch NAMESPACE...", file=sys.stderr)
    sys.exit(2)
