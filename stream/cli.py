"""``proxima gateways add|list|revoke``: gateway signing keys from the command line.

``deploy/cli.py`` mounts :data:`gateways_app`; :func:`provision_keys` is what ``proxima
replay`` and ``proxima up`` use to give each replayed gateway a key of its own.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from contracts.services import ServiceSettings
from contracts.validation import describe_validation
from stream.exceptions import KeyringError
from stream.keyring import REPLAY_LABEL, KeyRecord, Keyring
from transport.redis import RedisClient, redis_for

if TYPE_CHECKING:
    from stream.customers import ImportReport

T = TypeVar("T")

gateways_app = typer.Typer(
    help="Gateway signing keys (the bridge accepts only batches signed with one) and the "
    "fleet's status.",
    no_args_is_help=True,
)
_out = Console()
_err = Console(stderr=True)


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
        _err.print(f"[red]error:[/red] {msgs}", highlight=False)
        raise typer.Exit(2) from exc
    _err.print(
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
    _out.print(table)


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
        _err.print(f"[yellow]unreadable status:[/yellow] {problem}", highlight=False)
    if as_json:
        for view in views:
            typer.echo(json.dumps(view.to_json()))
        return
    if not views:
        _out.print("no gateway has reported a status (the bridge records them)")
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
    _out.print(table)


@gateways_app.command("provision")
def gateways_provision(
    store: Annotated[str, typer.Argument(metavar="STORE")],
    gateway: Annotated[str, typer.Argument(metavar="GATEWAY")],
    out: Annotated[Path, typer.Option(help="the gateway's folder (copy it to /etc/proxima/)")],
    mqtt_url: Annotated[
        str, typer.Option(help="the broker as the gateway reaches it (mqtts:// in a store)")
    ],
    ca: Annotated[
        Path | None, typer.Option(help="CA the gateway trusts for mqtts://, copied as ca.crt")
    ] = None,
    passwd: Annotated[
        Path | None, typer.Option(help="Mosquitto's password file: the line put in it")
    ] = None,
    acl: Annotated[
        Path | None, typer.Option(help="a Mosquitto ACL file: the gateway's block put in it")
    ] = None,
) -> None:
    """Everything a gateway needs, in one folder: a signing key (in the keyring), MQTT
    credentials (Mosquitto password-file line), its ACL block, edge.toml and edge.env;
    with --passwd/--acl, the broker's files too (reload Mosquitto: SIGHUP)."""
    from stream.provision import acl_block, set_acl_block, set_password_line, write_folder

    services = ServiceSettings()
    if ca is not None and not ca.is_file():
        raise _exit(f"--ca {ca}: no such file")
    record = asyncio.run(with_keyring(services, lambda r: r.add(store, gateway)))
    done, line = write_folder(
        out,
        store=store,
        gateway=gateway,
        kid=record.kid,
        secret_hex=record.secret,
        mqtt_url=mqtt_url,
        topics=services.topics,
        ca_file=ca,
    )
    if passwd is not None:
        set_password_line(passwd, line, done.username)
    if acl is not None:
        set_acl_block(acl, acl_block(services.topics, store, gateway), done.username)
    _err.print(
        f"provisioned {store}/{gateway} in {out}: key {record.kid}, MQTT user {done.username}"
        + (f"; {passwd} and {acl or 'no ACL file'} updated (reload Mosquitto)" if passwd else ""),
        highlight=False,
    )


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
    _err.print(
        f"deprovisioned {store}/{gateway}: {len(revoked)} key(s) revoked"
        + (", password line removed" if passwd else "")
        + (", ACL block removed" if acl else "")
        + (f", {len(gone)} file(s) deleted from {out}" if out else ""),
        highlight=False,
    )


def _exit(message: str) -> typer.Exit:
    _err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(2)


@gateways_app.command("revoke")
def gateways_revoke(kid: Annotated[str, typer.Argument(metavar="KID")]) -> None:
    """Revoke a key; bridges refuse its batches within PROXIMA_STREAM_KEY_CACHE_TTL_S."""
    try:
        record = asyncio.run(with_keyring(ServiceSettings(), lambda r: r.revoke(kid)))
    except KeyringError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    typer.echo(f"{record.kid} ({record.store_id}/{record.gateway_id}): revoked")


