"""The worker's view of consent (stream.consent_view): a decision is held while its registry
shard's version is unchanged, and read again once any change of the shard bumps it — so a
revocation between two batches takes effect in the second, as if nothing were held."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from contracts.models import VisitChange
from stream.consent_view import ConsentView
from stream.registry import Purpose, Registry, shard_of
from tests.kit.customers import make_customer
from tests.kit.services import RedisNs
from tests.stream.test_visits_rules import T0, ble, enroll, make
from transport.redis import RedisClient

PAIR = ("ana", "store-1")


async def ana_held(
    redis_ns: RedisNs, **view_options: Any
) -> tuple[RedisClient, Registry, ConsentView]:
    """Ana enrolled with arrival alerts (no analytics) and a view holding that decision."""
    r, prefix = redis_ns
    await enroll(make(redis_ns), [Purpose.ARRIVAL_ALERTS], ["name"])
    registry = Registry(r, prefix)
    view = ConsentView(registry, **view_options)
    assert await view.read([PAIR]) == {PAIR: (True, False)}
    return r, registry, view


async def test_a_decision_is_held_until_its_shard_changes(redis_ns: RedisNs) -> None:
    r, registry, view = await ana_held(redis_ns)
    # Written behind the registry's back (no version bump): the view still holds its
    # decision, so it is not reading consent again.
    await r.hset(
        registry.consent_key("ana"), Purpose.ANALYTICS.value, '{"granted": true, "at": "x"}'
    )
    assert await view.read([PAIR]) == {PAIR: (True, False)}
    # A registry change of another shard leaves it held too.
    other = next(f"cust-{i}" for i in range(100) if shard_of(f"cust-{i}") != shard_of("ana"))
    await registry.enroll(make_customer(customer_id=other), [Purpose.ARRIVAL_ALERTS])
    assert await view.read([PAIR]) == {PAIR: (True, False)}
    # Any change of the shard (here another purpose of hers) bumps its version: read again.
    await registry.set_consent("ana", Purpose.ARRIVAL_ALERTS, granted=False)
    assert await view.read([PAIR]) == {PAIR: (False, True)}


async def test_a_forgotten_customer_is_read_as_without_consent(redis_ns: RedisNs) -> None:
    r, prefix = redis_ns
    proc = make(redis_ns)
    await enroll(proc, [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS], ["name"])
    view = ConsentView(Registry(r, prefix))
    assert await view.read([PAIR]) == {PAIR: (True, True)}
    await proc.registry.forget("ana")
    assert await view.read([PAIR]) == {PAIR: (False, False)}


async def test_held_consent_never_outlives_a_revocation_between_batches(
    redis_ns: RedisNs,
) -> None:
    proc = make(redis_ns)
    await enroll(proc, [Purpose.ARRIVAL_ALERTS, Purpose.ANALYTICS], ["name", "wishlist"])
    first = await proc.decide(ble(T0))  # her consent is now held by the worker's view
    assert [a.kind.value for a in first.alerts] == ["arrival"]
    assert [v.change for v in first.visits] == [VisitChange.ARRIVAL]
    await proc.registry.set_consent("ana", Purpose.ARRIVAL_ALERTS, granted=False)
    await proc.registry.set_consent("ana", Purpose.ANALYTICS, granted=False)
    # Into a fitting room: an alert (fitting-room rule) and a zone move, both with consent.
    later = await proc.decide(ble(T0 + timedelta(minutes=2), zone="fitting-rooms"))
    assert later.alerts == []
    assert later.visits == []
    assert proc.stats.counts["no_consent"] == 1
    assert proc.stats.counts["revoked_in_flight"] == 0  # stopped at the gate, not later
    # Granted again: the next batch sees that too.
    await proc.registry.set_consent("ana", Purpose.ARRIVAL_ALERTS, granted=True)
    again = await proc.decide(ble(T0 + timedelta(minutes=3), zone="fitting-1"))
    assert [a.kind.value for a in again.alerts] == ["fitting_room"]


async def test_a_shard_whose_version_went_down_holds_nothing_from_before(
    redis_ns: RedisNs,
) -> None:
    """Redis lost the registry (no persistence, no rebuild yet): the shard's counter starts
    again, and may climb back to the very number a held decision was read at."""
    r, registry, view = await ana_held(redis_ns)
    version_key = registry.keys.version(shard_of("ana"))
    version = int(await r.get(version_key))
    await r.delete(version_key)
    assert shard_of("x5") == shard_of("ana")  # someone never enrolled, in her shard
    assert await view.read([("x5", "store-1")]) == {("x5", "store-1"): (False, False)}
    # Written again from scratch, without her alerts consent; the counter is back where it was.
    await r.hset(
        registry.consent_key("ana"), Purpose.ARRIVAL_ALERTS.value, '{"granted": false, "at": "x"}'
    )
    await r.set(version_key, version)
    assert await view.read([("x5", "store-1")]) == {("x5", "store-1"): (False, False)}
    # The view has now seen her shard at the version her decision was read at: an epoch ago.
    assert await view.read([PAIR]) == {PAIR: (False, False)}


async def test_no_decision_is_held_longer_than_max_age(redis_ns: RedisNs) -> None:
    now = [1000.0]
    r, registry, view = await ana_held(redis_ns, max_age_s=60.0, clock=lambda: now[0])
    await r.hset(  # behind the registry's back: only the age makes the view read it
        registry.consent_key("ana"), Purpose.ARRIVAL_ALERTS.value, '{"granted": false, "at": "x"}'
    )
    now[0] += 59.0
    assert await view.read([PAIR]) == {PAIR: (True, False)}
    now[0] += 1.0
    assert await view.read([PAIR]) == {PAIR: (False, False)}
