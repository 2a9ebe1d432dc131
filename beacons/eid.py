"""Eddystone-EID: rotating 8-byte identifiers, computed exactly as the Eddystone spec says.

The time counter ``t`` is the advertiser's Unix time in seconds (UTC) truncated to
32 bits (DESIGN.md contract). ``rotation_exponent`` (K, 0..15) makes the identifier
change every 2**K seconds.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from beacons.exceptions import BeaconError

EID_LENGTH = 8
IDENTITY_KEY_LENGTH = 16
MAX_ROTATION_EXPONENT = 15


def _aes128_ecb(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - the spec mandates ECB on one block
    return encryptor.update(block) + encryptor.finalize()


def _check(identity_key: bytes, rotation_exponent: int) -> None:
    if len(identity_key) != IDENTITY_KEY_LENGTH:
        raise BeaconError(
            f"identity key must be {IDENTITY_KEY_LENGTH} bytes, got {len(identity_key)}"
        )
    if not 0 <= rotation_exponent <= MAX_ROTATION_EXPONENT:
        raise BeaconError(
            f"rotation exponent K must be 0..{MAX_ROTATION_EXPONENT}, got {rotation_exponent}"
        )


def temporary_key(identity_key: bytes, t: int) -> bytes:
    """The spec's temporary key: AES(identity_key, 11×00 ‖ FF ‖ 00 00 ‖ top 16 bits of t)."""
    t &= 0xFFFFFFFF
    block = bytes(11) + b"\xff" + bytes(2) + (t >> 16).to_bytes(2, "big")
    return _aes128_ecb(identity_key, block)


def window_start(t: int, rotation_exponent: int) -> int:
    """The counter with its low K bits cleared: the start of the rotation window holding t."""
    return (t & 0xFFFFFFFF) & ~((1 << rotation_exponent) - 1) & 0xFFFFFFFF


def compute_eid(identity_key: bytes, rotation_exponent: int, t: int) -> bytes:
    """The 8-byte EID advertised at time counter ``t`` (Unix seconds, truncated to 32 bits)."""
    _check(identity_key, rotation_exponent)
    start = window_start(t, rotation_exponent)
    block = bytes(11) + bytes([rotation_exponent]) + start.to_bytes(4, "big")
    return _aes128_ecb(temporary_key(identity_key, t), block)[:EID_LENGTH]
