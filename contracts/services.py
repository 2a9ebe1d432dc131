"""Where the services are (DESIGN.md, Contract: command line).

Every process reads these the same way; declared once, with environment variables.
"""

from __future__ import annotations

from pydantic import Field
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

    alerts_namespace: str | None = Field(
        default=None,
        description="namespace of the MQTT topics handhelds and store screens use (alerts, "
        "acks, shifts); unset: PROXIMA_NAMESPACE's, empty: the contract's own names",
    )

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
