"""Email through the apps' baseline: the embedded mail server (aiosmtpd + Dovecot) runs beside the
receiver, in its namespace, as a mail provider near the receiver would.

The sender submits over SMTP with STARTTLS and polls its own mailbox over POP3S for the answer,
both across the emulated link; the receiver polls its mailbox and mails the answer over the local
address (no link in between). Passwords travel as file paths, never in the results.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from apps.mail.server import EmbeddedMailServer
from apps.transport import OutgoingImage, ReceivedImage, TransportError
from apps.transports.email import EmailReceiver, EmailSender
from apps.transports.email_settings import MailSettings, Security, ServerEndpoint, read_password
from benchmarks.endpoints import JSON, EndpointOptions, Handler, Sent
from benchmarks.workloads import BenchImage

SENDER = "sender@snip.test"
RECEIVER = "receiver@snip.test"
DEFAULT_POLL_S = 0.2  # generous to email: real clients poll every few minutes
_MAX_IMAGE = 64 << 20


def unavailable() -> str | None:
    from apps.mail.dovecot import dovecot_problem

    return dovecot_problem()


def _poll(options: EndpointOptions) -> float:
    return float(options.extra.get("poll", DEFAULT_POLL_S))


class MailBenchReceiver:
    def __init__(self, server: EmbeddedMailServer, receiver: EmailReceiver, task: asyncio.Task[None],
                 stop: asyncio.Event) -> None:
        self._server = server
        self._receiver = receiver
        self._task = task
        self._stop = stop
        info = server.info
        self.info: JSON = {
            "host": info.host,
            "smtp_port": info.smtp_port,
            "pop3s_port": info.pop3s_port,
            "ca_file": str(info.ca_file),
            "password_file": str(info.accounts[SENDER].password_file),
        }

    async def stop(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, 5.0)
        except (TimeoutError, TransportError):
            self._task.cancel()
        await asyncio.to_thread(self._server.stop)

    def stats(self) -> JSON:
        return self._receiver.stats()


async def start_receiver(options: EndpointOptions, handler: Handler) -> MailBenchReceiver:
    server = EmbeddedMailServer(host=options.host, users=[SENDER, RECEIVER], max_message_bytes=_MAX_IMAGE * 2)
    info = await asyncio.to_thread(server.start)
    try:
        settings = info.client_settings(RECEIVER, poll_interval=_poll(options), timeout=options.timeout)
        receiver = EmailReceiver(settings, max_image_bytes=_MAX_IMAGE, max_concurrent=4, shutdown_grace=1.0)

        async def on_image(image: ReceivedImage) -> JSON:
            return await handler(image.name, image.data, image.peer)

        stop = asyncio.Event()
        task = asyncio.create_task(receiver.serve(on_image, stop))
        ready = asyncio.create_task(receiver.wait_listening())
        done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()
            raise TransportError("the email receiver stopped before its first poll")
    except BaseException:
        await asyncio.to_thread(server.stop)
        raise
    return MailBenchReceiver(server, receiver, task, stop)


async def _one(image: OutgoingImage) -> AsyncIterator[OutgoingImage]:
    yield image


class MailBenchSender:
    def __init__(self, options: EndpointOptions, peer: JSON) -> None:
        password = read_password(str(peer["password_file"]), None)
        host = str(peer.get("host") or options.host)
        settings = MailSettings(
            address=SENDER,
            smtp=ServerEndpoint(host, int(peer["smtp_port"]), Security.STARTTLS, SENDER, password),
            pop3=ServerEndpoint(host, int(peer["pop3s_port"]), Security.TLS, SENDER, password),
            ca_file=str(peer["ca_file"]),
            timeout=options.timeout,
            poll_interval=_poll(options),
        )
        self.sender = EmailSender(settings, RECEIVER, reply_timeout=options.timeout, max_inflight=1)
        self.last: JSON = {}

    async def open(self) -> None:
        """SMTP login and the mailbox snapshot happen with the first (warm-up) image."""

    async def send(self, image: BenchImage) -> Sent:
        outgoing = OutgoingImage(image.name, image.content_type, image.data)
        try:
            outcome = (await self.sender.send_all(_one(outgoing), want_reply=True))[0]
        except TransportError as exc:
            return Sent(None, None, str(exc))
        self.last = dict(outcome.stats)
        smtp_s = outcome.stats.get("smtp_s")
        acked = float(smtp_s) if isinstance(smtp_s, int | float) else None
        if not outcome.delivered:
            return Sent(acked, None, outcome.error or "not delivered", outcome.stats)
        return Sent(acked, outcome.reply, outcome.error, outcome.stats)

    def stats(self) -> JSON:
        return {"last_image": self.last}

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.sender.aclose(), 3.0)


def make_sender(options: EndpointOptions, peer: JSON) -> MailBenchSender:
    return MailBenchSender(options, peer)
