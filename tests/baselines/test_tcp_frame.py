"""The TCP baseline's frame codec: one golden vector, fed whole, truncated and with trailing bytes."""

from __future__ import annotations

import pytest

from apps.transports.tcp_frame import (
    FIXED_SIZE,
    Flags,
    FrameError,
    FrameKind,
    decode_json_body,
    decode_meta,
    decode_prefix,
    encode_header,
    encode_json_frame,
)

# IMAGE seq 7, want-reply, name "a.png", type "image/png", body b"abc" (SHA-256 of "abc").
GOLDEN = bytes.fromhex(
    "534e5054"  # magic SNPT
    "01" "01" "01" "00"  # version 1, kind IMAGE, flags WANT_REPLY, reserved
    "00000007"  # seq
    "0005" "0009"  # name and content type lengths
    "0000000000000003"  # body length
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    "612e706e67"  # a.png
    "696d6167652f706e67"  # image/png
)


def test_encoder_produces_the_golden_header() -> None:
    header = encode_header(
        FrameKind.IMAGE, 7, b"abc", name="a.png", content_type="image/png", flags=Flags.WANT_REPLY
    )
    assert header == GOLDEN


def test_decoder_reads_the_golden_header() -> None:
    prefix = decode_prefix(GOLDEN[:FIXED_SIZE])
    header = decode_meta(prefix, GOLDEN[FIXED_SIZE:])
    assert header.kind is FrameKind.IMAGE
    assert header.flags & Flags.WANT_REPLY
    assert (header.seq, header.name, header.content_type, header.body_len) == (7, "a.png", "image/png", 3)


@pytest.mark.parametrize("cut", [0, 1, FIXED_SIZE - 1])
def test_truncated_fixed_part_is_a_frame_error(cut: int) -> None:
    with pytest.raises(FrameError):
        decode_prefix(GOLDEN[:cut])


def test_trailing_bytes_after_the_fixed_part_are_refused() -> None:
    with pytest.raises(FrameError):
        decode_prefix(GOLDEN[: FIXED_SIZE + 1])


def test_meta_of_the_wrong_length_is_refused() -> None:
    prefix = decode_prefix(GOLDEN[:FIXED_SIZE])
    with pytest.raises(FrameError):
        decode_meta(prefix, GOLDEN[FIXED_SIZE:-1])
    with pytest.raises(FrameError):
        decode_meta(prefix, GOLDEN[FIXED_SIZE:] + b"x")


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (0, 0x58, "magic"),
        (4, 2, "version"),
        (5, 9, "kind"),
        (6, 0x80, "flags"),
        (7, 1, "reserved"),
    ],
)
def test_bad_fields_are_frame_errors(offset: int, value: int, reason: str) -> None:
    bad = bytearray(GOLDEN[:FIXED_SIZE])
    bad[offset] = value
    with pytest.raises(FrameError, match=reason):
        decode_prefix(bytes(bad))


def test_overlong_name_length_is_refused() -> None:
    bad = bytearray(GOLDEN[:FIXED_SIZE])
    bad[12:14] = (5000).to_bytes(2, "big")
    with pytest.raises(FrameError, match="name length"):
        decode_prefix(bytes(bad))


def test_undecodable_name_is_refused() -> None:
    prefix = decode_prefix(GOLDEN[:FIXED_SIZE])
    with pytest.raises(FrameError):
        decode_meta(prefix, b"\xff\xfe\xfd\xfc\xfb" + b"image/png")


def test_json_frames_round_trip_and_check_their_digest() -> None:
    frame = encode_json_frame(FrameKind.REPLY, 3, {"label": "cat", "p": 0.9})
    prefix = decode_prefix(frame[:FIXED_SIZE])
    meta_end = FIXED_SIZE + prefix.meta_len
    header = decode_meta(prefix, frame[FIXED_SIZE:meta_end])
    body = frame[meta_end:]
    assert (header.kind, header.seq, header.content_type, header.body_len) == (
        FrameKind.REPLY, 3, "application/json", len(body)
    )
    assert decode_json_body(header, body) == {"label": "cat", "p": 0.9}
    with pytest.raises(FrameError, match="digest"):
        decode_json_body(header, body.replace(b"cat", b"dog"))


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(ValueError):
        encode_header(FrameKind.IMAGE, 0, b"", name="x" * 2000)
    with pytest.raises(ValueError):
        encode_header(FrameKind.IMAGE, -1, b"")
