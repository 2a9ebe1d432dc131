"""Who sent a request: its signature headers, checked against the device registry, and its nonce.

Whether a device is registered or revoked is told only to whoever holds its key: anyone
else gets the one answer of a wrong signature, after the same work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.devices import DEVICE_ID_RE, DeviceRegistry, RegistryUnavailable
from edge.ingest.exceptions import Rejection
from edge.ingest.nonces import NonceCache
from edge.ingest.signing import (
    H_DEVICE,
    H_NONCE,
    H_SIGNATURE,
    H_TIMESTAMP,
    NONCE_RE,
    TIMESTAMP_RE,
    verify_signature,
)

# Verifies nothing (its private key is never kept): an unregistered device's request costs
# the same signature check as a registered one's.
_NOBODY = Ed25519PrivateKey.generate().public_key()
_NOT_VERIFIED = (
    "the signature does not verify for this device (wrong key, version, path, timestamp, "
    "nonce or body, or the device is not registered)"
)


@dataclass(frozen=True, slots=True)
class Auth:
    """An authenticated request: its device, and the nonce it claimed."""

    device_id: str
    nonce: str


@dataclass(frozen=True, slots=True)
class _Signed:
    device_id: str
    timestamp: str
    nonce: str
    signature: str


@dataclass(frozen=True, slots=True, eq=False)
class Authenticator:
    """Checks a request's signature headers (clock injected) and claims its nonce."""

    registry: DeviceRegistry
    nonces: NonceCache
    clock: Callable[[], float]
    clock_skew_s: float

    async def authenticate(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Auth:
        """The request's device and nonce, or a :class:`Rejection` (401, 409 or 503)."""
        signed = self._signed_headers(headers)
        await self._verify(signed, method, path, body)
        claimed = self.nonces.claim(signed.device_id, signed.nonce)
        if claimed == "replayed":
            raise Rejection(409, "replayed_nonce", f"nonce {signed.nonce} was already used")
        if claimed == "full":
            raise Rejection(503, "unavailable", "nonce cache is full; retry shortly")
        return Auth(signed.device_id, signed.nonce)

    def _signed_headers(self, h: Mapping[str, str]) -> _Signed:
        missing = [n for n in (H_DEVICE, H_TIMESTAMP, H_NONCE, H_SIGNATURE) if not h.get(n)]
        if missing:
            raise Rejection(401, "missing_signature", f"missing header(s): {', '.join(missing)}")
        device_id, ts, nonce, sig = h[H_DEVICE], h[H_TIMESTAMP], h[H_NONCE], h[H_SIGNATURE]
        if not DEVICE_ID_RE.match(device_id):
            raise Rejection(401, "unknown_device", f"{H_DEVICE} must be 16-64 lowercase hex digits")
        if not TIMESTAMP_RE.match(ts):
            raise Rejection(401, "clock_skew", f"{H_TIMESTAMP} must be Unix time in whole seconds")
        off = int(ts) - self.clock()
        if abs(off) > self.clock_skew_s:
            raise Rejection(
                401,
                "clock_skew",
                f"timestamp is {off:+.0f} s from the gateway's clock "
                f"(allowed ±{self.clock_skew_s:g} s)",
            )
        if not NONCE_RE.match(nonce):
            raise Rejection(401, "bad_signature", f"{H_NONCE} must be 16-64 of [A-Za-z0-9_-]")
        return _Signed(device_id, ts, nonce, sig)

    async def _verify(self, signed: _Signed, method: str, path: str, body: bytes) -> None:
        device_id = signed.device_id
        try:
            key = await self.registry.get(device_id)
        except RegistryUnavailable as exc:
            raise Rejection(503, "unavailable", f"device registry unreachable: {exc}") from exc
        try:
            verify_signature(
                key.public_key if key is not None else _NOBODY,
                method,
                path,
                signed.timestamp,
                signed.nonce,
                device_id,
                body,
                signed.signature,
            )
        except Rejection as rej:
            if key is None:
                cause, note = "unknown_device", f"device {device_id} is not registered"
            elif key.revoked:
                cause, note = "unknown_device", f"device {device_id} is revoked ({rej.detail})"
            else:
                cause, note = rej.reason, rej.detail
            raise Rejection(401, "bad_signature", _NOT_VERIFIED, cause=cause, note=note) from rej
        if key is None:  # unreachable: nothing verifies against _NOBODY
            raise Rejection(401, "bad_signature", _NOT_VERIFIED, cause="unknown_device")
        if key.revoked:
            raise Rejection(
                401, "unknown_device", f"device {device_id} is revoked: enroll the app again"
            )
