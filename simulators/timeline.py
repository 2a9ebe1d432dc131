"""A PNG timeline of chosen visits: RSSI per gateway, true zones, zone decisions, the alert.

Needs matplotlib (``pip install 'proxima[plot]'``). A visit's advertisements are found by
the EIDs its customer's identity key gives over the visit (keys come from the sidecar
``TRACE.customers.json`` that ``proxima simulate --out`` writes); the edge's zone decisions
come from a captured events file, matched on the same EIDs, each labelled with why when a
store's coordinator decided it (rule, confidence, the gateways' readings); the same
decisions are written in words beside the PNG (``TIMELINE.txt``).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from beacons.eid import compute_eid
from contracts.trace import AdvRecord
from simulators.exceptions import SimulatorError
from simulators.score import Score, Visit

PAD_S = 90.0


def sidecar_path(trace: Path) -> Path:
    return trace.with_name(trace.name + ".customers.json")


def load_keys(trace: Path) -> dict[str, tuple[bytes, int]]:
    """customer_id → (identity key, K) from the trace's sidecar, if there is one."""
    path = sidecar_path(trace)
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        c["customer_id"]: (bytes.fromhex(c["identity_key"]), int(c["rotation_exponent"]))
        for c in data.get("customers", [])
    }


def choose(result: Score, wanted: list[str], n: int = 4) -> list[Visit]:
    """The visits named (``customer_id`` or ``customer_id@arrive_t``), else missed then slowest."""
    if wanted:
        out = []
        for w in wanted:
            out += [v for v in result.visits if w in (v.customer_id, v.key)]
        return out[: max(n, len(wanted))]
    alerted = sorted(
        (v for v in result.visits if v.expected and v.alerts),
        key=lambda v: -(min(v.alerts) - v.arrive_t),
    )
    picks = result.missed[: n // 2] + alerted[: n - min(len(result.missed), n // 2)]
    return picks[:n]


def render(
    trace: Path,
    visits: list[Visit],
    out: Path,
    start: float,
    events: Path | None = None,
) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SimulatorError("the timeline needs matplotlib: pip install 'proxima[plot]'") from exc
    if not visits:
        raise SimulatorError("no visits to draw")
    keys = load_keys(trace)
    # EID payload hex → visit index, for every rotation window each visit spans.
    marks: dict[str, int] = {}
    for i, v in enumerate(visits):
        if v.customer_id not in keys:
            continue
        key, k = keys[v.customer_id]
        t = v.arrive_t - PAD_S
        while t <= v.leave_t + PAD_S + (1 << k):
            marks[compute_eid(key, k, int(start + t)).hex()] = i
            t += 1 << k
    rssi: dict[int, dict[str, list[tuple[float, int]]]] = defaultdict(lambda: defaultdict(list))
    with trace.open("rb") as raw:
        raw.readline()
        for data_line in raw:
            if b'"adv"' not in data_line or b"feaa" not in data_line:
                continue
            try:
                rec = AdvRecord.model_validate_json(data_line)
            except ValidationError:
                continue  # load_truth has reported the malformed lines already
            for data in rec.service_data.values():
                if data.startswith("30") and len(data) >= 20 and data[4:20] in marks:
                    i = marks[data[4:20]]
                    v = visits[i]
                    if v.arrive_t - PAD_S <= rec.t <= v.leave_t + PAD_S:
                        rssi[i][rec.gateway_id].append((rec.t, rec.rssi))
    decisions: dict[int, list[tuple[float, str]]] = defaultdict(list)
    if events is not None and events.exists():
        with events.open(encoding="utf-8") as fh:
            for line in fh:
                batch: Any = json.loads(line)
                for ev in batch if isinstance(batch, list) else [batch]:
                    sid = (ev.get("subject") or {}).get("id")
                    if sid in marks and ev.get("kind") != "sighting":
                        ts = datetime.fromisoformat(ev["observed_at"].replace("Z", "+00:00"))
                        decisions[marks[sid]].append((ts.timestamp() - start, describe(ev)))
    fig, axes = plt.subplots(len(visits), 1, figsize=(12, 3.2 * len(visits)), squeeze=False)
    for i, v in enumerate(visits):
        ax = axes[i][0]
        for gw, pts in sorted(rssi[i].items()):
            ax.plot([p[0] - v.arrive_t for p in pts], [p[1] for p in pts], ".", ms=3, label=gw)
        zones = [*v.zones, (v.leave_t, "out")]
        for (t0, zone), (t1, _) in itertools.pairwise(zones):
            ax.axvspan(
                t0 - v.arrive_t, t1 - v.arrive_t, alpha=0.08, color=f"C{sum(map(ord, zone)) % 10}"
            )
            ax.text(t0 - v.arrive_t, -45, zone, fontsize=7, rotation=90, va="top")
        for t, label in decisions[i]:
            ax.axvline(t - v.arrive_t, ls=":", lw=0.8, color="grey")
            ax.text(t - v.arrive_t, -100, label, fontsize=5, rotation=90, va="bottom")
        for t in v.alerts:
            ax.axvline(t - v.arrive_t, color="red", lw=1.5, label="alert")
        ax.axvline(0, color="black", lw=1, label="door crossing")
        ax.set_ylim(-105, -40)
        ax.set_xlim(-PAD_S, v.leave_t - v.arrive_t + PAD_S)
        state = "ALERTED" if v.alerts else ("MISSED" if v.expected else "no consent")
        ax.set_title(f"{v.customer_id}, arrived t={v.arrive_t:.0f}s: {state}", fontsize=9)
        ax.set_ylabel("RSSI dBm")
        ax.legend(fontsize=6, loc="upper right", ncol=3)
    axes[-1][0].set_xlabel("seconds since door crossing")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    # The same decisions in words, beside the picture: what each one was and why.
    lines = []
    for i, v in enumerate(visits):
        lines.append(f"{v.customer_id}, door crossing at t={v.arrive_t:.1f}s")
        for t, label in sorted(decisions[i]):
            lines.append(f"  {t - v.arrive_t:+8.1f}s  {label}")
        lines += [f"  {t - v.arrive_t:+8.1f}s  arrival alert" for t in v.alerts]
    decisions_path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def decisions_path(png: Path) -> Path:
    """Where :func:`render` writes the timeline's decisions as text."""
    return png.with_suffix(".txt")


def describe(event: dict[str, Any]) -> str:
    """One zone decision in words: kind, zone, and (from a store coordinator) why.

    ``zone_enter floor · door_then_interior 0.82 · gw-door -70, gw-floor -82 dBm``
    """
    text = f"{event.get('kind')} {event.get('zone_id') or '?'}"
    evidence = event.get("evidence")
    if isinstance(evidence, dict):
        confidence = event.get("confidence")
        conf = f" {confidence:.2f}" if isinstance(confidence, int | float) else ""
        readings = ", ".join(
            f"{r.get('gateway_id')} {r.get('rssi'):.0f}"
            for r in evidence.get("readings") or []
            if isinstance(r, dict) and isinstance(r.get("rssi"), int | float)
        )
        text += f" · {evidence.get('rule')}{conf}" + (f" · {readings} dBm" if readings else "")
    elif event.get("gateway_id"):
        text += f" ({event['gateway_id']})"
    return text
