"""The fuzzer: mutations, delta debugging, campaigns in-process and live, reproducers, a planted bug."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.cli import main
from apps.conformance import wire
from apps.conformance.client import TestObject as Sent
from apps.conformance.context import Context, Options
from apps.conformance.fuzz.campaign import FuzzSettings, Reproducer, replay, run_campaign
from apps.conformance.fuzz.minimize import ddmin
from apps.conformance.fuzz.mutate import STRATEGIES, mutate
from apps.conformance.fuzz.rig import FUZZ_CASE, Anomaly, FuzzDatagram
from apps.conformance.fuzz_cli import FUZZ_CONFIG
from apps.conformance.sim_target import SimTarget
from apps.conformance.target import Addr
from apps.conformance.udp_target import UdpTarget
from protocol import codec, connection
from protocol.codec import Data
from protocol.errors import DecodeError
from protocol.events import ObjectReceived

FAST = Options(timeout=2.0, quiet=0.05)
SEEDS = [codec.encode(Data(3, 7, bytes(100)), 0x1122334455667788, 9), codec.encode(codec.Ping(), 0x1122334455667788, 10)]


def in_process() -> SimTarget:
    return SimTarget("receiver", config=FUZZ_CONFIG, seed=5)


# -- mutations and the minimiser -------------------------------------------------------------------


def test_mutations_are_seeded_and_structure_aware() -> None:
    first = [mutate(random.Random(9), SEEDS) for _ in range(50)]
    again = [mutate(random.Random(9), SEEDS) for _ in range(50)]
    assert first == again
    rng = random.Random(4)
    kinds: dict[str, int] = {}
    for _ in range(3000):
        data, _ = mutate(rng, SEEDS)
        assert isinstance(data, bytes)
        try:
            codec.decode(data)
            kinds["valid"] = kinds.get("valid", 0) + 1
        except DecodeError as exc:
            kinds[exc.reason] = kinds.get(exc.reason, 0) + 1
    # most mutations get past the checksum, to the parsers and the sessions
    assert kinds.get("checksum", 0) < 0.25 * 3000
    assert kinds["valid"] > 300 and kinds.get("malformed", 0) + kinds.get("truncated", 0) > 300


@pytest.mark.parametrize("name,strategy", [(n, f) for n, f, _ in STRATEGIES], ids=[n for n, _, _ in STRATEGIES])
def test_each_strategy(name: str, strategy: object) -> None:
    rng = random.Random(1)
    assert callable(strategy)
    outs = [strategy(rng, SEEDS[0], SEEDS[1]) for _ in range(40)]
    if name in ("flip-fixed", "boost", "type-swap", "splice", "random-framed", "semantic"):
        assert sum(wire.crc(d[:-4]) == d[-4:] for d in outs) > 30, "these recompute the CRC32C"
    if name == "flip":
        assert all(d != SEEDS[0] and wire.crc(d[:-4]) != d[-4:] for d in outs)
    if name == "replay":
        assert outs == [SEEDS[0]] * 40


def test_ddmin_finds_the_minimal_failing_subset() -> None:
    calls: list[int] = []

    def fails(items: list[int]) -> bool:
        calls.append(len(items))
        return {13, 71} <= set(items)

    assert ddmin(list(range(100)), fails) == [13, 71]
    assert len(calls) < 100
    assert ddmin(list(range(10)), lambda items: True) == []
    assert len(ddmin(list(range(64)), lambda items: 5 in items, max_tests=4)) < 64


# -- campaigns ---------------------------------------------------------------------------------------


def test_in_process_campaign_finds_nothing_and_the_transfer_completes() -> None:
    report = run_campaign(in_process, FuzzSettings(seed=2, count=4000, batch=200, options=FAST))
    assert report.reproducer is None, report.reproducer and report.reproducer.anomaly
    assert report.sent == 4000 and report.batches == 20
    assert report.legit_objects >= 3
    assert {"drop:checksum", "drop:malformed", "drop:unknown_session"} <= report.features
    assert any(f.startswith("victim:Close") for f in report.features), "hostile packets reach a session and abort it"


def test_live_campaign_finds_nothing(live_addr: tuple[str, int]) -> None:
    target = UdpTarget(*live_addr)
    try:
        report = run_campaign(lambda: target, FuzzSettings(seed=3, count=2000, batch=50, options=Options(timeout=1.0, quiet=0.1)))
    finally:
        target.close()
    assert report.reproducer is None, report.reproducer and report.reproducer.anomaly
    assert report.sent == 2000 and report.legit_objects >= 2


@pytest.fixture
def planted_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A bug to find: the endpoint raises on a chunk index of 2^31 - 1 or more."""
    original = connection.Connection._on_data

    def on_data(self: connection.Connection, packet: Data, pn: int, now: float) -> None:
        if packet.chunk_index >= 0x7FFFFFFF:
            raise OverflowError("planted: chunk index overflow")
        original(self, packet, pn, now)

    monkeypatch.setattr(connection.Connection, "_on_data", on_data)
    yield


