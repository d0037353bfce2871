"""The embedded mail server: SMTP submission (aiosmtpd) + POP3/POP3S (Dovecot 2.3) on one address.

For the demo, the tests and the benchmarks: a complete, real mail system that starts in a fraction
of a second in a temporary folder and leaves nothing behind. Ports are chosen free unless given;
the bind address is a parameter (a benchmark runs it inside a network namespace). Clients trust
it through the CA certificate it generates (``ca_file``), with verification left on.

Example::

    with EmbeddedMailServer(host="127.0.0.1", users=["sender@snip.test", "receiver@snip.test"]) as mail:
        settings = mail.client_settings("receiver@snip.test", smtp="tls", pop3="starttls")
        ...

    async with EmbeddedMailServer() as mail:   # the same, started in a worker thread
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from apps.mail.certs import CertificateError, make_certificate
from apps.mail.dovecot import Dovecot, DovecotPorts, MailServerError, PortInUse, dovecot_problem
from apps.mail.smtp_front import SmtpFront
from apps.transports.email_settings import MailSettings, Security, ServerEndpoint

log = logging.getLogger("snip.mail")

DEFAULT_USERS = ("sender@snip.test", "receiver@snip.test")
DEFAULT_MAX_MESSAGE_BYTES = 32 << 20
_DIR_PREFIX = "snip-mail-"
_OWNER_FILE = "owner.pid"

__all__ = [
    "DEFAULT_USERS",
    "EmbeddedMailServer",
    "MailAccount",
    "MailServerError",
    "MailServerInfo",
    "dovecot_problem",
]


@dataclass(frozen=True)
class MailAccount:
    address: str
    password: str = field(repr=False)
    password_file: Path  # the password alone, mode 0600: what clients are pointed at


@dataclass(frozen=True)
class MailServerInfo:
    """Where the running server listens and how to log in."""

    host: str  # the address clients connect to
    smtp_port: int  # submission with STARTTLS (required unless require_tls=False)
    smtps_port: int  # SMTP with implicit TLS
    pop3_port: int  # POP3 with STLS (plain allowed only with require_tls=False)
    pop3s_port: int  # POP3 with implicit TLS
    ca_file: Path
    accounts: Mapping[str, MailAccount]
    directory: Path
    max_message_bytes: int
    require_tls: bool
    lmtp_socket: Path  # Dovecot's delivery socket: lets tests drop in mail no SMTP server would take

    def client_settings(
        self,
        address: str,
        *,
        smtp: Security | str = Security.STARTTLS,
        pop3: Security | str = Security.TLS,
        poll_interval: float = 0.2,
        timeout: float = 10.0,
        keep: bool = False,
    ) -> MailSettings:
        """Ready-to-use settings for the account ``address``, trusting this server's CA."""
        account = self.accounts.get(address)
        if account is None:
            raise KeyError(f"{address} is not a user of this server ({', '.join(self.accounts)})")
        smtp_mode, pop3_mode = Security(smtp), Security(pop3)
        smtp_port = self.smtps_port if smtp_mode is Security.TLS else self.smtp_port
        pop3_port = self.pop3s_port if pop3_mode is Security.TLS else self.pop3_port
        return MailSettings(
            address=address,
            smtp=ServerEndpoint(self.host, smtp_port, smtp_mode, address, account.password),
            pop3=ServerEndpoint(self.host, pop3_port, pop3_mode, address, account.password),
            ca_file=str(self.ca_file),
            timeout=timeout,
            poll_interval=poll_interval,
            keep=keep,
        )

    def config_toml(
        self, address: str, *, smtp: str = "starttls", pop3: str = "tls", poll_interval: float = 0.2
    ) -> str:
        """A --mail-config file for ``address`` (the password stays in its own file)."""
        settings = self.client_settings(address, smtp=smtp, pop3=pop3)
        account = self.accounts[address]
        return (
            f"# snip embedded mail server at {self.host}: settings for {address}\n"
            f"address = {json.dumps(address)}\n"
            f"password_file = {json.dumps(str(account.password_file))}\n"
            f"ca_file = {json.dumps(str(self.ca_file))}\n"
            f"poll_interval = {poll_interval}\n"
            "\n[smtp]\n"
            f"host = {json.dumps(self.host)}\nport = {settings.smtp.port}\nsecurity = \"{settings.smtp.security}\"\n"
            "\n[pop3]\n"
            f"host = {json.dumps(self.host)}\nport = {settings.pop3.port}\nsecurity = \"{settings.pop3.security}\"\n"
        )

    def write_client_config(self, address: str, path: Path | None = None, **options: Any) -> Path:
        """Write ``config_toml(address)`` to ``path`` (default: in the server's folder); returns the path."""
        target = path or self.directory / f"{address.partition('@')[0]}.toml"
        target.write_text(self.config_toml(address, **options))
        return target

    def describe(self) -> dict[str, Any]:
        """Everything a client needs except passwords (they are in the files named here)."""
        return {
            "host": self.host,
            "smtp": {"starttls": self.smtp_port, "tls": self.smtps_port},
            "pop3": {"starttls": self.pop3_port, "tls": self.pop3s_port},
            "plain_allowed": not self.require_tls,
            "ca_file": str(self.ca_file),
            "max_message_bytes": self.max_message_bytes,
            "users": {a.address: str(a.password_file) for a in self.accounts.values()},
            "directory": str(self.directory),
        }


@dataclass(frozen=True)
class MailPorts:
    """Fixed ports (0: pick a free one)."""

    smtp: int = 0
    smtps: int = 0
    pop3: int = 0
    pop3s: int = 0


