from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifier.directory import Associate
from notifier.routing import Escalation, Ladder, Step, Tier, escalation, next_step, plan, route
from tests.notifier.conftest import make_alert

NOW = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def staff(
    associate_id: str,
    *,
    zones: tuple[str, ...] = (),
    on: bool = True,
    role: str = "associate",
    store: str = "store-1",
    since: datetime | None = None,
) -> Associate:
    return Associate(
        store_id=store,
        associate_id=associate_id,
        name=associate_id.title(),
        role=role,  # type: ignore[arg-type]
        zones=zones,
        on_shift=on,
        shift_started_at=since,
    )


TEAM = [
    staff("maria"),
    staff("joao", zones=("entrance",)),
    staff("lea", zones=("entrance",), on=False),
    staff("rui", zones=("fitting",)),
    staff("boss", role="manager", on=False),
    staff("intruder", zones=("entrance",), store="store-2"),
]


def test_primary_associate_on_shift_comes_first() -> None:
    alert = make_alert(target={"associate_id": "maria"}, zone_id="entrance")
    assert plan(alert, TEAM, NOW) == [
        Step(Tier.PRIMARY, ("maria",)),
        Step(Tier.ZONE, ("joao",)),
        Step(Tier.ON_SHIFT, ("joao", "maria", "rui")),
        Step(Tier.MANAGER, ("boss",)),
    ]


def test_off_shift_primary_falls_to_zone() -> None:
    alert = make_alert(target={"associate_id": "lea"}, zone_id="entrance")
    assert route(alert, TEAM, NOW) == Step(Tier.ZONE, ("joao",))


def test_no_one_in_zone_falls_to_anyone_on_shift() -> None:
    alert = make_alert(zone_id="checkout")
    assert route(alert, TEAM, NOW) == Step(Tier.ON_SHIFT, ("joao", "maria", "rui"))


def test_nobody_on_shift_falls_to_manager() -> None:
    team = [staff("maria", on=False), staff("boss", role="manager", on=False)]
    assert route(make_alert(), team, NOW) == Step(Tier.MANAGER, ("boss",))


def test_on_shift_manager_preferred_over_off_shift_one() -> None:
    team = [staff("boss", role="manager", on=False), staff("deputy", role="manager"), staff("rui")]
    assert plan(make_alert(zone_id=None), team, NOW)[-1] == Step(Tier.MANAGER, ("deputy",))


def test_other_stores_staff_never_routed() -> None:
    for step in plan(make_alert(zone_id="entrance"), TEAM, NOW):
        assert "intruder" not in step.associate_ids


def test_stale_shift_toggle_counts_as_off() -> None:
    team = [staff("maria", since=NOW - timedelta(hours=13)), staff("boss", role="manager")]
    assert route(make_alert(), team, NOW) == Step(Tier.ON_SHIFT, ("boss",))


def test_empty_directory_keeps_the_streams_suggestion() -> None:
    alert = make_alert(target={"associate_id": "assoc-maria"})
    assert route(alert, [], NOW) == Step(Tier.SUGGESTED, ("assoc-maria",))
    assert route(make_alert(), [], NOW) is None


def test_repeated_tier_is_skipped() -> None:
    team = [staff("joao", zones=("entrance",)), staff("boss", role="manager", on=False)]
    tiers = [s.tier for s in plan(make_alert(zone_id="entrance"), team, NOW)]
    assert tiers == [Tier.ZONE, Tier.MANAGER]


def test_escalation_ladder() -> None:
    alert = make_alert(target={"associate_id": "maria"}, zone_id="entrance")
    steps = plan(alert, TEAM, NOW)
    ladder = Ladder()
    assert escalation(steps, Tier.PRIMARY, 0, timedelta(seconds=44.9), ladder) is None
    assert escalation(steps, Tier.PRIMARY, 0, timedelta(seconds=45), ladder) == Escalation(
        1, steps[1]
    )
    # Already moved one rung: nothing more until the manager's turn.
    assert escalation(steps, Tier.ZONE, 1, timedelta(seconds=60), ladder) is None
    assert escalation(steps, Tier.ZONE, 1, timedelta(minutes=2), ladder) == Escalation(2, steps[3])
    assert escalation(steps, Tier.MANAGER, 2, timedelta(hours=1), ladder) is None
    # Straight to the manager when the first check comes late.
    assert escalation(steps, Tier.PRIMARY, 0, timedelta(minutes=5), ladder) == Escalation(
        2, steps[3]
    )
    assert next_step(steps, Tier.ZONE) == steps[2]
    assert next_step(steps, Tier.MANAGER) is None


def test_escalation_without_manager_goes_to_widest_tier() -> None:
    steps = plan(make_alert(zone_id="entrance"), TEAM[:4], NOW)
    assert escalation(steps, Tier.ZONE, 1, timedelta(minutes=3)) == Escalation(
        2, Step(Tier.ON_SHIFT, ("joao", "maria", "rui"))
    )
    assert escalation(steps, Tier.ON_SHIFT, 1, timedelta(minutes=3)) == Escalation(2, None)


def test_alert_for_a_manager_goes_to_managers_only() -> None:
    alert = make_alert(target={"role": "manager"}, zone_id="entrance")
    assert plan(alert, TEAM, NOW) == [Step(Tier.MANAGER, ("boss",))]
    # No manager in the directory: the ordinary ladder rather than nobody.
    assert route(alert, TEAM[:4], NOW) == Step(Tier.ZONE, ("joao",))
