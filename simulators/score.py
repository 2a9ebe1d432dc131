"""Scoring alerts against a trace's ground truth.

A **visit** is a customer's ``arrive`` … ``leave`` in the trace's ``truth`` lines; visits of
one customer less than ``revisit_gap_s`` apart are one visit, as the stream sessionizes
them (a customer who pops out and comes back within the hour is greeted once). A visit
**expects** an arrival alert when the customer consented to ``arrival_alerts`` at the
door crossing (and did not revoke within ``revoke_grace_s`` of it); a visit of a
customer without consent at that moment **forbids** one.

A trace from another tool scores too: a malformed line is skipped, reported once and
counted (``skipped_trace_lines``), unknown kinds and fields are ignored, and a ``truth``
line with ``"customer_id": null`` is a person nobody can name: no visit to alert about,
so it counts for neither recall nor precision, only in ``truth_without_customer``.

Consent comes from the header's ``customers`` list (``consent``, ``revoke_at``), else from
``consent`` on the truth lines, else every customer counts as consenting; ``revoke``
truth lines and ``consent_revoke`` app lines add revocations.

An alert's time on the trace clock is its causing events' ``observed_at`` when an events
file (the gateways' MQTT batches, as ``proxima alerts record --events`` captures them) says
when they happened; otherwise its ``created_at``, when that falls inside the trace; otherwise
alerts are matched to visits in order and no latency is reported.

Figures: recall (expected visits alerted / expected visits), precision (distinct visits
rightly alerted / arrival alerts: duplicates and false alerts both count against it),
alerts without consent (arrival and approach alerts; must be 0), duplicates per visit,
latency door → alert; overall and, under ``by_class``, per **device class**: the class a
visit's ``arrive`` truth line names in ``device_class`` (``android_app``, ``iphone_app``,
``vip_tag``, ``no_app``, ``staff``, ``unknown``), else one the customer's other truth lines
name, else ``unknown`` (older and foreign traces score whole, under ``unknown``). An alert
that matches no visit counts in its customer's class. A ``no_app`` customer carries nothing
a store can hear: their visits are counted but expect no alert.

**Approach lead time**: how long before the door crossing a visit's first ``approach``
alert came (negative: after it), for customers who share their location: those with an
``enter_geofence`` truth line (a trace without any such line does not say, and then every
customer counts). An approach alert belongs to the visit it precedes by up to
``APPROACH_BEFORE_S`` or falls in; one that precedes no visit is counted, not false (an
approach that never came in).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.exceptions import ContractError
from contracts.models import Alert, AlertKind, parse_alert
from contracts.trace import (
    BAD_FIELDS,
    KNOWN_KINDS,
    T_BACKWARDS,
    TraceHeader,
    TraceLineError,
    TraceProblems,
    TruthRecord,
    load_line,
    parse_header,
)
from contracts.validation import describe_validation
from simulators.exceptions import ScoreInputError

DEFAULT_REVISIT_GAP_S = 4 * 3600.0
MATCH_BEFORE_S = 30.0  # an alert may come from a sighting just before the door truth
MATCH_AFTER_S = 120.0  # ... or from the edge's exit timeout just after the leave truth
APPROACH_BEFORE_S = 900.0  # an approach alert may precede the door crossing by this much
UNKNOWN_CLASS = "unknown"
UNDETECTABLE = frozenset({"no_app"})  # classes whose visits expect no alert
TARGETS = {
    "recall": (">=", 0.99),
    "precision": (">=", 0.99),
    "alerts_without_consent": ("==", 0),
    "max_alerts_per_visit": ("<=", 1),
    "latency_p50_s": ("<=", 3.0),
    "latency_p95_s": ("<=", 6.0),
    "approach_lead_p50_s": (">=", 60.0),
}


@dataclass(slots=True)
class Visit:
    customer_id: str
    arrive_t: float
    leave_t: float
    consent: bool
    expected: bool
    behaviour: str | None
    alerts: list[float] = field(default_factory=list)
    zones: list[tuple[float, str]] = field(default_factory=list)
    device_class: str = UNKNOWN_CLASS
    shares_location: bool = False
    approaches: list[float] = field(default_factory=list)
    """Trace times of the approach alerts that belong to this visit."""

    @property
    def key(self) -> str:
        return f"{self.customer_id}@{self.arrive_t:.0f}"


@dataclass(slots=True)
class Truth:
    header: TraceHeader
    start: float
    end_t: float
    visits: list[Visit]
    revoke_at: dict[str, float]
    no_consent: set[str]
    pass_by: dict[str, list[float]]
    problems: TraceProblems = field(default_factory=TraceProblems)
    unknown_people: int = 0  # truth lines with "customer_id": null
    classes: dict[str, str] = field(default_factory=dict)
    """customer → device class, from any of their truth lines (for alerts with no visit)."""


def _customers(header_raw: dict[str, Any]) -> tuple[dict[str, bool], dict[str, float]]:
    consents: dict[str, bool] = {}
    revokes: dict[str, float] = {}
    for c in header_raw.get("customers") or []:
        if not isinstance(c, dict) or "customer_id" not in c:
            continue
        cid = str(c["customer_id"])
        consents[cid] = "arrival_alerts" in (c.get("consent") or [])
        if c.get("revoke_at") is not None:
            revokes[cid] = float(c["revoke_at"])
    return consents, revokes


def load_truth(
    path: Path,
    revisit_gap_s: float = DEFAULT_REVISIT_GAP_S,
    revoke_grace_s: float = 60.0,
    tail_s: float = 60.0,
) -> Truth:
    """Visits and consent from a trace file (validated line by line).

    A visit whose door crossing is less than ``tail_s`` before the trace ends expects no
    alert (the trace stops before anyone could be detected); an alert for it still counts.
    """
    src = str(path)
    try:
        fh = path.open("rb")  # bytes: a line that is not UTF-8 costs that line only
    except OSError as exc:
        raise ScoreInputError(src, None, f"cannot open: {exc.strerror}") from exc
    problems = TraceProblems(src)
    unknown_people = 0
    with fh:
        first = fh.readline()
        try:
            header = parse_header(first)
            header_raw = json.loads(first)
        except (ContractError, ValueError) as exc:
            raise ScoreInputError(src, 1, str(exc)) from exc
        consents, revokes = _customers(header_raw)
        truth: list[tuple[TruthRecord, dict[str, Any]]] = []
        last_t = 0.0
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                data = load_line(line, lineno)
                if data.get("kind") not in KNOWN_KINDS:
                    problems.ignore_kind(lineno, data.get("kind"))
                    continue
                last_t = _check_t(data, lineno, last_t)
                rec = TruthRecord.model_validate(data) if data["kind"] == "truth" else None
            except TraceLineError as exc:
                problems.skip(lineno, exc.reason, exc.detail)
                continue
            except ValidationError as exc:  # a truth line's fields
                problems.skip(lineno, BAD_FIELDS, f"truth: {_first_error(exc)}")
                continue
            if data["kind"] == "app" and data.get("event") == "consent_revoke":
                cid = data.get("customer_id")
                if isinstance(cid, str):
                    revokes.setdefault(cid, last_t)
                continue
            if rec is None:
                continue
            if rec.customer_id is None:
                unknown_people += 1
                continue
            truth.append((rec, data))
    end_t = float(header_raw.get("duration_s") or last_t)
    no_consent: set[str] = {c for c, ok in consents.items() if not ok}
    classes: dict[str, str] = {}
    sharing: set[str] = set()
    for rec, data in truth:
        assert rec.customer_id is not None
        cls = data.get("device_class")
        if isinstance(cls, str) and cls:
            classes.setdefault(rec.customer_id, cls)
        if rec.event == "enter_geofence":
            sharing.add(rec.customer_id)
    open_visits: dict[str, Visit] = {}
    visits: list[Visit] = []
    pass_by: dict[str, list[float]] = defaultdict(list)
    for rec, data in truth:
        cid = rec.customer_id
        assert cid is not None  # the loop above set those lines aside
        if rec.event == "revoke":
            revokes.setdefault(cid, rec.t)
            continue
        if rec.event == "pass_by":
            pass_by[cid].append(rec.t)
            continue
        if rec.event == "arrive":
            if cid in consents:
                consent = consents[cid] and not (cid in revokes and revokes[cid] <= rec.t)
            elif "consent" in data:
                consent = bool(data["consent"])
                if not consent:
                    no_consent.add(cid)
            else:
                consent = not (cid in revokes and revokes[cid] <= rec.t)
            if data.get("role") in ("unknown", "staff"):
                continue  # not enrolled: nobody to alert about
            expected = consent and not (cid in revokes and revokes[cid] <= rec.t + revoke_grace_s)
            visit = Visit(cid, rec.t, math.inf, consent, expected, data.get("behaviour"))
            cls = data.get("device_class")
            visit.device_class = (
                cls if isinstance(cls, str) and cls else classes.get(cid, UNKNOWN_CLASS)
            )
            visit.shares_location = cid in sharing or not sharing
            if visit.device_class in UNDETECTABLE:
                visit.expected = False  # nothing on them a store can hear
            visit.zones.append((rec.t, rec.zone_id or "entrance"))
            open_visits[cid] = visit
            visits.append(visit)
        elif rec.event == "enter_zone" and cid in open_visits:
            open_visits[cid].zones.append((rec.t, rec.zone_id or "?"))
        elif rec.event == "leave" and cid in open_visits:
            open_visits.pop(cid).leave_t = rec.t
    for v in visits:
        if v.leave_t == math.inf:
            v.leave_t = end_t
        if v.arrive_t > end_t - tail_s:
            v.expected = False
    merged: list[Visit] = []
    last: dict[str, Visit] = {}
    for v in visits:
        prev = last.get(v.customer_id)
        if prev is not None and v.arrive_t - prev.leave_t < revisit_gap_s:
            prev.leave_t = max(prev.leave_t, v.leave_t)
            prev.zones.extend(v.zones)
            continue
        merged.append(v)
        last[v.customer_id] = v
    return Truth(
        header,
        header.start.timestamp(),
        end_t,
        merged,
        revokes,
        no_consent,
        dict(pass_by),
        problems,
        unknown_people,
        classes,
    )


def _check_t(data: dict[str, Any], lineno: int, last_t: float) -> float:
    t = data.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or t < 0:
        raise TraceLineError(lineno, BAD_FIELDS, f"t: a number >= 0 is needed, not {t!r}")
    if t < last_t:
        raise TraceLineError(lineno, T_BACKWARDS, f"t={t} is before {last_t}")
    return float(t)


def _first_error(exc: ValidationError) -> str:
    return describe_validation(exc, "(line)", first=True)


@dataclass(slots=True)
class AlertsFile:
    alerts: list[Alert]
    rejected: list[str]


def load_alerts(path: Path) -> AlertsFile:
    """Alert payloads, one JSON object a line; a bad line is reported, never fatal."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScoreInputError(str(path), None, f"cannot open: {exc.strerror}") from exc
    alerts: list[Alert] = []
    rejected: list[str] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            alert = parse_alert(line)
        except ContractError as exc:
            rejected.append(f"{path} line {lineno}: {exc}")
            continue
        # The same alert delivered twice (QoS 1, or two topics) is one alert.
        if str(alert.alert_id) in seen:
            continue
        seen.add(str(alert.alert_id))
        alerts.append(alert)
    return AlertsFile(alerts, rejected)


