"""Simulated and hand-written traces replayed through real Mosquitto, Redis and Tansu, scored.

bridge + stream worker + notifier run as child processes (as in tests/integration);
``proxima alerts record`` captures alerts and the gateways' event batches; ``proxima
replay --speed max`` drives one edge agent per gateway on the trace's virtual clock
(edge.trace_clock: the gateways publish in trace order, and a consent change waits until
the stream has decided everything before it); ``proxima score`` compares alerts with the
trace's truth.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from contracts.services import ServiceSettings
from stream.settings import StreamSettings
from tests.conftest import Procs
from tests.kit.kafka import Record, TopicReader
from transport.kafka import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

HAND = Path(__file__).parent / "data" / "handwritten.jsonl"
# These runs hold the BLE path (advertising phones and tags) to the targets: replayed
# without --device-keys, their app lines are skipped and counted. (With the keys, a
# geofence crossing alone would start a visit, as an arrival, until a crossing only makes
# the visit approaching.) The app path: tests/simulators/test_app_replay.py.
ADVERTISING = ("--device-classes", "android_app=0.9,vip_tag=0.1")


async def _wait_processed(services: ServiceSettings, n: int, procs: Procs, timeout: float) -> None:
    redis = aioredis.from_url(services.redis)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while loop.time() < deadline:
            keys = [
                k async for k in redis.scan_iter(f"{services.redis_prefix}event:*", count=10000)
            ]
            if len(keys) >= n:
                return
            await asyncio.sleep(0.5)
    finally:
        await redis.aclose()
    logs = "\n".join(f"--- {p}\n{procs.log(p)[-2000:]}" for p in ("bridge", "worker", "notifier"))
    pytest.fail(f"the worker did not process {n} events in {timeout}s\n{logs}")


def _published(replay_output: str) -> int:
    return sum(int(n) for n in re.findall(r"(\d+) events published", replay_output))


def _score(
    procs: Procs, trace: Path, alerts: Path, events: Path, name: str, *extra: str
) -> dict[str, object]:
    output = procs.run(
        f"score-{name}", "score", str(trace), "--alerts", str(alerts), "--events", str(events),
        "--json", *extra,
    )  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def _pipeline(
    procs: Procs, proxima_env: dict[str, str], *notifier_args: str
) -> tuple[ServiceSettings, Path, Path]:
    """bridge, worker, notifier (``notifier_args``: its serve options, default a port of
    its own choosing) and an alert recorder on this test's namespace."""
    services = ServiceSettings(
        kafka=proxima_env["PROXIMA_KAFKA"], namespace=proxima_env["PROXIMA_NAMESPACE"]
    )
    await ensure_topics(
        services.kafka_bootstrap, services.topics.all_kafka, StreamSettings().partitions
    )
    procs.start("bridge", "bridge")
    procs.start("worker", "stream", "worker")
    procs.start("notifier", "notifier", "serve", *(notifier_args or ("--port", "0")))
    procs.log_dir.mkdir(parents=True, exist_ok=True)
    alerts, events = procs.log_dir / "alerts.jsonl", procs.log_dir / "events.jsonl"
    procs.start("recorder", "alerts", "record", "--out", str(alerts), "--events", str(events))
    for _ in range(120):  # its subscriptions are live once it says so
        if "recording" in procs.log("recorder"):
            break
        await asyncio.sleep(0.25)
    else:
        pytest.fail(f"the recorder did not start:\n{procs.log('recorder')}")
    return services, alerts, events


def _assert_targets(figures: dict[str, object]) -> None:
    """DESIGN.md's detection targets the issue's end-to-end test holds (latency: README)."""
    assert figures["alerts_without_consent"] == 0, figures
    assert figures["max_alerts_per_visit"] <= 1, figures  # type: ignore[operator]
    assert figures["precision"] >= 0.99, figures  # type: ignore[operator]
    # The door gateway alone cannot tell a bagged phone crossing the door from a window
    # shopper's held phone outside; lingering (beacons.presence, edge.calibration) is what
    # catches the bagged phones and the lingerers (see the timeline PNG in the artifacts).
    assert figures["recall"] >= 0.99, figures  # type: ignore[operator]


async def test_simulated_boutique_hour_scores_through_the_real_pipeline(
    procs: Procs, proxima_env: dict[str, str]
) -> None:
    services, alerts, events = await _pipeline(procs, proxima_env)
    trace = procs.log_dir / "hour.jsonl"
    procs.run("simulate", "simulate", "--layout", "boutique", "--hours", "1", "--seed", "9",
              *ADVERTISING, "--enroll", "--out", str(trace))  # fmt: skip
    out = procs.run("replay-hour", "replay", str(trace), "--speed", "max", timeout=300)
    await _wait_processed(services, _published(out), procs, timeout=240)
    await asyncio.sleep(5.0)  # the notifier delivers right behind the worker
    procs.kill("recorder", signal.SIGTERM)
    hour = _score(procs, trace, alerts, events, "hour")
    (procs.log_dir / "hour-score.json").write_text(json.dumps(hour, indent=1))
    assert hour["expected_visits"] >= 5  # type: ignore[operator]
    _assert_targets(hour)


