"""Topics that name customers keep their records for a set time, on a real broker (Tansu)."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.services import ServiceSettings
from transport.kafka import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
WEEK_MS = 7 * 86400 * 1000


async def _configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
    finally:
        await admin.close()
    return {
        name: {entry[0]: entry[1] for entry in entries}
        for response in responses
        for _err, _msg, _type, name, entries, *_ in response.resources
    }


async def test_alerts_and_visits_topics_are_created_with_a_retention(
    kafka_url: str, namespace: str
) -> None:
    services = ServiceSettings(namespace=namespace, kafka=kafka_url)
    topics = services.topics
    assert (
        await ensure_topics(services.kafka_bootstrap, topics.all_kafka, 1, retention_ms=WEEK_MS)
        == []
    )
    names = [
        topics.alerts,
        topics.kafka("proxima.visits.v1"),
        topics.kafka("proxima.consent.v1"),
        topics.events,
    ]
    got = await _configs(services.kafka_bootstrap, names)
    alerts, visits, consent, events = (got[n] for n in names)
    assert alerts.get("retention.ms") == str(WEEK_MS)
    assert visits.get("retention.ms") == str(WEEK_MS)
    # A forgotten customer's tombstone outlives a notifier that was down for a while.
    assert consent.get("delete.retention.ms") == str(WEEK_MS)
    assert consent.get("cleanup.policy") == "compact"
    assert "retention.ms" not in events


async def test_an_existing_topic_without_the_retention_is_reported_if_the_broker_keeps_it(
    kafka_url: str, namespace: str
) -> None:
    """An upgrade: topics made by 0.1 have no retention. Tansu cannot alter configs, so
    ensure_topics names them (proxima topics ensure prints a warning for each)."""
    services = ServiceSettings(namespace=namespace, kafka=kafka_url)
    topics = services.topics
    await ensure_topics(services.kafka_bootstrap, topics.all_kafka, 1)  # as 0.1 did
    not_set = await ensure_topics(
        services.kafka_bootstrap, topics.all_kafka, 1, retention_ms=WEEK_MS
    )
    got = await _configs(services.kafka_bootstrap, [topics.alerts])
    if got[topics.alerts].get("retention.ms") == str(WEEK_MS):
        assert not_set == []  # a broker that takes AlterConfigs: changed in place
    else:
        assert set(not_set) == {
            topics.alerts,
            topics.kafka("proxima.visits.v1"),
            topics.kafka("proxima.consent.v1"),
        }
