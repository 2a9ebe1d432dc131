"""The simulators' commands, mounted by ``deploy.cli``.

``proxima simulate`` (layouts and named scenarios), ``proxima replay`` (a trace through
one edge agent per gateway: :func:`simulators.replay.replay_trace`), ``proxima score``,
and ``proxima alerts record`` (capture alerts, and optionally the gateways' events, for
scoring).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from contracts.services import ServiceSettings
from simulators.exceptions import SimulatorError
from transport.cli import err, fail, out, seconds_bar, verbose_logging
from transport.redis import redis_for

if TYPE_CHECKING:
    from simulators.engine import Simulation
    from simulators.scenarios import SimPerson
    from transport.redis import RedisClient


alerts_app = typer.Typer(help="Capture alerts for scoring.", no_args_is_help=True)


# --- simulate -------------------------------------------------------------------------
def simulate(
    scenario: Annotated[
        str | None,
        typer.Option(help="scenario NAME (skeleton, boutique-hour, flagship-day, ...)"),
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(
            help="store layout NAME (boutique, flagship, boutique-pair, ...) or FILE.json;"
            " with --scenario: play the scenario in this store"
        ),
    ] = None,
    hours: Annotated[
        float | None,
        typer.Option(help="hours to simulate from opening (layouts; default 1)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same trace")] = 7,
    out_path: Annotated[Path | None, typer.Option("--out", help="write the trace here")] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="trace start (ISO 8601, UTC); default now (skeleton), 2026-01-05 at opening (layouts)"
        ),
    ] = None,
    enroll: Annotated[
        bool,
        typer.Option(
            help="enroll the scenario's customers and register their app devices (Redis); "
            "with --out also write the devices' keys to TRACE.device-keys.json"
        ),
    ] = False,
    device_classes: Annotated[
        str | None,
        typer.Option(
            help="CLASS=SHARE,... of enrolled customers instead of the layout's (classes: "
            "iphone_app, android_app, vip_tag, no_app), e.g. iphone_app=1"
        ),
    ] = None,
) -> None:
    """Write a simulated trace (and optionally enroll its customers)."""
    from contracts.trace import dump_line
    from simulators.scenarios import scenario as make_scenario

    begin = datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None
    if begin is not None and begin.tzinfo is None:
        raise fail("--start must carry a timezone, e.g. 2026-01-01T10:00:00Z")
    if layout is not None or (scenario is not None and scenario != "skeleton"):
        if layout is not None and scenario in ("skeleton", "radio-survey"):
            raise fail(f"the {scenario} scenario has its own store: --layout does not apply")
        simulate_layout(
            layout=layout,
            scenario=scenario,
            hours=hours,
            seed=seed,
            out_path=out_path,
            start=begin,
            enroll=enroll,
            device_classes=parse_shares(device_classes) if device_classes else None,
        )
        return
    if device_classes:
        raise fail("--device-classes needs a layout or a layout scenario, not the skeleton")
    scenario = scenario or "skeleton"
    begin = begin or datetime.now(UTC)
    try:
        sc = make_scenario(scenario, begin, seed)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if enroll:
        asyncio.run(_enroll_people(sc.enrolled))
        out.print(f"enrolled {len(sc.enrolled)} customers", highlight=False)
    if out_path is not None:
        with out_path.open("w", encoding="utf-8") as fh:
            fh.write(dump_line(sc.header.model_dump(mode="json", exclude_none=True)) + "\n")
            for record in sc.records:
                fh.write(dump_line(record) + "\n")
        out.print(f"wrote {len(sc.records)} lines to {out_path}", highlight=False)


async def _enroll_people(people: Sequence[SimPerson]) -> None:
    from simulators.enroll import enroll_all

    await enroll_all(people)


def simulate_layout(
    *,
    layout: str | None,
    scenario: str | None,
    hours: float | None,
    seed: int,
    out_path: Path | None,
    start: datetime | None,
    enroll: bool,
    progress: bool = True,
    device_classes: dict[str, float] | None = None,
) -> None:
    """``proxima simulate --layout NAME`` or a layout-based ``--scenario``."""
    from pydantic import ValidationError

    from simulators.engine import build, build_scenario
    from simulators.survey import radio_survey

    population = {"device_classes": device_classes} if device_classes else None
    sim: Simulation
    try:
        if scenario == "radio-survey":
            sim = radio_survey(seed, start)
        elif scenario is not None:
            sim = build_scenario(scenario, seed, start, hours, population, layout)
        else:
            assert layout is not None
            sim = build(layout, hours=hours or 1.0, seed=seed, start=start, population=population)
    except SimulatorError as exc:
        raise fail(str(exc)) from exc
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = "".join(f"{p}: " for p in first["loc"])
        raise fail(
            f"--device-classes: {where}{first['msg'].removeprefix('Value error, ')}"
        ) from exc
    except ValueError as exc:
        raise fail(str(exc)) from exc
    device_keys: dict[str, bytes] = {}
    if enroll:
        from simulators.enroll import enroll_all, register_devices

        n = asyncio.run(enroll_all(sim.customers))
        device_keys = asyncio.run(register_devices(sim.customers))
        out.print(
            f"enrolled {n} customers and registered {len(device_keys)} app devices",
            highlight=False,
        )
    if out_path is None:
        return
    if enroll:
        from simulators.app_replay import device_keys_path, write_device_keys

        # The trace never holds keys: the app devices' private keys go beside it, for
        # `proxima replay TRACE --device-keys TRACE.device-keys.json`.
        keys_file = device_keys_path(out_path)
        write_device_keys(keys_file, device_keys)
        out.print(f"app device keys: {keys_file}", highlight=False)
    began = time.perf_counter()
    if progress and sys.stderr.isatty():
        with seconds_bar(f"simulating {sim.layout.name}", sim.duration_s) as done:
            stats = sim.write(out_path, done)
    else:
        stats = sim.write(out_path)
    elapsed = time.perf_counter() - began
    _write_sidecar(sim, out_path)
    out.print(
        f"wrote {stats.lines - 1:,} lines ({stats.adv_lines:,} adv, {stats.app_lines:,} app, "
        f"{stats.truth_lines:,} truth; {stats.bytes / 1e6:.1f} MB) to {out_path}: "
        f"{stats.people} people, {stats.arrivals} door arrivals, {stats.devices} advertisers; "
        f"{sim.duration_s / 3600:g} h simulated in {elapsed:.1f} s",
        highlight=False,
    )


def parse_shares(text: str) -> dict[str, float]:
    """``CLASS=SHARE,...`` (``--device-classes``) as a dict; a bad item is named."""
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = (x.strip() for x in item.partition("="))
        try:
            share = float(value) if sep and name else None
        except ValueError:
            share = None
        if share is None:
            raise fail(f"--device-classes: {item!r} is not CLASS=SHARE (e.g. iphone_app=0.5)")
        out[name] = share
    return out


def _write_sidecar(sim: Any, trace: Path) -> None:
    """``TRACE.customers.json``: the simulated customers' identity keys, device classes and app
    device ids, for enrollment, timelines and scoring (device keys: ``--enroll`` only)."""
    from simulators.timeline import sidecar_path

    data = {
        "store_id": sim.layout.store_id,
        "customers": [
            {
                "customer_id": c.customer_id,
                "identity_key": c.identity_key.hex(),
                "rotation_exponent": c.rotation_exponent,
                "name": c.name,
                "consent": list(c.consent),
                "revoke_at": c.revoke_at,
                "tier": c.tier,
                "assigned_associate": c.assigned_associate,
                "device_class": c.device_class,
                "device_id": c.device_id,
                "shares_location": c.shares_location,
            }
            for c in sim.customers
        ],
    }
    sidecar_path(trace).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# --- score ----------------------------------------------------------------------------
def score(
    trace: Annotated[Path, typer.Argument(help="the trace (with truth lines)")],
    alerts: Annotated[Path, typer.Option(help="alert payloads, one JSON object a line")],
    events: Annotated[
        Path | None,
        typer.Option(help="captured gateway event batches: alert times on the trace clock"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    timeline: Annotated[
        Path | None, typer.Option(help="write a PNG timeline of chosen visits here")
    ] = None,
    visit: Annotated[
        list[str] | None, typer.Option(help="visit to draw: CUSTOMER_ID[@T] (repeat)")
    ] = None,
    revisit_gap: Annotated[
        float | None, typer.Option(help="seconds away that make a new visit (default: stream's)")
    ] = None,
    check: Annotated[bool, typer.Option(help="exit 1 when a target is missed")] = False,
    live: Annotated[
        bool,
        typer.Option(
            help="first record alerts (and --events) into those files from MQTT while a "
            "replay runs, until --idle seconds pass without any; then score"
        ),
    ] = False,
    idle: Annotated[float, typer.Option(help="--live: quiet seconds that end the run")] = 30.0,
) -> None:
    """Score alerts against a trace's ground truth: recall, precision, consent, latency."""
    from simulators.score import TARGETS, load_alerts, load_event_times, load_truth
    from simulators.score import score as run_score

    if live:
        try:
            n_alerts, n_batches = asyncio.run(_record(alerts, events, None, idle, False))
        except OSError as exc:
            raise fail(str(exc), 1) from exc
        err.print(f"recorded {n_alerts} alerts, {n_batches} event batches", highlight=False)

    if revisit_gap is None:
        from stream.settings import StreamSettings

        revisit_gap = StreamSettings().revisit_gap_s
    try:
        truth = load_truth(trace, revisit_gap)
        loaded = load_alerts(alerts)
        times = load_event_times(events) if events else None
    except SimulatorError as exc:
        raise fail(str(exc)) from exc
    if summary := truth.problems.summary():
        err.print(summary, highlight=False, markup=False, soft_wrap=True)
    for line in loaded.rejected:
        err.print(f"[yellow]skipped:[/yellow] {line}", highlight=False, markup=True)
    result = run_score(truth, loaded.alerts, times, rejected=len(loaded.rejected))
    figures: dict[str, Any] = dict(result.figures)
    figures["missed"] = [{"customer_id": v.customer_id, "arrive_t": v.arrive_t,
                          "behaviour": v.behaviour} for v in result.missed[:50]]  # fmt: skip
    figures["false"] = result.false_alerts[:50]
    if timeline is not None:
        from simulators.timeline import choose, render

        try:
            chosen = choose(result, visit or [])
            render(trace, chosen, timeline, truth.start, events)
        except SimulatorError as exc:
            raise fail(str(exc)) from exc
        figures["timeline"] = str(timeline)
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
    else:
        table = Table(title=f"proxima score {trace.name}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("target", justify="right")
        for key, value in result.figures.items():
            if key == "by_class":
                continue
            target = TARGETS.get(key)
            table.add_row(key, _fmt(value), f"{target[0]} {target[1]}" if target else "")
        out.print(table)
        out.print(class_table(result.figures, f"per device class: {trace.name}"))
        for v in result.missed[:10]:
            out.print(
                f"missed: {v.customer_id} arrived t={v.arrive_t:.1f}s ({v.behaviour})",
                highlight=False,
            )
        for f in result.false_alerts[:10]:
            out.print(f"false alert: {f['customer_id']} t={f['t']} ({f['why']})", highlight=False)
        if timeline is not None:
            from simulators.timeline import decisions_path

            out.print(
                f"timeline: {timeline} (its zone decisions and why: {decisions_path(timeline)})",
                highlight=False,
            )
    if check and result.failures():
        for failure in result.failures():
            err.print(f"[red]target missed:[/red] {failure}", highlight=False)
        raise typer.Exit(1)


CLASS_ROWS = {
    "expected_visits": "expected visits",
    "recall": "recall",
    "precision": "precision",
    "alerts_without_consent": "without consent",
    "duplicates_per_visit": "duplicates/visit",
    "max_alerts_per_visit": "max alerts/visit",
    "latency_p50_s": "latency p50 s",
    "latency_p95_s": "latency p95 s",
    "location_sharing_visits": "sharing location",
    "approached_visits": "approached",
    "approach_lead_p50_s": "lead p50 s",
}


def class_table(figures: dict[str, Any], title: str) -> Table:
    """The figures that matter per device class: one column overall, one per class."""
    by_class: dict[str, dict[str, Any]] = figures.get("by_class") or {}
    table = Table(title=title)
    table.add_column("figure")
    for name in ("overall", *by_class):
        table.add_column(name, justify="right")
    for key, label in CLASS_ROWS.items():
        table.add_row(label, _fmt(figures.get(key)), *(_fmt(f.get(key)) for f in by_class.values()))
    return table


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


# --- alerts record --------------------------------------------------------------------
@alerts_app.command("record")
def alerts_record(
    out_path: Annotated[Path, typer.Option("--out", help="alert payloads, one a line")],
    events: Annotated[
        Path | None, typer.Option(help="also capture every gateway event batch here")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="stop after SECONDS")] = None,
    idle: Annotated[
        float | None, typer.Option(help="stop after SECONDS without any alert or event")
    ] = None,
    append: Annotated[bool, typer.Option(help="append to the files instead of replacing")] = False,
) -> None:
    """Subscribe to every store's alert topic and write each alert as it arrives."""
    try:
        n_alerts, n_batches = asyncio.run(_record(out_path, events, duration, idle, append))
    except OSError as exc:
        raise fail(str(exc), 1) from exc
    out.print(f"recorded {n_alerts} alerts, {n_batches} event batches", highlight=False)


