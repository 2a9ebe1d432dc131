"""TLS and SASL for the services' Kafka and MQTT clients: settings checked as they are
read, the same security for every aiokafka client and for Faust, and a service's MQTT
client reaching a real Mosquitto over TLS with the CA it is given."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.services import ServiceSettings
from tests.kit.mosquitto import Mosquitto, require_mosquitto, running
from tests.kit.tls import self_signed
from transport.kafka import faust_credentials, kafka_security
from transport.mqtt import MqttClient, MqttError, service_tls
from transport.net import free_port


def test_plaintext_needs_nothing() -> None:
    services = ServiceSettings()
    assert kafka_security(services) == {}
    assert faust_credentials(services) is None


def test_sasl_ssl_gives_every_client_the_same_credentials_and_ca(tmp_path: Path) -> None:
    ca = self_signed(tmp_path, "kafka-ca")
    services = ServiceSettings(
        kafka="kafka://broker.example:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="proxima",
        kafka_sasl_password="pw",
        kafka_ca_file=ca.cert,
    )
    options = kafka_security(services)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("proxima", "pw")
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "localhost"),),)]
    # Faust turns its credentials back into aiokafka's arguments: the same ones.
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    faust_side = credentials_to_aiokafka_auth(faust_credentials(services))
    assert faust_side["security_protocol"] == "SASL_SSL"
    assert faust_side["sasl_mechanism"] == "SCRAM-SHA-512"
    assert faust_side["sasl_plain_username"] == "proxima"
    assert faust_side["sasl_plain_password"] == "pw"
    assert faust_side["ssl_context"].get_ca_certs() == context.get_ca_certs()


def test_ssl_with_a_client_certificate(tmp_path: Path) -> None:
    client = self_signed(tmp_path, "client")
    services = ServiceSettings(
        kafka_security_protocol="SSL", kafka_cert_file=client.cert, kafka_key_file=client.key
    )
    options = kafka_security(services)
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    assert credentials_to_aiokafka_auth(faust_credentials(services))["security_protocol"] == "SSL"


@pytest.mark.parametrize(
    ("settings", "wanted"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs PROXIMA_KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"}, "PASSWORD"),
        (
            {"kafka_cert_file": "/etc/hostname"},
            "PROXIMA_KAFKA_CERT_FILE and PROXIMA_KAFKA_KEY_FILE",
        ),
        ({"mqtt_ca_file": "/nonexistent/ca.pem"}, "no such file"),
        ({"kafka_security_protocol": "TLS"}, "SASL_SSL"),
    ],
)
def test_incomplete_security_settings_are_refused_as_read(
    settings: dict[str, str], wanted: str
) -> None:
    with pytest.raises(ValidationError, match=wanted):
        ServiceSettings(**settings)  # type: ignore[arg-type]


@pytest.mark.integration
# paho 2.2 leaves the socket of a failed TLS handshake for the garbage collector (its
# reconnect loop opens a new one): the untrusted case's ResourceWarnings are paho's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_service_reaches_mosquitto_over_tls_with_the_ca_it_is_given(
    tmp_path: Path,
) -> None:
    require_mosquitto(passwd=False)
    server = self_signed(tmp_path, "broker")
    port = free_port()
    broker = Mosquitto(
        tmp_path / "mosquitto",
        port,
        f"listener {port} 127.0.0.1\ncertfile {server.cert}\nkeyfile {server.key}\n"
        "allow_anonymous true\npersistence false\n",
    )
    url = f"mqtts://localhost:{port}"
    with running(broker):
        trusted = ServiceSettings(mqtt=url, mqtt_ca_file=server.cert)
        async with MqttClient(trusted.mqtt, **service_tls(trusted)) as mqtt:
            await mqtt.subscribe("proxima-tls-test/#", qos=1)
            await mqtt.publish("proxima-tls-test/x", b"hello", qos=1)
            message = await mqtt.messages.get()
        assert message.payload == b"hello"
        # Without the CA, the broker's self-signed certificate is not trusted.
        untrusted = ServiceSettings(mqtt=url)
        with pytest.raises(MqttError):
            async with MqttClient(untrusted.mqtt, **service_tls(untrusted), publish_timeout=3):
                pass
