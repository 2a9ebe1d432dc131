"""`proxima gateways provision|deprovision`: the folder a gateway needs, the broker's files
in step, a signed batch from the provisioned gateway through a real Mosquitto (its
generated password line and ACL) and a bridge to Kafka; after deprovisioning the broker
refuses the gateway and its key is revoked."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from contracts.services import ServiceSettings
from contracts.signing import sign
from stream.bridge import Bridge
from stream.keyring import Keyring
from stream.provision import password_line, set_acl_block, set_password_line
from stream.settings import StreamSettings
from tests.factories import event_dict
from tests.kit.cli import proxima
from tests.kit.kafka import TopicReader
from tests.kit.mosquitto import Mosquitto, require_mosquitto, running
from tests.stream.test_bridge_poison import running as bridge_running
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient, MqttError
from transport.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_the_password_line_is_what_mosquitto_passwd_writes() -> None:
    salt = base64.b64decode("KbvtHpWbei3dClT+")  # from a line mosquitto_passwd wrote
    line = password_line("user", "pw", salt)
    assert line == (
        "user:$7$101$KbvtHpWbei3dClT+$Z6ANQAkhscLXZvS3JM4ikER9e8i/uFvEjbbVM9K1Pp3YdOOc1yYl0"
        "AsylDCbAUy7u2iJeex6t5rF11h5mUExkA=="
    )


def test_the_broker_files_keep_one_line_and_one_block_per_gateway(tmp_path: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text("other:x\n")
    acl.write_text("pattern read a/%u\n\nuser other\ntopic read b\n")
    assert set_password_line(passwd, "s1/gateways/gw:h1", "s1/gateways/gw")
    assert set_password_line(passwd, "s1/gateways/gw:h2", "s1/gateways/gw")
    assert passwd.read_text() == "other:x\ns1/gateways/gw:h2\n"
    assert set_acl_block(acl, "user s1/gateways/gw\ntopic write c\n", "s1/gateways/gw")
    assert not set_acl_block(acl, "user s1/gateways/gw\ntopic write c\n", "s1/gateways/gw")
    assert acl.read_text().count("user s1/gateways/gw") == 1
    assert set_acl_block(acl, None, "s1/gateways/gw")
    assert set_password_line(passwd, None, "s1/gateways/gw")
    assert acl.read_text() == "pattern read a/%u\n\nuser other\ntopic read b\n\n"
    assert passwd.read_text() == "other:x\n"


async def test_a_provisioned_gateway_gets_its_batch_through_and_not_after_deprovision(
    tmp_path: Path, kafka_url: str, namespace: str
) -> None:
    require_mosquitto(passwd=False)
    services = ServiceSettings(kafka=kafka_url, namespace=namespace)
    passwd, acl, folder = tmp_path / "passwd", tmp_path / "acl", tmp_path / "gw-door"
    # The broker's own users: the bridge reads every gateway's events.
    set_password_line(passwd, password_line("proxima-bridge", "bridge-pw"), "proxima-bridge")
    set_acl_block(
        acl, f"user proxima-bridge\ntopic read {namespace}/proxima/v1/#\n", "proxima-bridge"
    )
    port = free_port()
    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    done = proxima(
        "gateways", "provision", "s1", "gw-door",
        "--out", str(folder),
        "--mqtt-url", f"mqtt://127.0.0.1:{port}",
        "--passwd", str(passwd),
        "--acl", str(acl),
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    toml = tomllib.loads((folder / "edge.toml").read_text())
    secrets = dict(
        line.split("=", 1) for line in (folder / "edge.env").read_text().splitlines() if line
    )
    assert oct((folder / "edge.env").stat().st_mode & 0o777) == "0o600"
    assert toml["mqtt_username"] == "s1/gateways/gw-door"
    gateway_url = (
        f"mqtt://s1%2Fgateways%2Fgw-door:{secrets['PROXIMA_EDGE_MQTT_PASSWORD']}@127.0.0.1:{port}"
    )
    broker = Mosquitto(
        tmp_path / "mosquitto",
        port,
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
        f"acl_file {acl}\npersistence false\n",
    )
    await ensure_topics(services.kafka_bootstrap, services.topics.all_kafka, 1)
    bridge_services = services.model_copy(
        update={"mqtt": f"mqtt://proxima-bridge:bridge-pw@127.0.0.1:{port}"}
    )
    topic = services.topics.gateway_events("s1", "gw-door")
    payload = json.dumps(
        [event_dict(store_id="s1", observed_at=datetime.now(UTC).isoformat())]
    ).encode()
    props = sign(
        toml["signing_kid"], bytes.fromhex(secrets["PROXIMA_EDGE_SIGNING_KEY"]), topic, payload
    )
    with running(broker):
        async with (
            TopicReader(services.kafka_bootstrap, services.topics.events_v2) as records,
            bridge_running(Bridge(bridge_services, StreamSettings(partitions=1), client_id="prov")),
            MqttClient(gateway_url) as gateway,
        ):
            await gateway.publish(topic, payload, user_properties=props)
            (got,) = await records.at_least(1, 30)
        assert got == payload  # through the broker's ACL and the bridge's signature check

        gone = proxima(
            "gateways", "deprovision", "s1", "gw-door",
            "--out", str(folder), "--passwd", str(passwd), "--acl", str(acl),
            env=env,
        )  # fmt: skip
        assert gone.returncode == 0, gone.stderr
        assert "1 key(s) revoked" in gone.stderr
    assert not (folder / "edge.env").exists()
    assert "s1/gateways/gw-door" not in passwd.read_text() + acl.read_text()
    r = aioredis.from_url(services.redis)
    try:
        record = await Keyring(r, services.redis_prefix).get(toml["signing_kid"])
    finally:
        await r.aclose()
    assert record is not None
    assert record.revoked
    # The broker reads its files again: the gateway is refused.
    with running(broker), pytest.raises(MqttError):
        async with MqttClient(gateway_url):
            await asyncio.sleep(0)
    # And were its batch to reach a bridge some other way (a broker not reloaded), the
    # bridge refuses it: its key is revoked.
    again = json.dumps(
        [event_dict(store_id="s1", seq=2, observed_at=datetime.now(UTC).isoformat())]
    ).encode()
    props = sign(
        toml["signing_kid"], bytes.fromhex(secrets["PROXIMA_EDGE_SIGNING_KEY"]), topic, again
    )
    async with (
        TopicReader(services.kafka_bootstrap, services.topics.events_dlq) as dlq,
        bridge_running(Bridge(services, StreamSettings(partitions=1), client_id="prov-2")),
        MqttClient(services.mqtt) as anyone,
    ):
        await anyone.publish(topic, again, user_properties=props)
        (parked,) = await dlq.at_least(1, 30)
    assert "revoked key" in json.loads(parked)["reason"]
