"""Visits (fusion of BLE, geofence and app beacon regions; departures), consent at build
time, minimisation, and the declarative rules, against real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from beacons.eid import compute_eid
from contracts.models import AlertKind, Event, Priority, VisitChange, VisitSource
from contracts.services import ServiceSettings
from stream.processor import EventProcessor
from stream.registry import Appointment, CustomerProfile, Purpose, Registry
from stream.rules import RuleBook
from tests.factories import event_dict

KEY = bytes.fromhex("0102030405060708090a111213141516")
PHONE = "d00dfeed0001"
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)


class Mono:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class RevokingRegistry(Registry):
    """A revocation that lands while the event is in flight: between the consent gate and
    the moment the alert is built (the profile read sits between them)."""

    revoke_on_get = False

    async def get_many(self, customer_ids: list[str]) -> dict[str, CustomerProfile | None]:
        if self.revoke_on_get:
            for customer_id in customer_ids:
                await self.set_consent(customer_id, Purpose.ARRIVAL_ALERTS, granted=False)
        return await super().get_many(customer_ids)


@pytest.fixture
async def redis(namespace: str) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    services = ServiceSettings(namespace=namespace)
    r = aioredis.from_url(services.redis)
    yield r, services.redis_prefix
    keys = [k async for k in r.scan_iter(f"{services.redis_prefix}*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


def make(
    redis: tuple[aioredis.Redis, str], rules_dir: Path | None = None, **kw: object
) -> EventProcessor:
    r, prefix = redis
    return EventProcessor(
        r,
        prefix,
        revisit_gap_s=4 * 3600,
        exit_timeout_s=120,
        rules=RuleBook(rules_dir),
        registry=RevokingRegistry(r, prefix),
        **kw,  # type: ignore[arg-type]
    )


async def enroll(
    proc: EventProcessor,
    consent: list[Purpose],
    visible: list[str],
    cid: str = "ana",
    **profile: object,
) -> None:
    fields: dict[str, object] = {
        "customer_id": cid,
        "identity_key": KEY.hex(),
        "rotation_exponent": 10,
        "name": "Ana Lima",
        "tier": "gold",
        "sizes": {"dress": "38"},
        "wishlist": ["green dress"],
        "notes": "prefers fitting room 3",
        "assigned_associate": "assoc-1",
        "visible_fields": visible,
    }
    fields.update(profile)
    await proc.registry.enroll(CustomerProfile.model_validate(fields), consent)
    await proc.registry.register_device(cid, PHONE)


def ble(at: datetime, kind: str = "zone_enter", zone: str = "entrance") -> Event:
    eid = compute_eid(KEY, 10, int(at.timestamp()))
    return Event.model_validate(
        event_dict(
            observed_at=at.isoformat(),
            subject={"type": "eddystone_eid", "id": eid.hex()},
            event_id=str(uuid.uuid4()),
            kind=kind,
            zone_id=zone,
        )
    )


def app_event(at: datetime, kind: str, zone: str | None = None) -> Event:
    schema = "proxima.geofence.v1" if kind.startswith("geofence") else "proxima.zone.v1"
    data = event_dict(
        schema=schema,
        observed_at=at.isoformat(),
        subject={"type": "device", "id": PHONE},
        event_id=str(uuid.uuid4()),
        gateway_id="app",
        kind=kind,
    )
    data.pop("zone_id")
    if zone:
        data["zone_id"] = zone
    return Event.model_validate(data)


ALL = [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS]


async def test_geofence_ble_and_app_beacon_fuse_into_one_visit(
    redis: tuple[aioredis.Redis, str],
) -> None:
    proc = make(redis)
    await enroll(proc, ALL, ["name", "sizes", "wishlist"])
    first = await proc.decide(app_event(T0, "geofence_enter"))
    door = await proc.decide(ble(T0 + timedelta(seconds=20)))
    fitting = await proc.decide(
        app_event(T0 + timedelta(seconds=300), "zone_enter", "fitting-rooms")
    )
    changes = [(v.change, v.source, v.zone_id) for d in (first, door, fitting) for v in d.visits]
    assert changes == [
        (VisitChange.ARRIVAL, VisitSource.GEOFENCE, None),
        (VisitChange.ZONE_MOVE, VisitSource.BLE, "entrance"),
        (VisitChange.ZONE_MOVE, VisitSource.APP_BEACON, "fitting-rooms"),
    ]
    assert len({v.visit_id for d in (first, door, fitting) for v in d.visits}) == 1
    # One arrival (at the geofence), no second arrival from BLE; the fitting room rule fires.
    assert [a.kind for a in first.alerts] == [AlertKind.ARRIVAL]
    assert door.alerts == []
    (ready,) = fitting.alerts
    assert ready.kind is AlertKind.FITTING_ROOM
    assert ready.body == "sizes dress 38; items: green dress"
    assert ready.caused_by[0] == first.alerts[0].caused_by[0]  # the visit's first event


async def test_departure_after_exit_timeout_and_return_within_it_continues(
    redis: tuple[aioredis.Redis, str],
) -> None:
    mono = Mono()
    proc = make(redis, monotonic=mono)
    await enroll(proc, ALL, ["name"])
    await proc.decide(ble(T0))
    await proc.decide(ble(T0 + timedelta(seconds=60), "zone_exit"))
    mono.t += 100  # 100 s of idle event time after the exit: not yet 120
    assert await proc.tick() == []
    back = await proc.decide(ble(T0 + timedelta(seconds=150)))
    assert back.alerts == []  # the same visit
    await proc.decide(ble(T0 + timedelta(seconds=200), "zone_exit"))
    mono.t += 119
    assert await proc.tick() == []
    mono.t += 2
    (gone,) = await proc.tick()
    assert gone.change is VisitChange.DEPARTURE
    assert gone.at == T0 + timedelta(seconds=320)
    assert await proc.tick() == [gone]  # due until its record is on Kafka
    await proc.settle_departures([gone])
    assert await proc.tick() == []  # once
    # Back after revisit_gap: a new visit and a new arrival.
    later = await proc.decide(ble(T0 + timedelta(hours=5)))
    assert [a.kind for a in later.alerts] == [AlertKind.ARRIVAL]
    assert later.visits[0].visit_id != gone.visit_id


async def test_visits_published_only_with_analytics_consent(
    redis: tuple[aioredis.Redis, str],
) -> None:
    proc = make(redis)
    await enroll(proc, [Purpose.ARRIVAL_ALERTS], ["name"])
    d = await proc.decide(ble(T0))
    assert len(d.alerts) == 1
    assert d.visits == []
    assert proc.stats.counts["visits_withheld"] == 1
    await proc.registry.set_consent("ana", Purpose.ARRIVAL_ALERTS, granted=False)
    await proc.registry.set_consent("ana", Purpose.ANALYTICS, granted=True)
    d2 = await proc.decide(ble(T0 + timedelta(hours=5)))
    assert d2.alerts == []
    assert [v.change for v in d2.visits] == [VisitChange.ARRIVAL]


async def test_no_consent_at_all_stores_no_visit(redis: tuple[aioredis.Redis, str]) -> None:
    proc = make(redis)
    await enroll(proc, [Purpose.PERSONALIZATION], ["name"])
    decision = await proc.decide(ble(T0))
    assert decision.alerts == []
    assert decision.visits == []
    r, prefix = redis
    assert [k async for k in r.scan_iter(f"{prefix}visit:*")] == []


async def test_revocation_in_flight_wins_over_the_alert(
    redis: tuple[aioredis.Redis, str],
) -> None:
    proc = make(redis)
    await enroll(proc, [Purpose.ARRIVAL_ALERTS], ["name"])
    assert isinstance(proc.registry, RevokingRegistry)
    proc.registry.revoke_on_get = True
    assert await proc.process(ble(T0)) == []
    assert proc.stats.counts["revoked_in_flight"] == 1
    r, prefix = redis
    assert [k async for k in r.scan_iter(f"{prefix}alerted:*")] == []


async def test_dedupe_key_is_set_nx_and_a_sent_alert_is_not_repeated(
    redis: tuple[aioredis.Redis, str],
) -> None:
    proc = make(redis)
    await enroll(proc, [Purpose.ARRIVAL_ALERTS], ["name"])
    event = ble(T0)
    (a1,) = await proc.process(event)
    assert await proc.process(event) == []  # this worker claimed it already
    restarted = make(redis)  # a new worker after a crash, before Kafka confirmed
    (a2,) = await restarted.process(event)
    assert a1.alert_id == a2.alert_id  # the same alert again; the notifier drops the copy
    await restarted.mark_sent(a2)
    assert await make(redis).process(event) == []
    r, prefix = redis
    key = f"{prefix}alerted:ana:store-1:{a1.visit_id}:arrival"
    assert await r.get(key) == f"sent:{a1.alert_id}".encode()
    assert await r.ttl(key) > 0


RULES = """
version: 1
timezone: Europe/Lisbon
zones: {fitting-rooms: fitting_room}
quiet_hours: [{start: "21:00", end: "08:00"}]
rules:
  - id: generic
    when: arrival
    alert: arrival
    priority: low
    title: "{who} arrived"
  - id: vip
    when: arrival
    tiers: [gold]
    alert: arrival
    priority: high
    cooldown_s: 86400
    title: "VIP {who} at the {zone}"
  - id: appointment
    when: arrival
    appointment_window: true
    window_before_min: 15
    alert: appointment
    priority: urgent
    during_quiet_hours: true
    title: "{who} is here for the appointment"
    body: ["{appointment}"]
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "store-1.yaml").write_text(RULES)
    return tmp_path


