"""The Standard Webhooks v1 signature (https://www.standardwebhooks.com), both ends.

The bookings API verifies it (``stream.bookings_api``); the notifier's console signs its
requests to that API with it (``notifier.bookings_client``). One place for the secret's
format and the signed content, so the two cannot drift.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the spec's serialization); ValueError
    naming what is wrong."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a secret is whsec_ followed by base64") from exc
    if len(key) < 16:
        raise ValueError("a secret's key must be at least 16 bytes")
    return key


def signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    """HMAC-SHA256 over ``{msg_id}.{timestamp}.{body}``: a ``v1,`` signature's bytes."""
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


__all__ = ["secret_key", "signature"]
