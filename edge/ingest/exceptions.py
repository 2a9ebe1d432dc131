"""Errors of the app-event ingest: a configuration that does not load, one rejected request."""

from __future__ import annotations

from pydantic import ValidationError

from contracts.validation import describe_validation
from edge.exceptions import EdgeError


class IngestConfigError(EdgeError):
    """A store ingest file or the TLS setup is invalid; the message names each bad field."""


class Rejection(EdgeError):
    """One rejected request: HTTP status, reason code, detail (and Retry-After for 429).

    ``cause`` and ``note`` are what operators see (metrics, quarantine, log) when the
    client must be told less: an unregistered device answers like a bad signature.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        retry_after: float | None = None,
        cause: str | None = None,
        note: str | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.cause = cause or reason
        self.note = note or detail
        super().__init__(f"{status} {self.cause}: {self.note}")


def describe(exc: ValidationError) -> str:
    """Every error of ``exc`` as ``loc: msg``, joined by ``; ``."""
    return describe_validation(exc, "(body)")