def test_a_planted_bug_is_found_minimised_saved_and_replayed(planted_bug: None, tmp_path: Path) -> None:
    report = run_campaign(in_process, FuzzSettings(seed=11, count=20000, batch=200, options=FAST))
    rep = report.reproducer
    assert rep is not None and rep.anomaly.kind == "crash" and "planted" in rep.anomaly.detail
    assert rep.reproduced and len(rep.datagrams) == 1 and rep.original >= 100
    [culprit] = rep.datagrams
    packet = codec.decode(culprit.data).packet
    assert isinstance(packet, Data) and packet.chunk_index >= 0x7FFFFFFF
    path = tmp_path / "repro.json"
    rep.save(path)
    loaded = Reproducer.load(path)
    assert loaded.datagrams == rep.datagrams and loaded.anomaly == rep.anomaly
    again = replay(loaded.datagrams, in_process, loaded.seed, FAST)
    assert again is not None and again.kind == "crash"
    assert main(["fuzz", "--replay", str(path), "--in-process"]) == 1


def test_the_replay_of_a_fixed_bug_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same reproducer against the unpatched endpoint: nothing happens, exit 0."""
    culprit = FuzzDatagram(codec.encode(Data(0, 0x7FFFFFFF, b"\x00\x00"), 1, 6), "victim", "victim", True, "boost")
    rep = Reproducer(seed=11, anomaly=Anomaly("crash", "planted"), datagrams=[culprit], target="", reproduced=True, original=1)
    path = tmp_path / "r.json"
    rep.save(path)
    assert json.loads(path.read_text())["format"] == "snip-fuzz-reproducer/1"
    assert main(["fuzz", "--replay", str(path), "--in-process"]) == 0
    assert "no anomaly" in capsys.readouterr().out


def test_fuzz_cli_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--in-process", "--count", "1000", "--seed", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["datagrams_sent"] == 1000 and report["anomaly"] is None and report["seed"] == 4


def test_fuzz_cli_saves_the_reproducer(planted_bug: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "found.json"
    assert main(["fuzz", "--in-process", "--count", "20000", "--seed", "11", "--save", str(path)]) == 1
    out = capsys.readouterr().out
    assert "ANOMALY crash" in out and f"snip fuzz --replay {path} --in-process" in out
    assert len(Reproducer.load(path).datagrams) == 1


def test_the_harness_probes_when_the_targets_nacks_predate_its_lost_resend() -> None:
    """A resend and the PROBE behind it are lost; the receiver goes on reporting the chunk with a
    Largest PN from before them, which (R9.3-4) does not ask for another copy. The harness must
    probe anyway (R9.4-2), or both sides wait on each other until the timeout and the fuzzer reports
    a broken transfer that the receiver did nothing wrong in (seed 45107, 1090 objects in)."""
    target = in_process()
    client = Context(FUZZ_CASE, target, FAST).session()
    obj = Sent(bytes(range(256)) * 32, object_id=0)  # 8 chunks
    real_send_raw = client.send_raw
    copies_of_3 = 0
    drop_probe = False

    def lossy_send_raw(data: bytes, *, pn: int = -1, to: Addr | None = None) -> None:
        # The harness's own datagrams lost on the way: the receiver under test is the real one.
        nonlocal copies_of_3, drop_probe
        packet = codec.decode(data).packet
        lost = False
        if isinstance(packet, Data) and packet.chunk_index == 3 and copies_of_3 < 2:
            copies_of_3 += 1
            lost, drop_probe = True, copies_of_3 == 2
        elif isinstance(packet, codec.Probe) and drop_probe:
            lost, drop_probe = True, False
        if lost:
            client.sent.append((target.clock(), pn, data))  # recorded as sent, as send_raw does
        else:
            real_send_raw(data, pn=pn, to=to)

    client.send_raw = lossy_send_raw  # type: ignore[method-assign]
    outcome = client.transfer(obj)
    assert copies_of_3 == 2 and not drop_probe, "the resend and its PROBE were both dropped"
    assert outcome.kind == "complete", outcome
    assert [e.data for e in target.events() if isinstance(e, ObjectReceived)] == [obj.data]
