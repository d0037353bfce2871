"""The fuzzing rig: three sessions on one target, the routing of fuzz datagrams, and the checks.

- *legit*: a session carrying a real transfer. Only datagrams the target must drop reach it, and
  exact duplicates of its own datagrams; whatever else happens, its objects must complete, bit
  for bit, and its PINGs must be answered.
- *victim*: a session that takes the well-formed hostile datagrams. It may die; it is replaced.
- *stranger*: a socket with no session. Nothing it sends may draw an answer, unless it is an
  INITIAL (a new handshake) or belongs to a session that INITIAL created.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from protocol import codec
from protocol.codec import Accept, Close, Initial
from protocol.errors import DecodeError
from protocol.events import ObjectReceived

from .. import wire
from ..client import Client, TestObject
from ..context import Context, Options
from ..model import Case, CaseFailed
from ..peer import Rx
from ..sim_target import SimTarget
from ..target import Target, TargetCrashed

Route = Literal["legit", "victim", "stranger"]
Slot = Literal["legit", "victim", "raw"]
ROUTES: dict[object, Route] = {"legit": "legit", "victim": "victim", "stranger": "stranger"}
SLOTS: dict[object, Slot] = {"legit": "legit", "victim": "victim", "raw": "raw"}

FUZZ_CASE = Case(
    id="fuzz",
    section="4.2",
    label="R4.2-10",
    text="Malformed input MUST NOT make an endpoint fail, stop processing other datagrams, or allocate memory beyond "
    "the limits of section 11.3.",
    role="receiver",
    level="MUST",
    title="fuzz",
    func=lambda ctx: None,
)


@dataclass(frozen=True)
class FuzzDatagram:
    """One fuzz datagram: its bytes, which socket sends it, and how to re-target it on replay.

    ``slot`` says whose session id the datagram carries (rewritten to the new session's on replay),
    ``crc_ok`` whether its CRC32C was right (recomputed after the rewrite).
    """

    data: bytes
    route: Route
    slot: Slot
    crc_ok: bool
    strategy: str = ""

    def to_json(self) -> dict[str, object]:
        return {"route": self.route, "slot": self.slot, "crc_ok": self.crc_ok, "strategy": self.strategy, "hex": self.data.hex()}

    @classmethod
    def from_json(cls, item: dict[str, object]) -> FuzzDatagram:
        route, slot = item["route"], item["slot"]
        if route not in ROUTES or slot not in SLOTS:
            raise ValueError(f"bad route/slot {route!r}/{slot!r}")
        return cls(bytes.fromhex(str(item["hex"])), ROUTES[route], SLOTS[slot], bool(item["crc_ok"]), str(item.get("strategy", "")))


@dataclass(frozen=True)
class Anomaly:
    kind: str  # crash | unresponsive | legit-broken | stray-answer | malformed-output
    detail: str


def _crc_ok(data: bytes) -> bool:
    return len(data) >= 4 and wire.crc(data[:-4]) == data[-4:]


def _sid(data: bytes) -> int | None:
    return int.from_bytes(data[4:12], "big") if len(data) >= 12 else None


def _with_sid(data: bytes, sid: int, fix: bool) -> bytes:
    out = data[:4] + sid.to_bytes(8, "big") + data[12:]
    return wire.fix_crc(out) if fix else out


@dataclass
class LegitStream:
    """The legitimate transfer: one object after another, a few chunks per batch."""

    rng: random.Random
    obj: TestObject | None = None
    next_chunk: int = 0
    next_id: int = 0
    completed: int = 0
    completed_bytes: int = 0
    pending: list[TestObject] = field(default_factory=list)

    def new_object(self) -> TestObject:
        size = self.rng.randrange(1, 48 * 1024)
        obj = TestObject(self.rng.randbytes(size), object_id=self.next_id, name=f"legit-{self.next_id}.bin")
        self.next_id += 1
        return obj


class Rig:
    """Sessions on one target, and the checks run after every batch (see the module docstring)."""

    def __init__(self, target: Target, seed: int, options: Options) -> None:
        self.target = target
        self.ctx = Context(FUZZ_CASE, target, options)
        self.rng = random.Random(seed)
        self.legit = self.ctx.session()
        self.victim = self.ctx.session()
        self.stranger = self.ctx.client()
        self.stream = LegitStream(random.Random(seed + 1))
        self.stranger_ids: set[int] = set()
        self.features: set[str] = set()
        self._legit_sent: set[bytes] = set()
        self._drops_seen: dict[str, int] = {}
        self._victim_closed = False

    # -- the legitimate transfer ---------------------------------------------------------------------

    def _legit_send(self, packet: codec.Packet) -> None:
        self.legit.send(packet)
        self._legit_sent.add(self.legit.sent[-1][2])

    def advance(self, chunks: int) -> None:
        """Send the next ``chunks`` chunks of the legitimate transfer (ANNOUNCE first)."""
        stream = self.stream
        for _ in range(chunks):
            if stream.obj is None:
                stream.obj = stream.new_object()
                stream.next_chunk = 0
                self._legit_send(stream.obj.announce())
            obj = stream.obj
            if stream.next_chunk < obj.count:
                self._legit_send(codec.Data(obj.object_id, stream.next_chunk, obj.chunk(stream.next_chunk)))
                stream.next_chunk += 1

    def finish_object(self) -> Anomaly | None:
        """PROBE and repair the current object until COMPLETE; then check it arrived bit for bit."""
        obj = self.stream.obj
        if obj is None:
            return None
        self.stream.obj = None
        outcome = self.legit.transfer(obj, send=False)
        if outcome.kind != "complete":
            return Anomaly("legit-broken", f"legitimate object {obj.object_id} ({len(obj.data)} bytes): {outcome}")
        if isinstance(self.target, SimTarget):
            got = [
                e.data for e in self.target.events()
                if isinstance(e, ObjectReceived) and e.session_id == self.legit.session_id and e.object_id == obj.object_id
            ]
            if got != [obj.data]:
                return Anomaly("legit-broken", f"legitimate object {obj.object_id} delivered wrong ({len(got)} deliveries)")
        self.stream.completed += 1
        self.stream.completed_bytes += len(obj.data)
        return None

    @property
    def object_fully_sent(self) -> bool:
        obj = self.stream.obj
        return obj is not None and self.stream.next_chunk >= obj.count

    # -- routing ----------------------------------------------------------------------------------

    def seeds(self) -> list[bytes]:
        """Valid datagrams of every type, carrying the legit session's id, to mutate from."""
        sid = self.legit.session_id
        obj = TestObject(bytes(range(256)) * 8, object_id=1)
        packets: list[codec.Packet] = [
            obj.announce(),
            codec.Data(1, 0, obj.chunk(0)),
            codec.Nack(0, ((1, 2), (5, 1)), largest_pn=3),
            codec.Nack(0, ((1, 1), (3, 1), (5, 1), (7, 1)), largest_pn=3),
            codec.Nack(0, (), announce_missing=True),
            codec.Ack(2, 100, 3000, 3, 64, 1 << 20),
            codec.Complete(0),
            codec.Cancel(1, 1, 6, "bye"),
            codec.Cancel(0, 0, 8, ""),
            codec.Probe(1, 2),
            codec.Ping(),
            codec.Close(0, ""),
            codec.Retry(bytes(20)),
            codec.Accept(self.rng.getrandbits(64) or 1),
            codec.VersionNegotiation((1,)),
        ]
        seeds = [codec.encode(p, sid, 5 + i) for i, p in enumerate(packets)]
        seeds.append(codec.encode(Initial(), sid, 0))
        return seeds + [d for _, _, d in self.legit.sent[-40:]]

    def route(self, data: bytes, strategy: str) -> FuzzDatagram:
        """Which socket sends ``data``: the legit session only ever gets what it must shrug off."""
        legit, victim = self.legit.session_id, self.victim.session_id
        sid = _sid(data)
        slot: Slot = "legit" if sid == legit else "victim" if sid == victim else "raw"
        crc_ok = _crc_ok(data)
        try:
            codec.decode(data)
        except DecodeError:
            route: Route = self.rng.choices(("legit", "victim", "stranger"), (6, 2, 2))[0]
            return FuzzDatagram(data, route, slot, crc_ok, strategy)
        if data in self._legit_sent and self.rng.random() < 0.7:
            return FuzzDatagram(data, "legit", slot, crc_ok, strategy)  # an exact duplicate (R4.2-11)
        if slot == "legit" and self.rng.random() < 0.6:
            # well-formed and hostile: aimed at the victim session instead
            return FuzzDatagram(_with_sid(data, victim, crc_ok), "victim", "victim", crc_ok, strategy)
        route = "stranger" if slot != "raw" else self.rng.choice(("victim", "stranger"))
        return FuzzDatagram(data, route, slot, crc_ok, strategy)

    def retarget(self, d: FuzzDatagram) -> bytes:
        """The datagram with the session id of this rig's session in its slot (for replays)."""
        if d.slot == "raw" or len(d.data) < 12:
            return d.data
        sid = self.legit.session_id if d.slot == "legit" else self.victim.session_id
        return _with_sid(d.data, sid, d.crc_ok)

    def send(self, d: FuzzDatagram, data: bytes | None = None) -> None:
        data = d.data if data is None else data
        if d.route == "stranger" and len(data) >= 4 and data[3] == 0x01:
            sid = _sid(data)
            if sid is not None:
                self.stranger_ids.add(sid)  # its answers are allowed: a handshake of the stranger's own
        peer: Client = {"legit": self.legit, "victim": self.victim, "stranger": self.stranger}[d.route]
        if d.route == "victim" and len(data) > 3 and data[3] == 0x21 and _sid(data) == self.victim.session_id and _crc_ok(data):
            self._victim_closed = True  # a CLOSE of its own may have ended it: no need to ask
        peer.send_raw(data)

    # -- checks -----------------------------------------------------------------------------------

    def _stray(self) -> Anomaly | None:
        for rx in self.stranger.collect(0.0):
            decoded = rx.decoded
            if decoded is None:
                continue
            self.features.add(f"stranger:{type(decoded.packet).__name__}")
            if decoded.session_id in self.stranger_ids:
                if isinstance(decoded.packet, Accept):
                    self.stranger_ids.add(decoded.packet.session_id)
                continue
            return Anomaly("stray-answer", f"the target answered a datagram it must drop (R4.2-7, R4.2-8): {rx}")
        return None

    def _learn(self, rxs: list[Rx], who: str) -> None:
        for rx in rxs:
            packet = rx.packet
            name = type(packet).__name__ if packet is not None else "undecodable"
            code = getattr(packet, "error_code", None)
            self.features.add(f"{who}:{name}" + (f":{code}" if code is not None else ""))

    def _sim_features(self) -> None:
        if isinstance(self.target, SimTarget):
            for key, count in self.target.endpoint.drops.items():
                if count > self._drops_seen.get(key, 0):
                    self.features.add(f"drop:{key}")
                    self._drops_seen[key] = count

    def check(self) -> Anomaly | None:
        """After a batch: the legit session answers, the stranger heard nothing, the output is valid."""
        try:
            self.legit.alive("the legitimate session after a batch of fuzz")
        except CaseFailed as failure:
            try:
                self.ctx.client().establish()
            except CaseFailed:
                return Anomaly("unresponsive", f"no answer to PINGs nor to a fresh handshake ({failure.got})")
            return Anomaly("legit-broken", f"the legitimate session stopped answering ({failure.got})")
        self._learn(self.legit.inbox, "legit")
        # keep what a transfer may still want (its COMPLETE, NACKs); forget the rest
        self.legit.inbox = [rx for rx in self.legit.inbox if not isinstance(rx.packet, codec.Ack | codec.Ping)][-200:]
        anomaly = self._stray()
        if anomaly is not None:
            return anomaly
        if self.ctx.violations:
            return Anomaly("malformed-output", "; ".join(self.ctx.violations))
        legit = self.legit.session_id
        if any(isinstance(rx.packet, Close) and rx.decoded is not None and rx.decoded.session_id == legit
               for rx in self.legit.history[-50:]):
            return Anomaly("legit-broken", "the legitimate session was closed by the target")
        self._sim_features()
        return None

    def refresh_victim(self) -> None:
        """A victim that no longer answers (closed by what it was sent) is replaced."""
        victim = self.victim
        closed = self._victim_closed or any(
            isinstance(rx.packet, Close) and rx.decoded is not None and rx.decoded.session_id == victim.session_id
            for rx in victim.inbox
        )
        rx = None
        if not closed:
            pn = victim.ping()
            rx = victim.maybe(lambda d: isinstance(d.packet, codec.Ack) and d.packet.largest_pn >= pn, self.ctx.quiet)
        self._learn(victim.drain(), "victim")
        self._victim_closed = False
        if rx is None:
            self.features.add("victim:died")
            victim.closed = True
            try:
                self.victim = self.ctx.session()
            except CaseFailed:
                self.victim = self.ctx.session()  # once more: on a lossy path a handshake can fail

    def fresh_handshake(self) -> Anomaly | None:
        try:
            client = self.ctx.client().establish()
        except CaseFailed as failure:
            return Anomaly("unresponsive", f"a fresh handshake failed: {failure.expected}; got {failure.got}")
        client.close_session()
        return None

    def run_batch(self, batch: list[FuzzDatagram], legit_chunks: int, *, retarget: bool = False) -> Anomaly | None:
        """Send the batch with ``legit_chunks`` legitimate chunks spread through it, then check."""
        try:
            per = max(len(batch) // max(legit_chunks, 1), 1)
            for i, d in enumerate(batch):
                if legit_chunks and i % per == 0:
                    self.advance(1)
                self.send(d, self.retarget(d) if retarget else None)
            anomaly = self.check()
            if anomaly is None and self.object_fully_sent:
                anomaly = self.finish_object()
            if anomaly is None:
                self.refresh_victim()
            return anomaly
        except TargetCrashed as crash:
            return Anomaly("crash", f"the endpoint raised {crash}")
        except CaseFailed as failure:
            return Anomaly("unresponsive", f"{failure.expected}; got {failure.got}")

    def close(self) -> None:
        self.ctx.cleanup()
