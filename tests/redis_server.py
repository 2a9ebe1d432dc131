"""A Redis server of a test's own, for what the shared one cannot do: stop and restart it,
or run it with a configuration of the test's choosing. Stops exactly what it started."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.redis_cluster import _wait_ping
from transport.net import free_port


class RedisServer:
    """``redis-server`` on a free loopback port, with data (if any) under ``workdir``."""

    def __init__(self, workdir: Path, *args: str, port: int | None = None) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            pytest.skip("redis-server/redis-cli not installed")
        self.server, self.cli = server, cli
        self.workdir = workdir
        self.args = args
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "server.log").open("ab") as log:
            command = [self.server, "--bind", "127.0.0.1", "--port", str(self.port)]
            self.proc = subprocess.Popen(
                [*command, "--dir", str(self.workdir), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_ping(self.cli, "127.0.0.1", self.port, [self.proc])
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Until the port is free again, a restart on it would fail.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done = subprocess.run(
                [self.cli, "-p", str(self.port), "ping"], capture_output=True, timeout=10
            )
            if done.returncode != 0 or b"PONG" not in done.stdout:
                return
            time.sleep(0.05)
