"""Sender side of the email baseline: each image as a mail over SMTP, replies polled over POP3.

Images are submitted one after another on one logged-in SMTP connection, without waiting for
their answers (up to ``max_inflight`` unanswered); a poller reads the sender's own mailbox every
``poll_interval`` and matches answers to images by In-Reply-To/References against the Message-IDs
it sent. Mail that was in the mailbox before the first image, or that answers nothing of ours, is
left alone (and, when larger than a reply can be, only its headers are read).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apps.transport import JSON, OutgoingImage, Progress, ProgressCallback, SendOutcome, TransportError
from apps.transports.email_client import (
    MailRejected,
    MailUnavailable,
    PollResult,
    SmtpOutbox,
    poll_mailbox,
)
from apps.transports.email_message import Reply, build_image_message, parse_reply, thread_ids
from apps.transports.email_settings import MailSettings
from apps.transports.windowed import WindowedSender

log = logging.getLogger("snip.email")

MAX_REPLY_BYTES = 16 << 20
PEEK_ABOVE = 64 << 10  # answers are small; bigger mail is looked at by its headers first


class _ReplyBox:
    """Polls the sender's mailbox while answers are awaited and hands each to its waiter."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self.waiters: dict[str, asyncio.Future[Reply]] = {}
        self.ours: set[str] = set()  # every Message-ID sent: late answers to them are ours too
        self.seen: set[str] = set()
        self.to_delete: set[str] = set()
        self.last_error: str | None = None
        self.polls = 0
        self._task: asyncio.Task[None] | None = None
        self._snapshot_taken = False

    async def snapshot(self) -> None:
        """Log in and note what is already there (it predates our images); MailUnavailable if we cannot."""
        if self._snapshot_taken:
            return
        result = await asyncio.to_thread(
            poll_mailbox, self.settings, skip=(), delete=(), max_bytes=0, peek_above=0,
            wanted=lambda _h: False, batch=0,
        )
        self.seen |= result.present
        self._snapshot_taken = True

    def expect(self, message_id: str) -> asyncio.Future[Reply]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.waiters[message_id] = future
        self.ours.add(message_id)
        return future

    def forget(self, message_id: str) -> None:
        future = self.waiters.pop(message_id, None)
        if future is not None and not future.done():
            future.cancel()

    def wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll_loop(), name="email-reply-poller")

    def _is_ours(self, headers: bytes) -> bool:
        return any(mid in self.ours for mid in thread_ids(headers))

    async def poll_once(self) -> PollResult:
        self.polls += 1
        return await asyncio.to_thread(
            poll_mailbox, self.settings, skip=self.seen, delete=set(self.to_delete),
            max_bytes=MAX_REPLY_BYTES, peek_above=PEEK_ABOVE, wanted=self._is_ours,
        )

    async def _poll_loop(self) -> None:
        while self.waiters:
            try:
                result = await self.poll_once()
            except MailUnavailable as exc:
                # Answers wait on the server; keep trying until the images' reply timeouts.
                self.last_error = str(exc)
                log.warning("email: polling for replies failed: %s", exc)
            else:
                self.last_error = None
                self._take(result)
            if self.waiters:
                await asyncio.sleep(self.settings.poll_interval)

    def _take(self, result: PollResult) -> None:
        self.to_delete -= result.deleted
        self.seen &= result.present  # forget UIDs that left the mailbox
        for item in result.fetched:
            self.seen.add(item.uid)
            if item.raw is None:
                continue
            try:
                reply = parse_reply(item.raw)
            except Exception as exc:  # a stranger's broken mail must not stop the poller
                log.debug("email: unreadable message %s in the sender's mailbox: %s", item.uid, exc)
                continue
            matched = [mid for mid in reply.in_reply_to if mid in self.ours]
            if not matched:
                continue
            if not self.settings.keep:
                self.to_delete.add(item.uid)
            future = self.waiters.pop(matched[0], None)
            if future is not None and not future.done():
                future.set_result(reply)
            else:
                log.debug("email: answer to %s arrived after its image was given up", matched[0])

    async def flush_deletions(self) -> None:
        if self.to_delete:
            try:
                result = await self.poll_once()
                self.to_delete -= result.deleted
            except MailUnavailable as exc:
                log.warning("email: could not delete answered mail: %s", exc)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for mid in list(self.waiters):
            self.forget(mid)


