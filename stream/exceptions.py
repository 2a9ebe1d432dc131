"""Errors of the stream package."""

from __future__ import annotations


class StreamError(Exception):
    """Root of the stream package's errors."""


class RegistryError(StreamError):
    """A customer registry operation was refused (unknown customer, bad field)."""


class ConsentLogError(StreamError):
    """The consent topic could not be read (missing, or not read to its end in time)."""

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(f"consent topic {topic}: {reason}")


class KeyringError(StreamError):
    """A gateway keyring operation was refused (unknown key id)."""


class RulesError(StreamError):
    """A rules file could not be read or does not follow the rules schema."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"rules file {path}: {reason}")
