"""Building and reading the email baseline's messages, and its settings (no server needed)."""

from __future__ import annotations

import argparse
import base64
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from apps.transport import TransportError
from apps.transports import email as email_transport
from apps.transports.email_message import (
    build_image_message,
    build_reply,
    parse_image_request,
    parse_reply,
    request_from_headers,
    thread_ids,
)
from apps.transports.email_settings import Security, load_config_file, settings_from_sources

from .conftest import sha

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def _message(**parts: bytes | str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "rx@example.com"
    msg["Subject"] = "hello"
    msg["Message-ID"] = "<m1@example.com>"
    msg.set_content("see attached")
    for name, data in parts.items():
        if isinstance(data, bytes):
            maintype, subtype = ("image", "png") if name.endswith(".png") else ("application", "pdf")
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=SMTP)


def test_image_message_round_trips_bit_exact() -> None:
    raw, msg_id = build_image_message(
        sender="tx@snip.test", recipient="rx@snip.test", name="cat.png", content_type="image/png",
        data=PNG, want_reply=True,
    )
    assert msg_id.startswith("<") and msg_id.endswith("@snip.test>")
    assert b"\r\n" in raw and max(len(line) for line in raw.split(b"\r\n")) <= 998
    request = parse_image_request(raw, max_image_bytes=1 << 20)
    assert request.error is None
    assert request.message_id == msg_id and request.reply_to == "tx@snip.test" and request.want_reply
    [image] = request.images
    assert (image.name, image.content_type, sha(image.data)) == ("cat.png", "image/png", sha(PNG))
    assert "snip image cat.png 20" in request.subject  # the subject carries a timestamp


def test_unicode_names_and_odd_content_types_survive() -> None:
    raw, _ = build_image_message(
        sender="tx@snip.test", recipient="rx@snip.test", name="chat-été 1.jpg",
        content_type="Image/JPEG; q=1", data=PNG, want_reply=False,
    )
    request = parse_image_request(raw, max_image_bytes=1 << 20)
    [image] = request.images
    assert (image.name, image.content_type, image.data) == ("chat-été 1.jpg", "image/jpeg", PNG)
    assert not request.want_reply


def test_reply_is_threaded_to_the_image_and_carries_the_json() -> None:
    raw, msg_id = build_image_message(
        sender="tx@snip.test", recipient="rx@snip.test", name="cat.png", content_type="image/png",
        data=PNG, want_reply=True,
    )
    request = parse_image_request(raw, max_image_bytes=1 << 20)
    answer = build_reply(request, sender="rx@snip.test", value={"label": "cat", "p": 0.97}, ok=True)
    assert thread_ids(answer)[0] == msg_id
    reply = parse_reply(answer)
    assert reply.ok and reply.value == {"label": "cat", "p": 0.97} and msg_id in reply.in_reply_to
    error = parse_reply(build_reply(request, sender="rx@snip.test", value={"error": "no"}, ok=False))
    assert not error.ok and error.error == "no"
    # Replies are marked automatic, so that no robot answers them in turn.
    assert parse_image_request(answer, max_image_bytes=1).automatic


@pytest.mark.parametrize(
    ("raw", "kind", "text"),
    [
        (_message(), "no_image", "no image attached"),
        (_message(**{"doc.pdf": b"%PDF-1.4"}), "not_image", "doc.pdf (application/pdf)"),
        (_message(**{"cat.png": PNG}), "oversized", "accepts at most 100"),
        (b"garbage without any header\r\n\r\n\x00\x01", "malformed", "no headers"),
    ],
)
def test_bad_requests_are_one_clear_error(raw: bytes, kind: str, text: str) -> None:
    request = parse_image_request(raw, max_image_bytes=100)
    assert request.images == [] and request.error_kind == kind
    assert request.error is not None and text in request.error


def test_damaged_base64_is_reported() -> None:
    good = _message(**{"cat.png": PNG})
    body_start = good.index(b"\r\n\r\n", good.index(b"cat.png")) + 4
    damaged = good[:body_start] + b"!!!not base64 at all@@@\r\n" + good[body_start + 30 :]
    request = parse_image_request(damaged, max_image_bytes=1 << 20)
    assert request.error_kind == "malformed" and "base64" in (request.error or "")


def test_digest_mismatch_is_reported() -> None:
    raw, _ = build_image_message(
        sender="tx@snip.test", recipient="rx@snip.test", name="cat.png", content_type="image/png",
        data=PNG, want_reply=True,
    )
    tampered = raw.replace(sha(PNG).encode(), b"0" * 64, 1)  # the header comes first
    request = parse_image_request(tampered, max_image_bytes=1 << 20)
    assert request.error_kind == "digest_mismatch"


