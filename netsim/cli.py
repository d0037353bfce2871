"""``snip netsim``: describe links, list presets, run the UDP relay or a shell behind the TUN link.

    snip netsim describe loss=5% delay=50ms jitter=10ms rate=20mbit queue=100kb
    snip netsim presets
    snip netsim relay --listen 127.0.0.1:9001 --to 127.0.0.1:9000 congested-4g
    snip netsim shell --cc cubic --server "python3 -m http.server 80" rtt=100ms loss=1% -- curl 10.77.0.2
    snip netsim reap

The link is written as the remaining words (see ``netsim.spec`` for the syntax); quote ``|``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from typing import Any, NoReturn

from apps.cli import CommandError
from netsim.spec import PRESET_NOTES, PRESETS, LinkSpec, SpecError, parse_link

__all__ = ["register"]

_LINK_HELP = (
    "link settings, e.g. 'loss=5%% delay=50ms jitter=10ms rate=20mbit queue=100kb', 'ge=1%%,30%%', a preset "
    "(snip netsim presets), or per direction 'delay=20ms | fwd: rate=5mbit | rev: loss=1%%'"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "netsim",
        help="emulate bad networks: describe links, UDP relay, TUN link between namespaces",
        description="Impair links the same way everywhere: a virtual-time simulator (Python API), a UDP "
        "relay (no root) and a TUN link between two network namespaces (root). fwd is client->server "
        "(relay) or namespace A->B (TUN).",
    )
    parser.set_defaults(func=lambda args: _usage(parser))
    sub = parser.add_subparsers(dest="netsim_command", metavar="ACTION")

    p = sub.add_parser("describe", help="parse a link string and print the effective settings")
    p.add_argument("link", nargs="*", help=_LINK_HELP)
    p.add_argument("--json", action="store_true", help="print the settings as JSON")
    p.set_defaults(func=_describe)

    p = sub.add_parser("presets", help="list the link presets")
    p.set_defaults(func=_presets)

    p = sub.add_parser("relay", help="forward UDP between clients and a server through the link (no root)")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="where clients send")
    p.add_argument("--to", required=True, metavar="HOST:PORT", help="the server")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--pcap", metavar="FILE", help="record what crosses the link")
    p.add_argument("--stats-interval", type=float, default=5.0, metavar="S",
                   help="print counters every S seconds (0: only at the end)")
    p.add_argument("--json", action="store_true", help="print the final counters as JSON")
    p.add_argument("link", nargs="*", help=_LINK_HELP)
    p.set_defaults(func=_relay)

    p = sub.add_parser(
        "shell",
        help="run a command in namespace A, joined to namespace B by the link (root)",
        description="Runs CMD (default: your shell) in namespace A (10.77.0.1); namespace B (10.77.0.2) is "
        "reachable through the link. Write the link before '--' and the command after it. Options "
        "come first. CMD sees SNIP_PEER=10.77.0.2 and SNIP_LOCAL=10.77.0.1.",
    )
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--cc", help="TCP congestion control for both namespaces (e.g. cubic, bbr)")
    p.add_argument("--cc-a", help="TCP congestion control in namespace A")
    p.add_argument("--cc-b", help="TCP congestion control in namespace B")
    p.add_argument("--server", metavar="CMD", help="a command to run in namespace B first (e.g. a server)")
    p.add_argument("--server-wait", type=float, default=0.5, metavar="S",
                   help="seconds to give the server before CMD starts (default 0.5)")
    p.add_argument("--pcap", metavar="FILE", help="record what crosses the link")
    p.add_argument("--fix-checksums", action="store_true",
                   help="recompute TCP/UDP checksums of corrupted packets so corruption reaches programs")
    p.add_argument("--json", action="store_true", help="print the final counters as JSON")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="LINK... -- CMD...")
    p.set_defaults(func=_shell)

    p = sub.add_parser("reap", help="delete netsim namespaces left by crashed runs (root)")
    p.set_defaults(func=_reap)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _parse(words: list[str]) -> LinkSpec:
    try:
        return parse_link(words)
    except SpecError as exc:
        raise CommandError(str(exc)) from None


def _describe(args: argparse.Namespace) -> int:
    spec = _parse(args.link)
    if args.json:
        print(json.dumps({"link": spec.to_string(), **spec.to_dict()}, indent=2))
        return 0
    print(f"link: {spec}")
    print(spec.describe())
    return 0


def _presets(args: argparse.Namespace) -> int:
    width = max(len(name) for name in PRESETS)
    for name, text in PRESETS.items():
        print(f"{name:{width}}  {PRESET_NOTES.get(name, '')}")
        print(f"{'':{width}}  {text}")
    return 0


def _summary(stats: dict[str, Any]) -> str:
    parts = []
    for name in ("fwd", "rev"):
        d = stats.get(name)
        if not d:
            continue
        drops = ", ".join(f"{k} {v}" for k, v in d["dropped_by_cause"].items() if v)
        extra = [f"dropped {d['dropped']}" + (f" ({drops})" if drops else "")]
        for key in ("duplicated", "corrupted", "reordered"):
            if d[key]:
                extra.append(f"{key} {d[key]}")
        if d["queue_delay_max_s"]:
            extra.append(f"queue delay mean {d['queue_delay_mean_s'] * 1e3:.1f} ms")
        parts.append(f"{name}: {d['passed']}/{d['sent']} passed, " + ", ".join(extra))
    return " | ".join(parts)


def _terminate_on_sigterm() -> None:
    def handler(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _relay(args: argparse.Namespace) -> int:
    from netsim.relay import UdpRelay

    spec = _parse(args.link)
    try:
        relay = UdpRelay(args.listen, args.to, spec, seed=args.seed, pcap=args.pcap).open()
    except (ValueError, OSError) as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CommandError(message) from None
    listen, to = relay.listen_addr, relay.to_addr
    print(f"netsim relay: {listen[0]}:{listen[1]} -> {to[0]}:{to[1]} through: {spec} (seed {args.seed}); "
          "Ctrl-C stops", file=sys.stderr, flush=True)

    def tick(r: UdpRelay) -> None:
        print(f"netsim relay: {_summary(r.stats()['link'])}", file=sys.stderr, flush=True)

    _terminate_on_sigterm()
    try:
        if args.stats_interval > 0:
            relay.serve_forever(tick, args.stats_interval)
        else:
            relay.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        relay.stop()
    stats = relay.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(f"netsim relay: {_summary(stats['link'])}", file=sys.stderr)
    return 0


def _split_command(words: list[str]) -> tuple[list[str], list[str]]:
    if "--" in words:
        i = words.index("--")
        return words[:i], words[i + 1 :]
    return words, []


def _shell(args: argparse.Namespace) -> int:
    from netsim.netns import NetnsError
    from netsim.tun import ADDR_A, ADDR_B, TunLink, TunUnavailable, check_available

    link_words, command = _split_command(args.words)
    spec = _parse(link_words)
    if not command:
        command = [os.environ.get("SHELL") or "/bin/sh"]
    try:
        check_available()
    except TunUnavailable as exc:
        raise CommandError(str(exc)) from None
    env = dict(os.environ, SNIP_LOCAL=ADDR_A, SNIP_PEER=ADDR_B)
    _terminate_on_sigterm()
    link = TunLink(spec, seed=args.seed, cc=args.cc, cc_a=args.cc_a, cc_b=args.cc_b, pcap=args.pcap,
                   fix_checksums=args.fix_checksums)
    try:
        link.start()
    except (TunUnavailable, NetnsError, OSError) as exc:
        raise CommandError(f"cannot set up the TUN link: {exc}") from None
    with link:
        env.update(SNIP_NETNS_A=link.ns_a, SNIP_NETNS_B=link.ns_b)
        print(f"netsim shell: A {ADDR_A} <-> B {ADDR_B} through: {spec} (seed {args.seed}); "
              f"tcp cc A={link.cc.get('a')} B={link.cc.get('b')}; "
              f"elsewhere: ip netns exec {link.ns_b} CMD", file=sys.stderr, flush=True)
        if args.server:
            server_env = dict(env, SNIP_LOCAL=ADDR_B, SNIP_PEER=ADDR_A)
            try:
                server = link.popen_b(shlex.split(args.server), env=server_env)
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot start the server: {exc}") from None
            time.sleep(args.server_wait)
            if server.poll() is not None:
                raise CommandError(f"the server exited at once with code {server.returncode}: {args.server}")
        try:
            proc = link.popen_a(command, env=env)
        except OSError as exc:
            raise CommandError(f"cannot run {command[0]!r}: {exc}") from None
        # Like a shell: Ctrl-C belongs to the foreground command, not to us (it was started before
        # we ignore SIGINT, so it does not inherit the ignore).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            code = proc.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
    final = link.stats()  # the forwarder's last counters, sent as it stopped
    if args.json:
        print(json.dumps({**final, "exit_code": code}, indent=2))
    else:
        print(f"netsim shell: {_summary(final.get('link', {}))}", file=sys.stderr)
    return code if code >= 0 else 128 - code


def _reap(args: argparse.Namespace) -> int:
    from netsim.netns import reap_stale
    from netsim.tun import TunUnavailable, check_available

    try:
        check_available()
    except TunUnavailable as exc:
        raise CommandError(str(exc)) from None
    reaped = reap_stale()
    print(f"netsim: removed {len(reaped)} stale namespace(s)" + (": " + ", ".join(reaped) if reaped else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.cli ARGS`` = ``snip netsim ARGS``."""
    from apps.cli import main as snip_main

    return snip_main(["netsim", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

