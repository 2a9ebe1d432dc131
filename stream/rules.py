"""Declarative alert rules: a YAML file per store (``{store}.yaml``) or chain (``chain.yaml``).

A rule says *when* (a visit's ``arrival``, or entering a zone), *for whom* (tiers, zones or
zone kinds, what the customer has shown: a wishlist, an appointment, its window), and
*what* (alert kind, priority, target, a title and body). Rules are tried in priority order
(then file order); for each alert kind the first matching rule wins, and the alert dedupe
key (customer, store, visit, kind) keeps it to one per visit. Quiet hours (in the file's
time zone) silence every rule not marked ``during_quiet_hours``; ``cooldown_s`` keeps a
customer from being alerted by the same rule again within that much event time.

Visibility by construction: templates see only :meth:`CustomerProfile.visible` (plus the
zone), and conditions on a wishlist or an appointment look only at visible ones, so no
rule can put a field into an alert that the customer did not make visible. The tier may
select a rule (a service level), but reaches the alert only if visible.

Example::

    version: 1
    timezone: Europe/Lisbon
    zones: {fitting-1: fitting_room, entrance: entrance}
    quiet_hours: [{start: "21:00", end: "08:00"}]
    rules:
      - id: vip-arrival
        when: arrival
        tiers: [gold, platinum]
        alert: arrival
        priority: high
        cooldown_s: 14400
        title: "{who} is at the {zone}"
        body: ["sizes {sizes}", "wishlist: {wishlist}"]
"""

from __future__ import annotations

import string
from datetime import datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.models import AlertKind, AlertTarget, Priority
from stream.exceptions import RulesError
from stream.registry import CustomerProfile

PLACEHOLDERS = frozenset(
    {"who", "name", "initials", "tier", "zone", "sizes", "wishlist", "appointment", "notes"}
)
PRIORITY_ORDER = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}
DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")


class Trigger(StrEnum):
    ARRIVAL = "arrival"
    ZONE_ENTER = "zone_enter"


def _check_template(value: str) -> str:
    for _, name, _, _ in string.Formatter().parse(value):
        if name is not None and name not in PLACEHOLDERS:
            raise ValueError(
                f"unknown placeholder {{{name}}}; known: {', '.join(sorted(PLACEHOLDERS))}"
            )
    return value


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list, description="days the period starts on; empty = every day"
    )

    def covers(self, local: datetime) -> bool:
        days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        now = local.time()
        if self.start <= self.end:
            started_on = local if self.start <= now < self.end else None
        elif now >= self.start:
            started_on = local
        elif now < self.end:
            started_on = local - timedelta(days=1)  # over midnight: began yesterday
        else:
            started_on = None
        if started_on is None:
            return False
        return not self.days or days[started_on.weekday()] in self.days


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    when: Trigger = Field(description="arrival | zone_enter (not 'on': YAML 1.1 reads it as true)")
    alert: AlertKind
    priority: Priority = Priority.NORMAL
    tiers: list[str] = Field(default_factory=list, description="empty = any tier")
    zones: list[str] = Field(default_factory=list, description="zone ids (zone_enter)")
    zone_kinds: list[str] = Field(default_factory=list, description="zone kinds (zone_enter)")
    requires_any: list[Literal["wishlist", "appointment", "sizes"]] = Field(
        default_factory=list, description="the customer shows at least one of these"
    )
    appointment_window: bool = Field(
        default=False, description="only within the visible appointment's window"
    )
    window_before_min: Annotated[int, Field(ge=0)] = 30
    target: Literal["assigned_associate", "zone", "store", "manager"] = "assigned_associate"
    cooldown_s: Annotated[float, Field(ge=0)] | None = None
    during_quiet_hours: bool = False
    title: Annotated[str, Field(min_length=1, max_length=200)]
    body: list[str] = Field(
        default_factory=list, description="parts; one with an empty value is left out"
    )

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return _check_template(value)

    @field_validator("body")
    @classmethod
    def _body(cls, value: list[str]) -> list[str]:
        return [_check_template(v) for v in value]


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    timezone: str = "UTC"
    zones: dict[str, str] = Field(default_factory=dict, description="zone id → zone kind")
    quiet_hours: list[QuietHours] = Field(default_factory=list)
    default_cooldown_s: Annotated[float, Field(ge=0)] = 0
    rules: list[Rule]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @cached_property
    def ordered(self) -> list[Rule]:
        return sorted(self.rules, key=lambda r: PRIORITY_ORDER[r.priority])

    def quiet(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone))
        return any(q.covers(local) for q in self.quiet_hours)

    def cooldown(self, rule: Rule) -> float:
        return self.default_cooldown_s if rule.cooldown_s is None else rule.cooldown_s

    def matching(
        self,
        trigger: Trigger,
        profile: CustomerProfile,
        visible: dict[str, object],
        zone: str | None,
        at: datetime,
    ) -> list[Rule]:
        """The first matching rule per alert kind, in priority order."""
        chosen: dict[AlertKind, Rule] = {}
        for rule in self.ordered:
            if rule.alert in chosen or rule.when is not trigger:
                continue
            if rule.tiers and profile.tier not in rule.tiers:
                continue
            if (rule.zones or rule.zone_kinds) and not (
                zone is not None and (zone in rule.zones or self.zones.get(zone) in rule.zone_kinds)
            ):
                continue
            if rule.requires_any and not any(visible.get(f) for f in rule.requires_any):
                continue
            if rule.appointment_window and not _in_window(profile, visible, at, rule):
                continue
            chosen[rule.alert] = rule
        return list(chosen.values())


