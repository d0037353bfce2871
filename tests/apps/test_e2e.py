"""End to end over real sockets: protocol.aio for snip, netsim's UDP relay for the bad link.

Skipped, with the reason, in a checkout that lacks either. Everything is on loopback and seeded.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.cli import CommandError
from tests.apps.conftest import blob_with_signature, free_udp_port, image_bytes, run_send, start_receiver

try:
    import protocol.aio  # noqa: F401
    from netsim.relay import UdpRelay
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the checkout
    pytest.skip(f"needs protocol.aio and netsim.relay ({exc})", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]


def _within(seconds: float, coro: Any) -> Any:
    """Run ``coro``, failing (not hanging) when it takes longer than ``seconds``."""
    return asyncio.run(asyncio.wait_for(coro, seconds))


def _sizes(count: int, seed: int) -> list[int]:
    """1 KB and 5 MB, and the rest log-uniform from 1 KB to 500 KB (about 10 MB in all)."""
    rng = np.random.default_rng(seed)
    inner = np.exp(rng.uniform(math.log(1_000), math.log(500_000), size=count - 2)).astype(int)
    return [1_000, 5_000_000, *(int(s) for s in inner)]


# The protocol's own rate control, and a fixed rate that takes rate control out of the picture.
@pytest.mark.parametrize("rate", [None, "fixed:50mbit"])
def test_fifty_images_through_a_lossy_jittery_link(tmp_path: Path, rate: str | None) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sizes = _sizes(50, seed=4)
    digests = {}
    for i, size in enumerate(sizes):
        data = blob_with_signature(100 + i, size)
        (src / f"img{i:02d}.jpg").write_bytes(data)
        digests[f"img{i:02d}.jpg"] = hashlib.sha256(data).hexdigest()
    rate_args = ["--rate", rate] if rate else []

    async def scenario() -> tuple[int, str, str, dict[str, Any], str]:
        receiver = await start_receiver(tmp_path / "out", *rate_args)
        async with UdpRelay("127.0.0.1:0", receiver.address, "loss=10% delay=5ms jitter=5ms", seed=7) as relay:
            target = f"{relay.listen_addr[0]}:{relay.listen_addr[1]}"
            code, out, err = await run_send(target, str(src), "--json", *rate_args)
            link = relay.stats()["link"]
        await receiver.finish()
        return code, out, err, link, receiver.stdout.getvalue()

    code, out, err, link, log = _within(90, scenario())
    assert code == 0, err
    doc = json.loads(out)
    rows = doc["images"]
    assert len(rows) == 50
    for row in rows:
        assert row["delivered"] and row["answered"], row
        assert row["reply"]["sha256"] == digests[row["name"]]  # the reply belongs to this image
        assert hashlib.sha256(Path(row["reply"]["saved"]).read_bytes()).hexdigest() == digests[row["name"]]
        assert row["chunks"] == math.ceil(row["size"] / 1024)
        assert row["chunks_sent"] >= row["chunks"]
    totals = doc["totals"]
    assert totals["bytes"] == sum(sizes)
    assert totals["chunks"] == sum(row["chunks"] for row in rows)
    assert totals["chunks_sent"] == sum(row["chunks_sent"] for row in rows)
    # The link really lost about 10% each way, and snip repaired it all.
    for direction in ("fwd", "rev"):
        assert 0.07 < link[direction]["dropped"] / link[direction]["sent"] < 0.13
    # Losses are repaired by retransmission or ahead of time by REPAIRs (spec 9.6).
    assert totals["retransmitted"] + totals["repairs"] >= link["fwd"]["dropped_by_cause"]["loss"] * 0.5
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(digests)
    assert "total: 50 images" in log


def test_twenty_senders_over_real_sockets(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for s in range(20):
        for k in range(2):
            (src / f"s{s:02d}-{k}.jpg").write_bytes(image_bytes(s * 10 + k, size=96))

    async def scenario() -> list[int]:
        receiver = await start_receiver(tmp_path / "out")
        results = await asyncio.gather(*(
            run_send(receiver.address, str(src / f"s{s:02d}-0.jpg"), str(src / f"s{s:02d}-1.jpg")) for s in range(20)
        ))
        await receiver.finish()
        return [code for code, _, _ in results]

    assert _within(60, scenario()) == [0] * 20
    stored = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert stored == {p.name: p.read_bytes() for p in src.iterdir()}


def test_ipv6_receiver(tmp_path: Path) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
            port = int(probe.getsockname()[1])
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here ({exc})")
    (tmp_path / "a.jpg").write_bytes(image_bytes(11))

    async def scenario() -> tuple[int, str, str]:
        from apps.receiver.cli import receive_command
        from tests.apps.conftest import parse

        stop = asyncio.Event()
        args = parse("receive", "--listen", f"[::1]:{port}", "--out", str(tmp_path / "out"))
        receiving = asyncio.create_task(receive_command(args, stop=stop, stdout=io.StringIO(), stderr=io.StringIO()))
        await asyncio.sleep(0.3)
        code, out, err = await run_send(f"[::1]:{port}", str(tmp_path / "a.jpg"))
        stop.set()
        await receiving
        return code, out, err

    code, out, err = _within(30, scenario())
    assert code == 0, err
    assert (tmp_path / "out" / "a.jpg").read_bytes() == image_bytes(11)
    assert "[::1]" in out


def test_unreachable_receivers(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(image_bytes(1))

    async def nothing_listening() -> None:
        await run_send(f"127.0.0.1:{free_udp_port()}", str(tmp_path / "a.jpg"), "--connect-timeout", "5")

    async def black_hole() -> None:
        async with UdpRelay("127.0.0.1:0", f"127.0.0.1:{free_udp_port()}", "loss=100%", seed=1) as relay:
            await run_send(f"127.0.0.1:{relay.listen_addr[1]}", str(tmp_path / "a.jpg"), "--connect-timeout", "1")

    for scenario in (nothing_listening, black_hole):
        started = time.monotonic()
        with pytest.raises(CommandError) as caught:
            _within(20, scenario())
        assert caught.value.exit_code == 1
        assert "no snip receiver answered" in str(caught.value)
        assert time.monotonic() - started < 6


def test_a_receiver_that_refuses_the_session_is_not_reported_as_silent(tmp_path: Path) -> None:
    # A receiver that answers every INITIAL with CLOSE SERVER_BUSY (spec 7.3), as a full one does:
    # the sender says it was refused, not that nothing answered.
    from protocol import codec
    from protocol.constants import ErrorCode

    (tmp_path / "a.jpg").write_bytes(image_bytes(1))

    class Busy(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            initial_id = codec.decode(data).session_id
            refusal = codec.encode(codec.Close(ErrorCode.SERVER_BUSY, "too many sessions"), initial_id, 0)
            self.transport.sendto(refusal, addr)  # type: ignore[attr-defined]

    async def scenario() -> None:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Busy, local_addr=("127.0.0.1", 0))
        try:
            port = transport.get_extra_info("sockname")[1]
            await run_send(f"127.0.0.1:{port}", str(tmp_path / "a.jpg"), "--connect-timeout", "5")
        finally:
            transport.close()

    with pytest.raises(CommandError) as caught:
        _within(20, scenario())
    assert caught.value.exit_code == 1
    assert "refused the session (SERVER_BUSY): too many sessions" in str(caught.value)


def test_an_empty_file_goes_with_any_file_over_real_sockets(tmp_path: Path) -> None:
    # An object of no chunks (spec 8.1): announced, verified against the digest of nothing, stored
    # as an empty file and answered, between two files that have chunks.
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "a.jpg").write_bytes(image_bytes(4))
    (tmp_path / "notes.txt").write_bytes(b"x" * 3000)

    async def scenario() -> tuple[int, str, str]:
        receiver = await start_receiver(tmp_path / "out")
        result = await run_send(receiver.address, str(tmp_path / "a.jpg"), str(tmp_path / "empty.bin"),
                                str(tmp_path / "notes.txt"), "--any-file")
        await receiver.finish()
        return result

    code, out, err = _within(30, scenario())
    assert code == 0, err
    stored = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert stored == {"a.jpg": image_bytes(4), "empty.bin": b"", "notes.txt": b"x" * 3000}
    assert "3/3 delivered, 3 answered" in out


def test_image_above_the_receivers_limit_over_real_sockets(tmp_path: Path) -> None:
    (tmp_path / "big.jpg").write_bytes(blob_with_signature(5, 200_000))

    async def scenario() -> tuple[int, str]:
        receiver = await start_receiver(tmp_path / "out", "--max-size", "100K")
        code, _, err = await run_send(receiver.address, str(tmp_path / "big.jpg"))
        await receiver.finish()
        return code, err

    code, err = _within(30, scenario())
    assert code == 1 and "too large for the receiver" in err
    assert list((tmp_path / "out").iterdir()) == []


def _spawn_receiver(out: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """`snip receive` as a real process; returns it and the address it listens on."""
    port = free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.cli", "receive", "--listen", f"127.0.0.1:{port}", "--out", str(out), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening on" in line, line + proc.stderr.read()
    return proc, f"127.0.0.1:{port}"


@pytest.mark.parametrize("grace", ["0.1", "10"])
def test_receiver_stopped_mid_transfer(tmp_path: Path, grace: str) -> None:
    """SIGTERM with a short grace abandons the transfer (sender told, no file); a long one finishes it."""
    image = tmp_path / "big.jpg"
    image.write_bytes(blob_with_signature(6, 600_000))  # about 1.2 s at 4 Mbit/s
    proc, address = _spawn_receiver(tmp_path / "out", "--grace", grace)

    async def scenario() -> tuple[int, str]:
        async with UdpRelay("127.0.0.1:0", address, "rate=4mbit", seed=2) as relay:
            sending = asyncio.create_task(run_send(f"127.0.0.1:{relay.listen_addr[1]}", str(image)))
            await asyncio.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            code, _, err = await sending
        return code, err

    try:
        code, err = _within(60, scenario())
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    saved = list((tmp_path / "out").iterdir())
    if grace == "0.1":
        assert code == 1 and "connection lost" in err
        assert saved == []  # no partial file, not even a hidden temporary one
    else:
        assert code == 0, err
        assert [p.read_bytes() for p in saved] == [image.read_bytes()]


def test_sender_killed_mid_transfer_frees_the_transfer(tmp_path: Path) -> None:
    from apps.receiver.app import ReceiverApp, ReceiverOptions
    from apps.receiver.storage import ImageStore
    from apps.transports.snip import SnipReceiver, session_config

    image = tmp_path / "big.jpg"
    image.write_bytes(blob_with_signature(7, 2_000_000))  # 4 s at 4 Mbit/s

    async def scenario() -> tuple[int, int, int]:
        app = ReceiverApp(ImageStore(tmp_path / "out"), ReceiverOptions(), log=lambda line: None)
        receiver = SnipReceiver("127.0.0.1", 0, config=session_config(idle_timeout=1.0), grace=0)
        stop = asyncio.Event()
        serving = asyncio.create_task(receiver.serve(app.handle, stop))
        address = await receiver.wait_listening()
        server: Any = receiver.server
        async with UdpRelay("127.0.0.1:0", address, "rate=4mbit", seed=3) as relay:
            sender = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "apps.cli", "send", f"127.0.0.1:{relay.listen_addr[1]}", str(image),
                cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
            for _ in range(200):  # wait until the transfer is under way
                if server.incoming_in_progress():
                    break
                await asyncio.sleep(0.05)
            during = server.incoming_in_progress()
            sender.kill()
            await sender.wait()
            for _ in range(100):  # the idle timeout (1 s) frees it
                if not server.incoming_in_progress():
                    break
                await asyncio.sleep(0.05)
            after = server.incoming_in_progress()
        stop.set()
        await serving
        return during, after, app.totals.images

    during, after, images = _within(60, scenario())
    assert during == 1 and after == 0 and images == 0
    assert list((tmp_path / "out").iterdir()) == []


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "apps.cli", "demo", "--images", "4", "--classify", "none", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "4/4 delivered" in result.stdout and "relay:" in result.stdout
    assert len(list(tmp_path.iterdir())) == 4


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = await start_receiver(tmp_path / "one")
        try:
            await start_receiver(tmp_path / "two", port=int(first.address.rsplit(":", 1)[1]))
        finally:
            await first.finish()

    with pytest.raises(CommandError) as caught:
        _within(30, scenario())
    assert caught.value.exit_code == 1 and "cannot listen" in str(caught.value)


def test_apps_bench_runs() -> None:
    from benchmarks.apps_bench import run_apps_bench

    figures = run_apps_bench("snip", large_mb=0.5, small_count=10, small_kb=5)
    assert figures["large"]["images"] == 1 and figures["small"]["images"] == 10
    assert figures["large"]["goodput_mbps"] > 0 and figures["small"]["cpu_ms_per_image"] > 0


@pytest.mark.parametrize("reconnect_for", ["30", "0"])
def test_an_outage_longer_than_the_idle_timeout(tmp_path: Path, reconnect_for: str) -> None:
    """Both directions down for 2.6 s with a 1 s idle timeout: the session dies mid-transfer.

    With reconnecting on (the default), the sender opens a new session once the link is back and
    sends what was left; every image arrives once and is answered. With --reconnect-for 0 the
    images in flight fail, as they did before reconnecting existed.
    """
    src = tmp_path / "src"
    src.mkdir()
    digests = {}
    for i in range(3):
        data = blob_with_signature(40 + i, 200_000)
        (src / f"img{i}.jpg").write_bytes(data)
        digests[f"img{i}.jpg"] = hashlib.sha256(data).hexdigest()

    async def scenario() -> tuple[int, str, str]:
        receiver = await start_receiver(tmp_path / "out", "--idle-timeout", "1")
        # 600 KB at 4 Mbit/s take about 1.2 s: the outage at 0.4 s catches the transfer under way.
        async with UdpRelay("127.0.0.1:0", receiver.address, "rate=4mbit blackout=400ms-3s", seed=5) as relay:
            code, out, err = await run_send(
                f"127.0.0.1:{relay.listen_addr[1]}", str(src), "--json", "--idle-timeout", "1",
                "--connect-timeout", "1", "--reconnect-for", reconnect_for,
            )
        await receiver.finish()
        return code, out, err

    code, out, err = _within(60, scenario())
    assert "Traceback" not in err
    rows = json.loads(out)["images"]
    if reconnect_for == "0":
        assert code == 1 and "connection lost" in err and "reopen" not in err
        assert not all(row["delivered"] for row in rows)
        return
    assert code == 0, err
    assert "went silent" in err and "session to" in err and "reopened" in err
    assert json.loads(out)["session"]["sessions"] == 2
    assert sorted(row["name"] for row in rows) == sorted(digests)
    for row in rows:
        assert row["delivered"] and row["answered"], row
        assert row["reply"]["sha256"] == digests[row["name"]]
    assert max(row["time_s"] for row in rows) > 2.6  # an image's time counts from its first try
    # An image the outage caught counts the chunks of both its sessions: the first sent part of
    # it (or none, for one still waiting its turn), the second all of it.
    resent = [row for row in rows if row["sessions"] == 2]
    assert all(row["chunks_sent"] >= row["chunks"] for row in rows)
    assert any(row["chunks_sent"] > row["chunks"] for row in resent), rows
    saved = sorted((tmp_path / "out").iterdir())
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in saved] == [digests[p.name] for p in saved]
    assert len(saved) == 3  # none stored twice


def test_an_image_kept_before_a_return_outage_is_answered_again_not_stored_twice(tmp_path: Path) -> None:
    """Only the return direction goes down, after the handshake's ACCEPT but before the receiver
    has the image: the receiver keeps it, but its COMPLETE and reply are lost and the sender's
    session dies. The sender sends it again on a new session; the receiver recognises the bytes and
    answers with the first copy's receipt.

    Timeline: the ACCEPT enters the 500 ms return path within a few ms, before the outage begins at
    250 ms; the image leaves once the ACCEPT arrives (about 500 ms), so its COMPLETE and reply meet
    the outage, which lasts past the 1 s idle timeout."""
    import apps.sender.cli  # noqa: F401  (imported now, so the sender starts at once below)

    data = blob_with_signature(50, 60_000)
    (tmp_path / "a.jpg").write_bytes(data)

    async def scenario() -> tuple[int, str, str, str]:
        receiver = await start_receiver(tmp_path / "out", "--idle-timeout", "1", "--json")
        async with UdpRelay("127.0.0.1:0", receiver.address, "rev.delay=500ms rev.blackout=250ms-3500ms",
                            seed=6) as relay:
            code, out, err = await run_send(
                f"127.0.0.1:{relay.listen_addr[1]}", str(tmp_path / "a.jpg"), "--json", "--idle-timeout", "1",
                "--connect-timeout", "1", "--rate", "fixed:50mbit",
            )
        await receiver.finish()
        return code, out, err, receiver.stdout.getvalue()

    code, out, err, log = _within(60, scenario())
    assert code == 0, err
    [row] = json.loads(out)["images"]
    assert row["delivered"] and row["answered"] and row["reply"]["repeat"] is True, row
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    images = [r for r in records if "sha256" in r]
    assert [r.get("repeat", False) for r in images] == [False, True]
    assert images[0]["saved"] == images[1]["saved"] == row["reply"]["saved"]
    assert [p.read_bytes() for p in (tmp_path / "out").iterdir()] == [data]
    totals = records[-1]["totals"]
    assert (totals["images"], totals["repeats"]) == (1, 1)


def test_an_image_the_protocol_cannot_describe_fails_alone_over_real_sockets() -> None:
    """A content type snip cannot carry (it has a space) fails that image; the session goes on."""
    from apps.transport import OutgoingImage
    from apps.transports.snip import SnipReceiver, SnipSender
    from tests.baselines.conftest import DigestHandler, aiter_images, serving

    images = [OutgoingImage("a.jpg", "image/jpeg", image_bytes(1)),
              OutgoingImage("b.jpg", "image/jpeg; q=1", image_bytes(2)),
              OutgoingImage("c.jpg", "image/jpeg", image_bytes(3))]

    async def scenario() -> list[Any]:
        receiver = SnipReceiver("127.0.0.1", 0)
        async with serving(receiver, DigestHandler()):
            host, port = (await receiver.wait_listening()).rsplit(":", 1)
            return await SnipSender(host, int(port)).send_all(aiter_images(images), want_reply=True)

    outcomes = sorted(_within(30, scenario()), key=lambda o: o.index)
    assert [o.delivered for o in outcomes] == [True, False, True]
    assert outcomes[1].error is not None and outcomes[1].error.startswith("not sent: content type")
    assert outcomes[2].reply is not None and outcomes[2].reply["name"] == "c.jpg"
