"""Kafka-protocol helpers: producers, topic creation, waiting for a broker.

Tansu (the embedded development broker) does not implement InitProducerId, so the
idempotent producer is used only against a real Kafka/Redpanda; correctness never rests
on it, since every consumer is idempotent by ``event_id`` / ``alert_id``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from contracts.services import ServiceSettings
from contracts.topics import ALERTS, CONSENT, VISITS

log = logging.getLogger(__name__)


Security = Mapping[str, Any]
"""aiokafka's keyword arguments for TLS and SASL (:func:`kafka_security`); every client
of a service gets the same."""


def kafka_security(services: ServiceSettings) -> dict[str, Any]:
    """The TLS and SASL keyword arguments every aiokafka client of ``services`` takes
    (``PROXIMA_KAFKA_SECURITY_PROTOCOL`` and friends); empty for PLAINTEXT."""
    protocol = services.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        out["ssl_context"] = _ssl_context(services)
    if protocol.startswith("SASL"):
        out |= {
            "sasl_mechanism": services.kafka_sasl_mechanism,
            "sasl_plain_username": services.kafka_sasl_username,
            "sasl_plain_password": services.kafka_sasl_password.get_secret_value(),
        }
    return out


def faust_credentials(services: ServiceSettings) -> Any:
    """The same security for Faust's ``broker_credentials`` (None for PLAINTEXT). Faust
    0.15 turns these back into aiokafka's keyword arguments
    (``faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth``)."""
    import faust

    protocol = services.kafka_security_protocol
    if protocol == "SSL":
        return faust.SSLCredentials(_ssl_context(services))
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=services.kafka_sasl_username,
            password=services.kafka_sasl_password.get_secret_value(),
            mechanism=services.kafka_sasl_mechanism,
            ssl_context=_ssl_context(services) if protocol == "SASL_SSL" else None,
        )
    return None


def _ssl_context(services: ServiceSettings) -> ssl.SSLContext:
    ca = services.kafka_ca_file
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if services.kafka_cert_file and services.kafka_key_file:
        context.load_cert_chain(str(services.kafka_cert_file), str(services.kafka_key_file))
    return context


def make_producer(
    bootstrap: str,
    *,
    idempotent: bool,
    client_id: str,
    max_request_size: int = 1024 * 1024,
    security: Security | None = None,
) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (``acks=all``); a record larger
    than ``max_request_size`` fails at once with MessageSizeTooLargeError."""
    return AIOKafkaProducer(
        **(security or {}),
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=idempotent,
        linger_ms=2,
        request_timeout_ms=15_000,
        max_request_size=max_request_size,
    )


