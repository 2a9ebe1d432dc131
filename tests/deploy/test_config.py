"""`proxima config show|check`, and what every command says about a bad setting or a
service out of reach: one line naming the setting, exit 2, no traceback, no password."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from contracts.services import ServiceSettings, redact_url
from tests.kit.cli import proxima
from transport.net import free_port

SECRET = "s3cret-pw"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXIMA_")}
    return env | extra


def _one_line_exit_2(done: subprocess.CompletedProcess[str], *, names: str) -> str:
    stderr = done.stderr
    assert done.returncode == 2, (done.stdout, stderr)
    assert "Traceback" not in stderr, stderr
    assert SECRET not in stderr + done.stdout, stderr
    (line,) = [ln for ln in stderr.splitlines() if ln.strip()]
    assert names in line, line
    return line


def test_check_names_the_variable_a_misspelled_one_meant() -> None:
    done = proxima("config", "check", env=_env(PROXIMA_STREAM_PARTITONS="8"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PROXIMA_STREAM_PARTITONS: unknown variable" in done.stderr
    assert "did you mean PROXIMA_STREAM_PARTITIONS?" in done.stderr


def test_check_passes_a_clean_environment_and_reports_json() -> None:
    done = proxima("config", "check", env=_env(PROXIMA_STREAM_PARTITIONS="8"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ")
    done = proxima("config", "check", "--json", env=_env(PROXIMA_NOTIFIER_HTP_PORT="1"))
    assert done.returncode == 2
    (problem,) = json.loads(done.stdout)["problems"]
    assert problem["variable"] == "PROXIMA_NOTIFIER_HTP_PORT"
    assert "PROXIMA_NOTIFIER_HTTP_PORT" in problem["message"]


def test_show_gives_every_setting_with_secrets_redacted() -> None:
    env = _env(
        PROXIMA_MQTT=f"mqtt://bridge:{SECRET}@127.0.0.1:1883",
        PROXIMA_INGEST_ADMIN_TOKEN=SECRET,
        PROXIMA_STREAM_PARTITIONS="8",
    )
    done = proxima("config", "show", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout
    shown = {s["variable"]: s for s in json.loads(done.stdout)["settings"]}
    assert shown["PROXIMA_MQTT"]["value"] == "mqtt://bridge:***@127.0.0.1:1883"
    assert shown["PROXIMA_INGEST_ADMIN_TOKEN"]["value"] == "***"
    assert shown["PROXIMA_STREAM_PARTITIONS"] == {
        "variable": "PROXIMA_STREAM_PARTITIONS",
        "value": "8",
        "source": "env",
        "section": "Bridge and stream worker",
    }
    assert shown["PROXIMA_STREAM_BATCH_MAX"]["source"] == "default"


def test_a_bad_url_is_one_line_naming_the_setting() -> None:
    done = proxima("stats", env=_env(PROXIMA_MQTT=f"foo://u:{SECRET}@x"))
    line = _one_line_exit_2(done, names="PROXIMA_MQTT")
    assert "mqtt://, mqtts://" in line


@pytest.mark.integration
def test_redis_out_of_reach_is_one_line_naming_the_setting() -> None:
    url = f"redis://u:{SECRET}@127.0.0.1:{free_port()}/0"
    done = proxima("stats", env=_env(PROXIMA_REDIS=url))
    line = _one_line_exit_2(done, names="(PROXIMA_REDIS)")
    assert redact_url(url) in line


@pytest.mark.integration
def test_kafka_out_of_reach_is_one_line_naming_the_setting() -> None:
    url = f"kafka://127.0.0.1:{free_port()}"
    done = proxima("topics", "ensure", "--timeout", "2", env=_env(PROXIMA_KAFKA=url))
    _one_line_exit_2(done, names="(PROXIMA_KAFKA)")


@pytest.mark.integration
def test_an_mqtt_broker_out_of_reach_is_one_line_without_its_password() -> None:
    url = f"mqtt://bridge:{SECRET}@127.0.0.1:{free_port()}"
    done = proxima("alerts", "record", "--out", os.devnull, env=_env(PROXIMA_MQTT=url))
    _one_line_exit_2(done, names="(PROXIMA_MQTT)")


@pytest.mark.parametrize(
    ("setting", "value", "wanted"),
    [
        ("mqtt", "tcp://host:1883", "mqtt://, mqtts://"),
        ("mqtt", "mqtt://host:99999", "out of range"),
        ("redis", "redis://host:port/0", "could not be cast"),
        ("redis", "http://host", "redis://"),
        ("kafka", "host:9092", "kafka://"),
        ("kafka", "kafka://a:9092,:9093", "no host"),
    ],
)
def test_service_urls_are_validated_as_they_are_read(setting: str, value: str, wanted: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=wanted):
        ServiceSettings(**{setting: value})


def test_good_service_urls_pass() -> None:
    ServiceSettings(
        mqtt="mqtts://u:p@broker.example:8883",
        redis="rediss+cluster://u:p@a:7000,b:7001",
        kafka="kafka://k0:9092,k1:9092",
    )
    ServiceSettings(redis="unix:///run/redis.sock")


@pytest.mark.integration
def test_up_with_a_broker_out_of_reach_never_prints_its_password() -> None:
    """The issue's case: `proxima up` printed PROXIMA_MQTT's password in its error."""
    url = f"mqtt://bridge:{SECRET}@127.0.0.1:{free_port()}"
    done = proxima("up", "--headless", "--duration", "1", env=_env(PROXIMA_MQTT=url))
    assert done.returncode != 0
    assert SECRET not in done.stdout + done.stderr
    assert "mqtt://bridge:***@127.0.0.1" in done.stdout + done.stderr
