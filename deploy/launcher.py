"""``proxima up``: the whole system on one machine, as child processes.

Starts the embedded Kafka-protocol broker unless PROXIMA_KAFKA names one, creates the
topics, then runs the bridge, the stream worker, the bookings API and the notifier (its
manager's console books through that API) as children, optionally
a simulated scenario through a real edge agent, and prints every alert as it arrives on
``proxima/v1/stores/+/alerts``. Ctrl-C (or ``--duration``) stops every child cleanly.

A scenario's data lives in a namespace of its own, dropped at exit (see :func:`up`); its
alerts still go out on the contract's topics, where store screens listen.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from contracts.exceptions import ContractError
from contracts.models import AlertWithdrawn, parse_alert_message
from contracts.services import ServiceSettings
from contracts.trace import parse_header
from deploy.children import Children
from deploy.embedded_kafka import EmbeddedKafka
from deploy.services import ServiceUnavailable, check_all
from stream.settings import StreamSettings
from transport.kafka import ensure_topics
from transport.mqtt import MqttClient
from transport.net import free_port
from transport.redis import connect_redis, drop_prefix


async def up(
    *,
    duration: float | None,
    scenario: str,
    headless: bool,
    on_alert: Callable[[str], None],
    on_info: Callable[[str], None],
    log_dir: Path = Path(".proxima/logs"),
    namespace: str | None = None,
) -> int:
    """Run everything until Ctrl-C or ``duration``; the exit code for ``proxima up``.

    ``namespace`` (``--namespace``) puts every name under it, alerts included. Without one
    (and without PROXIMA_NAMESPACE) a scenario runs in a scratch namespace ``demo…``: its
    Redis keys, Kafka topics and consumer groups and its gateways' MQTT topics cannot mix
    with a system sharing these brokers, and last run's visits and dedupe keys (a visit
    lasts revisit_gap, 4 h) cannot silence this run's alerts. Only the topics people's
    devices use (alerts, acks, shifts) keep the contract's names, so a store screen or
    ``mosquitto_sub -t 'proxima/v1/stores/+/alerts'`` sees the demo's alerts; they are
    the store ``demo-store``'s. The scratch namespace's Redis keys are deleted at exit.
    """
    services = ServiceSettings()
    if namespace is not None:
        services = services.model_copy(update={"namespace": namespace})
    settings = StreamSettings()
    await check_all(services.mqtt, services.redis)
    kafka: EmbeddedKafka | None = None
    env = dict(os.environ)
    if namespace is not None:
        env["PROXIMA_NAMESPACE"] = namespace
    scratch_namespace = scenario != "none" and not services.namespace
    if scratch_namespace:
        alerts_ns = services.alerts_namespace if services.alerts_namespace is not None else ""
        services = services.model_copy(
            update={
                "namespace": f"demo{int(time.time())}{secrets.token_hex(2)}",
                "alerts_namespace": alerts_ns,
            }
        )
        env["PROXIMA_NAMESPACE"] = services.namespace
        env["PROXIMA_ALERTS_NAMESPACE"] = alerts_ns
        on_info(
            f"scenario data (Redis keys, Kafka topics, gateway topics) in namespace "
            f"{services.namespace!r}, removed at exit; alerts on "
            f"{services.topics.all_store_alerts()}. To talk to this system: "
            f"PROXIMA_NAMESPACE={services.namespace} PROXIMA_ALERTS_NAMESPACE={alerts_ns}"
        )
    if not services.kafka:
        log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start
        kafka = EmbeddedKafka(log_path=log_dir / "kafka.log")
        await kafka.start()
        env["PROXIMA_KAFKA"] = kafka.url
        services = services.model_copy(update={"kafka": kafka.url})
        on_info(f"embedded Kafka-protocol broker (Tansu) on {kafka.bootstrap}")
    children = Children(env=env, log_dir=log_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    announce: asyncio.Task[None] | None = None
    only_store: str | None = None
    try:
        await ensure_topics(
            services.kafka_bootstrap,
            services.topics.all_kafka,
            settings.partitions,
            retention_ms=settings.kafka_retention_s * 1000,
        )
        children.start("bridge", "bridge")
        children.start("stream-worker", "stream", "worker")
        bookings_url = _bookings_api(env)
        children.start("bookings-api", "stream", "bookings-api")
        console = _console_address()
        env["PROXIMA_NOTIFIER_HTTP_HOST"], env["PROXIMA_NOTIFIER_HTTP_PORT"] = console
        children.start("notifier", "notifier", "serve")
        on_info(
            f"bridge, stream worker, bookings API ({bookings_url}/v1/bookings) and notifier "
            f"started (logs in {log_dir})"
        )
        announce = asyncio.create_task(
            _announce_console(console, on_info, log_dir), name="up-console-address"
        )
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
                if scratch_namespace:
                    # The contract's alert topics may carry a real system's alerts too.
                    only_store = _trace_store(trace)
                if not headless:
                    on_info(await _demo_associate(services, console))
                # The scenario's app users reach the ingest the replay serves on loopback,
                # signed with the keys `simulate --enroll` wrote beside the trace.
                keys = trace.with_name(trace.name + ".device-keys.json")
                with_keys = ("--device-keys", str(keys)) if keys.exists() else ()
                children.start("edge-sim", "replay", str(trace), "--speed", "1", *with_keys)
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
                    if only_store is not None and alert.store_id != only_store:
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
        if announce is not None:
            announce.cancel()
        on_info("stopping")
        await asyncio.to_thread(children.stop)
        if kafka is not None:
            await asyncio.to_thread(kafka.stop)
        if scratch_namespace:
            await _drop_scratch(services, on_info, own_kafka=kafka is not None)


async def _drop_scratch(
    services: ServiceSettings, on_info: Callable[[str], None], *, own_kafka: bool
) -> None:
    """Delete what the scratch namespace left: its Redis keys and, on a Kafka that outlives
    this run (PROXIMA_KAFKA), its topics. Committed offsets of its consumer groups expire
    with the broker's offset retention (aiokafka cannot delete groups)."""
    ns = services.namespace
    try:
        keys = await drop_prefix(services.redis, services.redis_prefix)
    except Exception as exc:  # redis-py raises its own errors and OSError
        on_info(f"could not remove the Redis keys under {services.redis_prefix!r}: {exc}")
    else:
        on_info(f"removed {keys} Redis keys of namespace {ns!r}")
    if own_kafka:
        return  # the embedded broker keeps topics in memory: they went with it
    try:
        topics = await drop_topics(services.kafka_bootstrap, (f"{ns}.", f"{ns}-"))
    except Exception as exc:  # aiokafka's KafkaError and OSError
        on_info(f"could not delete the Kafka topics of namespace {ns!r}: {exc}")
    else:
        on_info(f"deleted {len(topics)} Kafka topics of namespace {ns!r}")