async def test_simulated_boutique_and_hand_written_trace_score_through_the_real_pipeline(
    procs: Procs, proxima_env: dict[str, str]
) -> None:
    services, alerts, events = await _pipeline(procs, proxima_env)

    # 1. A trace written by hand in the contract format (not by our simulator).
    for cid, key, consent in (
        ("cust-hand-1", "11" * 16, ["--consent", "arrival_alerts"]),
        ("cust-hand-2", "22" * 16, []),
    ):
        procs.run(f"enroll-{cid}", "customers", "enroll", cid, "--identity-key", key,
                  "--rotation-exponent", "10", "--name", cid, "--visible", "name", *consent)  # fmt: skip
    out = procs.run("replay-hand", "replay", str(HAND), "--speed", "max")
    published = _published(out)
    assert published >= 2, out
    await _wait_processed(services, published, procs, timeout=180)  # the worker is live now

    # 2. Twenty busy simulated boutique minutes, every hard case, many enrolled customers.
    trace = procs.log_dir / "rush.jsonl"
    procs.run("simulate", "simulate", "--scenario", "boutique-rush", "--seed", "21",
              *ADVERTISING, "--enroll", "--out", str(trace))  # fmt: skip
    assert trace.read_text().count('"consent_revoke"') >= 1  # someone revokes mid-replay
    # The virtual clock: events reach the stream in trace order across gateways, and a
    # revocation reaches the registry once the stream has decided everything before it.
    out = procs.run("replay-rush", "replay", str(trace), "--speed", "max", timeout=300)
    published += _published(out)
    await _wait_processed(services, published, procs, timeout=240)
    await asyncio.sleep(5.0)  # the notifier delivers right behind the worker
    procs.kill("recorder", signal.SIGTERM)

    hand = _score(procs, HAND, alerts, events, "hand")
    assert hand["expected_visits"] == 1
    assert hand["recall"] == 1.0
    assert hand["precision"] == 1.0
    assert hand["alerts_without_consent"] == 0

    timeline = procs.log_dir / "rush-timeline.png"
    plot = ("--timeline", str(timeline)) if importlib.util.find_spec("matplotlib") else ()
    rush = _score(procs, trace, alerts, events, "rush", *plot)
    (procs.log_dir / "rush-score.json").write_text(json.dumps(rush, indent=1))
    assert rush["expected_visits"] >= 10  # type: ignore[operator]
    _assert_targets(rush)


async def _alerts_on_kafka(
    services: ServiceSettings, customer_id: str, n: int, timeout: float = 120
) -> list[dict[str, object]]:
    """The first ``n`` records about ``customer_id`` on proxima.alerts.v1 (the worker's output)."""

    def about(records: list[Record]) -> list[dict[str, object]]:
        alerts = (json.loads(r.value or b"{}") for r in records)
        return [a for a in alerts if a.get("customer_id") == customer_id]

    async with TopicReader(services.kafka_bootstrap, services.topics.alerts) as reader:
        return about(await reader.until(lambda rs: len(about(rs)) >= n, timeout))


async def test_a_replay_on_the_virtual_clock_alerts_as_a_paced_replay_does(
    procs: Procs, proxima_env: dict[str, str]
) -> None:
    # The hand-written trace at --speed max, then on a fresh namespace (a second replay on
    # the same one is rightly deduplicated by event id) at --speed 20: the worker must
    # build the same alert, with the same id and visit, from the same trace. (Its cause
    # is the same zone_enter, but only the virtual clock names events deterministically; a
    # paced replay's outbox gives them fresh ids, as a live gateway does.)
    same = ("alert_id", "visit_id", "kind", "zone_id", "title", "fields", "customer_id")
    got: dict[str, dict[str, object]] = {}
    for speed in ("max", "20"):
        if speed != "max":
            procs.stop()
            procs.env["PROXIMA_NAMESPACE"] = f"{proxima_env['PROXIMA_NAMESPACE']}p"
            procs.log_dir = procs.log_dir / "paced"
        services, _, _ = await _pipeline(procs, procs.env)
        procs.run("enroll", "customers", "enroll", "cust-hand-1", "--identity-key", "11" * 16,
                  "--rotation-exponent", "10", "--name", "cust-hand-1", "--visible", "name",
                  "--consent", "arrival_alerts")  # fmt: skip
        procs.run("replay", "replay", str(HAND), "--speed", speed)
        (alert,) = await _alerts_on_kafka(services, "cust-hand-1", 1)
        got[speed] = {k: alert[k] for k in same}
        assert len(alert["caused_by"]) == 1  # type: ignore[arg-type]
    assert got["20"] == got["max"]
