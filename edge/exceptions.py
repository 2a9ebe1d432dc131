"""Errors of the edge agent."""

from __future__ import annotations


class EdgeError(Exception):
    """Root of the edge agent's errors."""


class SourceError(EdgeError):
    """A scanner source could not be opened or read."""


class OutboxError(EdgeError):
    """The outbox database could not be opened, read or written."""


class OutboxMismatch(OutboxError):
    """The outbox file belongs to another gateway (its ``seq`` is not ours to continue)."""

    def __init__(self, path: str, owner: str, expected: str) -> None:
        self.path = path
        self.owner = owner
        self.expected = expected
        super().__init__(f"outbox {path} belongs to gateway {owner}, not {expected}")


class OutboxFull(OutboxError):
    """The cap leaves no room: only enter/exit events (never dropped) remain."""

    def __init__(self, max_rows: int, max_bytes: int, refused: int) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.refused = refused
        super().__init__(
            f"outbox full (cap {max_rows} rows / {max_bytes} bytes, nothing droppable left):"
            f" {refused} new event(s) refused"
        )


class EventRejected(OutboxError):
    """A draft is not a valid event; ``index`` is its place in the ``put`` call."""

    def __init__(self, index: int | None, reason: str) -> None:
        self.index = index
        self.reason = reason
        where = f"event {index}" if index is not None else "events"
        super().__init__(f"{where} rejected: {reason}")


class ConfigError(EdgeError):
    """A configuration file or override is invalid; ``errors`` lists (field path, reason)."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {path}: {reason}" for path, reason in errors)
        super().__init__(f"{source}: {len(errors)} error(s)\n{lines}")
