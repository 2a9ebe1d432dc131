"""deploy/: nothing anonymous, nothing published beyond the host, secrets where they are used.

The compose file's own Mosquitto configuration and password-file script are run here with
the Debian binaries (no container engine): its paths are pointed at a temporary directory
and its listener at a free loopback port, the rest is the file's text as shipped.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from stream.settings import StreamSettings
from transport.mqtt import MqttClient
from transport.net import free_port

COMPOSE = Path(__file__).parents[2] / "deploy" / "compose" / "compose.yaml"
K8S = COMPOSE.parents[1] / "k8s"
SEAL = "PROXIMA_STREAM_IDENTITY_SEAL_KEYS"
ENV_EXAMPLE = COMPOSE.with_name(".env.example")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd")
MOSQUITTO_PUB = shutil.which("mosquitto_pub")
LOOPBACK = {"127.0.0.1", "::1", "[::1]"}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _host_ip(port: str | int | dict[str, Any]) -> str:
    """The host address a compose port entry publishes on ('' = every interface)."""
    if isinstance(port, dict):
        return str(port.get("host_ip", ""))
    text = str(port).split("/")[0]
    if text.startswith("["):  # [::1]:8080:8080
        return text[: text.index("]") + 1]
    parts = text.split(":")
    return parts[0] if len(parts) == 3 else ""


def test_compose_publishes_ports_on_the_loopback_interface_only() -> None:
    published = {
        name: [_host_ip(p) for p in service.get("ports", [])]
        for name, service in _compose()["services"].items()
    }
    everywhere = {name: ips for name, ips in published.items() if set(ips) - LOOPBACK}
    assert not everywhere, f"published on every interface: {everywhere}"
    assert published["mosquitto"]  # still reachable from the host
    assert published["notifier"]


def test_the_console_cookie_is_secure_in_compose() -> None:
    env = _compose()["services"]["notifier"]["environment"]
    assert str(env.get("PROXIMA_NOTIFIER_COOKIE_SECURE", "true")).lower() == "true"


def test_only_the_stream_worker_holds_the_identity_seal_key() -> None:
    holders = {
        name
        for name, service in _compose()["services"].items()
        if SEAL in (service.get("environment") or {})
    }
    assert holders == {"stream-worker"}
    docs = [d for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    secret = next(d for d in docs if d["metadata"]["name"] == "proxima-identity-seal")
    assert set(secret["stringData"]) == {SEAL}
    readers = {
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
        for ref in c.get("envFrom", [])
        if ref.get("secretRef", {}).get("name") == "proxima-identity-seal"
    }
    assert readers == {"proxima-stream-worker"}
    with pytest.raises(ValidationError, match="not hex"):  # a placeholder left fails at start
        StreamSettings(identity_seal_keys=secret["stringData"][SEAL])


def test_every_variable_compose_needs_is_in_the_env_example() -> None:
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    example = set(re.findall(r"^([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    assert needed, "compose takes its passwords from .env"
    assert needed <= example


@dataclass(frozen=True)
class Broker:
    port: int
    passwords: dict[str, str]

    def url(self, user: str) -> str:
        return f"mqtt://{user.replace('/', '%2F')}:{self.passwords[user]}@127.0.0.1:{self.port}"


def _unescape(text: str) -> str:
    return text.replace("$$", "$")


@pytest.fixture(scope="module")
def compose_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Mosquitto with compose's config and the password file compose's script writes."""
    if not (Path(MOSQUITTO).exists() and PASSWD):
        pytest.skip("needs mosquitto and mosquitto_passwd (apt-get install mosquitto)")
    compose = _compose()
    work = tmp_path_factory.mktemp("compose-mosquitto")
    passwd = work / "passwd"
    passwd.touch(mode=0o600)
    passwords = {"proxima-bridge": "bridge-pw", "proxima-notifier": "notifier-pw"}
    users = compose["services"].get("mosquitto-users", {})  # none: a broker without users
    env_names = {"BRIDGE_PASSWORD": "proxima-bridge", "NOTIFIER_PASSWORD": "proxima-notifier"}
    if users:
        assert set(users["environment"]) == set(env_names)
        script = _unescape(users["command"][0]).replace("/mosquitto/auth/passwd", str(passwd))
        subprocess.run(
            # Ownership is the container's business; here only the file's content matters.
            ["/bin/sh", "-ec", "chown() { :; }\n" + script],
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
            | {var: passwords[user] for var, user in env_names.items()},
            check=True,
        )
    # A gateway added later, as .env.example tells the operator to.
    passwords["s1/gateways/gw-door"] = "gateway-pw"
    subprocess.run([PASSWD, "-b", str(passwd), "s1/gateways/gw-door", "gateway-pw"], check=True)
    text = compose["configs"]["mosquitto-conf"]["content"]
    acl_file = compose["configs"].get("mosquitto-acl", {}).get("file", "")
    acl = (COMPOSE.parent / acl_file).resolve()
    port = free_port()
    assert re.search(r"^listener 1883$", text, re.M)
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"user {getpass.getuser()}\n"
        + text.replace("/mosquitto/auth/passwd", str(passwd))
        .replace("/mosquitto/config/proxima.acl", str(acl))
        .replace("/mosquitto/data/", f"{work}/")
        .replace("listener 1883", f"listener {port} 127.0.0.1")
    )
    log = work / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=out)
    try:
        for _ in range(50):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {log.read_text()}")
            time.sleep(0.1)
        yield Broker(port, passwords)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
@pytest.mark.skipif(MOSQUITTO_PUB is None, reason="needs mosquitto_pub (mosquitto-clients)")
def test_compose_mosquitto_refuses_anonymous_clients(compose_broker: Broker) -> None:
    assert MOSQUITTO_PUB is not None
    args = [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(compose_broker.port), "-q", "1"]
    anonymous = subprocess.run(
        [*args, "-t", "proxima/v1/stores/s1/gateways/gw-door/events", "-m", "[]"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert anonymous.returncode != 0
    assert "not authori" in (anonymous.stdout + anonymous.stderr).lower()
    wrong = subprocess.run(
        [*args, "-u", "proxima-bridge", "-P", "guess", "-t", "x", "-m", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode != 0


@pytest.mark.integration
async def test_compose_mosquitto_holds_users_to_the_shipped_acl(compose_broker: Broker) -> None:
    own = "proxima/v1/stores/s1/gateways/gw-door/events"
    other = "proxima/v1/stores/s1/gateways/gw-fitting/events"
    async with MqttClient(compose_broker.url("proxima-bridge")) as bridge:
        await bridge.subscribe("proxima/v1/stores/+/gateways/+/events")
        await asyncio.sleep(0.2)
        async with MqttClient(compose_broker.url("s1/gateways/gw-door")) as gateway:
            # Denied QoS 1 publishes are acknowledged and dropped; the own batch comes after
            # the forged one on the same connection, so once it arrives the other is gone.
            await gateway.publish(other, b"forged")
            await gateway.publish(own, b"own")
        async with asyncio.timeout(10):
            message = await bridge.messages.get()
        assert (message.topic, message.payload) == (own, b"own")
        assert bridge.messages.empty()
