"""Property: whatever mix of signals arrives, in any order, duplicated or replayed by a
restarted worker — geofence crossings, storefront and interior beacon regions, gateways'
zone events — a visit arrives at most once (one arrival visit change, one arrival alert),
never without in-store evidence, and always once it has some. Against real Redis, a fresh
key prefix per example; all signals within two hours, so they make one visit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from beacons.eid import compute_eid
from contracts.models import AlertKind, Event, VisitChange
from contracts.services import ServiceSettings
from stream.processor import EventProcessor
from stream.registry import CustomerProfile, Purpose, Registry
from stream.rules import RuleBook
from tests.factories import event_dict

KEY = bytes.fromhex("0102030405060708090a111213141516")
PHONE = "d00dfeed00000077"
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)
OUTSIDE = {"street"}  # the default rules' zone of kind outside
ZONES = ["street", "entrance", "floor", "fitting-rooms"]


def _event(second: int, kind: str, zone: str, app: bool) -> Event:
    at = T0 + timedelta(seconds=second)
    if kind.startswith("geofence"):
        data = event_dict(schema="proxima.geofence.v1", kind=kind, gateway_id="app")
        data.pop("zone_id")
        subject = {"type": "device", "id": PHONE}
    elif app:  # a beacon region the app reported
        data = event_dict(kind=kind, zone_id=zone, gateway_id="app")
        subject = {"type": "device", "id": PHONE}
    else:
        data = event_dict(kind=kind, zone_id=zone)
        subject = {"type": "eddystone_eid", "id": compute_eid(KEY, 10, int(at.timestamp())).hex()}
    data.update(observed_at=at.isoformat(), subject=subject, event_id=str(uuid.uuid4()))
    return Event.model_validate(data)


def in_store(event: Event) -> bool:
    return not event.kind.startswith("geofence") and event.zone_id not in OUTSIDE


signal = st.tuples(
    st.just("event"),
    st.integers(0, 7200),
    st.sampled_from(
        [
            "zone_enter",
            "zone_dwell",
            "zone_exit",
            "geofence_enter",
            "geofence_dwell",
            "geofence_exit",
        ]
    ),
    st.sampled_from(ZONES),
    st.booleans(),
)
ops = st.lists(
    st.one_of(signal, st.tuples(st.just("dup"), st.integers(0, 50)), st.tuples(st.just("crash"))),
    min_size=1,
    max_size=25,
)


async def _check(program: list[tuple[object, ...]]) -> None:
    services = ServiceSettings()
    r = aioredis.from_url(services.redis)
    prefix = f"appr{uuid.uuid4().hex[:10]}:"
    registry = Registry(r, prefix)

    def worker() -> EventProcessor:
        return EventProcessor(
            r, prefix, exit_timeout_s=120, registry=registry, rules=RuleBook(None)
        )

    proc = worker()
    try:
        await registry.enroll(
            CustomerProfile(
                customer_id="ana",
                identity_key=KEY.hex(),
                rotation_exponent=10,
                name="Ana",
                visible_fields=["name"],
            ),
            [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS],
        )
        await registry.register_device("ana", PHONE)
        by_id: dict[uuid.UUID, Event] = {}
        arrivals: set[uuid.UUID] = set()  # the events that made the visit arrive
        arrival_alerts: set[uuid.UUID] = set()
        visits: set[str] = set()
        entered_inside = False
        for op in program:
            if op[0] == "crash":
                proc = worker()  # a restarted worker: nothing in memory
                continue
            if op[0] == "dup":
                if not by_id:
                    continue
                event = list(by_id.values())[int(op[1]) % len(by_id)]  # type: ignore[call-overload]
            else:
                _, second, kind, zone, app = op
                event = _event(int(second), str(kind), str(zone), bool(app))  # type: ignore[call-overload]
                by_id[event.event_id] = event
            decision = await proc.decide(event)
            if in_store(event) and not event.kind.endswith("exit"):
                entered_inside = True
            for v in decision.visits:
                visits.add(v.visit_id)
                if v.change is VisitChange.ARRIVAL:
                    (cause,) = v.caused_by
                    assert in_store(by_id[cause]), f"arrival caused by {by_id[cause].kind}"
                    arrivals.add(cause)
            for alert in decision.alerts:
                if alert.kind is AlertKind.ARRIVAL:
                    assert in_store(by_id[alert.caused_by[-1]])
                    arrival_alerts.add(alert.alert_id)
                await proc.mark_sent(alert)
            await proc.mark_processed(event)
        assert len(visits) <= 1
        assert len(arrivals) <= 1, "two arrivals in one visit"
        assert len(arrival_alerts) <= 1, "two arrival alerts in one visit"
        # ... and in-store evidence always makes the arrival (with its one alert).
        assert bool(arrivals) == entered_inside == bool(arrival_alerts)
    finally:
        keys = [k async for k in r.scan_iter(f"{prefix}*", count=10000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=ops)
# A window shopper: geofence and the storefront beacon, never inside.
@example(
    program=[
        ("event", 0, "geofence_enter", "street", True),
        ("event", 30, "zone_enter", "street", True),
        ("event", 90, "zone_exit", "street", True),
        ("event", 200, "geofence_exit", "street", True),
    ]
)
# In-store evidence that lands before the approach (an OS geofence delivered late).
@example(
    program=[
        ("event", 60, "zone_enter", "entrance", False),
        ("crash",),
        ("event", 10, "geofence_enter", "street", True),
        ("dup", 0),
        ("event", 90, "zone_enter", "floor", True),
    ]
)
def test_at_most_one_arrival_per_visit_and_only_from_in_store_evidence(
    program: list[tuple[object, ...]],
) -> None:
    asyncio.run(_check(program))