def _in_window(
    profile: CustomerProfile, visible: dict[str, object], at: datetime, rule: Rule
) -> bool:
    appt = profile.appointment
    if appt is None or "appointment" not in visible:
        return False
    start = appt.at - timedelta(minutes=rule.window_before_min)
    return start <= at <= appt.at + timedelta(minutes=appt.duration_min)


def render(rule: Rule, visible: dict[str, object], zone: str | None) -> tuple[str, str]:
    """(title, body) from the visible fields only."""
    values = _values(visible, zone)
    title = rule.title.format_map(values)
    parts = []
    for part in rule.body:
        names = [n for _, n, _, _ in string.Formatter().parse(part) if n]
        if all(values[n] for n in names):
            parts.append(part.format_map(values))
    return title, "; ".join(parts)


def _values(visible: dict[str, object], zone: str | None) -> dict[str, str]:
    def text(name: str) -> str:
        value: Any = visible.get(name)
        if not value:
            return ""
        if isinstance(value, dict) and name == "sizes":
            return ", ".join(f"{k} {v}" for k, v in value.items())
        if isinstance(value, dict) and name == "appointment":
            note = f" ({value['note']})" if value.get("note") else ""
            return f"at {str(value['at'])[11:16]} UTC{note}"
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return str(value)

    values = {n: text(n) for n in PLACEHOLDERS - {"who", "zone"}}
    values["who"] = values["name"] or values["initials"] or "A customer who asked to be greeted"
    values["zone"] = zone or "the store"
    return values


def target_for(rule: Rule, profile: CustomerProfile) -> AlertTarget:
    if rule.target == "assigned_associate":
        return AlertTarget(associate_id=profile.assigned_associate)
    if rule.target == "manager":
        return AlertTarget(role="manager")
    return AlertTarget()


def load_rules(path: Path) -> RuleSet:
    """Parse and check one rules file; RulesError names the file and the bad field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(str(path), str(exc)) from exc
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        msgs = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise RulesError(str(path), msgs) from exc


class RuleBook:
    """Rules per store: ``{dir}/{store}.yaml``, else ``{dir}/chain.yaml``, else the default."""

    def __init__(self, rules_dir: Path | None) -> None:
        self.rules_dir = rules_dir
        self._cache: dict[str, RuleSet] = {}
        self._default: RuleSet | None = None

    def check_all(self) -> int:
        """Load every file now (fail fast at start); returns how many there are."""
        files = sorted(self.rules_dir.glob("*.yaml")) if self.rules_dir else []
        for f in files:
            load_rules(f)
        return len(files)

    def for_store(self, store_id: str) -> RuleSet:
        hit = self._cache.get(store_id)
        if hit is None:
            hit = self._load(store_id)
            self._cache[store_id] = hit
        return hit

    def _load(self, store_id: str) -> RuleSet:
        if self.rules_dir is not None:
            for name in (f"{store_id}.yaml", "chain.yaml"):
                path = self.rules_dir / name
                if path.is_file():
                    return load_rules(path)
        if self._default is None:
            self._default = load_rules(DEFAULT_RULES)
        return self._default