def test_octet_stream_named_like_an_image_is_accepted_and_names_are_made_safe() -> None:
    msg = EmailMessage()
    msg["From"] = "bob@example.com"
    msg["Message-ID"] = "<m2@example.com>"
    msg.set_content("x")
    msg.add_attachment(PNG, maintype="application", subtype="octet-stream", filename="../../etc/photo.png")
    request = parse_image_request(msg.as_bytes(), max_image_bytes=1 << 20)
    [image] = request.images
    assert (image.name, image.content_type) == ("photo.png", "image/png")


def test_headers_alone_still_say_whom_to_answer() -> None:
    raw = _message(**{"cat.png": PNG})
    headers = raw[: raw.index(b"\r\n\r\n") + 4]
    request = request_from_headers(headers)
    assert request.reply_to == "alice@example.com" and request.message_id == "<m1@example.com>"


# --- settings ------------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_config_file_and_password_file(tmp_path: Path) -> None:
    _write(tmp_path, "pw", "s3cret\n")
    config = _write(tmp_path, "mail.toml", """
address = "me@example.com"
password_file = "pw"
poll_interval = 2.5
[smtp]
host = "smtp.example.com"
security = "tls"
[pop3]
host = "pop.example.com"
""")
    settings = settings_from_sources(load_config_file(str(config)))
    assert settings.address == "me@example.com" and settings.poll_interval == 2.5
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.security) == ("smtp.example.com", 465, Security.TLS)
    assert (settings.pop3.port, settings.pop3.security, settings.pop3.user) == (995, Security.TLS, "me@example.com")
    assert settings.smtp.password == "s3cret" and "s3cret" not in repr(settings)


def test_password_from_environment_and_options_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path, "mail.toml", 'address = "me@example.com"\n[smtp]\nhost = "a"\n[pop3]\nhost = "b"\n')
    monkeypatch.setenv("MY_MAIL_PW", "from-env")
    parser = argparse.ArgumentParser()
    email_transport.add_arguments(parser, "sender")
    args = parser.parse_args([
        "--mail-config", str(config), "--mail-password-env", "MY_MAIL_PW", "--smtp-security", "starttls",
        "--pop3-port", "1995", "--mail-poll-interval", "0.5",
    ])
    tx = email_transport.sender_from_args(args, "rx@example.com")
    assert tx.settings.smtp.password == "from-env" and tx.settings.smtp.port == 587
    assert tx.settings.pop3.port == 1995 and tx.settings.poll_interval == 0.5
    with pytest.raises(TransportError, match="receiver's mail address"):
        email_transport.sender_from_args(args, "10.0.0.1:9000")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('address = "me@x"\npassword = "oops"\n', "not in the config"),
        ('address = "me@x"\npassword_env = "SNIP_TEST_UNSET_VAR"\n[smtp]\nhost="a"\n[pop3]\nhost="b"\n',
         "SNIP_TEST_UNSET_VAR"),
        ('address = "me@x"\npassword_file = "missing"\n', "cannot read the mail password file"),
        ('address = "me@x"\n[smtp\n', "not valid TOML"),
    ],
)
def test_config_errors_are_clear(tmp_path: Path, text: str, message: str) -> None:
    config = _write(tmp_path, "mail.toml", text)
    with pytest.raises(TransportError, match=message):
        settings_from_sources(load_config_file(str(config)))


def test_missing_host_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNIP_MAIL_PASSWORD", "pw")
    with pytest.raises(TransportError, match="no SMTP host"):
        settings_from_sources({"address": "me@x"})


def test_receiver_factory_uses_an_address_as_listen_and_generic_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNIP_MAIL_PASSWORD", "pw")
    parser = argparse.ArgumentParser()
    email_transport.add_arguments(parser, "receiver")
    args = parser.parse_args(["--mail-address", "rx@x", "--smtp-host", "s", "--pop3-host", "p", "--mail-keep"])
    args.max_size, args.max_transfers, args.grace = 1000, 3, 2.0
    rx = email_transport.receiver_from_args(args, "0.0.0.0:9000")
    assert rx.settings.address == "rx@x" and rx.settings.keep and rx.max_image_bytes == 1000
    other = email_transport.receiver_from_args(args, "images@x")
    assert other.settings.address == "images@x"


def test_base64_sanity_of_the_fixture() -> None:
    # Guards the damaged-base64 test above: the fixture really is base64 on the wire.
    assert base64.b64encode(PNG[:30])[:10] in _message(**{"cat.png": PNG})
