"""The golden vectors (spec Appendix A) drive both the encoder and the decoder.

One table, ``protocol.vectors.VECTORS``, is fed to the codec whole, truncated at every length, with a
byte appended and with single bits flipped (the h11 test_io pattern). The spec's Appendix A is the
table rendered; these tests fail if the two drift apart, or if the spec's state table (Appendix B)
drifts from ``protocol.state``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from protocol.codec import Data, Decoded, Nack, decode, encode, encode_data
from protocol.constants import PacketType
from protocol.errors import DecodeError
from protocol.state import TRANSITIONS, State
from protocol.vectors import (
    APPENDIX_BEGIN,
    APPENDIX_END,
    VECTORS,
    VECTORS_BY_NAME,
    Vector,
    appendix_a,
    hexdump,
    layout,
)

SPEC_PATH = Path(__file__).resolve().parents[2] / "protocol" / "spec.md"
SPEC = SPEC_PATH.read_text(encoding="utf-8")

ALL_BITS_UP_TO = 160  # datagrams up to this many bytes get every bit flipped; longer ones a sample
SAMPLED_BITS = 600


def by_name(vector: Vector) -> str:
    return vector.name


vectors = pytest.mark.parametrize("vector", VECTORS, ids=by_name)


# ---------------------------------------------------------------------------------------------
# Encoder and decoder


@vectors
def test_encode_gives_the_vector(vector: Vector) -> None:
    assert encode(vector.packet, vector.session_id, vector.packet_number).hex() == vector.hex


@vectors
def test_decode_gives_the_packet(vector: Vector) -> None:
    decoded = decode(vector.datagram)
    assert decoded == Decoded(vector.version, vector.session_id, vector.packet_number, vector.packet)


@pytest.mark.parametrize("vector", [v for v in VECTORS if isinstance(v.packet, Data)], ids=by_name)
def test_data_fast_path_gives_the_vector(vector: Vector) -> None:
    packet = vector.packet
    assert isinstance(packet, Data)
    datagram = encode_data(vector.session_id, vector.packet_number, packet.object_id, packet.chunk_index, packet.chunk)
    assert datagram.hex() == vector.hex


@vectors
def test_every_truncation_is_rejected(vector: Vector) -> None:
    data = vector.datagram
    for size in range(len(data)):
        with pytest.raises(DecodeError) as info:
            decode(data[:size])
        assert info.value.reason in ("truncated", "bad_magic"), size


@vectors
def test_a_trailing_byte_is_rejected(vector: Vector) -> None:
    for extra in (b"\x00", b"\xff", vector.datagram[-1:]):
        with pytest.raises(DecodeError) as info:
            decode(vector.datagram + extra)
        assert info.value.reason == "trailing_bytes"


def _flip_positions(vector: Vector) -> list[int]:
    nbits = len(vector.datagram) * 8
    if len(vector.datagram) <= ALL_BITS_UP_TO:
        return list(range(nbits))
    rng = random.Random(f"bitflip:{vector.name}")  # seeded: the same sample on every run
    header_and_crc = list(range(18 * 8)) + list(range(nbits - 32, nbits))
    return sorted(set(header_and_crc) | set(rng.sample(range(nbits), SAMPLED_BITS)))


def _expected_flip_reason(byte_offset: int) -> tuple[str, ...]:
    if byte_offset < 2:
        return ("bad_magic",)
    if byte_offset in (16, 17):  # the payload length no longer matches the datagram
        return ("truncated", "trailing_bytes")
    return ("checksum",)


@vectors
def test_every_single_bit_flip_is_rejected(vector: Vector) -> None:
    """spec 4.2 step 3: CRC32C catches every single-bit error; framing catches the rest first."""
    data = bytearray(vector.datagram)
    for bit in _flip_positions(vector):
        data[bit // 8] ^= 0x80 >> (bit % 8)
        with pytest.raises(DecodeError) as info:
            decode(bytes(data))
        assert info.value.reason in _expected_flip_reason(bit // 8), bit
        data[bit // 8] ^= 0x80 >> (bit % 8)


# ---------------------------------------------------------------------------------------------
# The table itself


def test_names_are_unique() -> None:
    assert len(VECTORS_BY_NAME) == len(VECTORS)


def test_every_packet_type_has_a_vector() -> None:
    types = {decode(v.datagram).packet.__class__ for v in VECTORS}
    assert {PacketType(v.datagram[3]) for v in VECTORS} == set(PacketType)
    assert len(types) == len(PacketType)


def test_the_required_variants_are_present() -> None:
    """Issue 2: both NACK encodings, a reply, INITIAL with and without token, CLOSE with reason,
    CANCEL of each origin."""
    nacks = [v for v in VECTORS if isinstance(v.packet, Nack)]
    encodings = {v.datagram[18 + 5] for v in nacks}  # the Encoding byte of the payload
    assert encodings == {0, 1}
    assert any(isinstance(v.packet, Nack) and v.packet.announce_missing for v in VECTORS)
    assert any(isinstance(v.packet, Nack) and not v.packet.missing and not v.packet.announce_missing for v in VECTORS)
    assert VECTORS_BY_NAME["announce_reply"].datagram[18 + 18] & 0x02  # is_reply flag
    assert VECTORS_BY_NAME["initial"].datagram[18] == 0  # no token
    assert VECTORS_BY_NAME["initial_with_token"].datagram[18] > 0
    assert VECTORS_BY_NAME["close_abort"].datagram[18 + 2] > 0  # reason length
    origins = {v.datagram[18 + 4] for v in VECTORS if v.datagram[3] == PacketType.CANCEL}
    assert origins == {0, 1}


@vectors
def test_the_cited_section_exists_and_defines_the_type(vector: Vector) -> None:
    heading = re.search(rf"^### {re.escape(vector.section)}\. (\S+)$", SPEC, re.MULTILINE)
    assert heading is not None, vector.section
    assert heading.group(1) == PacketType(vector.datagram[3]).name


@vectors
def test_the_field_layout_reproduces_the_vector(vector: Vector) -> None:
    """The appendix's per-field breakdown, written from spec section 5, accounts for every byte."""
    fields = layout(vector)
    assert b"".join(raw for _, raw in fields) == vector.datagram


