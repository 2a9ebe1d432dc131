"""Errors of the edge agent."""

from __future__ import annotations


class EdgeError(Exception):
    """Root of the edge agent's errors."""


class SourceError(EdgeError):
    """A scanner source could not be opened or read."""
