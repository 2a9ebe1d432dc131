"""The request signature, scheme ``v1``: what a device signs, and the check of it.

Each device holds an Ed25519 private key; its public key is registered under its
``device_id`` (:mod:`edge.devices`). A request carries

- ``X-Proxima-Device``: the device id (16-64 lowercase hex digits);
- ``X-Proxima-Timestamp``: Unix time in whole seconds;
- ``X-Proxima-Nonce``: 16-64 characters of ``[A-Za-z0-9_-]``, fresh for every request;
- ``X-Proxima-Signature``: ``v1=`` + base64url (no padding) of the Ed25519 signature of

  ``proxima-app-v1\\n{METHOD}\\n{path}\\n{timestamp}\\n{nonce}\\n{device_id}\\n{hex sha256(body)}``

  where ``path`` is the request target exactly as sent (with any query string).

:func:`sign_request` computes these headers, as the app does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.ingest.exceptions import Rejection

SIG_VERSION = "v1"
_DOMAIN = "proxima-app-v1"
H_DEVICE = "X-Proxima-Device"
H_TIMESTAMP = "X-Proxima-Timestamp"
H_NONCE = "X-Proxima-Nonce"
H_SIGNATURE = "X-Proxima-Signature"
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")


def canonical_string(
    method: str, path: str, timestamp: str, nonce: str, device_id: str, body: bytes
) -> bytes:
    """The bytes a device signs (see the module doc)."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((_DOMAIN, method.upper(), path, timestamp, nonce, device_id, digest)).encode()


def sign_request(
    private_key: Ed25519PrivateKey,
    device_id: str,
    method: str,
    path: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers the app sends with one request (for simulators, tests and the bench)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_urlsafe(18) if nonce is None else nonce
    sig = private_key.sign(canonical_string(method, path, ts, nonce, device_id, body))
    return {
        H_DEVICE: device_id,
        H_TIMESTAMP: ts,
        H_NONCE: nonce,
        H_SIGNATURE: f"{SIG_VERSION}=" + base64.urlsafe_b64encode(sig).rstrip(b"=").decode(),
        "Content-Type": "application/json",
    }


def verify_signature(
    public_key: Ed25519PublicKey,
    method: str,
    path: str,
    timestamp: str,
    nonce: str,
    device_id: str,
    body: bytes,
    signature_header: str,
) -> None:
    """Check an ``X-Proxima-Signature`` value; raise a 401 ``bad_signature`` :class:`Rejection`."""
    if not signature_header.startswith(f"{SIG_VERSION}="):
        raise Rejection(
            401, "bad_signature", f"unsupported signature version {signature_header[:6]!r}"
        )
    raw = signature_header[len(SIG_VERSION) + 1 :]
    try:
        signature = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Rejection(401, "bad_signature", "signature is not base64url") from exc
    try:
        public_key.verify(
            signature, canonical_string(method, path, timestamp, nonce, device_id, body)
        )
    except InvalidSignature as exc:
        raise Rejection(
            401,
            "bad_signature",
            "signature does not match the method, path, timestamp, nonce and body",
        ) from exc
