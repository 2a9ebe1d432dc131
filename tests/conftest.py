"""Shared fixtures: real services, a namespace per test, child processes that clean up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.children import Children
from deploy.embedded_kafka import EmbeddedKafka

ARTIFACTS = Path(os.environ.get("PROXIMA_TEST_ARTIFACTS", "artifacts"))

# redis_cluster_nodes / redis_cluster_url: one real Redis Cluster per session;
# redis_ns: the test's own Redis namespace, dropped after it
pytest_plugins = ("tests.redis_cluster", "tests.kit.services")


@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """PROXIMA_KAFKA if set, else one embedded Tansu broker for the whole session."""
    if os.environ.get("PROXIMA_KAFKA"):
        yield os.environ["PROXIMA_KAFKA"]
        return
    broker = EmbeddedKafka(log_path=None)
    asyncio.run(broker.start())
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture
def namespace() -> str:
    """A fresh topic/key prefix, so tests never see each other's traffic."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def proxima_env(kafka_url: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PROXIMA_KAFKA=kafka_url,
        PROXIMA_NAMESPACE=namespace,
        PROXIMA_STREAM_DATA_DIR=str(tmp_path / "stream-data"),
        PROXIMA_STREAM_STATS_INTERVAL_S="1",
    )
    return env


class Procs(Children):
    """``proxima`` child processes started by a test, stopped (and logs kept) after it."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        super().__init__(env, log_dir, append=False)

    def run(self, name: str, *args: str, timeout: float = 120) -> str:
        """Run a command to completion; fail with its output if it exits non-zero."""
        result = subprocess.run(
            [sys.executable, "-m", "deploy.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path(name).write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            pytest.fail(
                f"proxima {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def procs(proxima_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Procs]:
    p = Procs(proxima_env, ARTIFACTS / request.node.name)
    try:
        yield p
    finally:
        p.stop()
