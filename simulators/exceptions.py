"""The simulators' errors: one root, subclasses that say what was wrong and where."""

from __future__ import annotations


class SimulatorError(Exception):
    """Root of every error raised by :mod:`simulators`."""


class LayoutError(SimulatorError):
    """A layout file is missing, malformed or inconsistent (names the file and the field)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"layout {source}: {reason}")
        self.source = source
        self.reason = reason


class ScoreInputError(SimulatorError):
    """A trace or alerts file cannot be scored (names the file and line)."""

    def __init__(self, source: str, lineno: int | None, reason: str) -> None:
        where = f"{source} line {lineno}" if lineno is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.lineno = lineno
        self.reason = reason


class ScenarioError(SimulatorError, ValueError):
    """A ``sim:`` scenario name or seed that does not exist (a ValueError, so edge can
    report it without importing the simulators)."""
