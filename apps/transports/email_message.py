"""The messages of the email baseline, built and read with the standard library's email package.

An image goes as an attachment of a normal mail (a subject with a timestamp, a Message-ID, the
image's SHA-256 in ``X-Snip-Image-SHA256``); the answer is a reply (In-Reply-To and References
naming the image's Message-ID, ``Auto-Submitted: auto-replied``) whose text is the JSON.
Anything a mail client can send is read leniently: a reader gets either images or one clear error.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import time
from dataclasses import dataclass, field, replace
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

from apps.transport import JSON

DIGEST_HEADER = "X-Snip-Image-SHA256"
WANT_REPLY_HEADER = "X-Snip-Want-Reply"
STATUS_HEADER = "X-Snip-Status"
IMAGE_HEADER = "X-Snip-Image"
_MSGID = re.compile(r"<[^<>\s]+>")
_BASE64_DEFECTS = ("InvalidBase64PaddingDefect", "InvalidBase64CharactersDefect", "InvalidBase64LengthDefect")


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ImageRequest:
    """What a receiver read from one incoming message."""

    message_id: str | None
    reply_to: str | None  # where an answer goes (Reply-To, else From); None: nobody to answer
    subject: str
    references: list[str]
    want_reply: bool
    automatic: bool  # sent by a machine (Auto-Submitted): never answered, to avoid mail loops
    images: list[Attachment] = field(default_factory=list)
    error: str | None = None  # set when nothing in the message can be handled
    error_kind: str | None = None  # no_image | not_image | oversized | digest_mismatch | malformed


@dataclass(frozen=True)
class Reply:
    """What a sender read from an answer."""

    in_reply_to: list[str]  # Message-IDs this answers (In-Reply-To, then References)
    ok: bool
    value: JSON | None
    error: str | None


def _parse(raw: bytes) -> Message:
    return BytesParser(policy=policy.default).parsebytes(raw)


def _header(msg: Message, name: str) -> str:
    """A header as text, or "" when absent or too broken to decode."""
    try:
        value = msg.get(name)
    except Exception:  # a malformed header may raise from the policy's parser
        return ""
    return str(value).strip() if value is not None else ""


def _address(msg: Message, name: str) -> str | None:
    _display, addr = parseaddr(_header(msg, name))
    return addr if "@" in addr else None


def message_ids(text: str) -> list[str]:
    return _MSGID.findall(text)


def timestamp() -> str:
    """UTC, to the millisecond: part of every subject so the mails of one run are told apart."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d} UTC"


def build_image_message(
    *, sender: str, recipient: str, name: str, content_type: str, data: bytes, want_reply: bool
) -> tuple[bytes, str]:
    """The message carrying one image, as bytes ready for SMTP, and its Message-ID."""
    msg = EmailMessage()
    msg_id = make_msgid(idstring="snip", domain=sender.rpartition("@")[2] or "localhost")
    digest = hashlib.sha256(data).hexdigest()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = f"snip image {name} {timestamp()}"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = msg_id
    msg[DIGEST_HEADER] = digest
    msg[WANT_REPLY_HEADER] = "yes" if want_reply else "no"
    msg.set_content(
        f"Image {name} ({len(data)} bytes, SHA-256 {digest}), sent by snip over email.\n"
        + ("The receiver answers with its result as JSON.\n" if want_reply else "")
    )
    maintype, _slash, subtype = content_type.split(";", 1)[0].strip().lower().partition("/")
    if not maintype or not subtype:
        maintype, subtype = "application", "octet-stream"
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=policy.SMTP), msg_id


def _image_type(part: Message) -> str | None:
    """The part's image type; an octet-stream named like an image counts (some clients send those)."""
    ctype = part.get_content_type()
    if ctype.startswith("image/"):
        return ctype
    if ctype == "application/octet-stream":
        guessed, _enc = mimetypes.guess_type(part.get_filename() or "")
        if guessed and guessed.startswith("image/"):
            return guessed
    return None


def _safe_name(name: str | None, fallback: str) -> str:
    # A file name from the wire must not walk out of the receiver's directory.
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    return base or fallback


