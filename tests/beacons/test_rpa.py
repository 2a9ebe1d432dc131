"""Resolvable private addresses: the Core Spec sample data and byte order."""

from __future__ import annotations

import pytest

from beacons.exceptions import BeaconError
from beacons.rpa import ah, irk_from_le, is_rpa, make_rpa, parse_address, resolve_rpa

# Bluetooth Core Spec Vol 3, Part H, 2.2.2 sample data, most significant octet first.
IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")
PRAND = bytes.fromhex("708194")
HASH = bytes.fromhex("0dfbaa")


def test_ah_spec_sample() -> None:
    assert ah(IRK, PRAND) == HASH


def test_resolve_spec_address() -> None:
    assert resolve_rpa("70:81:94:0D:FB:AA", IRK)
    assert resolve_rpa(bytes.fromhex("7081940dfbaa"), IRK)
    assert not resolve_rpa("70:81:94:0D:FB:AB", IRK)
    assert not resolve_rpa("70:81:94:0D:FB:AA", bytes(16))


def test_wire_order_irk_must_be_converted() -> None:
    wire = IRK[::-1]
    assert ah(wire, PRAND) != HASH
    assert ah(irk_from_le(wire), PRAND) == HASH


def test_non_rpa_addresses_never_resolve() -> None:
    # Top bits 0b11 (static random) with the right hash bytes still is not an RPA.
    assert not is_rpa("F0:81:94:0D:FB:AA")
    assert not resolve_rpa("F0:81:94:0D:FB:AA", IRK)


def test_make_rpa_round_trip() -> None:
    address = make_rpa(IRK, b"\xff\x12\x34")
    assert address.startswith("7F:12:34")
    assert is_rpa(address)
    assert resolve_rpa(address, IRK)


@pytest.mark.parametrize("bad", ["70:81:94", "zz:81:94:0D:FB:AA", b"\x00" * 5])
def test_bad_addresses(bad: str | bytes) -> None:
    with pytest.raises(BeaconError):
        parse_address(bad)


def test_bad_lengths() -> None:
    with pytest.raises(BeaconError):
        ah(IRK[:15], PRAND)
    with pytest.raises(BeaconError):
        ah(IRK, PRAND[:2])
