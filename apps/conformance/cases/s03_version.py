"""Section 3: versioning and version negotiation."""

from __future__ import annotations

from protocol.codec import VersionNegotiation
from protocol.constants import VERSION, PacketType

from .. import wire
from ..context import Context
from ..model import CaseFailed
from ..peer import Rx
from ..registry import case
from .common import dropped, sample_traffic, session_starts, still_handshaking

UNKNOWN_VERSION = 3


def _negotiate(ctx: Context, size: int = 1200) -> tuple[bytes, Rx]:
    """An INITIAL of an unknown version; the VERSION it draws (or the case is unsupported)."""
    c = ctx.client()
    datagram = wire.initial(c.initial_id, c.take_pn(), size=size, version=UNKNOWN_VERSION)
    c.send_raw(datagram)
    rx = c.maybe(lambda d: d.session_id == c.initial_id, c.quiet)
    if rx is None:
        ctx.unsupported("the target answers an INITIAL of an unknown version with silence, which R3-3 allows")
    if not isinstance(rx.packet, VersionNegotiation):
        raise CaseFailed("VERSION (or silence) in answer to an INITIAL of version 3", str(rx))
    return datagram, rx


@case(
    "R3-3",
    "A server that receives a datagram whose Type field is 0x01 (INITIAL), whose Version field names a version "
    "the server does not support, which is at least 1200 bytes long, and which passed the checks of section 4.2 "
    "steps 1 to 4 (framing, length, CRC32C and type), SHOULD answer with a VERSION packet",
    slug="version-negotiation",
    level="SHOULD",
)
def version_negotiation(ctx: Context) -> None:
    """Send a 1200-byte INITIAL of version 3: a VERSION packet comes back."""
    _negotiate(ctx)


@case("R3-4", "lists every version the server supports", slug="version-lists-2")
def version_lists_versions(ctx: Context) -> None:
    """The VERSION answer lists version 2 (spoken by the target) and not version 3 (which it refused)."""
    _, rx = _negotiate(ctx)
    assert isinstance(rx.packet, VersionNegotiation)
    versions = rx.packet.versions
    if VERSION not in versions or UNKNOWN_VERSION in versions:
        raise CaseFailed(f"a version list holding {VERSION} and not {UNKNOWN_VERSION}", f"versions {list(versions)}")


@case("R3-5", "carries in its Session ID field the Session ID field of the datagram it answers", slug="version-echoes-id")
def version_echoes_session_id(ctx: Context) -> None:
    """The VERSION answer echoes the INITIAL's Session ID field."""
    datagram, rx = _negotiate(ctx)
    sent_id = int.from_bytes(datagram[4:12], "big")
    assert rx.decoded is not None
    if rx.decoded.session_id != sent_id:
        raise CaseFailed(f"Session ID {sent_id:016x}", str(rx))


@case("R3-6", "carries Packet Number 0", slug="version-packet-number-0")
def version_packet_number(ctx: Context) -> None:
    """The VERSION answer carries packet number 0."""
    _, rx = _negotiate(ctx)
    assert rx.decoded is not None
    if rx.decoded.packet_number != 0:
        raise CaseFailed("Packet Number 0", str(rx))


@case("R3-7", "is not longer than the datagram it answers", slug="version-not-longer")
def version_not_longer(ctx: Context) -> None:
    """The VERSION answer to a 1200-byte INITIAL is at most 1200 bytes long."""
    datagram, rx = _negotiate(ctx)
    if len(rx.data) > len(datagram):
        raise CaseFailed(f"at most {len(datagram)} bytes", f"{len(rx.data)} bytes")


def _no_version_answer(ctx: Context, datagram: bytes, why: str) -> None:
    c = ctx.client()
    c.send_raw(datagram)
    c.silent(why, ignore=())


@case("R3-8", "The server MUST NOT keep any state for such a datagram", slug="version-keeps-no-state")
def version_keeps_no_state(ctx: Context) -> None:
    """An INITIAL of version 3, twice, then one of version 2 with the same initial id from the same socket: a
    fresh session (ACCEPT, packet number 0)."""
    c = ctx.client()
    datagram = wire.initial(c.initial_id, c.take_pn(), version=UNKNOWN_VERSION)
    c.send_raw(datagram)
    first = c.maybe(lambda d: d.session_id == c.initial_id, c.quiet)
    if first is None or not isinstance(first.packet, VersionNegotiation):
        ctx.unsupported("the target does not answer an INITIAL of an unknown version with VERSION (R3-3 is a SHOULD)")
    c.send_raw(datagram)
    again = c.maybe(lambda d: d.session_id == c.initial_id, c.quiet)
    # Whether it answers the copy is its choice; if it does, it cannot tell the copy from the first.
    if again is not None and again.data != first.data:
        raise CaseFailed(f"the same VERSION as for the first copy ({first})", str(again))
    # Had the server kept anything for the version-3 datagram (a half-made session, a refusal), the
    # version-2 INITIAL with the same id from the same address would meet it.
    c.handshake()
    rx = c.accept_rx
    assert rx is not None and rx.decoded is not None
    if rx.decoded.packet_number != 0:
        raise CaseFailed("the ACCEPT of a new session (packet number 0, spec 5.3)", str(rx))