class EmbeddedMailServer:
    """Starts and stops the mail server; usable as a sync or async context manager.

    ``users`` is a list of addresses (passwords generated) or a mapping address -> password.
    ``require_tls=False`` also allows logins over plain connections (for measuring the cost of
    TLS; never on a real network). ``directory`` keeps everything in a folder of your choice
    (created if needed and left in place) instead of a temporary one.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        users: Iterable[str] | Mapping[str, str] = DEFAULT_USERS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        require_tls: bool = True,
        ports: MailPorts | None = None,
        directory: Path | None = None,
        cert_names: Iterable[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        if isinstance(users, Mapping):
            self.passwords = {str(u): str(p) for u, p in users.items()}
        else:
            self.passwords = {str(u): secrets.token_urlsafe(18) for u in users}
        for user, password in self.passwords.items():
            if "@" not in user or any(c in user for c in ":\n\r\t ") or "\n" in password:
                raise ValueError(f"unusable mail user {user!r}")
        if not self.passwords:
            raise ValueError("the mail server needs at least one user")
        self.host = host
        self.max_message_bytes = max_message_bytes
        self.require_tls = require_tls
        self.ports = ports or MailPorts()
        self.directory = directory
        self.cert_names = list(cert_names)
        self.startup_timeout = startup_timeout
        self._info: MailServerInfo | None = None
        self._dovecot: Dovecot | None = None
        self._smtp: SmtpFront | None = None
        self._temp: Path | None = None

    @property
    def info(self) -> MailServerInfo:
        if self._info is None:
            raise RuntimeError("the mail server is not running")
        return self._info

    def start(self) -> MailServerInfo:
        """Start both servers; MailServerError saying what is missing or wrong if it cannot."""
        if self._info is not None:
            return self._info
        problem = dovecot_problem()
        if problem is not None:
            raise MailServerError(problem)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> MailServerInfo:
        folder = self._make_folder()
        client_host = _client_host(self.host)
        names = [client_host, self.host, *self.cert_names]
        if _is_loopback(client_host):
            names += ["localhost", "127.0.0.1"]
        names = [n for n in dict.fromkeys(names) if n not in ("0.0.0.0", "::")]
        try:
            cert = make_certificate(folder / "tls", names)
        except CertificateError as exc:
            raise MailServerError(str(exc)) from None
        accounts = self._write_passwords(folder)
        dovecot = Dovecot(
            folder, host=self.host, users=self.passwords, cert_file=cert.cert_file, key_file=cert.key_file,
            plaintext_auth=not self.require_tls,
        )
        self._dovecot = dovecot
        for attempt in range(5):
            ports = DovecotPorts(
                self.ports.pop3 or _free_port(self.host), self.ports.pop3s or _free_port(self.host)
            )
            try:
                dovecot.start(ports, timeout=self.startup_timeout)
                break
            except PortInUse:
                if attempt == 4 or (self.ports.pop3 and self.ports.pop3s):
                    raise
        smtp = SmtpFront(
            self.host, self.passwords, dovecot.lmtp_socket, cert_file=cert.cert_file, key_file=cert.key_file,
            max_message_bytes=self.max_message_bytes, require_tls=self.require_tls,
        )
        self._smtp = smtp
        smtp_port, smtps_port = smtp.start(self.ports.smtp, self.ports.smtps)
        assert dovecot.ports is not None
        self._info = MailServerInfo(
            host=client_host,
            smtp_port=smtp_port,
            smtps_port=smtps_port,
            pop3_port=dovecot.ports.pop3,
            pop3s_port=dovecot.ports.pop3s,
            ca_file=cert.ca_file,
            accounts=accounts,
            directory=folder,
            max_message_bytes=self.max_message_bytes,
            require_tls=self.require_tls,
            lmtp_socket=dovecot.lmtp_socket,
        )
        log.info("mail: embedded server up on %s (SMTP %d/%d, POP3 %d/%d)", client_host, smtp_port,
                 smtps_port, dovecot.ports.pop3, dovecot.ports.pop3s)
        return self._info

    def _make_folder(self) -> Path:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            folder = self.directory.resolve()
        else:
            reap_stale_servers()
            folder = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX))
            self._temp = folder
        # Dovecot's unprivileged processes must reach the Maildirs and the users file inside.
        folder.chmod(0o755)
        (folder / _OWNER_FILE).write_text(str(os.getpid()))
        return folder

    def _write_passwords(self, folder: Path) -> dict[str, MailAccount]:
        secrets_dir = folder / "passwords"
        secrets_dir.mkdir(mode=0o700, exist_ok=True)
        accounts: dict[str, MailAccount] = {}
        for user, password in self.passwords.items():
            path = secrets_dir / f"{user}.txt"
            path.touch(mode=0o600)
            path.write_text(password + "\n")
            accounts[user] = MailAccount(user, password, path)
        return accounts

    def stop(self) -> None:
        """Stop both servers and remove the temporary folder (idempotent)."""
        smtp, self._smtp = self._smtp, None
        dovecot, self._dovecot = self._dovecot, None
        if smtp is not None:
            smtp.stop()
        temp, self._temp = self._temp, None
        if dovecot is not None:
            dovecot.stop(graceful=temp is None)
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        self._info = None

    def __enter__(self) -> MailServerInfo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> MailServerInfo:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


def _client_host(host: str) -> str:
    # A server bound to every address is reached, from here, over loopback.
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_servers() -> list[Path]:
    """Remove what killed runs left behind: temp folders whose owner is gone, and their Dovecot."""
    reaped: list[Path] = []
    for folder in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*"):
        try:
            owner = int((folder / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError):
            master = int((folder / "run" / "master.pid").read_text())
            cmdline = Path(f"/proc/{master}/cmdline").read_bytes()
            # Only a Dovecot started with this very folder's configuration.
            if b"dovecot" in cmdline and str(folder).encode() in cmdline:
                os.kill(master, signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    return reaped
