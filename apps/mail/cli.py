"""`snip mailserver`: run the embedded mail server in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from apps.cli import CommandError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "mailserver",
        help="run a local mail server (SMTP submission + POP3) for the email baseline",
        description="Run the embedded mail server (aiosmtpd for SMTP submission, Dovecot 2.3 for "
        "POP3/POP3S) in the foreground, print the settings clients need and write a --mail-config "
        "file per user, until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--user", dest="users", action="append", metavar="ADDR",
                        help="a mail account (repeatable; default sender@snip.test and receiver@snip.test); "
                        "passwords are generated and written to files")
    for name, what in (("smtp", "SMTP submission, STARTTLS"), ("smtps", "SMTP, implicit TLS"),
                       ("pop3", "POP3, STLS"), ("pop3s", "POP3, implicit TLS")):
        parser.add_argument(f"--{name}-port", type=int, default=0, metavar="PORT",
                            help=f"{what} port (default: a free one)")
    parser.add_argument("--max-message-size", type=int, default=32 << 20, metavar="BYTES",
                        help="largest message accepted (default 32 MiB)")
    parser.add_argument("--allow-plain", action="store_true",
                        help="also allow logins without TLS (to measure TLS's cost; never on a real network)")
    parser.add_argument("--cert-name", action="append", default=[], metavar="NAME",
                        help="extra host name or address for the certificate (repeatable)")
    parser.add_argument("--dir", type=Path, metavar="DIR",
                        help="keep everything (mail, certificate, passwords) in DIR instead of a temporary folder")
    parser.add_argument("--json", action="store_true", help="print the settings as one JSON line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from apps.mail.server import DEFAULT_USERS, EmbeddedMailServer, MailPorts, MailServerError
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"the mail server needs the Python package {exc.name!r}: pip install 'snip[mail]'"
        ) from None

    try:
        server = EmbeddedMailServer(
            host=args.bind,
            users=args.users or DEFAULT_USERS,
            max_message_bytes=args.max_message_size,
            require_tls=not args.allow_plain,
            ports=MailPorts(args.smtp_port, args.smtps_port, args.pop3_port, args.pop3s_port),
            directory=args.dir,
            cert_names=args.cert_name,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            info = server.start()
        except MailServerError as exc:
            raise CommandError(str(exc)) from None
        configs = {user: str(info.write_client_config(user)) for user in info.accounts}
        if args.json:
            print(json.dumps({**info.describe(), "configs": configs}), flush=True)
        else:
            _print_settings(info.describe(), configs)
        stop.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not args.json:
        print("mail server stopped", file=sys.stderr)
    return 0


def _print_settings(info: dict[str, object], configs: dict[str, str]) -> None:
    smtp = info["smtp"]
    pop3 = info["pop3"]
    assert isinstance(smtp, dict) and isinstance(pop3, dict)
    users = info["users"]
    assert isinstance(users, dict)
    lines = [
        f"snip mail server on {info['host']} (Ctrl-C to stop)",
        f"  SMTP submission  port {smtp['starttls']} (STARTTLS)   port {smtp['tls']} (implicit TLS)",
        f"  POP3             port {pop3['starttls']} (STLS)       port {pop3['tls']} (implicit TLS)",
        f"  plain logins     {'allowed' if info['plain_allowed'] else 'refused (TLS required)'}",
        f"  CA certificate   {info['ca_file']}",
        f"  max message      {info['max_message_bytes']} bytes",
        "  users (password file, --mail-config file):",
    ]
    for user, password_file in users.items():
        lines.append(f"    {user}  {password_file}  {configs[user]}")
    example = next(iter(configs.values()))
    lines.append(f"  e.g. --via email --mail-config {example}")
    print("\n".join(lines), flush=True)
