"""Errors of the stream package."""

from __future__ import annotations


class StreamError(Exception):
    """Root of the stream package's errors."""


class RegistryError(StreamError):
    """A customer registry operation was refused (unknown customer, bad field)."""


class KeyringError(StreamError):
    """A gateway keyring operation was refused (unknown key id)."""
