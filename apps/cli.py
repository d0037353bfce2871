"""The `snip` command: one entry point whose subcommands live in the packages that own them.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit code). Modules keep heavy
imports (torch, OpenCV) inside their functions so that `snip --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> module that registers it; the order is the order `snip --help` lists them in.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "apps.sender.cli",
    "apps.receiver.cli",
    "apps.classifier.cli",
    "apps.demo",
    "apps.mail.cli",
    "netsim.cli",
    "apps.conformance.cli",
    "apps.conformance.fuzz_cli",
    "benchmarks.cli",
)


class CommandError(Exception):
    """A user-facing error: printed as one line, exit code 2 unless given."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snip",
        description="Get images across bad networks: reliable UDP, classification on arrival, benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A subcommand whose own package is absent is simply not offered; a missing
            # dependency inside a present module is a real error and must surface.
            if exc.name is not None and module_name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code = func(args)
    except CommandError as exc:
        print(f"snip {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"snip {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    # Run as a module, this file is __main__: the CommandError the subcommands import is the one
    # in apps.cli, so dispatch through that module for its handler to catch it.
    from apps.cli import main as _main

    sys.exit(_main())