async def test_tier_rule_wins_by_priority_and_cooldown_spans_visits(
    redis: tuple[aioredis.Redis, str], rules_dir: Path
) -> None:
    proc = make(redis, rules_dir)
    await enroll(proc, [Purpose.ARRIVAL_ALERTS], ["name"])
    (a,) = await proc.process(ble(T0))  # 10:00 UTC = 10:00 Lisbon
    assert a.title == "VIP Ana Lima at the entrance"
    # The VIP rule wins the arrival by its priority, but Ana does not show her tier: the
    # alert's "high" would tell it, so it is the default.
    assert a.priority is Priority.NORMAL
    assert a.target.associate_id == "assoc-1"
    await proc.mark_sent(a)
    # A new visit 5 h later, within the VIP rule's 24 h cooldown: nothing (the VIP rule won
    # the arrival kind and is cooling down).
    assert await proc.process(ble(T0 + timedelta(hours=5))) == []
    assert proc.stats.counts["cooldown"] == 1
    (b,) = await proc.process(ble(T0 + timedelta(hours=25)))
    assert b.title.startswith("VIP")


async def test_quiet_hours_silence_all_but_exempt_rules(
    redis: tuple[aioredis.Redis, str], rules_dir: Path
) -> None:
    proc = make(redis, rules_dir)
    night = datetime(2026, 3, 14, 22, 30, tzinfo=UTC)  # 22:30 in Lisbon (UTC+0 in March)
    appt = Appointment(at=night + timedelta(minutes=10), note="bridal fitting")
    await enroll(proc, [Purpose.ARRIVAL_ALERTS], ["name", "appointment"], appointment=appt)
    (a,) = await proc.process(ble(night))
    assert a.kind is AlertKind.APPOINTMENT
    assert a.priority is Priority.URGENT
    assert a.body == "at 22:40 UTC (bridal fitting)"
    assert proc.stats.counts["quiet_hours"] == 1  # the VIP arrival was silenced


