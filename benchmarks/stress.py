"""Random harsh links in the simulator: does every object get through?

    python -m benchmarks.stress [--links 300] [--seed 0] [--sizes LIST] [--varying] [--thin-return]
                                [--slow] [--busy] [--show-all] [--json FILE]

Each run draws a link at random from its seed: a rate of 0.256-200 Mbit/s, an RTT of 5-1500 ms, a
queue from 2 packets to four bandwidth-delay products, and loss (random, Gilbert-Elliott bursts,
or different each way up to 80 %), with some jitter (normal or Pareto), reordering, duplication,
corruption and a blackout mixed in. With ``--varying`` the rate is not fixed but a mahimahi delivery
trace drawn around it: steps every 0.1-2 s between a thirtieth and three times the drawn rate, and
now and then a second or two with no capacity at all (packets wait in the queue, as on a cellular
link during a handover, where a blackout drops them). With ``--thin-return`` the return direction
(the receiver's ACKs, NACKs and replies) gets a rate of its own, a third to a three-hundredth of the
forward one, as on ADSL, cable, satellite and cellular uplinks. With ``--slow`` the rate is
20-128 kbit/s (dial-up, GPRS, a narrow satellite or radio channel), and a queue given in bytes
shrinks with it. With ``--busy`` both ends' timers fire late, as on a machine with more busy
processes than cores (the next whole millisecond, as epoll counts, plus up to 2 ms). Over it the client sends 1-20
objects of 1 B to 200 KB (or of the ``--sizes`` given), all at once or one after another, and the
server answers each with a reply. A run passes when every object
and every reply arrives bit-exact and nothing fails; a run that cannot open its session because a
blackout outlasts the handshake timeout (30 s, as `snip send` waits) is counted apart. The protocol core runs in netsim's
virtual time, so 300 links take a few minutes of wall time.

It prints each run that did not pass, with its seed and link (``--show-all``: every run, with its
time and the bytes each side sent over the objects' bytes), and a summary; it exits 1 if any run
failed. This is how faults were found that no fixed link showed:
copies of an ANNOUNCE queued ahead of every PROBE copy, a probe timeout's control packets sent as
one unpaced burst into a queue two packets deep, an object starved behind others on a slow path
until its receiver cancelled it (and, later, one whose REPAIRs were all it had left, and one
passed over for every out-of-turn send while the object behind it took them all), a session
whose first packets an outage took given up by its server for good, REPAIRs that kept
arriving not counted as progress, and a small reply's copy budget spent in its first round.
Sweeps of thousands of seeds take a few minutes each.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from apps.transports.snip import DEFAULT_CONNECT_TIMEOUT_S
from benchmarks.workloads import parse_sizes
from netsim.simulator import LateWakeups, Observed, SimulationTimeout, Simulator
from protocol.config import SessionConfig
from protocol.connection import Connection
from protocol.endpoint import Endpoint
from protocol.events import ConnectionClosed, ObjectDelivered, ObjectFailed, ObjectReceived
from protocol.state import State

CLIENT = ("client", 4000)
SERVER = ("server", 5000)
HANDSHAKE_LIMIT = 60.0  # virtual seconds; the handshake timeout ends it sooner
RUN_LIMIT = 900.0  # virtual seconds for a whole workload: past it the run has stalled
# ... unless the link needs longer: this many times the workload's bytes at the link's rate (a
# megabyte takes seven minutes at 20 kbit/s, and three times that at 65 % loss).
RUN_LIMIT_LINK_TIMES = 10
SIZES = (1, 1000, 5000, 30_000, 65_536, 200_000)
REPLY_SIZES = (50, 300, 2000)
BUSY_DELAY_S = 0.002  # --busy: how much later than the next whole millisecond an end may wake


def random_link(rng: random.Random) -> str:
    """A netsim link description, drawn from ``rng``."""
    rate = rng.choice([0.256, 1, 2, 5, 10, 20, 50, 100, 200])  # Mbit/s
    rtt = rng.choice([5, 20, 50, 100, 200, 400, 800, 1500])  # ms
    bdp = rate * 1e6 / 8 * rtt / 1000
    queue = rng.choice(["packets", "tenth", "bdp", "deep"])
    parts = [f"rate={rate}mbit", f"rtt={rtt}ms"]
    if queue == "packets":
        parts.append(f"queue={rng.choice([2, 5, 10, 30])}p")
    else:
        share = {"tenth": 0.1, "bdp": 1.0, "deep": 4.0}[queue]
        parts.append(f"queue={max(3000, int(bdp * share))}b")
    kind = rng.random()
    if kind < 0.6:
        parts.append(f"loss={rng.choice([0, 1, 3, 10, 20, 35, 50, 65])}%")
    elif kind < 0.8:
        parts.append(f"ge={rng.choice([1, 3, 10])}%,{rng.choice([10, 30, 60])}%")
    else:
        parts.append(f"fwd.loss={rng.choice([0, 5, 30, 60])}% rev.loss={rng.choice([0, 5, 30, 60, 80])}%")
    if rng.random() < 0.35:
        parts.append(f"jitter={rng.choice([2, 10, 30, 80])}ms")
        if rng.random() < 0.3:
            parts.append("dist=pareto")
    if rng.random() < 0.15:
        parts.append(f"reorder={rng.choice([10, 30, 50])}%")
    if rng.random() < 0.15:
        parts.append(f"dup={rng.choice([5, 30, 100])}%")
    if rng.random() < 0.15:
        parts.append(f"corrupt={rng.choice([1, 10, 30])}%")
    if rng.random() < 0.15:
        start = rng.uniform(0.05, 2)
        parts.append(f"blackout={start:.2f}s-{start + rng.choice([0.3, 1, 3, 8]):.2f}s")
    return " ".join(parts)


# Forward rate over return rate with --thin-return. ACKs cost about 1 % of the forward bytes
# (82 bytes per 8 datagrams), so the larger ratios saturate the return path with them.
THIN_RETURN_RATIOS = (3, 10, 30, 100, 300)
THIN_RETURN_FLOOR_MBIT = 0.032  # the slowest return path drawn: 32 kbit/s
# The link's own rate token, not a direction's (``rev.rate=``): what the draws read and replace.
RATE_TOKEN = re.compile(r"(?<![.\w])rate=([0-9.]+)mbit")


def thin_return(link: str, rng: random.Random) -> str:
    """``link`` with its return direction slowed to a fraction of the forward rate, drawn from ``rng``."""
    rate = RATE_TOKEN.search(link)
    if rate is None:
        raise ValueError(f"no forward rate in {link!r}")
    back = max(float(rate[1]) / rng.choice(THIN_RETURN_RATIOS), THIN_RETURN_FLOOR_MBIT)
    return f"{link} rev.rate={back:.4g}mbit"


# --slow: rates of dial-up, GPRS and a narrow satellite or radio link.
SLOW_RATES_MBIT = (0.02, 0.032, 0.064, 0.128)
SLOW_MIN_QUEUE_BYTES = 3000


def slow_link(link: str, rng: random.Random) -> str:
    """``link`` with its rate replaced by a slow one drawn from ``rng``, and a queue given in bytes
    scaled with it (a queue of four BDPs at 200 Mbit/s would hold hours at 20 kbit/s)."""
    rate = RATE_TOKEN.search(link)
    if rate is None:
        raise ValueError(f"no forward rate in {link!r}")
    slow = rng.choice(SLOW_RATES_MBIT)
    scale = slow / float(rate[1])
    link = link.replace(rate[0], f"rate={slow}mbit", 1)
    return re.sub(r"queue=(\d+)b\b", lambda m: f"queue={max(SLOW_MIN_QUEUE_BYTES, int(int(m[1]) * scale))}b", link)


TRACE_PERIOD_MS = 20_000
TRACE_OPPORTUNITY_BITS = 1500 * 8  # a mahimahi delivery opportunity


def random_rate_trace(rng: random.Random, mean_mbit: float) -> list[int]:
    """Delivery times in ms (mahimahi's format) of a rate that wanders around ``mean_mbit``."""
    times: list[int] = []
    t = 0.0
    while t < TRACE_PERIOD_MS:
        length = rng.uniform(100, 2000)
        if rng.random() < 0.08:
            t += length  # no capacity at all for a while: what is sent waits in the queue
            continue
        mbit = min(100.0, mean_mbit * 10 ** rng.uniform(-1.5, 0.5))
        gap = TRACE_OPPORTUNITY_BITS / (mbit * 1000.0)  # ms between opportunities
        end = min(t + length, TRACE_PERIOD_MS)
        # A random phase, so that slow steps do not all start with an opportunity.
        at = t + rng.uniform(0, gap)
        while at < end:
            times.append(math.floor(at))
            at += gap
        t = end
    if not times or times[-1] < TRACE_PERIOD_MS:
        times.append(TRACE_PERIOD_MS)  # the last time is the period
    return times


class _Side:
    """What happened to one endpoint; the server answers each object it receives with a reply."""

    def __init__(self, endpoint: Endpoint, replies: random.Random | None) -> None:
        self.endpoint = endpoint
        self.replies = replies
        self.received: dict[int, bytes] = {}
        self.answered_with: dict[int, bytes] = {}
        self.delivered: set[int] = set()
        self.failed: list[ObjectFailed] = []
        self.closed: ConnectionClosed | None = None

    def drain(self, now: float) -> None:
        while (event := self.endpoint.next_event()) is not None:
            if isinstance(event, ObjectReceived):
                key = event.object_id if event.in_reply_to is None else event.in_reply_to
                self.received[key] = event.data
                if self.replies is not None:
                    reply = self.replies.randbytes(self.replies.choice(REPLY_SIZES))
                    self.answered_with[event.object_id] = reply
                    conn = self.endpoint.session(event.session_id)
                    conn.send_object(reply, now, in_reply_to=event.object_id, content_type="application/json")
            elif isinstance(event, ObjectDelivered):
                self.delivered.add(event.object_id)
            elif isinstance(event, ObjectFailed):
                self.failed.append(event)
            elif isinstance(event, ConnectionClosed):
                self.closed = event


@dataclass
class Outcome:
    seed: int
    link: str
    sizes: list[int]
    together: bool
    status: str  # "ok", "handshake timeout" or "failed"
    detail: str = ""
    seconds: float = 0.0  # virtual seconds from the first object to the last reply
    wire: float = 0.0  # bytes the client sent over the objects' bytes
    # Bytes the server sent (its ACKs and NACKs, and the replies) over the objects' bytes: the
    # return path's share, which `wire` leaves out.
    wire_back: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)