_R3_9 = (
    "It MUST NOT answer a datagram of an unsupported version that is shorter than 1200 bytes, whose type is not "
    "INITIAL, whose Session ID field is 0, or that failed steps 1 to 4"
)


@case("R3-9", _R3_9, slug="short-unknown-version")
def short_unknown_version(ctx: Context) -> None:
    """A 1199-byte INITIAL of version 3 draws nothing."""
    _no_version_answer(ctx, wire.initial(ctx.new_id(), 0, size=1199, version=UNKNOWN_VERSION), "an INITIAL under 1200 bytes")


@case("R3-9", _R3_9, slug="unknown-version-not-initial")
def unknown_version_not_initial(ctx: Context) -> None:
    """A 1200-byte PING-typed datagram of version 3 draws nothing."""
    datagram = wire.raw(PacketType.PING, ctx.new_id(), 0, bytes(1178), version=UNKNOWN_VERSION)
    _no_version_answer(ctx, datagram, "a datagram of an unknown version that is not an INITIAL")


@case("R3-9", _R3_9, slug="unknown-version-session-id-0")
def unknown_version_zero_id(ctx: Context) -> None:
    """A 1200-byte INITIAL of version 3 with Session ID 0 draws nothing."""
    _no_version_answer(ctx, wire.initial(0, 0, version=UNKNOWN_VERSION), "an INITIAL with Session ID 0")


@case("R3-9", _R3_9, slug="unknown-version-bad-crc")
def unknown_version_bad_crc(ctx: Context) -> None:
    """A 1200-byte INITIAL of version 3 with a wrong CRC32C draws nothing."""
    datagram = wire.break_crc(wire.initial(ctx.new_id(), 0, version=UNKNOWN_VERSION))
    _no_version_answer(ctx, datagram, "an INITIAL whose CRC32C fails")


@case("R3-12", "A VERSION packet is never acknowledged and never answered", slug="version-never-answered")
def version_never_answered(ctx: Context) -> None:
    """A VERSION packet carrying the session's id, then one with a random id: neither draws anything."""
    s = ctx.session()
    dropped(s, wire.raw(PacketType.VERSION, s.session_id, s.take_pn(), bytes([1, 7]), version=0), "a VERSION packet")
    dropped(s, wire.raw(PacketType.VERSION, ctx.new_id(), 0, bytes([1]), version=0), "a VERSION packet")


@case(
    "R3-2",
    "An endpoint implementing only this document MUST set the Version field to 2 in every datagram it sends except "
    "VERSION, and to 0 in VERSION",
    slug="version-field-2",
)
def version_field_is_2(ctx: Context) -> None:
    """Every datagram of a session with a transfer carries Version 2 (VERSION answers: 0)."""
    for rx in sample_traffic(ctx):
        version = rx.data[2] if len(rx.data) > 2 else None
        want = 0 if len(rx.data) > 3 and rx.data[3] == PacketType.VERSION else VERSION
        if version != want:
            raise CaseFailed(f"Version field {want}", f"{version} in {rx}")


# ================================================================================================
# Sender role: the target is a client


@case(
    "R3-10",
    "MUST ignore it if it lists the version the client used (R3-10), since a genuine server would not have sent it",
    slug="version-listing-own-ignored",
    role="sender",
)
def version_listing_own_ignored(ctx: Context) -> None:
    """A VERSION answer listing versions 7 and 2, the client's own: ignored, the client keeps trying, then
    takes ACCEPT."""
    peer = ctx.sender()
    peer.stateless(VersionNegotiation((7, VERSION)))
    still_handshaking(peer, "a VERSION listing the client's own version is ignored")
    session_starts(peer, "ACCEPT after the ignored VERSION")


@case(
    "R3-11",
    "otherwise MUST abandon the handshake and report VERSION_MISMATCH locally",
    slug="version-mismatch-abandons",
    role="sender",
)
def version_mismatch_abandons(ctx: Context) -> None:
    """A VERSION answer listing only 1 (SNIP/1, which a version-2 client does not speak) and 7 (unknown,
    R5.4-2): the client sends nothing more for the attempt."""
    peer = ctx.sender()
    peer.stateless(VersionNegotiation((1, 7)))
    sent = ctx.target.clock()
    peer.closed = True  # the attempt is over: no refusal at the end
    later = [
        rx for rx in peer.collect(max(ctx.timeout / 2, 3 * peer.quiet))
        if rx.decoded is not None and rx.decoded.session_id == peer.initial_id and rx.at - sent > ctx.target.slack
    ]
    if later:
        raise CaseFailed("nothing more for an attempt whose server speaks no known version", str(later[0]))
