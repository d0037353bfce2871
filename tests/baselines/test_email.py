"""The email baseline end to end through the embedded mail server (aiosmtpd + Dovecot) on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import smtplib
import socket
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest

from apps.transport import OutgoingImage, ReceivedImage, TransportError
from apps.transports.email import EmailReceiver, EmailSender
from apps.transports.email_client import poll_mailbox
from apps.transports.email_message import parse_reply
from apps.transports.email_settings import MailSettings, Security

from .conftest import MAIL_LIMIT, DigestHandler, aiter_images, make_images, random_bytes, run, serving, sha

POLL = 0.05  # fast polling keeps the suite quick; the default for this server is 0.2 s


def settings(mail: Any, address: str, **options: Any) -> MailSettings:
    return mail.client_settings(address, poll_interval=POLL, timeout=5.0, **options)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("smtp", "pop3"), [("starttls", "tls"), ("tls", "starttls")])
def test_image_round_trip_over_tls(mail_server: Any, mail_pair: tuple[str, str], smtp: str, pop3: str) -> None:
    tx_addr, rx_addr = mail_pair
    data = random_bytes(1 << 20)
    handler = DigestHandler()

    async def main() -> None:
        rx = EmailReceiver(settings(mail_server, rx_addr, smtp=smtp, pop3=pop3))
        async with serving(rx, handler):
            tx = EmailSender(settings(mail_server, tx_addr, smtp=smtp, pop3=pop3), rx_addr)
            try:
                [outcome] = await tx.send_all(
                    aiter_images([OutgoingImage("photo.jpg", "image/jpeg", data)]), want_reply=True
                )
            finally:
                await tx.aclose()
        assert outcome.delivered, outcome.error
        assert outcome.reply == {"sha256": sha(data), "size": len(data), "name": "photo.jpg"}
        assert outcome.stats["confirmed_by"] == "reply" and outcome.reply_elapsed_s is not None
        [seen] = handler.seen
        assert sha(seen.data) == sha(data) and seen.content_type == "image/jpeg" and seen.peer == tx_addr
        assert seen.transfer_id == outcome.stats["message_id"]

    run(main())


def test_replies_are_matched_when_several_images_are_in_flight(
    mail_server: Any, mail_pair: tuple[str, str]
) -> None:
    tx_addr, rx_addr = mail_pair
    images = make_images(5, size=20_000)

    class Shuffling(DigestHandler):
        async def __call__(self, image: ReceivedImage) -> Any:
            # Answer in the opposite order of arrival, so replies cross.
            await asyncio.sleep(0.05 * (4 - int(image.name[3])))
            return await super().__call__(image)

    async def main() -> None:
        rx = EmailReceiver(settings(mail_server, rx_addr))
        async with serving(rx, Shuffling()):
            tx = EmailSender(settings(mail_server, tx_addr), rx_addr, max_inflight=5)
            try:
                outcomes = await tx.send_all(aiter_images(images), want_reply=True)
            finally:
                await tx.aclose()
        for image, outcome in zip(images, outcomes, strict=True):
            assert outcome.delivered, outcome.error
            assert outcome.reply is not None
            assert (outcome.reply["name"], outcome.reply["sha256"]) == (image.name, sha(image.data))

    run(main())


def test_without_reply_smtp_acceptance_is_the_confirmation(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    tx_addr, rx_addr = mail_pair
    handler = DigestHandler()

    async def main() -> None:
        rx = EmailReceiver(settings(mail_server, rx_addr))
        async with serving(rx, handler):
            tx = EmailSender(settings(mail_server, tx_addr), rx_addr)
            try:
                outcomes = await tx.send_all(aiter_images(make_images(3)), want_reply=False)
            finally:
                await tx.aclose()
            assert all(o.delivered and o.stats["confirmed_by"] == "smtp" for o in outcomes)
            await _until(lambda: len(handler.seen) == 3)
        assert "replies_sent" not in rx.stats()

    run(main())


def test_handler_failure_reaches_the_sender(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    tx_addr, rx_addr = mail_pair

    async def main() -> None:
        rx = EmailReceiver(settings(mail_server, rx_addr))
        async with serving(rx, DigestHandler(fail_on="img0.png")):
            tx = EmailSender(settings(mail_server, tx_addr), rx_addr)
            try:
                [outcome] = await tx.send_all(aiter_images(make_images(1)), want_reply=True)
            finally:
                await tx.aclose()
        assert not outcome.delivered and "classifier exploded" in (outcome.error or "")

    run(main())


def test_message_over_the_servers_limit_is_refused_and_the_next_goes_through(
    mail_server: Any, mail_pair: tuple[str, str]
) -> None:
    tx_addr, rx_addr = mail_pair
    images = [OutgoingImage("huge.png", "image/png", bytes(MAIL_LIMIT)), *make_images(1)]

    async def main() -> None:
        rx = EmailReceiver(settings(mail_server, rx_addr))
        async with serving(rx, DigestHandler()):
            tx = EmailSender(settings(mail_server, tx_addr), rx_addr)
            try:
                outcomes = await tx.send_all(aiter_images(images), want_reply=True)
            finally:
                await tx.aclose()
        assert not outcomes[0].delivered and "SMTP server refused 'huge.png'" in (outcomes[0].error or "")
        assert "552" in (outcomes[0].error or "")
        assert outcomes[1].delivered and outcomes[1].reply is not None

    run(main())


# --- bad input reaching the receiver -------------------------------------------------------------


def _mail(sender: str, recipient: str, msg_id: str, *, attach: tuple[str, str, bytes] | None = None,
          body: str = "hi") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = sender, recipient, "test", msg_id
    msg.set_content(body)
    if attach is not None:
        name, ctype, data = attach
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=SMTP)  # CRLF line ends: smtplib sends bytes as they are


def test_bad_messages_get_error_replies_and_the_receiver_keeps_serving(
    mail_server: Any, mail_pair: tuple[str, str]
) -> None:
    tx_addr, rx_addr = mail_pair
    good_png = b"\x89PNG" + bytes(1000)
    cases = {
        "<noimage@t>": (_mail(tx_addr, rx_addr, "<noimage@t>"), "no image attached"),
        "<pdf@t>": (_mail(tx_addr, rx_addr, "<pdf@t>", attach=("doc.pdf", "application/pdf", b"%PDF")),
                    "doc.pdf (application/pdf)"),
        "<bigimage@t>": (_mail(tx_addr, rx_addr, "<bigimage@t>", attach=("big.png", "image/png", bytes(20_000))),
                         "accepts at most 10000"),
        "<bigmail@t>": (_mail(tx_addr, rx_addr, "<bigmail@t>", attach=("huge.png", "image/png", bytes(300_000))),
                        "the message is"),
        "<broken@t>": (_mail(tx_addr, rx_addr, "<broken@t>", attach=("bad.png", "image/png", good_png))
                       .replace(b"iVBORw", b"!!!@@@"), "invalid base64"),
    }
    # SMTP servers refuse lines over 1000 bytes (RFC 5321), but a store may hold one; poplib cannot
    # read lines over 2048 bytes. Delivered straight into Dovecot to see the receiver cope.
    long_line = (f"From: {tx_addr}\r\nTo: {rx_addr}\r\nSubject: long\r\nMessage-ID: <longline@t>\r\n\r\n"
                 + "x" * 5000 + "\r\n").encode()
    handler = DigestHandler()

    async def main() -> None:
        rx_settings = settings(mail_server, rx_addr)
        rx = EmailReceiver(rx_settings, max_image_bytes=10_000)
        async with serving(rx, handler):
            await asyncio.to_thread(_inject, settings(mail_server, tx_addr), rx_addr,
                                    [raw for raw, _ in cases.values()])
            await asyncio.to_thread(_inject, settings(mail_server, tx_addr), rx_addr,
                                    [b"complete garbage, no headers\r\n\r\n\x00\x01\x02"])
            await asyncio.to_thread(_lmtp, mail_server.lmtp_socket, tx_addr, rx_addr, long_line)
            answers = await _collect_replies(settings(mail_server, tx_addr), len(cases) + 1)
            # Still serving, and nothing mismatched: a good image still gets its own answer.
            tx = EmailSender(settings(mail_server, tx_addr), rx_addr)
            try:
                [outcome] = await tx.send_all(aiter_images(make_images(1, size=5000)), want_reply=True)
            finally:
                await tx.aclose()
        assert outcome.delivered and outcome.reply is not None
        cases["<longline@t>"] = (long_line, "could not be read")
        for msg_id, (_raw, expected) in cases.items():
            reply = answers[msg_id]
            assert not reply.ok and expected in (reply.error or ""), (msg_id, reply.error)
        errors = rx.stats()["errors"]
        assert errors["no_image"] == 1 and errors["not_image"] == 1 and errors["oversized"] == 2
        assert errors["malformed"] >= 3  # broken base64, the long line, the garbage (no one to answer)
        assert [i.name for i in handler.seen] == ["img0.png"]

    run(main(), timeout=40)


def _lmtp(socket_path: Path, sender: str, recipient: str, raw: bytes) -> None:
    with smtplib.LMTP(str(socket_path)) as lmtp:
        lmtp.sendmail(sender, [recipient], raw)


def _inject(sender: MailSettings, recipient: str, messages: list[bytes]) -> None:
    with smtplib.SMTP(sender.smtp.host, sender.smtp.port, timeout=5) as smtp:
        smtp.starttls(context=sender.ssl_context)
        smtp.login(sender.smtp.user, sender.smtp.password)
        for raw in messages:
            smtp.sendmail(sender.address, [recipient], raw)


async def _collect_replies(mailbox: MailSettings, count: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    seen: set[str] = set()
    async with asyncio.timeout(20):
        while len(answers) < count:
            result = await asyncio.to_thread(
                poll_mailbox, mailbox, skip=seen, delete=(), max_bytes=1 << 20, peek_above=1 << 20
            )
            for item in result.fetched:
                seen.add(item.uid)
                assert item.raw is not None
                reply = parse_reply(item.raw)
                answers[reply.in_reply_to[0]] = reply
            await asyncio.sleep(POLL)
    return answers


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


# --- keep mode -----------------------------------------------------------------------------------


def test_keep_mode_with_a_seen_file_handles_each_message_once(
    mail_server: Any, mail_pair: tuple[str, str], tmp_path: Path
) -> None:
    tx_addr, rx_addr = mail_pair
    seen_file = tmp_path / "seen.json"

    async def main() -> None:
        first = DigestHandler()
        rx = EmailReceiver(settings(mail_server, rx_addr, keep=True), seen_file=seen_file)
        async with serving(rx, first):
            tx = EmailSender(settings(mail_server, tx_addr), rx_addr)
            try:
                [outcome] = await tx.send_all(aiter_images(make_images(1)), want_reply=True)
            finally:
                await tx.aclose()
        assert outcome.delivered and len(first.seen) == 1
        assert len(json.loads(seen_file.read_text())) == 1
        again = DigestHandler()
        rx2 = EmailReceiver(settings(mail_server, rx_addr, keep=True), seen_file=seen_file)
        async with serving(rx2, again):
            await _until(lambda: rx2.stats()["polls"] >= 3)
        assert again.seen == []  # the kept message was not handled a second time

    run(main())


# --- faults --------------------------------------------------------------------------------------


def test_wrong_smtp_password_is_a_transport_error(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    tx_addr, rx_addr = mail_pair
    good = settings(mail_server, tx_addr)
    bad = dataclasses.replace(good, smtp=dataclasses.replace(good.smtp, password="wrong"))

    async def main() -> None:
        tx = EmailSender(bad, rx_addr)
        with pytest.raises(TransportError, match=f"refused the login of '{tx_addr}'.*535"):
            await tx.send_all(aiter_images(make_images(1)), want_reply=True)
        await tx.aclose()

    run(main())


def test_wrong_pop3_password_stops_the_receiver_at_start(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    _tx_addr, rx_addr = mail_pair
    good = settings(mail_server, rx_addr)
    bad = dataclasses.replace(good, pop3=dataclasses.replace(good.pop3, password="wrong"))

    async def main() -> None:
        with pytest.raises(TransportError, match=r"POP3 server .* refused the login"):
            await EmailReceiver(bad).serve(DigestHandler(), asyncio.Event())

    run(main())


def test_untrusted_certificate_is_refused_with_a_hint(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    tx_addr, rx_addr = mail_pair
    untrusting = dataclasses.replace(settings(mail_server, tx_addr), ca_file=None)

    async def main() -> None:
        tx = EmailSender(untrusting, rx_addr)
        with pytest.raises(TransportError, match=r"not trusted.*--mail-ca-file"):
            await tx.send_all(aiter_images(make_images(1)), want_reply=False)
        await tx.aclose()

    run(main())


def test_login_without_tls_is_refused(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    tx_addr, rx_addr = mail_pair

    async def main() -> None:
        tx = EmailSender(settings(mail_server, tx_addr, smtp="plain"), rx_addr)
        with pytest.raises(TransportError, match="does not offer"):
            await tx.send_all(aiter_images(make_images(1)), want_reply=False)
        await tx.aclose()

    run(main())


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_server_down_is_a_transport_error(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    tx_addr, rx_addr = mail_pair
    good = settings(mail_server, tx_addr)
    port = _closed_port()
    down = dataclasses.replace(good, smtp=dataclasses.replace(good.smtp, port=port))

    async def main() -> None:
        tx = EmailSender(down, rx_addr)
        with pytest.raises(TransportError, match=f"cannot reach SMTP server 127.0.0.1:{port}"):
            await tx.send_all(aiter_images(make_images(1)), want_reply=True)
        await tx.aclose()
        rx_good = settings(mail_server, rx_addr)
        rx_down = dataclasses.replace(rx_good, pop3=dataclasses.replace(rx_good.pop3, port=port))
        with pytest.raises(TransportError, match="cannot reach POP3 server"):
            await EmailReceiver(rx_down).serve(DigestHandler(), asyncio.Event())

    run(main())


@contextlib.asynccontextmanager
async def fake_server(script: Any) -> AsyncIterator[int]:
    server = await asyncio.start_server(script, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def _smtp_dropping_in_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speaks just enough SMTP to take a login, then hangs up in the middle of DATA."""
    writer.write(b"220 fake ESMTP\r\n")
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-fake\r\n250 AUTH PLAIN\r\n")
            elif verb == b"AUTH":
                writer.write(b"235 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                await reader.read(5000)
                writer.transport.abort()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    writer.close()


def test_smtp_connection_dropped_mid_transfer(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    tx_addr, rx_addr = mail_pair
    good = settings(mail_server, tx_addr)

    async def main() -> None:
        async with fake_server(_smtp_dropping_in_data) as port:
            fake = dataclasses.replace(
                good, smtp=dataclasses.replace(good.smtp, port=port, security=Security.PLAIN)
            )
            tx = EmailSender(fake, rx_addr)
            with pytest.raises(TransportError, match="SMTP connection lost"):
                await tx.send_all(aiter_images(make_images(1, size=100_000)), want_reply=False)
            await tx.aclose()

    run(main())


async def _pop3_dropping_in_uidl(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"+OK fake POP3\r\n")
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while line := await reader.readline():
            if line.upper().startswith(b"UIDL"):
                writer.write(b"+OK\r\n1 abc\r\n")
                await writer.drain()
                writer.transport.abort()
                return
            writer.write(b"+OK\r\n")
            await writer.drain()


def test_pop3_connection_dropped_mid_transfer(mail_server: Any, mail_pair: tuple[str, str]) -> None:
    _tx_addr, rx_addr = mail_pair
    good = settings(mail_server, rx_addr)

    async def main() -> None:
        async with fake_server(_pop3_dropping_in_uidl) as port:
            fake = dataclasses.replace(
                good, pop3=dataclasses.replace(good.pop3, port=port, security=Security.PLAIN)
            )
            with pytest.raises(TransportError, match=r"POP3 connection to .* lost"):
                await EmailReceiver(fake).serve(DigestHandler(), asyncio.Event())

    run(main())
