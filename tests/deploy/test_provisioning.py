"""`proxima gateways provision --plan`: a gateway placed as `proxima replay` places it (a door
pair's two gateways with the faster sightings, an interior one without), and `--coordinator`:
the store's coordinator reads its store's evidence through a real Mosquitto with the
generated password lines and ACL blocks, and carries the plan whole."""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from pathlib import Path

import pytest

from contracts.services import ServiceSettings
from deploy.provisioning import placed_settings, read_plan
from edge.cli import _coordinator_id
from edge.config import load_settings
from edge.fusion import PAIR_SIGHTING_Q, fusable, fusion_roles, gateway_settings, load_layout
from edge.settings import EdgeSettings
from stream.provision import password_line, set_acl_block, set_password_line, toml_lines
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
    assert "none.json" in stderr
    assert "no such file" in stderr
    # Nothing was written for any of them.
    assert not (tmp_path / "passwd").exists()


def test_plan_values_are_written_as_toml_that_reads_back() -> None:
    values = {"fused": True, "zone_id": 'a "zone"', "enter_rssi": -71.5, "n": 3}
    assert tomllib.loads(toml_lines(values)) == values


def test_the_coordinators_id_is_its_config_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROXIMA_EDGE_GATEWAY_ID", raising=False)
    config = tmp_path / "edge.toml"
    config.write_text('store_id = "s1"\n')
    assert _coordinator_id(None, config) == "fusion"
    assert _coordinator_id(None, None) == "fusion"
    assert _coordinator_id("fusion-2", config) == "fusion-2"
    config.write_text('gateway_id = "fusion-b"\n')
    assert _coordinator_id(None, config) is None  # the settings read the file's
    assert load_settings(config, gateway_id=_coordinator_id(None, config)).gateway_id == (
        "fusion-b"
    )


async def test_the_coordinator_reads_its_stores_evidence_through_the_generated_acl(
    tmp_path: Path, namespace: str
) -> None:
    require_mosquitto(passwd=False)
    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    topics = ServiceSettings(namespace=namespace).topics
    port = free_port()
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
            got = []
            async with asyncio.timeout(10):
                while len(got) < 2:
                    message = await coordinator.messages.get()
                    got.append((message.topic, message.payload))
            # The other store's evidence, published between them, never reached it.
            assert got == [(evidence, b"[1]"), (evidence, b"[4]")]
            assert coordinator.messages.empty()