async def test_appointment_only_within_its_window(
    redis: tuple[aioredis.Redis, str], rules_dir: Path
) -> None:
    proc = make(redis, rules_dir)
    appt = Appointment(at=T0 + timedelta(minutes=30))  # window opens 15 min before
    await enroll(proc, [Purpose.ARRIVAL_ALERTS], ["name", "appointment"], appointment=appt)
    kinds = [a.kind for a in await proc.process(ble(T0))]
    assert kinds == [AlertKind.ARRIVAL]
    kinds = [a.kind for a in await proc.process(ble(T0 + timedelta(hours=5)))]
    assert kinds == []  # outside the window and the VIP rule cools down


async def test_broken_rules_file_names_the_field(tmp_path: Path) -> None:
    from stream.exceptions import RulesError

    (tmp_path / "chain.yaml").write_text(
        "version: 1\nrules:\n  - {id: x, when: arrival, alert: arrival, title: '{identity_key}'}\n"
    )
    with pytest.raises(
        RulesError, match=r"chain.yaml: rules.0.title: .*unknown placeholder \{identity_key\}"
    ):
        RuleBook(tmp_path).check_all()


async def test_a_batch_decides_like_the_same_events_one_by_one(
    redis: tuple[aioredis.Redis, str],
) -> None:
    r, prefix = redis
    events = [
        app_event(T0, "geofence_enter"),
        ble(T0 + timedelta(seconds=20)),
        ble(T0 + timedelta(seconds=20)),  # another event, same moment
        app_event(T0 + timedelta(seconds=300), "zone_enter", "fitting-rooms"),
    ]
    events.append(events[1])  # a duplicate inside the batch

    async def run(batch: bool, ns: str) -> list[tuple[list[str], list[str]]]:
        proc = EventProcessor(r, ns, revisit_gap_s=4 * 3600, exit_timeout_s=120)
        await enroll(proc, ALL, ["name", "sizes", "wishlist"])
        if batch:
            decisions = await proc.decide_batch(events)
        else:
            decisions = []
            for e in events:
                decisions.append(await proc.decide(e))
                await proc.mark_processed(e)
        return [
            ([f"{v.change}:{v.zone_id}" for v in d.visits], [str(a.alert_id) for a in d.alerts])
            for d in decisions
        ]

    one_by_one = await run(False, f"{prefix}a:")
    batched = await run(True, f"{prefix}b:")
    assert batched == one_by_one
    assert sum(len(alerts) for _, alerts in batched) == 2  # arrival + fitting room