async def wait_for_broker(
    bootstrap: str, timeout: float = 30.0, *, security: Security | None = None
) -> None:
    """Wait until a Kafka-protocol broker answers metadata requests."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Exception | None = None
    # Wait for the port first: aiokafka logs every refused bootstrap at ERROR level.
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    while asyncio.get_running_loop().time() < deadline:
        try:
            _reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            last = exc
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        break
    while asyncio.get_running_loop().time() < deadline:
        admin = AIOKafkaAdminClient(
            **(security or {}), bootstrap_servers=bootstrap, request_timeout_ms=3000
        )
        try:
            await admin.start()
            await admin.list_topics()
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.2)
        else:
            return
        finally:
            await admin.close()
    raise TimeoutError(f"Kafka broker at {bootstrap} did not answer within {timeout}s: {last!r}")


def _is(name: str, topic: str) -> bool:
    """``name`` is ``topic``, in any namespace (``{namespace}.{topic}``)."""
    return name == topic or name.endswith("." + topic)


def topic_configs(name: str, retention_ms: int | None = None) -> dict[str, str]:
    """Broker configs a topic is created with.

    Compacted: the consent topic (the latest record per customer is the registry's state;
    DESIGN.md, consent) and Faust table changelogs (``{app id}-{table}-changelog``: the
    latest record per key is the table). With ``retention_ms``: the alerts and visits
    topics, which name customers, keep records that long (``retention.ms``), and the
    consent topic keeps a forgotten customer's tombstone that long (``delete.retention.ms``)
    so a notifier that was down still reads it.
    """
    configs: dict[str, str] = {}
    if _is(name, CONSENT) or name.endswith("-changelog"):
        configs["cleanup.policy"] = "compact"
    if retention_ms is not None:
        if _is(name, ALERTS) or _is(name, VISITS):
            configs["retention.ms"] = str(retention_ms)
        elif _is(name, CONSENT):
            configs["delete.retention.ms"] = str(retention_ms)
    return configs


@dataclass(frozen=True, slots=True)
class TopicShape:
    """What a topic was created with: its partition count and replication factor."""

    partitions: int
    replication: int


async def describe_topics(
    bootstrap: str, topics: list[str], *, security: Security | None = None
) -> dict[str, TopicShape]:
    """The shape of each of ``topics`` that exists (missing ones are left out)."""
    admin = AIOKafkaAdminClient(
        **(security or {}), bootstrap_servers=bootstrap, request_timeout_ms=10_000
    )
    await admin.start()
    try:
        existing = [t for t in topics if t in set(await admin.list_topics())]
        described = await admin.describe_topics(existing) if existing else []
    finally:
        await admin.close()
    return {
        d["topic"]: TopicShape(
            partitions=len(d["partitions"]),
            replication=max(len(p["replicas"]) for p in d["partitions"]),
        )
        for d in described
        if d["partitions"]
    }


async def describe_topic(
    bootstrap: str, topic: str, *, security: Security | None = None
) -> TopicShape | None:
    """The shape of ``topic``, or None if it does not exist."""
    return (await describe_topics(bootstrap, [topic], security=security)).get(topic)


async def partition_count(bootstrap: str, topic: str) -> int | None:
    """How many partitions ``topic`` has, or None if it does not exist."""
    shape = await describe_topic(bootstrap, topic)
    return shape.partitions if shape else None


async def ensure_topics(
    bootstrap: str,
    topics: tuple[str, ...],
    partitions: int,
    replication: int = 1,
    *,
    retention_ms: int | None = None,
    security: Security | None = None,
) -> list[str]:
    """Create the topics with ``partitions`` partitions; existing ones keep their shape.

    Topics must exist before Faust starts: a topic auto-created by the broker gets the
    broker's default partition count, and Faust then refuses a table whose changelog
    has a different count (PartitionsMismatch). With ``retention_ms`` the retention of
    :func:`topic_configs` is also brought to existing topics (an upgrade); returns the
    topics whose retention could not be changed (a broker without AlterConfigs, such as
    Tansu), each logged with what to do.
    """
    admin = AIOKafkaAdminClient(
        **(security or {}), bootstrap_servers=bootstrap, request_timeout_ms=10_000
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(t, partitions, replication, topic_configs=topic_configs(t, retention_ms))
            for t in topics
            if t not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.debug("topics created concurrently by another process")
        if retention_ms is None:
            return []
        return await _align_retention(admin, [t for t in topics if t in existing], retention_ms)
    finally:
        await admin.close()


async def _align_retention(
    admin: AIOKafkaAdminClient, topics: list[str], retention_ms: int
) -> list[str]:
    """Set the retention configs of existing ``topics`` that differ; the ones that failed."""
    wanted = {
        t: {k: v for k, v in topic_configs(t, retention_ms).items() if k.endswith("retention.ms")}
        for t in topics
    }
    wanted = {t: c for t, c in wanted.items() if c}
    if not wanted:
        return []
    # Every config of each topic (configs=None): Tansu drops the connection on a request
    # that names the configs it wants.
    resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in wanted]
    have: dict[str, dict[str, str]] = {}
    failed: list[str] = []
    why = ""
    try:
        for response in await admin.describe_configs(resources):
            for _err, _msg, _type, name, entries, *_ in response.resources:
                have[name] = {entry[0]: entry[1] for entry in entries}
    except KafkaError as exc:
        failed, why = list(wanted), f"cannot read its configs: {exc!r}"
    stale = [t for t, c in wanted.items() if any(have.get(t, {}).get(k) != v for k, v in c.items())]
    if stale and not failed:
        try:
            responses = await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, configs=wanted[t]) for t in stale]
            )
        except KafkaError as exc:
            failed, why = stale, repr(exc)
        else:
            for response in responses:
                for error_code, message, _type, name in response.resources:
                    if error_code:
                        failed.append(name)
                        why = message or f"error {error_code}"
    for topic in failed:
        log.warning(
            "topic %s: retention not changed to %s (%s); set it with the broker's tools, "
            "e.g. kafka-configs --alter --entity-type topics --entity-name %s --add-config %s",
            topic,
            wanted[topic],
            why,
            topic,
            ",".join(f"{k}={v}" for k, v in wanted[topic].items()),
        )
    return failed
