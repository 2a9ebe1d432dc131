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
alerts without consent (must be 0), duplicates per visit, latency door → alert.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
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
from simulators.exceptions import ScoreInputError

DEFAULT_REVISIT_GAP_S = 4 * 3600.0
MATCH_BEFORE_S = 30.0  # an alert may come from a sighting just before the door truth
MATCH_AFTER_S = 120.0  # ... or from the edge's exit timeout just after the leave truth
TARGETS = {
    "recall": (">=", 0.99),
    "precision": (">=", 0.99),
    "alerts_without_consent": ("==", 0),
    "max_alerts_per_visit": ("<=", 1),
    "latency_p50_s": ("<=", 3.0),
    "latency_p95_s": ("<=", 6.0),
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
    )


def _check_t(data: dict[str, Any], lineno: int, last_t: float) -> float:
    t = data.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or t < 0:
        raise TraceLineError(lineno, BAD_FIELDS, f"t: a number >= 0 is needed, not {t!r}")
    if t < last_t:
        raise TraceLineError(lineno, T_BACKWARDS, f"t={t} is before {last_t}")
    return float(t)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in err['loc']) or '(line)'}: {err['msg']}"


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
class Score:
    figures: dict[str, Any]
    missed: list[Visit]
    false_alerts: list[dict[str, Any]]
    visits: list[Visit]

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


def score(
    truth: Truth,
    alerts: Iterable[Alert],
    event_times: dict[str, float] | None = None,
    rejected: int = 0,
) -> Score:
    """Match arrival alerts to visits and compute the figures (see module docstring)."""
    by_customer: dict[str, list[Visit]] = defaultdict(list)
    for v in truth.visits:
        by_customer[v.customer_id].append(v)
    store = truth.header.store_id
    alerts = [a for a in alerts if a.store_id == store]  # the file may hold other stores'
    arrival = [a for a in alerts if a.kind == AlertKind.ARRIVAL]
    other: dict[str, int] = defaultdict(int)
    for a in alerts:
        if a.kind != AlertKind.ARRIVAL:
            other[a.kind.value] += 1
    basis = "event_time" if event_times else "created_at"
    timed: list[tuple[Alert, float | None]] = []
    for a in arrival:
        t: float | None = None
        if event_times:
            causes = [event_times[str(c)] for c in a.caused_by if str(c) in event_times]
            if causes:
                t = max(causes) - truth.start
        if t is None:
            rel = a.created_at.timestamp() - truth.start
            t = rel if -MATCH_BEFORE_S <= rel <= truth.end_t + 3600 else None
        timed.append((a, t))
    if arrival and all(t is None for _, t in timed):
        basis = "order"
    without_consent = 0
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
        revoked_before = cid in truth.revoke_at and t is not None and truth.revoke_at[cid] <= t
        no_consent = (
            cid in truth.no_consent or revoked_before or (match is not None and not match.consent)
        )
        if no_consent:
            without_consent += 1
        if match is None:
            why = "passed by the door" if cid in truth.pass_by else "no visit at that time"
            false_alerts.append(
                {"customer_id": cid, "t": t, "why": why, "alert_id": str(a.alert_id)}
            )
            continue
        match.alerts.append(t if t is not None else math.nan)
    expected = [v for v in truth.visits if v.expected]
    alerted = [v for v in expected if v.alerts]
    rightly = [v for v in truth.visits if v.alerts and v.consent]
    latencies = [
        min(x for x in v.alerts if not math.isnan(x)) - v.arrive_t
        for v in alerted
        if basis != "order" and any(not math.isnan(x) for x in v.alerts)
    ]
    per_visit = [len(v.alerts) for v in truth.visits if v.alerts]
    figures: dict[str, Any] = {
        "visits": len(truth.visits),
        "expected_visits": len(expected),
        "alerted_expected_visits": len(alerted),
        "recall": round(len(alerted) / len(expected), 4) if expected else None,
        "arrival_alerts": len(arrival),
        "precision": round(len(rightly) / len(arrival), 4) if arrival else None,
        "false_alerts": len(false_alerts),
        "alerts_without_consent": without_consent,
        "visits_with_duplicates": sum(1 for n in per_visit if n > 1),
        "duplicate_alerts": sum(n - 1 for n in per_visit if n > 1),
        "max_alerts_per_visit": max(per_visit, default=0),
        "latency_basis": basis,
        "latency_p50_s": _round(_percentile(latencies, 0.5)),
        "latency_p95_s": _round(_percentile(latencies, 0.95)),
        "latency_max_s": _round(max(latencies) if latencies else None),
        "other_alerts": dict(other),
        "rejected_alert_lines": rejected,
        "skipped_trace_lines": truth.problems.total_skipped,
        "truth_without_customer": truth.unknown_people,
    }
    missed = [v for v in expected if not v.alerts]
    return Score(figures, missed, false_alerts, truth.visits)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
