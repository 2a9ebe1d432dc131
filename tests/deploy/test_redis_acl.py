"""deploy/redis/users.acl: a gateway's Redis user reads device keys and nothing else.

A private ``redis-server`` loads the shipped ACL file (its password placeholders replaced)
on a free loopback port; the services enroll a customer through the real registry, and the
gateway's real device registry reads as the gateway's user over real sockets.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from edge.devices import RedisDeviceRegistry, new_device_key
from stream.registry import CustomerProfile, Purpose, Registry
from transport.net import free_port
from transport.redis import RedisClient, connect_redis

ACL = Path(__file__).parents[2] / "deploy" / "redis" / "users.acl"
REDIS_SERVER = shutil.which("redis-server")
PREFIX = "proxima:"
DEVICE = "00112233445566778899aabbccddeeff"
PASSWORDS = {"SERVICES": "services-pw", "GATEWAYS": "gateways-pw"}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server"),
]


def acl_with_passwords() -> str:
    text = ACL.read_text()
    for who, password in PASSWORDS.items():
        placeholder = f"#SHA256-OF-THE-{who}-PASSWORD"
        assert placeholder in text
        text = text.replace(placeholder, "#" + hashlib.sha256(password.encode()).hexdigest())
    return text


def start_redis(workdir: Path, acl: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    assert REDIS_SERVER is not None
    (workdir / "users.acl").write_text(acl)
    port = free_port()
    log = workdir / "redis.log"
    args = [
        REDIS_SERVER,
        "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--aclfile", str(workdir / "users.acl"),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    return proc, port, log


@dataclass(frozen=True)
class Server:
    port: int

    def url(self, user: str, password: str) -> str:
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    proc, port, log = start_redis(tmp_path_factory.mktemp("redis-acl"), acl_with_passwords())
    try:
        for _ in range(100):
            if b"Ready to accept connections" in log.read_bytes():
                break
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log.read_text()}")
            time.sleep(0.05)
        yield Server(port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def services(server: Server) -> AsyncIterator[RedisClient]:
    client = connect_redis(server.url("proxima", PASSWORDS["SERVICES"]))
    yield client
    await client.aclose()


@pytest.fixture
async def gateway(server: Server) -> AsyncIterator[RedisClient]:
    client = connect_redis(server.url("proxima-gateway", PASSWORDS["GATEWAYS"]))
    yield client
    await client.aclose()


async def test_the_gateway_user_reads_device_keys_and_nothing_of_the_customers(
    services: RedisClient, gateway: RedisClient
) -> None:
    registry = Registry(services, PREFIX)
    profile = CustomerProfile(
        customer_id="ana", identity_key="0f" * 16, rotation_exponent=10, name="Ana"
    )
    await registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
    await registry.register_device("ana", DEVICE)
    private, public = new_device_key()
    await RedisDeviceRegistry(services, PREFIX).register(DEVICE, public)

    found = await RedisDeviceRegistry(gateway, PREFIX).get(DEVICE)
    assert found is not None
    assert found.public_key.public_bytes_raw() == private.public_key().public_bytes_raw()

    customer_key = registry.keys.customer("ana")
    forbidden = [
        ("GET", customer_key),
        ("HMGET", customer_key, "identity_key"),
        ("HMGET", registry.keys.device_owner, DEVICE),
        ("HGETALL", f"{PREFIX}devices:{DEVICE}"),
        ("SCAN", "0"),
        ("KEYS", "*"),
        ("HSET", f"{PREFIX}devices:{DEVICE}", "revoked", "0"),
        ("DEL", f"{PREFIX}devices:{DEVICE}"),
        ("PUBLISH", f"{PREFIX}alerts", "x"),
    ]
    for command in forbidden:
        with pytest.raises(NoPermissionError):
            await gateway.execute_command(*command)


async def test_nobody_gets_in_without_a_password(server: Server) -> None:
    anonymous = connect_redis(f"redis://127.0.0.1:{server.port}/0")
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.get("anything")
    finally:
        await anonymous.aclose()
    wrong = connect_redis(server.url("proxima-gateway", "guess"))
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await wrong.ping()
    finally:
        await wrong.aclose()


def test_redis_refuses_the_file_while_a_password_placeholder_is_left(tmp_path: Path) -> None:
    proc, _, log = start_redis(tmp_path, ACL.read_text())
    try:
        assert proc.wait(timeout=10) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "password hash must be exactly 64 characters" in log.read_text()


async def test_the_gateway_user_works_through_a_redis_cluster(
    redis_cluster_nodes: list[tuple[str, int]], namespace: str
) -> None:
    # The cluster is shared by the session: add the gateway's user (its rules as shipped)
    # to each node at run time, under the test's own key prefix.
    prefix = f"{namespace}:proxima:"
    line = next(u for u in acl_with_passwords().splitlines() if "proxima-gateway" in u)
    rules = line.split()[2:]
    user = f"{namespace}-gateway"
    rules = [r.replace("~proxima:devices:*", f"~{prefix}devices:*") for r in rules]
    for host, port in redis_cluster_nodes:
        node = connect_redis(f"redis://{host}:{port}/0")
        try:
            await node.execute_command("ACL", "SETUSER", user, "reset", *rules)
        finally:
            await node.aclose()
    nodes = ",".join(f"{h}:{p}" for h, p in redis_cluster_nodes)
    services = connect_redis(f"redis+cluster://{nodes}")
    gateway = connect_redis(f"redis+cluster://{user}:{PASSWORDS['GATEWAYS']}@{nodes}")
    try:
        _, public = new_device_key()
        await RedisDeviceRegistry(services, prefix).register(DEVICE, public)
        await services.set(f"{prefix}{{r05}}customer:ana", "{}")
        found = await RedisDeviceRegistry(gateway, prefix).get(DEVICE)
        assert found is not None
        with pytest.raises(NoPermissionError):
            await gateway.get(f"{prefix}{{r05}}customer:ana")
    finally:
        await services.delete(f"{prefix}devices:{DEVICE}", f"{prefix}{{r05}}customer:ana")
        await services.aclose()
        await gateway.aclose()
        for host, port in redis_cluster_nodes:
            node = connect_redis(f"redis://{host}:{port}/0")
            try:
                await node.execute_command("ACL", "DELUSER", user)
            finally:
                await node.aclose()