def run_one(
    seed: int, object_sizes: Sequence[int] = SIZES, trace_dir: Path | None = None, thin: bool = False,
    slow: bool = False, busy: bool = False,
) -> Outcome:
    """One random link and workload, in virtual time; each object's size drawn from ``object_sizes``.

    With ``trace_dir`` the link's fixed rate is replaced by a varying one (a trace file written there).
    With ``thin`` the return direction is slowed (``thin_return``); its own random stream leaves the
    rest of the link and the workload as they are without it, so the two runs can be compared.
    With ``slow`` the rate is a slow one (``slow_link``), drawn from a stream of its own too.
    With ``busy`` both ends wake late, as event loops on a loaded machine do (``LateWakeups``: the
    next whole millisecond plus 0-``BUSY_DELAY_S``), each from a stream of its own.
    """
    rng = random.Random(seed)
    link = random_link(rng)
    if slow:
        link = slow_link(link, random.Random(seed + 600))
    if thin:
        link = thin_return(link, random.Random(seed + 500))
    drawn_rate = RATE_TOKEN.search(link)
    assert drawn_rate is not None  # random_link always draws a rate
    rate_mbit = float(drawn_rate[1])
    shown = link
    if trace_dir is not None:
        path = trace_dir / f"{seed}.trace"
        path.write_text("\n".join(map(str, random_rate_trace(random.Random(seed + 400), rate_mbit))) + "\n")
        shown = link.replace(drawn_rate[0], f"ratetrace=(varying around {drawn_rate[1]}mbit)", 1)
        link = link.replace(drawn_rate[0], f"ratetrace={path}", 1)
    sizes = [rng.choice(object_sizes) for _ in range(rng.choice([1, 2, 5, 10, 20]))]
    run_limit = max(RUN_LIMIT, RUN_LIMIT_LINK_TIMES * sum(sizes) * 8 / (rate_mbit * 1e6))
    together = rng.random() < 0.5
    data = [rng.randbytes(size) for size in sizes]
    sim = Simulator(seed=seed)
    # The client waits for its handshake as long as `snip send` does by default.
    client_config = SessionConfig(handshake_timeout=DEFAULT_CONNECT_TIMEOUT_S)
    client = _Side(Endpoint(client_config, random_bytes=random.Random(seed + 100).randbytes), None)
    server = _Side(Endpoint(server=True, random_bytes=random.Random(seed + 200).randbytes), random.Random(seed + 300))
    for i, (side, addr) in enumerate(((client, CLIENT), (server, SERVER))):
        end = Observed(side.endpoint, side.drain)
        sim.add_endpoint(LateWakeups(end, delay=BUSY_DELAY_S, rng=random.Random(seed + 700 + i)) if busy else end, addr)
    sim.connect(CLIENT[0], SERVER[0], link)
    conn: Connection = client.endpoint.connect(SERVER, sim.now)
    outcome = Outcome(seed, shown, sizes, together, "ok")
    try:
        sim.run_until(lambda: conn.state is not State.CLIENT_INITIAL, timeout=HANDSHAKE_LIMIT)
    except SimulationTimeout:
        pass
    if conn.state is not State.ESTABLISHED:
        outcome.status, outcome.detail = "handshake timeout", client.closed.reason if client.closed else conn.state.value
        return outcome
    start = sim.now
    ids: list[int] = []

    def done() -> bool:
        answered = all(i in client.received for i in ids)
        return client.closed is not None or bool(client.failed) or (client.delivered >= set(ids) and answered)

    try:
        for item in data:
            if client.closed is not None or client.failed:
                break  # reported below
            ids.append(conn.send_object(item, sim.now))
            sim.poke()
            if not together:
                sim.run_until(done, timeout=run_limit)
        sim.run_until(done, timeout=run_limit)
    except SimulationTimeout:
        outcome.status, outcome.detail = "failed", f"stalled: {len(client.delivered)} of {len(ids)} delivered"
    outcome.seconds = round(sim.now - start, 3)
    outcome.wire = round(conn.counters["bytes_sent"] / max(1, sum(sizes)), 3)
    back = sum(session.counters["bytes_sent"] for session in server.endpoint.sessions.values())
    outcome.wire_back = round(back / max(1, sum(sizes)), 3)
    outcome.stats = {k: v for k, v in conn.counters.items() if k in ("chunks_retransmitted", "repairs_sent", "probes_sent")}
    if outcome.status != "ok":
        return outcome
    problems = [f"{f.reason} ({side} {'sending' if f.outgoing else 'receiving'} object {f.object_id})"
                for side, failed in (("client", client.failed), ("server", server.failed)) for f in failed]
    if client.closed is not None:
        problems.append(f"session closed: {client.closed.reason}")
    problems += [f"object {i} {'never arrived' if i not in server.received else 'arrived wrong'}"
                 for i, item in zip(ids, data, strict=False) if server.received.get(i) != item]
    if len(ids) < len(data):
        problems.append(f"{len(data) - len(ids)} objects never sent: the session ended first")
    problems += [f"reply to {i} {'never arrived' if i not in client.received else 'arrived wrong'}"
                 for i in ids if client.received.get(i) != server.answered_with.get(i)]
    if problems:
        outcome.status, outcome.detail = "failed", "; ".join(problems[:3])
    return outcome


