"""`proxima up` (what `make demo` runs) as a user sees it: over real Mosquitto, Redis and
the embedded Kafka broker it starts itself.

The demo's alert arrives where the README says, on the contract's
``proxima/v1/stores/+/alerts``, seen by a plain paho subscriber; the console's address is
printed (also headless, also when its port is taken) and answers; the demo's data, kept in
a scratch namespace, is gone from Redis after it stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import pytest
import redis.asyncio as aioredis

from contracts.services import ServiceSettings
from deploy.launcher import drop_topics
from transport.kafka import ensure_topics

pytestmark = pytest.mark.integration


class PlainSubscriber:
    """A paho client and nothing of ours: what a store screen or mosquitto_sub sees."""

    def __init__(self, url: str, topic: str) -> None:
        parts = urlsplit(url)
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = queue.Queue[bool]()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client.on_subscribe = lambda *_: self._subscribed.put(True)
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        self._subscribed.get(timeout=10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _service_env() -> dict[str, str]:
    """The user's environment: the services, no namespace, no Kafka (up starts its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXIMA_")}
    services = ServiceSettings()
    env.update(PROXIMA_MQTT=services.mqtt, PROXIMA_REDIS=services.redis)
    return env


@pytest.mark.timeout(420)
async def test_the_demo_alert_arrives_on_the_contract_topic_and_the_console_is_printed(
    tmp_path: Path,
) -> None:
    services = ServiceSettings()
    subscriber = PlainSubscriber(services.mqtt, "proxima/v1/stores/+/alerts")
    # The console's port is taken: up serves it on a free one and says where.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    taken_port = taken.getsockname()[1]
    env = _service_env() | {"PROXIMA_NOTIFIER_HTTP_PORT": str(taken_port)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deploy.cli", "up", "--headless", "--scenario", "skeleton",
        "--duration", "360",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output: list[str] = []
    console: str | None = None
    bookings: str | None = None
    ana: dict[str, object] | None = None
    try:
        async with asyncio.timeout(300):
            while console is None or ana is None:
                line = (await proc.stdout.readline()).decode()
                assert line, f"proxima up ended early:\n{''.join(output)}"
                output.append(line)
                if m := re.search(r"associate console on (http://\S+)", line):
                    console = m.group(1)
                    assert f"(port {taken_port} is taken)" in line
                    with urllib.request.urlopen(console, timeout=10) as page:  # noqa: S310, ASYNC210
                        assert page.status == 200
                    # The bookings API the manager's console books through runs beside it.
                    assert bookings is not None, "".join(output)
                    for _ in range(50):  # started with the notifier; give it 5 s
                        try:
                            with urllib.request.urlopen(bookings + "/readyz", timeout=10) as resp:  # noqa: S310, ASYNC210
                                assert resp.status == 200
                                break
                        except OSError:
                            await asyncio.sleep(0.1)
                    else:
                        raise AssertionError(f"the bookings API at {bookings} does not answer")
                if m := re.search(r"bookings API \((http://\S+)/v1/bookings\)", line):
                    bookings = m.group(1)
                if "ALERT [demo-store]" in line:
                    topic, payload = subscriber.messages.get(timeout=10)
                    assert topic == "proxima/v1/stores/demo-store/alerts"
                    ana = json.loads(payload)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
        output.append(rest.decode())
    finally:
        subscriber.close()
        taken.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "".join(output)
    assert proc.returncode == 0, text
    assert ana is not None
    # The associates' view of the alert (AlertView): named as the customer chose to be,
    # without the customer id handhelds and store screens are not shown.
    assert ana["kind"] == "arrival"
    assert "Ana" in ana["title"]
    assert "customer_id" not in ana
    # The scenario's replay serves the app-event ingest on loopback for its app lines.
    replay_log = (tmp_path / ".proxima" / "logs" / "edge-sim.log").read_text()
    assert "app-event ingest on http://127.0.0.1:" in replay_log
    # The demo's data lived in its scratch namespace, and was removed at exit.
    m = re.search(r"removed (\d+) Redis keys of namespace '(demo\w+)'", text)
    assert m, text
    assert int(m.group(1)) > 0
    r = aioredis.from_url(services.redis)
    try:
        left = [k async for k in r.scan_iter(f"{m.group(2)}:*", count=10000)]
    finally:
        await r.aclose()
    assert left == []


async def test_a_scratch_namespaces_kafka_topics_are_deleted_and_no_others(
    kafka_url: str, namespace: str
) -> None:
    bootstrap = kafka_url.removeprefix("kafka://")
    mine = (f"{namespace}.proxima.events.v1", f"{namespace}-proxima-stream-dedupe-changelog")
    other = (f"{namespace}x.proxima.events.v1",)
    await ensure_topics(bootstrap, mine + other, 1)
    dropped = await drop_topics(bootstrap, (f"{namespace}.", f"{namespace}-"))
    assert dropped == sorted(mine)
    assert await drop_topics(bootstrap, (f"{namespace}x.",)) == list(other)
