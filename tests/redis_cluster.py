"""A real Redis Cluster for the tests that run against one.

:func:`redis_cluster` starts three primaries from the installed ``redis-server`` on free
loopback ports (no replicas, no persistence) and stops exactly the processes it started.
The session fixture :func:`redis_cluster_url` shares one cluster between every test of a
run (each test keeps to its own key prefix) and gives its ``redis+cluster://`` URL, the one
``transport.redis.connect_redis`` and ``PROXIMA_REDIS`` take; without ``redis-server``
those tests skip, saying why.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.require import unavailable
from transport.net import free_port


@pytest.fixture(scope="session")
def redis_cluster_nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[tuple[str, int]]]:
    """The (host, port) of a three-primary Redis Cluster, started once per test session."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        unavailable("redis-server/redis-cli not installed: no Redis Cluster to start")
    with redis_cluster(Path(tmp_path_factory.mktemp("redis-cluster"))) as nodes:
        yield nodes


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster_nodes: list[tuple[str, int]]) -> str:
    """``redis+cluster://host:port,host:port,...`` of :func:`redis_cluster_nodes`."""
    return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in redis_cluster_nodes)


@contextlib.contextmanager
def redis_cluster(workdir: Path, nodes: int = 3) -> Iterator[list[tuple[str, int]]]:
    """A Redis Cluster of ``nodes`` primaries on free ports (no replicas, no persistence).

    Yields the nodes' (host, port); stops exactly the processes it started.
    """
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise FileNotFoundError("redis-server and redis-cli are needed for a Redis Cluster")
    procs: list[subprocess.Popen[bytes]] = []
    addrs: list[tuple[str, int]] = []
    try:
        for i in range(nodes):
            port, bus = free_port(), free_port()
            node_dir = workdir / f"node-{i}"
            node_dir.mkdir(parents=True)
            log = (node_dir / "server.log").open("wb")
            command = [
                server,
                "--bind", "127.0.0.1", "--port", str(port), "--cluster-port", str(bus),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                "--dir", str(node_dir),
            ]  # fmt: skip
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
            log.close()
            addrs.append(("127.0.0.1", port))
        for host, port in addrs:
            _wait_ping(cli, host, port, procs)
        nodes_arg = [f"{h}:{p}" for h, p in addrs]
        create = [
            cli,
            "--cluster",
            "create",
            *nodes_arg,
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        subprocess.run(create, check=True, capture_output=True, timeout=60)
        for host, port in addrs:
            _wait_cluster_ok(cli, host, port)
        yield addrs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ping(cli: str, host: str, port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 20
    while True:
        done = subprocess.run(
            [cli, "-h", host, "-p", str(port), "ping"], capture_output=True, timeout=10
        )
        if done.stdout.strip() == b"PONG":
            return
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on {host}:{port} did not start")
        time.sleep(0.05)


def _wait_cluster_ok(cli: str, host: str, port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        info = subprocess.run(
            [cli, "-h", host, "-p", str(port), "cluster", "info"], capture_output=True, timeout=10
        ).stdout
        if b"cluster_state:ok" in info:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster node {host}:{port} never reported cluster_state:ok")
        time.sleep(0.1)