def parse_image_request(raw: bytes, *, max_image_bytes: int) -> ImageRequest:
    """Read an incoming message: its images, or the reason none can be handled."""
    try:
        msg = _parse(raw)
    except Exception as exc:  # the parser is lenient; this is belt and braces
        return ImageRequest(None, None, "", [], True, False, error=f"unreadable message: {exc}",
                            error_kind="malformed")
    auto = _header(msg, "Auto-Submitted").lower()
    base = ImageRequest(
        message_id=next(iter(message_ids(_header(msg, "Message-ID"))), None),
        reply_to=_address(msg, "Reply-To") or _address(msg, "From"),
        subject=_header(msg, "Subject"),
        references=message_ids(_header(msg, "References")),
        want_reply=_header(msg, WANT_REPLY_HEADER).lower() != "no",
        automatic=bool(auto) and auto != "no",
    )

    def failed(kind: str, error: str) -> ImageRequest:
        return replace(base, error=error, error_kind=kind)

    if not msg.keys():
        return failed("malformed", "malformed message: no headers")
    if not _header(msg, "From"):  # RFC 5322 requires one; without it this is not a mail from anyone
        return failed("malformed", "malformed message: no From header")
    images: list[Attachment] = []
    others: list[str] = []
    try:
        for index, part in enumerate(msg.walk()):
            if part.is_multipart():
                continue
            image_type = _image_type(part)
            if image_type is None:
                if part.get_content_disposition() == "attachment":
                    others.append(f"{part.get_filename() or 'unnamed'} ({part.get_content_type()})")
                continue
            name = _safe_name(part.get_filename(), f"image-{index}.{image_type.partition('/')[2]}")
            data = part.get_payload(decode=True)
            # Decoding is lenient and records what it had to skip as defects of the part.
            if any(type(defect).__name__ in _BASE64_DEFECTS for defect in part.defects):
                return failed("malformed", f"attachment {name!r} is damaged (invalid base64)")
            if not isinstance(data, bytes) or not data:
                return failed("malformed", f"attachment {name!r} is empty or unreadable")
            if len(data) > max_image_bytes:
                return failed(
                    "oversized",
                    f"attachment {name!r} is {len(data)} bytes; this receiver accepts at most "
                    f"{max_image_bytes}",
                )
            images.append(Attachment(name, image_type, data))
    except Exception as exc:
        return failed("malformed", f"malformed message: {type(exc).__name__}: {exc}")
    if not images:
        if others:
            return failed("not_image", f"no image attached, only: {', '.join(others)}")
        return failed("no_image", "no image attached")
    claimed = _header(msg, DIGEST_HEADER).lower()
    if claimed and len(images) == 1 and hashlib.sha256(images[0].data).hexdigest() != claimed:
        return failed("digest_mismatch", f"attachment {images[0].name!r} failed its SHA-256 check")
    return replace(base, images=images)


def request_from_headers(headers: bytes) -> ImageRequest:
    """What can be known of a message seen only by its headers (it was too large to fetch)."""
    return parse_image_request(headers, max_image_bytes=0)


def build_reply(
    request: ImageRequest, *, sender: str, value: Any, ok: bool, image_name: str | None = None
) -> bytes:
    """The answer to ``request``: its JSON as the text, threaded to the request's Message-ID."""
    if request.reply_to is None:
        raise ValueError("the request has no sender address to answer")
    msg = EmailMessage()
    subject = request.subject or "snip image"
    msg["From"] = sender
    msg["To"] = request.reply_to
    msg["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(idstring="snip-reply", domain=sender.rpartition("@")[2] or "localhost")
    if request.message_id:
        msg["In-Reply-To"] = request.message_id
        msg["References"] = " ".join([*request.references, request.message_id])
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834: other robots must not answer this
    msg[STATUS_HEADER] = "ok" if ok else "error"
    if image_name is not None:
        msg[IMAGE_HEADER] = image_name
    msg.set_content(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    return msg.as_bytes(policy=policy.SMTP)


def thread_ids(headers: bytes) -> list[str]:
    """Message-IDs a message answers (In-Reply-To, then References), from its headers."""
    msg = _parse(headers)
    return message_ids(_header(msg, "In-Reply-To")) + message_ids(_header(msg, "References"))


def parse_reply(raw: bytes) -> Reply:
    """Read an answer: which message it answers, and its JSON (or the error it reports)."""
    msg = _parse(raw)
    ids = message_ids(_header(msg, "In-Reply-To")) + message_ids(_header(msg, "References"))
    ok = _header(msg, STATUS_HEADER).lower() != "error"
    try:
        body = msg.get_body(preferencelist=("plain",)) if isinstance(msg, EmailMessage) else None
        text = body.get_content() if body is not None else ""
        value = json.loads(text)
    except (ValueError, LookupError, KeyError) as exc:
        return Reply(ids, False, None, f"the answer is not JSON: {exc}")
    if not ok:
        error = value.get("error") if isinstance(value, dict) else None
        return Reply(ids, False, value if isinstance(value, dict) else None, str(error or value))
    return Reply(ids, True, value if isinstance(value, dict) else None, None)
