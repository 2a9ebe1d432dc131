"""The decision chain against real Redis: consent, visibility, visits and dedupe."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from beacons.eid import compute_eid
from contracts.models import Event
from contracts.services import ServiceSettings
from stream.processor import Decision, EventProcessor
from stream.registry import Purpose
from tests.factories import event_dict
from tests.kit.customers import make_customer
from tests.kit.services import redis_dropped_after

KEY_ANA = bytes.fromhex("0102030405060708090a111213141516")
KEY_BRUNO = bytes.fromhex("11111111111111111111111111111111")
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
async def processor(namespace: str) -> AsyncIterator[EventProcessor]:
    services = ServiceSettings(namespace=namespace)
    async with redis_dropped_after(services) as r:
        yield EventProcessor(r, services.redis_prefix, revisit_gap_s=4 * 3600)


async def _enroll(
    proc: EventProcessor, cid: str, key: bytes, consent: list[Purpose], visible: list[str]
) -> None:
    profile = make_customer(
        customer_id=cid,
        identity_key=key.hex(),
        name="Ana Lima",
        tier="gold",
        sizes={"dress": "38"},
        wishlist=["green dress"],
        notes="prefers fitting room 3",
        assigned_associate="assoc-1",
        visible_fields=visible,
    )
    await proc.registry.enroll(profile, consent)


def _event(key: bytes, at: datetime, **overrides: object) -> Event:
    eid = compute_eid(key, 10, int(at.timestamp()))
    data = event_dict(
        observed_at=at.isoformat(),
        subject={"type": "eddystone_eid", "id": eid.hex()},
        event_id=str(uuid.uuid4()),
    )
    data.update(overrides)
    return Event.model_validate(data)


async def test_consenting_arrival_alerts_with_only_visible_fields(
    processor: EventProcessor,
) -> None:
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name", "sizes"])
    (alert,) = await processor.process(_event(KEY_ANA, T0))
    assert alert.customer_id == "ana"
    assert alert.fields == {"name": "Ana Lima", "sizes": {"dress": "38"}}
    assert "green dress" not in alert.model_dump_json()
    assert "fitting room 3" not in alert.model_dump_json()
    assert alert.target.associate_id == "assoc-1"


async def test_no_consent_no_alert(processor: EventProcessor) -> None:
    await _enroll(processor, "bruno", KEY_BRUNO, [Purpose.ANALYTICS], ["name"])
    assert await processor.process(_event(KEY_BRUNO, T0)) == []
    assert processor.stats.counts["no_consent"] == 1


async def test_unknown_eid_resolves_to_nobody(processor: EventProcessor) -> None:
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name"])
    assert await processor.process(_event(bytes(16), T0)) == []
    assert processor.stats.counts["unresolved"] == 1


async def test_one_arrival_per_visit_and_a_new_visit_after_the_gap(
    processor: EventProcessor,
) -> None:
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name"])
    (first,) = await processor.process(_event(KEY_ANA, T0))
    await processor.mark_sent(first)
    assert await processor.process(_event(KEY_ANA, T0 + timedelta(minutes=20))) == []
    (again,) = await processor.process(_event(KEY_ANA, T0 + timedelta(hours=5)))
    assert again.visit_id != first.visit_id


async def test_reprocessing_before_mark_sent_gives_the_same_alert_id(
    processor: EventProcessor,
) -> None:
    """A worker killed between producing and recording: the replay yields the same id."""
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name"])
    event = _event(KEY_ANA, T0)
    (a1,) = await processor.process(event)
    restarted = EventProcessor(processor.r, processor.p, revisit_gap_s=4 * 3600)
    (a2,) = await restarted.process(event)
    assert a1.alert_id == a2.alert_id
    assert await processor.process(event) == []  # the live worker does not repeat itself


async def test_duplicate_event_id_is_ignored_once_processed(processor: EventProcessor) -> None:
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name"])
    event = _event(KEY_ANA, T0)
    await processor.process(event)
    await processor.mark_processed(event)
    assert await processor.process(event) == []
    assert processor.stats.counts["duplicate_events"] == 1


async def test_revocation_takes_effect_at_once(processor: EventProcessor) -> None:
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name"])
    # Before the revocation her beacon alerts (in another store: a visit of its own).
    assert len(await processor.process(_event(KEY_ANA, T0, store_id="store-2"))) == 1
    await processor.registry.set_consent("ana", Purpose.ARRIVAL_ALERTS, granted=False)
    assert await processor.process(_event(KEY_ANA, T0)) == []
    assert processor.stats.counts["no_consent"] == 1


async def test_store_specific_revocation_overrides_global_grant(processor: EventProcessor) -> None:
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name"])
    await processor.registry.set_consent(
        "ana", Purpose.ARRIVAL_ALERTS, granted=False, store="store-1"
    )
    assert await processor.process(_event(KEY_ANA, T0)) == []
    other = _event(KEY_ANA, T0, store_id="store-2")
    assert len(await processor.process(other)) == 1


async def test_forgotten_customer_is_never_identified_again(processor: EventProcessor) -> None:
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name"])
    # Before she is forgotten her beacon is identified (in another store: a visit of its own).
    assert len(await processor.process(_event(KEY_ANA, T0, store_id="store-2"))) == 1
    assert await processor.registry.forget("ana")
    await processor.identity.refresh(force=True)
    assert await processor.process(_event(KEY_ANA, T0)) == []
    assert processor.stats.counts["unresolved"] == 1


async def test_eid_resolves_against_observed_time_not_wall_clock(processor: EventProcessor) -> None:
    """A trace recorded years ago replays the same."""
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name"])
    long_ago = datetime(2019, 6, 1, 9, 30, tzinfo=UTC)
    (alert,) = await processor.process(_event(KEY_ANA, long_ago))
    assert alert.customer_id == "ana"


class _SentLog:
    """The worker's dedupe table, as far as the processor reads it."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def sent(self, key: str, now: float) -> str | None:
        return self.keys.get(key)