def _line(outcome: Outcome) -> str:
    what = f"{len(outcome.sizes)} objects, {sum(outcome.sizes)} B, {'together' if outcome.together else 'one by one'}"
    if outcome.status == "ok":
        wire = f"wire {outcome.wire:.2f} + {outcome.wire_back:.2f} back"
        return f"seed {outcome.seed}: ok in {outcome.seconds:.2f} s, {wire} ({what}) | {outcome.link}"
    return f"seed {outcome.seed}: {outcome.status}: {outcome.detail} ({what}) | {outcome.link}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=300, metavar="N", help="random links to run (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first link (default 0)")
    parser.add_argument("--sizes", metavar="LIST", help="object sizes to draw from, e.g. 1mib,300k,64kib "
                        "(default: 1 B to 200 kB); large ones make long transfers of many objects")
    parser.add_argument("--varying", action="store_true", help="a rate that wanders and stalls (a mahimahi "
                        "trace drawn around the link's rate) instead of a fixed one")
    parser.add_argument("--thin-return", action="store_true", help="a return path a third to a "
                        "three-hundredth as fast as the forward one (ACKs and replies go over it)")
    parser.add_argument("--slow", action="store_true", help="a slow link: 20, 32, 64 or 128 kbit/s, with "
                        "the queue scaled to it")
    parser.add_argument("--busy", action="store_true", help="both ends wake late, as event loops on a "
                        f"loaded machine do: each timer at the next whole millisecond plus 0-{BUSY_DELAY_S * 1000:g} ms")
    parser.add_argument("--show-all", action="store_true", help="print every run, not only those that did not pass")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every run's outcome to FILE")
    args = parser.parse_args(argv)
    if args.links < 1:
        parser.error("--links must be at least 1")
    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"--json: no folder {args.json.parent} to write {args.json.name} in")
    object_sizes: Sequence[int] = SIZES
    if args.sizes is not None:
        try:
            object_sizes = parse_sizes(args.sizes)
        except ValueError as exc:
            parser.error(f"--sizes: {exc}")
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="snip-stress-") as traces:
        for seed in range(args.seed, args.seed + args.links):
            outcome = run_one(seed, object_sizes, Path(traces) if args.varying else None, args.thin_return, args.slow,
                              args.busy)
            outcomes.append(outcome)
            if args.show_all or outcome.status != "ok":
                print(_line(outcome), flush=True)
    counts = {status: sum(o.status == status for o in outcomes) for status in ("ok", "handshake timeout", "failed")}
    print(f"{len(outcomes)} links (seeds {args.seed}-{args.seed + args.links - 1}): "
          + ", ".join(f"{n} {status}" for status, n in counts.items()))
    passed = [o for o in outcomes if o.status == "ok"]
    if passed:
        # Pooled (every byte sent over every object's byte) and the median run: a mean of the runs'
        # ratios would be the 1-byte objects', whose packets' headers alone are a hundred times them.
        total = max(1, sum(sum(o.sizes) for o in passed))
        client = sum(o.wire * sum(o.sizes) for o in passed) / total
        server = sum(o.wire_back * sum(o.sizes) for o in passed) / total
        median_client = statistics.median(o.wire for o in passed)
        median_server = statistics.median(o.wire_back for o in passed)
        print(f"bytes on the wire over the objects' bytes, runs that passed: {client:.3f} from the client + "
              f"{server:.3f} from the server (median run {median_client:.3f} + {median_server:.3f})")
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
