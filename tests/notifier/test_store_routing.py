"""Routing configured per store: ladder times, expiry and tiers, with an injected clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from notifier.cli import channels_app, routing_app
from notifier.directory import Associate, Directory
from notifier.exceptions import InvalidInput
from notifier.lifecycle import Delivery, Lifecycle
from notifier.routing import Ladder, Tier, plan
from tests.kit.clock import FakeUtcClock
from tests.notifier.conftest import make_alert

NOW = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def _staff() -> list[Associate]:
    return [
        Associate("s1", "maria", "Maria", on_shift=True),
        Associate("s1", "joao", "Joao", zones=("entrance",), on_shift=True),
        Associate("s1", "boss", "Boss", role="manager"),
    ]


def test_a_store_can_leave_tiers_out() -> None:
    alert = make_alert(store_id="s1", target={"associate_id": "maria"}, zone_id="entrance")
    full = plan(alert, _staff(), NOW, Ladder())
    assert [s.tier for s in full] == [Tier.PRIMARY, Tier.ZONE, Tier.ON_SHIFT, Tier.MANAGER]
    lean = plan(alert, _staff(), NOW, Ladder(tiers=frozenset({Tier.PRIMARY, Tier.MANAGER})))
    assert [s.tier for s in lean] == [Tier.PRIMARY, Tier.MANAGER]
    with pytest.raises(ValueError, match="manager"):
        Ladder(tiers=frozenset({Tier.PRIMARY}))


async def _team(directory: Directory, store: str) -> None:
    await directory.add(store, "Maria", "password-1", associate_id="maria")
    await directory.add(store, "Joao", "password-1", associate_id="joao", zones=["entrance"])
    await directory.add(store, "Boss", "password-1", associate_id="boss", role="manager")
    for who in ("maria", "joao"):
        await directory.set_on_shift(store, who, True)


@pytest.mark.integration
async def test_each_store_escalates_and_expires_on_its_own_clock(
    lifecycle: Lifecycle, directory: Directory, clock: FakeUtcClock
) -> None:
    for store in ("fast", "slow"):
        await _team(directory, store)
    await lifecycle.routing.set(
        "fast",
        escalate_after_s=10,
        manager_after_s=20,
        expire_after_s=30,
        tiers=["primary", "manager"],
    )
    alerts = {
        s: make_alert(store_id=s, target={"associate_id": "maria"}, zone_id="entrance")
        for s in ("fast", "slow")
    }
    for alert in alerts.values():
        assert isinstance(await lifecycle.create(alert), Delivery)
    clock.advance(10)
    moved = await lifecycle.tick()
    # Only the fast store moved, and straight past the zone tier it does not use.
    assert [(d.record.alert.store_id, d.step.tier) for d in moved] == [("fast", Tier.MANAGER)]
    clock.advance(21)
    assert await lifecycle.tick() == []
    fast = await lifecycle.get(str(alerts["fast"].alert_id))
    slow = await lifecycle.get(str(alerts["slow"].alert_id))
    assert fast is not None
    assert slow is not None
    assert fast.state.value == "expired"
    assert slow.state.value == "delivered"
    clock.advance(14)  # 45 s: the default ladder moves the slow store's alert on
    assert [(d.record.alert.store_id, d.step.tier) for d in await lifecycle.tick()] == [
        ("slow", Tier.ZONE)
    ]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"escalate_after_s": 1}, "escalate_after_s", "between 5 and"),
        ({"escalate_after_s": 200}, "manager_after_s", "must not be shorter"),
        ({"expire_after_s": 10, "escalate_after_s": 20}, "expire_after_s", "must not be shorter"),
        ({"tiers": ["primary"]}, "tiers", "must include 'manager'"),
        ({"tiers": ["vip", "manager"]}, "tiers", "'vip' is not one of"),
    ],
)
async def test_bad_routing_is_refused_and_nothing_changes(
    lifecycle: Lifecycle, kwargs: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        await lifecycle.routing.set("s1", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert message in info.value.reason
    assert await lifecycle.routing.get("s1") == lifecycle.routing.default
    assert await lifecycle.routing.overridden() == []


@pytest.mark.integration
def test_cli_sets_shows_resets_routing_and_adds_webhooks(
    namespace: str, monkeypatch: pytest.MonkeyPatch, redis: object
) -> None:
    monkeypatch.setenv("PROXIMA_NAMESPACE", namespace)
    runner = CliRunner()
    done = runner.invoke(
        routing_app, ["set", "--store", "s1", "--escalate-after", "20", "--tiers", "zone,manager"]
    )
    assert done.exit_code == 0, done.output
    shown = json.loads(runner.invoke(routing_app, ["show", "--store", "s1"]).output)
    assert shown["escalate_after_s"] == 20
    assert shown["tiers"] == ["zone", "manager"]
    bad = runner.invoke(routing_app, ["set", "--store", "s1", "--tiers", "zone"])
    assert bad.exit_code == 2
    assert "tiers: must include 'manager'" in bad.output
    reset = json.loads(runner.invoke(routing_app, ["reset", "--store", "s1"]).output)
    assert reset["escalate_after_s"] == 45
    added = runner.invoke(
        channels_app, ["add-webhook", "--store", "s1", "--url", "https://crm.example/in"]
    )
    assert added.exit_code == 0, added.output
    hook = json.loads(added.output)
    assert len(hook["secret"]) >= 16
    listed = runner.invoke(channels_app, ["list", "--store", "s1"])
    assert json.loads(listed.output)["id"] == hook["id"]
    assert hook["secret"] not in listed.output
    refused = runner.invoke(channels_app, ["add-webhook", "--store", "s1", "--url", "ftp://x"])
    assert refused.exit_code == 2
    assert "url: 'ftp://x' must start with https://" in refused.output


@pytest.mark.integration
async def test_routing_timedelta_defaults_follow_the_lifecycle(lifecycle: Lifecycle) -> None:
    default = await lifecycle.routing.get("never-configured")
    assert default.ladder == lifecycle.ladder
    assert default.expire_after == timedelta(minutes=15)
