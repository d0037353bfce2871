"""Dovecot 2.3 as the embedded server's mail store: POP3/POP3S for clients, LMTP for delivery.

It runs in the foreground (``dovecot -F``) from a configuration generated into the server's
folder, with its own base directory, a passwd-file of users (salted SHA-256, no clear text) and
Maildirs owned by an unprivileged user: Dovecot refuses to store mail as root, so when run as
root, mail belongs to ``nobody`` (65534).
"""

from __future__ import annotations

import base64
import contextlib
import grp
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "apt-get install dovecot-core dovecot-pop3d dovecot-lmtpd"
_SERVICE_BINARIES = ("pop3", "lmtp")  # in Dovecot's libexec dir, one package each
_LIBEXEC_DIRS = (Path("/usr/lib/dovecot"), Path("/usr/libexec/dovecot"), Path("/usr/local/libexec/dovecot"))
NOBODY = 65534


class MailServerError(RuntimeError):
    """The embedded mail server cannot start (missing software, ports, configuration)."""


class PortInUse(MailServerError):
    """A port chosen for the server was taken meanwhile (the caller picks others and retries)."""


def dovecot_problem() -> str | None:
    """Why Dovecot 2.3 with POP3 and LMTP cannot be used here, or None if it can."""
    binary = shutil.which("dovecot") or next(
        (str(p) for p in (Path("/usr/sbin/dovecot"), Path("/usr/local/sbin/dovecot")) if p.exists()), None
    )
    if binary is None:
        return f"Dovecot is not installed; install it with: {INSTALL_HINT}"
    for name in _SERVICE_BINARIES:
        if not any((d / name).exists() for d in _LIBEXEC_DIRS):
            return f"Dovecot's {name} service is not installed; install it with: {INSTALL_HINT}"
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run {binary}: {exc}"
    if not version.startswith("2.3"):
        return f"the embedded server needs Dovecot 2.3 (its configuration syntax); found {version.strip()!r}"
    return None


def dovecot_binary() -> str:
    problem = dovecot_problem()
    if problem is not None:
        raise MailServerError(problem)
    return shutil.which("dovecot") or "/usr/sbin/dovecot"


def password_hash(password: str) -> str:
    """Dovecot's {SSHA256} scheme: base64(sha256(password + salt) + salt)."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha256(password.encode("utf-8") + salt).digest()
    return "{SSHA256}" + base64.b64encode(digest + salt).decode("ascii")


@dataclass(frozen=True)
class DovecotPorts:
    pop3: int  # plain, with STLS
    pop3s: int  # implicit TLS


@dataclass(frozen=True)
class _Identity:
    uid: int
    gid: int
    user: str  # the login/internal user for Dovecot's own processes
    group: str


def _identity() -> _Identity:
    if os.geteuid() == 0:
        return _Identity(NOBODY, NOBODY, "dovenull", "dovecot")
    # Unprivileged, Dovecot can only run every process as ourselves.
    me = pwd.getpwuid(os.geteuid())
    return _Identity(me.pw_uid, me.pw_gid, me.pw_name, grp.getgrgid(os.getegid()).gr_name)


_VALID_USER = re.compile(r"^[^\s:]+$")


class Dovecot:
    """One Dovecot instance living in ``directory`` (which the caller creates and removes)."""

    def __init__(
        self,
        directory: Path,
        *,
        host: str,
        users: Mapping[str, str],
        cert_file: Path,
        key_file: Path,
        plaintext_auth: bool,
    ) -> None:
        self.directory = directory
        self.host = host
        self.users = users
        self.cert_file = cert_file
        self.key_file = key_file
        self.plaintext_auth = plaintext_auth
        self.base_dir = directory / "run"
        self.log_file = directory / "dovecot.log"
        self.stderr_file = directory / "dovecot.stderr"
        self.config_file = directory / "dovecot.conf"
        self.lmtp_socket = self.base_dir / "lmtp"
        self._process: subprocess.Popen[bytes] | None = None
        self.ports: DovecotPorts | None = None

    def _write_config(self, ports: DovecotPorts) -> None:
        ident = _identity()
        mail_root = self.directory / "mail"
        mail_root.mkdir(exist_ok=True)
        os.chown(mail_root, ident.uid, ident.gid)
        users_file = self.directory / "users"
        lines = []
        for user, password in self.users.items():
            if not _VALID_USER.match(user):
                raise MailServerError(f"invalid user name {user!r}")
            lines.append(f"{user}:{password_hash(password)}::::::\n")
        users_file.write_text("".join(lines))
        users_file.chmod(0o644)  # hashes only; Dovecot's auth process must read it
        root_only = os.geteuid() == 0
        listen = f"[{self.host}]" if ":" in self.host else self.host
        config = f"""# Generated by snip for one embedded mail server run; removed when it stops.