async def _record(
    out_path: Path, events: Path | None, duration: float | None, idle: float | None, append: bool
) -> tuple[int, int]:
    from transport.mqtt import MqttClient

    services = ServiceSettings()
    topics = services.topics
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    n_alerts = n_batches = 0
    mode = "a" if append else "w"
    alerts_fh = out_path.open(mode, encoding="utf-8")
    events_fh = events.open(mode, encoding="utf-8") if events else None
    async with redis_for(services) as redis:
        async with MqttClient(services.mqtt, queue_size=1_000_000) as mqtt:
            await mqtt.subscribe(topics.all_store_alerts(), qos=1)
            if events_fh is not None:
                await mqtt.subscribe(topics.all_gateway_events(), qos=1)
            # The broker handles our SUBSCRIBEs before this PUBLISH: once the probe comes
            # back, every subscription is live and "recording" is true.
            probe = f"{topics.mqtt_root}/probes/recorder-{uuid.uuid4().hex}"
            await mqtt.subscribe(probe, qos=1)
            await mqtt.publish(probe, b"{}", qos=1)
            began = last = loop.time()
            while not stop.is_set():
                now = loop.time()
                if duration is not None and now - began >= duration:
                    break
                if idle is not None and now - last >= idle:
                    break
                with contextlib.suppress(TimeoutError):
                    msg = await asyncio.wait_for(mqtt.messages.get(), 0.5)
                    last = loop.time()
                    if msg.topic == probe:
                        err.print("recording; Ctrl-C to stop", highlight=False)
                        continue
                    try:
                        payload = json.loads(msg.payload)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        err.print(f"skipped a non-JSON message on {msg.topic}", highlight=False)
                        continue
                    if not msg.topic.endswith("/events"):
                        payload = await _wire_alert(redis, services.redis_prefix, payload)
                        if payload is None:
                            continue
                    line = json.dumps(payload, separators=(",", ":")) + "\n"
                    if msg.topic.endswith("/events"):
                        if events_fh is not None:
                            events_fh.write(line)
                            n_batches += 1
                    else:
                        alerts_fh.write(line)
                        alerts_fh.flush()
                        n_alerts += 1
        alerts_fh.close()
        if events_fh is not None:
            events_fh.close()
    return n_alerts, n_batches


