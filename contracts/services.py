"""Where the services are (DESIGN.md, Contract: command line).

Every process reads these the same way; declared once, with environment variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import Topics


class ServiceSettings(BaseSettings):
    """Service locations shared by every Proxima process."""

    model_config = SettingsConfigDict(env_prefix="PROXIMA_", extra="ignore")

    mqtt: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="MQTT broker URL (mqtt:// or mqtts://, user:password@ allowed)",
    )
    redis: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis URL: redis://host:port/db, rediss:// (TLS), unix:///path, or a Redis "
        "Cluster as redis+cluster://host:port[,host:port...] (rediss+cluster:// with TLS)",
    )
    kafka: str = Field(
        default="",
        description="Kafka bootstrap URL kafka://host:port[,host:port]; empty = embedded broker",
    )
    namespace: str = Field(
        default="",
        description="prefix for topics and keys, so several systems can share brokers",
    )

    mqtt_ca_file: Path | None = Field(
        default=None,
        description="CA bundle the services trust for an mqtts:// broker (default: the system's)",
    )
    mqtt_cert_file: Path | None = Field(
        default=None, description="client certificate for an mqtts:// broker that asks for one"
    )
    mqtt_key_file: Path | None = Field(
        default=None, description="the client certificate's private key"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="how every Kafka client connects (managed Kafka: SASL_SSL or SSL)",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism with SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_username: str = Field(default="", description="SASL user name")
    kafka_sasl_password: SecretStr = Field(default=SecretStr(""), description="SASL password")
    kafka_ca_file: Path | None = Field(
        default=None,
        description="CA bundle the Kafka clients trust with SSL or SASL_SSL (default: the system's)",
    )
    kafka_cert_file: Path | None = Field(
        default=None, description="client certificate for Kafka brokers that ask for one (mTLS)"
    )
    kafka_key_file: Path | None = Field(
        default=None, description="the Kafka client certificate's private key"
    )

    log_format: Literal["text", "json"] = Field(
        default="text", description="log lines as text, or as one JSON object per line"
    )

    alerts_namespace: str | None = Field(
        default=None,
        description="namespace of the MQTT topics handhelds and store screens use (alerts, "
        "acks, shifts); unset: PROXIMA_NAMESPACE's, empty: the contract's own names",
    )

    # URLs are checked as the settings are read, so a bad one is one line naming the
    # variable (deploy.cli's main), never a traceback from deep in a client library; the
    # messages never carry a password.
    @field_validator("mqtt")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        _check_url(value, ("mqtt", "mqtts"), "mqtt://host:1883 or mqtts://host:8883")
        return value

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        schemes = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
        if value.lower().startswith("unix://"):
            return value
        cluster = value.lower().split("://", 1)[0].endswith("+cluster")
        _check_url(
            value,
            schemes,
            "redis://host:6379/0, rediss://, unix:///path, redis+cluster://host:port[,host:port]",
            several_hosts=cluster,
        )
        return value

    @field_validator("kafka")
    @classmethod
    def _kafka_url(cls, value: str) -> str:
        if value:
            _check_url(value, ("kafka", "tcp"), "kafka://host:9092[,host:9092]", several_hosts=True)
        return value

    @model_validator(mode="after")
    def _security_complete(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"PROXIMA_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "PROXIMA_KAFKA_SASL_USERNAME and PROXIMA_KAFKA_SASL_PASSWORD"
            )
        for cert, key, what in (
            (self.kafka_cert_file, self.kafka_key_file, "KAFKA"),
            (self.mqtt_cert_file, self.mqtt_key_file, "MQTT"),
        ):
            if (cert is None) != (key is None):
                raise ValueError(
                    f"PROXIMA_{what}_CERT_FILE and PROXIMA_{what}_KEY_FILE go together"
                )
        for path in (
            self.kafka_ca_file,
            self.kafka_cert_file,
            self.kafka_key_file,
            self.mqtt_ca_file,
            self.mqtt_cert_file,
            self.mqtt_key_file,
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{path}: no such file")
        return self

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace, self.alerts_namespace)

    @property
    def redis_prefix(self) -> str:
        return f"{self.namespace}:proxima:" if self.namespace else "proxima:"

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port,...`` for aiokafka, from ``kafka://host:port,...``."""
        if not self.kafka:
            raise ValueError(
                "PROXIMA_KAFKA is not set: start the embedded broker (proxima up) "
                "or set PROXIMA_KAFKA=kafka://host:port"
            )
        url = self.kafka
        for scheme in ("kafka://", "tcp://"):
            if url.startswith(scheme):
                url = url[len(scheme) :]
        return url.rstrip("/")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and ``config show``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{userinfo}{at}{hosts}{slash}{tail}"


def _check_url(
    url: str, schemes: tuple[str, ...], example: str, *, several_hosts: bool = False
) -> None:
    """Raise ValueError naming what is wrong with ``url`` (redacted) for these schemes."""
    shown = redact_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        wanted = ", ".join(f"{s}://" for s in schemes)
        raise ValueError(f"{shown!r}: the scheme must be one of {wanted} (e.g. {example})")
    netloc = rest.partition("/")[0].partition("?")[0].rpartition("@")[2]
    for host in netloc.split(",") if several_hosts else [netloc]:
        try:
            parts = urlsplit(f"{scheme}://{host}")
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{shown!r}: {exc} (e.g. {example})") from None
        if not parts.hostname:
            raise ValueError(f"{shown!r}: no host (e.g. {example})")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"{shown!r}: port {port} out of range (e.g. {example})")
