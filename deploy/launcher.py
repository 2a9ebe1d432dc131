"""``proxima up``: the whole system on one machine, as child processes.

Starts the embedded Kafka-protocol broker unless PROXIMA_KAFKA names one, creates the
topics, then runs the bridge, the stream worker and the notifier as children, optionally
a simulated scenario through a real edge agent, and prints every alert as it arrives on
``proxima/v1/stores/+/alerts``. Ctrl-C (or ``--duration``) stops every child cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from contracts.exceptions import ContractError
from contracts.models import AlertWithdrawn, parse_alert_message
from contracts.services import ServiceSettings
from deploy.embedded_kafka import EmbeddedKafka
from deploy.services import check_all
from stream.settings import StreamSettings
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient
from transport.net import free_port
from transport.redis import connect_redis, drop_prefix

CHILD_STOP_TIMEOUT_S = 15.0


@dataclass
class Children:
    """Child processes owned by the launcher; stopped in reverse start order."""

    env: dict[str, str]
    log_dir: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        self.logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append((name, proc))
        return proc

    def dead(self) -> list[str]:
        return [f"{n} (exit {p.returncode})" for n, p in self.procs if p.poll() not in (None, 0)]

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=CHILD_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for log in self.logs:
            log.close()


async def up(
    *,
    duration: float | None,
    scenario: str,
    headless: bool,
    on_alert: Callable[[str], None],
    on_info: Callable[[str], None],
    log_dir: Path = Path(".proxima/logs"),
) -> int:
    services = ServiceSettings()
    settings = StreamSettings()
    await check_all(services.mqtt, services.redis)
    kafka: EmbeddedKafka | None = None
    env = dict(os.environ)
    scratch_namespace = scenario != "none" and not services.namespace
    if scratch_namespace:
        # A simulated scenario runs in a namespace of its own, so last run's visits and
        # dedupe keys (a visit lasts revisit_gap, 4 h) do not silence this run's alerts.
        services = ServiceSettings(namespace=f"demo{int(time.time())}")
        env["PROXIMA_NAMESPACE"] = services.namespace
        on_info(
            f"scenario data in namespace {services.namespace!r} "
            f"(PROXIMA_NAMESPACE={services.namespace} to talk to this system)"
        )
    if not services.kafka:
        log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start
        kafka = EmbeddedKafka(log_path=log_dir / "kafka.log")
        await kafka.start()
        env["PROXIMA_KAFKA"] = kafka.url
        services = ServiceSettings(kafka=kafka.url, namespace=services.namespace)
        on_info(f"embedded Kafka-protocol broker (Tansu) on {kafka.bootstrap}")
    children = Children(env=env, log_dir=log_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await ensure_topics(
            services.kafka_bootstrap,
            services.topics.all_kafka,
            settings.partitions,
            retention_ms=settings.kafka_retention_s * 1000,
        )
        children.start("bridge", "bridge")
        children.start("stream-worker", "stream", "worker")
        console = _console_address(headless)
        env["PROXIMA_NOTIFIER_HTTP_HOST"], env["PROXIMA_NOTIFIER_HTTP_PORT"] = console
        children.start("notifier", "notifier", "serve")
        on_info(f"bridge, stream worker and notifier started (logs in {log_dir})")
        async with MqttClient(services.mqtt) as mqtt:
            await mqtt.subscribe(services.topics.all_store_alerts(), qos=1)
            on_info(f"watching {services.topics.all_store_alerts()}")
            if scenario != "none":
                trace = log_dir / f"scenario-{scenario}.jsonl"
                code = await asyncio.to_thread(
                    subprocess.call,
                    [
                        sys.executable,
                        "-m",
                        "deploy.cli",
                        "simulate",
                        "--scenario",
                        scenario,
                        "--enroll",
                        "--out",
                        str(trace),
                    ],
                    env=env,
                )
                if code != 0:
                    on_info(f"scenario {scenario!r} could not be prepared (exit {code})")
                    return 2
                if not headless:
                    on_info(await _demo_associate(services, console))
                children.start("edge-sim", "replay", str(trace), "--speed", "1")
                on_info(
                    f"scenario {scenario!r}: customers enrolled; edge agents replaying {trace} in real time"
                )
            deadline = None if duration is None else loop.time() + duration
            while not stop.is_set():
                timeout = 1.0 if deadline is None else min(1.0, deadline - loop.time())
                if timeout <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(mqtt.messages.get(), timeout)
                    try:
                        alert = parse_alert_message(message.payload)
                    except ContractError as exc:
                        on_info(f"unreadable alert on {message.topic}: {exc}")
                        continue
                    if isinstance(alert, AlertWithdrawn):
                        on_alert(f"[{alert.store_id}] alert {alert.alert_id} withdrawn")
                        continue
                    on_alert(
                        f"[{alert.store_id}] {alert.title}"
                        + (f" — {alert.body}" if alert.body else "")
                        + (
                            f" (for {alert.target.associate_id})"
                            if alert.target.associate_id
                            else ""
                        )
                    )
                if dead := [d for d in children.dead() if not d.startswith("edge-sim")]:
                    on_info(f"child process died: {', '.join(dead)}; stopping")
                    return 1
        return 0
    finally:
        on_info("stopping")
        await asyncio.to_thread(children.stop)
        if kafka is not None:
            await asyncio.to_thread(kafka.stop)
        if scratch_namespace:
            await drop_prefix(services.redis, services.redis_prefix)


def _console_address(headless: bool) -> tuple[str, str]:
    """Where the notifier serves the console: the configured port, or a free one if taken.

    Headless runs still start the notifier (it delivers over MQTT) on a free port, so
    they never collide with a console already running on this machine.
    """
    from notifier.settings import NotifierSettings

    settings = NotifierSettings()
    host, port = settings.http_host, settings.http_port
    if headless or not _port_free(host, port):
        port = 0
    if port == 0:
        port = free_port(host)
    return host, str(port)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


async def _demo_associate(services: ServiceSettings, console: tuple[str, str]) -> str:
    """Give the scenario's store an on-shift associate to sign in as; say how."""
    from notifier.directory import Directory
    from simulators.scenarios import DEMO_ASSOCIATE, DEMO_STORE

    store = DEMO_STORE
    password = secrets.token_urlsafe(9)
    redis = connect_redis(services.redis, decode_responses=True)
    try:
        directory = Directory(redis, services.redis_prefix)
        await directory.add(
            store, DEMO_ASSOCIATE[1], password, associate_id=DEMO_ASSOCIATE[0], zones=["entrance"]
        )
        await directory.set_on_shift(store, DEMO_ASSOCIATE[0], on_shift=True)
    finally:
        await redis.aclose()
    host, port = console
    return (
        f"associate console: http://{host}:{port}/  (store {store}, "
        f"associate {DEMO_ASSOCIATE[0]}, password {password})"
    )