async def drop_topics(bootstrap: str, prefixes: tuple[str, ...]) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes``; their names."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefixes))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


def _console_address() -> tuple[str, str]:
    """Where the notifier serves the console: the configured port (8080), or a free one
    when another process holds it (a second ``proxima up``, a console already running)."""
    from notifier.settings import NotifierSettings

    settings = NotifierSettings()
    host, port = settings.http_host, settings.http_port
    if port == 0 or not _port_free(host, port):
        port = free_port(host)
    return host, str(port)


DEMO_MANAGER = "demo-manager"


def _bookings_api(env: dict[str, str]) -> str:
    """Where the bookings API of this run listens, put in ``env`` with the secret the
    console signs with: PROXIMA_BOOKINGS_API_* when set, else its port (8473, or a free
    one when taken) and a secret made for this run. Returns its URL."""
    from pydantic import ValidationError

    from stream.bookings_api import BookingsApiSettings

    try:
        settings = BookingsApiSettings()
    except ValidationError as exc:
        raise ServiceUnavailable(f"the bookings API's settings: {exc}") from exc
    host, port = settings.host, settings.port
    if port == 0 or not _port_free(host, port):
        port = free_port(host)
    if settings.secret is not None:
        secret = settings.secret.get_secret_value()
    else:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    url = console_url((host, str(port))).rstrip("/")
    env |= {
        "PROXIMA_BOOKINGS_API_HOST": host,
        "PROXIMA_BOOKINGS_API_PORT": str(port),
        "PROXIMA_BOOKINGS_API_SECRET": secret,
        "PROXIMA_NOTIFIER_BOOKINGS_API_URL": url,
        "PROXIMA_NOTIFIER_BOOKINGS_API_SECRET": secret,
    }
    return url


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _trace_store(trace: Path) -> str:
    with trace.open("rb") as fh:
        return parse_header(fh.readline()).store_id


def _reachable(host: str) -> str:
    """The address a browser on this machine uses for a bind address (bind-all → loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def console_url(console: tuple[str, str]) -> str:
    host, port = _reachable(console[0]), console[1]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def _announce_console(
    console: tuple[str, str], on_info: Callable[[str], None], log_dir: Path, timeout: float = 60
) -> None:
    """Print the console's address once the notifier listens there (a link that works)."""
    from notifier.settings import NotifierSettings

    url = console_url(console)
    wanted = NotifierSettings().http_port
    note = "" if str(wanted) == console[1] else f" (port {wanted} is taken)"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection(_reachable(console[0]), int(console[1]))
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        on_info(f"associate console on {url}{note}")
        return
    on_info(
        f"associate console on {url}{note}: not answering after {timeout:.0f} s "
        f"(see {log_dir / 'notifier.log'})"
    )


async def _demo_associate(services: ServiceSettings, console: tuple[str, str]) -> str:
    """Give the scenario's store an on-shift associate and a manager (the Bookings panel,
    the outcomes, the gateways) to sign in as; say how."""
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
        await directory.add(store, "Demo Manager", password, associate_id=DEMO_MANAGER,
                            role="manager")  # fmt: skip
    finally:
        await redis.aclose()
    return (
        f"console account: store {store}, associate {DEMO_ASSOCIATE[0]} (or {DEMO_MANAGER}, "
        f"the manager: bookings), password {password} (sign in at {console_url(console)})"
    )