async def _wire_alert(redis: RedisClient, prefix: str, payload: Any) -> Any:
    """The alert to score: the store's topic carries the associates' view (no customer id),
    so the wire alert is read where the notifier keeps it. None: a withdrawal, or an
    alert already gone (erased); skipped."""
    if not isinstance(payload, dict) or payload.get("schema") not in (
        "proxima.alert_view.v1",
        "proxima.alert_withdrawn.v1",
    ):
        return payload  # a full alert (another publisher), or junk that score will report
    if payload["schema"] == "proxima.alert_withdrawn.v1":
        return None
    from notifier.lifecycle import stored_alert

    alert = await stored_alert(redis, prefix, str(payload.get("alert_id")))
    if alert is None:
        err.print(f"alert {payload.get('alert_id')} is no longer stored: skipped", highlight=False)
        return None
    return json.loads(alert.to_json())


# --- replay ---------------------------------------------------------------------------
# --- replay & simulate ----------------------------------------------------------------
def replay(
    trace: Annotated[Path, typer.Argument(help="trace file (JSON Lines, proxima-trace v1)")],
    speed: Annotated[
        str,
        typer.Option(help="N× real time, or 'max': all gateways on the trace's virtual clock"),
    ] = "max",
    device_keys: Annotated[
        Path | None,
        typer.Option(
            help='JSON {"DEVICE_ID": "<Ed25519 private key, 32 raw bytes, base64>"}: app '
            "lines are signed with these and sent to an ingest on loopback (a device without "
            "a key: its lines are skipped and counted)"
        ),
    ] = None,
    fusion: Annotated[
        bool,
        typer.Option(
            help="the store's presence coordinator places people from every gateway's evidence"
            " (docs/presence.md); --no-fusion: each gateway decides its own zone alone"
        ),
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Feed a trace through one edge agent per gateway, and its app lines through the
    app-event ingest, into the running system."""
    from contracts.exceptions import ContractError
    from contracts.trace import TraceProblems
    from edge.cli import parse_speed
    from edge.fusion import FUSION_GATEWAY_ID
    from simulators.replay import replay_trace

    verbose_logging(verbose)
    problems = TraceProblems(str(trace))
    app_summary: list[str] = []
    try:
        stats = asyncio.run(
            replay_trace(trace, parse_speed(speed), problems, device_keys, app_summary, fusion)
        )
    except (ContractError, OSError, SimulatorError) as exc:
        raise fail(str(exc)) from exc
    fused = FUSION_GATEWAY_ID in stats
    for gw, (adverts, events) in sorted(stats.items()):
        # "N events published" counts what reaches the stream (scripts wait for those).
        what = (
            "evidence events to the store's coordinator"
            if fused and gw != FUSION_GATEWAY_ID
            else "events published"
        )
        out.print(f"{gw}: {adverts} adverts → {events} {what}", highlight=False)
    for line in app_summary:
        err.print(line, highlight=False, markup=False, soft_wrap=True)
    # A trace from another tool may hold lines this one cannot read: say how many were
    # skipped, once, after the replay went on without them.
    if summary := problems.summary():
        err.print(summary, highlight=False, markup=False, soft_wrap=True)