base_dir = {self.base_dir}
state_dir = {self.directory / "state"}
instance_name = snip-{self.directory.name}
log_path = {self.log_file}
protocols = pop3 lmtp
listen = {listen}
ssl = yes
ssl_cert = <{self.cert_file}
ssl_key = <{self.key_file}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = {"no" if self.plaintext_auth else "yes"}
auth_mechanisms = plain login
# No statistics service: nothing here reads it, and processes would wait for it at shutdown.
stats_writer_socket_path =
# Tests log in with wrong passwords on purpose, and every later login from the same address
# would pay a growing penalty (up to 15 s). The generated passwords cannot be guessed anyway.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=SSHA256 username_format=%u {users_file}
}}
userdb {{
  driver = static
  args = uid={ident.uid} gid={ident.gid} home={mail_root}/%u
}}
mail_location = maildir:~/Maildir
first_valid_uid = {min(ident.uid, 500)}
first_valid_gid = {min(ident.gid, 500)}
default_login_user = {ident.user}
{"" if root_only else f"default_internal_user = {ident.user}"}
{"" if root_only else f"default_internal_group = {ident.group}"}
service pop3-login {{
  {"" if root_only else "chroot ="}
  inet_listener pop3 {{
    address = {listen}
    port = {ports.pop3}
  }}
  inet_listener pop3s {{
    address = {listen}
    port = {ports.pop3s}
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
        self.config_file.write_text(config)

    def start(self, ports: DovecotPorts, *, timeout: float = 10.0) -> None:
        """Start and wait until POP3 answers and the LMTP socket exists; MailServerError if not."""
        binary = dovecot_binary()
        self._write_config(ports)
        self.log_file.unlink(missing_ok=True)
        with self.stderr_file.open("wb") as stderr:
            # Its own process group: a Ctrl-C meant for us does not reach it before we stop it
            # in order, and stop() can end all its processes at once.
            self._process = subprocess.Popen(
                [binary, "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            )
        self.ports = ports
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                text = self._failure_text()
                error = PortInUse if "Address already in use" in text else MailServerError
                raise error(f"Dovecot exited at start-up: {text}")
            if self.lmtp_socket.exists() and _accepts(self.host, ports.pop3):
                return
            time.sleep(0.01)
        self.stop()
        raise MailServerError(f"Dovecot did not come up within {timeout:g} s: {self._failure_text()}")

    def _failure_text(self) -> str:
        text = ""
        for file in (self.stderr_file, self.log_file):
            if file.exists():
                text += file.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip() and "Info:" not in ln]
        return " | ".join(lines[-3:]) or "no error message"

    def stop(self, *, graceful: bool = True, timeout: float = 3.0) -> None:
        """Stop Dovecot. Graceful: SIGTERM and wait (its shutdown takes about a second), then kill.
        Not graceful (the mail is about to be deleted anyway): kill its process group at once."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if graceful:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # also any child left behind
            process.wait()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
