"""SMTP submission and POP3 polling for the email baseline, on the standard library's smtplib/poplib.

The blocking calls run in worker threads (``asyncio.to_thread``); every failure becomes a
``MailUnavailable`` (cannot talk to the server: connection, TLS, login) or a ``MailRejected``
(the server refused one message) with a message a user can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import poplib
import smtplib
import socket
import ssl
from collections.abc import Callable, Collection, Container
from dataclasses import dataclass

from apps.transports.email_settings import MailSettings, Security, ServerEndpoint

log = logging.getLogger("snip.email")


class MailError(Exception):
    """A mail server could not be used or refused something."""


class MailUnavailable(MailError):
    """The server cannot be reached, TLS failed, or the login was refused."""


class MailRejected(MailError):
    """The server refused this one message (too large, unknown recipient, ...)."""


def _tls_hint(endpoint: ServerEndpoint, exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the TLS certificate of {endpoint.where} is not trusted ({exc.verify_message}); "
            "give the server's CA certificate with --mail-ca-file (or ca_file in the config)"
        )
    return f"TLS with {endpoint.where} failed ({exc.reason or exc}); is the security mode right for the port?"


def _describe_os_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer (timed out)"
    return exc.strerror or str(exc) or type(exc).__name__


def _smtp_reply(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"{exc.smtp_code} {text}".strip()


# --- SMTP ----------------------------------------------------------------------------------------


def open_smtp(settings: MailSettings) -> smtplib.SMTP:
    """Connect, secure and log in to the SMTP submission server (blocking)."""
    ep = settings.smtp
    local = socket.gethostname()  # smtplib's default (getfqdn) can stall on a reverse DNS lookup
    client: smtplib.SMTP | None = None
    try:
        if ep.security is Security.TLS:
            client = smtplib.SMTP_SSL(
                ep.host, ep.port, local_hostname=local, timeout=settings.timeout, context=settings.ssl_context
            )
        else:
            client = smtplib.SMTP(ep.host, ep.port, local_hostname=local, timeout=settings.timeout)
        if ep.security is Security.STARTTLS:
            client.ehlo()
            client.starttls(context=settings.ssl_context)
            client.ehlo()
        if ep.user:
            client.login(ep.user, ep.password)
        return client
    except smtplib.SMTPAuthenticationError as exc:
        reason = f"SMTP server {ep.where} refused the login of {ep.user!r}: {_smtp_reply(exc)}"
    except smtplib.SMTPNotSupportedError as exc:
        reason = f"SMTP server {ep.where} does not offer what is needed: {exc}"
    except ssl.SSLError as exc:
        reason = _tls_hint(ep, exc)
    except smtplib.SMTPResponseException as exc:
        reason = f"SMTP server {ep.where} said {_smtp_reply(exc)}"
    except (smtplib.SMTPException, OSError) as exc:
        detail = _describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        reason = f"cannot reach SMTP server {ep.where}: {detail}"
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()
    raise MailUnavailable(reason)


def smtp_send(client: smtplib.SMTP, sender: str, recipients: list[str], message: bytes) -> None:
    """Submit one message on an open connection (blocking)."""
    try:
        client.sendmail(sender, recipients, message)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = "; ".join(f"{rcpt}: {code} {text.decode('utf-8', 'replace')}"
                            for rcpt, (code, text) in exc.recipients.items())
        raise MailRejected(f"recipient refused: {refused}") from None
    except smtplib.SMTPResponseException as exc:
        if exc.smtp_code == 421:  # the server is closing the session: a connection problem
            raise MailUnavailable(f"SMTP server closed the session: {_smtp_reply(exc)}") from None
        raise MailRejected(_smtp_reply(exc)) from None
    except (smtplib.SMTPException, OSError) as exc:
        detail = _describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        raise MailUnavailable(f"SMTP connection lost: {detail}") from None


class SmtpOutbox:
    """One logged-in SMTP connection, shared by concurrent senders, reopened when the server drops it."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self._client: smtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.sent = 0

    async def connect(self) -> None:
        async with self._lock:
            if self._client is None:
                self._client = await asyncio.to_thread(open_smtp, self.settings)

    async def send(self, recipients: list[str], message: bytes) -> None:
        """Submit ``message``; MailRejected for this message, MailUnavailable if the server is gone.

        A connection that broke is reopened once; if it broke after the server took the message,
        the message goes twice (the receiver then answers twice; the sender uses the first).
        """
        async with self._lock:
            for attempt in (1, 2):
                if self._client is None:
                    self._client = await asyncio.to_thread(open_smtp, self.settings)
                client = self._client
                try:
                    await asyncio.to_thread(smtp_send, client, self.settings.address, recipients, message)
                except MailUnavailable:
                    self._client = None
                    await asyncio.to_thread(_close_smtp, client)
                    if attempt == 2:
                        raise
                    continue
                self.sent += 1
                return

    async def aclose(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            if client is not None:
                await asyncio.to_thread(_close_smtp, client)


def _close_smtp(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


# --- POP3 ----------------------------------------------------------------------------------------


def _pop3_reply(exc: poplib.error_proto) -> str:
    first = exc.args[0] if exc.args else exc
    return first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)


def _closed(exc: poplib.error_proto) -> bool:
    # poplib reports a connection closed in the middle of an answer as this pseudo-reply.
    return _pop3_reply(exc) == "-ERR EOF"


def open_pop3(settings: MailSettings) -> poplib.POP3:
    """Connect, secure and log in to the POP3 server (blocking)."""
    ep = settings.pop3
    client: poplib.POP3 | None = None
    stage = "connect"
    try:
        if ep.security is Security.TLS:
            client = poplib.POP3_SSL(ep.host, ep.port, timeout=settings.timeout, context=settings.ssl_context)
        else:
            client = poplib.POP3(ep.host, ep.port, timeout=settings.timeout)
        if ep.security is Security.STARTTLS:
            stage = "stls"
            client.stls(settings.ssl_context)
        stage = "login"
        client.user(ep.user)
        client.pass_(ep.password)
        return client
    except poplib.error_proto as exc:
        if stage == "login":
            reason = f"POP3 server {ep.where} refused the login of {ep.user!r}: {_pop3_reply(exc)}"
        elif stage == "stls":
            reason = f"POP3 server {ep.where} does not offer STLS: {_pop3_reply(exc)}"
        else:
            reason = f"POP3 server {ep.where} said {_pop3_reply(exc)}"
    except ssl.SSLError as exc:
        reason = _tls_hint(ep, exc)
    except OSError as exc:
        reason = f"cannot reach POP3 server {ep.where}: {_describe_os_error(exc)}"
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()
    raise MailUnavailable(reason)


@dataclass(frozen=True)
class Fetched:
    """One new message from a poll: its bytes, or only its headers when it was not fetched whole."""

    uid: str
    size: int
    raw: bytes | None = None
    headers: bytes | None = None
    error: str | None = None  # the server's answer could not be read (e.g. a line too long)


@dataclass(frozen=True)
class PollResult:
    fetched: list[Fetched]
    present: set[str]  # UIDs in the mailbox at the start of the session
    deleted: set[str]


def poll_mailbox(
    settings: MailSettings,
    *,
    skip: Container[str],
    delete: Collection[str],
    max_bytes: int,
    peek_above: int,
    wanted: Callable[[bytes], bool] | None = None,
    peek_only: Container[str] = (),
    batch: int = 64,
) -> PollResult:
    """One POP3 session (blocking): delete ``delete``, then fetch up to ``batch`` messages not in ``skip``.

    A message larger than ``peek_above`` is first looked at by its headers (TOP n 0); it is
    fetched whole only when ``wanted(headers)`` (or no ``wanted`` is given) and it fits
    ``max_bytes``; a message in ``peek_only`` is only ever looked at by its headers. POP3 shows a
    mailbox as it was at login, so every poll is a new session. Deletions take effect only when
    the session ends cleanly; ``PollResult.deleted`` lists those that did.
    """
    client = open_pop3(settings)
    fetched: list[Fetched] = []
    broken = False
    try:
        numbers: dict[str, str] = {}  # UID -> message number in this session
        for line in client.uidl()[1]:
            number, _sp, uid = line.decode("ascii", "replace").partition(" ")
            numbers[uid] = number
        deleted: set[str] = set()
        for uid in delete:
            if uid in numbers:
                client.dele(numbers[uid])
                deleted.add(uid)
        new = [uid for uid in numbers if uid not in skip and uid not in deleted][:batch]
        sizes: dict[str, int] = {}
        if new:
            for line in client.list()[1]:
                number, _sp, size_text = line.decode("ascii", "replace").partition(" ")
                sizes[number] = int(size_text or 0)
        for uid in new:
            number = numbers[uid]
            size = sizes.get(number, 0)
            try:
                if size > peek_above or size > max_bytes or uid in peek_only:
                    headers = b"\r\n".join(client.top(number, 0)[1]) + b"\r\n"
                    if size > max_bytes or uid in peek_only or (wanted is not None and not wanted(headers)):
                        fetched.append(Fetched(uid, size, headers=headers))
                        continue
                raw = b"\r\n".join(client.retr(number)[1]) + b"\r\n"
                fetched.append(Fetched(uid, size, raw=raw))
            except poplib.error_proto as exc:
                if _closed(exc):
                    raise
                # The session is mid-response and cannot be trusted any more; report this
                # message and let the next poll carry on with the others.
                fetched.append(Fetched(uid, size, error=f"unreadable on the POP3 server: {_pop3_reply(exc)}"))
                broken = True
                break
        present = set(numbers)
    except poplib.error_proto as exc:
        broken = True
        if _closed(exc):
            raise MailUnavailable(f"POP3 connection to {settings.pop3.where} lost (closed by the server)") from None
        raise MailUnavailable(f"POP3 server {settings.pop3.where} said {_pop3_reply(exc)}") from None
    except OSError as exc:
        broken = True
        detail = _describe_os_error(exc)
        raise MailUnavailable(f"POP3 connection to {settings.pop3.where} lost: {detail}") from None
    finally:
        try:
            if broken:
                client.close()
            else:
                client.quit()  # commits the deletions
        except (poplib.error_proto, OSError):
            broken = True
            client.close()
    return PollResult(fetched, present, set() if broken else deleted)
