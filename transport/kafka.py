"""Kafka-protocol helpers: producers, topic creation, waiting for a broker.

Tansu (the embedded development broker) does not implement InitProducerId, so the
idempotent producer is used only against a real Kafka/Redpanda; correctness never rests
on it, since every consumer is idempotent by ``event_id`` / ``alert_id``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from contracts.topics import CONSENT

log = logging.getLogger(__name__)


def make_producer(
    bootstrap: str,
    *,
    idempotent: bool,
    client_id: str,
    max_request_size: int = 1024 * 1024,
) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (``acks=all``); a record larger
    than ``max_request_size`` fails at once with MessageSizeTooLargeError."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=idempotent,
        linger_ms=2,
        request_timeout_ms=15_000,
        max_request_size=max_request_size,
    )


async def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
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
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
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


def topic_configs(name: str) -> dict[str, str]:
    """Broker configs a topic is created with: compacted for the consent topic (the latest
    record per customer is the registry's state; DESIGN.md, consent) and for Faust table
    changelogs (``{app id}-{table}-changelog``: the latest record per key is the table)."""
    if name == CONSENT or name.endswith(("." + CONSENT, "-changelog")):
        return {"cleanup.policy": "compact"}
    return {}


@dataclass(frozen=True, slots=True)
class TopicShape:
    """What a topic was created with: its partition count and replication factor."""

    partitions: int
    replication: int


async def describe_topics(bootstrap: str, topics: list[str]) -> dict[str, TopicShape]:
    """The shape of each of ``topics`` that exists (missing ones are left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
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


async def describe_topic(bootstrap: str, topic: str) -> TopicShape | None:
    """The shape of ``topic``, or None if it does not exist."""
    return (await describe_topics(bootstrap, [topic])).get(topic)


async def partition_count(bootstrap: str, topic: str) -> int | None:
    """How many partitions ``topic`` has, or None if it does not exist."""
    shape = await describe_topic(bootstrap, topic)
    return shape.partitions if shape else None


async def ensure_topics(
    bootstrap: str, topics: tuple[str, ...], partitions: int, replication: int = 1
) -> None:
    """Create the topics with ``partitions`` partitions; existing ones are left as they are.

    Topics must exist before Faust starts: a topic auto-created by the broker gets the
    broker's default partition count, and Faust then refuses a table whose changelog
    has a different count (PartitionsMismatch).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(t, partitions, replication, topic_configs=topic_configs(t))
            for t in topics
            if t not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.debug("topics created concurrently by another process")
    finally:
        await admin.close()
