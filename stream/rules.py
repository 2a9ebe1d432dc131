"""Declarative alert rules: a YAML file per store (``{store}.yaml``) or chain (``chain.yaml``).

A rule says *when* (a visit's ``approach``, its ``arrival``, or entering a zone), *for whom*
(tiers, zones or zone kinds, what the customer has shown: a wishlist, an appointment; whether
a visible booking *expects* them now), and *what* (alert kind, priority, target, a title and
body). An approach is a geofence crossing or a storefront beacon (a zone the file's
``zones`` map gives the kind ``outside``) before any in-store evidence; the arrival follows
with the first in-store signal (:mod:`stream.visits`). Rules are tried in priority order
(then file order); for each alert kind the first matching rule wins, and the alert dedupe
key (customer, store, visit, kind) keeps it to one per visit. Quiet hours (in the file's
time zone) silence every rule not marked ``during_quiet_hours``; ``cooldown_s`` keeps a
customer from being alerted by the same rule again within that much event time.

Visibility by construction: templates see only :meth:`CustomerProfile.visible` (plus the
zone), and conditions on a wishlist or an appointment look only at visible ones, so no
rule can put a field into an alert that the customer did not make visible. The tier may
select a rule (a service level), but reaches the alert only if visible: neither as a
field nor through the rule's priority (:func:`priority_for`).

Example::

    version: 1
    timezone: Europe/Lisbon
    zones: {fitting-1: fitting_room, entrance: entrance, storefront: outside}
    quiet_hours: [{start: "21:00", end: "08:00"}]
    rules:
      - id: expected-approach
        when: approach
        expected: [appointment]
        alert: approach
        priority: high
        title: "{who} is on the way{eta}"
        body: ["appointment {appointment}"]
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

import logging
import os
import string
from collections import Counter
from collections.abc import Callable
from datetime import datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from time import monotonic
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.models import AlertKind, AlertTarget, Priority
from contracts.validation import describe_validation
from stream.exceptions import RulesError
from stream.registry import CustomerProfile

log = logging.getLogger(__name__)

PLACEHOLDERS = frozenset(
    {
        "who", "name", "initials", "tier", "zone", "sizes", "wishlist", "appointment",
        "reservation", "notes", "eta",
    }
)  # fmt: skip
PRIORITY_ORDER = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}
DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")


class Trigger(StrEnum):
    APPROACH = "approach"
    ARRIVAL = "arrival"
    ZONE_ENTER = "zone_enter"


Booking = Literal["appointment", "reservation"]
"""What can make a customer *expected* (``Rule.expected``): each names a visible field of
the profile with a window (stream.bookings puts the customer's bookings there)."""


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
    when: Trigger = Field(
        description="approach | arrival | zone_enter (not 'on': YAML 1.1 reads it as true)"
    )
    alert: AlertKind
    priority: Priority = Priority.NORMAL
    tiers: list[str] = Field(default_factory=list, description="empty = any tier")
    zones: list[str] = Field(default_factory=list, description="zone ids (zone_enter)")
    zone_kinds: list[str] = Field(default_factory=list, description="zone kinds (zone_enter)")
    requires_any: list[Literal["wishlist", "appointment", "reservation", "sizes"]] = Field(
        default_factory=list, description="the customer shows at least one of these"
    )
    appointment_window: bool = Field(
        default=False, description="only within the visible appointment's window"
    )
    expected: list[Booking] = Field(
        default_factory=list,
        description="only while one of these visible bookings expects the customer (its window)",
    )
    window_before_min: Annotated[int, Field(ge=0)] = Field(
        default=30, description="a booking's window opens this many minutes before it starts"
    )
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

    def may_fire(self, trigger: Trigger, zone: str | None) -> bool:
        """Whether any rule of this set is for ``trigger`` in ``zone`` (before what depends on
        the customer): the processor reads a customer's profile and bookings only then."""
        return any(rule.when is trigger and self._in_zone(rule, zone) for rule in self.ordered)

    def kinds_for(self, trigger: Trigger, zone: str | None) -> set[AlertKind]:
        """The kinds of alert the rules :meth:`may_fire` for ``trigger`` in ``zone`` build."""
        return {r.alert for r in self.ordered if r.when is trigger and self._in_zone(r, zone)}

    def _in_zone(self, rule: Rule, zone: str | None) -> bool:
        if not (rule.zones or rule.zone_kinds):
            return True
        return zone is not None and (zone in rule.zones or self.zones.get(zone) in rule.zone_kinds)

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
            if not self._in_zone(rule, zone):
                continue
            if rule.requires_any and not any(visible.get(f) for f in rule.requires_any):
                continue
            if rule.appointment_window and not _in_window(profile, visible, at, rule):
                continue
            if rule.expected and not any(
                BOOKINGS[b](profile, visible, at, rule) for b in rule.expected
            ):
                continue
            chosen[rule.alert] = rule
        return list(chosen.values())


def _in_window(
    profile: CustomerProfile, visible: dict[str, object], at: datetime, rule: Rule
) -> bool:
    appt = profile.appointment
    if appt is None or "appointment" not in visible:
        return False
    return _opens(appt.at, appt.at + timedelta(minutes=appt.duration_min), at, rule)


def _reservation_window(
    profile: CustomerProfile, visible: dict[str, object], at: datetime, rule: Rule
) -> bool:
    held = profile.reservation
    if held is None or "reservation" not in visible:
        return False
    return _opens(held.start, held.end, at, rule)


def _opens(start: datetime, end: datetime, at: datetime, rule: Rule) -> bool:
    """A booking's window holds ``at``: it opens ``rule.window_before_min`` before start."""
    return start - timedelta(minutes=rule.window_before_min) <= at <= end


BOOKINGS: dict[str, Callable[[CustomerProfile, dict[str, object], datetime, Rule], bool]] = {
    "appointment": _in_window,
    "reservation": _reservation_window,
}
"""Booking kind → whether a visible booking of that kind expects the customer at a moment."""


WALKING_M_PER_MIN = 78.0  # 1.3 m/s: "on the way (~N min)" from how far she is


def eta_text(distance_m: float | None) -> str:
    """`` (~N min)`` for someone ``distance_m`` from the store on foot, or nothing."""
    if distance_m is None:
        return ""
    return f" (~{max(1, round(distance_m / WALKING_M_PER_MIN))} min)"


def render(
    rule: Rule, visible: dict[str, object], zone: str | None, eta: str = ""
) -> tuple[str, str]:
    """(title, body) from the visible fields only; ``eta``: :func:`eta_text` of the event."""
    values = _values(visible, zone)
    values["eta"] = eta
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
        if isinstance(value, dict) and name == "reservation":
            return ", ".join(str(item) for item in value.get("items", []))
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return str(value)

    values = {n: text(n) for n in PLACEHOLDERS - {"who", "zone", "eta"}}
    values["who"] = values["name"] or values["initials"] or "A customer who asked to be greeted"
    values["zone"] = zone or "the store"
    return values


def priority_for(rule: Rule, visible: dict[str, object]) -> Priority:
    """The rule's priority, unless the rule picked the customer by a tier they did not make
    visible: then a "high" would tell the associate the tier, so it is the default."""
    if rule.tiers and "tier" not in visible:
        return Priority.NORMAL
    return rule.priority


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
        raise RulesError(str(path), describe_validation(exc, "(file)")) from exc


Signature = tuple[int, int, int, int]
"""What tells one version of a rules file from the next: mtime, ctime (ns), size, inode."""


def _signature(st: os.stat_result) -> Signature:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class RuleBook:
    """Rules per store: ``{dir}/{store}.yaml``, else ``{dir}/chain.yaml``, else the default.

    Hot reload: at most once per ``check_every_s`` (on the clock given, monotonic by
    default) a lookup stats the directory's ``*.yaml`` files, and loads each one whose
    signature (mtime, ctime, size, inode) changed since it was last read. A file that does
    not load (bad YAML, a field against the schema) is logged with the file and the field,
    counted in ``counts["rules_reload_errors"]``, and changes nothing: the store keeps the
    last good rules it had (those of its own file, or of ``chain.yaml`` or the default if
    its own file never loaded). A deleted file stops counting: a store whose own file is
    deleted falls back to ``chain.yaml``, and without one to the default rules. If the
    directory cannot be listed, everything stays as it was (an error, counted). Names
    starting with ``.`` are skipped (editors' swap files, a ConfigMap's ``..data``).
    """

    def __init__(
        self,
        rules_dir: Path | None,
        *,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = monotonic,
        counts: Counter[str] | None = None,
    ) -> None:
        self.rules_dir = rules_dir
        self.check_every_s = check_every_s
        self.clock = clock
        self.counts: Counter[str] = Counter() if counts is None else counts
        self._rules: dict[str, RuleSet] = {}  # file name → its last good rules
        self._seen: dict[str, Signature] = {}  # file name → the version last read (good or not)
        self._checked: float | None = None
        self._listing_error: str | None = None
        self._scanned = False
        self._default: RuleSet | None = None

    def check_all(self) -> int:
        """Load every file now (fail fast at start); returns how many there are.

        Raises :class:`RulesError` on the first file that does not load.
        """
        self._checked = self.clock()
        return self._scan(strict=True)

    def reload(self) -> int:
        """Re-read the files that changed now (not waiting for the next check); how many."""
        self._checked = self.clock()
        return self._scan(strict=False)

    def for_store(self, store_id: str) -> RuleSet:
        if self.rules_dir is not None:
            now = self.clock()
            if self._checked is None or now - self._checked >= self.check_every_s:
                self._checked = now
                self._scan(strict=False)
            hit = self._rules.get(f"{store_id}.yaml") or self._rules.get("chain.yaml")
            if hit is not None:
                return hit
        if self._default is None:
            self._default = load_rules(DEFAULT_RULES)
        return self._default

    def _scan(self, *, strict: bool) -> int:
        """Bring the loaded rules up to the directory's files; returns how many files."""
        if self.rules_dir is None:
            return 0
        try:
            found = {
                entry.name: _signature(entry.stat())
                for entry in os.scandir(self.rules_dir)
                if entry.name.endswith(".yaml")
                and not entry.name.startswith(".")  # editors' and ConfigMaps' own files
                and entry.is_file()
            }
        except OSError as exc:
            if strict:
                raise RulesError(str(self.rules_dir), f"cannot list the directory: {exc}") from exc
            if str(exc) != self._listing_error:  # once per distinct failure, not every second
                self._listing_error = str(exc)
                self.counts["rules_reload_errors"] += 1
                log.error("rules directory %s: %s; keeping the rules loaded", self.rules_dir, exc)
            return len(self._seen)
        self._listing_error = None
        scanned, self._scanned = self._scanned, True
        for name in sorted(self._seen.keys() - found.keys()):
            del self._seen[name]
            if self._rules.pop(name, None) is not None:
                log.warning(
                    "rules file %s deleted: %s",
                    self.rules_dir / name,
                    "stores fall back to the default rules"
                    if name == "chain.yaml"
                    else f"store {name.removesuffix('.yaml')} falls back to chain.yaml or the "
                    "default rules",
                )
        for name, sig in sorted(found.items()):
            before = self._seen.get(name)
            if before == sig:
                continue
            self._seen[name] = sig
            path = self.rules_dir / name
            try:
                rules = load_rules(path)
            except RulesError as exc:
                if strict:
                    del self._seen[name]
                    raise
                self.counts["rules_reload_errors"] += 1
                log.error(
                    "%s; %s",
                    exc,
                    "keeping its last good rules" if name in self._rules else "not used",
                )
                continue
            if before is not None or scanned:  # not the first reading of the directory
                self.counts["rules_reloads"] += 1
                log.info("rules file %s loaded: %d rule(s)", path, len(rules.rules))
            self._rules[name] = rules
        return len(found)
