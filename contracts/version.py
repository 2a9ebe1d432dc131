"""The installed distribution's name and version (what ``proxima --version`` and a
gateway's status report)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "proxima-retail"
"""The name on PyPI ("proxima" is another project's); the commands keep ``proxima``."""


def installed_version() -> str:
    """The installed version, or ``unknown`` when run from a tree that is not installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
