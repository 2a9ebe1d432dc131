"""The stream side's commands: ``proxima gateways ...`` (gateway signing keys and the
fleet's status), ``proxima bridge``, ``proxima stream worker``, ``proxima topics ensure``
and ``proxima stats``.

``deploy.cli`` mounts :data:`gateways_app` (adding ``provision``: ``deploy.provisioning``),
:data:`stream_app`, :data:`topics_app`, :func:`bridge` and :func:`stats`;
:func:`provision_keys` is what ``proxima replay`` and ``proxima up`` use to give each
replayed gateway a key of its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from contracts.services import ServiceSettings
from contracts.validation import describe_validation
from stream.exceptions import KeyringError
from stream.keyring import REPLAY_LABEL, KeyRecord, Keyring
from transport.cli import err, fail, out, run_forever, verbose_logging
from transport.redis import redis_for

if TYPE_CHECKING:
    pass

T = TypeVar("T")

gateways_app = typer.Typer(
    help="Gateway signing keys (the bridge accepts only batches signed with one) and the "
    "fleet's status.",
    no_args_is_help=True,
)


async def with_keyring(services: ServiceSettings, fn: Callable[[Keyring], Awaitable[T]]) -> T:
    async with redis_for(services) as redis:
        return await fn(Keyring(redis, services.redis_prefix))


async def provision_keys(
    services: ServiceSettings, gateways: Iterable[tuple[str, str]], label: str = REPLAY_LABEL
) -> dict[tuple[str, str], KeyRecord]:
    """A signing key per (store, gateway) for a tool's agents (``proxima replay``/``up``).

    Reused across runs (one active key per gateway and label), so replays do not pile up
    keys; revoking it (``proxima gateways revoke``) makes the next replay issue a new one.
    """

    async def run(ring: Keyring) -> dict[tuple[str, str], KeyRecord]:
        return {(s, g): await ring.labelled(s, g, label) for s, g in gateways}

    return await with_keyring(services, run)


@gateways_app.command("add")
def gateways_add(
    store: Annotated[str, typer.Argument(metavar="STORE")],
    gateway: Annotated[str, typer.Argument(metavar="GATEWAY")],
) -> None:
    """Issue a signing key for a gateway; prints its env lines once (the secret is not shown again)."""
    from pydantic import ValidationError

    try:
        record = asyncio.run(with_keyring(ServiceSettings(), lambda r: r.add(store, gateway)))
    except ValidationError as exc:
        msgs = describe_validation(exc, "")
        raise fail(msgs) from exc
    err.print(
        f"key {record.kid} for {store}/{gateway}; put these lines in the gateway's environment "
        "(the secret is shown only now):",
        highlight=False,
    )
    typer.echo(record.env_lines())


@gateways_app.command("list")
def gateways_list(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per key")] = False,
) -> None:
    """List gateway keys (never their secrets)."""
    records = asyncio.run(with_keyring(ServiceSettings(), lambda r: r.all()))
    if as_json:
        for rec in records:
            typer.echo(json.dumps(rec.model_dump(mode="json", exclude={"secret"})))
        return
    table = Table(title="gateway keys")
    for col in ("kid", "store", "gateway", "created", "state", "label"):
        table.add_column(col)
    for rec in records:
        table.add_row(
            rec.kid,
            rec.store_id,
            rec.gateway_id,
            rec.created_at.isoformat(timespec="seconds"),
            "revoked" if rec.revoked else "active",
            rec.label or "",
        )
    out.print(table)


@gateways_app.command("status")
def gateways_status(
    store: Annotated[str | None, typer.Option(help="only this store's gateways")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per gateway")] = False,
) -> None:
    """Every gateway's last status: online or offline since when, last batch on Kafka,
    outbox backlog, agent version, beacons' battery and temperature (Eddystone-TLM), with
    what needs attention flagged (offline, silent, backlog, low battery)."""
    from transport.fleet import fleet_status

    services = ServiceSettings()

    async def run() -> tuple[list[Any], list[str]]:
        async with redis_for(services) as redis:
            return await fleet_status(redis, services.redis_prefix, store=store)

    views, problems = asyncio.run(run())
    for problem in problems:
        err.print(f"[yellow]unreadable status:[/yellow] {problem}", highlight=False)
    if as_json:
        for view in views:
            typer.echo(json.dumps(view.to_json()))
        return
    if not views:
        out.print("no gateway has reported a status (the bridge records them)")
        return
    table = Table(title="gateways")
    for col in ("gateway", "state", "since", "last batch", "outbox", "version", "beacons", "flags"):
        table.add_column(col)
    for v in views:
        beacons = ", ".join(
            f"{b['beacon_id'] or b['address']} {b['battery_mv'] or '?'} mV"
            + (f" {b['temperature_c']:.0f} °C" if b["temperature_c"] is not None else "")
            for b in v.beacons
        )
        table.add_row(
            f"{v.store_id}/{v.gateway_id}",
            v.state,
            v.since.isoformat(timespec="seconds"),
            v.last_batch.isoformat(timespec="seconds") if v.last_batch else "-",
            "-" if v.outbox_depth is None else str(v.outbox_depth),
            v.version or "-",
            beacons or "-",
            "; ".join(v.flags) or "ok",
        )
    out.print(table)


@gateways_app.command("deprovision")
def gateways_deprovision(
    store: Annotated[str, typer.Argument(metavar="STORE")],
    gateway: Annotated[str, typer.Argument(metavar="GATEWAY")],
    out: Annotated[Path | None, typer.Option(help="the gateway's folder to empty")] = None,
    passwd: Annotated[Path | None, typer.Option(help="Mosquitto's password file")] = None,
    acl: Annotated[Path | None, typer.Option(help="the Mosquitto ACL file")] = None,
) -> None:
    """Undo provision: revoke every active key of the gateway (bridges refuse its batches
    within PROXIMA_STREAM_KEY_CACHE_TTL_S), take its password line and ACL block out of
    the broker's files (reload Mosquitto) and delete the folder's files."""
    from stream.provision import (
        mqtt_username,
        remove_folder_files,
        set_acl_block,
        set_password_line,
    )

    async def revoke_all(ring: Keyring) -> list[str]:
        kids = [
            r.kid
            for r in await ring.all()
            if (r.store_id, r.gateway_id) == (store, gateway) and not r.revoked
        ]
        for kid in kids:
            await ring.revoke(kid)
        return kids

    revoked = asyncio.run(with_keyring(ServiceSettings(), revoke_all))
    username = mqtt_username(store, gateway)
    if passwd is not None:
        set_password_line(passwd, None, username)
    if acl is not None:
        set_acl_block(acl, None, username)
    gone = remove_folder_files(out) if out is not None else []
    err.print(
        f"deprovisioned {store}/{gateway}: {len(revoked)} key(s) revoked"
        + (", password line removed" if passwd else "")
        + (", ACL block removed" if acl else "")
        + (f", {len(gone)} file(s) deleted from {out}" if out else ""),
        highlight=False,
    )


@gateways_app.command("revoke")
def gateways_revoke(kid: Annotated[str, typer.Argument(metavar="KID")]) -> None:
    """Revoke a key; bridges refuse its batches within PROXIMA_STREAM_KEY_CACHE_TTL_S."""
    try:
        record = asyncio.run(with_keyring(ServiceSettings(), lambda r: r.revoke(kid)))
    except KeyringError as exc:
        raise fail(str(exc), 1) from exc
    typer.echo(f"{record.kid} ({record.store_id}/{record.gateway_id}): revoked")


# --- the services: bridge and worker (mounted as ``proxima bridge``, ``proxima stream``) ---
stream_app = typer.Typer(help="The Faust stream processor.", no_args_is_help=True)


def bridge(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run the MQTT → Kafka bridge until interrupted."""
    from stream.bridge import Bridge
    from stream.settings import StreamSettings

    verbose_logging(verbose)
    services = ServiceSettings()
    if not services.kafka:
        raise fail(
            "PROXIMA_KAFKA is not set: the bridge needs a Kafka broker (proxima up starts one)"
        )
    run_forever(Bridge(services, StreamSettings()).run())


