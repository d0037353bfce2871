"""Section 6: session parameters, as the target reads the tester's and writes its own."""

from __future__ import annotations

import struct

from protocol import codec
from protocol.codec import Repair
from protocol.constants import PacketType, ParamId
from protocol.params import SessionParams

from .. import wire
from ..context import Context
from ..model import CaseFailed
from ..registry import case
from .common import gap_reports


def _answered_with(ctx: Context, params: bytes, why: str) -> None:
    c = ctx.client()
    c.send_raw(wire.initial(c.initial_id, c.take_pn(), params=params))
    rx = c.handshake_reply()
    if not isinstance(rx.packet, codec.Accept | codec.Retry):
        raise CaseFailed(f"ACCEPT or RETRY ({why})", str(rx))


def _refused(ctx: Context, params: bytes, why: str) -> None:
    c = ctx.client()
    c.send_raw(wire.initial(c.initial_id, c.take_pn(), params=params))
    c.silent(f"{why}: the INITIAL is malformed", ignore=())


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def _params_length(initial: bytes) -> int:
    """The Parameters Length of an INITIAL datagram."""
    payload = wire.payload_of(initial)
    return int(_U16.unpack_from(payload, 1 + payload[0])[0])


@case("R6-1", "A parameter that is absent from the list takes its default value.", slug="absent-max-datagram-size")
def absent_max_datagram_size(ctx: Context) -> None:
    """The tester's INITIAL lists no parameter; 200 gaps, too many for one NACK: every NACK fits the default
    max_datagram_size of 1472 bytes."""
    c = ctx.client(SessionParams())
    c.establish()
    initials = [data for _, _, data in c.sent if data[3] == PacketType.INITIAL]
    assert initials and all(_params_length(d) == 0 for d in initials), "the tester's INITIAL lists no parameter"
    # A target that read the absent limit as "no limit" would put every report in one datagram.
    limit = SessionParams().max_datagram_size
    _, reports = gap_reports(ctx, c)
    for rx in reports:
        if len(rx.data) > limit:
            raise CaseFailed(f"NACKs of at most {limit} bytes (the default max_datagram_size)", f"{len(rx.data)} bytes: {rx}")


@case(
    "R6-3",
    "A receiver MUST skip, using Value Length, entries whose Parameter ID it does not know, and MUST accept entries "
    "in any order.",
    slug="unknown-parameter-skipped",
)
def unknown_parameter(ctx: Context) -> None:
    """An INITIAL listing parameter 0x7777 (3 bytes) among known ones is answered."""
    params = wire.tlv(ParamId.MAX_DATAGRAM_SIZE, _U16.pack(1400)) + wire.tlv(0x7777, b"abc")
    _answered_with(ctx, params + wire.tlv(ParamId.IDLE_TIMEOUT_MS, _U32.pack(60_000)), "an unknown parameter is skipped")


@case(
    "R6-3",
    "A receiver MUST skip, using Value Length, entries whose Parameter ID it does not know, and MUST accept entries "
    "in any order.",
    slug="parameters-any-order",
)
def parameters_any_order(ctx: Context) -> None:
    """An INITIAL listing its parameters in descending order of ID is answered."""
    params = wire.tlv(ParamId.IDLE_TIMEOUT_MS, _U32.pack(60_000)) + wire.tlv(ParamId.MAX_DATAGRAM_SIZE, _U16.pack(1400))
    _answered_with(ctx, params, "parameters in descending order")


_R6_4 = (
    "A parameter list is malformed, and with it the INITIAL or ACCEPT that carries it, if: an entry's header (4 "
    "bytes) or value runs past the end of the list; a Parameter ID appears twice, whether known or not; a known "
    "parameter's Value Length differs from the width in the table; or, after defaults are applied, a value is "
    "outside the valid values in the table"
)


@case("R6-4", _R6_4, slug="parameter-twice")
def parameter_twice(ctx: Context) -> None:
    """An INITIAL listing max_datagram_size twice draws nothing."""
    entry = wire.tlv(ParamId.MAX_DATAGRAM_SIZE, _U16.pack(1400))
    _refused(ctx, entry + entry, "a parameter listed twice")


@case("R6-4", _R6_4, slug="unknown-parameter-twice")
def unknown_parameter_twice(ctx: Context) -> None:
    """An INITIAL listing the unknown parameter 0x7777 twice draws nothing."""
    _refused(ctx, wire.tlv(0x7777, b"a") + wire.tlv(0x7777, b"b"), "an unknown parameter listed twice")


@case("R6-4", _R6_4, slug="parameter-wrong-width")
def parameter_wrong_width(ctx: Context) -> None:
    """An INITIAL with a 4-byte max_datagram_size (its width is 2) draws nothing."""
    _refused(ctx, wire.tlv(ParamId.MAX_DATAGRAM_SIZE, _U32.pack(1400)), "a parameter of the wrong width")


@case("R6-4", _R6_4, slug="parameter-out-of-range")
def parameter_out_of_range(ctx: Context) -> None:
    """An INITIAL with max_datagram_size 1000 (below 1200) draws nothing."""
    _refused(ctx, wire.tlv(ParamId.MAX_DATAGRAM_SIZE, _U16.pack(1000)), "max_datagram_size below 1200")


@case("R6-4", _R6_4, slug="buffered-below-object-size")
def buffered_below_object(ctx: Context) -> None:
    """An INITIAL whose max_buffered_bytes is below its max_object_size draws nothing."""
    params = wire.tlv(ParamId.MAX_OBJECT_SIZE, _U64.pack(1 << 20)) + wire.tlv(ParamId.MAX_BUFFERED_BYTES, _U64.pack(1 << 19))
    _refused(ctx, params, "max_buffered_bytes below max_object_size")


