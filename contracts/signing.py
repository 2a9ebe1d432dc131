"""Gateway batch signatures: HMAC-SHA256 over the topic and the payload, in MQTT 5 user properties.

A gateway holds one secret per key id (``kid``), issued by the operator. Each event batch it
publishes on ``.../stores/{store}/gateways/{gw}/events`` carries two MQTT 5 user properties:

- ``proxima-kid``: the key id (``[A-Za-z0-9._-]{1,64}``);
- ``proxima-sig``: ``v1=`` + lowercase hex of
  ``HMAC-SHA256(secret, b"proxima-batch-v1\\n" + topic + b"\\n" + payload)``.

The topic is signed so a batch copied onto another gateway's topic fails; the payload is
signed byte for byte (no re-serialisation), so the contract's JSON list travels unchanged
and tools that do not sign keep working where the bridge does not require signatures.
Replays of a whole signed batch are harmless by design: every event has its ``event_id``,
which the pipeline deduplicates end to end. The ``v1=`` prefix leaves room for another
algorithm without a topic change.

The verifier needs, per key id, the secret and the store and gateway that own it
(:class:`GatewayKey`); a key is only good for its own gateway's topic.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from contracts.exceptions import ContractError

KID_PROPERTY = "proxima-kid"
SIG_PROPERTY = "proxima-sig"
SIG_VERSION = "v1"
_DOMAIN = b"proxima-batch-v1\n"
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_SECRET_BYTES = 16


class SignatureError(ContractError):
    """A batch whose signature is missing, malformed, unknown or wrong; ``reason`` says which."""

    def __init__(self, reason: str, kid: str | None = None) -> None:
        self.reason = reason
        self.kid = kid
        super().__init__(f"gateway signature: {reason}" + (f" (kid {kid!r})" if kid else ""))


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """A gateway's signing key as the verifier knows it."""

    kid: str
    store_id: str
    gateway_id: str
    secret: bytes = field(repr=False)
    revoked: bool = False

    def __post_init__(self) -> None:
        if not _KID.fullmatch(self.kid):
            raise ValueError(f"key id {self.kid!r}: must match [A-Za-z0-9._-]{{1,64}}")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"key {self.kid!r}: secret must be at least {MIN_SECRET_BYTES} bytes")


def signature(secret: bytes, topic: str, payload: bytes) -> str:
    """The ``proxima-sig`` value for ``payload`` published on ``topic``."""
    mac = hmac.new(secret, _DOMAIN + topic.encode() + b"\n" + payload, hashlib.sha256)
    return f"{SIG_VERSION}={mac.hexdigest()}"


def sign(kid: str, secret: bytes, topic: str, payload: bytes) -> dict[str, str]:
    """The user properties a gateway attaches to one batch."""
    if not _KID.fullmatch(kid):
        raise ValueError(f"key id {kid!r}: must match [A-Za-z0-9._-]{{1,64}}")
    return {KID_PROPERTY: kid, SIG_PROPERTY: signature(secret, topic, payload)}


def verify(
    topic: str,
    payload: bytes,
    properties: Iterable[tuple[str, str]],
    lookup: Callable[[str], GatewayKey | None],
    *,
    store_id: str,
    gateway_id: str,
) -> GatewayKey:
    """Check one batch; return the key that signed it or raise :class:`SignatureError`.

    ``store_id``/``gateway_id`` are the ones in the topic; the key must belong to them.
    """
    props: dict[str, str] = {}
    for name, value in properties:
        props.setdefault(name, value)
    kid = props.get(KID_PROPERTY)
    sig = props.get(SIG_PROPERTY)
    if kid is None or sig is None:
        raise SignatureError(f"unsigned batch (no {KID_PROPERTY}/{SIG_PROPERTY} user property)")
    if not _KID.fullmatch(kid):
        raise SignatureError("malformed key id")
    if not sig.startswith(f"{SIG_VERSION}="):
        raise SignatureError(f"unsupported signature version in {sig[:8]!r}", kid)
    key = lookup(kid)
    if key is None:
        raise SignatureError("unknown key id", kid)
    if key.revoked:
        raise SignatureError("revoked key", kid)
    if (key.store_id, key.gateway_id) != (store_id, gateway_id):
        raise SignatureError(
            f"key belongs to {key.store_id}/{key.gateway_id}, not {store_id}/{gateway_id}", kid
        )
    if not hmac.compare_digest(sig, signature(key.secret, topic, payload)):
        raise SignatureError("signature does not match the topic and payload", kid)
    return key
