"""Stateless retry tokens (spec 7.4): a timestamp and an HMAC over the client's address and initial id."""

from __future__ import annotations

import hashlib
import hmac
import struct

TOKEN_LIFETIME = 30.0  # seconds
_TS = struct.Struct(">I")


def _mac(secret: bytes, stamp: bytes, addr: tuple[str, int], initial_id: int) -> bytes:
    message = stamp + addr[0].encode() + struct.pack(">HQ", addr[1] & 0xFFFF, initial_id)
    return hmac.new(secret, message, hashlib.sha256).digest()[:16]


def make_token(secret: bytes, addr: tuple[str, int], initial_id: int, now: float) -> bytes:
    stamp = _TS.pack(int(now) & 0xFFFFFFFF)
    return stamp + _mac(secret, stamp, addr, initial_id)


def check_token(secret: bytes, token: bytes, addr: tuple[str, int], initial_id: int, now: float) -> bool:
    if len(token) != 20:
        return False
    stamp = token[:4]
    if not hmac.compare_digest(token[4:], _mac(secret, stamp, addr, initial_id)):
        return False
    issued: int = _TS.unpack(stamp)[0]
    age = (int(now) - issued) & 0xFFFFFFFF
    return age <= TOKEN_LIFETIME