@stream_app.command("bookings-api")
def bookings_api(
    host: Annotated[str | None, typer.Option(help="default PROXIMA_BOOKINGS_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default PROXIMA_BOOKINGS_API_PORT")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the endpoint a booking system posts reservations and appointments to, signed
    as Standard Webhooks sign them (docs/operators/bookings.md)."""
    from stream.bookings_api import BookingsApiSettings, serve

    verbose_logging(verbose)
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = BookingsApiSettings(**overrides)
    if settings.secret is None:
        raise fail(
            "PROXIMA_BOOKINGS_API_SECRET is not set: the senders' signing secret, whsec_<base64>"
            " (e.g. python -c \"import base64,os;print('whsec_'+base64.b64encode(os.urandom(24)).decode())\")"
        )

    def ready(bound: int) -> None:
        out.print(f"bookings-api: http://{settings.host}:{bound}/v1/bookings", highlight=False)

    run_forever(serve(ServiceSettings(), settings, ready))


@stream_app.command("worker")
def stream_worker(
    loglevel: Annotated[str, typer.Option(help="crit|error|warn|info|debug")] = "info",
) -> None:
    """Run one Faust worker (validate → resolve → consent → visit → alert)."""
    from stream.app import run_worker

    if not ServiceSettings().kafka:
        raise fail(
            "PROXIMA_KAFKA is not set: the worker needs a Kafka broker (proxima up starts one)"
        )
    run_worker(loglevel)


def stats(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON array")] = False,
) -> None:
    """Counters of the running bridges and stream workers (totals since each started)."""
    import time

    from rich.table import Table

    from stream.settings import StreamSettings
    from transport.stats import as_json as stats_json
    from transport.stats import read_all

    services = ServiceSettings()

    async def read() -> Any:
        async with redis_for(services) as r:
            return await read_all(r, services.redis_prefix)

    try:
        snapshot = asyncio.run(read())
    except OSError as exc:
        raise fail(f"cannot read {services.redis}: {exc}") from exc
    if as_json:
        sys.stdout.write(stats_json(snapshot) + "\n")
        return
    if not snapshot:
        every = StreamSettings().stats_interval_s
        out.print(f"no bridge or stream worker has reported (they write every {every:g} s)")
        return
    table = Table(title="proxima stats")
    for col in ("component", "instance", "age", "counter", "value"):
        table.add_column(col, justify="right" if col in ("age", "value") else "left")
    now = time.time()
    for (component, instance), (updated, counts) in sorted(snapshot.items()):
        age = f"{now - updated:.0f} s"
        for i, (name, value) in enumerate(sorted(counts.items()) or [("-", 0)]):
            first = i == 0
            table.add_row(
                component if first else "", instance if first else "", age if first else "",
                name, f"{value:,}",
            )  # fmt: skip
    out.print(table)


# --- topics ---------------------------------------------------------------------------
topics_app = typer.Typer(help="Kafka topics of the contract.", no_args_is_help=True)


@topics_app.command("ensure")
def topics_ensure(
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="partitions per topic (default PROXIMA_STREAM_PARTITIONS)"),
    ] = None,
    replication: Annotated[
        int, typer.Option(min=1, help="replication factor (3 on a production cluster)")
    ] = 1,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the broker")] = 60.0,
) -> None:
    """Create every contract topic and the stream worker's table changelogs that do not
    exist yet (idempotent; run before the services).

    Faust refuses a table whose changelog partition count differs from its source
    topic's, and a topic the broker auto-creates takes the broker's default, so a
    deployment creates the topics first (compose's init-topics, the k8s Job). The
    changelogs ({app id}-{table}-changelog) and the consent topic are compacted; a
    changelog takes the events topic's partition count and replication factor as they
    are on the broker (which may differ from --partitions/--replication on an upgrade).
    The alerts and visits topics, which name customers, keep records for
    PROXIMA_STREAM_KAFKA_RETENTION_S (7 days), also set on topics that already exist.
    """
    from stream.settings import StreamSettings
    from stream.tables import ensure_changelogs
    from transport.kafka import (
        TopicShape,
        describe_topics,
        ensure_topics,
        kafka_security,
        wait_for_broker,
    )

    services = ServiceSettings()
    if not services.kafka:
        raise fail("PROXIMA_KAFKA is not set: name the broker to create the topics on")
    settings = StreamSettings()
    count = partitions or settings.partitions

    async def run() -> dict[str, TopicShape]:
        security = kafka_security(services)
        await wait_for_broker(services.kafka_bootstrap, timeout=timeout, security=security)
        names = services.topics.all_kafka
        not_set = await ensure_topics(
            services.kafka_bootstrap,
            names,
            count,
            replication,
            retention_ms=settings.kafka_retention_s * 1000,
            security=security,
        )
        for name in not_set:
            err.print(
                f"[yellow]warning:[/yellow] {name}: the broker did not take the retention "
                f"(PROXIMA_STREAM_KAFKA_RETENTION_S={settings.kafka_retention_s}); "
                "set it with the broker's tools",
                highlight=False,
            )
        names += await ensure_changelogs(services, settings)
        shapes = await describe_topics(services.kafka_bootstrap, list(names))
        return {name: shapes[name] for name in names if name in shapes}

    for name, shape in asyncio.run(run()).items():
        out.print(
            f"{name} ({shape.partitions} partitions, replication {shape.replication})",
            highlight=False,
        )
