"""``proxima score --live`` records alerts from real Mosquitto while a replay runs, then scores."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.models import Alert, AlertKind
from contracts.services import ServiceSettings
from contracts.topics import Topics
from transport.mqtt import MqttClient

pytestmark = pytest.mark.integration

HAND = Path(__file__).parent / "data" / "handwritten.jsonl"
START = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


async def test_live_score_records_the_alerts_it_scores(namespace: str, tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.jsonl"
    env = dict(os.environ, PROXIMA_NAMESPACE=namespace)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deploy.cli", "score", str(HAND), "--alerts", str(alerts),
        "--live", "--idle", "2", "--json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert b"recording" in line  # every subscription is live
        alert = Alert(
            alert_id=uuid.uuid4(),
            store_id="hand-store",
            customer_id="cust-hand-1",
            kind=AlertKind.ARRIVAL,
            title="cust-hand-1 is at the entrance",
            caused_by=[uuid.uuid4()],
            created_at=START + timedelta(seconds=12),
        )
        topics = Topics(namespace)
        async with MqttClient(ServiceSettings(namespace=namespace).mqtt) as mqtt:
            await mqtt.publish(topics.store_alerts("hand-store"), alert.to_json(), qos=1)
            # Another store's alert on the same broker is not this trace's business.
            other = alert.model_copy(update={"alert_id": uuid.uuid4(), "store_id": "elsewhere"})
            await mqtt.publish(topics.store_alerts("elsewhere"), other.to_json(), qos=1)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    figures = json.loads(out.decode().strip().splitlines()[-1])
    assert figures["recall"] == 1.0
    assert figures["arrival_alerts"] == 1
    assert figures["latency_p50_s"] == pytest.approx(12 - 9.1)
    assert len(alerts.read_text().splitlines()) == 2  # both recorded, one scored
