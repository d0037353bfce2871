"""Section 10: the datagram checksum and the object digest."""

from __future__ import annotations

import hashlib

from protocol import codec
from protocol.codec import Cancel, Complete, Data, Nack
from protocol.constants import ErrorCode

from ..client import TestObject
from ..context import Context
from ..model import CaseFailed
from ..receiving_model import listed
from ..registry import case
from .common import small_object


@case(
    "R10.1-1",
    "A receiver MUST drop a datagram whose CRC32C does not verify and SHOULD count it as corrupted",
    slug="corrupted-chunk-dropped",
)
def corrupted_chunk(ctx: Context) -> None:
    """Chunk 0 with flipped bits and its old CRC32C, then the object whole: COMPLETE at once, no repair round."""
    s = ctx.session()
    obj = small_object(ctx, 3)
    s.announce(obj)
    good = codec.encode(Data(0, 0, obj.chunk(0)), s.session_id, s.take_pn())
    corrupted = bytearray(good)
    corrupted[40] ^= 0x10
    s.send_raw(bytes(corrupted))
    s.send_object(obj)
    rx = s.expect(lambda d: isinstance(d.packet, Complete | Nack | Cancel) and d.packet.object_id == 0, "COMPLETE")
    if not isinstance(rx.packet, Complete):
        raise CaseFailed("COMPLETE: the corrupted chunk was never used", str(rx))


def _wrong(ctx: Context, chunks: int = 3) -> TestObject:
    """An object whose chunks do not hash to the digest announced."""
    obj = small_object(ctx, chunks)
    obj.digest = hashlib.sha256(obj.data + b"!").digest()
    return obj


@case(
    "R10.2-2",
    "An object receiver MUST compute the SHA-256 of the reassembled object once it holds every chunk, and MUST NOT "
    "deliver the object, nor send COMPLETE, unless it equals the digest in the ANNOUNCE.",
    slug="digest-mismatch-never-complete",
)
def digest_never_complete(ctx: Context) -> None:
    """An object whose chunks do not match the announced SHA-256, repaired as asked: never COMPLETE."""
    s = ctx.session()
    outcome = s.transfer(_wrong(ctx))
    if outcome.kind == "complete":
        raise CaseFailed("no COMPLETE for an object that fails its digest", str(outcome))


@case(
    "R10.3-1",
    "When the digest of a reassembled object does not match, the receiver MUST discard every chunk of the object, "
    "count the failure, and request every chunk again: it reports the whole range [0, Chunk Count) missing at once",
    slug="digest-mismatch-nacks-all",
)
def digest_nacks_all(ctx: Context) -> None:
    """Every chunk of an object whose digest fails: NACKs then list every chunk."""
    s = ctx.session()
    obj = _wrong(ctx, 4)
    s.send_object(obj, probe=False)
    seen: set[int] = set()
    while seen != set(range(obj.count)):
        rx = s.maybe(lambda d: isinstance(d.packet, Nack | Complete | Cancel) and d.packet.object_id == 0)
        if rx is None or not isinstance(rx.packet, Nack):
            got = str(rx) if rx else "no NACK"
            raise CaseFailed(f"NACKs listing all {obj.count} chunks after the digest failed", got, absent=rx is None)
        seen |= listed(rx.packet.missing)


@case(
    "R10.3-2",
    "When the digest of the same object fails to match a second time, the receiver MUST cancel the object with CANCEL "
    "(Origin 0, DIGEST_MISMATCH) and report it failed.",
    slug="digest-mismatch-twice-cancels",
)
def digest_twice(ctx: Context) -> None:
    """The wrong object sent, then every chunk again as NACKed: CANCEL (Origin 0, DIGEST_MISMATCH)."""
    s = ctx.session()
    outcome = s.transfer(_wrong(ctx))
    final = outcome.final.packet if outcome.final is not None else None
    if not isinstance(final, Cancel) or final.error_code != ErrorCode.DIGEST_MISMATCH or final.origin != 0:
        raise CaseFailed("CANCEL (Origin 0, DIGEST_MISMATCH)", str(outcome))


@case(
    "R10.2-3",
    "An empty object is complete when its ANNOUNCE arrives, provided its digest is the SHA-256 of the empty string",
    slug="empty-object",
)
def empty_object(ctx: Context) -> None:
    """An empty object: COMPLETE on its ANNOUNCE."""
    s = ctx.session()
    s.announce(TestObject(b""))
    s.expect(lambda d: isinstance(d.packet, Complete) and d.packet.object_id == 0, "COMPLETE for the empty object")


@case(
    "R10.2-3",
    "An empty object with any other digest can never be delivered; the receiver MUST cancel it (Origin 0, "
    "DIGEST_MISMATCH), or its sender would probe it for ever.",
    slug="empty-object-wrong-digest",
)
def empty_wrong_digest(ctx: Context) -> None:
    """An empty object announced with a wrong digest: CANCEL (Origin 0, DIGEST_MISMATCH), never COMPLETE."""
    s = ctx.session()
    s.announce(TestObject(b"", digest=hashlib.sha256(b"x").digest()))
    rx = s.expect(lambda d: isinstance(d.packet, Complete | Cancel) and d.packet.object_id == 0, "CANCEL DIGEST_MISMATCH")
    packet = rx.packet
    if not isinstance(packet, Cancel) or packet.error_code != ErrorCode.DIGEST_MISMATCH:
        raise CaseFailed("CANCEL (Origin 0, DIGEST_MISMATCH)", str(rx))


@case(
    "R10.2-1",
    "An object sender MUST put the SHA-256 digest (FIPS 180-4) of the whole object in its ANNOUNCE.",
    slug="sender-digest",
    role="sender",
)
def sender_digest(ctx: Context) -> None:
    """The sender's object, reassembled, hashes to the digest of its ANNOUNCE."""
    peer = ctx.sender()
    peer.accept()
    peer.receive_object()




@case(
    "R10.3-3",
    "The sender treats the NACKs of R10.3-1 like any other (section 9.3).",
    slug="sender-resends-after-digest-failure",
    role="sender",
)
def resend_after_digest_failure(ctx: Context) -> None:
    """Every chunk received, then discarded as after a digest failure and all NACKed: every chunk comes again and the
    object completes."""
    peer = ctx.sender()
    peer.policy.complete = False
    peer.accept()
    incoming = peer.await_whole()
    if incoming.count == 0:
        ctx.unsupported("the sender's object is empty")
    # What R10.3-1 makes a receiver do: drop every chunk and report [0, Chunk Count) missing at once;
    # later PROBEs are answered with whatever is still missing.
    incoming.chunks.clear()
    peer.policy.complete = True
    peer.nack(0, list(range(incoming.count)))
    if not peer.pump(lambda: incoming.completed):
        raise CaseFailed(
            f"all {incoming.count} chunks sent again after a NACK listing them all",
            f"{len(incoming.chunks)} of them within {ctx.timeout:.3g} s",
            absent=True,
        )
