"""`proxima gateways provision --plan`: a gateway placed as `proxima replay` places it (a door
pair's two gateways with the faster sightings, an interior one without), and `--coordinator`:
the store's coordinator reads its store's evidence through a real Mosquitto with the
generated password lines and ACL blocks, and carries the plan whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from contracts.services import ServiceSettings
from deploy.provisioning import placed_settings, read_plan
from edge.cli import _configured
from edge.config import load_settings
from edge.fusion import PAIR_SIGHTING_Q, fusable, fusion_roles, gateway_settings, load_layout
from edge.settings import EdgeSettings
from stream.provision import password_line, set_acl_block, set_password_line, toml_lines
from tests.factories import event_dict
from tests.kit.cli import proxima
from tests.kit.mosquitto import Mosquitto, require_mosquitto, running
from transport.mqtt import MqttClient
from transport.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _provision(tmp_path: Path, gateway: str, *extra: str) -> tuple[int, str, Path]:
    folder = tmp_path / gateway
    done = proxima(
        "gateways", "provision", "s1", gateway,
        "--out", str(folder), "--mqtt-url", "mqtt://127.0.0.1:1883",
        "--passwd", str(tmp_path / "passwd"), "--acl", str(tmp_path / "acl"),
        *extra,
    )  # fmt: skip
    return done.returncode, _said(done.stderr), folder


def _settings(folder: Path) -> EdgeSettings:
    """The gateway's settings as its agent loads them: edge.toml with edge.env's secrets."""
    env = dict(line.split("=", 1) for line in (folder / "edge.env").read_text().splitlines())
    key, password = env["PROXIMA_EDGE_SIGNING_KEY"], env["PROXIMA_EDGE_MQTT_PASSWORD"]
    return load_settings(folder / "edge.toml", signing_key=key, mqtt_password=password)


def _said(stderr: str) -> str:
    return " ".join(stderr.split())  # as printed, folded to the terminal's width


def test_a_door_pairs_gateways_are_placed_as_replay_places_them(tmp_path: Path) -> None:
    plan = read_plan("boutique-pair")
    expected = gateway_settings(plan)
    for gateway in ("gw-door", "gw-street", "gw-floor"):
        code, stderr, folder = _provision(tmp_path, gateway, "--plan", "boutique-pair")
        assert code == 0, stderr
        settings = _settings(folder)
        assert settings.gateway_id == gateway
        assert settings.fused  # the boutique with a door pair is fusable
        for name, value in expected[gateway].items():
            assert getattr(settings, name) == value, name
    street, door, floor = (_settings(tmp_path / g) for g in ("gw-street", "gw-door", "gw-floor"))
    assert (street.zone_id, door.zone_id, floor.zone_id) == ("street", "entrance", "floor")
    # Both gateways of the pair or neither: the coordinator compares their levels.
    assert street.fusion_sighting_q == door.fusion_sighting_q == PAIR_SIGHTING_Q
    assert floor.fusion_sighting_q is None
    assert floor.enter_rssi != door.enter_rssi  # the floor's calibrated threshold


@pytest.mark.parametrize("layout", ["boutique-pair", "flagship-pair"])
def test_every_gateway_of_a_shipped_plan_loads_as_replay_places_it(layout: str) -> None:
    """Including the small zones' (fitting rooms, tills), whose calibration turns lingering
    off: TOML has no null, so it is written "off" and read back as unset."""
    plan = read_plan(layout)
    expected = gateway_settings(plan)
    for gateway, values in expected.items():
        text = toml_lines(placed_settings(plan, gateway))
        settings = EdgeSettings.model_validate(tomllib.loads(text))
        for name, value in values.items():
            if name != "gateway_id":
                assert getattr(settings, name) == value, (gateway, name)
    assert any(v.get("linger_db", 0) is None for v in expected.values())  # a small zone's


def test_the_host_environment_does_not_change_what_a_plan_places(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = placed_settings(read_plan("boutique-pair"), "gw-street")
    monkeypatch.setenv("PROXIMA_EDGE_FUSION_SIGHTING_Q", "5")
    monkeypatch.setenv("PROXIMA_EDGE_SIGNING_KEY", "00" * 32)  # a gateway's env, sourced
    assert placed_settings(read_plan("boutique-pair"), "gw-street") == before
    assert before["fusion_sighting_q"] == PAIR_SIGHTING_Q


def test_a_plan_file_is_resolved_whole_and_without_a_store_of_its_own(tmp_path: Path) -> None:
    # A variant of a shipped layout that lists gateways of its own: "extends" is resolved.
    shipped = Path(__file__).parents[2] / "simulators" / "layouts"
    base = json.loads((shipped / "boutique.json").read_text())
    street = json.loads((shipped / "boutique-pair.json").read_text())["add_gateways"]
    variant = {"extends": "boutique", "gateways": base["gateways"] + street}
    (tmp_path / "variant.json").write_text(json.dumps(variant))
    resolved = read_plan(str(tmp_path / "variant.json"))
    assert "extends" not in resolved
    assert resolved["zones"] == read_plan("boutique")["zones"]
    assert placed_settings(resolved, "gw-floor")["fused"] is True
    # A whole plan naming a store: the store provisioned is the one the coordinator runs as.
    named = dict(read_plan("boutique-pair"), store_id="boutique-01")
    (tmp_path / "named.json").write_text(json.dumps(named))
    assert "store_id" not in read_plan(str(tmp_path / "named.json"))


def test_a_plan_without_a_pair_or_calibration_places_without_fusing(tmp_path: Path) -> None:
    plan = read_plan("boutique")
    assert "fusion_sighting_q" not in placed_settings(plan, "gw-door")
    flat = {"gateways": [{"id": "gw-a", "zone_id": "entrance"}, {"id": "gw-b"}]}
    (tmp_path / "plan.json").write_text(json.dumps(flat))
    assert placed_settings(read_plan(str(tmp_path / "plan.json")), "gw-a")["fused"] is False


def test_provisioning_by_a_plan_refuses_what_it_cannot_place(tmp_path: Path) -> None:
    code, stderr, _ = _provision(tmp_path, "gw-nowhere", "--plan", "boutique-pair")
    assert code != 0
    assert "'gw-nowhere' is not in the store plan" in stderr
    assert "gw-street" in stderr  # the plan's gateways, named
    code, stderr, _ = _provision(tmp_path, "gw-door", "--plan", "boutique-pair", "--coordinator")
    assert code != 0
    assert "a gateway of the plan" in stderr
    code, stderr, _ = _provision(tmp_path, "fusion", "--coordinator")
    assert code != 0
    assert "--coordinator needs --plan" in stderr
    code, stderr, _ = _provision(tmp_path, "fusion", "--coordinator", "--plan", "flagship-x")
    assert code != 0
    assert "no such layout" in stderr
    assert "boutique-pair" in stderr
    code, stderr, _ = _provision(tmp_path, "gw-door", "--plan", str(tmp_path / "none.json"))
    assert code != 0
    assert "none.json: no such file" in stderr
    # Nothing was written for any of them.
    assert not (tmp_path / "passwd").exists()


def test_plan_values_are_written_as_toml_that_reads_back() -> None:
    values = {"fused": True, "zone_id": 'a "zone"', "enter_rssi": -71.5, "n": 3}
    assert tomllib.loads(toml_lines(values)) == values
    assert tomllib.loads(toml_lines({"linger_db": None})) == {"linger_db": "off"}
    assert EdgeSettings.model_validate({"linger_db": "off"}).linger_db is None


def test_the_coordinators_ids_are_its_config_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """proxima-edge fuse takes the store and its own id from its config file (what
    provision wrote, the ids its key and ACL are for) over the plan's store and ``fusion``."""
    monkeypatch.delenv("PROXIMA_EDGE_GATEWAY_ID", raising=False)
    monkeypatch.delenv("PROXIMA_EDGE_STORE_ID", raising=False)
    config = tmp_path / "edge.toml"
    config.write_text('store_id = "s1"\n')
    assert _configured(config, "store_id")
    assert not _configured(config, "gateway_id")
    assert not _configured(None, "store_id")
    monkeypatch.setenv("PROXIMA_EDGE_GATEWAY_ID", "fusion-b")
    assert _configured(None, "gateway_id")


