"""Errors of the contracts package."""

from __future__ import annotations


class ContractError(ValueError):
    """A payload that does not satisfy a wire contract; the message names the field."""
