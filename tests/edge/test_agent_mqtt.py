"""The gateway agent against real Mosquitto: signed batches, status, outages, kill -9.

Delivery is checked at a real subscriber: every ``seq`` from 1 to the last one the outbox
handed out arrives, each ``seq`` always with the same ``event_id`` (a resend after a crash
between PUBACK and the outbox delete repeats the very same event, which the stream
deduplicates), and events leave in ``seq`` order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.models import Event, GatewayState, GatewayStatus, parse_model
from contracts.services import ServiceSettings
from contracts.signing import GatewayKey, SignatureError, verify
from contracts.topics import Topics
from edge.agent import EdgeAgent
from edge.settings import EdgeSettings
from edge.sources import TraceSource
from tests.edge.support import (
    FAST_PRESENCE,
    GATEWAY,
    MOSQUITTO,
    STORE,
    Collector,
    Mosquitto,
    outbox_meta,
    write_trace,
)
from tests.kit.require import unavailable
from transport.mqtt import MqttClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ARTIFACTS = Path(os.environ.get("PROXIMA_TEST_ARTIFACTS", "artifacts")) / "edge"
SECRET = bytes(range(32))
KID = "gw-e-2026"


def assert_complete(events: list[Event], last_seq: int) -> int:
    """Every seq 1..last_seq present, one event_id per seq, in order; returns duplicates."""
    by_seq: dict[int, set[str]] = {}
    for e in events:
        by_seq.setdefault(e.seq, set()).add(str(e.event_id))
    assert sorted(by_seq) == list(range(1, last_seq + 1)), (
        f"missing seqs: {sorted(set(range(1, last_seq + 1)) - set(by_seq))[:20]}"
    )
    assert all(len(ids) == 1 for ids in by_seq.values()), "a seq arrived with two event ids"
    # Order: outside a resend (a seq seen again), seqs only go up.
    seen: set[int] = set()
    last = 0
    for e in events:
        if e.seq not in seen:
            assert e.seq > last, f"seq {e.seq} arrived after {last}"
            last = e.seq
            seen.add(e.seq)
    return len(events) - last_seq


def fast_settings(**kw: object) -> EdgeSettings:
    values: dict[str, object] = {
        k.removeprefix("PROXIMA_EDGE_").lower(): v for k, v in FAST_PRESENCE.items()
    }
    values.update(store_id=STORE, gateway_id=GATEWAY, zone_id="entrance")
    values.update(kw)
    return EdgeSettings(**values)  # type: ignore[arg-type]


async def test_batches_are_signed_and_a_forged_one_is_detectable(
    namespace: str, tmp_path: Path
) -> None:
    mqtt = ServiceSettings().mqtt
    topics = Topics(namespace)
    trace = write_trace(tmp_path / "t.jsonl", 60)
    settings = fast_settings(
        signing_kid=KID, signing_key=SECRET.hex(), batch_max_events=25, status_interval_s=0.2
    )
    source = TraceSource.from_file(trace, GATEWAY)
    agent = EdgeAgent(
        settings, source, topics, mqtt_url=mqtt, outbox_path=tmp_path / "outbox.sqlite"
    )
    async with Collector(mqtt, topics.gateway_events(STORE, GATEWAY)) as seen:
        await agent.run(until_drained=True)
        events = await seen.wait_for(120)
    assert_complete(events, 120)
    assert {e.kind.value for e in events} == {"zone_enter", "zone_exit"}
    assert max(len(p) for _, p, _ in seen.batches) > 0

    key = GatewayKey(KID, STORE, GATEWAY, SECRET)
    for topic, payload, props in seen.batches:
        assert verify(topic, payload, props, {KID: key}.get, store_id=STORE, gateway_id=GATEWAY)
    topic, payload, props = seen.batches[0]
    forged = payload.replace(b"zone_enter", b"zone_exit", 1)
    with pytest.raises(SignatureError, match="signature"):
        verify(topic, forged, props, {KID: key}.get, store_id=STORE, gateway_id=GATEWAY)
    wrong_key = GatewayKey(KID, STORE, GATEWAY, bytes(32))
    with pytest.raises(SignatureError):
        verify(topic, payload, props, {KID: wrong_key}.get, store_id=STORE, gateway_id=GATEWAY)

    # The retained status is there for late subscribers; after a clean exit it says offline.
    async with MqttClient(mqtt) as late:
        await late.subscribe(topics.gateway_status(STORE, GATEWAY))
        async with asyncio.timeout(10):
            msg = await late.messages.get()
    status = parse_model(GatewayStatus, msg.payload)
    assert msg.retain
    assert status.state is GatewayState.OFFLINE
    assert status.events_published == 120
    # signed like the batches, so the bridge can refuse another's status
    props = msg.user_properties
    assert verify(msg.topic, msg.payload, props, {KID: key}.get, store_id=STORE, gateway_id=GATEWAY)
    assert status.outbox_depth == 0


async def test_status_is_retained_online_with_health_while_running(
    namespace: str, tmp_path: Path
) -> None:
    mqtt = ServiceSettings().mqtt
    topics = Topics(namespace)
    trace = write_trace(tmp_path / "t.jsonl", 400, every_s=0.05)  # 20 s at 1×
    source = TraceSource.from_file(trace, GATEWAY, speed=1.0)
    agent = EdgeAgent(
        fast_settings(status_interval_s=0.3),
        source,
        topics,
        mqtt_url=mqtt,
        outbox_path=tmp_path / "outbox.sqlite",
    )
    run = asyncio.create_task(agent.run())
    try:
        async with MqttClient(mqtt) as watcher:
            await watcher.subscribe(topics.gateway_status(STORE, GATEWAY))
            async with asyncio.timeout(20):
                while True:
                    msg = await watcher.messages.get()
                    status = parse_model(GatewayStatus, msg.payload)
                    if status.events_published and status.adverts_per_s:
                        break
    finally:
        agent.stop()
        await run
    assert status.state is GatewayState.ONLINE
    assert status.scanner == "replay"
    assert status.scanner_state == "scanning"
    assert status.adverts_per_s is not None
    assert status.adverts_per_s > 0
    assert status.uptime_s is not None
    assert status.uptime_s > 0
    assert status.outbox_oldest_s is not None
    assert status.reconnects == 0


# --- subprocess agents: outages and kill -9 -------------------------------------------------
@pytest.fixture
def agent_env(namespace: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FAST_PRESENCE)
    env.update(
        PROXIMA_NAMESPACE=namespace,
        PROXIMA_EDGE_MQTT_PUBLISH_TIMEOUT_S="1",
        PROXIMA_EDGE_RECONNECT_MIN_S="0.2",
        PROXIMA_EDGE_RECONNECT_MAX_S="1",
        PROXIMA_EDGE_BATCH_MAX_EVENTS="20",
        PROXIMA_EDGE_STATUS_INTERVAL_S="1",
    )
    return env


class Agent:
    """``proxima edge run`` as a child process with its log under artifacts/edge."""

    def __init__(self, name: str, env: dict[str, str], *args: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deploy.cli",
                "edge",
                "run",
                f"--store={STORE}",
                f"--gateway={GATEWAY}",
                "--zone=entrance",
                *args,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()

    async def wait(self, timeout: float = 60) -> int:
        async with asyncio.timeout(timeout):
            while self.proc.poll() is None:  # noqa: ASYNC110 - a child process, no event
                await asyncio.sleep(0.1)
        self.log.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if not self.log.closed:
            self.log.close()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if MOSQUITTO is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


async def wait_rows(outbox: Path, n: int, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while outbox_meta(outbox)[1] - 1 < n:  # noqa: ASYNC110 - another process's file
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("broker_up", [True, False], ids=["connected", "during-outage"])
async def test_kill_9_then_restart_loses_nothing_and_seq_continues(
    agent_env: dict[str, str], namespace: str, tmp_path: Path, broker_up: bool
) -> None:
    mqtt = ServiceSettings().mqtt
    topics = Topics(namespace)
    outbox = tmp_path / "outbox.sqlite"
    first = write_trace(tmp_path / "a.jsonl", 400, every_s=0.05)  # 20 s at 1×: killed mid-way
    second = write_trace(tmp_path / "b.jsonl", 30, first=10_000)
    closed_port = "mqtt://127.0.0.1:9"  # discard port: nothing listens
    async with Collector(mqtt, topics.gateway_events(STORE, GATEWAY)) as seen:
        a = Agent(
            f"kill9-{broker_up}-a",
            agent_env,
            f"--source=replay:{first}",
            "--speed=1",
            f"--outbox={outbox}",
            f"--mqtt={mqtt if broker_up else closed_port}",
        )
        try:
            if broker_up:
                await seen.wait_for(40, timeout=30)
            else:
                await wait_rows(outbox, 40)
            a.kill9()
        finally:
            a.stop()
        stored_after_kill, next_seq = outbox_meta(outbox)
        last_before = next_seq - 1
        assert last_before < 800, "the first agent should have been killed mid-stream"
        if not broker_up:
            assert stored_after_kill == last_before  # nothing could leave during the outage
        b = Agent(
            f"kill9-{broker_up}-b",
            agent_env,
            f"--source=replay:{second}",
            f"--outbox={outbox}",
            f"--mqtt={mqtt}",
            "--until-drained",
        )
        try:
            assert await b.wait() == 0, b.output()
        finally:
            b.stop()
        rows, next_seq = outbox_meta(outbox)
        assert rows == 0
        last = next_seq - 1
        assert last == last_before + 60  # the second run's 30 visitors, numbered after
        events = await seen.wait_for(last, timeout=30)
    duplicates = assert_complete(events, last)
    assert duplicates <= 20  # at most the one batch in flight at the kill is resent
    second_ids = {e.subject.id for e in events if e.seq > last_before}
    assert second_ids == {(10_000 + i).to_bytes(8, "big").hex() for i in range(30)}


async def test_broker_stopped_mid_replay_then_restarted_every_seq_arrives(
    agent_env: dict[str, str], namespace: str, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    topics = Topics(namespace)
    outbox = tmp_path / "outbox.sqlite"
    trace = write_trace(tmp_path / "t.jsonl", 200, every_s=0.05)  # 10 s at 1×
    # A persistent session on a persistent broker: what is published while the collector
    # reconnects is queued for it, so the check sees what the broker accepted.
    collector = Collector(
        mosquitto.url,
        topics.gateway_events(STORE, GATEWAY),
        client_id=f"{namespace}-c",
        clean=False,
    )
    async with collector as seen:
        agent = Agent(
            "outage",
            agent_env,
            f"--source=replay:{trace}",
            "--speed=1",
            f"--outbox={outbox}",
            f"--mqtt={mosquitto.url}",
            "--until-drained",
        )
        try:
            await seen.wait_for(30, timeout=30)
            mosquitto.stop()
            stopped_at = outbox_meta(outbox)[1] - 1
            await wait_rows(outbox, stopped_at + 60)  # events keep coming into the outbox
            queued, _ = outbox_meta(outbox)
            assert queued >= 60
            mosquitto.start()
            assert await agent.wait() == 0, agent.output()
        finally:
            agent.stop()
        rows, next_seq = outbox_meta(outbox)
        assert rows == 0
        assert next_seq - 1 == 400
        events = await seen.wait_for(400, timeout=30)
    assert_complete(events, 400)
