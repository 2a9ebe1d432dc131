"""Bluetooth resolvable private addresses (RPA): the ``ah`` hash and address resolution.

Byte order: IRKs, ``prand`` and hashes are taken **most significant octet first**, as the
Core Specification prints its sample data (Vol 3, Part H, 2.2.2) and as an address is
written ``AA:BB:CC:DD:EE:FF``. HCI and SMP carry them least significant octet first;
convert with :func:`irk_from_le` when reading an IRK from such a source (e.g. an SMP
Identity Information PDU). Check the byte order of any other source against the
sample data before trusting it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from beacons.exceptions import BeaconError

IRK_LENGTH = 16
_ZERO13 = bytes(13)


def irk_from_le(irk_le: bytes) -> bytes:
    """The canonical (MSB-first) IRK from its least-significant-octet-first wire form."""
    if len(irk_le) != IRK_LENGTH:
        raise BeaconError(f"IRK must be {IRK_LENGTH} bytes, got {len(irk_le)}")
    return bytes(irk_le[::-1])


def ah(irk: bytes, prand: bytes) -> bytes:
    """Random address hash: the low 24 bits of AES-128(irk, 0^104 ‖ prand), MSB-first."""
    if len(irk) != IRK_LENGTH:
        raise BeaconError(f"IRK must be {IRK_LENGTH} bytes, got {len(irk)}")
    if len(prand) != 3:
        raise BeaconError(f"prand must be 3 bytes, got {len(prand)}")
    encryptor = Cipher(algorithms.AES(bytes(irk)), modes.ECB()).encryptor()  # noqa: S305 - the spec's e() is one AES block
    return (encryptor.update(_ZERO13 + bytes(prand)) + encryptor.finalize())[13:]


def parse_address(address: str | bytes) -> bytes:
    """Six address octets, MSB first, from ``AA:BB:CC:DD:EE:FF`` text or 6 MSB-first bytes."""
    if isinstance(address, bytes | bytearray):
        raw = bytes(address)
    else:
        text = address.strip().replace(":", "").replace("-", "")
        try:
            raw = bytes.fromhex(text)
        except ValueError as exc:
            raise BeaconError(f"not a Bluetooth address: {address!r}") from exc
    if len(raw) != 6:
        raise BeaconError(f"a Bluetooth address has 6 octets, got {len(raw)}: {address!r}")
    return raw


def is_rpa(address: str | bytes) -> bool:
    """True when the two top bits of the address are 0b01 (a resolvable private address)."""
    return parse_address(address)[0] >> 6 == 0b01


def resolve_rpa(address: str | bytes, irk: bytes) -> bool:
    """True if ``address`` is a resolvable private address generated from ``irk``."""
    raw = parse_address(address)
    if raw[0] >> 6 != 0b01:
        return False
    return ah(irk, raw[:3]) == raw[3:]


def make_rpa(irk: bytes, prand: bytes) -> str:
    """The RPA text for ``prand`` (its top two bits are forced to 0b01), for tests and simulators."""
    if len(prand) != 3:
        raise BeaconError(f"prand must be 3 bytes, got {len(prand)}")
    prand = bytes([(prand[0] & 0x3F) | 0x40]) + bytes(prand[1:])
    return ":".join(f"{b:02X}" for b in prand + ah(irk, prand))