def _door_and_coordinator(tmp_path: Path, namespace: str, port: int) -> dict[str, Path]:
    """Store s1's entrance gateway and coordinator, provisioned by the boutique-pair plan
    into one broker's password and ACL files (in ``tmp_path``): their folders."""
    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    folders = {}
    for gateway, extra in (("gw-door", ()), ("fusion", ("--coordinator",))):
        done = proxima(
            "gateways", "provision", "s1", gateway,
            "--out", str(tmp_path / gateway), "--mqtt-url", f"mqtt://127.0.0.1:{port}",
            "--passwd", str(tmp_path / "passwd"), "--acl", str(tmp_path / "acl"),
            "--plan", "boutique-pair", *extra,
            env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        folders[gateway] = tmp_path / gateway
    return folders


async def test_the_coordinator_reads_its_stores_evidence_through_the_generated_acl(
    tmp_path: Path, namespace: str
) -> None:
    require_mosquitto(passwd=False)
    topics = ServiceSettings(namespace=namespace).topics
    port = free_port()
    folders = _door_and_coordinator(tmp_path, namespace, port)
    # Another store's gateway, provisioned by hand into the same broker files.
    set_password_line(
        tmp_path / "passwd", password_line("s2/gateways/gw-x", "x"), "s2/gateways/gw-x"
    )
    set_acl_block(
        tmp_path / "acl",
        f"user s2/gateways/gw-x\ntopic write {topics.mqtt_root}/stores/s2/gateways/gw-x/evidence\n",
        "s2/gateways/gw-x",
    )
    plan, _ = load_layout(folders["fusion"] / "store-plan.json")
    assert fusable(fusion_roles(plan))  # the whole plan, no "extends"
    assert plan == read_plan("boutique-pair")

    def url(gateway: str) -> str:
        secrets = dict(
            line.split("=", 1)
            for line in (folders[gateway] / "edge.env").read_text().splitlines()
            if line
        )
        user = f"s1%2Fgateways%2F{gateway}"
        return f"mqtt://{user}:{secrets['PROXIMA_EDGE_MQTT_PASSWORD']}@127.0.0.1:{port}"

    broker = Mosquitto(
        tmp_path / "mosquitto",
        port,
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
        f"acl_file {tmp_path / 'acl'}\npersistence false\n",
    )
    evidence = f"{topics.mqtt_root}/stores/s1/gateways/gw-door/evidence"
    other = f"{topics.mqtt_root}/stores/s2/gateways/gw-x/evidence"
    with running(broker):
        async with (
            MqttClient(url("fusion"), client_id="coordinator") as coordinator,
            MqttClient(url("gw-door"), client_id="door") as door,
            MqttClient(f"mqtt://s2%2Fgateways%2Fgw-x:x@127.0.0.1:{port}") as elsewhere,
        ):
            await coordinator.subscribe(f"{topics.mqtt_root}/stores/+/gateways/+/evidence")
            await elsewhere.publish(other, b"[2]", qos=1)
            await door.publish(evidence, b"[1]", qos=1)
            await elsewhere.publish(other, b"[3]", qos=1)
            await door.publish(evidence, b"[4]", qos=1)
            got: list[tuple[str, bytes]] = []
            async with asyncio.timeout(10):
                while len(got) < 2:
                    message = await coordinator.messages.get()
                    got.append((message.topic, message.payload))
            # The other store's evidence, published between them, never reached it.
            assert got == [(evidence, b"[1]"), (evidence, b"[4]")]
            assert coordinator.messages.empty()


async def test_a_provisioned_coordinator_reads_evidence_from_a_broker_that_needs_a_password(
    tmp_path: Path, namespace: str
) -> None:
    """`proxima edge fuse` as INSTALL section 5 runs it: its folder's edge.toml, edge.env and
    store-plan.json, against a Mosquitto that refuses anonymous clients (its evidence
    subscription had connected without the configured user: nothing reached it)."""
    require_mosquitto(passwd=False)
    topics = ServiceSettings(namespace=namespace).topics
    port = free_port()
    folder = _door_and_coordinator(tmp_path, namespace, port)["fusion"]
    secrets = dict(line.split("=", 1) for line in (folder / "edge.env").read_text().splitlines())
    assert secrets["PROXIMA_NAMESPACE"] == namespace  # the namespace the ACL was written for
    door_password = dict(
        line.split("=", 1) for line in (tmp_path / "gw-door" / "edge.env").read_text().splitlines()
    )["PROXIMA_EDGE_MQTT_PASSWORD"]
    broker = Mosquitto(
        tmp_path / "mosquitto",
        port,
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
        f"acl_file {tmp_path / 'acl'}\npersistence false\n",
    )
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PROXIMA_EDGE_", "PROXIMA_INGEST"))
    }
    child_env |= secrets | {"STATE_DIRECTORY": str(tmp_path / "state")}
    (tmp_path / "state").mkdir()
    evidence = f"{topics.mqtt_root}/stores/s1/gateways/gw-door/evidence"
    batch = json.dumps([event_dict(store_id="s1", gateway_id="gw-door")]).encode()
    with running(broker):
        fuse = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "deploy.cli", "edge", "fuse",
            "--layout", str(folder / "store-plan.json"), "--config", str(folder / "edge.toml"),
            env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            door_url = f"mqtt://s1%2Fgateways%2Fgw-door:{door_password}@127.0.0.1:{port}"
            async with MqttClient(door_url) as door:
                # Until the coordinator's session exists, a batch has no one to go to: send
                # one a second for a while (each is one piece of evidence to it).
                for _ in range(12):
                    await door.publish(evidence, batch, qos=1)
                    await asyncio.sleep(1.0)
        finally:
            fuse.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                out, err = await fuse.communicate()
    said, stderr = " ".join(out.decode().split()), err.decode()
    assert "fusion:" in said, stderr[-3000:]
    heard = int(said.split("fusion:")[1].split("evidence")[0])
    assert heard >= 1, stderr[-3000:]
