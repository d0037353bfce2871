"""``snip fuzz``: fuzz a live SNIP receiver (or the project's own endpoint, in-process).

    snip fuzz --target 127.0.0.1:9000 --duration 60
    snip fuzz --in-process --count 200000 --seed 7 --save repro.json
    snip fuzz --replay repro.json --in-process
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from apps.cli import CommandError
from netsim.relay import parse_hostport
from netsim.spec import SpecError, parse_link

from .context import Options
from .fuzz.campaign import FuzzReport, FuzzSettings, FuzzSetupError, Reproducer, TargetMaker, replay, run_campaign
from .sim_target import DEFAULT_LINK, LIGHT_CONFIG, SimTarget
from .target import Target

__all__ = ["FUZZ_CONFIG", "register"]

#: The in-process target: small limits, and few unvalidated sessions (RETRY beyond them), so that
#: the sessions fuzzed INITIALs create do not pile up and slow every event down.
FUZZ_CONFIG = replace(LIGHT_CONFIG, max_pending_handshakes=16, handshake_timeout=2.0)

EPILOG = """\
The fuzzer sends malformed, mutated and adversarial datagrams in batches (bit flips with the CRC32C
recomputed, boundary values in length, id, index and count fields, truncations, type swaps,
duplicated and reordered real packets, noise) while a legitimate transfer runs alongside. After
every batch it checks that the target still answers and that the legitimate objects complete
(bit for bit: COMPLETE means the target matched their SHA-256). The first anomaly is minimised by
delta debugging to the fewest datagrams that still show it, and saved as JSON.
Exit status: 0 when no anomaly was found (or a replay did not reproduce), 1 otherwise, 2 for a
usage error.

The target must be a receiver that COMPLETEs objects (snip receive will do). In-process, the
project's endpoint runs in netsim's simulator with max_object_size 1 MiB, max_buffered_bytes 4 MiB
and at most 16 unvalidated sessions (RETRY beyond), so that objects and handshakes stay light.

