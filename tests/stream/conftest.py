"""Fixtures shared by the stream's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with AOF (so it comes back with its data), for tests that stop
    and start Redis under a service."""
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--save", "").start()
    try:
        yield server
    finally:
        server.stop()
