"""Gateway configuration: TOML + environment + overrides, and `proxima edge check-config`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.config import describe_settings, load_settings
from edge.exceptions import ConfigError
from edge.settings import EdgeSettings

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def test_precedence_is_override_then_environment_then_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('store_id = "s-file"\ngateway_id = "gw-file"\nenter_rssi = -60\ndwell_s = 5\n')
    monkeypatch.setenv("PROXIMA_EDGE_ENTER_RSSI", "-65")
    monkeypatch.setenv("PROXIMA_EDGE_GATEWAY_ID", "gw-env")
    settings = load_settings(cfg, gateway_id="gw-cli", store_id=None)
    assert type(settings) is EdgeSettings
    assert settings.store_id == "s-file"  # None override = option not given
    assert settings.gateway_id == "gw-cli"
    assert settings.enter_rssi == -65.0
    assert settings.dwell_s == 5.0


def test_signing_key_comes_from_the_documented_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROXIMA_EDGE_SIGNING_KID", "gw-door-1")
    monkeypatch.setenv("PROXIMA_EDGE_SIGNING_KEY", KEY.upper())
    settings = load_settings()
    assert settings.signing_kid == "gw-door-1"
    assert settings.signing_secret == bytes.fromhex(KEY)
    assert KEY not in repr(settings)  # SecretStr: never printed


def test_every_error_is_reported_with_its_field_and_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        'enter_rssi = "loud"\nmqtt_url = "http://broker"\nbatch_max_events = 9000\n'
        'signing_key = "zz"\nbogus = 1\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg)
    errors = dict(caught.value.errors)
    assert set(errors) == {"enter_rssi", "mqtt_url", "batch_max_events", "signing_key", "bogus"}
    assert "valid number" in errors["enter_rssi"]
    assert "mqtt://" in errors["mqtt_url"]
    assert "500" in errors["batch_max_events"]
    assert "hex" in errors["signing_key"]
    assert "zz" not in errors["signing_key"]  # a secret's value is never echoed
    assert "unknown setting" in errors["bogus"]


def test_cross_field_rules_are_explained(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("enter_rssi = -80\nexit_rssi = -70\n")
    with pytest.raises(ConfigError, match="hysteresis"):
        load_settings(cfg)
    cfg.write_text('signing_kid = "k1"\n')
    with pytest.raises(ConfigError, match="set together"):
        load_settings(cfg)


def test_check_config_cli_explains_errors_and_accepts_a_good_file(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.toml"
    bad.write_text("store_id = \nzone_id = 3\n")
    result = runner.invoke(app, ["check-config", str(bad)])
    assert result.exit_code == 1
    assert "not valid TOML" in result.output
    bad.write_text('zone_id = "no spaces allowed"\noutbox_max_rows = 0\n')
    result = runner.invoke(app, ["check-config", str(bad)])
    assert result.exit_code == 1
    assert "zone_id:" in result.output
    assert "outbox_max_rows:" in result.output
    good = tmp_path / "good.toml"
    good.write_text(
        'store_id = "s1"\ngateway_id = "gw-1"\nzone_id = "fitting-rooms"\n'
        f'mqtt_url = "mqtts://broker.example:8883"\nsigning_kid = "gw-1"\nsigning_key = "{KEY}"\n'
    )
    result = runner.invoke(app, ["check-config", str(good)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    assert "signing with key gw-1" in result.output


def test_every_setting_is_documented_with_its_environment_variable() -> None:
    rows = describe_settings()
    assert len(rows) == len(EdgeSettings.model_fields)
    for name, env, _default, doc in rows:
        assert env == f"PROXIMA_EDGE_{name.upper()}"
        assert doc, f"{name} has no one-line doc"


def test_outbox_defaults_to_the_systemd_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    settings = EdgeSettings(store_id="s1", gateway_id="gw-1")
    assert settings.resolved_outbox_path() == tmp_path / "state" / "outbox-s1-gw-1.sqlite"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert settings.resolved_outbox_path() == tmp_path / "xdg" / "proxima" / "outbox-s1-gw-1.sqlite"


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "deploy" / "edge" / "edge.example.toml"
    settings = load_settings(example)
    assert settings.mqtt_url is not None
    assert settings.mqtt_url.startswith("mqtts://")
    assert settings.signing_kid is None  # secrets live in the environment file
