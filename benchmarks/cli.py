"""``snip bench``: snip against TCP (CUBIC, BBR) and email on the same emulated links.

Registered into the ``snip`` command by apps.cli; ``python -m benchmarks.cli ARGS`` runs it alone.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.endpoints import DEFAULT_TRANSPORTS, TRANSPORTS

__all__ = ["build_parser", "main", "register", "run"]

EXAMPLES = """\
examples:
  snip bench                                  the quick preset: 2 scenarios, every transport
  snip bench --preset standard                the table in benchmarks/README.md (about an hour, most of
                                              it waiting for TCP CUBIC, email and QUIC to time out)
  snip bench --loss 0,5,20 --rtt 50,300       a grid of your own (the rate stays the preset's 50 Mbit/s)
  snip bench --transports snip,tcp-cubic,tcp-bbr,email     without the optional peers
  snip bench --link "sat: rate=10mbit rtt=600ms loss=2%" --transports snip,tcp-bbr
  snip bench --scenario bursts,blackout --repeat 3
  snip bench --list-scenarios
  snip bench --from-json results/latest/results.json     redo the report and plots
  snip bench --from-json old/results.json new/results.json --out both
                                  one report of two runs (where both have a run, the later file's)

Results go to results/bench-<time>/ (results.json, runs.csv, images.csv, summary.md, plots/);
results/latest points at the newest. Without root there is no TUN link: snip alone runs through
the UDP relay (TCP and email rows say "needs root").
"""


class _UserError(Exception):
    pass


def _numbers(text: str, what: str) -> list[float]:
    out = []
    for part in text.split(","):
        part = part.strip().rstrip("%").lower().removesuffix("ms").removesuffix("mbit")
        if not part:
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: {part!r} is not a number") from None
    if not out:
        raise argparse.ArgumentTypeError(f"{what}: no values given")
    return out


def _losses(text: str) -> list[float]:
    return _numbers(text, "--loss")


def _rtts(text: str) -> list[float]:
    return _numbers(text, "--rtt")


def _rates(text: str) -> list[float]:
    return _numbers(text, "--rate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmarks.scenarios import DEFAULT_QUEUE, PRESETS

    what = parser.add_argument_group("what to run")
    what.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                      help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()).replace("%", "%%")
                      + " (default quick)")
    what.add_argument("--transports", default=",".join(DEFAULT_TRANSPORTS), metavar="LIST",
                      help=f"comma list from {', '.join(TRANSPORTS)}, or 'all' (default {','.join(DEFAULT_TRANSPORTS)})")
    what.add_argument("--loss", type=_losses, metavar="PCT,...", help="loss grid in percent, both directions (e.g. 0,5,20)")
    what.add_argument("--rtt", type=_rtts, metavar="MS,...", help="RTT grid in ms (e.g. 10,50,300)")
    what.add_argument("--rate", type=_rates, metavar="MBIT,...", help="bottleneck rates in Mbit/s (e.g. 10,50)")
    what.add_argument("--jitter", type=float, metavar="MS", help="add normal jitter of MS ms to the grid's links")
    what.add_argument("--queue", default=DEFAULT_QUEUE, metavar="SIZE", help=f"bottleneck queue (default {DEFAULT_QUEUE})")
    what.add_argument("--link", action="append", default=[], metavar='"[NAME:] LINK"',
                      help="a scenario of your own in netsim's link syntax (repeatable); blackout times count "
                      "from the first measured image")
    what.add_argument("--scenario", action="append", default=[], metavar="NAME,...",
                      help="named scenarios (see --list-scenarios; repeatable)")
    what.add_argument("--list-scenarios", action="store_true", help="list the named scenarios and presets, and exit")
    what.add_argument("--dry-run", action="store_true", help="show what would run, and exit")

    load = parser.add_argument_group("workload")
    load.add_argument("--sizes", metavar="SIZE,...", help="image sizes (default 64kib,256kib,1mib)")
    load.add_argument("--format", choices=("png", "jpeg"), default="png", help="image format (default png)")
    load.add_argument("--classify", default="colors", metavar="NAME|none",
                      help="classifier(s) the receiver runs before answering (default colors; none to skip)")

    how = parser.add_argument_group("how")
    how.add_argument("--repeat", type=int, metavar="N", help="runs per scenario, seeds SEED..SEED+N-1 (default: preset's)")
    how.add_argument("--seed", type=int, default=1, help="first link seed (default 1)")
    how.add_argument("--timeout", type=float, metavar="S", help="seconds per image before it counts as '>S' (default: preset's)")
    how.add_argument("--via", choices=("auto", "tun", "relay"), default="auto",
                     help="link emulator: tun (root), relay (UDP only, snip alone), auto (tun when possible)")
    how.add_argument("--email-cc", default="cubic", metavar="NAME",
                     help="TCP congestion control of the email run's namespaces (default cubic, Linux's default)")
    how.add_argument("--email-poll", type=float, default=0.2, metavar="S", help="mailbox poll interval (default 0.2)")
    how.add_argument("--quic-cc", choices=("reno", "cubic"), default="reno",
                     help="aioquic's congestion control for the quic peer (default reno, aioquic's default)")
    how.add_argument("--snip-option", action="append", default=[], metavar="KEY=VALUE",
                     help="a protocol SessionConfig setting for both snip ends, e.g. rate=fixed:45mbit (repeatable)")
    how.add_argument("--peer-option", action="append", default=[], metavar="PEER:KEY=VALUE",
                     help="a setting of the srt or kcp peer on both ends: srt:fc=32000 (an SRT socket option), "
                     "kcp:sndwnd=2048 (a kcptun flag) (repeatable)")

    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, metavar="DIR", help="results folder (default results/bench-<time>)")
    out.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    out.add_argument("--from-json", type=Path, nargs="+", metavar="FILE",
                     help="make the report and plots again from a results.json; from several, one report of them all "
                     "(for each scenario, transport and seed, the run of the last file that has one)")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark snip against TCP (CUBIC, BBR) and email on the same emulated links",
        description="Send the same images over snip, TCP CUBIC, TCP BBR, email and the optional peers (QUIC, SRT, "
        "KCP, where installed) through the same emulated link and seed, one after another; report delivery and "
        "reply times, goodput against the physical limit, bytes on the wire and CPU time, as CSV/JSON, a markdown "
        "table and plots.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snip bench", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser


def _list_scenarios() -> int:
    from benchmarks.scenarios import PRESETS, SPECIALS, catalog

    print("presets:")
    for name, preset in PRESETS.items():
        print(f"  {name:9} {preset.description}")
        print(f"  {'':9} {', '.join(s.name for s in preset.scenarios())}")
    print("\nnamed scenarios (besides the grid, named 'RATEmbit RTTms LOSS%', e.g. '50mbit 50ms 5%'):")
    for scenario in SPECIALS.values():
        print(f"  {scenario.name:13} {scenario.link}")
        print(f"  {'':13} {scenario.description}")
    print(f"\n{len(catalog())} named scenarios in all (the full grid and these).")
    return 0


def _transports(text: str) -> list[str]:
    names = list(TRANSPORTS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in TRANSPORTS]
    if unknown or not names:
        raise _UserError(f"unknown transport(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TRANSPORTS)}")
    return list(dict.fromkeys(names))


def _transport_options(args: argparse.Namespace) -> dict[str, list[str]]:
    from benchmarks.endpoints.snip_end import session_config
    from benchmarks.endpoints.srt_end import OPTIONS as SRT_OPTIONS

    snip = list(args.snip_option)
    try:
        session_config(dict(item.split("=", 1) for item in snip if "=" in item))
    except (ValueError, TypeError) as exc:
        raise _UserError(f"--snip-option: {exc}") from None
    if any("=" not in item for item in snip):
        raise _UserError("--snip-option wants KEY=VALUE")
    options = {"snip": snip, "email": [f"poll={args.email_poll:g}"],
               "quic": [f"congestion_control_algorithm={args.quic_cc}"], "srt": [], "kcp": []}
    for item in args.peer_option:
        peer, colon, setting = item.partition(":")
        key, equals, value = setting.partition("=")
        if not colon or peer not in ("srt", "kcp") or not equals or not key or not value:
            raise _UserError(f"--peer-option wants srt:KEY=VALUE or kcp:KEY=VALUE, not {item!r}")
        if peer == "srt" and (key not in SRT_OPTIONS or not value.lstrip("-").isdigit()):
            raise _UserError(f"--peer-option srt:{setting}: an integer SRT option, one of {', '.join(SRT_OPTIONS)}")
        options[peer].append(setting)
    return options


def _render(results: Any, out_dir: Path, plots: bool) -> list[Path]:
    from benchmarks.report import write_all

    paths = write_all(results, out_dir)
    if plots:
        from benchmarks.plots import plot_all

        paths += plot_all(results, out_dir)
    return paths


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except _UserError as exc:
        from apps.cli import CommandError

        raise CommandError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    from benchmarks.machine import machine_info
    from benchmarks.report import BenchResults, MergeError, link_latest, load_results, markdown, merge_results, write_json
    from benchmarks.runner import BenchConfig, choose_mode, run_all
    from benchmarks.scenarios import PRESETS, ScenarioError, select
    from benchmarks.workloads import Workload, format_size, parse_sizes
    from netsim.tun import TunUnavailable

    if args.list_scenarios:
        return _list_scenarios()
    if args.from_json is not None:
        for source in args.from_json:
            if not source.is_file():
                raise _UserError(f"{source} does not exist")
        if len(args.from_json) > 1 and args.out is None:
            raise _UserError("--from-json with several files needs --out DIR for the merged report")
        try:
            results = load_results(args.from_json[0]) if len(args.from_json) == 1 else merge_results(args.from_json)
        except (MergeError, ValueError, KeyError) as exc:
            raise _UserError(f"cannot read the results: {exc}") from None
        for path in _render(results, args.out or args.from_json[0].parent, not args.no_plots):
            print(path)
        return 0

    preset = PRESETS[args.preset]
    names = [n.strip() for item in args.scenario for n in item.split(",") if n.strip()]
    try:
        scenarios = select(preset, losses=args.loss, rtts_ms=args.rtt, rates_mbit=args.rate, jitter_ms=args.jitter,
                           queue=args.queue, links=args.link, names=names)
        for scenario in scenarios:
            scenario.base  # noqa: B018 (parse every link now: a typo must not surface in mid-run)
        sizes = parse_sizes(args.sizes) if args.sizes else preset.sizes
    except (ScenarioError, ValueError) as exc:
        raise _UserError(str(exc)) from None
    repeat = args.repeat if args.repeat is not None else preset.repeat
    timeout = args.timeout if args.timeout is not None else preset.timeout
    if repeat < 1 or timeout <= 0:
        raise _UserError("--repeat must be at least 1 and --timeout positive")
    transports = _transports(args.transports)
    options = _transport_options(args)
    workload = Workload(sizes, args.format)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir: Path = args.out or Path("results") / f"bench-{stamp}"

    plan = (f"{len(scenarios)} scenario(s) x {repeat} seed(s) x {len(transports)} transport(s) = "
            f"{len(scenarios) * repeat * len(transports)} runs; images {', '.join(format_size(s) for s in sizes)}; "
            f"timeout {timeout:g} s")
    if args.dry_run:
        try:
            mode, why = choose_mode(args.via)
        except TunUnavailable as exc:
            raise _UserError(str(exc)) from None
        print(plan)
        print(f"link: {mode}" + (f" ({why})" if why else ""))
        for scenario in scenarios:
            print(f"  {scenario.name:28} {scenario.link}")
        return 0

    config = BenchConfig(scenarios, transports, workload, out_dir, repeat=repeat, seed=args.seed, timeout=timeout,
                         classify=args.classify, via=args.via, email_cc=args.email_cc, transport_options=options)
    meta: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "snip bench " + shlex.join(sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "bench" else sys.argv[1:]),
        "preset": args.preset, "transports": transports, "sizes": list(sizes), "format": args.format,
        "classify": args.classify, "repeat": repeat, "seeds": [args.seed + i for i in range(repeat)],
        "timeout": timeout, "queue": args.queue, "email_cc": args.email_cc, "email_poll_s": args.email_poll,
        "snip_options": options["snip"], "quic_cc": args.quic_cc, "peer_options": {p: options[p] for p in ("srt", "kcp")},
        "machine": machine_info(),
    }
    print(f"snip bench: {plan}")
    print(f"snip bench: writing to {out_dir}")
    started = time.monotonic()
    state: dict[str, Any] = {"runs": []}

    def save(runs: Any) -> None:
        state["runs"] = list(runs)
        write_json(BenchResults(meta, scenarios, state["runs"]), out_dir)

    interrupted = False
    try:
        runs, mode, why = run_all(config, on_result=save)
    except TunUnavailable as exc:
        raise _UserError(str(exc)) from None
    except KeyboardInterrupt:
        interrupted = True
        runs, mode, why = state["runs"], "?", None
    meta["wall_s"] = time.monotonic() - started
    meta["mode"] = mode
    meta["fallback_reason"] = why
    meta["mode_description"] = (
        "TUN link between two network namespaces (receiver in B, sender in A), MTU 1500, one fresh link per run"
        if mode == "tun" else "UDP relay on loopback (no root): snip only")
    results = BenchResults(meta, scenarios, runs)
    paths = _render(results, out_dir, not args.no_plots and bool(runs))
    # results/latest follows the default folders only: a folder the user named is left alone.
    latest = link_latest(out_dir) if args.out is None else None
    print()
    print(markdown(results))
    print("files:")
    for path in paths:
        print(f"  {path}")
    if latest is not None:
        print(f"  {latest} -> {out_dir.name}")
    if interrupted:
        print("snip bench: interrupted; the runs finished so far are saved", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except _UserError as exc:
        print(f"snip bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
