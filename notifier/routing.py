"""Who gets an alert: a pure function of the alert, the store's associates and the time.

The ladder (DESIGN.md, notifier): the customer's own associate (``alert.target``) if on
shift → associates on shift in the alert's zone → anyone on shift → the store's managers.
Empty tiers are skipped, so the plan is the list of tiers that have someone in them. If
the directory knows nobody for the store at all, the stream's suggested associate is the
last resort, so an unprovisioned store still gets alerts where it always did.

Escalation walks the plan: level 0 is the first tier, unclaimed after ``escalate_after``
moves one tier on, after ``manager_after`` straight to the managers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from contracts.models import Alert
from notifier.directory import Associate


class Tier(IntEnum):
    """Tiers in escalation order; the value is the rank compared when escalating."""

    PRIMARY = 0
    ZONE = 1
    ON_SHIFT = 2
    MANAGER = 3
    SUGGESTED = 4  # the stream's suggestion, used only when nobody else exists

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Step:
    """One tier of a plan and the associates in it (in a stable order)."""

    tier: Tier
    associate_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.associate_ids:
            raise ValueError("a routing step needs at least one associate")


ALL_TIERS = frozenset({Tier.PRIMARY, Tier.ZONE, Tier.ON_SHIFT, Tier.MANAGER})


@dataclass(frozen=True, slots=True)
class Ladder:
    """When an unclaimed alert moves on, and which tiers a store uses."""

    escalate_after: timedelta = timedelta(seconds=45)
    manager_after: timedelta = timedelta(minutes=2)
    max_shift: timedelta = timedelta(hours=12)
    tiers: frozenset[Tier] = ALL_TIERS

    def __post_init__(self) -> None:
        if not timedelta(0) < self.escalate_after <= self.manager_after:
            raise ValueError("need 0 < escalate_after <= manager_after")
        if Tier.MANAGER not in self.tiers or not self.tiers <= ALL_TIERS:
            raise ValueError("tiers must include the manager, the last resort")


def plan(
    alert: Alert, associates: Sequence[Associate], now: datetime, ladder: Ladder = Ladder()
) -> list[Step]:
    """Every non-empty tier for this alert, in escalation order."""
    staff = sorted(
        (a for a in associates if a.store_id == alert.store_id), key=lambda a: a.associate_id
    )
    on_shift = [a for a in staff if a.is_on_shift(now, ladder.max_shift)]
    steps: list[Step] = []

    def add(tier: Tier, people: Sequence[Associate]) -> None:
        ids = tuple(a.associate_id for a in people)
        if ids and tier in ladder.tiers:
            steps.append(Step(tier, ids))

    target = alert.target.associate_id
    managers = [a for a in staff if a.role == "manager"]
    # A manager on shift is the one to wake; off-shift managers only when none is in.
    manager_step = [m for m in managers if m in on_shift] or managers
    if alert.target.role == "manager" and manager_step:
        # The stream asked for a manager (a complaint, a VIP): no associate tiers first.
        add(Tier.MANAGER, manager_step)
        return steps
    add(Tier.PRIMARY, [a for a in on_shift if a.associate_id == target])
    if alert.zone_id is not None:
        add(Tier.ZONE, [a for a in on_shift if alert.zone_id in a.zones])
    add(Tier.ON_SHIFT, on_shift)
    add(Tier.MANAGER, manager_step)
    if not steps and target is not None:
        steps.append(Step(Tier.SUGGESTED, (target,)))
    return _drop_repeats(steps)


def _drop_repeats(steps: list[Step]) -> list[Step]:
    """Skip a tier that would notify exactly the people of the tier before it."""
    out: list[Step] = []
    for step in steps:
        if out and set(step.associate_ids) == set(out[-1].associate_ids):
            continue
        out.append(step)
    return out


def route(
    alert: Alert, associates: Sequence[Associate], now: datetime, ladder: Ladder = Ladder()
) -> Step | None:
    """The first tier: who is told when the alert arrives (None: nobody to tell)."""
    steps = plan(alert, associates, now, ladder)
    return steps[0] if steps else None


@dataclass(frozen=True, slots=True)
class Escalation:
    """Where an unclaimed alert should be now: a ladder level and who, if anyone, to add."""

    level: int
    step: Step | None


def ladder_level(elapsed: timedelta, ladder: Ladder = Ladder()) -> int:
    """0 on delivery, 1 after ``escalate_after``, 2 (managers) after ``manager_after``."""
    if elapsed >= ladder.manager_after:
        return 2
    return 1 if elapsed >= ladder.escalate_after else 0


def escalation(
    steps: Sequence[Step],
    current_tier: int,
    current_level: int,
    elapsed: timedelta,
    ladder: Ladder = Ladder(),
) -> Escalation | None:
    """The move due for an alert unclaimed for ``elapsed``, or None if none is due.

    The level, not the tier, says whether a move is due, so an alert moves at most once
    per rung of the ladder however often this is asked.
    """
    level = ladder_level(elapsed, ladder)
    if level <= current_level:
        return None
    later = [s for s in steps if s.tier > current_tier]
    if not later:
        return Escalation(level, None)
    if level == 2:
        managers = [s for s in later if s.tier == Tier.MANAGER]
        return Escalation(level, managers[0] if managers else later[-1])
    return Escalation(level, later[0])


def next_step(steps: Sequence[Step], current: int) -> Step | None:
    """The next tier at once (everyone told so far declined)."""
    later = [s for s in steps if s.tier > current]
    return later[0] if later else None
