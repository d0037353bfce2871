"""The embedded server's SMTP submission: aiosmtpd with AUTH, handing each message to Dovecot by LMTP.

Two listeners: submission (STARTTLS; AUTH only after it unless plaintext is allowed) and SMTPS
(TLS from the first byte). Mail is accepted only from logged-in users and only for local users;
the bytes go to Dovecot unchanged. aiosmtpd runs on its own event loop in a daemon thread, so
the server works the same under synchronous and asynchronous callers.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import smtplib
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from apps.mail.dovecot import MailServerError

log = logging.getLogger("snip.mail")


class _QuietAiosmtpd(logging.Filter):
    """Drops aiosmtpd 1.4's deprecation warning, which it logs on every successful AUTH itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


def _tame_aiosmtpd_logging() -> None:
    smtp_log = logging.getLogger("mail.log")
    if not any(isinstance(f, _QuietAiosmtpd) for f in smtp_log.filters):
        smtp_log.addFilter(_QuietAiosmtpd())
    if smtp_log.level == logging.NOTSET:  # it logs every command at INFO; keep that opt-in
        smtp_log.setLevel(logging.WARNING)


class _Handler:
    """aiosmtpd hooks: who may send, to whom, and delivery over LMTP."""

    def __init__(self, users: Mapping[str, str], lmtp_socket: Path) -> None:
        self.users = {user.lower(): password for user, password in users.items()}
        self.lmtp_socket = lmtp_socket
        self.delivered = 0

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace").lower()
            expected = self.users.get(user)
            if expected is not None and hmac.compare_digest(expected.encode(), auth_data.password):
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    async def handle_MAIL(  # aiosmtpd calls its hooks by these names
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        # Checked here rather than with auth_required, which aiosmtpd cannot combine with
        # implicit TLS without warning that TLS is missing.
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() not in self.users:
            return f"550 5.1.1 <{address}>: no such mailbox here (this server does not relay)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        try:
            await asyncio.to_thread(self._deliver, envelope.mail_from, list(envelope.rcpt_tos),
                                    envelope.original_content)
        except smtplib.SMTPRecipientsRefused as exc:
            log.warning("mail: Dovecot refused recipients: %s", exc.recipients)
            return "550 5.1.1 recipient refused by the mail store"
        except (smtplib.SMTPException, OSError) as exc:
            log.error("mail: delivery over LMTP failed: %s", exc)
            return "451 4.3.0 mail store unavailable, try again later"
        self.delivered += 1
        return "250 2.0.0 OK delivered"

    def _deliver(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        with smtplib.LMTP(str(self.lmtp_socket)) as lmtp:
            lmtp.sendmail(mail_from, rcpt_tos, data)


class SmtpFront:
    """The two SMTP listeners on ``host``; ``start`` returns their ports."""

    def __init__(
        self,
        host: str,
        users: Mapping[str, str],
        lmtp_socket: Path,
        *,
        cert_file: Path,
        key_file: Path,
        max_message_bytes: int,
        require_tls: bool,
    ) -> None:
        self.host = host
        self.handler = _Handler(users, lmtp_socket)
        self.max_message_bytes = max_message_bytes
        self.require_tls = require_tls
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self.tls.load_cert_chain(cert_file, key_file)
        _tame_aiosmtpd_logging()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []

    def _smtp(self, *, implicit_tls: bool) -> Any:
        assert self._loop is not None
        return SMTP(
            self.handler,
            hostname="snip-mail",
            ident="snip embedded mail server",
            data_size_limit=self.max_message_bytes,
            tls_context=None if implicit_tls else self.tls,
            require_starttls=self.require_tls and not implicit_tls,
            # On the implicit-TLS port aiosmtpd does not see the TLS, so it must not demand it.
            auth_require_tls=self.require_tls and not implicit_tls,
            authenticator=self.handler.authenticate,
            timeout=300,
            loop=self._loop,
        )

    def start(self, submission_port: int = 0, smtps_port: int = 0) -> tuple[int, int]:
        """Listen; returns (submission port, SMTPS port). MailServerError if a port cannot be bound."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="snip-mail-smtp", daemon=True)
        self._thread.start()

        async def listen() -> tuple[int, int]:
            plain = await loop.create_server(lambda: self._smtp(implicit_tls=False), self.host, submission_port)
            self._servers.append(plain)
            tls = await loop.create_server(
                lambda: self._smtp(implicit_tls=True), self.host, smtps_port, ssl=self.tls
            )
            self._servers.append(tls)
            return plain.sockets[0].getsockname()[1], tls.sockets[0].getsockname()[1]

        try:
            return asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=10)
        except OSError as exc:
            self.stop()
            raise MailServerError(f"cannot listen for SMTP on {self.host}: {exc.strerror or exc}") from None

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def close() -> None:
            for server in self._servers:
                server.close()
            self._servers.clear()
            # End the client sessions too, so that nothing is left pending on the loop.
            sessions = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in sessions:
                task.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)

        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
            except Exception as exc:  # stopping must go on whatever the listeners say
                log.debug("mail: closing SMTP listeners: %s", exc)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        loop.close()

    @property
    def delivered(self) -> int:
        return self.handler.delivered
