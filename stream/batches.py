"""Gateway batches on Kafka (``proxima.events.v2``) and the checks every event of one gets.

A v2 record is one MQTT batch as its gateway signed it: the value is the payload's bytes,
unchanged; the key is the store id; the headers carry the MQTT topic it was published on
and the gateway's signature properties (``proxima-kid``, ``proxima-ts``, ``proxima-sig``),
so whoever consumes it can verify the batch end to end with the keyring, without trusting
the bridge that moved it (docs/developers/events-v2.md).

:func:`screen` holds the per-event rules both hops apply: the bridge to v1 events, the
stream worker to the events of a v2 batch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from contracts.models import DlqRecord, Event, split_batch
from contracts.signing import (
    KID_PROPERTY,
    SIG_PROPERTY,
    TS_PROPERTY,
    SignatureError,
)
from contracts.topics import Topics
from stream.keyring import KeyCache
from stream.settings import StreamSettings

log = logging.getLogger(__name__)

TOPIC_HEADER = "proxima-mqtt-topic"
"""The MQTT topic the batch was published on: part of what its signature covers."""

SIGNATURE_HEADERS = (KID_PROPERTY, TS_PROPERTY, SIG_PROPERTY)


def record_headers(
    mqtt_topic: str, properties: Iterable[tuple[str, str]]
) -> list[tuple[str, bytes]]:
    """The Kafka headers of a v2 record: the MQTT topic and the signature properties."""
    out = [(TOPIC_HEADER, mqtt_topic.encode())]
    out += [(n, v.encode()) for n, v in properties if n in SIGNATURE_HEADERS]
    return out


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A v2 record read back: the MQTT topic and signature properties it carries."""

    mqtt_topic: str | None
    properties: list[tuple[str, str]]

    @classmethod
    def of(cls, headers: Sequence[tuple[str, bytes]] | None) -> BatchRecord:
        topic: str | None = None
        props: list[tuple[str, str]] = []
        for name, value in headers or ():
            text = value.decode("utf-8", "replace")
            if name == TOPIC_HEADER:
                topic = topic or text
            elif name in SIGNATURE_HEADERS:
                props.append((name, text))
        return cls(topic, props)

    @property
    def signed(self) -> bool:
        return any(n in (KID_PROPERTY, SIG_PROPERTY) for n, _ in self.properties)


def off_clock(
    at: float, now: float, settings: StreamSettings, clock: str = "the clock"
) -> str | None:
    """Why ``at`` (Unix s) is too far from ``clock``'s time ``now`` to be taken, or None."""
    if at < now - settings.event_max_age_s:
        return (
            f"{now - at:.0f} s before {clock}, more than "
            f"PROXIMA_STREAM_EVENT_MAX_AGE_S={settings.event_max_age_s:g}: the gateway's clock is "
            "far off, or this is old data replayed"
        )
    if at > now + settings.event_max_skew_s:
        return (
            f"{at - now:.0f} s ahead of {clock}, more than "
            f"PROXIMA_STREAM_EVENT_MAX_SKEW_S={settings.event_max_skew_s:g}: the gateway's clock is far off"
        )
    return None


@dataclass(frozen=True, slots=True)
class Refused:
    """An event one of :func:`screen`'s rules refused: why, and the event's bytes."""

    reason: str
    raw: bytes
    clock_off: bool = False


def screen(
    events: Iterable[Event],
    store: str,
    gateway: str,
    *,
    now: float,
    settings: StreamSettings,
    trace_time: bool = False,
    clock: str = "the clock",
) -> tuple[list[Event], list[Refused]]:
    """Events of a batch published on ``store``/``gateway``: those that say so and were
    observed near the clock ``now`` (any time when the batch was signed with a replay
    tool's key, ``trace_time``), and the rest with their reasons."""
    good: list[Event] = []
    refused: list[Refused] = []
    for event in events:
        if event.store_id != store or event.gateway_id != gateway:
            reason = (
                f"event {event.event_id} says store {event.store_id!r}/gateway {event.gateway_id!r} "
                f"but was published on {store!r}/{gateway!r}"
            )
            refused.append(Refused(reason, event.to_json()))
        elif not trace_time and (
            off := off_clock(event.observed_at.timestamp(), now, settings, clock)
        ):
            reason = f"event {event.event_id} observed at {event.observed_at.isoformat()}, {off}"
            refused.append(Refused(reason, event.to_json(), clock_off=True))
        else:
            good.append(event)
    return good, refused


class BatchOpener:
    """The worker's side of v2: a record's events, after its signature (verified always
    when present; a missing one refuses the batch while signatures are required) and
    :func:`screen`; every refusal a DLQ record, counted in ``counts``."""

    def __init__(
        self,
        keys: KeyCache,
        topics: Topics,
        settings: StreamSettings,
        counts: Counter[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.topics = topics
        self.settings = settings
        self.counts = counts
        self.clock = clock

    async def open(
        self, value: bytes, headers: Sequence[tuple[str, bytes]] | None
    ) -> tuple[list[Event], list[DlqRecord]]:
        counts = self.counts
        counts["batches"] += 1
        info = BatchRecord.of(headers)
        rejected: list[DlqRecord] = []

        def refuse(reason: str, data: bytes, store: str | None, gateway: str | None) -> None:
            counts["rejected"] += 1
            log.warning("rejected to DLQ (store=%s gateway=%s): %s", store, gateway, reason)
            rejected.append(
                DlqRecord.of(
                    reason, data, source="stream.worker", store_id=store, gateway_id=gateway
                )
            )

        if info.mqtt_topic is None:
            refuse("batch record without its MQTT topic header", value, None, None)
            return [], rejected
        try:
            store, gateway, _ = self.topics.parse_gateway_topic(info.mqtt_topic)
        except ValueError as exc:
            refuse(f"batch record: {exc}", value, None, None)
            return [], rejected
        trace_time = False
        if info.signed or self.settings.require_signatures:
            try:
                verified = await self.keys.verify(
                    info.mqtt_topic, value, info.properties, store_id=store, gateway_id=gateway
                )
            except SignatureError as exc:
                counts["bad_signature"] += 1
                refuse(str(exc), value, store, gateway)
                return [], rejected
            trace_time = verified.key.trace_time
        good, bad = split_batch(value)
        kept, refused = screen(
            good,
            store,
            gateway,
            now=self.clock(),
            settings=self.settings,
            trace_time=trace_time,
            clock="the worker's clock",
        )
        for item in refused:
            counts["clock_off"] += item.clock_off
            refuse(item.reason, item.raw, store, gateway)
        for broken in bad:
            refuse(broken.reason, broken.raw, store, gateway)
        return kept, rejected
