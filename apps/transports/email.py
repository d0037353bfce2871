"""The email baseline (``--via email``): the app flow over SMTP submission and POP3 polling.

The sender mails each image to the receiver's address and polls its own mailbox for the answers;
the receiver polls its mailbox, runs the handler on each image and mails the JSON back. Messages
are built and read with the standard library (``email_message``), spoken over smtplib/poplib in
worker threads (``email_client``); settings come from ``--mail-config`` (TOML, see
``email_settings``) and the options below, which win over the file. Passwords come only from a
file or an environment variable. apps/mail/README.md has real providers' settings;
``snip mailserver`` runs a local server and writes ready-made config files.

Example (tests, benchmarks)::

    with EmbeddedMailServer() as mail:   # apps.mail.server
        receiver = EmailReceiver(mail.client_settings("receiver@snip.test"))
        sender = EmailSender(mail.client_settings("sender@snip.test"), "receiver@snip.test")
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from apps.transport import TransportError
from apps.transports.email_receiver import EmailReceiver
from apps.transports.email_sender import EmailSender
from apps.transports.email_settings import (
    DEFAULT_PASSWORD_ENV,
    MailSettings,
    Security,
    load_config_file,
    settings_from_sources,
)
from apps.transports.units import count_arg, seconds_arg

__all__ = [
    "EmailReceiver",
    "EmailSender",
    "MailSettings",
    "Security",
    "add_arguments",
    "receiver_from_args",
    "sender_from_args",
    "settings_from_args",
]

DEFAULT_MAX_IMAGE_BYTES = 25 << 20  # what most providers accept in one mail


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} out of range")
    return port


def add_arguments(parser: argparse.ArgumentParser, role: str) -> None:
    """The email options (``--mail-``, ``--smtp-``, ``--pop3-``).

    ``role`` is "sender" (or "send") or "receiver" (or "receive").
    """
    group = parser.add_argument_group(
        "email baseline (--via email)",
        "Settings come from --mail-config (TOML) and these options, which win over the file. "
        f"The password comes from --mail-password-file or the environment variable "
        f"--mail-password-env names (default {DEFAULT_PASSWORD_ENV}), never from the command line.",
    )
    group.add_argument("--mail-config", metavar="FILE", help="TOML file with the account and servers")
    group.add_argument("--mail-address", metavar="ADDR",
                       help="this end's mail address (its mailbox, and the From of what it sends)")
    group.add_argument("--mail-user", metavar="USER", help="login for both servers (default: the address)")
    group.add_argument("--mail-password-file", metavar="FILE", help="file whose first line is the password")
    group.add_argument("--mail-password-env", metavar="NAME",
                       help=f"environment variable holding the password (default {DEFAULT_PASSWORD_ENV})")
    group.add_argument("--mail-ca-file", metavar="FILE",
                       help="trust this CA certificate (e.g. the embedded server's) instead of the system's")
    group.add_argument("--mail-timeout", type=seconds_arg, metavar="SECONDS",
                       help="timeout of each network operation (default 30)")
    group.add_argument("--mail-poll-interval", type=seconds_arg, metavar="SECONDS",
                       help="seconds between mailbox polls (default 5; 0.2 suits the embedded server)")
    group.add_argument("--mail-keep", action="store_const", const=True, default=None,
                       help="leave handled messages on the server (default: delete them)")
    security = [s.value for s in Security]
    for kind in ("smtp", "pop3"):
        name = kind.upper()
        group.add_argument(f"--{kind}-host", metavar="HOST", help=f"{name} server")
        group.add_argument(f"--{kind}-port", type=_port, metavar="PORT",
                           help=f"{name} port (default from the security mode)")
        group.add_argument(f"--{kind}-security", choices=security,
                           help=f"{name} security (default {'tls' if kind == 'pop3' else 'starttls'})")
        group.add_argument(f"--{kind}-user", metavar="USER", help=f"{name} login if it differs")
    if role.startswith("send"):
        group.add_argument("--mail-reply-timeout", type=seconds_arg, default=120.0, metavar="SECONDS",
                           help="how long to wait for the answer to each image (default 120)")
        group.add_argument("--mail-max-inflight", type=count_arg, default=16, metavar="N",
                           help="images mailed but not yet answered (default 16)")
    else:
        group.add_argument("--mail-max-concurrent", type=count_arg, metavar="N",
                           help="messages handled at once (default: --max-transfers, else 8)")
        group.add_argument("--mail-seen-file", metavar="FILE",
                           help="remember handled messages here across restarts (useful with --mail-keep)")


def settings_from_args(args: argparse.Namespace, *, address: str | None = None) -> MailSettings:
    """MailSettings from ``--mail-config`` and the options (which take precedence)."""
    config: dict[str, Any] = load_config_file(args.mail_config) if args.mail_config else {}

    def server(kind: str) -> dict[str, Any]:
        return {
            "host": getattr(args, f"{kind}_host"),
            "port": getattr(args, f"{kind}_port"),
            "security": getattr(args, f"{kind}_security"),
            "user": getattr(args, f"{kind}_user"),
        }

    return settings_from_sources(
        config,
        address=address or args.mail_address,
        user=args.mail_user,
        password_file=args.mail_password_file,
        password_env=args.mail_password_env,
        ca_file=args.mail_ca_file,
        timeout=args.mail_timeout,
        poll_interval=args.mail_poll_interval,
        keep=args.mail_keep,
        smtp=server("smtp"),
        pop3=server("pop3"),
    )


def sender_from_args(args: argparse.Namespace, target: str) -> EmailSender:
    """A sender mailing images to ``target``, the receiver's address."""
    if "@" not in target:
        raise TransportError(f"with --via email the target is the receiver's mail address, not {target!r}")
    return EmailSender(
        settings_from_args(args),
        target,
        reply_timeout=args.mail_reply_timeout,
        max_inflight=args.mail_max_inflight,
    )


def receiver_from_args(args: argparse.Namespace, listen: str) -> EmailReceiver:
    """A receiver polling its mailbox; ``listen`` is used as the address only if it is one
    (a "host:port" meant for the other transports is ignored). Honours the apps' generic
    ``max_size``, ``max_transfers`` and ``grace`` when present on ``args``."""
    settings = settings_from_args(args, address=listen if "@" in listen else None)
    grace = getattr(args, "grace", None)
    seen = args.mail_seen_file
    return EmailReceiver(
        settings,
        max_image_bytes=getattr(args, "max_size", None) or DEFAULT_MAX_IMAGE_BYTES,
        max_concurrent=args.mail_max_concurrent or getattr(args, "max_transfers", None) or 8,
        seen_file=Path(seen).expanduser() if seen else None,
        shutdown_grace=5.0 if grace is None else grace,
    )