class EmailSender(WindowedSender):
    """Sends images by email to ``recipient`` and collects the JSON answers from its own mailbox."""

    def __init__(
        self,
        settings: MailSettings,
        recipient: str,
        *,
        reply_timeout: float = 120.0,
        max_inflight: int = 16,
    ) -> None:
        if "@" not in recipient:
            raise TransportError(f"{recipient!r} is not a mail address")
        self.settings = settings
        self.recipient = recipient
        self.reply_timeout = reply_timeout
        super().__init__(max_inflight)
        self._outbox = SmtpOutbox(settings)
        self._replies = _ReplyBox(settings)

    async def _prepare(self, want_reply: bool) -> None:
        try:
            await self._outbox.connect()  # bad credentials or no server: fail before any image
            if want_reply:
                await self._replies.snapshot()
        except MailUnavailable as exc:
            raise TransportError(str(exc)) from None

    async def aclose(self) -> None:
        await self._replies.aclose()
        await self._replies.flush_deletions()
        await self._outbox.aclose()

    async def _deliver_one(
        self,
        index: int,
        image: OutgoingImage,
        want_reply: bool,
        submitted: float,
        on_progress: ProgressCallback | None,
    ) -> SendOutcome:
        loop = asyncio.get_running_loop()
        size = len(image.data)
        stats: JSON = {"transport": "email"}

        def outcome(
            delivered: bool, error: str | None = None, *, reply: JSON | None = None, replied: bool = False
        ) -> SendOutcome:
            elapsed = loop.time() - submitted
            return SendOutcome(
                image.name, index, size, delivered, reply=reply, error=error, elapsed_s=elapsed,
                reply_elapsed_s=elapsed if replied else None, stats=stats,
            )

        def progress(done: int) -> None:
            if on_progress is not None:
                on_progress(Progress(image.name, index, done, size))

        expires = None if image.deadline is None else submitted + image.deadline
        if expires is not None and loop.time() >= expires:
            stats["expired"] = True
            return outcome(False, f"deadline of {image.deadline:g} s passed before sending")
        message, message_id = await asyncio.to_thread(
            build_image_message, sender=self.settings.address, recipient=self.recipient,
            name=image.name, content_type=image.content_type, data=image.data, want_reply=want_reply,
        )
        stats.update(message_id=message_id, message_bytes=len(message), bytes_sent=len(message))
        waiter = self._replies.expect(message_id) if want_reply else None
        progress(0)
        try:
            await self._outbox.send([self.recipient], message)
        except MailRejected as exc:
            self._replies.forget(message_id)
            return outcome(False, f"the SMTP server refused {image.name!r}: {exc}")
        except MailUnavailable as exc:
            self._replies.forget(message_id)
            raise TransportError(str(exc)) from None
        stats["smtp_s"] = loop.time() - submitted
        progress(size)
        if waiter is None:
            # Without an answer, acceptance by the submission server is all email can confirm.
            stats["confirmed_by"] = "smtp"
            return outcome(True)
        self._replies.wake()
        budget = self.reply_timeout
        if expires is not None:
            budget = min(budget, max(expires - loop.time(), 0.0))
        try:
            async with asyncio.timeout(budget):
                reply = await waiter
        except TimeoutError:
            self._replies.forget(message_id)
            if expires is not None and loop.time() >= expires:
                stats["expired"] = True
            detail = f" (last POP3 error: {self._replies.last_error})" if self._replies.last_error else ""
            return outcome(False, f"no answer within {budget:g} s; the mail was accepted by SMTP{detail}")
        stats["confirmed_by"] = "reply"
        stats["polls"] = self._replies.polls
        if not reply.ok:
            return outcome(False, f"the receiver could not handle {image.name!r}: {reply.error}")
        return outcome(True, reply=_as_json(reply.value), replied=True)


def _as_json(value: Any) -> JSON | None:
    return value if isinstance(value, dict) else None