def load_event_times(path: Path) -> dict[str, float]:
    """event_id → observed_at (Unix s) from captured gateway batches (JSON lines of lists)."""
    out: dict[str, float] = {}
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise ScoreInputError(str(path), None, f"cannot open: {exc.strerror}") from exc
    with fh:
        for line in fh:
            try:
                batch = json.loads(line)
            except json.JSONDecodeError:
                continue
            for ev in batch if isinstance(batch, list) else [batch]:
                if isinstance(ev, dict) and "event_id" in ev and "observed_at" in ev:
                    try:
                        ts = datetime.fromisoformat(str(ev["observed_at"]).replace("Z", "+00:00"))
                    except ValueError:
                        continue
                    out[str(ev["event_id"])] = ts.timestamp()
    return out


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass(slots=True)
class Tally:
    """The counts behind the figures, of one device class or of all; tallies of several
    traces (seeds) add up with :meth:`add` before :meth:`figures` makes ratios of them."""

    visits: int = 0
    expected: int = 0
    alerted: int = 0  # expected visits with an arrival alert
    arrival_alerts: int = 0
    rightly: int = 0  # distinct consenting visits with an arrival alert
    false_alerts: int = 0
    without_consent: int = 0
    alerted_visits: int = 0  # visits with any arrival alert
    dup_visits: int = 0
    dup_alerts: int = 0
    max_per_visit: int = 0
    latencies: list[float] = field(default_factory=list)
    approach_alerts: int = 0
    approach_without_visit: int = 0
    sharing_visits: int = 0  # expected visits of customers who share their location
    approached: int = 0  # ... with an approach alert
    leads: list[float] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in (f.name for f in fields(self)):
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "max_per_visit":
                setattr(self, name, max(mine, theirs))
            elif isinstance(mine, list):
                mine.extend(theirs)
            else:
                setattr(self, name, mine + theirs)

    def figures(self) -> dict[str, Any]:
        return {
            "visits": self.visits,
            "expected_visits": self.expected,
            "alerted_expected_visits": self.alerted,
            "recall": round(self.alerted / self.expected, 4) if self.expected else None,
            "arrival_alerts": self.arrival_alerts,
            "precision": round(self.rightly / self.arrival_alerts, 4)
            if self.arrival_alerts
            else None,
            "false_alerts": self.false_alerts,
            "alerts_without_consent": self.without_consent,
            "visits_with_duplicates": self.dup_visits,
            "duplicate_alerts": self.dup_alerts,
            "duplicates_per_visit": round(self.dup_alerts / self.alerted_visits, 4)
            if self.alerted_visits
            else None,
            "max_alerts_per_visit": self.max_per_visit,
            "latency_p50_s": _round(_percentile(self.latencies, 0.5)),
            "latency_p95_s": _round(_percentile(self.latencies, 0.95)),
            "latency_max_s": _round(max(self.latencies) if self.latencies else None),
            "approach_alerts": self.approach_alerts,
            "approach_alerts_without_visit": self.approach_without_visit,
            "location_sharing_visits": self.sharing_visits,
            "approached_visits": self.approached,
            "approach_lead_p50_s": _round(_percentile(self.leads, 0.5)),
            "approach_lead_p10_s": _round(_percentile(self.leads, 0.1)),
        }


