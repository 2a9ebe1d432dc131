"""Enrolled customers for tests: ``make_customer(**overrides)``."""

from __future__ import annotations

from typing import Any

from stream.registry import CustomerProfile

ANA_KEY = bytes.fromhex("0102030405060708090a111213141516")
"""The identity key most tests give Ana (and compute her EIDs from)."""


def make_customer(**overrides: Any) -> CustomerProfile:
    """Ana (``customer_id="ana"``, :data:`ANA_KEY`, rotation exponent 10), nothing else
    filled in and nothing visible; ``overrides`` set any field."""
    fields: dict[str, Any] = {
        "customer_id": "ana",
        "identity_key": ANA_KEY.hex(),
        "rotation_exponent": 10,
    }
    return CustomerProfile(**(fields | overrides))
