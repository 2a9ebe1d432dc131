"""Gateway message signatures: HMAC-SHA256 over the topic, the publish time and the payload,
in MQTT 5 user properties.

A gateway holds one secret per key id (``kid``), issued by the operator. Each message it
publishes under ``.../stores/{store}/gateways/{gw}/`` (event batches, status, its last
will) carries MQTT 5 user properties:

- ``proxima-kid``: the key id (``[A-Za-z0-9._-]{1,64}``);
- ``proxima-ts``: the publish time, Unix milliseconds (decimal digits);
- ``proxima-sig``: ``v2=`` + lowercase hex of
  ``HMAC-SHA256(secret, b"proxima-batch-v2\n" + topic + b"\n" + ts + b"\n" + payload)``.

The topic is signed so a message copied onto another gateway's topic fails; the payload
is signed byte for byte (no re-serialisation), so the contract's JSON list travels
unchanged and tools that do not sign keep working where the bridge does not require
signatures. The signed publish time lets the bridge refuse an old signed batch replayed
after the pipeline's dedupe window (a window around its clock, and a per-gateway
high-water mark: stream.bridge).

``v1=`` signatures (``HMAC(secret, b"proxima-batch-v1\n" + topic + b"\n" + payload)``, no
``proxima-ts``), as gateways before v2 send them, still verify; such a batch has no
signed time (:attr:`Verified.published_at_ms` is None).

The verifier needs, per key id, the secret and the store and gateway that own it
(:class:`GatewayKey`); a key is only good for its own gateway's topics.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from contracts.exceptions import ContractError

KID_PROPERTY = "proxima-kid"
SIG_PROPERTY = "proxima-sig"
TS_PROPERTY = "proxima-ts"
SIG_VERSION = "v2"
"""What :func:`sign` writes; :func:`verify` also takes ``v1``."""
_DOMAINS = {"v1": b"proxima-batch-v1\n", "v2": b"proxima-batch-v2\n"}
_TS = re.compile(r"[0-9]{1,15}")
KID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What a key id may be (it names a Redis hash field and a config value)."""
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
    trace_time: bool = False
    """A tool's key (``proxima replay``): its events carry a recorded trace's time, so the
    bridge does not hold their ``observed_at`` to its own clock (the publish time it still
    does)."""

    def __post_init__(self) -> None:
        if not KID_RE.fullmatch(self.kid):
            raise ValueError(f"key id {self.kid!r}: must match {KID_RE.pattern}")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"key {self.kid!r}: secret must be at least {MIN_SECRET_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class Verified:
    """A message whose signature verified: the key, and the signed publish time (v2)."""

    key: GatewayKey
    published_at_ms: int | None


def signature(secret: bytes, topic: str, payload: bytes, ts: str | None = None) -> str:
    """The ``proxima-sig`` value for ``payload`` published on ``topic``: v2 with the publish
    time ``ts`` (Unix ms, decimal), v1 without."""
    if ts is None:
        mac = hmac.new(secret, _DOMAINS["v1"] + topic.encode() + b"\n" + payload, hashlib.sha256)
        return f"v1={mac.hexdigest()}"
    signed = _DOMAINS["v2"] + topic.encode() + b"\n" + ts.encode() + b"\n" + payload
    return f"v2={hmac.new(secret, signed, hashlib.sha256).hexdigest()}"


def sign(
    kid: str, secret: bytes, topic: str, payload: bytes, *, published_at: float | None = None
) -> dict[str, str]:
    """The user properties a gateway attaches to one message published at ``published_at``
    (Unix seconds; default now)."""
    if not KID_RE.fullmatch(kid):
        raise ValueError(f"key id {kid!r}: must match {KID_RE.pattern}")
    ts = str(round((time.time() if published_at is None else published_at) * 1000))
    return {
        KID_PROPERTY: kid,
        TS_PROPERTY: ts,
        SIG_PROPERTY: signature(secret, topic, payload, ts),
    }


def verify(
    topic: str,
    payload: bytes,
    properties: Iterable[tuple[str, str]],
    lookup: Callable[[str], GatewayKey | None],
    *,
    store_id: str,
    gateway_id: str,
) -> GatewayKey:
    """Check one message; return the key that signed it or raise :class:`SignatureError`."""
    return verify_message(
        topic, payload, properties, lookup, store_id=store_id, gateway_id=gateway_id
    ).key


def verify_message(
    topic: str,
    payload: bytes,
    properties: Iterable[tuple[str, str]],
    lookup: Callable[[str], GatewayKey | None],
    *,
    store_id: str,
    gateway_id: str,
) -> Verified:
    """Check one message (v1 or v2); return its key and signed time or raise
    :class:`SignatureError`.

    ``store_id``/``gateway_id`` are the ones in the topic; the key must belong to them.
    """
    props: dict[str, str] = {}
    for name, value in properties:
        props.setdefault(name, value)
    kid = props.get(KID_PROPERTY)
    sig = props.get(SIG_PROPERTY)
    if kid is None or sig is None:
        raise SignatureError(f"unsigned message (no {KID_PROPERTY}/{SIG_PROPERTY} user property)")
    if not KID_RE.fullmatch(kid):
        raise SignatureError("malformed key id")
    version = sig.partition("=")[0]
    if version not in _DOMAINS or "=" not in sig:
        raise SignatureError(f"unsupported signature version in {sig[:8]!r}", kid)
    ts = props.get(TS_PROPERTY) if version == "v2" else None
    if version == "v2" and (ts is None or not _TS.fullmatch(ts)):
        raise SignatureError(f"v2 signature without a valid {TS_PROPERTY} (Unix ms)", kid)
    key = lookup(kid)
    if key is None:
        raise SignatureError("unknown key id", kid)
    if key.revoked:
        raise SignatureError("revoked key", kid)
    if (key.store_id, key.gateway_id) != (store_id, gateway_id):
        raise SignatureError(
            f"key belongs to {key.store_id}/{key.gateway_id}, not {store_id}/{gateway_id}", kid
        )
    if not hmac.compare_digest(sig, signature(key.secret, topic, payload, ts)):
        raise SignatureError("signature does not match the topic, time and payload", kid)
    return Verified(key, None if ts is None else int(ts))
