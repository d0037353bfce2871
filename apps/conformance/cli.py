"""``snip conformance``: test a live SNIP endpoint against protocol/spec.md, h2spec style.

    snip conformance --target 127.0.0.1:9000                       # a receiver
    snip conformance --role sender --listen 127.0.0.1:9100         # a sender, pointed at the tester
    snip conformance --in-process --section 9 --junit report.xml   # the project's own endpoint
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from apps.cli import CommandError
from netsim.relay import parse_hostport
from netsim.spec import SpecError, parse_link

from .cases import ALL
from .context import Context, Options
from .model import ROLES, Case, CaseFailed, Role
from .report import TextReport, as_json, case_list, write_junit
from .runner import TargetFactory, run, select
from .sim_target import DEFAULT_LINK, sim_factory
from .target import Target

__all__ = ["register"]

EPILOG = """\
Every case checks one requirement of protocol/spec.md, quoted in the report, and ends passed, failed
(with what was expected and what came back) or skipped (unsupported by the target, or slow).
Exit status: 0 when no case failed, 1 when one did, 2 for a usage error.

Across a lossy --link a datagram a case waits for may be lost: a case that failed for an answer
missing or late is run again, up to --attempts times, before it counts as failed (a target that
breaks a rule breaks it every time; a wrong answer is never run again). Cases send in an order and
judge the answer to it: across a link that reorders (jitter without fifo, or reorder) some fail for
the link's doing; "jitter=5ms fifo" varies the delay and keeps the order.

sender role: each case waits for a new handshake from the sender under test. Run the sender in a
loop pointed at --listen, or give --exec, a command started for every case ({addr}, {host} and
{port} are replaced), e.g. --exec "snip send --to {addr} photo.jpg".

