"""Outcomes (issue 14): what happened after the alerts, per store-local day, per associate,
and per visit only with analytics consent; over real Redis, the CLI and the CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from contracts.models import Alert, ConsentDecision, ConsentRecord
from contracts.services import ServiceSettings
from notifier.cli import notifier_app
from notifier.directory import Associate, Directory
from notifier.lifecycle import Lifecycle
from notifier.outcomes import OutcomeReport
from notifier.room_desk import HoldFor, RoomDesk
from notifier.rooms import RoomOp
from tests.kit.clock import FakeUtcClock
from tests.notifier.conftest import make_alert

pytestmark = pytest.mark.integration

VISIT = "5b0c0c1e-1111-4c2b-9a7c-3b1f2f1c9a11"
NEW_YORK = "America/New_York"  # T0 (10:00Z) is 05:00 there


@pytest.fixture
async def desk(lifecycle: Lifecycle, directory: Directory, store: str) -> RoomDesk:
    await directory.add(store, "Maria Silva", "password-1", associate_id="maria")
    await directory.add(store, "Joao Costa", "password-1", associate_id="joao")
    await lifecycle.routing.set(store, timezone=NEW_YORK)
    desk = RoomDesk(lifecycle)
    await desk.set_layout(store, {"1": "Room 1", "2": "Room 2"})
    return desk


async def _who(directory: Directory, store: str, associate_id: str) -> Associate:
    found = await directory.get(store, associate_id)
    assert found is not None
    return found


async def _consent(lifecycle: Lifecycle, customer: str, store: str, analytics: bool) -> None:
    now = lifecycle.clock()
    decisions = {
        "arrival_alerts": ConsentDecision(granted=True, at=now),
        f"analytics@{store}": ConsentDecision(granted=analytics, at=now),
    }
    record = ConsentRecord(customer_id=customer, consent=decisions, version=1)
    await lifecycle.follow_consent(record)


async def _values(redis: aioredis.Redis, key: str) -> str:
    """Everything a key holds, as one JSON text to search."""
    kind = await redis.type(key)
    if kind == "hash":
        return json.dumps(await redis.hgetall(key))
    if kind == "list":
        return json.dumps(await redis.lrange(key, 0, -1))
    if kind == "set":
        return json.dumps(sorted(await redis.smembers(key)))
    if kind == "zset":
        return json.dumps(await redis.zrange(key, 0, -1))
    return json.dumps(await redis.get(key))


async def _report(lifecycle: Lifecycle, store: str, days: int = 1) -> OutcomeReport:
    routing = await lifecycle.routing.get(store)
    midnight = routing.midnight(lifecycle.clock())
    names = await lifecycle.names(store)
    return await lifecycle.outcomes.report(store, days, midnight, routing.timezone, names)


async def _serve_one_visit(
    desk: RoomDesk,
    lifecycle: Lifecycle,
    directory: Directory,
    store: str,
    clock: FakeUtcClock,
    customer: str,
) -> Alert:
    """She is on her way; Maria holds room 2 and readies it 60 s later; 60 s after that
    she arrives; Maria claims 30 s later and closes 2.5 min after that."""
    maria = await _who(directory, store, "maria")
    approach = make_alert(store_id=store, customer_id=customer, kind="approach", visit_id=VISIT)
    await lifecycle.create(approach)
    await desk.act(store, "2", RoomOp.HOLD, maria, HoldFor(alert_id=str(approach.alert_id)))
    clock.advance(60)
    await desk.act(store, "2", RoomOp.READY, maria, None)
    clock.advance(60)
    arrival = make_alert(store_id=store, customer_id=customer, visit_id=VISIT)
    await lifecycle.create(arrival)
    clock.advance(30)
    await lifecycle.claim(str(arrival.alert_id), store, "maria")
    clock.advance(20)
    await desk.act(store, "2", RoomOp.USE, maria, None)
    clock.advance(130)
    await lifecycle.done(str(arrival.alert_id), store, "maria")
    return arrival


async def test_a_served_visit_is_counted_and_its_row_kept_with_analytics_consent(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    await _consent(lifecycle, "ana", store, analytics=True)
    start = clock()
    await _serve_one_visit(desk, lifecycle, directory, store, clock, "ana")

    report = await _report(lifecycle, store)
    assert report.timezone == NEW_YORK
    assert report.since.isoformat() == "2026-01-01T00:00:00-05:00"
    assert report.totals == {
        "approaches": 1,
        "arrivals": 1,
        "claimed": 1,
        "done": 1,
        "unserved": 0,
        "room_ready": 1,
        "room_not_ready": 0,
        "served_share": 1.0,
        "median_time_to_claim_s": 30.0,
        "median_room_ready_before_arrival_s": 60.0,
    }
    assert report.associates == [
        {
            "associate": "maria",
            "name": "Maria Silva",
            "claimed": 1,
            "done": 1,
            "median_time_to_claim_s": 30.0,
        }
    ]
    [row] = report.visits
    assert row == {
        "visit": VISIT,
        "day": "2026-01-01",
        "approached_at": start.isoformat(),
        "arrived_at": (start + timedelta(seconds=120)).isoformat(),
        "zone": "entrance",
        "claimed_at": (start + timedelta(seconds=150)).isoformat(),
        "claimed_by": "Maria Silva",
        "time_to_claim_s": 30.0,
        "room": "Room 2",
        "room_ready_at": (start + timedelta(seconds=60)).isoformat(),
        "room_ready_before_arrival_s": 60.0,
        "room_in_use_at": (start + timedelta(seconds=170)).isoformat(),
        "done_at": (start + timedelta(seconds=300)).isoformat(),
    }
    lines = list(csv.DictReader(io.StringIO(report.csv("visits"))))
    assert [(r["visit"], r["claimed_by"], r["room_ready_before_arrival_s"]) for r in lines] == [
        (VISIT, "Maria Silva", "60.0")
    ]
    with pytest.raises(ValueError, match="rows must be one of visits, associates, days"):
        report.csv("customers")


async def test_without_analytics_consent_only_the_counts_are_kept(
    desk: RoomDesk,
    lifecycle: Lifecycle,
    directory: Directory,
    store: str,
    clock: FakeUtcClock,
    redis: aioredis.Redis,
    services: ServiceSettings,
) -> None:
    await _consent(lifecycle, "bia", store, analytics=False)
    await _serve_one_visit(desk, lifecycle, directory, store, clock, "bia")
    report = await _report(lifecycle, store)
    assert (report.totals["arrivals"], report.totals["claimed"], report.visits) == (1, 1, [])
    # Nothing the outcomes keep names her or her visit.
    async for key in redis.scan_iter(match=f"{services.redis_prefix}notifier:{{outcomes:*"):
        assert VISIT not in key, key
        values = await _values(redis, key)
        assert "bia" not in values, key
        assert VISIT not in values, key


async def test_an_arrival_nobody_claims_is_unserved_and_a_room_not_ready_is_said(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    maria = await _who(directory, store, "maria")
    approach = make_alert(store_id=store, customer_id="caio", kind="approach")
    await lifecycle.create(approach)
    await desk.act(store, "1", RoomOp.HOLD, maria, HoldFor(alert_id=str(approach.alert_id)))
    await lifecycle.create(make_alert(store_id=store, customer_id="caio"))
    clock.advance(lifecycle.expire_after.total_seconds() + 1)
    await lifecycle.tick()
    totals = (await _report(lifecycle, store)).totals
    assert (totals["arrivals"], totals["claimed"], totals["unserved"]) == (1, 0, 1)
    assert (totals["room_ready"], totals["room_not_ready"], totals["served_share"]) == (0, 1, 0.0)


async def test_revoking_analytics_deletes_the_rows_and_forget_leaves_no_trace(
    desk: RoomDesk,
    lifecycle: Lifecycle,
    directory: Directory,
    store: str,
    clock: FakeUtcClock,
    redis: aioredis.Redis,
    services: ServiceSettings,
) -> None:
    await _consent(lifecycle, "ana", store, analytics=True)
    await _serve_one_visit(desk, lifecycle, directory, store, clock, "ana")
    assert len((await _report(lifecycle, store)).visits) == 1
    await _consent(lifecycle, "ana", store, analytics=False)
    report = await _report(lifecycle, store)
    assert (report.visits, report.totals["arrivals"]) == ([], 1)  # the counts name nobody

    await _consent(lifecycle, "dora", store, analytics=True)
    clock.advance(3600)
    await desk.act(store, "2", RoomOp.DONE, await _who(directory, store, "maria"), None)
    await _serve_one_visit(desk, lifecycle, directory, store, clock, "dora")
    assert len((await _report(lifecycle, store)).visits) == 1
    await lifecycle.erase_customer("dora")
    assert (await _report(lifecycle, store)).visits == []
    async for key in redis.scan_iter(match=f"{services.redis_prefix}*"):
        assert "dora" not in key, key
        if "outcomes" in key or "analytics" in key:
            assert "dora" not in await _values(redis, key), key


async def test_the_periods_are_store_local_days(
    desk: RoomDesk, lifecycle: Lifecycle, directory: Directory, store: str, clock: FakeUtcClock
) -> None:
    """An arrival 10 days ago counts in 30 days only; one at 23:30 New York time yesterday
    (04:30Z today) is yesterday's: in 7 days, not in today."""
    lifecycle.clock = FakeUtcClock(clock() - timedelta(days=10))
    await lifecycle.create(make_alert(store_id=store, customer_id="eva"))
    lifecycle.clock = clock
    clock.advance(18.5 * 3600)  # 23:30 on 2026-01-01 in New York
    assert clock().isoformat() == "2026-01-02T04:30:00+00:00"
    await lifecycle.create(make_alert(store_id=store, customer_id="fay"))
    clock.advance(3600)  # 00:30 in New York on the 2nd
    today, week, month = [await _report(lifecycle, store, d) for d in (1, 7, 30)]
    assert [r.totals["arrivals"] for r in (today, week, month)] == [0, 1, 2]
    assert [d["day"] for d in week.by_day][-2:] == ["2026-01-01", "2026-01-02"]
    assert len(month.by_day) == 30
    with pytest.raises(ValueError, match="days must be between 1 and 34"):
        await _report(lifecycle, store, 40)


def test_the_outcomes_command_prints_a_summary_and_csv(
    services: ServiceSettings, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXIMA_NAMESPACE", services.namespace)
    runner = CliRunner()
    res = runner.invoke(notifier_app, ["outcomes", "--store", store, "--days", "7"])
    assert res.exit_code == 0, res.output
    assert "arrivals 0: greeted 0, unserved 0" in res.output
    res = runner.invoke(notifier_app, ["outcomes", "--store", store, "--csv", "days"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].startswith("day,approaches,arrivals,claimed,done")
    res = runner.invoke(notifier_app, ["outcomes", "--store", store, "--days", "3"])
    assert res.exit_code == 2
    assert "--days must be one of 1, 7, 30, not 3" in res.output
