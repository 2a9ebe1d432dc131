"""A Redis server of one test's own, to stop and start again (a Redis restart, for real).

The shared Redis on 6379 serves everyone; a test that needs Redis to go away starts its
own ``redis-server`` on a free loopback port, with an append-only file so a restart keeps
the data as a production Redis (AOF) would, and stops exactly the process it started.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from transport.net import free_port


class PrivateRedis:
    """``redis-server`` on 127.0.0.1:``port`` with its data in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip("redis-server not installed: no private Redis to restart")
        self.server = server
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError((self.workdir / "redis.log").read_text())
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[PrivateRedis]:
    """A started :class:`PrivateRedis`, stopped at the end whatever happened."""
    redis = PrivateRedis(workdir)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