@case("R6-4", _R6_4, slug="parameter-overruns-list")
def parameter_overrun(ctx: Context) -> None:
    """An INITIAL whose last parameter's value runs past the list draws nothing."""
    _refused(ctx, wire.tlv(ParamId.IDLE_TIMEOUT_MS, _U32.pack(60_000))[:-1], "a parameter running past the list")


_NAMES: dict[int, str] = {
    ParamId.MAX_DATAGRAM_SIZE: "max_datagram_size",
    ParamId.MAX_OBJECT_SIZE: "max_object_size",
    ParamId.MAX_CONCURRENT_OBJECTS: "max_concurrent_objects",
    ParamId.MAX_BUFFERED_BYTES: "max_buffered_bytes",
    ParamId.IDLE_TIMEOUT_MS: "idle_timeout_ms",
    ParamId.MAX_ACK_DELAY_MS: "max_ack_delay_ms",
}


def _accept_entries(ctx: Context) -> list[tuple[int, bytes]]:
    c = ctx.client()
    c.handshake()
    assert c.accept_rx is not None
    raw = wire.payload_of(c.accept_rx.data)
    (length,) = _U16.unpack_from(raw, 8)
    body = raw[10 : 10 + length]
    entries: list[tuple[int, bytes]] = []
    offset = 0
    while offset + 4 <= len(body):
        pid, width = struct.unpack_from(">HH", body, offset)
        entries.append((pid, body[offset + 4 : offset + 4 + width]))
        offset += 4 + width
    return entries


@case("R6-2", "An encoder MUST NOT list a parameter twice.", slug="accept-parameters-once")
def accept_parameters_once(ctx: Context) -> None:
    """The target's ACCEPT lists no parameter twice."""
    ids = [pid for pid, _ in _accept_entries(ctx)]
    if len(ids) != len(set(ids)):
        raise CaseFailed("each parameter at most once", f"parameter ids {[hex(i) for i in ids]}")


@case(
    "R6-2",
    "It SHOULD omit parameters whose value is the default, and SHOULD list the others in ascending order of ID.",
    slug="accept-parameters-canonical",
    level="SHOULD",
)
def accept_parameters_canonical(ctx: Context) -> None:
    """The target's ACCEPT lists only non-default parameters, in ascending order of ID."""
    entries = _accept_entries(ctx)
    ids = [pid for pid, _ in entries]
    if ids != sorted(ids):
        raise CaseFailed("parameters in ascending order of ID", f"{[hex(i) for i in ids]}")
    defaults = SessionParams()
    for pid, value in entries:
        name = _NAMES.get(pid)
        if name is not None and int.from_bytes(value, "big") == getattr(defaults, name):
            raise CaseFailed("default values omitted", f"{name} = its default {getattr(defaults, name)}")


@case("R6-5", "Parameters are fixed for the life of the session: SNIP/2 has no way to change them.", slug="initial-again-changes-nothing")
def initial_again_changes_nothing(ctx: Context) -> None:
    """A session made with max_datagram_size 1200, then the INITIAL again claiming 65535: any ACCEPT it draws
    repeats the first, and NACKs for 200 gaps still fit in 1200 bytes."""
    c = ctx.client(SessionParams(max_datagram_size=1200))
    first = c.establish().accept
    c.send_initial(params=SessionParams(max_datagram_size=65535))
    again = c.maybe(lambda d: isinstance(d.packet, codec.Accept), c.quiet)
    if again is not None and again.packet != first:
        raise CaseFailed(f"the same ACCEPT as before ({first})", str(again))
    _, reports = gap_reports(ctx, c)
    for rx in reports:
        if len(rx.data) > 1200:
            raise CaseFailed("NACKs of at most 1200 bytes, as the session's parameters say", f"{len(rx.data)} bytes: {rx}")


@case(
    "R6-6",
    "The effective idle timeout of a session is the smaller of the two endpoints' idle_timeout_ms.",
    slug="own-idle-timeout",
    slow=True,
)
def own_idle_timeout(ctx: Context) -> None:
    """The tester advertises the longest idle timeout; the target's own one governs: after it, the id is unknown."""
    s = ctx.session(SessionParams(idle_timeout_ms=0xFFFFFFFF))
    own = s.target_params.idle_timeout_ms / 1000
    if own > 120:
        ctx.unsupported(f"the target's idle timeout is {own:.0f} s")
    s.collect(own * 1.2 + ctx.target.slack)
    s.ping()
    s.closed = True
    s.silent(f"{own * 1.2:.3g} s of silence, past the target's own {own:.3g} s idle timeout", ignore=())


# ================================================================================================
# Sender role: the target is a client


@case(
    "R6-1",
    "A parameter that is absent from the list takes its default value.",
    slug="absent-repair-decoder",
    role="sender",
)
def absent_repair_decoder(ctx: Context) -> None:
    """The tester's ACCEPT lists no parameter, so its repair_decoder is 0: the sender sends the object and no
    REPAIR."""
    peer = ctx.sender(SessionParams())
    peer.policy.complete = False  # REPAIRs follow the last chunk: leave the sender the time to send them
    peer.accept()
    accept = peer.sent[-1][2]
    assert int(_U16.unpack_from(wire.payload_of(accept), 8)[0]) == 0, "the tester's ACCEPT lists no parameter"
    peer.await_whole()
    peer.pump(None, peer.quiet)
    repairs = [rx for rx in peer.session_packets() if isinstance(rx.packet, Repair)]
    if repairs:
        raise CaseFailed("no REPAIR to a peer whose repair_decoder is absent, hence 0 (R9.6-1)", str(repairs[0]))
