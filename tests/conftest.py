"""Shared fixtures: real services, a namespace per test, child processes that clean up."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

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


class Procs:
    """``proxima`` child processes started by a test, stopped (and logs kept) after it."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

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
        (self.log_dir / f"{name}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            pytest.fail(
                f"proxima {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=20)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()


@pytest.fixture
def procs(proxima_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Procs]:
    p = Procs(proxima_env, ARTIFACTS / request.node.name)
    try:
        yield p
    finally:
        p.stop_all()