# --- customers: import and devices (mounted on ``proxima customers``) -------------------
def customers_import(
    file: Annotated[
        Path, typer.Argument(metavar="FILE.csv", help="header row + one customer per row")
    ],
    keys_out: Annotated[
        Path | None,
        typer.Option(help="write generated identity keys here (CSV) for the customers' apps"),
    ] = None,
) -> None:
    """Enroll customers from a CSV file; report rejected rows and why (exit 1 if any)."""
    from stream.customers import import_csv
    from stream.registry import Registry

    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        _err.print(f"[red]error:[/red] {file}: {exc}", highlight=False)
        raise typer.Exit(2) from exc

    async def run(progress: Callable[[int], None] | None = None) -> ImportReport:
        services = ServiceSettings()
        async with redis_for(services) as redis:
            return await import_csv(Registry(redis, services.redis_prefix), text, progress)

    if sys.stderr.isatty():  # a bar for people; logs and pipes get the summary only
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        rows = max(0, text.count("\n") - 1)
        with Progress(
            "enrolling", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=_err, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("rows", total=rows)
            report = asyncio.run(run(lambda n: bar.update(task, completed=n)))
    else:
        report = asyncio.run(run())
    typer.echo(f"{len(report.enrolled)} enrolled, {len(report.rejected)} rejected")
    for bad in report.rejected:
        who = f" ({bad.customer_id})" if bad.customer_id else ""
        typer.echo(f"line {bad.line}{who}: {bad.reason}")
    if report.generated_keys:
        if keys_out is None:
            typer.echo(
                f"{len(report.generated_keys)} identity keys were generated; "
                "re-run with --keys-out FILE to keep them (they are not printed)"
            )
        else:
            with keys_out.open("w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["customer_id", "identity_key", "rotation_exponent"])
                for cid, (key, k) in sorted(report.generated_keys.items()):
                    w.writerow([cid, key, k])
            keys_out.chmod(0o600)
            typer.echo(f"generated identity keys written to {keys_out}")
    if report.rejected:
        raise typer.Exit(1)


def customers_device(
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    device_id: Annotated[str, typer.Argument(metavar="DEVICE", help="app device id, hex")],
    public_key: Annotated[
        str | None,
        typer.Option(
            help="the app's Ed25519 public key, base64 (published for the gateways' ingest)"
        ),
    ] = None,
) -> None:
    """Register a customer's app device: its geofence and beacon-region events resolve to them."""
    from stream.customers import register_device
    from stream.exceptions import RegistryError

    async def run() -> None:
        services = ServiceSettings()
        async with redis_for(services) as redis:
            await register_device(redis, services.redis_prefix, customer_id, device_id, public_key)

    try:
        asyncio.run(run())
    except RegistryError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    typer.echo(f"{customer_id}: device {device_id} registered")


def customers_seal_keys(
    dry_run: Annotated[bool, typer.Option(help="count only; write nothing")] = False,
) -> None:
    """Seal identity keys stored in plain text (or with an older seal key) with the current key.

    The key is the first of PROXIMA_STREAM_IDENTITY_SEAL_KEYS (and _FILE); keep the older
    ones listed until this has run. Safe to run again and beside running workers.
    """
    from stream.exceptions import RegistryError
    from stream.registry import Registry, SealReport

    async def run() -> SealReport:
        services = ServiceSettings()
        async with redis_for(services) as redis:
            return await Registry(redis, services.redis_prefix).seal_identity_keys(dry_run=dry_run)

    try:
        report = asyncio.run(run())
    except RegistryError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    verb = "would seal" if dry_run else "sealed"
    typer.echo(
        f"{report.customers} customers: {verb} {report.sealed} plain and {report.resealed} "
        f"with an older key; {report.current} already sealed with the current key"
    )
    if report.changed:
        typer.echo(f"{report.changed} changed while being sealed: run again")
        raise typer.Exit(1)


def write_enrollment_qr(
    path: Path, customer_id: str, identity_key: str, rotation_exponent: int
) -> None:
    """``proxima customers enroll --qr PATH``: the app's enrollment payload as a QR code PNG."""
    from stream.customers import app_payload, write_qr

    write_qr(app_payload(customer_id, identity_key, rotation_exponent), path)
    path.chmod(0o600)


async def publish_consent(redis: RedisClient, services: ServiceSettings) -> str | None:
    """Drain the consent outbox to ``proxima.consent.v1`` right after a CLI change.

    Returns None when done, else why not (no Kafka configured, broker unreachable): the
    change is in Redis and in the outbox either way, and the stream worker publishes it.
    """
    from aiokafka.errors import KafkaError

    from contracts.topics import CONSENT
    from stream.consent_log import aiokafka_send, pump_outbox
    from transport.kafka import make_producer

    if not services.kafka:
        return "PROXIMA_KAFKA is not set"
    producer = make_producer(services.kafka_bootstrap, idempotent=False, client_id="proxima-cli")
    try:
        async with asyncio.timeout(20):
            await producer.start()
            await pump_outbox(
                redis,
                services.redis_prefix,
                aiokafka_send(producer),
                services.topics.kafka(CONSENT),
            )
    except (KafkaError, OSError, TimeoutError) as exc:
        return f"Kafka: {exc!r}"
    finally:
        await producer.stop()
    return None


def customers_rebuild_consent(
    timeout: Annotated[float, typer.Option(help="seconds to read the topic to its end")] = 60.0,
) -> None:
    """Restore every customer's consent in Redis from proxima.consent.v1 (idempotent)."""
    from contracts.topics import CONSENT
    from stream.consent_log import RebuildReport, rebuild_consent
    from stream.exceptions import ConsentLogError
    from stream.registry import Registry

    services = ServiceSettings()
    if not services.kafka:
        _err.print("[red]error:[/red] PROXIMA_KAFKA is not set: name the broker", highlight=False)
        raise typer.Exit(2)
    topic = services.topics.kafka(CONSENT)

    async def run() -> RebuildReport:
        async with redis_for(services) as redis:
            # Changes still in the outbox go to the topic first, so the topic is current;
            # if a worker's pump holds the lock, wait until it has drained the outbox.
            registry = Registry(redis, services.redis_prefix)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                why = await publish_consent(redis, services)
                if why is not None:
                    raise ConsentLogError(topic, f"the consent outbox could not be drained: {why}")
                if not await registry.outbox_len():
                    break
                if loop.time() > deadline:
                    raise ConsentLogError(topic, "the consent outbox was not drained in time")
                await asyncio.sleep(0.2)
            return await rebuild_consent(
                redis, services.redis_prefix, services.kafka_bootstrap, topic, timeout
            )

    try:
        report = asyncio.run(run())
    except ConsentLogError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    typer.echo(
        f"{report.restored} customers' consent restored, {report.erased} erased (forgotten), "
        f"{report.skipped} bad records skipped"
    )