@dataclass(slots=True)
class Score:
    figures: dict[str, Any]
    missed: list[Visit]
    false_alerts: list[dict[str, Any]]
    visits: list[Visit]
    tallies: dict[str, Tally] = field(default_factory=dict)
    """Per device class (the figures' ``by_class`` before the ratios)."""

    def failures(self) -> list[str]:
        out = []
        for name, (op, target) in TARGETS.items():
            value = self.figures.get(name)
            if value is None:
                continue
            ok = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
            if not ok:
                out.append(f"{name} = {value} (target {op} {target})")
        return out


def by_class(tallies: dict[str, Tally]) -> dict[str, dict[str, Any]]:
    """Each device class's figures, classes in name order."""
    return {cls: tallies[cls].figures() for cls in sorted(tallies)}


def score(
    truth: Truth,
    alerts: Iterable[Alert],
    event_times: dict[str, float] | None = None,
    rejected: int = 0,
) -> Score:
    """Match arrival and approach alerts to visits and compute the figures (see the module
    docstring)."""
    by_customer: dict[str, list[Visit]] = defaultdict(list)
    for v in truth.visits:
        by_customer[v.customer_id].append(v)
    store = truth.header.store_id
    alerts = [a for a in alerts if a.store_id == store]  # the file may hold other stores'
    arrival = [a for a in alerts if a.kind == AlertKind.ARRIVAL]
    approach = [a for a in alerts if a.kind == AlertKind.APPROACH]
    other: dict[str, int] = defaultdict(int)
    for a in alerts:
        if a.kind not in (AlertKind.ARRIVAL, AlertKind.APPROACH):
            other[a.kind.value] += 1

    def trace_time(a: Alert, before: float = MATCH_BEFORE_S) -> float | None:
        if event_times:
            causes = [event_times[str(c)] for c in a.caused_by if str(c) in event_times]
            if causes:
                return max(causes) - truth.start
        rel = a.created_at.timestamp() - truth.start
        return rel if -before <= rel <= truth.end_t + 3600 else None

    basis = "event_time" if event_times else "created_at"
    timed = [(a, trace_time(a)) for a in arrival]
    if arrival and all(t is None for _, t in timed):
        basis = "order"
    tallies: dict[str, Tally] = defaultdict(Tally)

    def consent_broken(cid: str, t: float | None, match: Visit | None) -> bool:
        """Sent without consent: never given, revoked before ``t``, or (``match``: an
        arrival) not held at the visit's door crossing."""
        revoked_before = cid in truth.revoke_at and t is not None and truth.revoke_at[cid] <= t
        return (
            cid in truth.no_consent or revoked_before or (match is not None and not match.consent)
        )

    def class_of(cid: str, match: Visit | None) -> str:
        return match.device_class if match else truth.classes.get(cid, UNKNOWN_CLASS)

    false_alerts: list[dict[str, Any]] = []
    order_next: dict[str, int] = defaultdict(int)
    for a, t in sorted(timed, key=lambda p: (p[1] is None, p[1] or 0.0, str(p[0].alert_id))):
        cid = a.customer_id
        visits = by_customer.get(cid, [])
        match: Visit | None = None
        if t is None:
            i = order_next[cid]
            if i < len(visits):
                match = visits[i]
                order_next[cid] = i + 1
        else:
            cands = [
                v for v in visits if v.arrive_t - MATCH_BEFORE_S <= t <= v.leave_t + MATCH_AFTER_S
            ]
            match = max(cands, key=lambda v: v.arrive_t) if cands else None
        tally = tallies[class_of(cid, match)]
        tally.arrival_alerts += 1
        if consent_broken(cid, t, match):
            tally.without_consent += 1
        if match is None:
            why = "passed by the door" if cid in truth.pass_by else "no visit at that time"
            false_alerts.append(
                {"customer_id": cid, "t": t, "why": why, "alert_id": str(a.alert_id)}
            )
            tally.false_alerts += 1
            continue
        match.alerts.append(t if t is not None else math.nan)
    approach_next: dict[str, int] = defaultdict(int)
    for a in sorted(approach, key=lambda a: (a.created_at, str(a.alert_id))):
        cid, t = a.customer_id, trace_time(a, APPROACH_BEFORE_S)
        visits = by_customer.get(cid, [])
        match = None
        if t is None:
            i = approach_next[cid]
            if i < len(visits):
                match = visits[i]
                approach_next[cid] = i + 1
        else:
            cands = [
                v
                for v in visits
                if v.arrive_t - APPROACH_BEFORE_S <= t <= v.leave_t + MATCH_AFTER_S
            ]
            match = min(cands, key=lambda v: v.arrive_t) if cands else None  # the next one in
        tally = tallies[class_of(cid, match)]
        tally.approach_alerts += 1
        # Judged when it was sent: the door crossing may come after a revocation.
        if consent_broken(cid, t, None):
            tally.without_consent += 1
        if match is None:
            tally.approach_without_visit += 1
        else:
            match.approaches.append(t if t is not None else math.nan)
    for v in truth.visits:
        tally = tallies[v.device_class]
        tally.visits += 1
        timely = [x for x in v.alerts if not math.isnan(x)]
        if v.expected:
            tally.expected += 1
            if v.alerts:
                tally.alerted += 1
                if basis != "order" and timely:
                    tally.latencies.append(min(timely) - v.arrive_t)
            if v.shares_location:
                tally.sharing_visits += 1
                if v.approaches:
                    tally.approached += 1
                    leads = [x for x in v.approaches if not math.isnan(x)]
                    if leads:
                        tally.leads.append(v.arrive_t - min(leads))
        if v.alerts:
            tally.alerted_visits += 1
            if v.consent:
                tally.rightly += 1
            if len(v.alerts) > 1:
                tally.dup_visits += 1
                tally.dup_alerts += len(v.alerts) - 1
            tally.max_per_visit = max(tally.max_per_visit, len(v.alerts))
    overall = Tally()
    for tally in tallies.values():
        overall.add(tally)
    figures: dict[str, Any] = {
        **overall.figures(),
        "latency_basis": basis,
        "other_alerts": dict(other),
        "rejected_alert_lines": rejected,
        "skipped_trace_lines": truth.problems.total_skipped,
        "truth_without_customer": truth.unknown_people,
        "by_class": by_class(tallies),
    }
    missed = [v for v in truth.visits if v.expected and not v.alerts]
    return Score(figures, missed, false_alerts, truth.visits, dict(tallies))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def percentile_s(values: list[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` (seconds, interpolated), to the millisecond, as the
    score's figures give theirs; None without values."""
    return _round(_percentile(values, q))
