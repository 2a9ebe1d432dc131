"""``proxima`` as a user runs it: a child process to its end, its output captured."""

from __future__ import annotations

import subprocess
import sys


def proxima(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``proxima <args>`` with ``env`` (default: this process's); any exit code."""
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