def test_hexdump_lines() -> None:
    assert hexdump(bytes(range(20))) == [
        "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f",
        "10 11 12 13",
    ]


# ---------------------------------------------------------------------------------------------
# spec.md and code cannot drift


def test_spec_appendix_a_is_the_rendered_table() -> None:
    assert SPEC.count(APPENDIX_BEGIN) == 1 and SPEC.count(APPENDIX_END) == 1
    generated = SPEC.split(APPENDIX_BEGIN + "\n", 1)[1].split(APPENDIX_END, 1)[0]
    assert generated == appendix_a(), "regenerate with: python -m protocol.vectors"


@vectors
def test_spec_holds_the_vector_hex(vector: Vector) -> None:
    match = re.search(rf"^Vector: {re.escape(vector.name)}\n\n```\n(.*?)```", SPEC, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no 'Vector: {vector.name}' block in spec.md"
    assert re.sub(r"\s+", "", match.group(1)) == vector.hex


def test_requirement_labels_are_defined_once() -> None:
    labels = re.findall(r"\*\*(R\d+(?:\.\d+)?-\d+)\.?\*\*", SPEC)
    duplicates = {label for label in labels if labels.count(label) > 1}
    assert not duplicates
    assert len(labels) > 150


def test_requirement_references_point_at_defined_labels() -> None:
    defined = set(re.findall(r"\*\*(R\d+(?:\.\d+)?-\d+)\.?\*\*", SPEC))
    cited = set(re.findall(r"\b(R\d+(?:\.\d+)?-\d+)\b", SPEC))
    assert cited - defined == set()


def test_code_citations_name_existing_sections() -> None:
    """Every 'spec N.N' in protocol/*.py names a section heading of spec.md."""
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\. ", SPEC, re.MULTILINE))
    missing: list[str] = []
    for path in sorted(SPEC_PATH.parent.glob("*.py")):
        for cited in re.findall(r"\bspec (\d+(?:\.\d+)?)\b", path.read_text(encoding="utf-8")):
            if cited not in sections:
                missing.append(f"{path.name}: spec {cited}")
    assert missing == []


def _appendix_b1_rows() -> set[tuple[str, str, str]]:
    section = SPEC.split("### B.1. Session", 1)[1].split("### B.2.", 1)[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in State.__members__:
            rows.add((cells[0], cells[1], cells[2]))
    return rows


def test_spec_appendix_b_is_the_state_table() -> None:
    expected = {(s.name, i.name, n.name) for (s, i), n in TRANSITIONS.items()}
    assert _appendix_b1_rows() == expected
