"""Bluetooth UUID text forms: 16- and 32-bit assigned numbers expanded on the Base UUID."""

from __future__ import annotations

import uuid as _uuid

from beacons.exceptions import BeaconError

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def uuid16_to_str(short: int) -> str:
    """The 128-bit text form of a 16-bit assigned number, as bleak spells it (lower case)."""
    if not 0 <= short <= 0xFFFF:
        raise BeaconError(f"16-bit UUID out of range: {short}")
    return f"0000{short:04x}{BASE_UUID_SUFFIX}"


def uuid32_to_str(short: int) -> str:
    """The 128-bit text form of a 32-bit assigned number."""
    if not 0 <= short <= 0xFFFFFFFF:
        raise BeaconError(f"32-bit UUID out of range: {short}")
    return f"{short:08x}{BASE_UUID_SUFFIX}"


def uuid128_to_str(raw_le: bytes) -> str:
    """The text form of a 128-bit UUID given in over-the-air (little-endian) byte order."""
    if len(raw_le) != 16:
        raise BeaconError(f"128-bit UUID must be 16 bytes, got {len(raw_le)}")
    return str(_uuid.UUID(bytes=raw_le[::-1]))


def normalize_uuid(text: str) -> str:
    """Lower-case 128-bit text form of ``text``, which may be 4, 8 or 32/36 hex digits."""
    compact = text.strip().lower().replace("-", "")
    try:
        value = int(compact, 16)
    except ValueError as exc:
        raise BeaconError(f"not a UUID: {text!r}") from exc
    if len(compact) == 4:
        return uuid16_to_str(value)
    if len(compact) == 8:
        return uuid32_to_str(value)
    if len(compact) == 32:
        return str(_uuid.UUID(compact))
    raise BeaconError(f"not a UUID: {text!r}")


def uuid_short(text: str) -> int | None:
    """The 16- or 32-bit assigned number behind a Base-UUID text form, else None."""
    if len(text) == 36 and text.endswith(BASE_UUID_SUFFIX):
        return int(text[:8], 16)
    return None


def uuid_to_le_bytes(text: str) -> bytes:
    """Over-the-air (little-endian) bytes of a 128-bit UUID text form."""
    return _uuid.UUID(text).bytes[::-1]
