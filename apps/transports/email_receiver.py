"""Receiver side of the email baseline: poll a mailbox over POP3, answer each image over SMTP.

Every ``poll_interval`` the receiver opens a POP3 session, deletes what it finished since the last
one (unless ``keep``), and fetches what it has not seen (by UIDL). Each message is read in a
worker thread; its images go to the handler, and the JSON goes back to the sender as a reply
(In-Reply-To set). A message without an image, with a non-image attachment, too large or
malformed gets an error reply when it names a sender, and a log line always. Nothing is deleted
before it was answered; an answer that could not be sent because the SMTP server was unreachable
is retried on a later poll, a few times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from apps.transport import JSON, ImageHandler, ReceivedImage, TransportError
from apps.transports.email_client import (
    Fetched,
    MailRejected,
    MailUnavailable,
    PollResult,
    SmtpOutbox,
    poll_mailbox,
)
from apps.transports.email_message import (
    ImageRequest,
    build_reply,
    parse_image_request,
    request_from_headers,
)
from apps.transports.email_settings import MailSettings

log = logging.getLogger("snip.email")

# Base64 makes a mail about 4/3 of its attachment; what is bigger than that is not fetched at all.
_ENCODING_OVERHEAD = 1.4
_HEADROOM = 64 << 10


class _ReplyNotSent(Exception):
    """The answer could not go out now (SMTP server unreachable): try the message again later."""


class EmailReceiver:
    """Serves images mailed to ``settings.address``, answering each by mail.

    ``seen_file`` keeps the UIDs already handled across restarts (useful with ``keep``); without it
    a restarted receiver handles again what is still in the mailbox.
    """

    def __init__(
        self,
        settings: MailSettings,
        *,
        max_image_bytes: int = 25 << 20,
        max_concurrent: int = 8,
        max_attempts: int = 3,
        seen_file: Path | None = None,
        shutdown_grace: float = 5.0,
    ) -> None:
        self.settings = settings
        self.max_image_bytes = max_image_bytes
        self.max_message_bytes = int(max_image_bytes * _ENCODING_OVERHEAD) + _HEADROOM
        self.max_attempts = max_attempts
        self.seen_file = seen_file
        self.shutdown_grace = shutdown_grace
        self._slots = asyncio.Semaphore(max_concurrent)
        self._outbox = SmtpOutbox(settings)
        self._seen: set[str] = set()
        self._in_progress: set[str] = set()
        self._to_delete: set[str] = set()
        self._peek_only: set[str] = set()
        self._attempts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listening = asyncio.Event()
        self._counts: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()

    async def wait_listening(self) -> str:
        """The mailbox address, once the first poll succeeded."""
        await self._listening.wait()
        return self.settings.address

    def stats(self) -> JSON:
        return {
            "transport": "email",
            "address": self.settings.address,
            "pop3": self.settings.pop3.where,
            "smtp": self.settings.smtp.where,
            "in_progress": len(self._in_progress),
            **dict(self._counts),
            "errors": dict(self._errors),
        }

    async def serve(self, handler: ImageHandler, stop: asyncio.Event) -> None:
        self._load_seen()
        try:
            await self._outbox.connect()  # wrong credentials or no server: say so at once
            result = await self._poll()
        except MailUnavailable as exc:
            await self._outbox.aclose()
            raise TransportError(str(exc)) from None
        self._listening.set()
        log.info("email: serving %s (POP3 %s, SMTP %s)", self.settings.address,
                 self.settings.pop3.where, self.settings.smtp.where)
        try:
            while True:
                self._dispatch(result, handler)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_interval):
                        await stop.wait()
                if stop.is_set():
                    break
                try:
                    result = await self._poll()
                except MailUnavailable as exc:
                    self._errors["poll"] += 1
                    log.warning("email: polling %s failed: %s", self.settings.address, exc)
                    result = PollResult([], set(), set())
        finally:
            await self._finish()

    async def _finish(self) -> None:
        if self._tasks:
            _done, late = await asyncio.wait(self._tasks, timeout=self.shutdown_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._to_delete:
            with contextlib.suppress(MailUnavailable):
                await self._poll(fetch=False)
        self._save_seen()
        await self._outbox.aclose()
        self._listening.clear()

    async def _poll(self, *, fetch: bool = True) -> PollResult:
        self._counts["polls"] += 1
        result = await asyncio.to_thread(
            poll_mailbox, self.settings, skip=self._seen | self._in_progress, delete=set(self._to_delete),
            max_bytes=self.max_message_bytes, peek_above=self.max_message_bytes,
            peek_only=set(self._peek_only), batch=64 if fetch else 0,
        )
        self._to_delete -= result.deleted
        self._seen &= result.present | self._in_progress  # forget UIDs that left the mailbox
        return result

    def _dispatch(self, result: PollResult, handler: ImageHandler) -> None:
        for item in result.fetched:
            self._in_progress.add(item.uid)
            task = asyncio.create_task(self._process(item, handler), name=f"email-message-{item.uid}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, item: Fetched, handler: ImageHandler) -> None:
        async with self._slots:
            done = True
            try:
                await self._handle_message(item, handler)
            except _ReplyNotSent as exc:
                self._attempts[item.uid] += 1
                if self._attempts[item.uid] < self.max_attempts:
                    done = False
                    log.warning("email: %s; will try message %s again", exc, item.uid)
                else:
                    log.error("email: %s; giving message %s up", exc, item.uid)
            except Exception:
                self._errors["internal"] += 1
                log.exception("email: message %s could not be processed", item.uid)
            finally:
                self._in_progress.discard(item.uid)
                if done:
                    self._seen.add(item.uid)
                    self._peek_only.discard(item.uid)
                    self._attempts.pop(item.uid, None)
                    if not self.settings.keep:
                        self._to_delete.add(item.uid)
                    self._save_seen()  # so that a crash does not make it handled twice

    async def _handle_message(self, item: Fetched, handler: ImageHandler) -> None:
        if item.error is not None:
            if item.uid in self._peek_only:  # even its headers cannot be read: nobody to answer
                self._errors["malformed"] += 1
                log.warning("email: message %s is unreadable (%s); dropping it", item.uid, item.error)
                return
            # Come back for its headers alone, to tell the sender.
            self._peek_only.add(item.uid)
            raise _ReplyNotSent(f"message {item.uid} {item.error}")
        if item.raw is None:
            headers = item.headers or b""
            request = await asyncio.to_thread(request_from_headers, headers)
            if item.uid in self._peek_only:
                kind, error = "malformed", "the message could not be read (lines longer than POP3 allows?)"
            else:
                kind, error = "oversized", (
                    f"the message is {item.size} bytes; this receiver accepts images up to "
                    f"{self.max_image_bytes} bytes (about {self.max_message_bytes} bytes of mail)"
                )
            await self._refuse(request, kind, error)
            return
        self._counts["messages"] += 1
        request = await asyncio.to_thread(parse_image_request, item.raw, max_image_bytes=self.max_image_bytes)
        if request.error is not None:
            await self._refuse(request, request.error_kind or "malformed", request.error)
            return
        for position, attachment in enumerate(request.images):
            transfer = request.message_id or f"uid:{item.uid}"
            image = ReceivedImage(
                name=attachment.name,
                content_type=attachment.content_type,
                data=attachment.data,
                peer=request.reply_to or "unknown sender",
                transfer_id=transfer if position == 0 else f"{transfer}#{position}",
                stats={"transport": "email", "message_bytes": item.size, "uid": item.uid,
                       "message_id": request.message_id},
            )
            self._counts["images_received"] += 1
            value, ok = await self._run_handler(handler, image)
            if ok and not request.want_reply:
                continue
            name = attachment.name if len(request.images) > 1 else None
            await self._answer(request, value, ok=ok, image_name=name)

    async def _run_handler(self, handler: ImageHandler, image: ReceivedImage) -> tuple[Any, bool]:
        """The handler's JSON and True, or an error object and False."""
        try:
            value = await handler(image)
        except Exception as exc:
            self._errors["handler"] += 1
            log.exception("email: handler failed on %r from %s", image.name, image.peer)
            return {"error": f"handler failed: {type(exc).__name__}: {exc}"}, False
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            self._errors["handler"] += 1
            return {"error": f"handler reply is not JSON: {exc}"}, False
        return value, True

    async def _refuse(self, request: ImageRequest, kind: str, error: str) -> None:
        self._errors[kind] += 1
        who = request.reply_to or "an unknown sender"
        log.warning("email: message %s from %s: %s", request.message_id or "(no Message-ID)", who, error)
        await self._answer(request, {"error": error}, ok=False)

    async def _answer(
        self, request: ImageRequest, value: Any, *, ok: bool, image_name: str | None = None
    ) -> None:
        if request.reply_to is None or request.automatic:
            return  # nobody to tell, or a robot that must not be answered (mail loops)
        message = build_reply(
            request, sender=self.settings.address, value=value, ok=ok, image_name=image_name
        )
        try:
            await self._outbox.send([request.reply_to], message)
        except MailRejected as exc:
            self._errors["reply_refused"] += 1
            log.warning("email: the SMTP server refused the answer to %s: %s", request.reply_to, exc)
            return
        except MailUnavailable as exc:
            self._errors["reply_failed"] += 1
            raise _ReplyNotSent(f"could not answer {request.reply_to}: {exc}") from None
        self._counts["replies_sent" if ok else "error_replies_sent"] += 1

    def _load_seen(self) -> None:
        if self.seen_file is None or not self.seen_file.exists():
            return
        try:
            self._seen = set(json.loads(self.seen_file.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise TransportError(f"cannot read {self.seen_file}: {exc}") from None

    def _save_seen(self) -> None:
        if self.seen_file is None:
            return
        try:
            tmp = self.seen_file.with_suffix(self.seen_file.suffix + ".tmp")
            tmp.write_text(json.dumps(sorted(self._seen)))
            tmp.replace(self.seen_file)
        except OSError as exc:
            log.error("email: cannot save %s: %s", self.seen_file, exc)

