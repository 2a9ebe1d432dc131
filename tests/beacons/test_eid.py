"""Eddystone-EID computation against the spec's sample vector."""

from __future__ import annotations

import pytest

from beacons.eid import compute_eid, temporary_key, window_start
from beacons.exceptions import BeaconError
from tests.beacons.factories import SPEC_IDENTITY_KEY


@pytest.mark.parametrize(
    ("rotation_exponent", "t", "eid"),
    [
        (10, 0, "a9b76a71c5f89290"),
        (10, 2000, "4144413e45fefa58"),
        # Same window as T=2000 (1024..2047), so the same EID.
        (10, 1024, "4144413e45fefa58"),
        (10, 2047, "4144413e45fefa58"),
    ],
)
def test_spec_vectors(rotation_exponent: int, t: int, eid: str) -> None:
    assert compute_eid(SPEC_IDENTITY_KEY, rotation_exponent, t).hex() == eid


def test_window_start_clears_low_bits() -> None:
    assert window_start(2000, 10) == 1024
    assert window_start(0xFFFFFFFF + 5, 0) == 4
    assert window_start(1_700_000_123, 0) == 1_700_000_123


def test_counter_is_truncated_to_32_bits() -> None:
    assert compute_eid(SPEC_IDENTITY_KEY, 10, 2000 + (1 << 32)) == compute_eid(
        SPEC_IDENTITY_KEY, 10, 2000
    )


def test_temporary_key_depends_only_on_top_16_bits() -> None:
    assert temporary_key(SPEC_IDENTITY_KEY, 0x10000) == temporary_key(SPEC_IDENTITY_KEY, 0x1FFFF)
    assert temporary_key(SPEC_IDENTITY_KEY, 0x10000) != temporary_key(SPEC_IDENTITY_KEY, 0x20000)


@pytest.mark.parametrize(("key", "k"), [(b"\x00" * 15, 10), (b"\x00" * 16, 16), (b"\x00" * 16, -1)])
def test_rejects_bad_key_or_exponent(key: bytes, k: int) -> None:
    with pytest.raises(BeaconError):
        compute_eid(key, k, 0)
