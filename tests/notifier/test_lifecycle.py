from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from contracts.models import (
    AckStatus,
    AlertAck,
    ConsentDecision,
    ConsentRecord,
    WithdrawReason,
)
from notifier.channels import Receipt
from notifier.directory import Directory
from notifier.exceptions import (
    AlertConflict,
    AlertWithheld,
    InvalidInput,
    UnknownAlert,
    UnknownAssociate,
)
from notifier.lifecycle import AlertState, Delivery, Lifecycle
from notifier.routing import Tier
from tests.kit.clock import FakeUtcClock
from tests.notifier.conftest import make_alert

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


async def _team(directory: Directory, store: str) -> None:
    for name, role, zones, on in [
        ("maria", "associate", [], True),
        ("joao", "associate", ["entrance"], True),
        ("rui", "associate", ["fitting"], True),
        ("boss", "manager", [], False),
    ]:
        await directory.add(
            store, name.title(), "password-1", role=role, zones=zones, associate_id=name
        )
        if on:
            await directory.set_on_shift(store, name, True)


async def test_create_routes_and_is_idempotent(
    lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    await _team(directory, store)
    alert = make_alert(store_id=store, target={"associate_id": "maria"})
    first = await lifecycle.create(alert)
    assert isinstance(first, Delivery)
    assert first.step.tier is Tier.PRIMARY
    assert first.step.associate_ids == ("maria",)
    assert first.record.state is AlertState.DELIVERED
    assert await lifecycle.create(alert) is None  # Kafka redelivery: nobody told twice


async def test_first_claim_wins_atomically(
    lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    await _team(directory, store)
    alert = make_alert(store_id=store)
    await lifecycle.create(alert)
    alert_id = str(alert.alert_id)

    results = await asyncio.gather(
        *(lifecycle.claim(alert_id, store, who) for who in ("maria", "joao", "rui")),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, AlertConflict)]
    assert len(winners) == 1
    assert len(losers) == 2
    winner = winners[0].claimed_by
    assert all(exc.claimed_by == winner for exc in losers)
    assert all(f"already claimed by {winner}" in str(exc) for exc in losers)
    # Claiming again by the winner is harmless.
    again = await lifecycle.claim(alert_id, store, winner or "")
    assert again.claimed_by == winner


async def test_claim_then_done_and_done_needs_the_claimer(
    lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    await _team(directory, store)
    alert = make_alert(store_id=store)
    await lifecycle.create(alert)
    alert_id = str(alert.alert_id)
    clock.advance(12)
    claimed = await lifecycle.claim(alert_id, store, "joao")
    assert claimed.state is AlertState.CLAIMED
    assert claimed.claimed_at == clock.now
    with pytest.raises(AlertConflict):
        await lifecycle.done(alert_id, store, "maria")
    clock.advance(60)
    done = await lifecycle.done(alert_id, store, "joao")
    assert done.state is AlertState.DONE
    assert done.done_at == clock.now
    with pytest.raises(AlertConflict, match="already done by joao"):
        await lifecycle.claim(alert_id, store, "maria")


async def test_other_store_cannot_touch_an_alert(
    lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    await _team(directory, store)
    await directory.add("elsewhere", "Eve", "password-1", associate_id="eve")
    alert = make_alert(store_id=store)
    await lifecycle.create(alert)
    with pytest.raises(UnknownAlert):
        await lifecycle.claim(str(alert.alert_id), "elsewhere", "eve")
    with pytest.raises(UnknownAssociate):
        await lifecycle.claim(str(alert.alert_id), store, "eve")
    assert (await lifecycle.get(str(alert.alert_id))).state is AlertState.DELIVERED  # type: ignore[union-attr]


async def test_escalation_ladder_with_injected_clock(
    lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    await _team(directory, store)
    alert = make_alert(store_id=store, target={"associate_id": "maria"}, zone_id="entrance")
    await lifecycle.create(alert)

    clock.advance(44)
    assert await lifecycle.tick() == []
    clock.advance(1)
    (zone,) = await lifecycle.tick()
    assert (zone.step.tier, zone.step.associate_ids) == (Tier.ZONE, ("joao",))
    assert zone.record.notified == ("maria", "joao")
    clock.advance(30)
    assert await lifecycle.tick() == []  # one move per rung, however often we look
    clock.advance(45)  # 120 s
    (manager,) = await lifecycle.tick()
    assert (manager.step.tier, manager.step.associate_ids) == (Tier.MANAGER, ("boss",))
    assert await lifecycle.tick() == []


async def test_claimed_alert_does_not_escalate(
    lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    await _team(directory, store)
    alert = make_alert(store_id=store, target={"associate_id": "maria"})
    await lifecycle.create(alert)
    await lifecycle.claim(str(alert.alert_id), store, "maria")
    clock.advance(600)
    assert await lifecycle.tick() == []
    # The same alert unclaimed, created now, does move on once its time has come.
    unclaimed = make_alert(store_id=store, target={"associate_id": "maria"})
    await lifecycle.create(unclaimed)
    clock.advance(45)
    assert [d.record.alert.alert_id for d in await lifecycle.tick()] == [unclaimed.alert_id]


async def test_two_instances_escalate_once(
    redis: aioredis.Redis,
    lifecycle: Lifecycle,
    directory: Directory,
    store: str,
    clock: FakeUtcClock,
) -> None:
    await _team(directory, store)
    other = Lifecycle(redis, lifecycle.prefix, directory, clock=clock)
    alert = make_alert(store_id=store, target={"associate_id": "maria"})
    await lifecycle.create(alert)
    clock.advance(50)
    a, b = await asyncio.gather(lifecycle.tick(), other.tick())
    assert len(a) + len(b) == 1


async def test_unclaimed_alert_expires(
    lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    await _team(directory, store)
    alert = make_alert(store_id=store)
    await lifecycle.create(alert)
    clock.advance(15 * 60)
    await lifecycle.tick()
    record = await lifecycle.get(str(alert.alert_id))
    assert record is not None
    assert record.state is AlertState.EXPIRED
    with pytest.raises(AlertConflict, match="expired"):
        await lifecycle.claim(str(alert.alert_id), store, "maria")


async def test_decline_releases_claim_and_escalates_when_all_declined(
    lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    await _team(directory, store)
    alert = make_alert(store_id=store, target={"associate_id": "maria"}, zone_id="entrance")
    await lifecycle.create(alert)
    alert_id = str(alert.alert_id)
    await lifecycle.claim(alert_id, store, "maria")
    record, delivery = await lifecycle.decline(alert_id, store, "maria")
    assert record.state is AlertState.DELIVERED
    assert record.claimed_by is None
    assert record.declined == ("maria",)
    # Everyone told so far said no: the next tier is told at once, not after 45 s.
    assert delivery is not None
    assert delivery.step.tier is Tier.ZONE
    claimed = await lifecycle.claim(alert_id, store, "joao")
    assert claimed.claimed_by == "joao"


async def test_acks_from_mqtt_payloads(
    lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    await _team(directory, store)
    alert = make_alert(store_id=store)
    await lifecycle.create(alert)

    def ack(status: AckStatus, who: str) -> AlertAck:
        return AlertAck(
            alert_id=alert.alert_id, store_id=store, associate_id=who, status=status, at=clock.now
        )

    assert (await lifecycle.apply_ack(ack(AckStatus.CLAIMED, "rui"))).claimed_by == "rui"
    assert (await lifecycle.apply_ack(ack(AckStatus.DONE, "rui"))).state is AlertState.DONE


async def test_changes_are_published_on_the_store_feed(
    redis: aioredis.Redis, lifecycle: Lifecycle, directory: Directory, store: str
) -> None:
    await _team(directory, store)
    pubsub = redis.pubsub()
    await pubsub.subscribe(lifecycle.channel(store))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    alert = make_alert(store_id=store, fields={"name": "Ana", "tier": "gold"})
    await lifecycle.create(alert)
    await lifecycle.claim(str(alert.alert_id), store, "joao")
    seen = []
    for _ in range(2):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert msg is not None
        seen.append(json.loads(msg["data"]))
    await pubsub.aclose()
    assert [m["alert"]["state"] for m in seen] == ["delivered", "claimed"]
    claimed = seen[1]["alert"]
    assert claimed["claimed_by_name"] == "Joao"
    assert claimed["fields"] == {"name": "Ana", "tier": "gold"}
    assert "customer_id" not in claimed
    assert "caused_by" not in claimed


async def test_manager_summary(
    lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    await _team(directory, store)
    ids = []
    for kind in ("arrival", "arrival", "fitting_room"):
        alert = make_alert(store_id=store, kind=kind)
        ids.append(str(alert.alert_id))
        await lifecycle.create(alert)
    clock.advance(10)
    await lifecycle.claim(ids[0], store, "maria")
    clock.advance(20)
    await lifecycle.claim(ids[1], store, "joao")
    summary = await lifecycle.summary(store)
    assert summary.arrivals_today == 2
    assert summary.alerts_today == 3
    assert summary.unclaimed == 1
    assert summary.median_time_to_claim_s == pytest.approx(20.0)
    clock.advance(timedelta(days=1).total_seconds())
    assert (await lifecycle.summary(store)).alerts_today == 0


async def test_the_managers_today_begins_at_midnight_in_the_stores_time_zone(
    lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    """An evening alert in New York is after midnight UTC: still today for the store."""
    new_york = ZoneInfo("America/New_York")
    await _team(directory, store)
    await lifecycle.routing.set(store, timezone="America/New_York")
    day = clock().date() + timedelta(days=2)

    def at(hour: int, minute: int = 0, days: int = 0) -> None:  # New York time
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=new_york)
        clock.advance((local + timedelta(days=days) - clock()).total_seconds())

    at(19, 30)  # after midnight UTC in winter and summer alike
    await lifecycle.create(make_alert(store_id=store, kind="arrival"))
    at(21)
    assert clock().date() > day  # already tomorrow in UTC
    summary = await lifecycle.summary(store)
    assert summary.arrivals_today == 1  # from UTC midnight it would be 0
    assert summary.timezone == "America/New_York"
    assert summary.since == datetime(day.year, day.month, day.day, tzinfo=new_york)
    at(0, 30, days=1)
    assert (await lifecycle.summary(store)).arrivals_today == 0
    with pytest.raises(InvalidInput, match="'Mars/Olympus' is not an IANA time zone"):
        await lifecycle.routing.set(store, timezone="Mars/Olympus")


def _consent(customer_id: str, clock: FakeUtcClock, **decisions: bool) -> ConsentRecord:
    """A consent state; ``arrival_alerts__s1=False`` is the decision ``arrival_alerts@s1``."""
    return ConsentRecord(
        customer_id=customer_id,
        consent={
            key.replace("__", "@"): ConsentDecision(granted=granted, at=clock.now)
            for key, granted in decisions.items()
        },
        version=1,
    )


async def test_revoking_arrival_alerts_in_a_store_withdraws_its_open_alerts_and_stops_escalation(
    redis: aioredis.Redis,
    lifecycle: Lifecycle,
    directory: Directory,
    store: str,
    clock: FakeUtcClock,
) -> None:
    other = f"{store}-b"
    await _team(directory, store)
    await _team(directory, other)
    here = make_alert(store_id=store, customer_id="cust-rev", target={"associate_id": "maria"})
    there = make_alert(store_id=other, customer_id="cust-rev")
    claimed = make_alert(store_id=store, customer_id="cust-rev", kind="fitting_room")
    done = make_alert(store_id=store, customer_id="cust-rev", kind="appointment")
    for alert in (here, there, claimed, done):
        await lifecycle.create(alert)
    await lifecycle.claim(str(claimed.alert_id), store, "joao")
    await lifecycle.done(str(done.alert_id), store, "joao")
    pubsub = redis.pubsub()
    await pubsub.subscribe(lifecycle.channel(store))
    await pubsub.get_message(timeout=1)

    revoked = _consent(
        "cust-rev", clock, arrival_alerts=True, **{f"arrival_alerts__{store}": False}
    )
    withdrawn = await lifecycle.follow_consent(revoked)

    assert {str(r.alert.alert_id) for r in withdrawn} == {str(here.alert_id), str(claimed.alert_id)}
    for alert, state in (
        (here, "withdrawn"),
        (claimed, "withdrawn"),
        (there, "delivered"),
        (done, "done"),
    ):
        record = await lifecycle.get(str(alert.alert_id))
        assert record is not None
        assert record.state.value == state, alert.kind
    record = await lifecycle.get(str(here.alert_id))
    assert record is not None
    assert record.withdrawn_reason is WithdrawReason.CONSENT_REVOKED
    assert (record.alert.title, record.alert.body, record.alert.fields) == (
        "Alert withdrawn",
        "",
        {},
    )
    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    await pubsub.aclose()
    assert msg is not None
    assert json.loads(msg["data"])["alert"]["state"] == "withdrawn"
    assert json.loads(msg["data"])["alert"]["fields"] == {}
    # Escalation stops: 10 minutes later nobody else is told about it.
    clock.advance(600)
    assert all(d.record.alert.store_id == other for d in await lifecycle.tick())
    with pytest.raises(AlertConflict, match="withdrawn"):
        await lifecycle.claim(str(here.alert_id), store, "maria")
    # An alert produced before the revocation but read after it is not created ...
    late = make_alert(store_id=store, customer_id="cust-rev")
    with pytest.raises(AlertWithheld):
        await lifecycle.create(late)
    assert isinstance(
        await lifecycle.create(make_alert(store_id=other, customer_id="cust-rev")), Delivery
    )
    # ... until the customer grants arrival alerts there again.
    await lifecycle.follow_consent(_consent("cust-rev", clock, arrival_alerts=True))
    assert await lifecycle.create(late) is not None


async def test_erasing_a_customer_deletes_every_alert_of_theirs_and_refuses_late_ones(
    redis: aioredis.Redis,
    lifecycle: Lifecycle,
    directory: Directory,
    store: str,
    clock: FakeUtcClock,
) -> None:
    await _team(directory, store)
    gone = [
        make_alert(store_id=store, customer_id="cust-gone", kind=k)
        for k in ("arrival", "fitting_room")
    ]
    kept = make_alert(store_id=store, customer_id="cust-kept")
    for alert in (*gone, kept):
        await lifecycle.create(alert)
    await lifecycle.done(str(gone[1].alert_id), store, "maria")
    await lifecycle.add_receipt(
        str(gone[0].alert_id), Receipt("mqtt", "topic", "maria", True, 1, clock.now)
    )

    withdrawn = await lifecycle.erase_customer("cust-gone")

    assert [str(r.alert.alert_id) for r in withdrawn] == [str(gone[0].alert_id)]  # the open one
    for alert in gone:
        assert await lifecycle.get(str(alert.alert_id)) is None
        assert await lifecycle.receipts(str(alert.alert_id)) == []
    listed = [
        str(r.alert.alert_id)
        for r in await lifecycle.list_store(store, clock.now - timedelta(hours=1))
    ]
    assert listed == [str(kept.alert_id)]
    assert await lifecycle.customer_alerts("cust-gone") == []
    with pytest.raises(AlertWithheld):
        await lifecycle.create(make_alert(store_id=store, customer_id="cust-gone"))
    keys = [k async for k in redis.scan_iter(f"{lifecycle.prefix}*", count=10000)]
    assert not [k for k in keys if "cust-gone" in k]
    assert await lifecycle.get(str(kept.alert_id)) is not None