examples:
  snip fuzz --target 127.0.0.1:9000 --duration 60 --save repro.json
  snip fuzz --in-process --count 200000
  snip fuzz --replay repro.json --target 127.0.0.1:9000
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fuzz",
        help="send malformed and adversarial datagrams to a SNIP receiver, with a transfer alongside",
        description="Fuzz a SNIP/2 receiver over the network (or in-process) and minimise what breaks it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="HOST:PORT", help="the receiver to fuzz")
    where.add_argument("--in-process", action="store_true", help="fuzz the project's own endpoint in netsim's simulator")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--count", type=int, metavar="N", help="datagrams to send (default 5000)")
    amount.add_argument("--duration", type=float, metavar="S", help="seconds to fuzz for")
    parser.add_argument("--seed", type=int, metavar="N", help="seed of the whole campaign (default: random, printed)")
    parser.add_argument("--batch", type=int, default=None, metavar="N",
                        help="datagrams between checks (default 200 in-process, 50 live)")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="replay a saved reproducer instead of fuzzing")
    parser.add_argument("--save", type=Path, metavar="FILE",
                        help="where to save the reproducer of an anomaly (default ./snip-fuzz-SEED.json)")
    parser.add_argument("--no-minimize", action="store_true", help="save the failing batch as it is")
    parser.add_argument("--link", metavar="LINK", help="a netsim link between fuzzer and target, e.g. 'loss=5%%'")
    parser.add_argument("--timeout", type=float, default=2.0, metavar="S", help="longest wait for an answer (default 2)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=main)


def _maker(args: argparse.Namespace, seed: int) -> tuple[TargetMaker, Target | None, str]:
    from .udp_target import UdpTarget

    if args.link:
        try:
            parse_link(args.link)
        except SpecError as exc:
            raise CommandError(f"--link: {exc}") from None
    if args.target:
        try:
            host, port = parse_hostport(args.target)
            live = UdpTarget(host, port, link=args.link, seed=seed)
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from None
        return (lambda: live), live, live.description
    if args.in_process:
        link = args.link or DEFAULT_LINK
        return (lambda: SimTarget("receiver", config=FUZZ_CONFIG, link=link, seed=seed)), None, "the project's own receiver, in-process"
    raise CommandError("say what to fuzz: --target HOST:PORT or --in-process")


def _show_anomaly(rep: Reproducer, saved: Path | None, args: argparse.Namespace) -> None:
    print(f"ANOMALY {rep.anomaly.kind}: {rep.anomaly.detail}")
    how = f"minimised from {rep.original}" if rep.reproduced else "not reproduced alone: the whole failing batch"
    print(f"reproducer: {len(rep.datagrams)} datagram(s) ({how}), seed {rep.seed}")
    for d in rep.datagrams[:10]:
        print(f"  {d.route:8} {d.strategy:24} {d.data[:48].hex()}{'...' if len(d.data) > 48 else ''}")
    if saved is not None:
        where = "--in-process" if args.in_process else f"--target {args.target}"
        print(f"saved to {saved}; replay with: snip fuzz --replay {saved} {where}")


def _progress(report: FuzzReport) -> None:
    print(
        f"\r{report.sent} datagrams, {report.rate:.0f}/s, {report.legit_objects} legitimate objects, "
        f"{len(report.features)} behaviours seen",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _replay(args: argparse.Namespace, options: Options) -> int:
    try:
        rep = Reproducer.load(args.replay)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    make, live, description = _maker(args, rep.seed)
    try:
        anomaly = replay(rep.datagrams, make, rep.seed, options)
    finally:
        if live is not None:
            live.close()
    result = {"reproduced": anomaly is not None, "anomaly": None if anomaly is None else vars(anomaly), "target": description}
    if args.json:
        print(json.dumps(result, indent=2))
    elif anomaly is None:
        print(f"replayed {len(rep.datagrams)} datagram(s) against {description}: no anomaly (was: {rep.anomaly.kind})")
    else:
        print(f"replayed {len(rep.datagrams)} datagram(s) against {description}: REPRODUCED {anomaly.kind}: {anomaly.detail}")
    return 1 if anomaly is not None else 0


def main(args: argparse.Namespace) -> int:
    if args.timeout <= 0 or (args.count is not None and args.count <= 0) or (args.duration is not None and args.duration <= 0):
        raise CommandError("--timeout, --count and --duration must be positive")
    options = Options(timeout=args.timeout, quiet=0.05 if args.in_process else 0.1)
    if args.replay is not None:
        return _replay(args, options)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    make, live, description = _maker(args, seed)
    batch = args.batch or (200 if args.in_process else 50)
    if batch <= 0:
        raise CommandError("--batch must be positive")
    settings = FuzzSettings(
        seed=seed,
        count=None if args.duration is not None else (args.count or 5000),
        duration=args.duration,
        batch=batch,
        minimize=not args.no_minimize,
        options=options,
    )
    show = not args.json and sys.stderr.isatty()
    start = time.monotonic()
    try:
        report = run_campaign(make, settings, target_name=description, progress=_progress if show else None)
    except FuzzSetupError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if live is not None:
            live.close()
    if show:
        print(file=sys.stderr)
    saved: Path | None = None
    if report.reproducer is not None:
        saved = args.save or Path(f"snip-fuzz-{seed}.json")
        try:
            report.reproducer.save(saved)
        except OSError as exc:
            raise CommandError(f"cannot write {saved}: {exc.strerror}") from None
    if args.json:
        print(json.dumps({"target": description, "seed": seed, "saved": str(saved) if saved else None, **report.to_json()}, indent=2))
    else:
        print(
            f"snip fuzz: {report.sent} datagrams in {report.batches} batches ({report.rate:.0f}/s, "
            f"{time.monotonic() - start:.1f} s) against {description}, seed {seed}"
        )
        print(
            f"legitimate transfer: {report.legit_objects} objects ({report.legit_bytes} bytes) completed bit for bit; "
            f"{len(report.features)} target behaviours seen; corpus {report.corpus}"
        )
        if report.reproducer is not None:
            _show_anomaly(report.reproducer, saved, args)
        else:
            print("no anomaly")
    return 1 if report.reproducer is not None else 0