examples:
  snip conformance --target 127.0.0.1:9000 --junit conformance.xml
  snip conformance --target 127.0.0.1:9000 --section 9.1 --link "loss=10% delay=20ms"
  snip conformance --role sender --listen 127.0.0.1:9100 --exec "snip send --to {addr} cat.jpg"
  snip conformance --in-process --role sender --json
  snip conformance --list --section 7
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "conformance",
        help="test a live SNIP endpoint against the spec, one case per requirement",
        description="Black-box conformance test of a SNIP/2 implementation over the network: one case per "
        "testable MUST/SHOULD of protocol/spec.md.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="HOST:PORT", help="the receiver under test")
    where.add_argument("--listen", metavar="HOST:PORT", help="sender role: where the sender under test connects")
    where.add_argument("--in-process", action="store_true", help="test the project's own endpoint in netsim's simulator")
    parser.add_argument("--role", choices=ROLES, help="receiver (default) or sender (with --listen)")
    parser.add_argument("--exec", metavar="CMD", dest="exec_cmd", help="sender role: command that starts the sender for each case")
    parser.add_argument("--section", action="append", default=[], metavar="S",
                        help="only cases of spec section S (5 includes 5.12); repeatable")
    parser.add_argument("--case", action="append", default=[], metavar="TEXT", help="only cases whose id contains TEXT")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    parser.add_argument("--link", metavar="LINK", help="put a netsim link between tester and target, e.g. 'loss=10%% delay=20ms'")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="S", help="longest wait for an expected answer (default 3)")
    parser.add_argument("--quiet", type=float, default=0.3, metavar="S", help="silence that counts as no answer (default 0.3)")
    parser.add_argument("--sender-wait", type=float, default=30.0, metavar="S",
                        help="sender role: how long each case waits for the sender to connect (default 30)")
    parser.add_argument("--attempts", type=int, metavar="N",
                        help="run a case that failed for a missing or late answer up to N times (default 3 with a lossy --link, else 1)")
    parser.add_argument("--slow", action="store_true", help="also run cases that wait for long timers (idle, handshake)")
    parser.add_argument("--seed", type=int, metavar="N", help="derive ids and payloads from N (default: random)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="quote the requirement of every case")
    parser.set_defaults(func=main)


def _role(args: argparse.Namespace) -> Role:
    role: Role = args.role or ("sender" if args.listen else "receiver")
    if args.target and role == "sender":
        raise CommandError("--target names a receiver; test a sender with --role sender --listen HOST:PORT")
    if args.listen and role == "receiver":
        raise CommandError("--listen is for the sender role; test a receiver with --target HOST:PORT")
    if args.exec_cmd and role != "sender":
        raise CommandError("--exec starts a sender under test: use it with --role sender")
    return role


def _make_targets(args: argparse.Namespace, role: Role) -> tuple[TargetFactory, Target | None, str]:
    """The target factory, the one live target it hands out (to close), and a description."""
    from .udp_target import UdpListener, UdpTarget

    seed = args.seed or 0
    if args.in_process:
        factory = sim_factory(role, link=args.link or DEFAULT_LINK, seed=seed)
        return factory, None, f"the project's own {role}, in-process"
    address = args.target or args.listen
    if not address:
        raise CommandError("say what to test: --target HOST:PORT (a receiver), --role sender --listen HOST:PORT, or --in-process")
    try:
        host, port = parse_hostport(address)
        live: Target = (
            UdpTarget(host, port, link=args.link, seed=seed)
            if role == "receiver"
            else UdpListener(host, port, link=args.link, seed=seed, exec_cmd=args.exec_cmd)
        )
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    return (lambda case: live), live, live.description


def _preflight(target: Target, case: Case, timeout: float, address: str) -> None:
    """One handshake before the run: a target that does not answer at all is a usage error."""
    ctx = Context(case, target, Options(timeout=timeout))
    try:
        ctx.session()
    except CaseFailed as failure:
        target.close()
        raise CommandError(f"no SNIP receiver answers at {address}: {failure.got}") from None
    finally:
        ctx.cleanup()


def main(args: argparse.Namespace) -> int:
    role = _role(args)
    cases = select(ALL, role=None if args.list and not args.role else role, sections=args.section, match=args.case)
    if not cases:
        raise CommandError("no case matches the --section/--case filters" + ("" if args.list else f" for the {role} role"))
    if args.list:
        if args.json:
            print(json.dumps(case_list(cases), indent=2))
        else:
            for c in cases:
                print(f"{c.id:58} {c.role:8} {c.level:6} {c.title}")
            print(f"{len(cases)} cases")
        return 0
    for name in ("timeout", "quiet", "sender_wait"):
        if getattr(args, name) <= 0:
            raise CommandError(f"--{name.replace('_', '-')} must be positive")
    lossy = reordering = False
    if args.link:
        try:
            spec = parse_link(args.link)
        except SpecError as exc:
            raise CommandError(f"--link: {exc}") from None
        lossy = any(d.loss is not None or d.corrupt > 0 or d.blackouts for d in (spec.fwd, spec.rev))
        reordering = any(d.reorder > 0 or (d.jitter > 0 and not d.fifo) for d in (spec.fwd, spec.rev))
    attempts = args.attempts if args.attempts is not None else (3 if lossy else 1)
    if attempts < 1:
        raise CommandError("--attempts must be at least 1")
    factory, live, description = _make_targets(args, role)
    if live is not None and role == "receiver":
        _preflight(live, cases[0], args.timeout, args.target)
    options = Options(
        timeout=args.timeout, quiet=args.quiet, sender_wait=args.sender_wait, slow=args.slow, seed=args.seed, attempts=attempts
    )
    text = None if args.json else TextReport(sys.stdout, verbose=args.verbose)
    if text is not None:
        text.header(f"SNIP/2 conformance: {description}, {len(cases)} cases")
        if lossy:
            text.header(
                f"note: the link loses datagrams; a case that waits in vain runs up to {attempts} times, but one "
                "whose premise (every datagram sent arrives) the link broke may still fail"
            )
        if reordering:
            text.header(
                "note: the link reorders datagrams (jitter without fifo, or reorder); cases that send in an order "
                "and judge the answer to it may fail for the link's doing: add fifo to the jitter to keep the order"
            )
    try:
        summary = run(cases, factory, options, on_result=text.result if text is not None else None)
    finally:
        if live is not None:
            live.close()
    if text is not None:
        text.summary(summary)
    else:
        meta = {"tool": "snip conformance", "target": description, "role": role, "seed": args.seed, "link": args.link}
        print(json.dumps(as_json(summary, meta), indent=2))
    if args.junit is not None:
        try:
            write_junit(summary, args.junit)
        except OSError as exc:
            raise CommandError(f"cannot write {args.junit}: {exc.strerror}") from None
    return 0 if summary.ok else 1
