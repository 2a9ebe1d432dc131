"""Customers' identity keys sealed at rest in Redis, with a key only the stream holds.

A sealed identity key is ``sealed:v1:{kid}:{base64url(nonce ‖ AES-256-GCM(key))}``, the
customer id bound as associated data (a sealed key copied onto another customer does not
open). ``kid`` names the sealing key (the first 8 hex digits of its SHA-256), so keys can
rotate: the first key of ``PROXIMA_STREAM_IDENTITY_SEAL_KEYS`` seals, every listed key
opens, and ``proxima customers seal-keys`` re-seals what an older key (or none) wrote.
Whoever reads Redis without the seal key (a gateway with too wide a Redis user, a dump, a
replica) learns no identity key, so no customer's EIDs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stream.exceptions import RegistryError

SEALED_PREFIX = "sealed:v1:"
SEAL_KEY_BYTES = 32
_NONCE_BYTES = 12


class SealError(RegistryError):
    """An identity key could not be sealed or opened; ``customer_id`` says whose."""

    def __init__(self, customer_id: str, reason: str) -> None:
        self.customer_id = customer_id
        self.reason = reason
        super().__init__(f"customer {customer_id!r}: identity key: {reason}")


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


def _kid(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _aad(customer_id: str) -> bytes:
    return f"proxima identity key v1\n{customer_id}".encode()


def parse_seal_keys(text: str, source: str = "PROXIMA_STREAM_IDENTITY_SEAL_KEYS") -> list[bytes]:
    """Hex keys separated by commas or whitespace (the first seals); a bad one names itself."""
    keys: list[bytes] = []
    for i, part in enumerate(text.replace(",", " ").split()):
        try:
            key = bytes.fromhex(part)
        except ValueError:
            raise ValueError(f"{source}: key {i + 1} is not hex") from None
        if len(key) != SEAL_KEY_BYTES:
            raise ValueError(
                f"{source}: key {i + 1} is {len(key)} bytes; a seal key is {SEAL_KEY_BYTES} "
                f"bytes ({2 * SEAL_KEY_BYTES} hex digits)"
            )
        keys.append(key)
    return keys


def new_seal_key() -> str:
    """A fresh seal key, hex (for ``PROXIMA_STREAM_IDENTITY_SEAL_KEYS``)."""
    return os.urandom(SEAL_KEY_BYTES).hex()


class IdentitySealer:
    """Seals with the first key, opens with any; pure (no I/O)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("an IdentitySealer needs at least one key")
        self._keys = {_kid(k): AESGCM(k) for k in keys}
        self.current = _kid(keys[0])

    @classmethod
    def from_settings(cls, keys: str, keys_file: Path | None) -> IdentitySealer | None:
        """From the stream's settings: a list of hex keys and/or a file of them; none → None."""
        parsed = parse_seal_keys(keys)
        if keys_file is not None:
            try:
                text = keys_file.read_text()
            except OSError as exc:
                raise ValueError(f"identity seal keys file {keys_file}: {exc}") from exc
            parsed += parse_seal_keys(text, str(keys_file))
        return cls(parsed) if parsed else None

    def seal(self, identity_key: str, customer_id: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        box = self._keys[self.current].encrypt(
            nonce, bytes.fromhex(identity_key), _aad(customer_id)
        )
        blob = base64.urlsafe_b64encode(nonce + box).rstrip(b"=").decode()
        return f"{SEALED_PREFIX}{self.current}:{blob}"

    def open(self, stored: str, customer_id: str) -> str:
        """The identity key (hex) from its sealed form."""
        kid, _, blob = stored.removeprefix(SEALED_PREFIX).partition(":")
        aead = self._keys.get(kid)
        if aead is None:
            raise SealError(
                customer_id,
                f"sealed with key {kid}, which PROXIMA_STREAM_IDENTITY_SEAL_KEYS does not hold "
                f"(it holds {', '.join(sorted(self._keys))})",
            )
        try:
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
            return aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(customer_id)).hex()
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise SealError(
                customer_id, "sealed value does not open (corrupt, or another customer's)"
            ) from exc

    def is_current(self, stored: str) -> bool:
        """Sealed with the sealing key (nothing for ``seal-keys`` to do)."""
        return stored.startswith(f"{SEALED_PREFIX}{self.current}:")
