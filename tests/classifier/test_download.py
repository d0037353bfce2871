"""Fetching weights (apps/classifier/animal/download.py) from a real HTTP server on loopback that
fails in the ways a network does: errors that pass, errors that don't, a wrong file, a stall."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from apps.classifier.animal.download import DownloadError, expected_hash_prefix, fetch

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: more than one read block
NAME = f"model-{hashlib.sha256(PAYLOAD).hexdigest()[:8]}.pth"

# Each request takes the next behaviour; the last one repeats.
Behaviour = Callable[[BaseHTTPRequestHandler], None]


def serve_file(data: bytes) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    return behave


def status(code: int) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler) -> None:
        handler.send_error(code)
    return behave


def cut_short(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(PAYLOAD)))
    handler.end_headers()
    handler.wfile.write(PAYLOAD[:1000])
    handler.close_connection = True


def stall(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(PAYLOAD)))
    handler.end_headers()
    handler.wfile.write(PAYLOAD[:1000])
    handler.wfile.flush()
    time.sleep(1.5)  # far past the client's read timeout


class Server:
    def __init__(self, behaviours: list[Behaviour]) -> None:
        self.behaviours = behaviours
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server calls it by this name
                index = min(outer.requests, len(outer.behaviours) - 1)
                outer.requests += 1
                outer.behaviours[index](self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{NAME}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def make_server() -> Iterator[Callable[[list[Behaviour]], Server]]:
    servers: list[Server] = []

    def make(behaviours: list[Behaviour]) -> Server:
        servers.append(Server(behaviours))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def no_wait(seconds: float) -> None:
    pass


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_hash_prefix_is_read_from_torchvisions_file_names() -> None:
    assert expected_hash_prefix("convnext_tiny-983f1562.pth") == "983f1562"
    assert expected_hash_prefix("weights.pth") is None


def test_transient_failures_are_tried_again(tmp_path: Path, make_server: Callable[[list[Behaviour]], Server]) -> None:
    server = make_server([status(503), cut_short, serve_file(PAYLOAD)])
    pauses: list[float] = []
    fetch(server.url, tmp_path / "hub" / NAME, attempts=3, sleep=pauses.append)
    assert (tmp_path / "hub" / NAME).read_bytes() == PAYLOAD
    assert server.requests == 3
    assert pauses == [2.0, 4.0]  # the pause doubles
    assert leftovers(tmp_path / "hub") == [NAME]


def test_gives_up_after_the_last_attempt(tmp_path: Path, make_server: Callable[[list[Behaviour]], Server]) -> None:
    server = make_server([status(502)])
    with pytest.raises(DownloadError, match=r"HTTP 502 .*after 3 tries"):
        fetch(server.url, tmp_path / NAME, attempts=3, sleep=no_wait)
    assert server.requests == 3
    assert leftovers(tmp_path) == []


def test_a_missing_file_is_not_asked_for_again(tmp_path: Path, make_server: Callable[[list[Behaviour]], Server]) -> None:
    server = make_server([status(404)])
    with pytest.raises(DownloadError, match=r"HTTP 404") as info:
        fetch(server.url, tmp_path / NAME, attempts=3, sleep=no_wait)
    assert "tries" not in str(info.value)
    assert server.requests == 1


def test_a_file_that_fails_its_hash_is_not_kept(tmp_path: Path, make_server: Callable[[list[Behaviour]], Server]) -> None:
    server = make_server([serve_file(PAYLOAD[:-1] + b"X")])
    with pytest.raises(DownloadError, match=r"not the one expected .*the name says"):
        fetch(server.url, tmp_path / NAME, attempts=3, sleep=no_wait)
    assert server.requests == 1  # the same URL would give the same wrong file
    assert leftovers(tmp_path) == []


def test_a_stalled_transfer_times_out(tmp_path: Path, make_server: Callable[[list[Behaviour]], Server]) -> None:
    server = make_server([stall, serve_file(PAYLOAD)])
    fetch(server.url, tmp_path / NAME, attempts=2, timeout=0.3, sleep=no_wait)
    assert (tmp_path / NAME).read_bytes() == PAYLOAD
    assert server.requests == 2


def test_nothing_listening(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(DownloadError, match=r"ConnectionRefusedError.*after 2 tries"):
        fetch(f"http://127.0.0.1:{port}/{NAME}", tmp_path / NAME, attempts=2, sleep=no_wait)
    assert leftovers(tmp_path) == []
