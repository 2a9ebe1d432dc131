"""Never a field the customer did not make visible: every rule (the default rules and a
rule using every placeholder), every subset of visible fields, through the real processor
and Redis; the alert's JSON must not contain any value of a hidden field."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.models import Event
from stream.processor import EventProcessor
from stream.registry import VISIBLE_FIELDS, Appointment, Purpose, ReservationView
from stream.rules import DEFAULT_RULES, PLACEHOLDERS, RuleBook, load_rules
from tests.factories import eid_event
from tests.kit.customers import make_customer
from tests.kit.services import RedisNs

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
T0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=UTC)
# A value only that field has, to look for in the alert.
SENTINELS = {
    "name": "Zelda Quux",
    "initials": "ZQ",
    "tier": "gold",
    "sizes": "size-sentinel",
    "wishlist": "wish-sentinel",
    "notes": "notes-sentinel",
    "appointment": "appt-sentinel",
    "reservation": "resv-sentinel",
    "photo_url": "photo-sentinel",
}
EVERY_PLACEHOLDER = " ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
KITCHEN_SINK = f"""
version: 1
zones: {{fitting-rooms: fitting_room}}
rules:
  - {{id: all-arrival, when: arrival, alert: arrival, title: "{EVERY_PLACEHOLDER}", body: ["{EVERY_PLACEHOLDER}"]}}
  - {{id: all-zone, when: zone_enter, alert: fitting_room, priority: high, title: "{EVERY_PLACEHOLDER}", body: ["{EVERY_PLACEHOLDER}", "{{sizes}}", "{{notes}}"]}}
"""


def _event(at: datetime, zone: str) -> Event:
    return eid_event(KEY, at, zone)


@pytest.mark.parametrize("ruleset", ["default", "kitchen-sink"])
async def test_no_rule_ever_shows_a_hidden_field(
    redis_ns: RedisNs, tmp_path: Path, ruleset: str
) -> None:
    rules_dir = None
    if ruleset == "kitchen-sink":
        (tmp_path / "chain.yaml").write_text(KITCHEN_SINK)
        rules_dir = tmp_path
    rule_ids = {
        r.id for r in load_rules((rules_dir / "chain.yaml") if rules_dir else DEFAULT_RULES).rules
    }
    r, prefix = redis_ns
    fired: set[tuple[str, str]] = set()
    subsets = [
        list(c)
        for n in range(len(VISIBLE_FIELDS) + 1)
        for c in itertools.combinations(sorted(VISIBLE_FIELDS), n)
    ]
    for i, visible in enumerate(subsets):
        proc = EventProcessor(r, f"{prefix}{i}:", rules=RuleBook(rules_dir))
        profile = make_customer(
            customer_id=f"c{i}",
            identity_key=KEY.hex(),
            name=SENTINELS["name"],
            tier=SENTINELS["tier"] if i % 2 else "silver",  # with and without the VIP rule
            sizes={"dress": SENTINELS["sizes"]},
            wishlist=[SENTINELS["wishlist"]],
            notes=SENTINELS["notes"],
            appointment=Appointment(at=T0 + timedelta(minutes=10), note=SENTINELS["appointment"]),
            reservation=ReservationView(
                items=[SENTINELS["reservation"]],
                start=T0 - timedelta(hours=1),
                end=T0 + timedelta(hours=2),
            ),
            photo_url=f"https://example.com/{SENTINELS['photo_url']}.jpg",
            assigned_associate="assoc-1",
            visible_fields=visible,
        )
        await proc.registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
        # The shop front first (a zone of kind outside: an approach, for the expected-approach
        # rule), then in through the entrance to the fitting rooms.
        alerts = await proc.process(_event(T0 - timedelta(minutes=2), "street"))
        alerts += await proc.process(_event(T0, "entrance"))
        alerts += await proc.process(_event(T0 + timedelta(minutes=1), "fitting-rooms"))
        for alert in alerts:
            assert set(alert.fields) <= set(visible), (visible, alert.fields)
            text = alert.model_dump_json()
            for name, sentinel in SENTINELS.items():
                if name not in visible and not (name == "initials" and "name" in visible):
                    if name == "tier":
                        assert profile.tier not in alert.title + alert.body, (visible, alert)
                        assert "tier" not in alert.fields
                    else:
                        assert sentinel not in text, (name, visible, text)
            fired.add(alert.kind.value)
    # Every alert kind of the rule set fired for some subset: no rule went unchecked.
    kinds = {
        r.alert.value
        for r in load_rules((rules_dir / "chain.yaml") if rules_dir else DEFAULT_RULES).rules
    }
    assert fired == kinds, (fired, kinds, rule_ids)


async def test_a_priority_never_tells_a_hidden_tier(redis_ns: RedisNs) -> None:
    """The default rules' VIP arrival is "high": only if the customer shows the tier."""
    r, prefix = redis_ns
    priorities: dict[tuple[str, bool], str] = {}
    for i, (tier, shown) in enumerate(itertools.product(["gold", "silver"], [False, True])):
        proc = EventProcessor(r, f"{prefix}p{i}:", rules=RuleBook(None))
        profile = make_customer(
            customer_id=f"p{i}",
            identity_key=KEY.hex(),
            rotation_exponent=10,
            name="Ana",
            tier=tier,
            visible_fields=["name", "tier"] if shown else ["name"],
        )
        await proc.registry.enroll(profile, [Purpose.ARRIVAL_ALERTS])
        (alert,) = await proc.process(_event(T0, "entrance"))
        priorities[tier, shown] = alert.priority.value
    assert priorities == {
        ("gold", True): "high",  # the customer shows the tier: the VIP rule's priority
        ("gold", False): "normal",  # hidden: as for anyone else
        ("silver", True): "normal",
        ("silver", False): "normal",
    }
