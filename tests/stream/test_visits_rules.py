"""Visits (fusion of BLE, geofence and app beacon regions; departures), consent at build
time, minimisation, and the declarative rules, against real Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.models import AlertKind, Event, Priority, VisitChange, VisitSource
from stream.processor import EventProcessor
from stream.registry import Appointment, CustomerProfile, Purpose, Registry
from stream.rules import RuleBook
from tests.factories import eid_event, event_dict
from tests.kit.clock import FakeClock
from tests.kit.services import RedisNs

KEY = bytes.fromhex("0102030405060708090a111213141516")
PHONE = "d00dfeed0001"
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)


class RevokingRegistry(Registry):
    """A revocation that lands while the event is in flight: between the consent gate and
    the moment the alert is built (the profile read sits between them)."""

    revoke_on_get = False

    async def get_many(self, customer_ids: list[str]) -> dict[str, CustomerProfile | None]:
        if self.revoke_on_get:
            for customer_id in customer_ids:
                await self.set_consent(customer_id, Purpose.ARRIVAL_ALERTS, granted=False)
        return await super().get_many(customer_ids)


def make(redis_ns: RedisNs, rules_dir: Path | None = None, **kw: object) -> EventProcessor:
    r, prefix = redis_ns
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
    return eid_event(KEY, at, zone, kind=kind)


def app_event(
    at: datetime, kind: str, zone: str | None = None, distance_m: float | None = None
) -> Event:
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
    if distance_m is not None:
        data["distance_m"] = distance_m
    return Event.model_validate(data)


ALL = [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS]


async def test_geofence_ble_and_app_beacon_fuse_into_one_visit(
    redis_ns: RedisNs,
) -> None:
    proc = make(redis_ns)
    await enroll(proc, ALL, ["name", "sizes", "wishlist"])
    first = await proc.decide(app_event(T0, "geofence_enter"))
    door = await proc.decide(ble(T0 + timedelta(seconds=20)))
    fitting = await proc.decide(
        app_event(T0 + timedelta(seconds=300), "zone_enter", "fitting-rooms")
    )
    changes = [(v.change, v.source, v.zone_id) for d in (first, door, fitting) for v in d.visits]
    assert changes == [
        (VisitChange.APPROACH, VisitSource.GEOFENCE, None),
        (VisitChange.ARRIVAL, VisitSource.BLE, "entrance"),
        (VisitChange.ZONE_MOVE, VisitSource.APP_BEACON, "fitting-rooms"),
    ]
    assert len({v.visit_id for d in (first, door, fitting) for v in d.visits}) == 1
    # The geofence is an approach (no appointment: no alert); the door's BLE is the
    # arrival, once; the fitting room rule fires.
    assert first.alerts == []
    (arrived,) = door.alerts
    assert arrived.kind is AlertKind.ARRIVAL
    assert arrived.title == "Ana Lima is at the entrance"
    (ready,) = fitting.alerts
    assert ready.kind is AlertKind.FITTING_ROOM
    assert ready.body == "sizes dress 38; items: green dress"
    assert ready.caused_by[0] == arrived.caused_by[0] == first.visits[0].caused_by[0]


async def test_a_geofence_alone_is_an_approach_that_departs_without_an_arrival(
    redis_ns: RedisNs,
) -> None:
    # Across the street: the 100 m circle holds the pavement, the door never sees her.
    mono = FakeClock(0.0)
    proc = make(redis_ns, monotonic=mono)
    await enroll(proc, ALL, ["name"])
    near = await proc.decide(app_event(T0, "geofence_enter"))
    assert [(v.change, v.source, v.zone_id) for v in near.visits] == [
        (VisitChange.APPROACH, VisitSource.GEOFENCE, None)
    ]
    assert near.alerts == []  # no appointment, no approach alert; and no arrival
    assert (await proc.decide(app_event(T0 + timedelta(seconds=30), "geofence_dwell"))).alerts == []
    gone = await proc.decide(app_event(T0 + timedelta(seconds=90), "geofence_exit"))
    assert (gone.alerts, gone.visits) == ([], [])
    mono.t += 121
    (departure,) = await proc.tick()
    assert departure.change is VisitChange.DEPARTURE
    assert departure.visit_id == near.visits[0].visit_id
    assert (proc.stats.counts["approaches"], proc.stats.counts["arrivals"]) == (1, 0)
    r, prefix = redis_ns
    assert [k async for k in r.scan_iter(f"{prefix}alerted:*", count=10000)] == []


async def test_an_approach_arrives_once_with_the_first_in_store_evidence(
    redis_ns: RedisNs,
) -> None:
    proc = make(redis_ns)
    await enroll(proc, ALL, ["name"])
    steps = [
        app_event(T0, "geofence_enter"),
        app_event(T0 + timedelta(seconds=40), "zone_enter", "floor"),  # an interior region
        ble(T0 + timedelta(seconds=45)),  # the door's gateway, a moment later
        app_event(T0 + timedelta(seconds=60), "geofence_dwell"),
        ble(T0 + timedelta(seconds=70), zone="fitting-rooms"),
    ]
    decisions = [await proc.decide(e) for e in steps]
    assert [(v.change, v.source, v.zone_id) for d in decisions for v in d.visits] == [
        (VisitChange.APPROACH, VisitSource.GEOFENCE, None),
        (VisitChange.ARRIVAL, VisitSource.APP_BEACON, "floor"),
        (VisitChange.ZONE_MOVE, VisitSource.BLE, "entrance"),
        (VisitChange.ZONE_MOVE, VisitSource.BLE, "fitting-rooms"),
    ]
    kinds = [[a.kind for a in d.alerts] for d in decisions]
    assert kinds == [[], [AlertKind.ARRIVAL], [], [], []]  # fitting room: no wishlist visible
    (arrival,) = decisions[1].alerts
    assert arrival.zone_id == "floor"
    assert arrival.caused_by == [steps[0].event_id, steps[1].event_id]


async def test_a_storefront_beacon_region_is_an_approach_not_an_arrival(
    redis_ns: RedisNs,
) -> None:
    # The default rules give the zone `street` the kind `outside`: a beacon in the shop
    # window is heard from the pavement.
    proc = make(redis_ns)
    await enroll(proc, ALL, ["name", "wishlist"])
    window = await proc.decide(app_event(T0, "zone_enter", "street"))
    assert [(v.change, v.source, v.zone_id) for v in window.visits] == [
        (VisitChange.APPROACH, VisitSource.APP_BEACON, None)
    ]
    assert window.alerts == []
    left = await proc.decide(app_event(T0 + timedelta(seconds=20), "zone_exit", "street"))
    assert left.alerts == []
    back = await proc.decide(app_event(T0 + timedelta(seconds=50), "zone_enter", "street"))
    assert (back.alerts, back.visits) == ([], [])  # still approaching, no zone move
    inside = await proc.decide(app_event(T0 + timedelta(seconds=60), "zone_enter", "fitting-1"))
    assert [v.change for v in inside.visits] == [VisitChange.ARRIVAL]
    assert {a.kind for a in inside.alerts} == {AlertKind.ARRIVAL, AlertKind.FITTING_ROOM}


@pytest.mark.parametrize(("distance_m", "title"), [(100.0, " (~1 min)"), (420.0, " (~5 min)")])
async def test_on_the_way_says_how_long_she_has_to_walk(
    redis_ns: RedisNs, distance_m: float, title: str
) -> None:
    """The geofence event says how far from the store she is (the ingest: the fix's
    distance, or the radius for the OS's report); at 1.3 m/s that is the "~N min"."""
    proc = make(redis_ns)
    appt = Appointment(at=T0 + timedelta(minutes=20), note="Reserve & Try")
    await enroll(proc, ALL, ["name", "appointment"], appointment=appt)
    near = await proc.decide(app_event(T0, "geofence_enter", distance_m=distance_m))
    (approach,) = near.alerts
    assert approach.title == f"Ana Lima is on the way{title}"


async def test_an_expected_customer_gets_an_approach_alert_then_her_arrival(
    redis_ns: RedisNs,
) -> None:
    proc = make(redis_ns)
    appt = Appointment(at=T0 + timedelta(minutes=20), note="Reserve & Try")
    await enroll(proc, ALL, ["name", "sizes", "appointment"], appointment=appt, tier="silver")
    near = await proc.decide(app_event(T0, "geofence_enter"))
    (approach,) = near.alerts
    assert approach.kind is AlertKind.APPROACH
    assert approach.priority is Priority.HIGH
    assert approach.title == "Ana Lima is on the way"
    assert approach.body == "appointment at 10:20 UTC (Reserve & Try); sizes dress 38"
    assert approach.target.associate_id == "assoc-1"
    await proc.mark_sent(approach)
    door = await proc.decide(ble(T0 + timedelta(seconds=80)))
    assert {a.kind for a in door.alerts} == {AlertKind.ARRIVAL, AlertKind.APPOINTMENT}
    assert {a.visit_id for a in door.alerts} == {approach.visit_id}
    # Out and back within the visit: neither an approach nor an arrival again.
    await proc.decide(app_event(T0 + timedelta(seconds=600), "geofence_exit"))
    again = await proc.decide(app_event(T0 + timedelta(seconds=700), "geofence_enter"))
    assert again.alerts == []


async def test_no_approach_alert_outside_the_appointments_window(
    redis_ns: RedisNs,
) -> None:
    proc = make(redis_ns)
    appt = Appointment(at=T0 + timedelta(days=1))
    await enroll(proc, ALL, ["name", "appointment"], appointment=appt)
    assert (await proc.decide(app_event(T0, "geofence_enter"))).alerts == []
    door = await proc.decide(ble(T0 + timedelta(seconds=60)))
    assert [a.kind for a in door.alerts] == [AlertKind.ARRIVAL]


async def test_a_replayed_approach_and_arrival_build_the_same_alerts_again(
    redis_ns: RedisNs,
) -> None:
    proc = make(redis_ns)
    appt = Appointment(at=T0 + timedelta(minutes=10))
    await enroll(proc, ALL, ["name", "appointment"], appointment=appt)
    near, door = app_event(T0, "geofence_enter"), ble(T0 + timedelta(seconds=60))
    (a1,) = (await proc.decide(near)).alerts
    first_door = sorted((await proc.decide(door)).alerts, key=lambda a: a.kind)
    # A worker killed before Kafka confirmed either: the next one builds them again.
    restarted = make(redis_ns)
    replay_near = await restarted.decide(near)
    assert [(a.kind, a.alert_id) for a in replay_near.alerts] == [(a1.kind, a1.alert_id)]
    assert [v.change for v in replay_near.visits] == [VisitChange.APPROACH]
    again = sorted((await restarted.decide(door)).alerts, key=lambda a: a.kind)
    assert [a.alert_id for a in again] == [a.alert_id for a in first_door]
    for a in [a1, *first_door]:
        await restarted.mark_sent(a)
    assert (await make(redis_ns).decide(door)).alerts == []


def test_visit_state_written_before_approaches_reads_as_arrived() -> None:
    from stream.visits import VisitState

    old = (
        '{"visit_id": "v1", "started": 1.0, "last_seen": 2.0, "zone": "entrance", "open": '
        '["zone:entrance"], "departed": false, "first_event": "e1", "source": "ble", '
        '"zone_event": "e1", "departing": false}'
    )
    state = VisitState.load(old)
    assert (state.arrived, state.arrival_event) == (True, "e1")
    assert VisitState.load(state.dump()) == state


def test_rules_expect_only_the_bookings_that_exist(tmp_path: Path) -> None:
    from stream.exceptions import RulesError

    (tmp_path / "chain.yaml").write_text(
        "version: 1\nrules:\n  - {id: r, when: approach, expected: [layaway], "
        "alert: approach, title: '{who}'}\n"
    )
    with pytest.raises(
        RulesError, match=r"rules.0.expected.0: Input should be 'appointment' or 'reservation'"
    ):
        RuleBook(tmp_path).check_all()


async def test_departure_after_exit_timeout_and_return_within_it_continues(
    redis_ns: RedisNs,
) -> None:
    mono = FakeClock(0.0)
    proc = make(redis_ns, monotonic=mono)
    await enroll(proc, ALL, ["name"])
    await proc.decide(ble(T0))
    await proc.decide(ble(T0 + timedelta(seconds=60), "zone_exit"))
    mono.advance(100)  # 100 s of idle event time after the exit: not yet 120
    assert await proc.tick() == []
    back = await proc.decide(ble(T0 + timedelta(seconds=150)))
    assert back.alerts == []  # the same visit
    await proc.decide(ble(T0 + timedelta(seconds=200), "zone_exit"))
    mono.advance(119)
    assert await proc.tick() == []
    mono.advance(2)
    (gone,) = await proc.tick()
    assert gone.change is VisitChange.DEPARTURE
    assert gone.at == T0 + timedelta(seconds=320)
    assert await proc.tick() == [gone]  # due until its record is on Kafka
    await proc.settle_departures([gone])
    assert await proc.tick() == []  # once
    # Settled in place: the state keeps the TTL it had (it expires, departed, as before).
    assert await proc.r.ttl(proc.visits.state_key("ana", gone.store_id)) > 0
    # Back after revisit_gap: a new visit and a new arrival.
    later = await proc.decide(ble(T0 + timedelta(hours=5)))
    assert [a.kind for a in later.alerts] == [AlertKind.ARRIVAL]
    assert later.visits[0].visit_id != gone.visit_id


async def test_visits_published_only_with_analytics_consent(
    redis_ns: RedisNs,
) -> None:
    proc = make(redis_ns)
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


async def test_no_consent_at_all_stores_no_visit(redis_ns: RedisNs) -> None:
    proc = make(redis_ns)
    await enroll(proc, [Purpose.PERSONALIZATION], ["name"])
    decision = await proc.decide(ble(T0))
    assert decision.alerts == []
    assert decision.visits == []
    r, prefix = redis_ns
    assert [k async for k in r.scan_iter(f"{prefix}visit:*", count=10000)] == []
    # The same setup with analytics consent does store a visit: only consent was missing.
    await proc.registry.set_consent("ana", Purpose.ANALYTICS, granted=True)
    assert [v.change for v in (await proc.decide(ble(T0))).visits] == [VisitChange.ARRIVAL]
    assert [k async for k in r.scan_iter(f"{prefix}visit:*", count=10000)] != []


async def test_revocation_in_flight_wins_over_the_alert(
    redis_ns: RedisNs,
) -> None:
    proc = make(redis_ns)
    await enroll(proc, [Purpose.ARRIVAL_ALERTS], ["name"])
    assert isinstance(proc.registry, RevokingRegistry)
    proc.registry.revoke_on_get = True
    assert await proc.process(ble(T0)) == []
    assert proc.stats.counts["revoked_in_flight"] == 1
    r, prefix = redis_ns
    assert [k async for k in r.scan_iter(f"{prefix}alerted:*", count=10000)] == []


async def test_dedupe_key_is_set_nx_and_a_sent_alert_is_not_repeated(
    redis_ns: RedisNs,
) -> None:
    proc = make(redis_ns)
    await enroll(proc, [Purpose.ARRIVAL_ALERTS], ["name"])
    event = ble(T0)
    (a1,) = await proc.process(event)
    assert await proc.process(event) == []  # this worker claimed it already
    restarted = make(redis_ns)  # a new worker after a crash, before Kafka confirmed
    (a2,) = await restarted.process(event)
    assert a1.alert_id == a2.alert_id  # the same alert again; the notifier drops the copy
    await restarted.mark_sent(a2)
    assert await make(redis_ns).process(event) == []
    r, prefix = redis_ns
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
    redis_ns: RedisNs, rules_dir: Path
) -> None:
    proc = make(redis_ns, rules_dir)
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


async def test_quiet_hours_silence_all_but_exempt_rules(redis_ns: RedisNs, rules_dir: Path) -> None:
    proc = make(redis_ns, rules_dir)
    night = datetime(2026, 3, 14, 22, 30, tzinfo=UTC)  # 22:30 in Lisbon (UTC+0 in March)
    appt = Appointment(at=night + timedelta(minutes=10), note="bridal fitting")
    await enroll(proc, [Purpose.ARRIVAL_ALERTS], ["name", "appointment"], appointment=appt)
    (a,) = await proc.process(ble(night))
    assert a.kind is AlertKind.APPOINTMENT
    assert a.priority is Priority.URGENT
    assert a.body == "at 22:40 UTC (bridal fitting)"
    assert proc.stats.counts["quiet_hours"] == 1  # the VIP arrival was silenced


async def test_appointment_only_within_its_window(redis_ns: RedisNs, rules_dir: Path) -> None:
    proc = make(redis_ns, rules_dir)
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
    redis_ns: RedisNs,
) -> None:
    r, prefix = redis_ns
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
