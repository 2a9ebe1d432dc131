"""Skip a test whose outside tool is missing, except under `make test`, where it fails.

`make test` installs the tools (deploy/ensure-test-tools.sh) and sets
PROXIMA_REQUIRE_TEST_TOOLS=1, so a tool that went missing fails loudly there instead of
turning its tests into silent skips.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRED = os.environ.get("PROXIMA_REQUIRE_TEST_TOOLS") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; fail with it when the tools are required."""
    if REQUIRED:
        pytest.fail(f"PROXIMA_REQUIRE_TEST_TOOLS=1 but {reason}", pytrace=False)
    pytest.skip(reason)
