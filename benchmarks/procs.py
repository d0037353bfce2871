"""The runner's side of a worker process: JSON-line events with deadlines, and CPU time from /proc.

CPU time is read from /proc for the whole process tree under a worker (user + system time of
every live process, plus what each has collected from children it reaped), so a receiver's mail
server (Dovecot and its POP3 processes) counts as part of the email receiver. Taking it right
when timing starts and stops leaves out imports and set-up.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

__all__ = ["WorkerError", "WorkerProcess", "tree_cpu_seconds"]

JSON = dict[str, Any]
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class WorkerError(RuntimeError):
    """A worker exited, failed, or did not answer in time; the message says which and why."""


class WorkerProcess:
    """Wraps a started ``python -m benchmarks.worker`` process (stdin and stdout pipes)."""

    def __init__(self, role: str, proc: subprocess.Popen[str], log_path: Path | None = None) -> None:
        self.role = role
        self.proc = proc
        self.log_path = log_path
        self._events: queue.Queue[JSON | None] = queue.Queue()
        stdout = proc.stdout
        if stdout is None or proc.stdin is None:
            raise ValueError("the worker needs stdin and stdout pipes")
        self._reader = threading.Thread(target=self._read, args=(stdout,), daemon=True, name=f"bench-{role}")
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.strip()
            if not line.startswith("{"):
                continue  # stray output of a library; events are JSON objects
            try:
                self._events.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        self._events.put(None)

    def expect(self, event: str, timeout: float) -> JSON:
        """The next event; WorkerError if it is another one, an error, the end, or late."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"the {self.role} did not say {event!r} within {timeout:g} s{self._tail()}")
            try:
                got = self._events.get(timeout=left)
            except queue.Empty:
                continue
            if got is None:
                code = self.proc.poll()
                raise WorkerError(f"the {self.role} exited (status {code}) before {event!r}{self._tail()}")
            if got.get("event") == event:
                return got
            if got.get("event") == "error":
                raise WorkerError(f"the {self.role} failed: {got.get('error')}{self._tail()}")

    def tell(self, line: str) -> None:
        stdin = self.proc.stdin
        if stdin is None:
            return
        try:
            stdin.write(line + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def finish(self, timeout: float = 10.0) -> None:
        """Close stdin and wait; kill if it does not exit."""
        stdin = self.proc.stdin
        if stdin is not None:
            try:
                stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _tail(self) -> str:
        if self.log_path is None:
            return ""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        useful = [line for line in lines if line.strip()][-3:]
        return (": " + " | ".join(useful)) if useful else f" (see {self.log_path})"


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds incl. reaped children) of a process, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    # After the command name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    ppid = int(fields[1])
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ppid, ticks / _TICKS


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds used so far by the processes under ``roots`` (included)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            got = _stat(int(entry))
            if got is not None:
                stats[int(entry)] = got
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = 0.0
    todo = [pid for pid in roots if pid in stats]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total