async def test_an_event_whose_every_possible_alert_was_sent_skips_the_alert_path(
    processor: EventProcessor,
) -> None:
    """Back in the fitting rooms in the same visit, its fitting-room alert known as sent in
    the table: the only kind the rules could build, so no profile is read at all."""
    await _enroll(processor, "ana", KEY_ANA, [Purpose.ARRIVAL_ALERTS], ["name", "wishlist"])
    log = _SentLog()
    processor.sent_log = log
    await processor.process(_event(KEY_ANA, T0))  # the arrival
    (fitting,) = await processor.process(
        _event(KEY_ANA, T0 + timedelta(minutes=2), zone_id="fitting-rooms")
    )
    assert fitting.kind.value == "fitting_room"
    log.keys[processor.dedupe_id(fitting)] = str(fitting.alert_id)
    processor._claimed.clear()  # as this worker's claims are, once the table has them
    reads: list[list[str]] = []
    real = processor.registry.get_many

    async def get_many(ids: list[str]) -> dict[str, object]:
        reads.append(ids)
        return await real(ids)  # type: ignore[return-value]

    processor.registry.get_many = get_many  # type: ignore[assignment, method-assign]
    floor = _event(KEY_ANA, T0 + timedelta(minutes=4), zone_id="floor")
    back = _event(KEY_ANA, T0 + timedelta(minutes=6), zone_id="fitting-rooms")
    assert await processor.decide_batch([floor, back]) == [Decision(), Decision()]
    assert reads == []
    assert processor.stats.counts["deduped"] == 1
    # Not known as sent: the alert path runs as before (Redis's mark says it was claimed).
    log.keys.clear()
    again = _event(KEY_ANA, T0 + timedelta(minutes=8), zone_id="floor")
    back_again = _event(KEY_ANA, T0 + timedelta(minutes=9), zone_id="fitting-rooms")
    await processor.decide_batch([again, back_again])
    assert reads == [["ana"]]
