"""Account and server settings of the email baseline, from a TOML file and/or command-line options.

Passwords never come from the command line or the code: from a file (``password_file``,
``--mail-password-file``) or an environment variable (``password_env``, ``--mail-password-env``,
default ``SNIP_MAIL_PASSWORD``). See apps/mail/README.md for a provider's settings.

The TOML file::

    address = "me@example.com"          # this end's address: From of what it sends, the mailbox it polls
    user = "me@example.com"             # login for both servers (default: address)
    password_file = "~/.config/snip/mail-password"   # or: password_env = "MY_MAIL_PASSWORD"
    ca_file = "/path/to/ca.pem"         # optional: trust this CA instead of the system's
    poll_interval = 5.0                 # seconds between mailbox polls
    keep = false                        # keep handled messages on the server (default: delete)
    timeout = 30.0                      # seconds per network operation

    [smtp]
    host = "smtp.example.com"
    port = 465                          # default from security: plain 25, starttls 587, tls 465
    security = "tls"                    # plain | starttls | tls
    # user = "..."                      # only if it differs from the top-level user

    [pop3]
    host = "pop.example.com"
    port = 995                          # default from security: plain/starttls 110, tls 995
    security = "tls"
"""

from __future__ import annotations

import enum
import functools
import os
import ssl
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from apps.transport import TransportError

DEFAULT_PASSWORD_ENV = "SNIP_MAIL_PASSWORD"


class Security(enum.StrEnum):
    PLAIN = "plain"  # no TLS at all (credentials in the clear: loopback or test networks only)
    STARTTLS = "starttls"  # plain connect, then upgrade (SMTP 587, POP3 110 with STLS)
    TLS = "tls"  # TLS from the first byte (SMTPS 465, POP3S 995)


DEFAULT_PORTS: dict[tuple[str, Security], int] = {
    ("smtp", Security.PLAIN): 25,
    ("smtp", Security.STARTTLS): 587,
    ("smtp", Security.TLS): 465,
    ("pop3", Security.PLAIN): 110,
    ("pop3", Security.STARTTLS): 110,
    ("pop3", Security.TLS): 995,
}


@dataclass(frozen=True)
class ServerEndpoint:
    """One server (SMTP or POP3) and the login to use on it."""

    host: str
    port: int
    security: Security
    user: str
    password: str = field(repr=False)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port} ({self.security})"


@dataclass(frozen=True)
class MailSettings:
    """Everything one end (sender or receiver) needs to talk to its mail servers."""

    address: str
    smtp: ServerEndpoint
    pop3: ServerEndpoint
    ca_file: str | None = None  # trust anchor for both servers; None means the system's CAs
    timeout: float = 30.0
    poll_interval: float = 5.0
    keep: bool = False

    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context (certificate and host name checked)."""
        return ssl.create_default_context(cafile=self.ca_file)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "localhost"


def read_password(password_file: str | None, password_env: str | None) -> str:
    """The password from ``password_file`` (first line) or else the environment variable ``password_env``."""
    if password_file:
        path = Path(password_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or exc
            raise TransportError(f"cannot read the mail password file {path}: {reason}") from None
        password = text.splitlines()[0] if text else ""
        if not password:
            raise TransportError(f"the mail password file {path} is empty")
        return password
    name = password_env or DEFAULT_PASSWORD_ENV
    password = os.environ.get(name, "")
    if not password:
        raise TransportError(
            f"no mail password: set the environment variable {name} or give a password file "
            "(--mail-password-file or password_file in the --mail-config file)"
        )
    return password


def load_config_file(path: str) -> dict[str, Any]:
    """The TOML file as a dict, with a clear error for a missing file, bad TOML or an inline password."""
    file = Path(path).expanduser()
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise TransportError(f"cannot read mail config {file}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TransportError(f"mail config {file} is not valid TOML: {exc}") from None
    for table in (data, data.get("smtp", {}), data.get("pop3", {})):
        if isinstance(table, dict) and "password" in table:
            raise TransportError(
                f"mail config {file}: put the password in a file (password_file) or an environment "
                "variable (password_env), not in the config"
            )
    # Relative paths in the file are relative to the file, not to the current directory.
    for key in ("password_file", "ca_file"):
        if isinstance(data.get(key), str):
            data[key] = str((file.parent / Path(data[key]).expanduser()).resolve())
    return data


def _endpoint(
    kind: str, table: dict[str, Any], overrides: dict[str, Any], user: str, password: str
) -> ServerEndpoint:
    merged = {**table, **{k: v for k, v in overrides.items() if v is not None}}
    host = merged.get("host")
    if not host:
        raise TransportError(f"no {kind.upper()} host: give --{kind}-host or [{kind}] host in --mail-config")
    try:
        security = Security(str(merged.get("security", "tls" if kind == "pop3" else "starttls")).lower())
    except ValueError:
        raise TransportError(
            f"{kind.upper()} security must be one of {', '.join(s.value for s in Security)}"
        ) from None
    port = merged.get("port") or DEFAULT_PORTS[(kind, security)]
    if not isinstance(port, int) or not 0 < port < 65536:
        raise TransportError(f"bad {kind.upper()} port {port!r}")
    return ServerEndpoint(str(host), port, security, str(merged.get("user") or user), password)


def settings_from_sources(
    config: dict[str, Any],
    *,
    address: str | None = None,
    user: str | None = None,
    password_file: str | None = None,
    password_env: str | None = None,
    ca_file: str | None = None,
    timeout: float | None = None,
    poll_interval: float | None = None,
    keep: bool | None = None,
    smtp: dict[str, Any] | None = None,
    pop3: dict[str, Any] | None = None,
) -> MailSettings:
    """Settings from a config dict (see module doc) with explicit values taking precedence."""
    address = address or config.get("address")
    if not address or "@" not in str(address):
        raise TransportError("no mail address for this end: give --mail-address or address in --mail-config")
    login = user or config.get("user") or str(address)
    if password_file is None and password_env is None:
        password_file, password_env = config.get("password_file"), config.get("password_env")
    password = read_password(password_file, password_env)
    smtp_table = config.get("smtp", {})
    pop3_table = config.get("pop3", {})
    if not isinstance(smtp_table, dict) or not isinstance(pop3_table, dict):
        raise TransportError("mail config: [smtp] and [pop3] must be tables")
    settings = MailSettings(
        address=str(address),
        smtp=_endpoint("smtp", smtp_table, smtp or {}, str(login), password),
        pop3=_endpoint("pop3", pop3_table, pop3 or {}, str(login), password),
        ca_file=ca_file or config.get("ca_file"),
    )
    tuning: dict[str, Any] = {
        "timeout": timeout if timeout is not None else config.get("timeout"),
        "poll_interval": poll_interval if poll_interval is not None else config.get("poll_interval"),
        "keep": keep if keep is not None else config.get("keep"),
    }
    return replace(settings, **{k: v for k, v in tuning.items() if v is not None})
